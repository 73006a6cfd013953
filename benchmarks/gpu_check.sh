#!/usr/bin/env bash
# GPU check of the torch path (issue 12, item 3), for a machine with a CUDA device
# (sized for 1 H200 and 16 cores: under 8 minutes). Installs nothing: run it from the
# repository root with the project's environment active (or PYTHON=/path/to/python).
#
#   bash benchmarks/gpu_check.sh            # exits non-zero if anything fails
#
# 1. python -m pytest tests/test_cuda.py tests/test_torch_backend.py tests/test_kfac.py -q
#    (CUDA visible)
# 2. python benchmarks/bench_nets.py --quick --device cuda                (only if it exists)
# then prints a summary: one line per step with its status and wall time.
set -u
cd "$(dirname "$0")/.." || exit 2
PYTHON=${PYTHON:-python}
BUDGET=${GPU_CHECK_BUDGET:-470}   # seconds for the whole script (8 minutes, with a margin)
START=$(date +%s)
LOG=${GPU_CHECK_LOG:-$(mktemp -d)}
declare -a NAMES STATUS TIMES
failed=0

remaining() { echo $(( BUDGET - ($(date +%s) - START) )); }

step() {  # step NAME CMD...: run with the time left, record status and seconds
    local name=$1; shift
    local left; left=$(remaining)
    if (( left < 20 )); then
        NAMES+=("$name"); STATUS+=("SKIPPED (out of time)"); TIMES+=(0); failed=1
        return
    fi
    local t0; t0=$(date +%s)
    echo "=== $name (limit ${left}s): $*"
    timeout --signal=INT --kill-after=15 "$left" "$@" 2>&1 | tee "$LOG/$(echo "$name" | tr ' /' '__').log"
    local rc=${PIPESTATUS[0]}
    local dt=$(( $(date +%s) - t0 ))
    NAMES+=("$name"); TIMES+=("$dt")
    if (( rc == 0 )); then STATUS+=("ok"); else STATUS+=("FAILED (exit $rc)"); failed=1; fi
}

if ! "$PYTHON" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "gpu_check: no CUDA device visible to $PYTHON (torch.cuda.is_available() is False)"
    exit 3
fi
"$PYTHON" - <<'EOF'
import torch
print("torch", torch.__version__, "| CUDA", torch.version.cuda, "|",
      torch.cuda.get_device_name(0), "| devices:", torch.cuda.device_count())
EOF

# the CUDA tests must run, not skip: -rs lists skips, and the summary counts them
step "cuda tests" env OMP_NUM_THREADS=4 "$PYTHON" -m pytest tests/test_cuda.py \
    tests/test_torch_backend.py tests/test_kfac.py -q -p no:cacheprovider -rs -x
if grep -q "needs a CUDA device" "$LOG/cuda_tests.log" 2>/dev/null; then
    echo "gpu_check: CUDA tests were skipped although a device is visible"
    STATUS[${#STATUS[@]}-1]="FAILED (CUDA tests skipped)"
    failed=1
fi

if [[ -f benchmarks/bench_nets.py ]]; then
    step "bench_nets --quick" "$PYTHON" benchmarks/bench_nets.py --quick --device cuda
else
    NAMES+=("bench_nets --quick"); STATUS+=("not run (benchmarks/bench_nets.py absent)")
    TIMES+=(0)
fi

echo
echo "=== gpu_check summary ($(( $(date +%s) - START ))s of ${BUDGET}s; logs in $LOG)"
for i in "${!NAMES[@]}"; do
    printf '  %-22s %-45s %4ss\n' "${NAMES[$i]}" "${STATUS[$i]}" "${TIMES[$i]}"
done
grep -hE "^[0-9]+ (passed|failed)|passed|failed" "$LOG/cuda_tests.log" 2>/dev/null | tail -1 \
    | sed 's/^/  tests: /'
exit $failed
