"""Algorithm 2, strategy G-H-I-F: global, then heatmap and infected (global frozen), then fusion.
The joint strategies of the paper's Table 3 (GHI-F, GHIF) are in core.models.joint, run by `run_joint`.

Every frozen model's outputs (pooled vectors, Eq. 1 maps, crops, lesion masks) are computed once
and cached in runs/<name>/features/, keyed by what produced them (core.feature_keys, core.runs.feature_cache).
Stage III trains on cached vectors only. The run folder gets one stage folder per trained model
(core.models.network.STAGES, which also builds every model and assembles the fusion input):

    global/  heatmap/  infnet/  infected/  global+heatmap/  fusion/

and predictions.csv gets one probability column per branch: global, heatmap, global+heatmap,
global+infected (the infected branch: lung crops + global vector), fusion. After the fusion CAM come the
stages of core.after_training (the audits, unless --no-audits, and what the pages read on a first visit).
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import torch

from core.after_training import After, plan_rows, run_stages
from core.config import PipelineConfig
from core.data import second_source
from core.data import ctmd
from core.data.covidct import read_covidct
from core.data.errors import DataError
from core.data.imaging import read_slice
from core.data.slices import SliceSet, StageData
from core.explain.attention import crops_for_maps, eq1_map, upsample_maps
from core.explain.cams import make_cam
from core.explain.fusion_cam import fusion_cam
from core.feature_keys import FeatureKeys
from core.inputs.boxes import Box, crop
from core.inputs.fields import FieldFinder, needs_segmenter
from core.inputs.frames import Frames, load_frames, load_images
from core.inputs.lesion_crops import lesion_crops
from core.inputs.lesion_maps import lesion_map_u8, lesion_share, lesion_target
from core.knowledge.signs import SIGNS, signs_in_frame
from core.models import network
from core.models.joint import JointNet
from core.models.segmenter import load_segmenter, segment
from core.results.predictions import write_branch_probs, write_columns
from core.runs import feature_cache as fc
from core.runs.checkpoint import load_checkpoint, load_weights, save_checkpoint
from core.runs.progress import ProgressLog
from core.runs.runfolder import RunError, RunFolder
from core.training.plan import pipeline_plan, stage_recipe
from core.training.recipes import VECTOR_RECIPE, Recipe
from core.training.runtime import is_main, rank0_first
from core.training.segmentation import semi_supervised
from core.training.trainer import predict, prepare, sizes_record, train_stage


def _pooled_and_map(fmap: torch.Tensor) -> torch.Tensor:
    """(B, K + h*w): the pooled vector and the flattened Eq. 1 map of one forward pass."""
    return torch.cat([fmap.float().mean(dim=(2, 3)), eq1_map(fmap).flatten(1)], 1)


def _batches(n, size):
    for i in range(0, n, size):
        yield slice(i, i + size)


class Pipeline:
    """Trains and caches every stage of one run; each stage is skipped when already done."""

    def __init__(self, run: RunFolder, data_root: Path, cfg: PipelineConfig, device="cpu", progress=True,
                 resume=True):
        self.run, self.data_root, self.cfg = run, Path(data_root), cfg
        self.device, self.progress, self.resume = torch.device(device), progress, resume
        self.recipe = cfg.recipe_obj()
        self.branch_recipe = cfg.recipe_obj(branch=True)
        slices = read_covidct(data_root)
        if cfg.decision == "two-step":  # fitted across sources: fail now, not after an hour of training
            try:
                ctmd.read_ctmd(data_root)
            except DataError as exc:
                raise DataError(f"decision two-step (recipe {cfg.recipe}) is chosen across sources and needs "
                                f"COVID-CT-MD: {exc}; or train --recipe guided-heads (decision fusion)") from None
        self.timings: dict[str, float] = {}
        self.progress_log = ProgressLog.of_run(run.path, enabled=is_main())  # core.runs.progress
        if needs_segmenter(cfg.input):  # input lungs+lesions: its fields come from the run's segmenter
            self.ensure_segmenter()
        self.fields = FieldFinder.of_run(run, cfg, device)
        self.keys = FeatureKeys(cfg, run, self.fields)  # every cached entry's key parts
        self.frames: Frames = load_frames([s.path for s in slices], cfg.image_size, cfg.input, self.fields)
        self.ds = SliceSet(slices, self.frames.images)
        self._hires = None
        self._second = None  # core.data.second_source.build's rows and summary, built once
        self.report_lung_fields()

    # ---- helpers -------------------------------------------------------------------------
    def log(self, msg):
        if is_main():
            self.run.log(msg)

    def report_lung_fields(self) -> None:
        """Slices without a lung field are fed whole: say which, in the log and the run's config."""
        missing = [s.key for s, ok in zip(self.ds.slices, self.frames.found.tolist()) if not ok]
        if is_main():
            self.run.update_config(lung_field_not_found=missing)
            if missing:
                self.log(f"no lung field found in {len(missing)} of {len(self.ds.slices)} slices (fed whole): "
                         + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))

    @property
    def hires(self) -> torch.Tensor:
        if self._hires is None:
            self._hires = load_images([s.path for s in self.ds.slices], self.cfg.hires_size, self.cfg.input, self.fields)
        return self._hires

    def split_rows(self, split) -> torch.Tensor:
        return self.ds.split_index(split)

    def stage_data(self, split, inputs: dict, extra: StageData | None = None) -> StageData:
        """Rows of `split`; `extra`: training rows from another source, appended."""
        idx = self.split_rows(split)
        data = StageData({k: v[idx] for k, v in inputs.items()}, self.ds.labels[idx])
        if extra is None:
            return data
        return StageData({k: torch.cat([v, extra.inputs[k]]) for k, v in data.inputs.items()},
                         torch.cat([data.labels, extra.labels]))

    def seeded(self, build):
        """Build a model with the run's seed: the new heads' initialisation is part of the run."""
        torch.manual_seed(self.cfg.seed)
        return build()

    def new_model(self, stage: str, vector_sizes: dict | None = None):
        """One branch's untrained model (core.models.network.build), seeded with the run's seed. The backbones
        of the branches trained on the global branch's outputs (trains "branch": heatmap, infected) start from
        the trained global backbone when the run says so (branch_init)."""
        model = self.seeded(lambda: network.build(self.cfg, vector_sizes, only=(stage,))[stage])
        if network.BY_STAGE[stage].trains == "branch" and self.cfg.branch_init == "global":
            state = load_checkpoint(self.run.stage("global") / "best.pt")["model"]
            model.backbone.load_state_dict({k[len("backbone."):]: v for k, v in state.items()
                                            if k.startswith("backbone.")})
        return model

    def _train(self, name, model, inputs, recipe, image_keys, extra=None):
        """`extra`: a callable giving training rows from another source (called only if the stage trains)."""
        t0 = time.time()
        stage = self.run.stage(name)
        if self.run.has_stage(name) and (stage / "summary.json").exists():  # finished earlier
            load_weights(model, load_checkpoint(stage / "best.pt"), stage / "best.pt")
            self.log(f"{name}: reusing trained stage")
            return model.eval()
        self.log(f"{name}: training")
        train = self.stage_data("train", inputs, extra() if extra else None)
        train_stage(model, train, self.stage_data("val", inputs), recipe, stage,
                    seed=self.cfg.seed, device=self.device, image_keys=image_keys, resume=self.resume,
                    progress=self.progress, log=self.log,
                    report=self.progress_log.stage(name, "image" if image_keys else "vector"))
        self.timings[name] = time.time() - t0
        return model.eval()

    def _probs(self, branch, model, inputs, image_keys, precision="fp32"):
        probs = predict(model, StageData(inputs, self.ds.labels), image_keys, device=self.device,
                        precision=precision)
        if is_main():
            write_branch_probs(self.run, branch, self.ds.slices, probs)
        return probs

    def _is_the_runs(self) -> bool:
        """Only a pipeline with the configuration the run folder records names the run's own cache
        entries (a script probing another tau on a trained run must not redirect the dashboard)."""
        return is_main() and self.run.config.get("pipeline") == json.loads(json.dumps(asdict(self.cfg)))

    def _cached(self, name: str, parts: dict, compute, own: bool = True) -> dict:
        """core.runs.feature_cache.cached; `own`: the entry the run's configuration uses (the index readers follow)."""
        out = fc.cached(self.run.features_dir, name, parts, compute)
        if own and self._is_the_runs():
            fc.remember(self.run.features_dir, name, parts)
        return out

    def _store(self, name: str, parts: dict, tensors: dict) -> None:
        """Save an entry and, for the run's own configuration, record it in the index."""
        if is_main():
            fc.save_cached(self.run.features_dir, name, parts, tensors)
            if self._is_the_runs():
                fc.remember(self.run.features_dir, name, parts)

    @torch.no_grad()
    def vectors(self, models: dict, inputs: dict, image_keys=network.CROPS, batch=64) -> dict:
        """core.models.network.vectors of every row, `batch` rows at a time (`inputs` may hold cached vectors)."""
        for model in models.values():
            model.eval().to(self.device)
        parts = []
        n = len(next(iter(inputs.values())))
        for sl in _batches(n, batch):
            b = prepare({k: v[sl] for k, v in inputs.items()}, image_keys, self.device)
            parts.append({k: v.cpu() for k, v in network.vectors(models, b).items()})
        return {k: torch.cat([part[k] for part in parts]) for k in network.KEYS}

    def lesion_inputs_of(self, lesions: dict, **vectors) -> dict:
        """The infected branch's inputs (its crops and the lesion flags) from lesion_inputs' entry, with `vectors`."""
        return {**{s.crop: lesions[s.crop] for s in network.SIDES}, "present": lesions["present"], **vectors}

    @torch.no_grad()
    def _pooled(self, model, inputs, image_keys, fn, batch=64):
        model.eval().to(self.device)
        out = []
        n = len(next(iter(inputs.values())))
        for sl in _batches(n, batch):
            b = prepare({k: v[sl] for k, v in inputs.items()}, image_keys, self.device)
            out.append(fn(model, b).float().cpu())
        return torch.cat(out)

    # ---- stages --------------------------------------------------------------------------
    def global_model(self):
        model = self.new_model("global")
        inputs, recipe = {"image": self.ds.images}, stage_recipe(self, "global")
        if recipe.guided:
            inputs.update(self.guidance_masks(recipe))
        return self._train("global", model, inputs, recipe, ("image",),
                           extra=lambda: self.second_source_rows(tuple(inputs)))

    def second_source_rows(self, keys) -> StageData | None:
        """core.data.second_source's training rows (inputs `keys`) for the global branch, or None."""
        if self.cfg.second_source == "none":
            return None
        rows, _ = self.second_source()
        return StageData(rows.rows(keys), rows.labels)

    def second_source(self):
        """The second source's chosen slices (core.data.second_source.build), labelled by the run's segmenter."""
        if self._second is not None:
            return self._second

        def lesion_prob_u8(slices):
            self.ensure_segmenter()  # trains it first if the run has none yet
            parts = self.keys.second_source_lesions(s.key for s in slices)

            def compute():  # the segmenter is loaded only when the cache misses
                hires = load_images([s.image for s in slices], self.cfg.hires_size, self.cfg.input, self.fields)
                return {"prob": lesion_map_u8(self._lesion_prob(self.load_segmenter(), hires))}

            return self._cached("second-source-lesions", parts, compute)["prob"]

        rows, summary = second_source.build(self.data_root, self.cfg.image_size, self.cfg.input, lesion_prob_u8,
                                            self.cfg.seed, self.fields)
        summary["keys"] = fc.key_of(rows.keys)
        self._check_second_source_unchanged(summary)
        self.log(f"second source ({self.cfg.second_source}): {summary['covid']} COVID + {summary['non_covid']} "
                 f"non-COVID training slices of {summary['candidates']}, labelled by the segmenter")
        if is_main():
            self.run.update_config(second_source_rows=summary)
        self._second = rows, summary
        return self._second

    def _check_second_source_unchanged(self, summary: dict) -> None:
        """A resumed run whose global branch has begun training keeps the rows it trained on: if the rows
        chosen now differ (other data, lung fields or segmenter settings than it was saved with), refuse
        instead of training its heads on other slices."""
        recorded = self.run.config.get("second_source_rows")
        if not recorded or not self.run.stage("global").exists():
            return
        if recorded.get("keys") != summary["keys"]:
            raise RunError(f"{self.run.path}: its global branch trained on {recorded['covid']} + {recorded['non_covid']} "
                           f"second-source slices, but it now chooses {summary['covid']} + {summary['non_covid']} "
                           "slices that are not those (or those were never recorded by key); train it as a new run "
                           "(another --out)")

    def second_source_vectors(self, models: dict) -> StageData | None:
        """The branch vectors (core.models.network) of the second source's training rows, computed by the
        trained global, heatmap and infected branches exactly as COVID-CT's are: the vector heads' extra
        training rows (recipe setting heads_second_source). None, said in the log, when it has no rows."""
        rows, _ = self.second_source()
        if not rows.keys:
            self.log("second source: no slice chosen, so the vector heads train on COVID-CT alone")
            return None
        self.ensure_segmenter()
        parts = self.keys.second_source_vectors(rows.keys)

        def compute():
            path = {s.key: s.image for s in second_source.candidates(self.data_root)}
            hires = load_images([path[k] for k in rows.keys], self.cfg.hires_size, self.cfg.input, self.fields)
            gfeat = self._global_pooled_and_maps(models["global"], rows.images)
            _, crops = crops_for_maps(upsample_maps(gfeat["maps"], self.cfg.image_size), hires, self.cfg.tau,
                                      self.cfg.image_size)
            lesions = self._lesion_crops(self._lesion_prob(self.load_segmenter(), hires), hires)
            vectors = self.vectors(models, {"crop": crops, **self.lesion_inputs_of(lesions, g=gfeat["pooled"])},
                                   image_keys=("crop", *network.CROPS))
            return {"vectors": vectors, "labels": rows.labels}

        out = self._cached("second-source-vectors", parts, compute)
        return StageData(out["vectors"], out["labels"])

    def guidance_masks(self, recipe: Recipe, boxes: torch.Tensor | None = None) -> dict:
        """Training signals of core.training.guidance at the working size: the lung field of every slice and the
        segmenter's lesion mask of every COVID slice (zero on the others: no lesion loss there).
        `boxes` (N, 4): cut each mask to its slice's box (the heatmap branch's crops)."""
        out = {"lung": self.frames.lungs}
        if recipe.guide_lesion:
            out["lesion"] = lesion_target(self.lesion_inputs()["prob"], self.ds.labels, self.cfg.image_size)
        if boxes is not None:
            s = self.cfg.image_size
            out = {k: torch.stack([(crop(v[i, 0], Box(*boxes[i].tolist()), s) > 0.5).to(torch.uint8) * 255
                                   for i in range(len(v))])[:, None] for k, v in out.items()}
        return out

    def global_features(self, model) -> dict:
        parts = self.keys.global_features(s.key for s in self.ds.slices)
        return self._cached("global", parts, lambda: self._global_pooled_and_maps(model, self.ds.images))

    def _global_pooled_and_maps(self, model, images: torch.Tensor) -> dict:
        """The global branch's pooled vectors and attention maps (the run's CAM method) of (N, 1, S, S) uint8 images."""
        if self.cfg.cam == "eq1":  # one forward pass gives both the pooled vector and Eq. 1
            both = self._pooled(model, {"image": images}, ("image",), lambda m, b: _pooled_and_map(m.fmap(b)))
            k = model.backbone.num_features
            return {"pooled": both[:, :k], "maps": both[:, k:].reshape(len(both), *self._map_shape(model))}
        pooled = self._pooled(model, {"image": images}, ("image",), lambda m, b: m.embed(b))
        maps = []
        with make_cam(self.cfg.cam, model) as cam:
            for sl in _batches(len(images), 32):
                x = images[sl].float().to(self.device) / 255
                maps.append(cam.native(x).float().cpu())  # at the method's resolution: small to cache
        return {"pooled": pooled, "maps": torch.cat(maps)}

    @torch.no_grad()
    def _map_shape(self, model) -> tuple[int, int]:
        x = torch.zeros(1, 1, self.cfg.image_size, self.cfg.image_size, device=self.device)
        return tuple(model.eval().backbone.features(x).shape[-2:])

    def heatmap_crops(self, gfeat, tau=None) -> dict:
        tau = self.cfg.tau if tau is None else tau
        parts = self.keys.heatmap_crops(tau)

        def compute():
            up = upsample_maps(gfeat["maps"], self.cfg.image_size)
            boxes, crops = crops_for_maps(up, self.hires, tau, self.cfg.image_size)
            return {"crops": crops, "boxes": torch.tensor([b.box.as_list() for b in boxes]),
                    "empty": torch.tensor([b.empty for b in boxes])}

        return self._cached("heatmap-crops", parts, compute, own=tau == self.cfg.tau)

    def heatmap_model(self, crops):
        model = self.new_model("heatmap")
        inputs = {"crop": crops["crops"]}
        recipe = stage_recipe(self, "heatmap")
        if recipe.guided:  # the masks cut to each slice's crop box
            inputs.update(self.guidance_masks(recipe, crops["boxes"]))
        return self._train("heatmap", model, inputs, recipe, ("crop",))

    def ensure_segmenter(self) -> Path:
        """The run's segmenter checkpoint: adopted (--segmenter) or trained (Algorithm 1) if the run has none.

        Every rank calls this at the same points. Under DDP rank 0 alone looks, adopts or trains (in one
        process) while the others wait: a rank that looked for itself could find the checkpoint rank 0
        has just written and skip the barrier the others wait at."""
        folder = self.run.stage(network.SEGMENTER)
        rank0_first(lambda: self._make_segmenter(folder))
        return folder / "best.pt"

    def _make_segmenter(self, folder: Path) -> None:
        if (folder / "best.pt").exists():
            return
        if self.cfg.segmenter:
            self._adopt_segmenter(Path(self.cfg.segmenter), folder)
            return
        t0 = time.time()
        self.log("infnet: Algorithm 1 (semi-supervised)")
        semi_supervised(self.data_root, folder, self.cfg.seg, seed=self.cfg.seed, device=self.device,
                        progress=self.progress, log=self.log, report=self.progress_log.stage("infnet", "segmenter"))
        self.timings["infnet"] = time.time() - t0

    def load_segmenter(self):
        """The segmenter model (ensure_segmenter first: this only loads)."""
        return load_segmenter(self.run.stage(network.SEGMENTER) / "best.pt", device=self.device)

    def _adopt_segmenter(self, src: Path, folder: Path) -> None:
        load_segmenter(src)  # refuse a broken checkpoint before copying it in
        folder.mkdir(parents=True, exist_ok=True)
        if (src.parent / "metrics.json").exists():
            shutil.copyfile(src.parent / "metrics.json", folder / "metrics.json")
        shutil.copyfile(src, folder / ".best.pt.tmp")
        (folder / ".best.pt.tmp").replace(folder / "best.pt")
        self.log(f"infnet: reusing {src}")

    def _lesion_prob(self, model, hires: torch.Tensor) -> torch.Tensor:
        """(N, S, S) lesion probabilities of the segmenter on (N, 1, H, H) uint8 slices, resized to its input."""
        size, probs = self.cfg.seg.size, []
        for sl in _batches(len(hires), 32):
            x = torch.nn.functional.interpolate(hires[sl].float() / 255, size=(size, size), mode="bilinear",
                                                antialias=True, align_corners=False)
            probs.append(segment(model, x, device=self.device, **self.cfg.seg.inference))
        return torch.cat(probs)[:, 0]

    def lesion_inputs(self) -> dict:
        """The segmenter's lesion maps and crops of every slice (computed once, then cached)."""
        self.ensure_segmenter()
        parts = self.keys.lesions(s.key for s in self.ds.slices)
        return self._cached("lesions", parts,
                            lambda: self._lesion_crops(self._lesion_prob(self.load_segmenter(), self.hires), self.hires))

    def _lesion_crops(self, prob: torch.Tensor, hires: torch.Tensor) -> dict:
        """The infected branch's inputs from (N, S, S) lesion probabilities and the (N, 1, H, H) uint8 slices
        they were computed on: each lung's lesion crop, its box, the lesion flags, the lesion map."""
        n, s, sides = len(prob), self.cfg.lesion_size, network.SIDES
        out = {"prob": lesion_map_u8(prob),
               "present": torch.zeros(n, len(sides), dtype=torch.bool), "side_boxes": torch.zeros(n, len(sides), 4),
               **{side.crop: torch.zeros(n, 1, s, s, dtype=torch.uint8) for side in sides}, "lesion_boxes": []}
        for i in range(n):
            lc = lesion_crops(prob[i].numpy())
            out["lesion_boxes"].append(torch.tensor([b.as_list() for b in lc.lesions]).reshape(-1, 4))
            for j, side in enumerate(sides):
                box = lc.sides[side.name]
                if box is None:
                    continue
                out["present"][i, j] = True
                out["side_boxes"][i, j] = torch.tensor(box.as_list())
                out[side.crop][i, 0] = (crop(hires[i, 0], box, s) * 255).round().to(torch.uint8)
        return out

    def lesion_share_baseline(self, lesions) -> None:
        """Knowledge alone, no classifier: the share of the lung field the segmenter calls lesion.
        Written as branch `lesion-share` so every table puts it beside the branches."""
        share = lesion_share(lesions["prob"], self.frames.lungs, self.frames.found)
        if is_main():
            write_branch_probs(self.run, "lesion-share", self.ds.slices, share.numpy())

    def infected_model(self, lesions, gvec):
        model = self.new_model("infected", {"g": gvec.shape[1]})
        inputs = self.lesion_inputs_of(lesions, g=gvec)
        return self._train("infected", model, inputs, stage_recipe(self, "infected"), network.CROPS)

    def vector_head(self, name, vectors: dict, extra: StageData | None = None):
        """One FC layer over `vectors`, trained on COVID-CT's training rows (and `extra`'s, from another source)."""
        head = self.new_model(name, {k: v.shape[1] for k, v in vectors.items()})
        head.fit_standardisation(self.stage_data("train", vectors, extra).inputs)
        return self._train(name, head, vectors, VECTOR_RECIPE, (), extra=(lambda: extra) if extra else None)

    # ---- Algorithm 2 ---------------------------------------------------------------------
    def run_all(self) -> dict:
        cfg = self.cfg
        if is_main():
            self.run.update_config(data_root=str(self.data_root), pipeline=asdict(cfg))
            self.progress_log.plan(pipeline_plan(self) + plan_rows(self.after(), cfg.audits, cfg.precompute))
        if cfg.strategy != "G-H-I-F":
            return self.run_joint()
        t_all = time.time()
        # Stage I
        g = self.global_model()
        self._probs("global", g, {"image": self.ds.images}, ("image",))
        t0 = time.time()
        gfeat = self.global_features(g)
        crops = self.heatmap_crops(gfeat)
        self.timings["global-features+crops"] = time.time() - t0
        # Stage II (global frozen: only cached vectors and crops of it are used)
        h = self.heatmap_model(crops)
        self._probs("heatmap", h, {"crop": crops["crops"]}, ("crop",))
        t0 = time.time()
        hvec = self._cached("heatmap", self.keys.heatmap_vectors((s.key for s in self.ds.slices), self.cfg.tau),
                            lambda: {"pooled": self._pooled(h, {"crop": crops["crops"]}, ("crop",),
                                                            lambda m, b: m.embed(b))})["pooled"]
        lesions = self.lesion_inputs()
        self.lesion_share_baseline(lesions)
        self.timings["heatmap-features+lesions"] = time.time() - t0
        inf = self.infected_model(lesions, gfeat["pooled"])
        self._probs("global+infected", inf, self.lesion_inputs_of(lesions, g=gfeat["pooled"]),
                    network.CROPS)
        models = {"global": g, "heatmap": h, "infected": inf}
        vectors = self.vectors(models, self.lesion_inputs_of(lesions, g=gfeat["pooled"], h=hvec))
        self.stage_three(models, crops, lesions, vectors)
        self.signs(lesions)
        return self.finish(t_all)

    def stage_three(self, models: dict, crops, lesions, vectors, fusion=None):
        """One FC layer over cached vectors (fusion; global+heatmap is the same head on [g, h]),
        the fusion cache the dashboard reads, and the fusion CAM. `models`: the trained branches, by stage
        (network.IMAGE_STAGES); `fusion`: already trained (GHIF)."""
        t0 = time.time()
        second = self.second_source_vectors(models) if self.cfg.heads_second_source else None
        pick = network.pick
        rows_for = lambda head: StageData(pick(second.inputs, head), second.labels) if second else None
        for head in network.VECTOR_HEADS:
            if head != "fusion":  # the fusion layer's own vectors and CAM follow
                self._probs(head, self.vector_head(head, pick(vectors, head), rows_for(head)), pick(vectors, head), ())
        if fusion is None:
            fusion = self.vector_head("fusion", vectors, rows_for("fusion"))
            p_fusion = self._probs("fusion", fusion, vectors, ())
        else:
            p_fusion = predict(fusion, StageData(vectors, self.ds.labels), (), device=self.device)
        self.timings["stage-III-heads"] = time.time() - t0
        fused = fusion.standardised(vectors).detach()
        self._store("fusion", self.keys.fusion(),
                    {"vectors": vectors, "standardised": fused, "p_fusion": torch.from_numpy(p_fusion),
                     "keys": [s.key for s in self.ds.slices]})
        t0 = time.time()
        self.explain({**models, "fusion": fusion}, crops, lesions)
        self.timings["fusion-cam"] = time.time() - t0

    # ---- the radiological signs (core.knowledge.signs) -------------------------------------
    def signs(self, lesions) -> None:
        """core.knowledge.signs of every slice into predictions.csv, from the stored lesion maps and lung fields
        (as a live analysis computes them: core.knowledge.signs.signs_in_frame)."""
        if not is_main():
            return
        t0 = time.time()
        fr = self.frames
        rows = [signs_in_frame(read_slice(s.path), fr.box(i), fr.lungs[i, 0].numpy() > 127,
                               lesions["prob"][i].numpy(), bool(fr.found[i])).to_dict()
                for i, s in enumerate(self.ds.slices)]
        write_columns(self.run, self.ds.slices, {k: [r[k] for r in rows] for k in SIGNS})
        self.timings["signs"] = time.time() - t0

    def after(self) -> After:
        """What the stages after training read (core.after_training)."""
        return After(self.run, self.data_root, self.device, self.progress, len(self.ds.slices), self.cfg.decision)

    def finish(self, t_all) -> dict:
        if is_main():  # the audits and precompute (core.after_training.AFTER_TRAINING), each once per inputs
            self.timings.update(run_stages(self.after(), self.cfg.audits, self.progress_log, say=self.log,
                                            precompute=self.cfg.precompute))
        self.timings["total"] = time.time() - t_all
        if is_main():
            # a resumed call times only what it ran: every other stage keeps its last measured seconds
            kept = {k: v for k, v in (self.run.config.get("timings") or {}).items() if k != "total"}
            self.run.update_config(timings={**kept, **self.timings})
            self.log(f"pipeline done in {self.timings['total']:.0f} s: {json.dumps(self.timings)}")
            self.progress_log.done(self.timings["total"])
        return self.timings

    # ---- Table 3: joint strategies ---------------------------------------------------------
    def run_joint(self) -> dict:
        """GHI-F or GHIF (core.models.joint): the branches train together; the segmenter stays frozen."""
        t_all, cfg = time.time(), self.cfg
        lesions = self.lesion_inputs()
        self.lesion_share_baseline(lesions)

        def build():  # one seed for all, in the order joint runs have always been initialised (fusion second)
            first = ("global", "fusion") if cfg.strategy == "GHIF" else ("global",)
            models = network.build(cfg, only=first)
            k = models["global"].backbone.num_features
            rest = tuple(s for s in network.IMAGE_STAGES if s not in first)
            return JointNet({**models, **network.build(cfg, network.sizes(k), only=rest)}, cfg.tau, cfg.image_size)

        joint = self.seeded(build)
        inputs = {"hires": self.hires, **self.lesion_inputs_of(lesions)}
        self._train("joint", joint, inputs, self.recipe, ("hires", *network.CROPS))
        # Each branch gets its own stage folder, as in G-H-I-F, so every reader of a run works alike.
        if is_main():
            for stage, model in joint.models.items():
                save_checkpoint({"model": model.state_dict(), "trained_in": f"joint ({cfg.strategy})",
                                 **sizes_record(model)}, self.run.stage(stage) / "best.pt")
        rank0_first(lambda: None)
        probs = predict(joint, StageData(inputs, self.ds.labels), ("hires", *network.CROPS), device=self.device,
                        reduce=False)
        if is_main():  # one column per model, in the joint network's (TABLE's) order
            for j, stage in enumerate(joint.models):
                write_branch_probs(self.run, network.BY_STAGE[stage].name, self.ds.slices, probs[:, j])
        models = {s: joint[s] for s in network.IMAGE_STAGES}
        gfeat = self.global_features(models["global"])
        crops = self.heatmap_crops(gfeat)  # cut with Eq. 1, as in training: a joint run's CAM is eq1 (core.config)
        vectors = self.vectors(models, {"crop": crops["crops"], **self.lesion_inputs_of(lesions, g=gfeat["pooled"])},
                               image_keys=("crop", *network.CROPS))
        fusion = joint["fusion"] if "fusion" in joint.models else None  # GHIF: trained in the joint network
        self.stage_three(models, crops, lesions, vectors, fusion=fusion)
        self.signs(lesions)
        return self.finish(t_all)

    def explain(self, models: dict, crops, lesions, size: int = 112) -> torch.Tensor:
        """Fusion CAM of every slice (core.explain.fusion_cam), cached for the dashboard (a resume with the same
        networks and inputs reads it back). `models`: the trained branches and the fusion head, by stage."""
        keys = [s.key for s in self.ds.slices]

        @torch.no_grad()
        def compute() -> dict:
            parts = []
            for sl in _batches(len(keys), 32):
                f = lambda t: t[sl].float().to(self.device) / 255
                batch = {"image": f(self.ds.images), "crop": f(crops["crops"]), "crop_box": crops["boxes"][sl],
                         **{s.crop: f(lesions[s.crop]) for s in network.SIDES},
                         "side_boxes": lesions["side_boxes"][sl], "present": lesions["present"][sl]}
                parts.append(fusion_cam(models, batch, size))
            return {"cam": torch.cat(parts).half(), "keys": keys}

        return self._cached("fusion-cam", self.keys.fusion_cam(keys, self.cfg.tau, size), compute)["cam"]
