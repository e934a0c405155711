"""A run folder (`runs/<name>/`) holds everything one run produced; every stage reads and writes it.

    config.json        resolved configuration of each stage that ran (data, backbone, recipe, seed)
    log.txt            one line per event, appended
    global/ ...        one folder per trained stage (core.models.network.STAGES): best.pt, last.pt, summary.json
    predictions.csv    per-slice probabilities of every branch, every split
    features/          cached pooled vectors, maps and masks (keyed by what produced them)
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

from core.runs.checkpoint import atomic_write_text

SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


class RunError(ValueError):
    pass


def read_json(path: Path):
    """A JSON file a run wrote; one cut short or edited by hand is a RunError naming it, not a traceback."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RunError(f"{path}: not readable JSON ({exc}); it was cut short or edited: restore it, or run again the "
                       "command that writes it") from None


def read_table(path: Path, **kw):
    """A CSV table a run wrote (pandas.read_csv with `kw`); an empty or broken one is a RunError naming it."""
    import pandas as pd

    try:
        return pd.read_csv(path, **kw)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        said = (str(exc).splitlines() or [""])[0]
        raise RunError(f"{path}: not a readable table ({type(exc).__name__}: {said}); restore it, or run again the "
                       "command that writes it") from None
    except ValueError as exc:  # usecols naming a column the file lacks
        raise RunError(f"{path}: {exc}") from None


def read_json_object(path: Path) -> dict:
    """`read_json` of a file that must hold an object (a configuration, a result)."""
    value = read_json(path)
    if not isinstance(value, dict):
        raise RunError(f"{path}: holds a JSON {type(value).__name__}, not the object it was written as")
    return value


def safe_child(parent: str | Path, name: str) -> Path:
    """parent/name, refusing names that could leave `parent` (slashes, '..', hidden files)."""
    if not SAFE_NAME.match(name) or ".." in name:
        raise RunError(f"invalid name {name!r}: use letters, digits, '.', '_' and '-' (no path separators)")
    return Path(parent) / name


class RunFolder:
    def __init__(self, path: str | Path, create: bool = False):
        self.path = Path(path)
        if self.path.name and not SAFE_NAME.match(self.path.name):
            raise RunError(f"invalid run name {self.path.name!r}: use letters, digits, '.', '_' and '-'")
        if create:
            self.path.mkdir(parents=True, exist_ok=True)
        elif not (self.path / "config.json").exists():
            raise RunError(f"{self.path}: not a run folder (no config.json); train one with `python -m train global`")

    @property
    def config(self) -> dict:
        f = self.path / "config.json"
        return read_json_object(f) if f.exists() else {}

    def update_config(self, **sections) -> dict:
        cfg = self.config
        cfg.update(sections)
        atomic_write_text(self.path / "config.json", json.dumps(cfg, indent=1, default=str))
        return cfg

    def stage(self, name: str) -> Path:
        return self.path / name

    def has_stage(self, name: str) -> bool:
        return (self.path / name / "best.pt").exists()

    def log(self, msg: str) -> None:
        with open(self.path / "log.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {msg}\n")

    @property
    def predictions_csv(self) -> Path:
        return self.path / "predictions.csv"

    @property
    def features_dir(self) -> Path:
        return self.path / "features"
