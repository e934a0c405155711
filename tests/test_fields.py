"""core.inputs.fields: the lung field a run's input is built on, and input lungs+lesions end to end."""
from __future__ import annotations

import json
from dataclasses import asdict, replace

import numpy as np
import pytest

from core.config import SegConfig
from core.data.covidct import read_covidct
from core.data.imaging import read_slice
from core.inputs.fields import WITH_LESIONS, FieldFinder
from core.inputs.harmonise import harmonise
from core.inputs.lungs import lung_field
from tests.phantom_sizes import SIZES


def _seg(run) -> SegConfig:
    return SegConfig.from_dict(json.loads((run / "config.json").read_text())["pipeline"]["seg"])


def _found_slice(root) -> np.ndarray:
    for s in read_covidct(root):
        img = read_slice(s.path)
        if lung_field(img).found:
            return img
    raise AssertionError("no phantom slice with a lung field")


def test_the_classical_finder_is_the_lung_field(phantom_root):
    img = _found_slice(phantom_root)
    finder = FieldFinder()
    assert finder.key == ""  # frames cached before input lungs+lesions existed keep their keys
    assert np.array_equal(finder(img).mask, lung_field(img).mask)


def test_the_lesion_finder_adds_what_the_runs_segmenter_marks(phantom_root, synthetic_run):
    """Threshold 0 marks every pixel, so the field becomes the whole slice; threshold 1 marks none, so it
    stays the classical field. Each setting and each checkpoint gets its own cache key."""
    img = _found_slice(phantom_root)
    ckpt, seg = synthetic_run / "infnet" / "best.pt", _seg(synthetic_run)
    classical = lung_field(img).mask
    assert not classical.all()
    every = FieldFinder(ckpt, replace(seg, threshold=0.0, ignore_band=None))
    none = FieldFinder(ckpt, replace(seg, threshold=1.0, ignore_band=None))
    assert every(img).mask.all() and every(img).found
    assert np.array_equal(every(img).mask, every(img).mask)  # the remembered field is the same field
    assert np.array_equal(none(img).mask, classical)
    assert len({FieldFinder().key, every.key, none.key}) == 3


def test_the_key_names_the_segmenters_content(synthetic_run, guided_run):
    seg = _seg(synthetic_run)
    a = FieldFinder(synthetic_run / "infnet" / "best.pt", seg)
    b = FieldFinder(guided_run / "infnet" / "best.pt", seg)
    assert a.key != b.key


def test_input_lungs_plus_lesions_never_falls_back_to_the_classical_field(phantom_root, tmp_path):
    from core.inputs.frames import load_frames

    img = _found_slice(phantom_root)
    with pytest.raises(ValueError, match="needs the lung field passed in"):
        harmonise(img, WITH_LESIONS, 64)
    with pytest.raises(ValueError, match="needs the run's FieldFinder"):
        load_frames([read_covidct(phantom_root)[0].path], 64, WITH_LESIONS)
    with pytest.raises(ValueError, match="infnet/best.pt"):
        FieldFinder.for_mode(WITH_LESIONS, tmp_path / "infnet" / "best.pt", SegConfig())
    with pytest.raises(ValueError, match="both"):
        FieldFinder(tmp_path / "best.pt")
    assert FieldFinder.for_mode("lungs").key == ""


@pytest.fixture(scope="module")
def lesions_run(phantom_root, synthetic_run, module_scratch):
    """Recipe guided-lesions on the phantoms, one epoch a stage. The run adopts the synthetic run's
    segmenter and thresholds it at 0, so its fields are whole slices: visibly not the classical field."""
    from core.config import PipelineConfig
    from core.pipeline import Pipeline
    from core.runs.runfolder import RunFolder

    run = RunFolder(module_scratch("runs") / "lesions", create=True)
    seg = replace(_seg(synthetic_run), threshold=0.0, ignore_band=None)
    cfg = PipelineConfig(recipe="guided-lesions", epochs=1, batch_size=8, **SIZES, seg=seg,
                         segmenter=str(synthetic_run / "infnet" / "best.pt"), audits=False)
    run.update_config(data_root=str(phantom_root), synthetic=True, pipeline=asdict(cfg))
    pipe = Pipeline(run, phantom_root, cfg, progress=False)
    pipe.run_all()
    return run.path, pipe


@pytest.mark.slow  # lesions_run: another whole pipeline
def test_a_lesions_run_is_trained_analysed_audited_and_shown_on_its_own_fields(lesions_run, phantom_root):
    from core.audits.shortcut import RunScorer, audit
    from core.inference import TrainedRun
    from core.inputs.frames import load_frames
    from core.runs.run_view import RunView

    path, pipe = lesions_run
    assert pipe.cfg.input == WITH_LESIONS and pipe.fields.key
    slices = read_covidct(phantom_root)
    found = pipe.frames.found.numpy()
    assert found.any()
    classical = load_frames([s.path for s in slices], 64, "lungs")
    # fed: the whole slice's field, framed; the classical field is smaller wherever one was found
    assert (pipe.frames.lungs[found] > 127).float().mean() > (classical.lungs[found] > 127).float().mean()

    tr = TrainedRun.load(path)
    assert tr.fields.key == pipe.fields.key
    i = int(np.flatnonzero(found)[0])
    a = tr.analyse(read_slice(slices[i].path))
    assert np.array_equal(a.lung, pipe.frames.lungs[i, 0].numpy() > 127)  # live analysis frames it the same way

    rv = RunView(path.parent, path.name)
    assert np.array_equal(rv.lung_field(slices[i].key, 64), pipe.frames.lungs[i, 0].numpy() > 127)

    res = audit(tr.run, phantom_root, RunScorer(tr), limit=4, progress=False, external_split="train")
    # scored live through the run's own fields, every branch matches what the run stored
    assert res["live_vs_stored_max_abs_diff"] and max(res["live_vs_stored_max_abs_diff"].values()) < 1e-3
    assert res["external_slices"]["lung_field_share"] == pytest.approx(1.0)  # whole-slice fields, not classical


@pytest.mark.slow  # lesions_run: another whole pipeline
def test_another_segmenter_never_gets_a_runs_cached_frames(lesions_run, phantom_root):
    from core.inputs.frames import load_frames

    path, pipe = lesions_run
    paths = [s.path for s in read_covidct(phantom_root)]
    other = FieldFinder(path / "infnet" / "best.pt", replace(pipe.cfg.seg, threshold=1.0))
    assert not np.array_equal(load_frames(paths, 64, WITH_LESIONS, other).lungs.numpy(), pipe.frames.lungs.numpy())
    assert np.array_equal(load_frames(paths, 64, WITH_LESIONS, pipe.fields).lungs.numpy(), pipe.frames.lungs.numpy())
