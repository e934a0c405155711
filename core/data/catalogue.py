"""Every slice of every data set under a data root, one row each: what the dashboard's Data page browses
before any model exists.

    COVID-CT       by split (train, val, test), COVID / non-COVID, patient ids where the metadata has them
    COVID-SemiSeg  its labelled training and test slices (with the expert's infection mask) and its
                   unlabelled slices; all from COVID-19 patients
    COVID-CT-MD    by patient (slices.csv, in body order: by slice location), its diagnosis: COVID-19, or
                   not (normal, community-acquired pneumonia); optional in a data root

Slice keys are the ones the rest of the project uses (core.data.covidct, core.data.semiseg); a COVID-CT-MD
slice is named `covid-ct-md/<file>` as slices.csv lists it. Only the lists are read here, no image.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from core.data.roots import DataError

SOURCES = ("COVID-CT", "COVID-SemiSeg", "COVID-CT-MD")
COLUMNS = ("source", "group", "key", "path", "label", "mask", "patient", "note")
LABELS = {1: "COVID", 0: "non-COVID"}
SEMISEG_GROUPS = {"train": "labelled train", "test": "labelled test"}


def _covidct(root) -> list[dict]:
    from core.data.covidct import read_covidct

    return [{"source": "COVID-CT", "group": s.split, "key": s.key, "path": str(s.path), "label": LABELS[s.label],
             "mask": "", "patient": s.patient, "note": ""} for s in read_covidct(root)]


def _semiseg(root) -> list[dict]:
    from core.data.semiseg import read_labelled, read_unlabelled

    rows = [{"source": "COVID-SemiSeg", "group": SEMISEG_GROUPS[split], "key": s.key, "path": str(s.image),
             "label": LABELS[1], "mask": str(s.mask), "patient": "", "note": "expert infection mask"}
            for split in SEMISEG_GROUPS for s in read_labelled(root, split)]
    return rows + [{"source": "COVID-SemiSeg", "group": "unlabelled", "key": s.key, "path": str(s.image),
                    "label": LABELS[1], "mask": "", "patient": "", "note": "unlabelled (from a COVID-19 CT volume)"}
                   for s in read_unlabelled(root)]


def _ctmd(root) -> list[dict]:
    from core.data.ctmd import FOLDER, read_records

    records = sorted(read_records(root), key=lambda r: (r.patient, r.slice_location))
    visible = {True: "infection visible", False: "no infection visible", None: "no slice label"}
    return [{"source": "COVID-CT-MD", "group": r.patient, "key": f"{FOLDER}/{r.file}", "path": str(r.path),
             "label": LABELS[r.label], "mask": "", "patient": r.patient,
             "note": f"{r.diagnosis} · {visible[r.infection_visible]} · {r.slice_location:g} mm"} for r in records]


READERS = {"COVID-CT": _covidct, "COVID-SemiSeg": _semiseg, "COVID-CT-MD": _ctmd}


def catalogue(data_root: str | Path) -> tuple[pd.DataFrame, dict[str, str]]:
    """(one row per slice: COLUMNS, the sources missing from the data root -> why). A source whose lists
    cannot be read is named with the reader's error, never silently left out."""
    rows, missing = [], {}
    for source, read in READERS.items():
        try:
            rows += read(data_root)
        except DataError as exc:
            missing[source] = str(exc)
    return pd.DataFrame(rows, columns=list(COLUMNS)), missing
