#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (as root) for the launcher tests: one node named by
# `hostname` with all its CPUs, one partition, no GPUs (no GresTypes), so tasks run on CPU.
#
# Idempotent: the packages are installed only when `srun` is missing, each daemon is started only when it
# is not already running, and the configuration is rewritten only when it differs. Waits until `sinfo`
# shows the node idle. Prints the partition name on its last line of stdout.
#
# Exit status 3: Slurm cannot be installed here (not root, no apt-get, or apt-get failed); 1: it is
# installed but did not start (see /var/log/slurm/).
#
#   bash tests/tools/slurm/start_slurm.sh            # partition "debug"
#   SLURM_TEST_PARTITION=cpu bash tests/tools/slurm/start_slurm.sh
set -Eeuo pipefail

PARTITION=${SLURM_TEST_PARTITION:-debug}
CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm
CURRENT_STEP=start

step() { CURRENT_STEP="$1"; echo "[slurm] $1" >&2; }
trap 'echo "[slurm] FAILED at step: ${CURRENT_STEP} (exit $?)" >&2' ERR

if [ "$(id -u)" != 0 ]; then
    echo "[slurm] must run as root to install and start slurmctld/slurmd" >&2
    exit 3
fi

step "install slurmd, slurmctld, slurm-client and munge (skipped when srun exists)"
if ! command -v srun >/dev/null 2>&1 || ! command -v slurmctld >/dev/null 2>&1 \
        || ! command -v slurmd >/dev/null 2>&1 || ! command -v munged >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { echo "[slurm] no apt-get: cannot install Slurm" >&2; exit 3; }
    export DEBIAN_FRONTEND=noninteractive
    PACKAGES=(slurmd slurmctld slurm-client munge)
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}"; } >&2 \
        || { echo "[slurm] apt-get could not install ${PACKAGES[*]}" >&2; exit 3; }
fi

step "munge key and daemon"
mkdir -p /etc/munge /var/run/munge /var/lib/munge /var/log/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /var/run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge
chmod 0400 /etc/munge/munge.key
if ! pgrep -u munge -x munged >/dev/null 2>&1; then
    runuser -u munge -- /usr/sbin/munged
fi
for _ in $(seq 50); do munge -n >/dev/null 2>&1 && break; sleep 0.2; done
munge -n | unmunge >/dev/null

step "slurm.conf"
NODE=$(hostname -s)
# Tasks find the job's first node (MASTER_ADDR for gloo) by name, so the name must resolve here.
if ! getent hosts "${NODE}" >/dev/null; then
    echo "[slurm] ${NODE} does not resolve; adding '127.0.0.1 ${NODE}' to /etc/hosts" >&2
    printf '127.0.0.1 %s\n' "${NODE}" >> /etc/hosts
fi
# All of them: nproc alone honours OMP_NUM_THREADS, which mmengine sets to 1 in any process that built a
# distributed Runner; a 1-CPU node would leave the 2-task test job pending for ever.
CPUS=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "${CONF_DIR}" "${STATE_DIR}" "${SPOOL_DIR}" "${LOG_DIR}"
chown slurm:slurm "${STATE_DIR}" "${LOG_DIR}"
NEW_CONF=$(cat <<CONF
# Written by tests/tools/slurm/start_slurm.sh: single-node, CPU-only cluster for ghm_mmdet's tests.
ClusterName=ghmtest
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=${STATE_DIR}
SlurmdSpoolDir=${SPOOL_DIR}
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=${LOG_DIR}/slurmctld.log
SlurmdLogFile=${LOG_DIR}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
NodeName=${NODE} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
)
CONF_CHANGED=0
if [ ! -f "${CONF_DIR}/slurm.conf" ] || [ "$(cat "${CONF_DIR}/slurm.conf")" != "${NEW_CONF}" ]; then
    printf '%s\n' "${NEW_CONF}" > "${CONF_DIR}/slurm.conf"
    CONF_CHANGED=1
fi

step "slurmctld and slurmd"
stop_daemon() {  # by the pid file it wrote; waits until it has exited
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 0
    kill "${pid}" 2>/dev/null || return 0
    for _ in $(seq 100); do kill -0 "${pid}" 2>/dev/null || return 0; sleep 0.2; done
    echo "[slurm] pid ${pid} from $1 did not exit" >&2
    return 1
}
if [ "${CONF_CHANGED}" = 1 ]; then
    # A running daemon would keep the old configuration.
    stop_daemon /run/slurmd.pid
    stop_daemon /run/slurmctld.pid
fi
running() {  # the daemon whose pid file is $1 is alive (not gone, not a zombie)
    local pid
    pid=$(cat "$1" 2>/dev/null) || return 1
    [ -r "/proc/${pid}/status" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/${pid}/status"
}
running /run/slurmctld.pid || /usr/sbin/slurmctld
running /run/slurmd.pid || /usr/sbin/slurmd

step "wait until node ${NODE} is idle in partition ${PARTITION}"
DEADLINE=$((SECONDS + 90))
while [ "${SECONDS}" -lt "${DEADLINE}" ]; do
    STATE=$(timeout 5 sinfo -h -p "${PARTITION}" -n "${NODE}" -o '%T' 2>/dev/null | head -n1 || true)
    case "${STATE}" in
        idle|mixed|allocated) echo "${PARTITION}"; exit 0 ;;
        down*|drain*) timeout 5 scontrol update NodeName="${NODE}" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
echo "[slurm] node ${NODE} did not become idle in 90 s; last state: '${STATE:-none}'; see ${LOG_DIR}/" >&2
exit 1
