#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (as root) for the launcher tests: one node named by
# `hostname` with all its CPUs, one partition, no GPUs (no GresTypes), so tasks run on CPU.
#
# Idempotent: the packages are installed only when `srun` is missing, each daemon is started only when it
# is not already running, and the configuration is rewritten only when it differs. Waits until `sinfo`
# shows the node idle. Prints the partition name on its last line of stdout.
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
    apt-get update -qq >&2
    apt-get install -y -qq slurmd slurmctld slurm-client munge >&2
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
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p "${CONF_DIR}" "${STATE_DIR}" "${SPOOL_DIR}" "${LOG_DIR}"
chown slurm:slurm "${STATE_DIR}" "${LOG_DIR}"
NEW_CONF=$(cat <<CONF
# Written by tests/tools/slurm/start_slurm.sh: single-node, CPU-only cluster for ghm_mmdet's tests.
ClusterName=ghmtest
SlurmctldHost=${NODE}
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
NodeName=${NODE} CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=${PARTITION} Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF
)
CONF_CHANGED=0
if [ ! -f "${CONF_DIR}/slurm.conf" ] || [ "$(cat "${CONF_DIR}/slurm.conf")" != "${NEW_CONF}" ]; then
    printf '%s\n' "${NEW_CONF}" > "${CONF_DIR}/slurm.conf"
    CONF_CHANGED=1
fi

step "slurmctld and slurmd"
if [ "${CONF_CHANGED}" = 1 ]; then
    # A running daemon would keep the old configuration.
    pkill_pid() { [ -f "$1" ] && kill "$(cat "$1")" 2>/dev/null || true; }
    pkill_pid /run/slurmd.pid
    pkill_pid /run/slurmctld.pid
    sleep 1
fi
if ! pgrep -x slurmctld >/dev/null 2>&1; then
    /usr/sbin/slurmctld
fi
if ! pgrep -x slurmd >/dev/null 2>&1; then
    /usr/sbin/slurmd
fi

step "wait until node ${NODE} is idle in partition ${PARTITION}"
for _ in $(seq 120); do
    STATE=$(sinfo -h -p "${PARTITION}" -n "${NODE}" -o '%T' 2>/dev/null | head -n1 || true)
    case "${STATE}" in
        idle|mixed|allocated) echo "${PARTITION}"; exit 0 ;;
        down*|drain*|unknown*) scontrol update NodeName="${NODE}" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.5
done
echo "[slurm] node ${NODE} did not become idle; last state: '${STATE:-none}'; see ${LOG_DIR}/" >&2
exit 1
