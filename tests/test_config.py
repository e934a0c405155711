"""One run configuration (core.config.PipelineConfig): every default declared once in the dataclass, the
commands' flags derived from it, hires_size derived from image_size in one place, joint strategies scored on the
crops they trained on, and a run's configuration read back only in today's format."""
from __future__ import annotations

import argparse
import importlib
from dataclasses import asdict

import pytest

from core.config import CONFIG_FORMAT, ConfigValueError, PipelineConfig
from core.runs.runfolder import RunError, RunFolder
from train.common import config_fields, config_from_args

SETTINGS = [f.name for f in config_fields(PipelineConfig)]


def _parser(command: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser()
    importlib.import_module(f"train.{command}").add_args(p)
    return p


@pytest.mark.parametrize("name", SETTINGS)
def test_every_setting_has_a_pipeline_flag_whose_default_is_the_settings(name):
    p = _parser("pipeline")
    flag = f"--{name.replace('_', '-')}"
    assert flag in p._option_string_actions, f"train pipeline has no {flag}"
    assert getattr(p.parse_args(["--out", "x"]), name) == PipelineConfig.__dataclass_fields__[name].default


@pytest.mark.parametrize("command", ["pipeline", "global_branch"])
def test_no_flags_give_the_default_configuration(command):
    p = _parser(command)
    assert asdict(config_from_args(p.parse_args(["--out", "x"]), PipelineConfig)) == asdict(PipelineConfig())
    cfg = config_from_args(p.parse_args(["--out", "x", "--recipe", "fast", "--image-size", "64"]), PipelineConfig)
    assert (cfg.input, cfg.second_source, cfg.hires_size) == ("slice", "none", 128)  # the recipe's, 2 x image size


def test_hires_size_is_twice_the_image_size_unless_given():
    assert PipelineConfig().hires_size == 2 * PipelineConfig().image_size
    assert PipelineConfig(image_size=64).hires_size == 128 and PipelineConfig(image_size=64, hires_size=96).hires_size == 96


@pytest.mark.parametrize("strategy", ["GHIF", "GHI-F"])
def test_a_joint_strategy_is_scored_on_the_eq1_crops_it_trained_on(strategy, tmp_path, capsys):
    """Joint training cuts the heatmap crops with Eq. 1 inside its forward pass (core.models.joint): a run scored
    with another CAM method would be scored on crops it never trained on, so the configuration refuses it."""
    assert PipelineConfig(strategy=strategy).cam == "eq1"
    with pytest.raises(ConfigValueError, match="trains the heatmap branch on eq1 crops") as err:
        PipelineConfig(strategy=strategy, cam="gradcam")
    assert err.value.field == "cam"
    from train.__main__ import main

    code = main(["pipeline", "--strategy", strategy, "--cam", "gradcam", "--out", str(tmp_path / "r")])
    err_lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err_lines == [err_lines[0]] and err_lines[0].startswith("error: --cam: strategy")
    assert not (tmp_path / "r" / "config.json").exists()  # refused before anything is written


@pytest.mark.parametrize("bad, flag", [({"tau": 1.5}, "tau"), ({"strategy": "GH"}, "strategy"),
                                       ({"second_source": "none", "recipe": "guided-heads"}, "heads_second_source"),
                                       ({"image_size": 0}, "image_size"), ({"recipe": "slow"}, "recipe")])
def test_out_of_range_settings_are_refused_naming_the_setting(bad, flag):
    with pytest.raises(ConfigValueError) as err:
        PipelineConfig(**bad)
    assert err.value.field == flag


def test_a_run_is_read_only_in_todays_format(tmp_path):
    saved = asdict(PipelineConfig())
    assert saved["config_format"] == CONFIG_FORMAT
    assert asdict(PipelineConfig.from_saved(saved)) == saved
    run = RunFolder(tmp_path / "old", create=True)
    run.update_config(pipeline={k: v for k, v in saved.items() if k != "config_format"})
    with pytest.raises(RunError, match=rf"{run.path}: saved in an older configuration format \(1, now {CONFIG_FORMAT}\); "
                                       rf"run `python -m train migrate {run.path}` once"):
        PipelineConfig.of_run(run)
    with pytest.raises(RunError, match="no pipeline configuration"):
        PipelineConfig.of_run(RunFolder(tmp_path / "empty", create=True))
