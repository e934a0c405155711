"""trust.json and trust.csv in a run folder: each part (maps, sets, ood) kept with the key it was computed under.

A part is reused when its key matches: a hash of what produced it (the run's checkpoints, the predictions it
read, its settings); any change rebuilds that part, the others are kept. A file that cannot be read is rebuilt,
never trusted. trust.csv holds the maps part's rows (one per branch x method x metric).
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable

from core.explain.fidelity import clean
from core.runs.checkpoint import atomic_write_text
from core.runs.feature_cache import file_digest, key_of
from core.models.network import STAGES
from core.runs.runfolder import RunFolder
from core.trust.map_checks import csv_rows

TRUST_JSON = "trust.json"
TRUST_CSV = "trust.csv"
PARTS = ("maps", "sets", "ood")


def checkpoints(run: RunFolder) -> dict[str, str]:
    """Each trained stage's checkpoint digest: what every part's results depend on."""
    return {s: file_digest(run.stage(s) / "best.pt") for s in STAGES if (run.stage(s) / "best.pt").exists()}


def predictions_digest(run: RunFolder) -> str:
    return file_digest(run.predictions_csv)


def load(run: RunFolder) -> dict:
    """{part: result} of trust.json; {} when there is none or it cannot be read."""
    f = run.path / TRUST_JSON
    try:
        data = json.loads(f.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def save(run: RunFolder, part: str, payload: dict) -> None:
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r}; choose one of {', '.join(PARTS)}")
    data = {k: v for k, v in load(run).items() if k in PARTS}
    data[part] = payload
    atomic_write_text(run.path / TRUST_JSON, json.dumps(data, indent=1))
    if part == "maps":
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(csv_rows(payload["rows"]))
        atomic_write_text(run.path / TRUST_CSV, buf.getvalue())


def cached(run: RunFolder, part: str, parts: dict, compute: Callable[[], dict]) -> tuple[dict, bool]:
    """(the part, whether it was read from the file): read when its key matches `parts`, else computed and saved."""
    key = key_of(parts)
    hit = load(run).get(part)
    if isinstance(hit, dict) and hit.get("key") == key:
        return hit, True
    out = clean({**compute(), "key": key, "key_parts": parts})
    save(run, part, out)
    return out, False
