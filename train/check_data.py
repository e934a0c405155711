"""Check a data folder before any training: the layout --data-root expects and the file counts of the
published COVID-CT and COVID-SemiSeg sets, read with the same readers the stages use.

    python -m train check-data --data-root ../shared/data
    python -m train check-data --layout          # print the expected folder tree and stop
    python -m train check-data --series scan/ [more.dcm ... | study.zip]   # DICOM series, before predicting on them

Reads only; writes nothing. All well: the counts as one JSON object, exit 0. Otherwise one line per
problem on standard error, naming the missing or misplaced path and what belongs there (and where a
misplaced file or folder was found instead), then one `error:` line, exit 2. `warning:` lines name
optional parts that are absent (patient metadata) and files the readers ignore; they do not fail the
check. The counts are compared with the published sets; for a phantom data set (core/data/phantom.py) with
the counts its marker file records. --subset turns count differences into warnings (a deliberate subset).
COVID-CT-MD (covid-ct-md/) is optional: when present, each patient's files are counted against slices.csv
and one file per patient is decoded.

--series checks DICOM series as `train predict` will read them (core/data/series.py: a folder or .zip is
one input, loose files of one series another): every slice decoded; per series, its UID, slice count,
ordering, spacing and gaps as JSON on standard output; one `problem:` line per bad file, gap or
disorder, one `warning:` line per note (a second series beside the first), then exit 2 if any problem.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from core.data import ctmd
from core.data.covidct import CLASSES, SPLITS, read_covidct
from core.data.imaging import ImageReadError, read_slice
from core.data.roots import DataError
from core.data.semiseg import IMAGE_SUFFIXES, LABELLED, UNLABELLED, read_labelled, read_unlabelled
from core.data.series import group_inputs, read_series

# core.data.phantom.SYNTHETIC_MARKER: the counts a phantom set was written with
PHANTOM_MARKER = "SYNTHETIC_PHANTOMS.json"
PACK_MANIFEST = "PACK_MANIFEST.json"  # core.data.pack.MANIFEST

# What the published sets hold (COVID-CT: the official lists of UCSD-AI4H/COVID-CT; COVID-SemiSeg: the
# Dataset/ folder of DengPingFan/Inf-Net). Names in the lists: split + class folder.
PUBLISHED_LISTS = {("train", "CT_COVID"): 191, ("val", "CT_COVID"): 60, ("test", "CT_COVID"): 98,
                   ("train", "CT_NonCOVID"): 234, ("val", "CT_NonCOVID"): 58, ("test", "CT_NonCOVID"): 105}
OLDER_NONCOVID_LISTS = {"train": 233, "val": 56, "test": 102}  # the first release's 391 non-COVID slices
PUBLISHED_SEMISEG = {"train": 50, "test": 48, "unlabelled": 1600}
# Metadata the COVID-CT reader takes patient ids from (optional: only `train audit` uses patient ids).
METADATA = {
    "COVID-CT-MetaInfo.xlsx": "patient ids of the COVID slices (COVID-CT-MetaInfo.xlsx of UCSD-AI4H/COVID-CT)",
    "NonCOVID-CT-MetaInfo.CVT-copy.csv": "patient ids of the non-COVID slices (Data/Meta/NonCOVID-CT-MetaInfo.csv "
                                         "of Coronavirus-Visualization-Team/CVT_COVID-CT-CNN, renamed)",
}
SEMISEG_FOLDERS = {  # folder under semiseg/ -> what belongs there (after its count)
    f"{LABELLED['train'][0]}/Imgs": "labelled training slices (jpg)",
    f"{LABELLED['train'][0]}/GT": "binary infection masks of those slices (png, 0/255, the names of Imgs/)",
    f"{LABELLED['test'][0]}/Imgs": "labelled test slices (jpg)",
    f"{LABELLED['test'][0]}/GT": "binary infection masks of those slices (png, 0/255, the names of Imgs/)",
    UNLABELLED: "unlabelled slices (jpg)",
}
MAX_LINES = 10  # per kind of problem; the rest are counted in one more line
INDEX_LIMIT = 200_000  # entries walked under --data-root when looking for misplaced files


def add_args(p):
    p.add_argument("--data-root", default=None,
                   help="folder holding covid-ct/ and semiseg/ (e.g. ../shared/data); required unless --layout")
    p.add_argument("--subset", action="store_true",
                   help="the data are a deliberate subset: counts that differ from the published sets are warnings")
    p.add_argument("--layout", action="store_true", help="print the folder tree --data-root expects and stop")
    p.add_argument("--series", nargs="+", metavar="PATH", default=None,
                   help="check DICOM series (folders, .zip archives, the files of a series) before predicting on them")


def layout_tree() -> str:
    """The folder tree --data-root expects, with the published counts (docs/data.md shows this text)."""
    lists = {folder: " ".join(f"{split}{folder}.txt" for split in SPLITS) for folder, _ in CLASSES}
    n = {folder: sum(v for (_, f), v in PUBLISHED_LISTS.items() if f == folder) for folder, _ in CLASSES}
    seg = PUBLISHED_SEMISEG
    return "\n".join([
        "DATA/                                   (pass as --data-root DATA, or make demo DATA=DATA)",
        "├── covid-ct/                           COVID-CT, UCSD-AI4H/COVID-CT",
        f"│   ├── CT_COVID/                       {n['CT_COVID']} slices (Images-processed/CT_COVID.zip, unzipped)",
        f"│   ├── CT_NonCOVID/                    {n['CT_NonCOVID']} slices (Images-processed/CT_NonCOVID.zip, unzipped)",
        "│   ├── splits/                         the 6 official lists of Data-split/COVID/ and Data-split/NonCOVID/, flat:",
        f"│   │                                   {lists['CT_COVID']}",
        f"│   │                                   {lists['CT_NonCOVID']}",
        "│   └── metadata/                       optional: COVID-CT-MetaInfo.xlsx, NonCOVID-CT-MetaInfo.CVT-copy.csv",
        "└── semiseg/                            COVID-SemiSeg, DengPingFan/Inf-Net (COVID-SemiSeg.zip: its Dataset/ folder)",
        "    ├── TrainingSet/LungInfection-Train/",
        f"    │   ├── Doctor-label/Imgs/          {seg['train']} labelled slices (jpg)",
        f"    │   ├── Doctor-label/GT/            {seg['train']} infection masks (png, same names)",
        f"    │   └── Pseudo-label/Imgs/          {seg['unlabelled']} unlabelled slices (jpg)",
        "    ├── TestingSet/LungInfection-Test/",
        f"    │   ├── Imgs/                       {seg['test']} labelled slices (jpg)",
        f"    │   └── GT/                         {seg['test']} infection masks (png, same names)",
        "    └── TrainingSet/MultiClassInfection-Train/, TestingSet/MultiClassInfection-Test/   optional (GT: 1 GGO, 2 consolidation)",
    ])


# ------------------------------------------------------------------------------------------ helpers

class Findings:
    def __init__(self):
        self.problems: list[str] = []
        self.warnings: list[str] = []

    def many(self, lines: list[str], what: str, kind: str = "problems") -> None:
        """Record lines, at most MAX_LINES of them, and one line counting the rest."""
        out = getattr(self, kind)
        out += lines[:MAX_LINES]
        if len(lines) > MAX_LINES:
            out.append(f"... and {len(lines) - MAX_LINES} more {what}")

    def report(self, what: str, prefix: str = "", after: str = "") -> None:
        """Warnings and problems on standard error, one a line; any problem: a DataError counting them."""
        for line in self.warnings:
            print(f"warning: {line}", file=sys.stderr)
        if self.problems:
            for line in self.problems:
                print(f"problem: {line}", file=sys.stderr)
            n = len(self.problems)
            raise DataError(f"{prefix}{n} problem{'s' if n > 1 else ''} {what} (listed above){after}")


class Index:
    """Every folder and file under the data root by name (bounded walk): where a misplaced part went."""

    def __init__(self, root: Path):
        self.dirs: dict[str, list[Path]] = {}
        self.files: dict[str, list[Path]] = {}
        seen = 0
        for base, dirnames, filenames in os.walk(root):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for d in dirnames:
                self.dirs.setdefault(d, []).append(Path(base) / d)
            for f in filenames:
                self.files.setdefault(f, []).append(Path(base) / f)
            seen += len(dirnames) + len(filenames)
            if seen > INDEX_LIMIT:
                break

    def dir_ending(self, rel: str, not_at: Path) -> Path | None:
        """A folder whose path ends with `rel` (e.g. 'Doctor-label/Imgs'), other than `not_at`."""
        parts = Path(rel).parts
        for p in self.dirs.get(parts[-1], []):
            if p != not_at and p.parts[-len(parts):] == parts:
                return p
        return None

    def file(self, name: str, not_at: Path, claimed: set = frozenset()) -> Path | None:
        """A file of this name elsewhere, other than `not_at` and the paths in `claimed` (files in place)."""
        return next((p for p in self.files.get(name, []) if p != not_at and p not in claimed), None)


def _not_image(path: Path) -> str | None:
    """Why a file that should be an image is not one (read from its first bytes), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if not head:
        return "empty file"
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the image (fetch it with `git lfs pull`)"
    if head.lstrip().lower().startswith((b"<!doctype html", b"<html")):
        return "an HTML page, not an image (a failed download)"
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")) if folder.is_dir() else []


def _expected(root: Path) -> tuple[dict, dict, str]:
    """(list counts, semiseg counts, where they come from): the published sets, or a phantom set's marker."""
    marker = root / PHANTOM_MARKER
    if marker.is_file():
        try:
            spec = json.loads(marker.read_text())
            lists = {(split, folder): int(spec["counts"][split]) for split in SPLITS for folder, _ in CLASSES}
            seg = dict(zip(("train", "test", "unlabelled"), (int(v) for v in spec["seg"])))
            return lists, seg, f"the phantom set's {PHANTOM_MARKER}"
        except (ValueError, KeyError, TypeError):
            pass
    return PUBLISHED_LISTS, PUBLISHED_SEMISEG, "the published sets"


def _count(found: Findings, subset: bool, what: str, n: int, expected: int, source: str, hint: str = "") -> None:
    if n != expected:
        line = f"{what}: {n}; expected {expected} ({source}){hint}"
        (found.warnings if subset else found.problems).append(line)


def _misplaced_dir(index: Index, root: Path, path: Path, rel: str) -> str:
    elsewhere = index.dir_ending(rel, path)
    if elsewhere is not None:
        return f"; found at {elsewhere}: move it to {path}"
    zipped = index.file(f"{Path(rel).name}.zip", path)
    if zipped is not None:
        return f"; found {zipped}: unzip it so that {path} holds the images"
    return ""


# ---------------------------------------------------------------------------------------- COVID-CT

def check_covidct(root: Path, index: Index, found: Findings, lists: dict, source: str, subset: bool) -> dict:
    ct = root / "covid-ct"
    counts: dict = {}
    if not ct.is_dir():
        elsewhere = index.dirs.get("CT_COVID", []) or [p.parent for p in index.files.get("trainCT_COVID.txt", [])]
        hint = f"; COVID-CT files found under {elsewhere[0].parent}: rename that folder to {ct}" if elsewhere else ""
        found.problems.append(f"{ct}: missing; expected COVID-CT there (CT_COVID/, CT_NonCOVID/, splits/){hint}")
        return counts
    total = {folder: sum(v for (_, f), v in lists.items() if f == folder) for folder, _ in CLASSES}
    listed: dict[str, str] = {}  # key -> list it is in
    for folder, _ in CLASSES:
        d = ct / folder
        if not d.is_dir():
            found.problems.append(f"{d}: missing; expected the {total[folder]} {folder[3:]} slices there"
                                  + _misplaced_dir(index, root, d, folder))
            continue
        counts[folder] = len(_files(d))
    split_counts, lists_read = {}, {}
    for split in SPLITS:
        for folder, _ in CLASSES:
            name = f"{split}{folder}.txt"
            lst = ct / "splits" / name
            if not lst.is_file():
                elsewhere = index.file(name, lst)
                hint = f"; found at {elsewhere}: move it to {ct / 'splits'}/" if elsewhere else ""
                found.problems.append(f"{lst}: missing; expected the official {split} list of {folder} "
                                      f"(Data-split/ of UCSD-AI4H/COVID-CT){hint}")
                continue
            names = [n.strip() for n in lst.read_text(errors="replace").split("\n") if n.strip()]
            lists_read[(folder, name)] = names
            split_counts[f"{split}{folder}"] = len(names)
            older = (f" (the older 391-slice release has {OLDER_NONCOVID_LISTS[split]}: use the newer lists)"
                     if folder == "CT_NonCOVID" and len(names) == OLDER_NONCOVID_LISTS[split] else "")
            _count(found, subset, f"{lst}: names listed", len(names), lists[(split, folder)], source, older)
    all_keys = {f"{folder}/{n}" for (folder, _), names in lists_read.items() for n in names}
    claimed = {ct / key for key in all_keys}
    missing_files, wrong_class, twice, bad = [], [], [], []
    misfiled: set[Path] = set()
    for (folder, name), names in lists_read.items():
        if not (ct / folder).is_dir():
            continue
        for n in names:
            key = f"{folder}/{n}"
            if key in listed:
                twice.append(f"{ct / folder / n}: listed in splits/{listed[key]} and again in splits/{name}")
                continue
            listed[key] = name
            path = ct / folder / n
            if path.is_file():
                why = _not_image(path)
                if why:
                    bad.append(f"{path}: {why}")
                continue
            # the other class folder holds a file of this name that no list claims for that class: misfiled
            other = next((ct / f / n for f, _ in CLASSES
                          if f != folder and (ct / f / n).is_file() and f"{f}/{n}" not in all_keys), None)
            if other is not None:
                misfiled.add(other)
                wrong_class.append(f"{path}: missing (listed in splits/{name}); found in {other.parent}: "
                                   f"move it to {ct / folder}/")
            else:
                elsewhere = index.file(n, path, claimed)
                hint = f"; found at {elsewhere}: move it to {ct / folder}/" if elsewhere else ""
                missing_files.append(f"{path}: missing (listed in splits/{name}){hint}")
    found.many(wrong_class, "files in the other class folder")
    found.many(missing_files, "missing files")
    found.many(twice, "names listed twice")
    found.many(bad, "files that are not images")
    counts["splits"] = split_counts
    for folder, _ in CLASSES:
        if folder in counts:
            _count(found, subset, f"{ct / folder}: files", counts[folder], total[folder], source)
            extra = [p for p in _files(ct / folder) if f"{folder}/{p.name}" not in listed and p not in misfiled]
            if extra and len(lists_read) == len(SPLITS) * len(CLASSES):
                found.many([f"{p}: in no split list (the readers ignore it)" for p in extra],
                           f"unlisted files in {ct / folder}", kind="warnings")
    return counts


def _metadata(root: Path, slices, found: Findings, synthetic: bool) -> dict:
    meta = root / "covid-ct" / "metadata"
    present = sorted(p.name for p in _files(meta))
    if not synthetic:
        for name, what in METADATA.items():
            if not (meta / name).is_file():
                found.warnings.append(f"{meta / name}: missing; {what}; without it those slices carry no patient id "
                                      "(only `train audit`'s patient check uses them)")
    return {"metadata": present, "with_patient_id": sum(1 for s in slices if s.patient)}


# ------------------------------------------------------------------------------------ COVID-SemiSeg

def check_semiseg(root: Path, index: Index, found: Findings, expected: dict, source: str, subset: bool) -> dict:
    seg = root / "semiseg"
    counts: dict = {}
    if not (seg / "TrainingSet").is_dir():
        elsewhere = next((p.parent for p in index.dirs.get("TrainingSet", []) if p.parent != seg), None)
        hint = (f"; COVID-SemiSeg found at {elsewhere}: move its TrainingSet/ and TestingSet/ to {seg}/"
                if elsewhere else "")
        what = "missing" if not seg.is_dir() else "has no TrainingSet/"
        found.problems.append(f"{seg}: {what}; expected COVID-SemiSeg there (TrainingSet/, TestingSet/: the Dataset/ "
                              f"folder of Inf-Net's COVID-SemiSeg){hint}")
        return counts
    n_expected = {f"{LABELLED['train'][0]}/Imgs": expected["train"], f"{LABELLED['train'][0]}/GT": expected["train"],
                  f"{LABELLED['test'][0]}/Imgs": expected["test"], f"{LABELLED['test'][0]}/GT": expected["test"],
                  UNLABELLED: expected["unlabelled"]}
    images: dict[str, list[Path]] = {}
    for rel, what in SEMISEG_FOLDERS.items():
        d = seg / rel
        if not d.is_dir():
            found.problems.append(f"{d}: missing; expected {n_expected[rel]} {what} there"
                                  + _misplaced_dir(index, root, d, rel))
            continue
        files = _files(d)
        images[rel] = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        others = [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES]
        found.many([f"{p}: not a .jpg/.jpeg/.png file (the readers ignore it)" for p in others],
                   f"other files in {d}", kind="warnings")
        found.many([f"{p}: {why}" for p in images[rel] for why in [_not_image(p)] if why], f"bad files in {d}")
    for split, (binary_dir, multi_dir) in LABELLED.items():
        imgs, gts = images.get(f"{binary_dir}/Imgs"), images.get(f"{binary_dir}/GT")
        if imgs is not None:
            counts[f"{split}_labelled"] = len(imgs)
            _count(found, subset, f"{seg / binary_dir / 'Imgs'}: labelled {split} slices", len(imgs), expected[split],
                   source)
        if imgs is not None and gts is not None:
            gt_stems = {p.stem for p in gts if p.suffix.lower() == ".png"}
            img_stems = {p.stem for p in imgs}
            found.many([f"{seg / binary_dir / 'GT' / (p.stem + '.png')}: missing; expected the mask of {p}"
                        for p in imgs if p.stem not in gt_stems], f"missing masks in {seg / binary_dir / 'GT'}")
            found.many([f"{p}: a mask with no slice; expected {seg / binary_dir / 'Imgs' / p.stem}.jpg"
                        for p in gts if p.stem not in img_stems], f"masks without a slice in {seg / binary_dir / 'GT'}")
        multi = seg / multi_dir / "GT"
        counts[f"{split}_multiclass_masks"] = len(_files(multi))
    if UNLABELLED in images:
        counts["unlabelled"] = len(images[UNLABELLED])
        _count(found, subset, f"{seg / UNLABELLED}: unlabelled slices", counts["unlabelled"], expected["unlabelled"],
               source)
    return counts


# ------------------------------------------------------------------------------------------ COVID-CT-MD

def check_ctmd(root: Path, found: Findings) -> dict | None:
    """COVID-CT-MD, when present (it is optional): each patient's files against slices.csv, one decoded.
    Returns the files found per patient, or None when there is no covid-ct-md/."""
    if not (root / ctmd.FOLDER).is_dir():
        return None
    try:
        records = ctmd.read_records(root)
    except DataError as exc:
        found.problems.append(f"COVID-CT-MD reader: {exc}")
        return {}
    counts = {}
    for patient, recs in ctmd.by_patient(records).items():
        listed = {r.path for r in recs}
        folders = sorted({r.path.parent for r in recs})
        gone = [f for f in folders if not f.is_dir()]
        if gone:
            found.problems.append(f"{gone[0]}: missing; expected patient {patient}'s {len(listed)} slices there "
                                  f"(listed in {ctmd.CSV})")
            continue
        on_disk = {p for f in folders for p in _files(f)}
        counts[patient] = len(on_disk)
        found.many([f"{p}: missing; listed in {ctmd.CSV} for patient {patient}" for p in sorted(listed - on_disk)],
                   f"missing slices of {patient}")
        found.many([f"{p}: not listed in {ctmd.CSV}; a patient's folder holds its listed slices only"
                    for p in sorted(on_disk - listed)], f"unlisted files of {patient}")
        present = sorted(listed & on_disk)
        if present:
            try:
                read_slice(present[0])
            except ImageReadError as exc:
                found.problems.append(str(exc))
    return counts


# ------------------------------------------------------------------------------------------ DICOM series

def check_series(paths: list[str]) -> int:
    """Read and decode DICOM series as `train predict` will; report each, name every problem."""
    found = Findings()
    report = []
    for _, group in group_inputs(paths):
        series = read_series(group)
        found.many([str(e) for e in series.rejected], "bad files")
        for vol in series.volumes:
            undecodable = []
            for s in vol.slices:
                try:
                    s.image()
                except ImageReadError as exc:
                    undecodable.append(str(exc))
            report.append({**vol.summary(), "undecodable": len(undecodable)})
            found.many([str(e) for e in vol.left_out] + undecodable, f"bad files of series {vol.series_uid}")
            found.many(vol.problems, f"problems of series {vol.series_uid}")
            found.many(vol.notes, f"notes on series {vol.series_uid}", kind="warnings")
    print(json.dumps({"series": report}, indent=1))
    found.report("with the DICOM series given")
    return 0


# --------------------------------------------------------------------------------------------- run

def check(data_root, subset: bool = False) -> tuple[dict, Findings]:
    """(counts, findings) for a data root; reads only."""
    root = Path(data_root)
    found = Findings()
    if not root.is_dir():
        found.problems.append(f"{root}: {'not a folder' if root.exists() else 'does not exist'}; expected the "
                              "folder holding covid-ct/ and semiseg/")
        return {}, found
    if (root / "splits").is_dir() or (root / "TrainingSet").is_dir():
        found.problems.append(f"{root}: this is covid-ct/ or semiseg/ itself; pass the folder holding both "
                              f"({root.resolve().parent})")
        return {}, found
    index = Index(root)
    lists, seg_expected, source = _expected(root)
    synthetic = source != "the published sets"
    counts: dict = {"data_root": str(root), "synthetic": synthetic, "expected_counts": source,
                    "pack": (root / PACK_MANIFEST).is_file()}
    n_before = len(found.problems)
    counts["covid-ct"] = check_covidct(root, index, found, lists, source, subset)
    if len(found.problems) == n_before:  # the layout holds: the stages' own reader must agree
        try:
            slices = read_covidct(root)
            counts["covid-ct"].update(_metadata(root, slices, found, synthetic),
                                      **{s: sum(1 for x in slices if x.split == s) for s in SPLITS})
        except DataError as exc:
            found.problems.append(f"COVID-CT reader: {exc}")
    n_before = len(found.problems)
    counts["semiseg"] = check_semiseg(root, index, found, seg_expected, source, subset)
    if len(found.problems) == n_before:
        try:
            for split in LABELLED:
                read_labelled(root, split)
            read_unlabelled(root)
        except DataError as exc:
            found.problems.append(f"COVID-SemiSeg reader: {exc}")
    md = check_ctmd(root, found)
    if md is not None:
        counts["covid-ct-md"] = md
    if found.warnings:
        counts["warnings"] = found.warnings
    return counts, found


def run(args):
    if args.layout:
        print(layout_tree())
        return 0
    if args.series:
        if args.data_root is not None:
            from core.errors import UsageError

            raise UsageError("--series checks DICOM series on their own; run --data-root apart")
        return check_series(args.series)
    if args.data_root is None:
        from core.errors import UsageError

        raise UsageError("--data-root is required (the folder holding covid-ct/ and semiseg/; see --layout)")
    counts, found = check(args.data_root, args.subset)
    found.report("with the data layout", prefix=f"{args.data_root}: ",
                 after="; `python -m train check-data --layout` shows the tree it expects")
    print(json.dumps(counts, indent=1))
    return 0
