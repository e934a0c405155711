"""COVID-CT reader: the official train/val/test lists, labels and patient ids.

Layout (as in `../shared/data/covid-ct`, and as `core.data.phantom.write_dataset` writes it):
CT_COVID/, CT_NonCOVID/, splits/{train,val,test}CT_{COVID,NonCOVID}.txt, metadata/ (optional).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from core.data.errors import DataError
from core.data.roots import dataset_root

SPLITS = ("train", "val", "test")
CLASSES = (("CT_NonCOVID", 0), ("CT_COVID", 1))


@dataclass(frozen=True)
class Slice:
    key: str  # "CT_COVID/name.png": unique within the data set
    path: Path
    label: int  # 1 COVID, 0 not
    split: str
    patient: str  # "" where the metadata has none


def covidct_root(data_root: str | Path) -> Path:
    """Accept either the folder holding covid-ct/ or covid-ct/ itself."""
    return dataset_root(data_root, "covid-ct", "splits", "COVID-CT layout (CT_COVID/, CT_NonCOVID/, splits/)")


def _patient_ids(root: Path) -> dict[str, str]:
    """Map 'CT_COVID/name' -> patient id, from whatever metadata is present."""
    ids: dict[str, str] = {}
    meta = root / "metadata"
    csv = meta / "NonCOVID-CT-MetaInfo.CVT-copy.csv"
    xlsx = meta / "COVID-CT-MetaInfo.xlsx"
    try:
        import pandas as pd

        if csv.exists():
            df = pd.read_csv(csv)
            for name, pid in zip(df["image name"], df["patient id"]):
                ids[f"CT_NonCOVID/{name}"] = str(pid)
        if xlsx.exists():
            df = pd.read_excel(xlsx, header=None)
            for name, pid in zip(df[0], df[1]):
                if isinstance(name, str) and isinstance(pid, str):
                    # COVID patient numbers restart per paper: qualify by the source paper prefix.
                    ids[f"CT_COVID/{name}"] = f"{name.split('-p')[0]}:{pid.strip()}"
    except (ImportError, KeyError, ValueError) as exc:
        raise DataError(f"{meta}: metadata cannot be read ({exc})") from None
    return ids


def read_covidct(data_root: str | Path) -> list[Slice]:
    """All slices of the official splits, in list order. Missing files are an error naming them."""
    root = covidct_root(data_root)
    pids = _patient_ids(root)
    out: list[Slice] = []
    missing: list[str] = []
    for split in SPLITS:
        for folder, label in CLASSES:
            lst = root / "splits" / f"{split}{folder}.txt"
            if not lst.exists():
                raise DataError(f"{lst}: split list missing")
            for name in lst.read_text().split("\n"):
                name = name.strip()
                if not name:
                    continue
                path = root / folder / name
                if not path.is_file():
                    missing.append(str(path))
                    continue
                key = f"{folder}/{name}"
                out.append(Slice(key, path, label, split, pids.get(key, "")))
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise DataError(f"split lists name {len(missing)} missing files: {', '.join(missing[:5])}{more}")
    return out
