#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster with srun: one task per GPU, or per CPU slot without GPUs.
#
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py ARGS...]
#
# Environment as for tools/slurm_train.sh: GPUS, GPUS_PER_NODE, CPUS_PER_TASK, SRUN_ARGS, PORT/MASTER_PORT,
# MASTER_ADDR, OMP_NUM_THREADS, PYTHON, and GRES=none on a partition without GPUs.
set -euo pipefail
if [ $# -lt 4 ]; then
    echo "usage: $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments]" >&2
    exit 2
fi
set -x
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
CHECKPOINT=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
PYTHON=${PYTHON:-python}
TOOLS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
GRES_ARGS=()
if [ -n "${GRES}" ] && [ "${GRES}" != none ]; then
    GRES_ARGS=(--gres="${GRES}")
fi
export MASTER_PORT=${MASTER_PORT:-${PORT:-29500}}
# One OpenMP thread per CPU Slurm gives a task (torchrun does the same for tools/dist_*.sh): more threads
# than CPUs makes CPU training many times slower.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${CPUS_PER_TASK}}

# SRUN_ARGS is split into words on purpose, as in mmdet's script.
# shellcheck disable=SC2086
PYTHONPATH="${TOOLS_DIR}/..${PYTHONPATH:+:${PYTHONPATH}}" \
srun -p "${PARTITION}" \
    --job-name="${JOB_NAME}" \
    "${GRES_ARGS[@]}" \
    --ntasks="${GPUS}" \
    --ntasks-per-node="${GPUS_PER_NODE}" \
    --cpus-per-task="${CPUS_PER_TASK}" \
    --kill-on-bad-exit=1 \
    ${SRUN_ARGS} \
    "${PYTHON}" -u "${TOOLS_DIR}/test.py" "${CONFIG}" "${CHECKPOINT}" --launcher="slurm" "${@:5}"
