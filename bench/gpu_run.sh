#!/usr/bin/env bash
# The one command for a lent GPU machine (no network, 64 MiB carried, 600 s a command):
#
#   here:   .venv/bin/python -m train pack --data-root ../shared/data --out pack     # ~58 MiB, ~3 min
#   device: run(command="bash bench/gpu_run.sh", carry=["pack"], timeout_s=600)
#
# Checks the pack's checksums, installs the wheels it carries only if their imports fail (into a
# temp folder: no network, no system packages touched), then runs `python -m train gpu-run` for
# BUDGET_MIN minutes (default 8). Results land in $OUT (summary.md first). GPU_RUN_ARGS: more
# options (the CPU dry run in tests/test_gpu_run.py shrinks everything with them).
set -uo pipefail
PACK=${PACK:-pack}
OUT=${OUT:-gpu-out}
BUDGET_MIN=${BUDGET_MIN:-8}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 COVID_LAB_CACHE=${COVID_LAB_CACHE:-${TMPDIR:-/tmp}/covid-lab-cache}
{
  source bench/gpu_env.sh || exit 2
  $PY -m train gpu-run --pack "$PACK" --budget-min "$BUDGET_MIN" --out "$OUT" ${GPU_RUN_ARGS:-}
} 2>&1 | tee "$OUT/console.txt"
exit "${PIPESTATUS[0]}"
