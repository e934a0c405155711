#!/usr/bin/env bash
# Every stage once on the device, on the generated phantoms, in about a minute: a check that the engine
# runs on CUDA (the CPU tests cannot see a tensor left on the wrong device). The default recipe and the
# recipe before guidance run side by side; each is then audited (train shortcut) and probed (train probe).
#
#   here:   .venv/bin/python -m train pack --data-root ../shared/data --out pack     # for its wheels
#   device: run(command="bash bench/gpu_smoke.sh", carry=["pack"], timeout_s=240)
#
# $OUT gets console.txt and each run's output; exit 0 only when every step of both runs finished.
# EXTRA_ARGS: more `train pipeline` options (the CPU dry run in tests/test_gpu_scripts.py skips the stages after
# training with them: on one CPU thread they take minutes, and test_after_training runs them).
set -uo pipefail
PACK=${PACK:-pack}
OUT=${OUT:-gpu-out}
WORK=${WORK:-${TMPDIR:-/tmp}/covid-lab-smoke}
PY=${PYTHON:-python3}
# the default and the recipe before guidance (core/training/recipes.py)
RECIPES=${RECIPES:-$($PY -c "from core.training.recipes import BEFORE_GUIDANCE as b, DEFAULT_RECIPE as d; print(d, b)")}
mkdir -p "$OUT" "$WORK"
export PYTHONUNBUFFERED=1 OMP_NUM_THREADS=${THREADS:-4} COVID_LAB_CACHE=${COVID_LAB_CACHE:-$WORK/cache}
TINY="--epochs 1 --batch-size 8 --image-size 64 --lesion-size 48 --seg-size 64 --seg-epochs 1 --seg-max-rounds 1"
TINY="$TINY --seg-steps-per-round 3 --seg-polish-epochs 1"

one() {  # recipe: pipeline, audit, probe
  local run="$WORK/$1" t0=$SECONDS
  { $PY -m train pipeline --recipe "$1" --out "$run" --no-progress $TINY ${EXTRA_ARGS:-} \
    && root=$($PY -c "import json,sys; print(json.load(open(sys.argv[1]))['data_root'])" "$run/config.json") \
    && $PY -m train shortcut --run "$run" --data-root "$root" --no-progress --limit 4 \
    && $PY -m train probe --run "$run"; } >"$OUT/$1.out" 2>&1
  local rc=$?
  echo "$1: exit $rc after $(( SECONDS - t0 )) s ($(grep -o '"device": "[^"]*"' "$run/config.json" 2>/dev/null || echo 'no config'))"
  [ $rc = 0 ] || tail -3 "$OUT/$1.out"
  return $rc
}

{
  source bench/gpu_env.sh || exit 2
  pids=()
  for r in $RECIPES; do one "$r" & pids+=($!); done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$(( failed + 1 )); done
  echo "smoke: $failed of ${#pids[@]} runs failed"
  exit $(( failed > 0 ))
} 2>&1 | tee "$OUT/console.txt"
exit "${PIPESTATUS[0]}"
