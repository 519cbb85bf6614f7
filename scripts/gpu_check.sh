#!/usr/bin/env bash
# The GPU runner check (README "GPU runners"): on a lent GPU, with `make gpu-wheels` done here and .whl carried,
#   bash scripts/gpu_check.sh                      -> results in $OUT (results.tar.gz, checkpoints.tar.partNN)
#   bash scripts/gpu_check.sh --dry-run --out DIR  (here, CPU: every step at tiny sizes)
# Installs the carried wheels (what the GPU image lacks) into a target folder, points MNIST_ROOT at the carried MNIST
# (IDX files), and runs `python -m harness gpu-check` with that machine's own python and torch.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/harness-site .whl/*.whl
    export PYTHONPATH=/tmp/harness-site${PYTHONPATH:+:$PYTHONPATH}
fi
if [ -d .whl/mnist ]; then
    export MNIST_ROOT=${MNIST_ROOT:-$PWD/.whl/mnist}
fi
export PYTHONUNBUFFERED=1
exec $PY -m harness gpu-check "$@"
