"""The second source (core.data.second_source): COVID-SemiSeg's CT volumes as both classes, labelled by the
run's segmenter, added to the global branch's training split only."""
from __future__ import annotations

from dataclasses import asdict

import pytest
import torch

from core.data import second_source as ss
from tests.phantom_sizes import SIZES

SEG = {"size": 64, "epochs": 1, "steps_per_round": 1, "per_round": 5, "max_rounds": 1, "polish_epochs": 0,
       "ignore_band": (0.2, 0.8), "labelled_share": 0.75}


@pytest.fixture(scope="module")
def segmenter(phantom_root, module_scratch):
    """One tiny segmenter (Algorithm 1 at SEG) the pipelines here adopt (`segmenter=`) instead of each training its own:
    the second source is labelled by it."""
    from core.config import SegConfig
    from core.training.segmentation import semi_supervised

    folder = module_scratch("second-source-segmenter") / "infnet"
    semi_supervised(phantom_root, folder, SegConfig(**SEG), seed=0, progress=False, log=lambda m: None)
    return folder / "best.pt"


def test_selection_is_balanced_sure_and_seeded():
    share = torch.tensor([0.0, 0.001, 0.2, 0.3, 0.01, 0.0, 0.5, 0.0])
    cover = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.1, 0.5, 0.5])  # slice 5: an apex slice
    found = torch.tensor([True, True, True, True, True, True, True, False])  # slice 7: no lung field
    idx, labels = ss.select(share, cover, found, seed=0)
    chosen = dict(zip(idx.tolist(), labels.tolist()))
    assert labels.sum() == len(labels) / 2  # as many non-COVID as COVID
    assert {i for i, y in chosen.items() if y == 1} <= {2, 3, 6} and {i for i, y in chosen.items() if y == 0} <= {0, 1}
    assert 4 not in chosen and 5 not in chosen and 7 not in chosen  # unsure share, apex, no lung field
    assert len(idx) == 4
    assert torch.equal(ss.select(share, cover, found, seed=0)[0], idx)  # the run's seed draws the same rows
    assert len(ss.select(share, cover, found, seed=0, per_class=1)[0]) == 2


def test_global_branch_trains_on_both_sources(phantom_root, segmenter, tmp_path, monkeypatch):
    """On the phantoms: the global stage's training split gains the chosen volume slices (images, lung
    fields, lesion masks of the COVID ones), validation stays COVID-CT's, and the run records the counts."""
    from core import pipeline as pl
    from core.config import PipelineConfig
    from core.runs.runfolder import RunFolder

    monkeypatch.setattr(ss, "LESION_MIN", 0.0)  # phantom volumes: make both classes certain to exist
    monkeypatch.setattr(ss, "CLEAR_MAX", 0.0)
    monkeypatch.setattr(ss, "LUNG_MIN", 0.0)
    seen = {}
    real = pl.train_stage

    def spy(model, train, val, *a, **k):
        seen["train"], seen["val"] = train, val
        return real(model, train, val, *a, **k)

    monkeypatch.setattr(pl, "train_stage", spy)
    run = RunFolder(tmp_path / "run", create=True)
    cfg = PipelineConfig(recipe="guided", input="lungs", second_source="semiseg-volumes", epochs=1, batch_size=8,
                            **SIZES, seg=SEG, segmenter=str(segmenter), audits=False,
                            precompute=False)  # what the pages read: not this test's subject
    run.update_config(data_root=str(phantom_root), synthetic=True, pipeline=asdict(cfg))
    pipe = pl.Pipeline(run, phantom_root, cfg, progress=False)
    pipe.global_model()
    added = run.config["second_source_rows"]
    n_covidct = len(pipe.split_rows("train"))
    assert added["covid"] == added["non_covid"] > 0
    assert len(seen["train"]) == n_covidct + 2 * added["covid"] and len(seen["val"]) == len(pipe.split_rows("val"))
    assert set(seen["train"].inputs) == {"image", "lung", "lesion"}
    extra = slice(n_covidct, None)
    labels = seen["train"].labels[extra]
    lesion = seen["train"].inputs["lesion"][extra]
    assert lesion[labels == 0].sum() == 0  # no lesion target on a non-COVID slice
    assert "second source (semiseg-volumes)" in (run.path / "log.txt").read_text()


def test_unknown_second_source_is_refused(phantom_root, tmp_path):
    from core.config import PipelineConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder

    with pytest.raises(ValueError, match="unknown second source 'elsewhere'"):
        Pipeline(RunFolder(tmp_path / "r", create=True), phantom_root, PipelineConfig(second_source="elsewhere"))


@pytest.mark.parametrize("recipe", ["guided-heads", "guided-long"])
def test_vector_heads_learn_from_both_sources_only_when_the_recipe_says(phantom_root, segmenter, tmp_path, monkeypatch,
                                                                      recipe):
    """guided-heads: fusion and global+heatmap train on COVID-CT's training rows plus the second source's,
    whose vectors are those the trained branches give (the global one checked against the global branch
    itself); the heatmap and infected stages and guided-long's heads see COVID-CT only."""
    from core import pipeline as pl
    from core.config import PipelineConfig
    from core.models.network import HEADS
    from core.runs.runfolder import RunFolder

    monkeypatch.setattr(ss, "LESION_MIN", 0.0)
    monkeypatch.setattr(ss, "CLEAR_MAX", 0.0)
    monkeypatch.setattr(ss, "LUNG_MIN", 0.0)
    seen = {}
    real = pl.train_stage

    def spy(model, train, val, recipe_, stage_dir, **k):
        seen[stage_dir.name] = train
        return real(model, train, val, recipe_, stage_dir, **k)

    monkeypatch.setattr(pl, "train_stage", spy)
    run = RunFolder(tmp_path / "run", create=True)
    cfg = PipelineConfig(recipe=recipe, epochs=1, batch_size=8, **SIZES, seg=SEG, segmenter=str(segmenter),
                         audits=False, precompute=False)  # what the pages read: not this test's subject
    assert cfg.heads_second_source == (recipe == "guided-heads")
    pipe = pl.Pipeline(run, phantom_root, cfg, progress=False)
    pipe.run_all()
    n = len(pipe.split_rows("train"))
    k = 2 * run.config["second_source_rows"]["covid"]
    assert k > 0 and len(seen["global"]) == n + k
    assert len(seen["heatmap"]) == len(seen["infected"]) == n
    for head in ("fusion", "global+heatmap"):
        assert set(seen[head].inputs) == set(HEADS[head])
        assert len(seen[head]) == n + (k if cfg.heads_second_source else 0)
    if cfg.heads_second_source:
        rows, _ = pipe.second_source()
        extra = {key: v[n:] for key, v in seen["fusion"].inputs.items()}
        assert torch.equal(seen["fusion"].labels[n:], rows.labels)
        g = pipe.global_model()
        with torch.no_grad():
            want = g.embed({"image": rows.images[:4].float() / 255})
        assert torch.allclose(extra["g"][:4], want, atol=1e-4)
        assert torch.isfinite(extra["h"]).all() and extra["h"].abs().sum() > 0
        assert torch.equal(extra["present"].bool().any(1), (extra["r"].abs().sum(1) > 0) | (extra["l"].abs().sum(1) > 0))
        assert run.config["pipeline"]["heads_second_source"] is True


def test_heads_on_a_second_source_need_one(phantom_root, tmp_path):
    from core.config import PipelineConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder

    with pytest.raises(ValueError, match="heads_second_source needs a second source"):
        Pipeline(RunFolder(tmp_path / "r", create=True), phantom_root,
                 PipelineConfig(recipe="guided-heads", second_source="none"))


def test_heads_train_on_covidct_alone_when_the_second_source_chose_nothing(phantom_root, segmenter, tmp_path,
                                                                          monkeypatch):
    from core.config import PipelineConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder
    monkeypatch.setattr(ss, "LESION_MIN", 2.0)  # no slice is ever this sure
    run = RunFolder(tmp_path / "run", create=True)
    cfg = PipelineConfig(recipe="guided-heads", epochs=1, batch_size=8, **SIZES, seg=SEG, segmenter=str(segmenter),
                         audits=False, precompute=False)  # what the pages read: not this test's subject
    timings = Pipeline(run, phantom_root, cfg, progress=False).run_all()
    assert "precompute" not in timings and "fusion" in timings  # --no-precompute: trained, nothing for the pages
    assert run.config["second_source_rows"]["covid"] == 0
    assert "no slice chosen, so the vector heads train on COVID-CT alone" in (run.path / "log.txt").read_text()
    assert (run.stage("fusion") / "best.pt").exists()


def test_a_resumed_run_refuses_second_source_rows_other_than_those_its_global_branch_trained_on(
        phantom_root, tmp_path, monkeypatch):
    """Other data, lung fields or segmenter settings would give a resumed run's heads other slices than its global
    branch saw: refused with a line that says so, as are rows recorded without their key (nothing to check them by)."""
    from core.config import PipelineConfig
    from core.errors import USER_ERRORS
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder

    def fake_build(keys):
        def build(*a, **k):
            n = len(keys)
            rows = ss.SecondSource(list(keys), torch.zeros(n, 1, 8, 8, dtype=torch.uint8),
                                   torch.zeros(n, 1, 8, 8, dtype=torch.uint8), torch.zeros(n, 1, 8, 8, dtype=torch.uint8),
                                   torch.tensor([1.0, 0.0] * (n // 2)))
            return rows, {"candidates": 10, "covid": n // 2, "non_covid": n // 2}
        return build

    run = RunFolder(tmp_path / "run", create=True)
    cfg = PipelineConfig(recipe="guided-heads")
    monkeypatch.setattr(ss, "build", fake_build(["a", "b"]))
    Pipeline(run, phantom_root, cfg, progress=False).second_source()
    run.stage("global").mkdir()  # its global branch has begun training on rows a, b
    Pipeline(run, phantom_root, cfg, progress=False).second_source()  # the same rows: fine
    monkeypatch.setattr(ss, "build", fake_build(["a", "c"]))
    with pytest.raises(USER_ERRORS, match=r"its global branch trained on 1 \+ 1 second-source slices.*another --out"):
        Pipeline(run, phantom_root, cfg, progress=False).second_source()
    recorded = dict(run.config["second_source_rows"])
    recorded.pop("keys")  # rows recorded without their key (core.runs.migrate could not find it): unverifiable
    run.update_config(second_source_rows=recorded)
    monkeypatch.setattr(ss, "build", fake_build(["a", "b"]))
    with pytest.raises(USER_ERRORS, match=r"1 \+ 1 slices that are not those \(or those were never recorded by key\)"):
        Pipeline(run, phantom_root, cfg, progress=False).second_source()
