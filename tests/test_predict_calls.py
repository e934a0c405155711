"""`train predict`'s calls (core.trust.calls): every slice's answer carries the decision's call, its prediction set
and the out-of-distribution flag, and a series ends with its scan's call and how far it can be trusted; each part
checked against core's own computation on the session's synthetic run, and a run that cannot give a part says why."""
from __future__ import annotations

import json
import shutil

import pytest

from tests.dicom_series import write_series
from tests.phantom_series import dicom_series, right_lung_lesions


@pytest.fixture(scope="module")
def series_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("predict-calls") / "series"
    write_series(folder, dicom_series(right_lung_lesions(5, size=96, seed=2)))
    return folder


def lines_of(p) -> list[dict]:
    return [json.loads(line) for line in p.stdout.splitlines()]


def test_every_slice_carries_its_call_and_the_series_its_scan(synthetic_run, phantom_root, series_folder, train_cli):
    from core.data.series import read_series
    from core.inference import TrainedRun
    from core.knowledge.scan import score_volume, summarise
    from core.runs.run_view import RunView
    from core.runs.runfolder import RunFolder
    from core.trust import conformal, ood
    from core.trust.scan_call import assess, flag_columns

    png = str(next((phantom_root / "covid-ct" / "CT_COVID").glob("*.png")))
    p = train_cli("predict", "--run", synthetic_run, png, series_folder)
    assert p.returncode == 0, p.stderr[-2000:]
    lines = lines_of(p)
    assert len(lines) == 1 + 5 + 1 and "scan" in lines[-1]
    view = RunView(synthetic_run.parent, synthetic_run.name)
    branch = view.decision_branch()
    threshold = view.thresholds[branch]
    sets = conformal.fit_run(RunFolder(synthetic_run), branch)
    for a in lines[:-1]:
        d, prob = a["decision"], a["probabilities"][branch]
        assert (d["branch"], d["p"], d["operating_point"]) == (branch, prob, round(threshold, 6))
        assert d["call"] == ("COVID" if prob >= threshold else "non-COVID")
        assert d["prediction_set"] == list(sets.set_of(prob)) and d["set_level"] == conformal.LEVEL
        assert isinstance(d["unlike_training"], bool)
    flag = ood.fit_run(RunFolder(synthetic_run))
    table = score_volume(TrainedRun.load(synthetic_run), read_series(series_folder).volumes[0],
                         extra=flag_columns(flag))
    assert [a["decision"]["unlike_training"] for a in lines[1:-1]] == [bool(v) for v in table.ood]
    expected = summarise(table, branch, threshold)
    scan = lines[-1]["scan"]
    assert scan["scan_decision"] == expected.decision.label and scan["driving_slices"] == expected.decision.top
    assert scan["statistic"] == pytest.approx(expected.decision.statistic, abs=1e-6)
    assert scan["opacity"] == pytest.approx(expected.opacity, abs=1e-6) and scan["slices"] == 5
    assert scan["trust"]["lines"] == assess(table, expected.decision, None).lines()  # the run has no external.json


def test_a_run_without_its_feature_cache_still_calls_and_says_what_is_missing(synthetic_run, series_folder, tmp_path,
                                                                               train_cli):
    run = tmp_path / "runs" / synthetic_run.name
    shutil.copytree(synthetic_run, run)
    shutil.rmtree(run / "features")  # the out-of-distribution flag is fitted on the cached fusion inputs
    p = train_cli("predict", "--run", run, series_folder)
    assert p.returncode == 0 and "Traceback" not in p.stderr
    assert f"warning: no out-of-distribution flag for {run}: " in p.stderr
    lines = lines_of(p)
    d = lines[0]["decision"]
    assert d["unlike_training"] is None and d["no_flag"] and d["prediction_set"]  # the sets need no features
    assert lines[-1]["scan"]["trust"]["unlike_training"] is None
    assert lines[-1]["scan"]["trust"]["lines"][1].startswith("No out-of-distribution flag for this scan: ")


def test_a_series_that_is_not_axial_is_named_and_not_scored(synthetic_run, series_folder, tmp_path, train_cli):
    """A study's coronal reformat beside its axial series: one error line naming its plane, the axial one answered."""
    from tests.dicom_series import series

    study = tmp_path / "study"
    shutil.copytree(series_folder, study / "axial")
    coronal = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    write_series(study / "coronal", series(3, orientation=coronal, size=96, series_uid="1.2.3.7"), prefix="C")
    p = train_cli("predict", "--run", synthetic_run, study)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    lines = lines_of(p)
    assert len(lines) == 5 + 1 + 1 and "scan" in lines[5]  # the axial series first, its slices and its scan line
    assert lines[-1]["series_uid"] == "1.2.3.7" and lines[-1]["plane"] == "coronal"
    assert "the networks read axial slices only" in lines[-1]["error"] and lines[-1]["slices"] == 3


def test_a_lone_slice_that_is_not_axial_is_named_and_not_scored(synthetic_run, series_folder, tmp_path, train_cli):
    """A single coronal DICOM file (a reformat's slice exported on its own), beside an axial one."""
    from tests.dicom_series import dicom_bytes, series

    coronal = tmp_path / "COR0001"
    coronal.write_bytes(dicom_bytes(series(1, orientation=(1.0, 0.0, 0.0, 0.0, 0.0, -1.0), size=96)[0]))
    axial = sorted(series_folder.iterdir())[0]
    p = train_cli("predict", "--run", synthetic_run, coronal, axial)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    first, second = lines_of(p)
    assert first == {"file": str(coronal), "error": f"{coronal}: a coronal slice (a reformat or a scout): the networks "
                                                     "read axial slices only, so it is not scored"}
    assert second["file"] == str(axial) and "decision" in second
