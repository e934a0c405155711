"""COVID-SemiSeg reader: labelled slices with infection masks, and the unlabelled slices (D2)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.data.covidct import read_covidct
from core.data.errors import DataError
from core.data.roots import dataset_root

LABELLED = {
    "train": ("TrainingSet/LungInfection-Train/Doctor-label", "TrainingSet/MultiClassInfection-Train"),
    "test": ("TestingSet/LungInfection-Test", "TestingSet/MultiClassInfection-Test"),
}
UNLABELLED = "TrainingSet/LungInfection-Train/Pseudo-label/Imgs"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


@dataclass(frozen=True)
class SegSlice:
    key: str
    image: Path
    mask: Path | None  # binary infection mask (0/255); None for unlabelled slices
    multiclass: Path | None  # 0 background, 1 ground glass, 2 consolidation


def semiseg_root(data_root: str | Path) -> Path:
    """Accept either the folder holding semiseg/ or semiseg/ itself."""
    return dataset_root(data_root, "semiseg", "TrainingSet", "COVID-SemiSeg layout (TrainingSet/, TestingSet/)")


def _images(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise DataError(f"{folder}: folder missing")
    return sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                  key=lambda p: (len(p.stem), p.stem))


def read_labelled(data_root: str | Path, split: str) -> list[SegSlice]:
    root = semiseg_root(data_root)
    binary_dir, multi_dir = (root / d for d in LABELLED[split])
    out = []
    for img in _images(binary_dir / "Imgs"):
        gt = binary_dir / "GT" / f"{img.stem}.png"
        if not gt.exists():
            raise DataError(f"{img}: no mask at {gt}")
        multi = root / LABELLED[split][1] / "GT" / f"{img.stem}.png"
        out.append(SegSlice(f"semiseg-{split}/{img.name}", img, gt, multi if multi.exists() else None))
    return out


def read_unlabelled(data_root: str | Path) -> list[SegSlice]:
    root = semiseg_root(data_root)
    return [SegSlice(f"semiseg-unlabelled/{p.name}", p, None, None) for p in _images(root / UNLABELLED)]


def unlabelled_pool(data_root, sources=("semiseg", "covidct")) -> list[tuple[str, Path]]:
    """(key, path) of every slice Algorithm 1 may pseudo-label. COVID-CT class labels are not read."""
    pool = []
    if "semiseg" in sources:
        pool += [(s.key, s.image) for s in read_unlabelled(data_root)]
    if "covidct" in sources:
        pool += [(f"covid-ct/{s.key}", s.path) for s in read_covidct(data_root)]
    return pool
