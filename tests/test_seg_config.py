"""One segmenter configuration (core.config.SegConfig): every default declared once, the
command-line flags of `train infnet` / `train pipeline` derived from its fields, the resolved
configuration saved in the run and rebuilt from it (runs saved before SegConfig: tests/test_migrate.py)."""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, fields

import pytest

from core.config import SegConfig
from core.training.segmentation import semi_supervised

FIELDS = [f.name for f in fields(SegConfig)]
COMMANDS = {"infnet": "", "pipeline": "seg-"}  # command -> the prefix of its SegConfig flags


def _parser(command: str) -> argparse.ArgumentParser:
    import importlib

    p = argparse.ArgumentParser()
    importlib.import_module(f"train.{command}").add_args(p)
    return p


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("name", FIELDS)
def test_every_setting_has_a_flag_whose_default_is_the_settings(command, name):
    prefix = COMMANDS[command]
    p = _parser(command)
    flag = f"--{prefix}{name.replace('_', '-')}"
    assert flag in p._option_string_actions, f"train {command} has no {flag}"
    args = p.parse_args(["--out", "x"])
    assert getattr(args, (prefix + name).replace("-", "_")) == getattr(SegConfig(), name)


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_flags_give_the_default_config_and_old_spellings_still_parse(command):
    from train.common import config_from_args

    prefix = COMMANDS[command]
    p = _parser(command)
    assert config_from_args(p.parse_args(["--out", "x"]), SegConfig, prefix=prefix) == SegConfig()
    f = lambda n: f"--{prefix}{n}"
    old = ["--out", "x", f("epochs"), "8", f("max-rounds"), "all", f("steps-per-round"), "0", f("polish-epochs"), "2",
           f("ignore-band"), "none", f("labelled-share"), "0", f("sources"), "semiseg",
           "--no-seg-tta" if prefix else "--no-pseudo-tta"]
    cfg = config_from_args(p.parse_args(old), SegConfig, prefix=prefix)
    assert (cfg.epochs, cfg.max_rounds, cfg.steps_per_round, cfg.polish_epochs) == (8, None, None, 2)
    assert (cfg.ignore_band, cfg.labelled_share, cfg.sources) == (None, None, ("semiseg",))
    assert (cfg.tta, cfg.pseudo_tta) == ((False, True) if prefix else (True, False))


@pytest.mark.parametrize("bad, field", [({"size": 100}, "size"), ({"ignore_band": (0.6, 0.9)}, "ignore_band"),
                                        ({"ignore_band": (0.1, 0.4)}, "ignore_band"), ({"labelled_share": 1.0}, "labelled_share"),
                                        ({"labelled_share": 0.0}, "labelled_share"), ({"max_rounds": -1}, "max_rounds"),
                                        ({"precision": "fp16"}, "precision"), ({"sources": ("elsewhere",)}, "sources")])
def test_out_of_range_values_are_refused_naming_the_setting(bad, field):
    with pytest.raises(ValueError, match=field) as e:
        SegConfig(**bad)
    assert e.value.field == field


def test_a_config_survives_json_and_unknown_names_are_refused(tmp_path):
    cfg = SegConfig(size=64, ignore_band=(0.2, 0.8), sources=("semiseg",), max_rounds=None)
    assert SegConfig.from_dict(json.loads(json.dumps(asdict(cfg)))) == cfg  # lists back to tuples
    with pytest.raises(TypeError, match="epochz"):
        SegConfig.from_dict({"epochz": 1})
    with pytest.raises(TypeError, match="epochz"):  # before any file is written
        semi_supervised(tmp_path, tmp_path / "seg", epochz=1)
    assert not (tmp_path / "seg").exists()


def test_a_plain_dict_reads_as_seg_config_settings_with_todays_defaults():
    from core.config import PipelineConfig

    assert PipelineConfig(seg={"size": 64}).seg == SegConfig(size=64)
    assert PipelineConfig(seg={"ignore_band": [0.1, 0.9]}).seg.ignore_band == (0.1, 0.9)  # JSON lists: tuples


def test_pipeline_flags_reach_the_runs_saved_config(phantom_root, tmp_path, monkeypatch):
    """`train pipeline --seg-...` -> config.json "pipeline"."seg" -> PipelineConfig.from_saved."""
    from core.config import PipelineConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder
    from train import pipeline

    monkeypatch.setattr(Pipeline, "run_all", lambda self: {})  # the configuration only: train nothing
    argv = ["--data-root", str(phantom_root), "--out", str(tmp_path / "r"), "--image-size", "64", "--no-progress",
            "--seg-size", "96", "--seg-epochs", "7", "--seg-max-rounds", "all", "--seg-ignore-band", "0.2,0.8",
            "--seg-sources", "semiseg", "--seg-finetune-lr", "1e-4", "--no-seg-tta", "--seg-precision", "bf16"]
    p = argparse.ArgumentParser()
    pipeline.add_args(p)
    assert pipeline.run(p.parse_args(argv)) == 0
    saved = RunFolder(tmp_path / "r").config["pipeline"]["seg"]
    want = SegConfig(size=96, epochs=7, max_rounds=None, ignore_band=(0.2, 0.8), sources=("semiseg",),
                     finetune_lr=1e-4, tta=False, precision="bf16")
    assert saved == json.loads(json.dumps(asdict(want)))
    assert PipelineConfig.from_saved(RunFolder(tmp_path / "r").config["pipeline"]).seg == want
