#!/usr/bin/env bash
# A GPU session's measurements in one call (a lent GPU machine is bare, offline and time-limited):
#
#   bash scripts/gpu_session.sh --bundle   # here: .gpu/ (git-ignored) holds the wheels that machine lacks,
#                                          # this checkout's own wheel and MNIST, to carry with the call
#   bash scripts/gpu_session.sh [benchmarks.gpu options]   # there: install from .gpu/, run the GPU tests,
#                                          # then python -m benchmarks.gpu; results under $OUT
#   SKIP_GPU_TESTS=1 bash scripts/gpu_session.sh --gpu-probe   # there: only what a graphed step waits on
#
# Rehearse it on CPU first: python -m benchmarks.gpu --device cpu --smoke
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--bundle" ]; then
    set -e
    rm -rf .gpu && mkdir -p .gpu/whl .gpu/mnist
    pip download -q --no-deps --only-binary=:all: -d .gpu/whl hydra-core==1.3.8 omegaconf==2.3.1 hydra-joblib-launcher==1.2.0
    pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3  # published as a source archive only
    pip wheel -q --no-deps --no-build-isolation -w .gpu/whl .
    raw="${MNIST_CNN_DATA:-$HOME/.cache/mnist_cnn}/MNIST/raw"
    for f in "$raw"/*-ubyte; do gzip -c "$f" > ".gpu/mnist/$(basename "$f").gz"; done
    du -sh .gpu
    exit 0
fi

OUT="${OUT:-benchmarks/results}"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1 MNIST_CNN_DATA=/tmp/mnist PYTHONDONTWRITEBYTECODE=1
mkdir -p /tmp/mnist/MNIST/raw "$OUT"
for f in .gpu/mnist/*.gz; do gunzip -c "$f" > "/tmp/mnist/MNIST/raw/$(basename "$f" .gz)"; done
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv,noheader
python3 -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)"
[ -n "${SKIP_GPU_TESTS:-}" ] || timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu ${GPU_TESTS:-tests/test_graphed.py tests/test_train.py tests/test_data.py} \
    2>&1 | tee "$OUT/gpu-tests.log" | tail -25
python3 -m benchmarks.gpu --out "$OUT" "$@" 2>&1 | tee "$OUT/gpu-summary.log" | grep -v "^ \|^{\|^}"
