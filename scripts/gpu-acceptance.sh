#!/usr/bin/env bash
# The first run of the kernels on a GPU host, in steps that each fit a 10-minute device call:
#
#   scripts/gpu-acceptance.sh check   # device record, compile + SASS, one launch per kernel
#                                     # (also under compute-sanitizer), the GPU tests of the
#                                     # kernels and of training on them
#   scripts/gpu-acceptance.sh bench   # the headline GEMMs (suite/shapes/headline.toml), 2:4,
#                                     # fwd and permuted bwd-data: our kernels (both families),
#                                     # cuBLAS, cuSPARSELt, CUTLASS, a handful of configs each
#
# Output under ${OUT:-results/gpu-acceptance}/<step>/. Runs from the source tree with the python
# that has torch (PYTHON, default python3); installs nothing.
set -euo pipefail
step=${1:?usage: scripts/gpu-acceptance.sh check|bench}
PY=${PYTHON:-python3}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
dest="${OUT:-results/gpu-acceptance}/$step"
mkdir -p "$dest"

case "$step" in
check)
    { nvidia-smi --query-gpu=name,driver_version,clocks.max.sm,power.limit --format=csv
      "$PY" -m suite devices; } >"$dest/device.txt" 2>&1 || true
    cat "$dest/device.txt"
    "$PY" -m kernels compile --default-only 2>&1 | tee "$dest/compile.txt"
    "$PY" -m kernels check 2>&1 | tee "$dest/check.txt"
    if command -v compute-sanitizer >/dev/null; then
        compute-sanitizer --tool memcheck --error-exitcode 3 "$PY" -m kernels check \
            >"$dest/memcheck.txt" 2>&1 && echo "memcheck: clean" \
            || echo "memcheck: errors (see $dest/memcheck.txt)"
        tail -3 "$dest/memcheck.txt"
    fi
    "$PY" -m pytest -q -p no:cacheprovider tests/test_kernels_gpu.py tests/test_training_kernels.py \
        --junitxml="$dest/gpu-tests.xml" 2>&1 | tee "$dest/gpu-tests.txt" | tail -25
    ;;
bench)
    "$PY" -m suite bench --tier gpu --shapes suite/shapes/headline.toml --patterns 2:4 \
        --passes fwd bwd-data --perms greedy --space quick --strategy brute_force \
        --budget-s 0.25 --no-progress --full --out "$dest"  # --full: every headline GEMM, no time budget
    sed -n '/## Our sparse kernel over our dense kernel/,/## Projected/p' "$dest/report.md"
    ;;
*)
    echo "unknown step $step: use check or bench" >&2
    exit 2
    ;;
esac
