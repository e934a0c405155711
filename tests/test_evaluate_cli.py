"""`train evaluate`: a readable table on a terminal, one JSON object with --json or when piped, the same
metrics either way; and training progress bars name their stage."""
import argparse
import io
import json

import pytest

from train import evaluate


def _run(run, monkeypatch, tty: bool, *extra):
    p = argparse.ArgumentParser()
    evaluate.add_args(p)
    args = p.parse_args(["--run", str(run), "--bootstrap", "20", *extra])
    out = io.StringIO()
    out.isatty = lambda: tty
    monkeypatch.setattr("sys.stdout", out)
    result = evaluate.run(args)
    return out.getvalue(), result


def test_terminal_gets_a_table_with_every_branch(synthetic_run, monkeypatch):
    text, result = _run(synthetic_run, monkeypatch, tty=True)
    lines = text.splitlines()
    assert lines[0].startswith(f"{synthetic_run.name}: test split,") and "validation operating point" in lines[0]
    assert "synthetic phantoms" in lines[0]  # a phantom result says so
    assert lines[2].split()[:3] == ["branch", "accuracy", "F1"]
    for branch, m in result.items():
        if isinstance(m, dict):
            row = next(line for line in lines if line.split()[:1] == [branch])
            assert f"{m['auc']['value']:.3f} [" in row and f"{m['accuracy']['value']:.3f}" in row
    assert "metrics_test.json" in lines[-1]


@pytest.mark.parametrize("tty, extra", [(False, ()), (True, ("--json",))])
def test_pipes_and_json_flag_get_one_json_object(synthetic_run, monkeypatch, tty, extra):
    text, result = _run(synthetic_run, monkeypatch, tty, *extra)
    assert json.loads(text) == json.loads(json.dumps(result))


def test_progress_bars_name_the_stage(phantom_root, tmp_path, capsys):
    from core.data.slices import load_slice_set
    from core.models.backbones import build_backbone
    from core.models.classifier import SliceClassifier
    from core.training.recipes import get_recipe
    from core.training.trainer import train_stage

    ds = load_slice_set(phantom_root, 64)
    model = SliceClassifier(build_backbone("efficientnet_lite0", "imagenet"))
    train_stage(model, ds.stage_data("train"), ds.stage_data("val"), get_recipe("fast", epochs=1, batch_size=16),
                tmp_path / "global", progress=True, log=lambda m: None)
    assert "global epoch 1/1" in capsys.readouterr().err
