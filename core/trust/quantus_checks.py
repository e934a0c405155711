"""The Quantus 0.6 metrics of one method's map on one slice, with the settings declared once here.

randomisation   MPRT (Adebayo et al. 2018): the map of the trained model against the map after each unit
                (core.trust.models: a block, the FC layer) is re-initialised, cascading top down. Similarity:
                Spearman rank correlation, Quantus's default, of the absolute maps scaled by their max.
faithfulness    region perturbation (Samek et al. 2016): patches of the input are replaced by its mean, the most
                relevant first (MoRF) or the least relevant first (LeRF); each step's drop of P(COVID) from the
                intact input is recorded, and the mean drop over the steps is the area over the perturbation
                curve (AOPC). MoRF AOPC - LeRF AOPC: how much more removing what the map marks hurts the decision
                than removing what it leaves out.
robustness      max-sensitivity (Yeh et al. 2019): the largest change of the map, ||a' - a|| / ||a|| (Frobenius),
                over a few copies of the input with uniform noise; a small sample count, for a CPU.
localisation    against an expert lesion mask, on the slice at the mask's resolution: Quantus's pointing game,
                relevance mass accuracy (share of the map's mass in the lesions), relevance rank accuracy (share of
                the map's top-|lesion| pixels in the lesions) and AUC (the map as a pixel classifier of the
                lesions), and core.explain.fidelity's pointing game with its 15-pixel tolerance beside them.

Every Quantus call draws its noise from NumPy's global generator; `numpy_seed` fixes it per call and puts the
caller's state back.
"""
from __future__ import annotations

import contextlib

import numpy as np

from core.explain.fidelity import pointing_hit, tolerance_region

SIMILARITY = "Spearman rank correlation (Quantus's MPRT default) of the absolute maps, each scaled by its max"
PATCHES_PER_SIDE = 14  # region perturbation: a patch is this fraction of the input's shorter side (16 px at 224)
REGIONS = 20  # patches removed in each order: about a tenth of the input
FILL = "mean"  # a removed patch takes the input's mean, as core.explain.fidelity's deletion does by default
SENSITIVITY_SAMPLES = 5  # max-sensitivity's noisy copies per slice (Quantus's default 200 is for a GPU)
SENSITIVITY_RADIUS = 0.05  # the noise: uniform in [-r, r] on inputs in [0, 1] (about 13 grey levels)
COVID = 1  # the class explained: every labelled slice is COVID positive
LOCALISATION = ("pointing_game", "relevance_mass", "relevance_rank", "auc", "pointing_game_tolerance")


@contextlib.contextmanager
def numpy_seed(seed: int):
    state = np.random.get_state()
    np.random.seed(seed % 2**32)
    try:
        yield
    finally:
        np.random.set_state(state)


def explain(model, inputs, targets, method: str, seed: int, **_):
    """Quantus's explain function: the wrapper's map of `method` (core.trust.models.Explained.explain)."""
    return model.explain(inputs, method, seed)


def _call(metric, model, x, a, seed: int, method: str, **extra):
    import quantus  # noqa: F401 (imported on first use: it pulls in OpenCV and scikit-image)

    y = np.full(len(x), COVID)
    with numpy_seed(seed):
        return metric(model=model, x_batch=x, y_batch=y, a_batch=a, channel_first=True, explain_func=explain,
                      explain_func_kwargs={"method": method, "seed": seed}, batch_size=len(x), **extra)


def randomisation(model, x: np.ndarray, a: np.ndarray, method: str, seed: int) -> dict[str, np.ndarray]:
    """{unit: (B,) similarity to the trained model's map}, units top down as Quantus randomised them (cascading).
    A similarity that is undefined (a map turned constant) is NaN."""
    import quantus

    metric = quantus.MPRT(layer_order="top_down", seed=seed, disable_warnings=True)
    scores = _call(metric, model, x, a, seed, method)
    return {name.removeprefix("units.").replace(":", "."): np.asarray(v, np.float64)
            for name, v in scores.items() if name != "original"}


def patch_size(x: np.ndarray) -> int:
    return max(2, round(min(x.shape[-2:]) / PATCHES_PER_SIDE))


def region_perturbation(model, x: np.ndarray, a: np.ndarray, method: str, seed: int, order: str) -> np.ndarray:
    """(B, REGIONS) drops of P(COVID) as patches go, `order` "morf" or "lerf"."""
    import quantus

    metric = quantus.RegionPerturbation(patch_size=patch_size(x), order=order, regions_evaluation=REGIONS,
                                        perturb_baseline=FILL, disable_warnings=True)
    return np.asarray(_call(metric, model, x, a, seed, method, softmax=True), np.float64)


def faithfulness(model, x: np.ndarray, a: np.ndarray, method: str, seed: int) -> dict[str, np.ndarray]:
    """{"morf": (B,) AOPC, "lerf": (B,) AOPC, "faithfulness": (B,) MoRF - LeRF, "morf_curve", "lerf_curve"}."""
    curves = {o: region_perturbation(model, x, a, method, seed, o) for o in ("morf", "lerf")}
    aopc = {o: c.mean(1) for o, c in curves.items()}
    return {**aopc, "faithfulness": aopc["morf"] - aopc["lerf"],
            "morf_curve": curves["morf"], "lerf_curve": curves["lerf"]}


def max_sensitivity(model, x: np.ndarray, a: np.ndarray, method: str, seed: int) -> np.ndarray:
    """(B,) max-sensitivity of the map under SENSITIVITY_SAMPLES noisy copies."""
    import quantus

    metric = quantus.MaxSensitivity(nr_samples=SENSITIVITY_SAMPLES, lower_bound=SENSITIVITY_RADIUS,
                                    disable_warnings=True)
    return np.asarray(_call(metric, model, x, a, seed, method), np.float64)


def localisation(maps: np.ndarray, masks: np.ndarray, tolerance_px: float) -> dict[str, np.ndarray]:
    """{metric: (B,)} of maps (B, H, W) against boolean lesion masks (B, H, W), none of them empty."""
    import quantus

    if not masks.reshape(len(masks), -1).any(1).all():
        raise ValueError("localisation needs a lesion in every mask")
    a, s = maps[:, None].astype(np.float32), masks[:, None].astype(np.float32)
    x = np.zeros_like(a)  # Quantus reads only the input's shape here
    out = {}
    for name, metric in (("pointing_game", quantus.PointingGame), ("relevance_mass", quantus.RelevanceMassAccuracy),
                         ("relevance_rank", quantus.RelevanceRankAccuracy), ("auc", quantus.AUC)):
        out[name] = np.asarray(metric(disable_warnings=True)(model=None, x_batch=x, y_batch=np.full(len(a), COVID),
                                                             a_batch=a, s_batch=s, channel_first=True), np.float64)
    out["pointing_game_tolerance"] = np.array([pointing_hit(m, tolerance_region(k, tolerance_px))
                                               for m, k in zip(maps, masks)])
    return out
