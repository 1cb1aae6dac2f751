#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment.
#
# Usage: tools/setup_env.sh [VENV_DIR]
#
# Every pip call is made with the one constraints file, so that nothing can
# replace the pinned torch. mmcv 2.1.0 has no wheel for torch 2.13 and is built
# from source with its ops; pip caches the built wheel, so only the first
# build on a machine takes minutes. On a machine with CUDA the same command
# builds mmcv's CUDA ops.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PYTHON=${PYTHON:-python3}
C="-c requirements/constraints.txt"

if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip --disable-pip-version-check"

# 1. Build prerequisites of mmcv: torch itself, and setuptools<82 because the
#    build runs without isolation (its setup.py imports torch).
$PIP install -q $C setuptools wheel ninja psutil numpy opencv-python torch

# 2. mmcv with ops: CUDA ops where torch is a CUDA build and nvcc is there
#    (a GPU need not be visible at build time), CPU ops otherwise.
if ! $VENV/bin/python -c "import mmcv._ext" 2>/dev/null; then
    if $VENV/bin/python -c "import torch,sys; sys.exit(0 if torch.version.cuda else 1)" \
            && { command -v nvcc >/dev/null || [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ]; }; then
        force_cuda=1
    else
        force_cuda=0
    fi
    echo "Building mmcv 2.1.0 with ops (FORCE_CUDA=$force_cuda); the first build takes ~5-7 min, later ones use pip's wheel cache."
    build_mmcv() {
        MMCV_WITH_OPS=1 FORCE_CUDA=$force_cuda MAX_JOBS=${MAX_JOBS:-$(nproc)} CFLAGS=${CFLAGS:--g0} \
            $PIP install -q $C --no-build-isolation "$@" mmcv
    }
    build_mmcv
    # pip's wheel cache key ignores the torch version: a wheel cached for
    # another torch installs fine and then fails to load. Rebuild then.
    if ! $VENV/bin/python -c "import mmcv._ext" 2>/dev/null; then
        echo "The cached mmcv wheel does not load with this torch; rebuilding without the cache."
        build_mmcv --no-cache-dir --force-reinstall --no-deps
    fi
fi

# 3. The rest of the stack, the tests' tools and this package (editable).
$PIP install -q $C -r requirements/runtime.txt -r requirements/tests.txt
$PIP install -q $C --no-build-isolation --no-deps -e .

# 4. torchvision's CUDA wheel on CPU torch: patch only if its C ops cannot load.
$VENV/bin/python flexvit_mm/compat/torchvision_fix.py
