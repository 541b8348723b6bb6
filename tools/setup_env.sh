#!/usr/bin/env bash
# Set up a working environment: torch, mmengine, mmcv (built from source with its C++ ops), mmdet and
# ghm_mmdet in editable mode with its test and tools extras.
#
# The versions below are the tested stacks; the package itself declares ranges (setup.py).
#
#   bash tools/setup_env.sh                      # newest tested corner, Python 3.11, in .venv
#   STACK=oldest bash tools/setup_env.sh         # oldest tested corner, Python 3.8, in .venv-oldest
#   PYTHON=python3.10 VENV=/path/env TORCH=2.1.2 EXTRA_PINS='numpy<2' MMCV=2.1.0 MMDET=3.3.0 MMENGINE=0.10.7 \
#       bash tools/setup_env.sh                  # any other stack inside the declared ranges (EXTRA_PINS: more
#                                                # pins for every install; torch 2.1 and older need numpy < 2)
#
# Idempotent: every step checks first and is skipped when already done, so a second run takes seconds.
# A torch already in the environment (a CUDA build you installed first, say) is kept, and so is an mmcv
# that already has its compiled ops (a prebuilt wheel from download.openmmlab.com, say).
# Fails loudly, naming the step, when anything goes wrong.
set -Eeuo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
case "${STACK:-newest}" in
    newest)
        : "${PYTHON:=$(command -v python3.11 || command -v python3)}" "${VENV:=.venv}"
        : "${TORCH:=2.13.0}" "${MMCV:=2.1.0}" "${MMDET:=3.3.0}" "${MMENGINE:=0.10.7}" "${EXTRA_PINS:=}"
        # torch 2.13's C++ extension builder needs setuptools >= 77.
        : "${SETUPTOOLS:=setuptools>=77,<81}"
        # mmyolo 0.6.0 needs mmcv < 2.1 and mmrotate 1.0.0rc1 mmdet <= 3.1: they are tested at the oldest corner.
        : "${SIBLINGS:=}" ;;
    oldest)
        # OpenMMLab's own pairing: mmcv 2.0.x was built for torch 2.0 (its C++14 flags fail on torch 2.1's headers);
        # torch 2.0's wheels were built against numpy 1.x; mmengine 0.7's Config passes yapf's removed verify=.
        : "${PYTHON:=$(PYENV_VERSION=3.8.18 command -v python3.8 || echo python3.8)}" "${VENV:=.venv-oldest}"
        : "${TORCH:=2.0.1}" "${MMCV:=2.0.1}" "${MMDET:=3.0.0}" "${MMENGINE:=0.7.1}" "${EXTRA_PINS:=numpy<2 yapf<=0.40.1}"
        # setuptools 75.3 is the last release for Python 3.8.
        : "${SETUPTOOLS:=setuptools>=64,<75.4}"
        # mmdet's siblings whose GHM configs (configs/mmyolo, configs/mmrotate) the compat tests train.
        : "${SIBLINGS:=mmyolo==0.6.0 mmrotate==1.0.0rc1}" ;;
    *) echo "[setup] STACK must be 'newest' or 'oldest', got '${STACK}'" >&2; exit 2 ;;
esac
# pyenv's shim picks the interpreter from PYENV_VERSION; name it so that python3.8 resolves.
case "${PYTHON}" in *python3.8*) export PYENV_VERSION=${PYENV_VERSION:-3.8.18} ;; esac
CURRENT_STEP="start"

step() {
    CURRENT_STEP="$1"
    echo "[setup] $(date +%T) $1"
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
# Every install after mmengine's repeats these, so that nothing it pulls in moves them.
read -r -a EXTRA <<< "${EXTRA_PINS}"
PINS=("mmengine==${MMENGINE}" "${EXTRA[@]}")

has() { "${PY}" -c "$1" >/dev/null 2>&1; }

# mmcv's setup.py imports pkg_resources, which setuptools 81 removed: every stack needs setuptools < 81.
step "build tools: ${SETUPTOOLS}, wheel, ninja"
if ! has "import setuptools, wheel, ninja, pkg_resources; from packaging.requirements import Requirement as R; assert setuptools.__version__ in R('${SETUPTOOLS}').specifier"; then
    "${PIP[@]}" "${SETUPTOOLS}" wheel ninja packaging
fi

step "torch (kept if present, else torch==${TORCH})"
if has 'import torch'; then
    echo "[setup]   keeping torch $("${PY}" -c 'import torch; print(torch.__version__)')"
else
    "${PIP[@]}" "torch==${TORCH}" "${EXTRA[@]}"
fi

step "mmengine==${MMENGINE}"
if ! has "import mmengine; assert mmengine.__version__ == '${MMENGINE}'"; then
    "${PIP[@]}" "${PINS[@]}"
fi

step "mmcv==${MMCV} with C++ ops (kept if present, else a wheel built against this torch)"
if ! has "import mmcv, mmcv.ops; assert mmcv.__version__ == '${MMCV}'"; then
    # pip's own wheel cache keys a source build by its sdist alone, so a wheel built against one torch
    # would be reused for another. Ours is keyed by everything the binary depends on.
    key=$("${PY}" - "${MMCV}" "${CFLAGS:-}" "${FORCE_CUDA:-}" "${TORCH_CUDA_ARCH_LIST:-}" <<'EOF'
import hashlib, sys, torch
mmcv, *flags = sys.argv[1:]
cuda = torch.version.cuda or 'cpu'
tag = f"cp{sys.version_info[0]}{sys.version_info[1]}"
print(f"mmcv-{mmcv}_torch-{torch.__version__}_cuda-{cuda}_{tag}_{hashlib.sha1(repr(flags).encode()).hexdigest()[:8]}")
EOF
)
    wheels="${GHM_MMDET_WHEEL_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/ghm-mmdet/wheels}/${key}"
    # Its build dependencies come from this environment (no isolation), so it compiles against our torch.
    "${PIP[@]}" numpy 'opencv-python-headless' addict yapf pyyaml Pillow "${PINS[@]}"
    if ! ls "${wheels}"/mmcv-*.whl >/dev/null 2>&1; then
        echo "[setup]   building ${key} (the slow step: 5 minutes on 2 cores here)"
        tmp=$(mktemp -d)
        # -g0: debug info nearly doubles the compile time of torch's headers (prebuilt wheels carry none).
        CFLAGS="${CFLAGS:-} -g0" MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} \
            "${PY}" -m pip wheel --disable-pip-version-check --quiet --no-cache-dir --no-deps \
            --no-build-isolation -w "${tmp}" "mmcv==${MMCV}"
        mkdir -p "${wheels}" && mv "${tmp}"/mmcv-*.whl "${wheels}/" && rm -rf "${tmp}"
    else
        echo "[setup]   reusing ${wheels}"
    fi
    "${PIP[@]}" "${wheels}"/mmcv-*.whl "${PINS[@]}"
    has 'import mmcv.ops' || { echo "[setup] mmcv installed but mmcv.ops does not import" >&2; false; }
fi

step "mmdet==${MMDET}"
if ! has "import mmdet; assert mmdet.__version__ == '${MMDET}'"; then
    "${PIP[@]}" "mmdet==${MMDET}" "mmcv==${MMCV}" "${PINS[@]}"
fi

# Whether every requirement given is installed in a version it accepts.
satisfied() {
    "${PY}" - "$@" <<'PINS_EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
from packaging.requirements import Requirement
for pin in map(Requirement, sys.argv[1:]):
    try:
        assert pin.specifier.contains(version(pin.name), prereleases=True), pin
    except (AssertionError, PackageNotFoundError):
        sys.exit(1)
PINS_EOF
}

step "the stack's pins: ${PINS[*]}"
if ! satisfied "${PINS[@]}"; then
    "${PIP[@]}" "${PINS[@]}"
fi

step "mmdet's siblings: ${SIBLINGS:-none at this corner}"
read -r -a SIBS <<< "${SIBLINGS}"
if [ "${#SIBS[@]}" -gt 0 ] && ! satisfied "${SIBS[@]}"; then
    # With the stack's own versions named, pip can add the siblings' small dependencies but move nothing.
    "${PIP[@]}" "${SIBS[@]}" "mmdet==${MMDET}" "mmcv==${MMCV}" "torch==$("${PY}" -c 'from importlib.metadata import version; print(version("torch"))')" "${PINS[@]}"
fi

step "ghm_mmdet (editable) with test and tools extras"
if ! has 'import ghm_mmdet, pytest, xdist, pytest_timeout, hypothesis, matplotlib, tensorboard, scipy, ruff' \
    || [ setup.py -nt "${VENV}/.ghm_mmdet_installed" ]; then
    "${PIP[@]}" --no-build-isolation -e '.[tests,tools]' "mmdet==${MMDET}" "mmcv==${MMCV}" "${PINS[@]}"
    touch "${VENV}/.ghm_mmdet_installed"
fi

step "check the stack imports"
"${PY}" - <<'EOF'
import sys, torch, mmengine, mmcv, mmcv.ops, mmdet, ghm_mmdet
print(f"[setup] ok: Python {sys.version.split()[0]}, torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, ghm_mmdet {ghm_mmdet.__version__}")
EOF
