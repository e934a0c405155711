"""Bad command-line values are one line and exit code 2, said before any work and before anything is written:
--device, probe --folds, evaluate --bootstrap, audit --max-distance, lungs --worst/--sheet, an --out or --csv
that is a folder or lies under a file, and an audit.json whose pairs are not pairs."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from core.errors import USER_ERRORS, UsageError


def fake_run(path, val_per_class: int = 3):
    """A run folder with a config.json and a predictions.csv alone: enough for the checks made before any work."""
    path.mkdir(parents=True)
    (path / "config.json").write_text("{}")
    rows = [{"key": f"{split}/{label}/{i}.png", "split": split, "label": label, "p_global": 0.25 + label / 2}
            for split, n in (("train", 4), ("val", val_per_class), ("test", 4)) for label in (0, 1) for i in range(n)]
    pd.DataFrame(rows).to_csv(path / "predictions.csv", index=False)
    return path


def one_line_error(out, *words) -> None:
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for w in words:
        assert w in out.stderr, out.stderr


# ------------------------------------------------------------------ --device

def test_device_names_the_bad_value_and_what_is_accepted():
    from train.common import pick_device

    with pytest.raises(UsageError, match="'bogus'.*auto, cpu, cuda"):
        pick_device("bogus")
    with pytest.raises(UsageError, match="not a device"):
        pick_device("meta")  # a torch device type, but nothing a command runs on
    assert pick_device("cpu").type == "cpu"


def test_device_cuda_without_cuda_says_so(monkeypatch):
    import torch

    from train.common import pick_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for name in ("cuda", "cuda:1"):
        with pytest.raises(UsageError, match="no CUDA device"):
            pick_device(name)
    assert pick_device("auto").type == "cpu"


def test_device_cli_is_one_line(tmp_path, train_cli):
    one_line_error(train_cli("predict", "--run", tmp_path, "--device", "bogus", tmp_path / "a.png"),
                   "--device 'bogus'")


# ------------------------------------------------------------------ probe --folds

@pytest.mark.parametrize("folds", ["0", "1", "-3"])
def test_probe_needs_two_folds(tmp_path, train_cli, folds):
    one_line_error(train_cli("probe", "--run", tmp_path / "none", "--folds", folds), "--folds must be at least 2")


def test_probe_folds_beyond_the_smaller_class_say_so(tmp_path, train_cli):
    run = fake_run(tmp_path / "r", val_per_class=3)
    one_line_error(train_cli("probe", "--run", run, "--folds", "100000"), "--folds 100000", "only 3 slice(s)",
                   "use at most 3 folds")
    assert not (run / "branch_probe.csv").exists()


# ------------------------------------------------------------------ evaluate --bootstrap (report's rule: >= 0)

def test_evaluate_refuses_negative_bootstrap_before_writing(tmp_path, train_cli):
    run = fake_run(tmp_path / "r")
    one_line_error(train_cli("evaluate", "--run", run, "--bootstrap", "-5"), "--bootstrap", "non-negative")
    assert not list(run.glob("metrics_*.json"))
    ok = train_cli("evaluate", "--run", run, "--bootstrap", "0", "--json", "--threshold", "0.5")
    assert ok.returncode == 0, ok.stderr


# ------------------------------------------------------------------ audit and lungs

def test_audit_refuses_negative_max_distance(train_cli):
    one_line_error(train_cli("audit", "--max-distance", "-5"), "--max-distance", "non-negative")


def test_lungs_refuses_negative_worst(train_cli):
    one_line_error(train_cli("lungs", "--worst", "-2"), "--worst", "non-negative")


@pytest.mark.parametrize("name", ["x.txt", "sheet"])
def test_lungs_sheet_extension_checked_before_any_slice(tmp_path, train_cli, monkeypatch, name):
    import train.lungs

    def no_work(*a, **k):
        raise AssertionError("slices were read before --sheet was checked")
    monkeypatch.setattr(train.lungs, "covidct_rows", no_work)
    one_line_error(train_cli("lungs", "--sheet", tmp_path / name), "--sheet", "use .png")
    assert train.lungs.check_sheet(tmp_path / "sheet.PNG") is None


# ------------------------------------------------------------------ --out / --csv that cannot be a file

def test_write_into_a_folder_or_under_a_file_is_a_user_error(tmp_path):
    from core.runs.checkpoint import atomic_write_text, check_writable

    (tmp_path / "README.md").write_text("x")
    with pytest.raises(USER_ERRORS, match="is a folder"):
        atomic_write_text(tmp_path, "text")
    with pytest.raises(USER_ERRORS, match="README.md is a file, not a folder"):
        atomic_write_text(tmp_path / "README.md" / "deeper" / "x.md", "text")
    assert check_writable(tmp_path / "new" / "x.md") == tmp_path / "new" / "x.md"
    assert (tmp_path / "README.md").read_text() == "x" and not (tmp_path / "new").exists()


@pytest.mark.parametrize("command", [["audit", "--out"], ["lungs", "--out"], ["lungs", "--sheet"]])
def test_out_checked_before_the_work(tmp_path, train_cli, monkeypatch, command):
    import train.audit
    import train.lungs

    def no_work(*a, **k):
        raise AssertionError("the work started before --out was checked")
    monkeypatch.setattr(train.audit, "audit", no_work)
    monkeypatch.setattr(train.lungs, "covidct_rows", no_work)
    (tmp_path / "dir.png").mkdir()
    one_line_error(train_cli(*command, tmp_path / "dir.png"), "dir.png: is a folder")
    (tmp_path / "README.md").write_text("x")
    one_line_error(train_cli(*command, tmp_path / "README.md" / "x.png"), "README.md is a file, not a folder")


def test_verdicts_csv_folder_is_checked_before_flags_are_saved(tmp_path, train_cli):
    runs = tmp_path / "runs"
    runs.mkdir()
    one_line_error(train_cli("verdicts", "--runs", runs, "--csv", tmp_path), "is a folder")
    assert not (runs / "verdicts.sqlite").exists()


def test_report_out_is_checked_before_the_report_is_built(tmp_path, train_cli, monkeypatch):
    import train.report

    def build(args):
        raise AssertionError("the report was built before its --out was checked")

    monkeypatch.setattr(train.report, "build", build)
    run = fake_run(tmp_path / "r")
    one_line_error(train_cli("report", run, "--out", tmp_path), "is a folder")
    (tmp_path / "README.md").write_text("x")
    one_line_error(train_cli("report", run, "--out", tmp_path / "README.md" / "x.md"), "is a file, not a folder")
    one_line_error(train_cli("report", run, "--bootstrap", "-1"), "--bootstrap", "non-negative")


# ------------------------------------------------------------------ verdicts: audit.json pairs

@pytest.mark.parametrize("pairs", [[1, 2], [{"a": "x.png"}], [{"a": ["x"], "b": "y.png"}]])
def test_verdicts_audit_pairs_that_are_not_pairs(tmp_path, train_cli, pairs):
    runs = tmp_path / "runs"
    fake_run(runs / "r")
    (runs / "audit.json").write_text(json.dumps({"near_duplicates": pairs}))
    one_line_error(train_cli("verdicts", "--runs", runs), "audit.json", "near_duplicates[0]", "not a pair")


def test_fake_run_is_valid_for_the_probe_check(tmp_path):
    """The probe check reads the validation split's classes as predictions.csv holds them."""
    from core.runs.runfolder import RunFolder
    from train.probe import check_folds

    run = RunFolder(fake_run(tmp_path / "r", val_per_class=4))
    check_folds(run, 4)
    with pytest.raises(UsageError, match="at most 4"):
        check_folds(run, 5)


def test_verdicts_names_an_empty_predictions_file(tmp_path, train_cli):
    runs = tmp_path / "runs"
    run = fake_run(runs / "r")
    (run / "predictions.csv").write_text("")
    one_line_error(train_cli("verdicts", "--runs", runs), "predictions.csv: not a readable table")
