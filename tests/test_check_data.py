"""`python -m train check-data`: the layout --data-root expects, checked before any training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from pydicom.uid import RLELossless

from core.data.phantom import CTMD_PATIENTS
from tests.dicom_series import series, write_ctmd, write_series
from train.__main__ import main
from train.check_data import PUBLISHED_LISTS, PUBLISHED_SEMISEG, layout_tree

ROOT = Path(__file__).resolve().parent.parent


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.is_dir(), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*"))}


@pytest.fixture
def data(phantom_root, tmp_path) -> Path:
    """A private copy of the phantom data set, free to break."""
    return Path(shutil.copytree(phantom_root, tmp_path / "data"))


def check(capsys, root, *extra) -> tuple[int, str, str]:
    rc = main(["check-data", "--data-root", str(root), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


def test_phantoms_pass_and_nothing_is_written(phantom_root, capsys):
    before = snapshot(phantom_root)
    rc, out, err = check(capsys, phantom_root)
    assert rc == 0, err
    counts = json.loads(out)
    spec = json.loads((phantom_root / "SYNTHETIC_PHANTOMS.json").read_text())
    assert counts["synthetic"] is True
    assert counts["covid-ct"]["splits"]["valCT_COVID"] == spec["counts"]["val"]
    assert counts["covid-ct"]["CT_NonCOVID"] == sum(spec["counts"].values())
    assert [counts["semiseg"][k] for k in ("train_labelled", "test_labelled", "unlabelled")] == spec["seg"]
    assert "problem:" not in err
    assert counts["covid-ct-md"] == {p: spec["ctmd"] for p in CTMD_PATIENTS}
    assert snapshot(phantom_root) == before


def test_covid_ct_md_is_optional(data, capsys):
    shutil.rmtree(data / "covid-ct-md")
    rc, out, err = check(capsys, data)
    assert rc == 0 and "problem:" not in err, err
    assert "covid-ct-md" not in json.loads(out)


def test_missing_folder_is_named(data, capsys):
    gt = data / "semiseg" / "TestingSet" / "LungInfection-Test" / "GT"
    shutil.rmtree(gt)
    before = snapshot(data)
    rc, out, err = check(capsys, data)
    assert rc == 2 and out == ""
    assert f"problem: {gt}: missing; expected" in err
    assert err.strip().splitlines()[-1].startswith("error: ")
    assert snapshot(data) == before


def test_missing_split_list_is_named_and_found_elsewhere(data, capsys):
    lst = data / "covid-ct" / "splits" / "valCT_NonCOVID.txt"
    moved = data / "covid-ct" / "Data-split" / "NonCOVID" / lst.name
    moved.parent.mkdir(parents=True)
    lst.rename(moved)
    rc, _, err = check(capsys, data)
    assert rc == 2
    line = next(x for x in err.splitlines() if str(lst) in x)
    assert "missing" in line and f"found at {moved}" in line


def test_file_in_the_other_class_folder(data, capsys):
    ct = data / "covid-ct"
    lst = ct / "splits" / "trainCT_COVID.txt"
    names = lst.read_text().split()
    # a name only the COVID list holds, filed under CT_NonCOVID
    (ct / "CT_COVID" / names[0]).rename(ct / "CT_NonCOVID" / "misfiled.png")
    lst.write_text("\n".join(["misfiled.png", *names[1:]]) + "\n")
    rc, _, err = check(capsys, data)
    assert rc == 2
    assert "warning:" not in err  # named once, as a problem
    line = next(x for x in err.splitlines() if "misfiled.png" in x)
    assert str(ct / "CT_COVID" / "misfiled.png") in line and f"found in {ct / 'CT_NonCOVID'}" in line


def test_missing_slice_and_mask(data, capsys):
    ct = data / "covid-ct"
    name = (ct / "splits" / "testCT_COVID.txt").read_text().split()[0]
    (ct / "CT_COVID" / name).unlink()
    mask = data / "semiseg" / "TrainingSet" / "LungInfection-Train" / "Doctor-label" / "GT" / "0.png"
    mask.unlink()
    rc, _, err = check(capsys, data)
    assert rc == 2
    assert f"{ct / 'CT_COVID' / name}: missing (listed in splits/testCT_COVID.txt)" in err
    assert f"{mask}: missing; expected the mask of" in err


def test_semiseg_unzipped_one_level_too_deep(data, capsys):
    seg = data / "semiseg"
    nested = seg / "COVID-SemiSeg" / "Dataset"
    nested.mkdir(parents=True)
    for part in ("TrainingSet", "TestingSet"):
        (seg / part).rename(nested / part)
    rc, _, err = check(capsys, data)
    assert rc == 2
    assert f"{seg}: has no TrainingSet/" in err and f"found at {nested}" in err


def test_counts_against_the_expected_sets_and_subset(data, capsys):
    unl = sorted((data / "semiseg" / "TrainingSet" / "LungInfection-Train" / "Pseudo-label" / "Imgs").iterdir())
    unl[0].unlink()
    rc, _, err = check(capsys, data)
    assert rc == 2 and "unlabelled slices" in err and "expected" in err
    rc, out, err = check(capsys, data, "--subset")
    assert rc == 0 and "warning:" in err and "unlabelled slices" in err
    assert json.loads(out)["semiseg"]["unlabelled"] == len(unl) - 1


def test_not_an_image(data, capsys):
    img = sorted((data / "semiseg" / "TestingSet" / "LungInfection-Test" / "Imgs").iterdir())[0]
    img.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    rc, _, err = check(capsys, data)
    assert rc == 2 and f"{img}: a Git LFS pointer" in err


def test_wrong_level_and_no_folder(data, tmp_path, capsys):
    rc, _, err = check(capsys, data / "covid-ct")
    assert rc == 2 and "pass the folder holding both" in err
    rc, _, err = check(capsys, tmp_path / "nowhere")
    assert rc == 2 and f"{tmp_path / 'nowhere'}: does not exist" in err


def test_the_data_guide_shows_the_layout_the_check_expects(capsys):
    assert main(["check-data", "--layout"]) == 0
    tree = capsys.readouterr().out.strip()
    assert tree == layout_tree()
    guide = ROOT / "docs" / "data.md"  # the README links it
    assert tree in guide.read_text(), "docs/data.md's data tree differs from `train check-data --layout`"


def test_covid_ct_md_is_counted_per_patient_and_decoded(data, capsys):
    root = write_ctmd(data, n=3)
    before = snapshot(data)
    rc, out, err = check(capsys, data)
    assert rc == 0, err
    assert json.loads(out)["covid-ct-md"] == {p: 3 for p in ("P001", "P002", "normal001", "normal002", "cap001",
                                                              "cap002")}
    assert snapshot(data) == before
    gone = min((root / "COVID-19" / "P002").iterdir())
    gone.unlink()
    stray = root / "Normal" / "normal001" / "stray.dcm"
    stray.write_bytes(b"not a slice")
    broken = min((root / "CAP" / "cap001").iterdir())  # the file the check decodes
    broken.write_bytes(broken.read_bytes()[:400])
    rc, out, err = check(capsys, data)
    assert rc == 2 and out == ""
    assert f"problem: {gone}: missing; listed in slices.csv for patient P002" in err
    assert f"problem: {stray}: not listed in slices.csv" in err
    assert f"problem: {broken}: " in err
    shutil.rmtree(root / "CAP" / "cap002")
    rc, _, err = check(capsys, data)
    assert f"problem: {root / 'CAP' / 'cap002'}: missing; expected patient cap002's 3 slices there" in err


def test_series_are_reported_before_predicting(tmp_path, capsys):
    paths = write_series(tmp_path / "scan", series(5, spacing=2.0, syntax=RLELossless))
    rc = main(["check-data", "--series", str(tmp_path / "scan")])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    (report,) = json.loads(out)["series"]
    assert report["slices"] == 5 and report["ordering"] == "image position" and report["slice_spacing_mm"] == 2.0
    assert report["pixel_spacing_mm"] == [0.7, 0.7] and report["gaps"] == 0 and report["undecodable"] == 0
    assert (report["first"], report["last"]) == (str(paths[0]), str(paths[-1]))


def test_series_check_names_every_bad_file_gap_and_other_series(tmp_path, capsys):
    paths = write_series(tmp_path / "scan", series(6, spacing=2.0))
    paths[2].unlink()
    (tmp_path / "scan" / "readme.txt").write_text("exported by the PACS")
    other = write_series(tmp_path / "scan", series(1, series_uid="1.2.3.4"), prefix="X")
    rc = main(["check-data", "--series", str(tmp_path / "scan")])
    out, err = capsys.readouterr()
    assert rc == 2
    assert [r["slices"] for r in json.loads(out)["series"]] == [5, 1]
    lines = err.strip().splitlines()
    assert f"problem: {tmp_path / 'scan' / 'readme.txt'}: not a DICOM file (a series is read from DICOM files only)" \
        in lines
    assert f"problem: gap: {paths[1]} and {paths[3]}: 4 mm apart, 2.0x the series' usual 2; about 1 slice missing " \
        "between them" in lines
    assert any(line.startswith(f"warning: {other[0]}: series 1.2.3.4 (1 slice) is not the largest") for line in lines)
    assert lines[-1] == "error: 2 problems with the DICOM series given (listed above)"


def test_a_series_that_is_not_axial_is_a_problem_before_predicting(tmp_path, capsys):
    write_series(tmp_path / "cor", series(3, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), series_uid="1.2.3.5"))
    rc = main(["check-data", "--series", str(tmp_path / "cor")])
    out, err = capsys.readouterr()
    assert rc == 2 and json.loads(out)["series"][0]["plane"] == "coronal"
    assert "problem: series 1.2.3.5 holds coronal slices (a reformat or a scout): the networks read axial slices " \
        "only" in err


def test_series_and_data_root_are_checked_apart(tmp_path, capsys):
    assert main(["check-data", "--data-root", str(tmp_path), "--series", str(tmp_path)]) == 2
    assert "--series checks DICOM series on their own" in capsys.readouterr().err


@pytest.mark.realdata
def test_real_data_matches_the_published_sets(data_root, capsys):
    rc, out, err = check(capsys, data_root)
    assert rc == 0, err
    counts = json.loads(out)
    assert counts["covid-ct"]["splits"] == {f"{s}{c}": n for (s, c), n in PUBLISHED_LISTS.items()}
    assert [counts["semiseg"][k] for k in ("train_labelled", "test_labelled", "unlabelled")] == \
        [PUBLISHED_SEMISEG[k] for k in ("train", "test", "unlabelled")]
    # COVID-CT-MD's sample, as its PROVENANCE.md counts it
    assert counts["covid-ct-md"] == {"P001": 74, "P002": 67, "normal001": 77, "normal002": 84, "cap001": 84,
                                     "cap002": 66}
