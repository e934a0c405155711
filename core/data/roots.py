"""Where a data set lies under `--data-root`; readers raise core.data.errors.DataError for missing or misplaced data."""
from __future__ import annotations

from pathlib import Path

from core.data.errors import DataError
from core.data.pack import check


def dataset_root(data_root: str | Path, folder: str, marker: str, layout: str) -> Path:
    """The data set's own folder: `data_root`/`folder` when there, else `data_root` itself (so either may
    be passed). It must hold `marker`; `layout` names what was expected. A data pack's checksums
    (core/data/pack.py) are verified first."""
    root = Path(data_root)
    if not root.exists():
        raise DataError(f"data location {root} does not exist (pass --data-root, e.g. ../shared/data)")
    check(root)
    if (root / folder).is_dir():
        root = root / folder
    if not (root / marker).is_dir():
        raise DataError(f"{root}: no {marker}/ folder; expected the {layout}")
    return root
