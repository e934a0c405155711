"""`train trust`'s measurement of a run folder (maps, sets, ood), each part read from trust.json when its key
matches (core.trust.store): what the command and the pipeline's trust stage (core/after_training.py) call."""
from __future__ import annotations

from collections.abc import Sequence

from core.config import PipelineConfig
from core.runs.runfolder import RunFolder
from core.trust import store
from core.trust.conformal import LEVEL
from core.trust.map_checks import DEFAULT_METHODS, DEFAULT_SLICES, MapSettings
from core.trust.ood import ALPHA


class _Loaded:
    """The run's TrainedRun, loaded once and only when a part is computed (a cached part needs none)."""

    def __init__(self, folder: RunFolder, device):
        self.folder, self.device, self._tr = folder, device, None

    def __call__(self):
        from core.inference import TrainedRun

        if self._tr is None:
            self._tr = TrainedRun.load(self.folder.path, device=self.device)
        return self._tr


def measure(folder: RunFolder, data_root, parts: Sequence[str] = store.PARTS, methods: Sequence[str] = DEFAULT_METHODS,
            slices: int = DEFAULT_SLICES, branch: str | None = None, level: float = LEVEL, alpha: float = ALPHA,
            seed: int = 0, device="cpu", progress: bool = True) -> dict:
    """{part: result} for `parts`, each read from trust.json when its key matches, else measured and saved.
    `data_root` (the maps' labelled slices) is read only when the maps part is asked for; `branch`: the one the
    prediction sets are for (default: the run's decision, RunView.decision_branch)."""
    from core.data.semiseg import read_labelled
    from core.trust.conformal import run_sets
    from core.trust.map_checks import MapChecks
    from core.trust.probes import measure as ood_rates

    if not folder.config.get("pipeline"):
        raise FileNotFoundError(f"{folder.path}: no pipeline configuration; train it with `python -m train pipeline`")
    tr = _Loaded(folder, device)
    ckpts = store.checkpoints(folder)
    framing = PipelineConfig.of_run(folder).input_version  # the maps' frames, the probes' lung fields
    out, read = {}, {}
    if "maps" in parts:
        settings = MapSettings(methods=tuple(methods), slices=slices, seed=seed)  # ValueError: a bad setting
        chosen = read_labelled(data_root, "test")[:slices]
        key = {"checkpoints": ckpts, "input": framing, "settings": settings.record(),
               "slices": [s.key for s in chosen], "data_root": str(data_root)}
        out["maps"], read["maps"] = store.cached(
            folder, "maps", key, lambda: MapChecks(tr(), settings).run(chosen, progress=progress))
    if "sets" in parts:
        if branch is None:
            from core.runs.run_view import RunView

            branch = RunView(folder.path.parent, folder.path.name).decision_branch()
        key = {"predictions": store.predictions_digest(folder), "branch": branch, "level": level}
        out["sets"], read["sets"] = store.cached(folder, "sets", key, lambda: run_sets(folder, branch, level))
    if "ood" in parts:
        key = {"checkpoints": ckpts, "input": framing, "predictions": store.predictions_digest(folder), "alpha": alpha,
               "seed": seed}
        out["ood"], read["ood"] = store.cached(folder, "ood", key, lambda: ood_rates(folder, tr(), alpha, seed=seed))
    folder.log("trust: " + ", ".join(f"{p} ({'read from trust.json' if read[p] else 'measured'})" for p in out))
    return out
