"""Reading a data pack (built by `python -m train pack`, train/pack.py): any command reads one as its --data-root.
Every file's sha256 is checked against the pack's manifest first (once per process), and the first damaged or
missing file is a DataError naming it. The pack keeps the data root's layout and file names, so every reader
works unchanged; what a pack holds and how close its slices read to the raw files is in train/pack.py.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from core.data.errors import DataError
from core.data.imaging import read_slice

MANIFEST = "PACK_MANIFEST.json"
FORMAT = "covid-lab-pack/1"


def sha256_of(path: Path) -> str:
    """A file's sha256 (hex), read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def to_u8(img01: np.ndarray) -> np.ndarray:
    """A float image in [0, 1] as uint8, the way a pack stores and compares slices."""
    return (np.clip(img01, 0, 1) * 255).round().astype(np.uint8)


def decoded_digest(path: Path) -> str:
    """Short sha256 of a slice file's pixels as core.data.imaging.read_slice decodes them (uint8)."""
    return hashlib.sha256(to_u8(read_slice(path)).tobytes()).hexdigest()[:16]


def pack_root(data_root) -> Path | None:
    """The pack folder holding `data_root` (the pack itself, or its covid-ct/ or semiseg/), or None."""
    root = Path(data_root)
    for cand in (root, root.parent):
        if (cand / MANIFEST).is_file():
            return cand
    return None


def read_manifest(root: Path) -> dict:
    try:
        manifest = json.loads((root / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{root / MANIFEST}: unreadable pack manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise DataError(f"{root / MANIFEST}: not a {FORMAT} manifest (format {manifest.get('format')!r})")
    return manifest


_verified: dict[tuple, dict] = {}


def verify(root, force: bool = False) -> dict:
    """Check every file of a pack against its manifest; returns the manifest. The first damaged or
    missing file is a DataError naming it. Done once per process per manifest unless `force`."""
    root = Path(root).resolve()
    st = (root / MANIFEST).stat()
    key = (str(root), st.st_mtime_ns, st.st_size)
    if key in _verified and not force:
        return _verified[key]
    manifest = read_manifest(root)
    for rel, entry in manifest["files"].items():
        path = root / rel
        if not path.is_file():
            raise DataError(f"damaged pack {root}: {rel} is missing (rebuild it with `python -m train pack`)")
        if sha256_of(path) != entry["sha256"]:
            raise DataError(f"damaged pack {root}: {rel} does not match its sha256 in {MANIFEST} "
                            "(rebuild it with `python -m train pack`)")
    _verified[key] = manifest
    return manifest


def check(data_root) -> None:
    """Verify the pack a data root lies in, if it lies in one (the readers call this)."""
    root = pack_root(data_root)
    if root is not None:
        verify(root)


def decode_check(root, n: int = 16) -> list[str]:
    """Files (n, spread over the pack) this machine decodes to other pixels than the packing machine
    did (another libwebp, say): the manifest's error figures then do not hold exactly."""
    root = Path(root)
    images = read_manifest(root)["images"]
    rels = sorted(images)
    picked = rels[:: max(1, len(rels) // n)][:n] if rels else []
    return [r for r in picked if decoded_digest(root / r) != images[r]["decoded"]]


def pack_bytes(root) -> int:
    root = Path(root)
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
