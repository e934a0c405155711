"""Leakage audit of a COVID-CT-style data set; prints one JSON report.

    python -m train audit --data-root ../shared/data
"""
from __future__ import annotations

import json

from core.audits.leakage import audit
from core.data.covidct import read_covidct
from core.data.slices import resolve_data_root
from core.runs.checkpoint import atomic_write_text, check_writable

from .common import nonnegative_int


def add_args(p):
    p.add_argument("--data-root", default=None, help="folder holding covid-ct/ (default: synthetic phantoms)")
    p.add_argument("--max-distance", type=nonnegative_int, default=4,
                   help="pHash Hamming distance (of 64 bits) for a near-duplicate")
    p.add_argument("--out", default=None, help="also write the report to this JSON file")


def run(args) -> dict:
    if args.out:
        check_writable(args.out)  # before the slices are hashed
    root, _ = resolve_data_root(args.data_root)
    report = audit(read_covidct(root), args.max_distance)
    text = json.dumps(report, indent=1)
    if args.out:
        atomic_write_text(args.out, text)
    print(text)
    return report
