"""Cache keys come from one place (core.feature_keys) and keep their values: a run trained before a change resumes
without recomputing. The default run's parts and keys pinned here are those the pipeline has always written (a
whole-slice run's lesion key now names its input too; core.runs.migrate re-keys older ones); a change to any of
them must be deliberate (every run would recompute that entry)."""
from __future__ import annotations

import json
from dataclasses import asdict

import pytest

from core import feature_keys
from core.config import PipelineConfig
from core.feature_keys import FeatureKeys, data_pictures
from core.inputs.fields import FieldFinder
from core.runs.feature_cache import key_of
from core.runs.runfolder import RunFolder

SLICES = ["CT_COVID/a.png", "CT_NonCOVID/b.png"]
WEIGHTS = {"global": b"global-weights", "heatmap": b"heatmap-weights", "infected": b"infected-weights",
           "infnet": b"segmenter-weights", "fusion": b"fusion-weights"}


@pytest.fixture
def run(tmp_path):
    run = RunFolder(tmp_path / "run", create=True)
    for stage, data in WEIGHTS.items():  # stand-in checkpoints: only their bytes' digest enters the keys
        run.stage(stage).mkdir()
        (run.stage(stage) / "best.pt").write_bytes(data)
    return run


def test_the_default_runs_keys_are_pinned(run):
    keys = FeatureKeys(PipelineConfig(), run, FieldFinder())  # input lungs, the classical lung field
    assert keys.global_features(SLICES) == {"ckpt": "2f6de76ab788b725", "size": 224, "cam": "eq1",
                                            "input": keys.input, "keys": "3c2ed129dd85d689"}
    assert keys.heatmap_crops(0.75) == {"global": "2f6de76ab788b725", "cam": "eq1", "tau": 0.75, "size": 224,
                                        "hires": 448, "input": keys.input}
    assert key_of(keys.global_features(SLICES)) == "f9b38e6c6e8e7b57"
    assert key_of(keys.heatmap_crops(0.75)) == "cc27dce97e3b5650"
    assert keys.input == "lungs-lungs2-g0.01-m0.08-n0.1,0.9"
    lesions = keys.lesions(SLICES)
    assert lesions["seg"] == asdict(PipelineConfig().seg) and lesions["input"] == keys.input
    assert key_of(lesions) == "7afd3ab83e9042e5"
    assert key_of(keys.second_source_lesions(SLICES)) == "28771c0bf7929810"
    assert key_of(keys.second_source_vectors(SLICES)) == "8c76343e005d6e49"
    assert key_of(keys.fusion()) == "f36210d780d58fa7"
    # keyed by every input since a resume reads them back (before, every pipeline call computed them again)
    assert key_of(keys.heatmap_vectors(SLICES, 0.75)) == "691520d6984ea6a7"
    assert key_of(keys.fusion_cam(SLICES, 0.75, 112)) == "088d94756b09d57d"


def test_the_heatmap_vectors_and_fusion_cams_change_key_with_anything_they_are_made_from(run):
    """A resume reads them back: any network retrained, another tau, other slices or lesion settings, another size
    must be a new key."""
    def both(cfg=PipelineConfig(), slices=SLICES, size=112):
        keys = FeatureKeys(cfg, run, FieldFinder())
        return key_of(keys.heatmap_vectors(slices, cfg.tau)), key_of(keys.fusion_cam(slices, cfg.tau, size))

    base = both()
    for changed in (both(PipelineConfig(tau=0.5)), both(slices=SLICES[:1]), both(PipelineConfig(cam="gradcam"))):
        assert changed[0] != base[0] and changed[1] != base[1]
    assert both(PipelineConfig(seg={"tta": False}))[1] != base[1] and both(size=56)[1] != base[1]
    for stage in ("fusion", "infected", "infnet", "heatmap", "global"):  # each network retrained in turn
        before = both()
        (run.stage(stage) / "best.pt").write_bytes(b"retrained " + stage.encode())
        after = both()
        assert after[1] != before[1], stage
        assert (after[0] != before[0]) == (stage in ("heatmap", "global")), stage  # what its crops and weights are


def test_every_lesion_key_names_its_input_and_every_input_change_makes_a_new_key(run):
    whole = FeatureKeys(PipelineConfig(recipe="fast"), run, FieldFinder())  # fed the whole slice
    assert whole.lesions(SLICES)["input"] == "slice-lungs2-g0.01"  # older such runs: core.runs.migrate re-keys them
    assert key_of(whole.lesions(SLICES)) == "447f13dd5e89593d"
    base = FeatureKeys(PipelineConfig(), run, FieldFinder())
    for changed in (PipelineConfig(tau=0.5), PipelineConfig(cam="gradcam"), PipelineConfig(image_size=256),
                    PipelineConfig(seg={"tta": False})):
        other = FeatureKeys(changed, run, FieldFinder())
        assert json.dumps([other.heatmap_crops(changed.tau), other.lesions(SLICES)], sort_keys=True) != \
            json.dumps([base.heatmap_crops(base.cfg.tau), base.lesions(SLICES)], sort_keys=True)
    (run.stage("global") / "best.pt").write_bytes(b"retrained")  # a retrained stage: new keys of what it made
    assert key_of(base.global_features(SLICES)) != "f9b38e6c6e8e7b57"


def test_another_lung_field_algorithm_re_keys_every_entry_read_through_the_field(run, monkeypatch):
    """The global features and heatmap crops are cut from frames the lung field gives: a changed algorithm
    (LUNG_VERSION) must not serve them, nor the lesions or the Data page's pictures, from before."""
    import core.inputs.harmonise as harmonise

    def entries():
        keys = FeatureKeys(PipelineConfig(), run, FieldFinder())
        return [key_of(keys.global_features(SLICES)), key_of(keys.heatmap_crops(0.75)), key_of(keys.lesions(SLICES)),
                key_of(keys.heatmap_vectors(SLICES, 0.75)), key_of(keys.fusion_cam(SLICES, 0.75, 224))]

    before = entries() + [key_of(data_pictures(run, "data", 2))]
    monkeypatch.setattr(harmonise, "LUNG_VERSION", "next")
    monkeypatch.setattr(feature_keys, "LUNG_VERSION", "next")  # the Data page's outlines
    after = entries() + [key_of(data_pictures(run, "data", 2))]
    assert all(a != b for a, b in zip(after, before)), (before, after)
