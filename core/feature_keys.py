"""What every cached feature entry of a run is keyed by (core.runs.feature_cache): each entry's key parts, from
the run's configuration and the digests of the checkpoints that produced it, declared here once.

A key changes whenever what produced the entry does (a retrained stage, another tau or CAM method, other
frames, another lung-field algorithm or segmenter settings), so a stale entry is never served. The parts are
part of the run folders already written: changing one makes every run recompute that entry
(tests/test_feature_keys.py pins some).
"""
from __future__ import annotations

from dataclasses import asdict

from core.config import PipelineConfig
from core.inputs.fields import FieldFinder
from core.inputs.lungs import LUNG_VERSION
from core.models.network import IMAGE_STAGES, SEGMENTER
from core.runs.feature_cache import file_digest, key_of
from core.runs.runfolder import RunFolder


class FeatureKeys:
    """The key parts of one run's feature entries. `fields`: the run's FieldFinder (its key names the
    segmenter whose lesions join an input `lungs+lesions` field)."""

    def __init__(self, cfg: PipelineConfig, run: RunFolder, fields: FieldFinder):
        self.cfg, self.run = cfg, run
        self.input = cfg.input_version + fields.key  # what every framed input is built with

    def digest(self, stage: str) -> str:
        return file_digest(self.run.stage(stage) / "best.pt")

    def _segmenter(self) -> dict:
        """The segmenter's size and inference settings: what its lesion maps depend on besides its weights."""
        return {"size": self.cfg.seg.size, **self.cfg.seg.inference}

    def global_features(self, slice_keys) -> dict:
        """The global branch's pooled vectors and attention maps of the data set's slices."""
        return {"ckpt": self.digest("global"), "size": self.cfg.image_size, "cam": self.cfg.cam,
                "input": self.input, "keys": key_of(list(slice_keys))}

    def heatmap_crops(self, tau: float) -> dict:
        """The heatmap branch's crops at `tau`, cut from the global branch's maps."""
        c = self.cfg
        return {"global": self.digest("global"), "cam": c.cam, "tau": tau, "size": c.image_size, "hires": c.hires_size,
                "input": self.input}

    def heatmap_vectors(self, slice_keys, tau: float) -> dict:
        """The heatmap branch's pooled vectors of the data set's slices: its weights, its crops at `tau`, the slices."""
        return {"ckpt": self.digest("heatmap"), "crops": key_of(self.heatmap_crops(tau)), "input": self.input,
                "keys": key_of(list(slice_keys))}

    def lesions(self, slice_keys) -> dict:
        """The segmenter's lesion maps and the infected branch's crops of the data set's slices."""
        c = self.cfg
        return {"ckpt": self.digest(SEGMENTER), "seg": asdict(c.seg), "lesion_size": c.lesion_size,
                "hires": c.hires_size, "keys": key_of(list(slice_keys)), "input": self.input}

    def second_source_lesions(self, slice_keys) -> dict:
        """The segmenter's lesion maps of the second source's candidate slices."""
        return {"ckpt": self.digest(SEGMENTER), **self._segmenter(), "hires": self.cfg.hires_size,
                "input": self.input, "keys": key_of(list(slice_keys))}

    def second_source_vectors(self, row_keys) -> dict:
        """The trained branches' vectors of the second source's chosen rows (the heads' extra training rows)."""
        c = self.cfg
        parts = {stage: self.digest(stage) for stage in (*IMAGE_STAGES, SEGMENTER)}
        parts.update(cam=c.cam, tau=c.tau, size=c.image_size, hires=c.hires_size, lesion_size=c.lesion_size,
                     seg=self._segmenter(), input=self.input, keys=key_of(list(row_keys)))
        return parts

    def fusion(self) -> dict:
        """The fusion layer's input, standardised input and probabilities (the dashboard's 3D map)."""
        return {"ckpt": self.digest("fusion")}

    def fusion_cam(self, slice_keys, tau: float, size: int) -> dict:
        """The fusion CAM of every slice at `size`: every trained network's weights and every input they read (the
        slices, the heatmap branch's crops at `tau`, the segmenter's lesion crops)."""
        slice_keys = list(slice_keys)
        return {"ckpt": self.digest("fusion"), **{s: self.digest(s) for s in IMAGE_STAGES},
                "crops": key_of(self.heatmap_crops(tau)), "lesions": key_of(self.lesions(slice_keys)),
                "keys": key_of(slice_keys), "size": size}


def data_pictures(run: RunFolder, data_root: str, version: int) -> dict:
    """The Data page's pictures of the slices (core.pictures.data_views): the drawing's `version`, the data root,
    the run's settings, the lung field's algorithm (the outline drawn) and its segmenter (the lesions drawn). A
    run-wide entry: no FeatureKeys needed."""
    return {"version": version, "data_root": str(data_root), "pipeline": run.config.get("pipeline"),
            "lung_field": LUNG_VERSION, "segmenter": file_digest(run.stage(SEGMENTER) / "best.pt")}
