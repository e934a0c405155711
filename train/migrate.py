"""Bring a run folder saved by an older version of the lab up to today's format, once (core/runs/migrate.py).

    python -m train migrate runs/lite0          # then every reader, and `train pipeline --resume`, accept it

Fills in what the run predates with what it ran with, keeps the original config.json beside it
(config.before-migrate.json) and records the format; retrains and recomputes nothing. A run already current
is left alone and says so. Migrate a run only while no process is training it.
"""
from __future__ import annotations

import json

from core.runs.migrate import migrate


def add_args(p):
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (each holds config.json)")


def run(args) -> int:
    for path in args.runs:
        changes = migrate(path)
        print(json.dumps({"run": path, "migrated": bool(changes),
                          "changes": changes or ["already in today's format: left alone"]}))
    return 0
