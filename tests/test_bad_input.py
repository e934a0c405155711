"""Bad input at every entry point: a clear error and exit code, and nothing already saved damaged."""
import hashlib
import importlib.util
import json
import os
import shutil
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("imaging_corpus", ROOT / "tests" / "test_imaging.py")
imaging_corpus = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(imaging_corpus)
CORPUS = imaging_corpus.CORPUS


def _digest_tree(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_predict_answers_every_malformed_file_and_leaves_the_run_untouched(synthetic_run, tmp_path, train_cli):
    files = []
    for name, make in CORPUS.items():
        (tmp_path / name).write_bytes(make())
        files.append(str(tmp_path / name))
    before = _digest_tree(synthetic_run)
    p = train_cli("predict", "--run", str(synthetic_run), *files)
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    answers = [json.loads(line) for line in p.stdout.splitlines()]
    assert [a["file"] for a in answers] == files
    for a in answers:
        assert Path(a["file"]).name in a["error"], a
    assert _digest_tree(synthetic_run) == before


def test_predict_answers_every_slice_of_a_series_and_names_its_bad_files(synthetic_run, phantom_root, tmp_path,
                                                                         train_cli):
    import zipfile

    from pydicom.uid import RLELossless

    from tests.dicom_series import dicom_bytes, series, write_series

    png = str(next((phantom_root / "covid-ct" / "CT_COVID").glob("*.png")))
    scan = write_series(tmp_path / "scan", series(4, spacing=2.0, syntax=RLELossless))
    scan.pop(1).unlink()  # a missing slice
    (tmp_path / "scan" / "notes.txt").write_text("exported by the PACS")
    loose = write_series(tmp_path / "loose", series(2))  # loose files of one series
    study = series(2)
    with zipfile.ZipFile(tmp_path / "study.zip", "w") as zf:
        for k, ds in enumerate(study):
            zf.writestr(f"DICOM/IM{k}", dicom_bytes(ds))
    before = _digest_tree(synthetic_run)
    p = train_cli("predict", "--run", str(synthetic_run), png, str(tmp_path / "scan"), str(loose[1]),
             str(tmp_path / "study.zip"), str(loose[0]))
    assert p.returncode == 1, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    lines = [json.loads(line) for line in p.stdout.splitlines()]
    answers = [a for a in lines if "scan" not in a]
    assert [a["file"] for a in answers] == [
        png, str(tmp_path / "scan" / "notes.txt"), *map(str, scan), *map(str, loose),
        f"{tmp_path / 'study.zip'}/DICOM/IM0", f"{tmp_path / 'study.zip'}/DICOM/IM1"]
    # each series' slices end with its scan line
    ends = [i for i, a in enumerate(lines) if "scan" in a]
    assert ends == [5, 8, 11] and [lines[i]["scan"]["slices"] for i in ends] == [3, 2, 2]
    assert [lines[i]["series_uid"] for i in ends] == [series_uid_of(scan[0]), series_uid_of(loose[0]),
                                                     study[0].SeriesInstanceUID]
    assert "series_uid" not in answers[0] and "probabilities" in answers[0]  # a plain slice, as before
    assert answers[1]["error"].endswith("notes.txt: not a DICOM file (a series is read from DICOM files only)")
    volume = answers[2:5]
    assert [a["index"] for a in volume] == [0, 1, 2] and {a["slices"] for a in volume} == {3}
    assert [a["position_mm"] for a in volume] == [-100.0, -96.0, -94.0]
    assert {a["series_uid"] for a in volume} == {series_uid_of(scan[0])}
    assert all("probabilities" in a and a["ordering"] == "image position" for a in answers[2:])
    assert f"warning: gap: {scan[0]} and {scan[1]}: 4 mm apart" in p.stderr
    assert _digest_tree(synthetic_run) == before


def series_uid_of(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def test_training_refuses_split_lists_naming_missing_files(phantom_root, tmp_path, train_cli):
    data = tmp_path / "data"
    shutil.copytree(phantom_root, data)
    lst = data / "covid-ct" / "splits" / "trainCT_COVID.txt"
    lst.write_text(lst.read_text() + "no-such-slice.png\n")
    p = train_cli("global", "--data-root", data, "--out", tmp_path / "r", "--image-size", "64", "--epochs", "1")
    assert p.returncode == 2 and "no-such-slice.png" in p.stderr and "Traceback" not in p.stderr


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/covid-lab-pwned-init",))


@pytest.mark.parametrize("kind", ["corrupted", "code"])
def test_training_refuses_a_bad_init_checkpoint(phantom_root, tmp_path, kind, train_cli):
    ckpt = tmp_path / "init.pt"
    if kind == "corrupted":
        torch.save({"model": {"w": torch.ones(1000)}}, ckpt)
        ckpt.write_bytes(ckpt.read_bytes()[:300])
    else:
        torch.save({"model": _Evil()}, ckpt)
    p = train_cli("global", "--data-root", str(phantom_root), "--out", str(tmp_path / "r"), "--init", str(ckpt),
             "--image-size", "64", "--epochs", "1")
    assert p.returncode == 2 and "init.pt" in p.stderr and "Traceback" not in p.stderr
    assert not os.path.exists("/tmp/covid-lab-pwned-init")


def test_evaluate_refuses_a_garbled_predictions_file(synthetic_run, tmp_path, train_cli):
    run = tmp_path / "copy"
    shutil.copytree(synthetic_run, run)
    (run / "predictions.csv").write_bytes(b"\x00\xff garbage \x00\n\x01")
    p = train_cli("evaluate", "--run", str(run))
    assert p.returncode == 2 and "predictions" in p.stderr and "Traceback" not in p.stderr


def test_a_mask_of_the_wrong_shape_is_named(phantom_root, tmp_path):
    from PIL import Image

    from core.data.imaging import ImageReadError
    from core.training.segmentation import semi_supervised

    data = tmp_path / "data"
    shutil.copytree(phantom_root, data)
    gt = data / "semiseg" / "TrainingSet/LungInfection-Train/Doctor-label/GT/0.png"
    Image.open(gt).resize((40, 50)).save(gt)
    with pytest.raises(ImageReadError, match="0.png"):
        semi_supervised(data, tmp_path / "seg", epochs=1, max_rounds=0, size=64, progress=False, log=lambda m: None)


@pytest.mark.parametrize("argv, names", [
    (["pipeline", "--tau", "2", "--out", "{tmp}/r"], "--tau"),
    (["predict", "--run", "{tmp}", "--tau", "-1", "x.png"], "--tau"),
    (["infnet", "--size", "33", "--out", "{tmp}/seg"], "--size"),
    (["infnet", "--sources", "semiseg,elsewhere", "--out", "{tmp}/seg"], "--sources"),
    (["reproduce", "--inits", "selftrans", "--out", "{tmp}/repro"], "--selftrans-ckpt"),
    (["pack"], "--data-root"),
    (["evaluate", "--run", "{tmp}/missing"], "missing"),
    (["lungs", "--run", "{tmp}"], "config.json"),
])
def test_every_user_error_is_one_line_and_exit_code_2(argv, names, tmp_path, capsys):
    """The same exit code and one `error:` line for every command's user errors, typed or not."""
    from train.__main__ import main

    code = main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and names in err[0], err


@pytest.mark.parametrize("reader, folder, marker", [("covidct", "covid-ct", "splits"),
                                                    ("semiseg", "semiseg", "TrainingSet")])
def test_readers_take_the_data_root_or_the_sets_folder_and_name_what_is_missing(phantom_root, tmp_path, reader,
                                                                                 folder, marker):
    from core.data.covidct import covidct_root
    from core.data.errors import DataError
    from core.data.semiseg import semiseg_root

    root_of = {"covidct": covidct_root, "semiseg": semiseg_root}[reader]
    assert root_of(phantom_root) == root_of(phantom_root / folder) == phantom_root / folder
    with pytest.raises(DataError, match=f"{tmp_path / 'nowhere'} does not exist"):
        root_of(tmp_path / "nowhere")
    with pytest.raises(DataError, match=f"{tmp_path}: no {marker}/ folder"):
        root_of(tmp_path)


def _one_error_line(p) -> str:
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    return lines[0]


def test_a_wrong_data_root_leaves_a_run_as_it_was(synthetic_run, tmp_path, train_cli):
    """Resuming a run with a --data-root that holds no data says so and leaves its config.json as it was (it used to
    record the wrong root, so the run's later commands looked there); a new --out is not made at all."""
    run = tmp_path / "copy"
    shutil.copytree(synthetic_run, run)
    before = _digest_tree(run)
    for command in ("pipeline", "global"):
        line = _one_error_line(train_cli(command, "--out", run, "--resume", "--data-root", tmp_path / "nowhere"))
        assert "nowhere" in line and "does not exist" in line
    assert _digest_tree(run) == before
    line = _one_error_line(train_cli("pipeline", "--out", tmp_path / "new", "--data-root", tmp_path / "nowhere"))
    assert "nowhere" in line and not (tmp_path / "new").exists()


@pytest.mark.parametrize("file, content, named", [
    ("config.json", b'{"pipeline": {"tau"', "config.json: not readable JSON"),
    ("config.json", b"[]", "config.json: holds a JSON list"),
    ("predictions.csv", b"", "predictions.csv"),
    ("predictions.csv", None, "column p_global holds 'abc'"),
    ("predictions.csv", "label", "labels must be 0 or 1"),
])
def test_a_broken_run_file_is_named_in_one_line(synthetic_run, tmp_path, train_cli, file, content, named):
    run = tmp_path / "copy"
    shutil.copytree(synthetic_run, run)
    if content is None or content == "label":
        import pandas as pd

        df = pd.read_csv(run / file, keep_default_na=False, dtype=str)
        df.loc[0, "p_global" if content is None else "label"] = "abc" if content is None else "x"
        df.to_csv(run / file, index=False)
    else:
        (run / file).write_bytes(content)
    before = _digest_tree(run)
    for command in ("evaluate", "report"):
        args = ("--run", run) if command == "evaluate" else (run, "--out", tmp_path / "report.md")
        assert named in _one_error_line(train_cli(command, *args))
    assert _digest_tree(run) == before


def test_a_broken_decision_or_result_file_is_named(guided_run, tmp_path, train_cli):
    from core.audits.external import EXTERNAL_FILE

    run = tmp_path / "copy"
    shutil.copytree(guided_run, run)
    decision = run / "two-step" / "decision.json"
    good = decision.read_bytes()
    decision.write_text("{}")
    assert "decision.json: holds no decision weights" in _one_error_line(train_cli("evaluate", "--run", run))
    decision.write_bytes(good[:40])
    assert "decision.json: not readable JSON" in _one_error_line(train_cli("evaluate", "--run", run))
    decision.write_bytes(good)
    (run / EXTERNAL_FILE).write_text('{"comparisons": {')
    line = _one_error_line(train_cli("report", run, "--out", tmp_path / "report.md"))
    assert f"{EXTERNAL_FILE}: not readable JSON" in line and not (tmp_path / "report.md").exists()


def test_external_rows_cut_short_are_scored_again(guided_run, phantom_root, tmp_path, monkeypatch):
    """external.csv is read back only when it holds every external slice: one cut short (a crash mid-write before
    it was written atomically, a hand edit) is scored again, not refitted on part of the rows."""
    from core.audits import external as ex
    from core.runs.runfolder import RunFolder

    run = tmp_path / "copy"
    shutil.copytree(guided_run, run)
    rows, key = ex.scored_rows(RunFolder(run), phantom_root)
    assert len(rows) == len(ex.external_slices(phantom_root))  # read back whole: nothing scored
    lines = (run / ex.ROWS_FILE).read_text().splitlines(keepends=True)
    (run / ex.ROWS_FILE).write_text("".join(lines[: len(lines) // 2]))

    class ScoredAgain(Exception):
        pass

    def score(*args, **kw):
        raise ScoredAgain

    monkeypatch.setattr(ex, "score", score)
    with pytest.raises(ScoredAgain):
        ex.scored_rows(RunFolder(run), phantom_root)
