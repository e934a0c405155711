#!/usr/bin/env bash
# The shortcut audit's comparison on a lent GPU machine: every RECIPE x SEED pipeline run, concurrently,
# each followed by its shortcut audit (train shortcut) and branch probe (train probe), then one report
# (train report) across them all. One segmenter (Algorithm 1) is trained first and shared by every run.
#
#   here:   .venv/bin/python -m train pack --data-root ../shared/data --out pack     # ~53 MiB
#   device: run(command="bash bench/gpu_compare.sh", carry=["pack"], timeout_s=600)
#
# Results land in $OUT: report.md (the comparison, from train report), console.txt, and each run's small
# files (config, log, stage summaries, predictions, metrics, shortcut.json/csv, branch_probe.csv) under
# runs/; checkpoints and caches stay in $WORK. BUDGET_S bounds the whole command: each run's chain is
# stopped when the budget (less REPORT_S for the report) is spent, and what it wrote still comes back.
# EXTRA_ARGS: more `train pipeline` options (the CPU dry run in tests/test_gpu_scripts.py shrinks
# everything with them); SEG_ARGS: more `train infnet` options; LIMIT: slices per audited set;
# CHOOSE_ON_TRAIN=1: each run also audited on COVID-SemiSeg's labelled train slices (shortcut-train.json),
# the slices that choose among variants (the test slices report).
set -uo pipefail
PACK=${PACK:-pack}
OUT=${OUT:-gpu-out}
WORK=${WORK:-${TMPDIR:-/tmp}/covid-lab-compare}
SEEDS=${SEEDS:-0 1 2}
BUDGET_S=${BUDGET_S:-540}
REPORT_S=${REPORT_S:-40}
LOW_PRIORITY=${LOW_PRIORITY:-}  # recipes whose runs get the CPU only when the others leave it (nice 10)
THREADS=${THREADS:-2}  # CPU threads per run: the runs share the machine's cores
IMAGE_SIZE=${IMAGE_SIZE:-224}
PY=${PYTHON:-python3}
# the default and the recipe before guidance (core/training/recipes.py)
RECIPES=${RECIPES:-$($PY -c "from core.training.recipes import BEFORE_GUIDANCE as b, DEFAULT_RECIPE as d; print(d, b)")}
DEADLINE=$(( $(date +%s) + BUDGET_S - REPORT_S ))
mkdir -p "$OUT/runs" "$WORK/runs"
export PYTHONUNBUFFERED=1 COVID_LAB_CACHE=${COVID_LAB_CACHE:-$WORK/cache}

left() { local s=$(( DEADLINE - $(date +%s) )); echo $(( s > 1 ? s : 1 )); }  # never 0: `timeout 0` means no limit

# the files worth bringing back (train/gpu/outputs.py's rule): no checkpoints, no feature caches
copy_small() {
  $PY -c "import sys; from pathlib import Path; from train.gpu.outputs import copy_small; copy_small(Path(sys.argv[1]), Path(sys.argv[2]))" "$1" "$2"
}

one_run() {  # recipe seed: pipeline, audit, probe (stopped at the deadline), then its small files
  local name="$1-s$2" run="$WORK/runs/$1-s$2" t0=$SECONDS
  case " $LOW_PRIORITY " in *" $1 "*) renice -n 10 -p $BASHPID >/dev/null ;; esac
  mkdir -p "$OUT/runs/$name"
  OMP_NUM_THREADS=$THREADS timeout "$(left)" $PY -m train pipeline --data-root "$PACK" --recipe "$1" --seed "$2" \
      --image-size "$IMAGE_SIZE" --segmenter "$WORK/infnet/best.pt" --out "$run" --resume --no-progress ${EXTRA_ARGS:-} >"$OUT/runs/$name.out" 2>&1 \
    && OMP_NUM_THREADS=$THREADS timeout "$(left)" $PY -m train shortcut --run "$run" --data-root "$PACK" --no-progress ${LIMIT:+--limit $LIMIT} \
      >>"$OUT/runs/$name.out" 2>&1 \
    && timeout "$(left)" $PY -m train probe --run "$run" >>"$OUT/runs/$name.out" 2>&1
  local rc=$?
  if [ $rc = 0 ] && [ -n "${CHOOSE_ON_TRAIN:-}" ]; then  # the audit on the labelled slices that choose variants
    OMP_NUM_THREADS=$THREADS timeout "$(left)" $PY -m train shortcut --run "$run" --data-root "$PACK" --no-progress \
      --external-split train ${LIMIT:+--limit $LIMIT} >>"$OUT/runs/$name.out" 2>&1 || echo "$name: the train-split audit did not finish"
  fi
  copy_small "$run" "$OUT/runs/$name"
  echo "$name: exit $rc after $(( SECONDS - t0 )) s"
  return $rc
}

{
  source bench/gpu_env.sh || exit 2
  t0=$SECONDS
  # every slice decoded and framed once, on the CPU cores, while the segmenter trains on the GPU
  timeout "$(left)" $PY - "$PACK" "$IMAGE_SIZE" $RECIPES >"$OUT/warm.out" 2>&1 <<'PY' &
import os, sys
from core.config import PipelineConfig
from core.data.slices import resolve_data_root
from train.gpu.warm import warm_caches
root, _ = resolve_data_root(sys.argv[1])
size, workers = int(sys.argv[2]), max(1, (os.cpu_count() or 2) - 2)
for recipe in sys.argv[3:]:
    print(recipe, warm_caches(root, PipelineConfig(recipe=recipe, image_size=size, hires_size=2 * size), False, workers))
PY
  warm=$!
  timeout "$(left)" $PY -m train infnet --data-root "$PACK" --out "$WORK/infnet" --precision bf16 --no-progress \
      ${SEG_ARGS:-} >"$OUT/infnet.out" 2>&1 || { echo "error: the segmenter failed (infnet.out)"; tail -5 "$OUT/infnet.out"; exit 1; }
  mkdir -p "$OUT/infnet" && copy_small "$WORK/infnet" "$OUT/infnet"
  echo "segmenter: $(( SECONDS - t0 )) s"
  wait $warm || echo "warning: the cache warm-up failed (warm.out): the runs decode for themselves"
  echo "warm-up and segmenter: $(( SECONDS - t0 )) s; $(left) s left for the runs"
  pids=()
  for r in $RECIPES; do for s in $SEEDS; do one_run "$r" "$s" & pids+=($!); done; done
  failed=0
  for p in "${pids[@]}"; do wait "$p" || failed=$(( failed + 1 )); done
  echo "runs: $failed of ${#pids[@]} did not finish every step; all done at $(( SECONDS - t0 )) s"
  finished=$(for d in "$WORK"/runs/*/; do [ -f "$d/shortcut.json" ] && echo "$d"; done)
  if [ -n "$finished" ]; then
    $PY -m train report $finished --out "$OUT/report.md" && echo "report: $OUT/report.md"
  else
    echo "error: no run finished its audit: nothing to report"; exit 1
  fi
  exit $(( failed > 0 ))
} 2>&1 | tee "$OUT/console.txt"
exit "${PIPESTATUS[0]}"
