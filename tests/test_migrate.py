"""Old run folders (core.runs.migrate, `python -m train migrate RUN`): readers refuse a run saved in an older
format with one line that names the command; migrating fills what the run predates with what it ran with, keeps
the original config.json beside it and changes nothing a second time; the caches an older run holds are found
again, so `train pipeline --resume` recomputes nothing."""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest

import core.runs.feature_cache as fc
from core.config import CONFIG_FORMAT, PipelineConfig
from core.models import network
from core.runs.checkpoint import load_checkpoint, save_checkpoint
from core.runs.migrate import BACKUP, migrate
from core.runs.runfolder import RunError, RunFolder
from train.__main__ import main

PREDATED = ("input", "second_source", "heads_second_source", "config_format")  # settings older runs lack


def old_copy(synthetic_run, where) -> RunFolder:
    """A copy of the phantom run (recipe fast: whole slice, no second source, no mirrored pass) as an older
    version saved it: without the settings it predates."""
    shutil.copytree(synthetic_run, where)
    run = RunFolder(where)
    pipeline = {k: v for k, v in run.config["pipeline"].items() if k not in PREDATED}
    pipeline["seg"] = {k: v for k, v in pipeline["seg"].items() if k != "tta"}
    run.update_config(pipeline=pipeline)
    return run


def test_readers_refuse_an_unmigrated_run_naming_the_command(synthetic_run, phantom_root, tmp_path, capsys):
    from core.inference import TrainedRun
    from core.runs.run_view import RunView

    run = old_copy(synthetic_run, tmp_path / "runs" / "old")
    want = rf"run `python -m train migrate {run.path}` once"
    with pytest.raises(RunError, match=want):
        TrainedRun.load(run.path)
    with pytest.raises(RunError, match=want):
        _ = RunView(tmp_path / "runs", "old").pipeline
    for argv in (["predict", "--run", str(run.path), "x.png"], ["report", str(run.path)],
                 ["pipeline", "--data-root", str(phantom_root), "--out", str(run.path), "--recipe", "fast", "--resume"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and "python -m train migrate" in err[0], (argv, err)


def test_migrate_fills_what_the_run_predates_keeps_the_original_and_is_done_once(synthetic_run, tmp_path, capsys):
    from core.data.covidct import read_covidct
    from core.data.imaging import read_slice
    from core.inference import TrainedRun

    run = old_copy(synthetic_run, tmp_path / "old")
    original = (run.path / "config.json").read_text()
    assert main(["migrate", str(run.path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["migrated"] and 'config.json: input = "slice" (not recorded before)' in out["changes"]
    assert "config.json: seg.tta = false (not recorded before)" in out["changes"]
    assert (run.path / BACKUP).read_text() == original  # the original, kept beside it
    pipeline = run.config["pipeline"]
    assert (pipeline["input"], pipeline["second_source"], pipeline["heads_second_source"]) == ("slice", "none", False)
    assert pipeline["seg"]["tta"] is False and pipeline["config_format"] == CONFIG_FORMAT
    assert pipeline == RunFolder(synthetic_run).config["pipeline"]  # what it ran with: today's run's settings
    img = read_slice(read_covidct(RunFolder(synthetic_run).config["data_root"])[0].path)
    assert TrainedRun.load(run.path).analyse(img).probs == TrainedRun.load(synthetic_run).analyse(img).probs

    migrated = (run.path / "config.json").read_text()
    assert main(["migrate", str(run.path)]) == 0  # twice: a no-op that says so
    again = json.loads(capsys.readouterr().out)
    assert not again["migrated"] and again["changes"] == ["already in today's format: left alone"]
    assert (run.path / "config.json").read_text() == migrated and (run.path / BACKUP).read_text() == original


def test_migrate_finds_an_older_runs_caches_again(synthetic_run, phantom_root, tmp_path, monkeypatch):
    """A run from before the feature index, the checkpoints' vector sizes and SegConfig (its lesion entry keyed by
    the partial segmenter settings of its time, without its input as whole-slice runs' were): after migrating, its
    readers and a resumed pipeline find the cached entries and segment nothing again."""
    from core.pipeline import Pipeline

    run = old_copy(synthetic_run, tmp_path / "old")
    seg = run.config["pipeline"]["seg"]
    old_seg = {k: seg[k] for k in ("size", "epochs", "steps_per_round", "per_round", "max_rounds", "ignore_band",
                                   "labelled_share")}  # the partial dict of its time
    run.update_config(pipeline={**run.config["pipeline"], "seg": old_seg})
    feats = run.features_dir
    lesions = fc.current(feats, "lesions")
    parts = json.loads((feats / f"lesions-{json.loads((feats / fc.INDEX).read_text())['lesions']}.json").read_text())["parts"]
    for f in feats.glob("lesions-*"):
        f.unlink()
    old_parts = {**{k: v for k, v in parts.items() if k != "input"}, "seg": old_seg}  # a whole-slice run's, then
    fc.save_cached(feats, "lesions", old_parts, lesions)
    (feats / fc.INDEX).unlink()
    sizes = {}
    for stage in ("infected", "global+heatmap", "fusion"):
        ckpt = load_checkpoint(run.stage(stage) / "best.pt")
        sizes[stage] = ckpt.pop("sizes")
        save_checkpoint(ckpt, run.stage(stage) / "best.pt")

    changes = migrate(run.path)
    assert "features/index.json: 'lesions' recorded as the run's own" in changes
    assert {s: load_checkpoint(run.stage(s) / "best.pt")["sizes"] for s in sizes} == sizes
    k = sizes["infected"]["g"]
    assert sizes["fusion"] == network.sizes(k)
    cfg = PipelineConfig.of_run(run)
    pipe = Pipeline(run, phantom_root, cfg, progress=False)
    monkeypatch.setattr(pipe, "load_segmenter", lambda: pytest.fail("segmented again instead of reading the cache"))
    got = pipe.lesion_inputs()
    assert bool((got["prob"] == lesions["prob"]).all()) and json.loads((feats / fc.INDEX).read_text())["lesions"] == \
        fc.key_of(json.loads(json.dumps({**parts, "seg": asdict(cfg.seg)})))


def test_migrate_takes_the_second_source_rows_key_from_their_vectors(tmp_path):
    run = RunFolder(tmp_path / "old", create=True)
    pipeline = {k: v for k, v in asdict(PipelineConfig(recipe="guided-heads")).items() if k != "config_format"}
    run.update_config(pipeline=pipeline, second_source_rows={"covid": 3, "non_covid": 3, "candidates": 20})
    fc.save_cached(run.features_dir, "second-source-vectors", {"keys": "0123abcd", "tau": 0.75}, {"x": 1})
    changes = migrate(run.path)
    assert run.config["second_source_rows"] == {"covid": 3, "non_covid": 3, "candidates": 20, "keys": "0123abcd"}
    assert "second_source_rows: the rows' key taken from the run's second-source vectors" in changes


def test_a_joint_run_scored_with_another_cam_cannot_be_migrated(tmp_path):
    """Such a run was trained on Eq. 1 crops and scored on another method's: no configuration of today reads it."""
    run = RunFolder(tmp_path / "old", create=True)
    pipeline = {k: v for k, v in asdict(PipelineConfig(strategy="GHIF")).items() if k != "config_format"}
    run.update_config(pipeline={**pipeline, "cam": "gradcam"})
    before = (run.path / "config.json").read_text()
    with pytest.raises(RunError, match=r"cannot be read today \(strategy GHIF trains .*\); train it again"):
        migrate(run.path)
    assert (run.path / "config.json").read_text() == before and not (run.path / BACKUP).exists()


def test_a_joint_checkpoint_saved_under_the_old_branch_names_is_refused_by_name_then_migrated(tmp_path):
    """The joint network once named its branches g, h, inf and fusion: such a checkpoint is refused in one line
    that names the command, and `migrate` renames its weights (all of them, unchanged) once."""
    import torch

    from core.models.joint import JointNet
    from core.runs.checkpoint import CheckpointError, load_weights

    cfg = PipelineConfig(recipe="fast", init="scratch", strategy="GHIF")
    run = RunFolder(tmp_path / "joint-run", create=True)
    run.update_config(pipeline=json.loads(json.dumps(asdict(cfg))))
    torch.manual_seed(0)
    joint = JointNet(network.build(cfg, only=(*network.IMAGE_STAGES, "fusion")), cfg.tau, cfg.image_size)
    old_name = {"global": "g", "heatmap": "h", "infected": "inf", "fusion": "fusion"}
    today = joint.state_dict()
    old = {f"{old_name[k.split('.')[1]]}.{k.split('.', 2)[2]}": v for k, v in today.items()}
    assert len(old) == len(today)
    for name in ("best.pt", "last.pt"):
        save_checkpoint({"model": old, "epoch": 3}, run.stage("joint") / name)
    fresh = JointNet(network.build(cfg, only=(*network.IMAGE_STAGES, "fusion")), cfg.tau, cfg.image_size)
    best = run.stage("joint") / "best.pt"
    with pytest.raises(CheckpointError, match=r"joint/best.pt: its weights do not fit today's JointNet .*"
                                              r"`python -m train migrate RUN`"):
        load_weights(fresh, load_checkpoint(best), best)
    changes = migrate(run.path)
    assert changes == [f"joint/{n}: its branches' weights renamed to today's names (models.<stage>)"
                       for n in ("best.pt", "last.pt")]
    ckpt = load_checkpoint(best)
    load_weights(fresh, ckpt, best)
    assert ckpt["epoch"] == 3 and all(torch.equal(fresh.state_dict()[k], v) for k, v in today.items())
    assert migrate(run.path) == []  # done once
