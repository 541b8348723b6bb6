#!/usr/bin/env bash
# Set up a working environment in .venv: torch, mmengine, mmcv (built from source with its C++ ops),
# mmdet and ghm_mmdet in editable mode with its test extras.
#
# Idempotent: every step checks first and is skipped when already done, so a second run takes seconds.
# Fails loudly, naming the step, when anything goes wrong.
#
#   bash tools/setup_env.sh             # uses python3.11 (or python3) and .venv
#   PYTHON=python3.12 VENV=/path/env bash tools/setup_env.sh
#
# A torch already in the environment (for example a CUDA build you installed first) is kept; only where
# there is none is torch==2.13.0 (the CPU wheel) installed.  Likewise an mmcv 2.1.0 that already has its
# compiled ops (for example a prebuilt CUDA wheel from download.openmmlab.com) is not rebuilt.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-$(command -v python3.11 || command -v python3)}
CURRENT_STEP="start"

step() {
    CURRENT_STEP="$1"
    echo "[setup] $1"
}
trap 'echo "[setup] FAILED at step: ${CURRENT_STEP} (exit $?)" >&2' ERR

step "create virtual environment ${VENV} with ${PYTHON}"
if [ ! -x "${VENV}/bin/python" ]; then
    "${PYTHON}" -m venv "${VENV}"
fi
PY="${VENV}/bin/python"
PIP=("${PY}" -m pip install --disable-pip-version-check --quiet)
"${PY}" -c 'import sys; assert sys.version_info >= (3, 8), sys.version' \
    || { echo "[setup] ${VENV} has Python < 3.8" >&2; exit 1; }

has() { "${PY}" -c "$1" >/dev/null 2>&1; }

step "build tools: setuptools>=77,<81 (torch 2.13 needs >=77; mmcv's setup.py imports pkg_resources), wheel, ninja"
if ! has 'import setuptools, wheel, ninja, pkg_resources; from packaging.version import Version as V; v = V(setuptools.__version__); assert V("77") <= v < V("81")'; then
    "${PIP[@]}" 'setuptools>=77,<81' wheel ninja packaging
fi

step "torch (kept if present, else torch==2.13.0 CPU wheel)"
if has 'import torch'; then
    echo "[setup]   keeping torch $("${PY}" -c 'import torch; print(torch.__version__)')"
else
    "${PIP[@]}" 'torch==2.13.0'
fi

step "mmengine==0.10.7"
if ! has 'import mmengine; assert mmengine.__version__ == "0.10.7"'; then
    "${PIP[@]}" 'mmengine==0.10.7'
fi

step "mmcv==2.1.0 with C++ ops (built from source unless already installed; about 12 minutes on 2 cores)"
if ! has 'import mmcv, mmcv.ops; assert mmcv.__version__ == "2.1.0"'; then
    # mmcv's build deps come from this environment (no isolation), so it compiles against our torch.
    "${PIP[@]}" numpy 'opencv-python-headless' addict yapf pyyaml Pillow
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "${PIP[@]}" --no-build-isolation 'mmcv==2.1.0'
    has 'import mmcv.ops' || { echo "[setup] mmcv installed but mmcv.ops does not import" >&2; false; }
fi

step "mmdet==3.3.0"
if ! has 'import mmdet; assert mmdet.__version__ == "3.3.0"'; then
    "${PIP[@]}" 'mmdet==3.3.0'
fi

step "ghm_mmdet (editable) with test and tools extras"
if ! has 'import ghm_mmdet, pytest, xdist, hypothesis, matplotlib, tensorboard, scipy' \
    || [ setup.py -nt "${VENV}/.ghm_mmdet_installed" ]; then
    "${PIP[@]}" --no-build-isolation -e '.[tests,tools]'
    touch "${VENV}/.ghm_mmdet_installed"
fi

step "check the stack imports"
"${PY}" - <<'EOF'
import torch, mmengine, mmcv, mmcv.ops, mmdet, ghm_mmdet
print(f"[setup] ok: torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, ghm_mmdet {ghm_mmdet.__version__}")
EOF
