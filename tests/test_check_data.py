"""`python -m train check-data`: the layout --data-root expects, checked before any training."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

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
    assert snapshot(phantom_root) == before


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


def test_readme_shows_the_layout_the_check_expects(capsys):
    assert main(["check-data", "--layout"]) == 0
    tree = capsys.readouterr().out.strip()
    assert tree == layout_tree()
    assert tree in (ROOT / "README.md").read_text(), "README's data tree differs from `train check-data --layout`"


@pytest.mark.realdata
def test_real_data_matches_the_published_sets(data_root, capsys):
    rc, out, err = check(capsys, data_root)
    assert rc == 0, err
    counts = json.loads(out)
    assert counts["covid-ct"]["splits"] == {f"{s}{c}": n for (s, c), n in PUBLISHED_LISTS.items()}
    assert [counts["semiseg"][k] for k in ("train_labelled", "test_labelled", "unlabelled")] == \
        [PUBLISHED_SEMISEG[k] for k in ("train", "test", "unlabelled")]
