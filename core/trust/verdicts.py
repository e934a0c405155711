"""Can this map be trusted? One verdict per method and test, each with a plain sentence a page prints.

The pass rule of every test is written here once:

randomisation  passes when the map's mean rank correlation with the trained model's map, over the cascade of
               re-initialised units, is below CHANGED_BELOW: the map depends on what the model learned.
faithfulness   passes when its MoRF - LeRF AOPC beats the best of the other baselines (random, edge) by at least
               FAITHFUL_MARGIN of P(COVID): removing what it marks hurts the decision more than chance or edges do.
robustness     passes when its max-sensitivity is at most STABLE_AT_MOST: slight noise on the slice moves the map
               by at most that share of its own size.
localisation   passes when its AUC against the expert lesion masks beats the best of the other baselines
               (uniform, random, edge) by at least LOCALISES_MARGIN.

A baseline gets verdicts too, against the other baselines, so a page can show what passing one test without
the model looks like (the edge map localises, and does not change when the weights are randomised).
"""
from __future__ import annotations

from dataclasses import dataclass

CHANGED_BELOW = 0.5
FAITHFUL_MARGIN = 0.02
STABLE_AT_MOST = 0.3
LOCALISES_MARGIN = 0.05
# test -> (the metric it reads, the baselines it must beat; None: an absolute rule)
TESTS = {"randomisation": ("randomisation", None), "faithfulness": ("faithfulness", ("random", "edge")),
         "robustness": ("max_sensitivity", None), "localisation": ("auc", ("uniform", "random", "edge"))}
NAMES = {"eq1": "the Eq. 1 map", "cam": "CAM", "gradcam": "Grad-CAM", "gradcam++": "Grad-CAM++",
         "eigencam": "EigenCAM", "scorecam": "Score-CAM", "fusion-cam": "the fusion CAM",
         "uniform": "the uniform map", "random": "the random map", "edge": "the edge map"}


@dataclass(frozen=True)
class Verdict:
    branch: str
    method: str
    test: str
    passed: bool | None  # None: not measured
    value: float | None
    reference: str | None  # the baseline it was held against
    reference_value: float | None
    sentence: str


def name(method: str) -> str:
    return NAMES.get(method, method)


def title(method: str) -> str:
    """The method's name opening a sentence or a label."""
    n = name(method)
    return n[0].upper() + n[1:]


def _means(rows) -> dict:
    return {(r["branch"], r["method"], r["metric"]): r["mean"] for r in rows}


def _sentence(test: str, who: str, passed: bool, v: float, ref: str | None, rv: float | None) -> str:
    if test == "randomisation":
        return (f"{who} changes when the model's weights are randomised (rank correlation {v:.2f}): it depends on "
                "what the model learned." if passed else
                f"{who} does not change when the model's weights are randomised (rank correlation {v:.2f}): do not "
                "read it as the model's reasoning.")
    if test == "robustness":
        return (f"{who} stays stable under slight noise on the slice (max-sensitivity {v:.2f})." if passed else
                f"{who} changes under slight noise on the slice (max-sensitivity {v:.2f}): a small change of the "
                "slice redraws it.")
    if test == "faithfulness":
        return (f"{who} beats {name(ref)} on region perturbation by {v - rv:.2f}: removing what it marks first lowers "
                "P(COVID) more than chance or edges do, so it points at what the decision rests on." if passed else
                f"{who} does not beat {name(ref)} on region perturbation ({v:.2f} against {rv:.2f}): it does not "
                "show what the decision rests on.")
    return (f"{who} finds the expert's lesions better than {name(ref)} (AUC {v:.2f} against {rv:.2f})." if passed else
            f"{who} finds the expert's lesions no better than {name(ref)} (AUC {v:.2f} against {rv:.2f}).")


def judge(means: dict, branch: str, method: str, test: str) -> Verdict:
    metric, refs = TESTS[test]
    v = means.get((branch, method, metric))
    ref = rv = None
    if refs is not None:
        others = [(means.get((branch, b, metric)), b) for b in refs if b != method]
        others = [(x, b) for x, b in others if x is not None]
        if others:
            rv, ref = max(others)
    if v is None or (refs is not None and ref is None):
        return Verdict(branch, method, test, None, v, ref, rv,
                       f"{title(method)}: {test} was not measured.")
    if test == "randomisation":
        passed = v < CHANGED_BELOW
    elif test == "robustness":
        passed = v <= STABLE_AT_MOST
    else:
        passed = v - rv >= (FAITHFUL_MARGIN if test == "faithfulness" else LOCALISES_MARGIN)
    return Verdict(branch, method, test, passed, v, ref, rv, _sentence(test, title(method), passed, v, ref, rv))


def verdicts(rows, branch: str | None = None, method: str | None = None) -> list[Verdict]:
    """Every test's verdict for each branch x method in `rows` (core.trust.map_checks' rows), or only those asked."""
    means = _means(rows)
    pairs = dict.fromkeys((r["branch"], r["method"]) for r in rows)
    return [judge(means, b, m, t) for b, m in pairs if (branch in (None, b) and method in (None, m)) for t in TESTS]


def basis(n_slices: int, full: int, command: str) -> str:
    """What the verdicts rest on, in one sentence: `n_slices` labelled COVID-SemiSeg test slices; fewer than the
    command's `full` (its default) and a verdict near its rule's line can flip (measured: seed 1's maps passed
    robustness on 2 slices and failed it on 8), so the sentence names the command that measures them all."""
    one = f"Measured on {n_slices} labelled COVID-SemiSeg test slice{'s' if n_slices != 1 else ''}"
    if n_slices >= full:
        return one + "."
    return (f"{one}, fewer than the {full} of the full check: a verdict near its line can change with more slices. "
            f"`{command}` measures {full}.")


def passes_every_test(rows, branch: str, method: str) -> bool:
    """True only when every test was measured and passed: the dashboard flags a method where this is False."""
    found = verdicts(rows, branch, method)
    return bool(found) and all(v.passed for v in found)


def sentences(rows, branch: str, method: str) -> list[str]:
    """The plain sentences of a method's verdicts, in the order of TESTS."""
    return [v.sentence for v in verdicts(rows, branch, method)]


def failed(rows, branch: str, method: str) -> list[str]:
    """The tests a method failed (not those left unmeasured), in the order of TESTS."""
    return [v.test for v in verdicts(rows, branch, method) if v.passed is False]


def label(rows, branch: str, method: str) -> str:
    """A method's name as a picker shows it, flagged with the tests it fails: "Score-CAM ⚠ fails randomisation"."""
    who = title(method)
    bad = failed(rows or [], branch, method)
    return f"{who} ⚠ fails {', '.join(bad)}" if bad else who
