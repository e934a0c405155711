"""The knowledge-aware decision: is there disease in the lungs, and does it look like COVID-19?

A radiologist reasons in two steps, and so does this decision (`p_two-step` in predictions.csv):

    p(COVID) = p(disease present) x p(looks like COVID | disease)

    disease present   D = sigmoid(a_d * log(lesion share + EPS) + b_d)                 a_d >= 0
    looks like COVID  C = sigmoid(a_c * logit(p_pattern) + sum_k w_k * sign_k + b_c)   a_c, w_k >= 0

p_pattern is one branch's probability and the signs sign_k a subset of PATTERN_SIGNS (none, or all); which branch
and which signs a run reads is chosen on the data that choose (core.knowledge.selection), so a run whose fusion
branch came out weak can lean on another branch without anything being learnt from the reported data.

The direction of every input is fixed by domain knowledge, not learnt: more lesion can only raise the
chance of disease; a higher classifier score, more peripheral, more bilateral, more pieces and more ground
glass (RSNA "typical") can only raise the chance that the disease is COVID-19. The sizes of the weights are
fitted (maximum likelihood, bounded, a little L2) on the data that choose, pooled across sources with
equal weight per source, so no single source's label quirks decide the direction. Because the product
cannot call a slice COVID without disease, a classifier that reads another hospital's normal lungs as
COVID is held back by the first step; because the second step is a product term, the classifier still
separates COVID-19 from another pneumonia among diseased slices.

The Case view shows both factors (`Factors`), so a user sees how much of the decision came from each step.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from core.runs.checkpoint import atomic_write_text
from core.runs.runfolder import RunError, read_json_object

EPS = 1e-3  # lesion share floor inside the log: a share of 0 is "less than 0.1% of the lungs"
L2 = 1e-2  # weight decay on every slope: with a few hundred rows, keep the weights from running off
PATTERN_SIGNS = ("peripheral_share", "bilateral", "ground_glass_share", "log_lesion_count")
LOGIT_CLIP = 8.0  # classifier probabilities of exactly 0 or 1 stay finite


def logit(p):
    p = np.clip(np.asarray(p, dtype=np.float64), 1 / (1 + math.exp(LOGIT_CLIP)), 1 / (1 + math.exp(-LOGIT_CLIP)))
    return np.log(p / (1 - p))


def sigmoid(z):
    return 1 / (1 + np.exp(-np.asarray(z, dtype=np.float64)))


def design(rows, signs=PATTERN_SIGNS) -> tuple[np.ndarray, np.ndarray]:
    """(disease input (N,), pattern inputs (N, 1 + len(signs))) from a table with columns lesion_share,
    p_pattern (the classifier's probability) and the signs (NaN signs count as 0: no lesion, no pattern)."""
    number = lambda c: pd.to_numeric(pd.Series(np.asarray(rows[c], dtype=object)), errors="coerce").to_numpy(float)
    get = lambda c: np.nan_to_num(number(c), nan=0.0)
    disease = np.log(get("lesion_share") + EPS)
    inputs = {"peripheral_share": lambda: get("peripheral_share"), "bilateral": lambda: get("bilateral"),
              # consolidation_share NaN (not measured) counts as all consolidation: no ground glass credited
              "ground_glass_share": lambda: 1.0 - np.nan_to_num(number("consolidation_share"), nan=1.0),
              "log_lesion_count": lambda: np.log1p(get("lesion_count"))}
    pattern = np.column_stack([logit(get("p_pattern"))] + [inputs[k]() for k in signs])
    return disease, pattern


def pattern_rows(table: pd.DataFrame, branch: str) -> pd.DataFrame:
    """A predictions-like table with its p_<branch> column as the second step's classifier input p_pattern."""
    return table.assign(p_pattern=table[f"p_{branch}"])


@dataclass
class Factors:
    disease: float  # p(disease present)
    pattern: float  # p(looks like COVID | disease)

    @property
    def p(self) -> float:
        return self.disease * self.pattern


DECISION_FILE = "decision.json"  # in the run's stage folder `two-step`
FACTOR_COLUMNS = ("disease_present", "looks_like_covid")  # predictions.csv's columns of the two factors


@dataclass
class TwoStepDecision:
    """The fitted weights; `pattern_branch`: the classifier whose probability feeds the second step;
    `operating_point`: the cut on p chosen on the rows that choose (`operating_point`)."""
    name = "two-step"  # its predictions.csv column p_two-step and its stage folder

    pattern_branch: str = "fusion"
    a_d: float = 1.0
    b_d: float = 0.0
    a_c: float = 1.0
    w: list = field(default_factory=lambda: [0.0] * len(PATTERN_SIGNS))
    b_c: float = 0.0
    signs: list = field(default_factory=lambda: list(PATTERN_SIGNS))  # the pattern signs w weighs, in order
    fitted_on: dict = field(default_factory=dict)  # source -> rows, recorded for the report
    operating_point: float = 0.5

    def factors(self, rows) -> tuple[np.ndarray, np.ndarray]:
        """(p(disease present), p(looks like COVID | disease)) of each row (columns: `design`'s)."""
        disease, pattern = design(rows, self.signs)
        d = sigmoid(self.a_d * disease + self.b_d)
        c = sigmoid(pattern @ np.r_[self.a_c, self.w] + self.b_c)
        return d, c

    def predict(self, rows) -> np.ndarray:
        d, c = self.factors(rows)
        return d * c

    def on_table(self, table: pd.DataFrame) -> pd.DataFrame:
        """p, disease and pattern factors of a predictions-like table (with p_<pattern_branch> and the signs)."""
        d, c = self.factors(pattern_rows(table, self.pattern_branch))
        return pd.DataFrame({f"p_{self.name}": d * c, FACTOR_COLUMNS[0]: d, FACTOR_COLUMNS[1]: c}, index=table.index)

    def factors_of(self, p_pattern: float, signs) -> Factors:
        """The two factors of one slice: its pattern classifier's probability and its
        core.knowledge.signs.Signs."""
        d, c = self.factors({"p_pattern": [p_pattern], **{k: [v] for k, v in signs.to_dict().items()}})
        return Factors(float(d[0]), float(c[0]))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, saved: dict) -> "TwoStepDecision":
        known = {f.name for f in fields(cls)}
        unknown = set(saved) - known
        if unknown:
            raise ValueError(f"two-step decision: unknown fields {sorted(unknown)}")
        return cls(**saved)

    def save(self, run, extra: dict | None = None) -> None:
        """Into the run folder's stage `two-step` (`extra`: what chose it, kept beside the weights)."""
        folder = run.stage(self.name)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / DECISION_FILE, json.dumps({"decision": self.to_dict(), **(extra or {})}, indent=1))

    @classmethod
    def of_run(cls, run) -> "TwoStepDecision | None":
        """The run's fitted two-step decision, or None before its stage has run."""
        f = run.stage(cls.name) / DECISION_FILE
        return cls.from_dict(cls._read(f)["decision"]) if f.exists() else None

    @staticmethod
    def _read(f) -> dict:
        """decision.json, with its weights (RunError naming the file when it is cut short or lacks them)."""
        saved = read_json_object(f)
        if not isinstance(saved.get("decision"), dict):
            raise RunError(f"{f}: holds no decision weights; fit them again: python -m train external --run RUN")
        return saved

    @classmethod
    def saved(cls, run) -> dict:
        """What was saved beside the weights (`save`'s `extra`: the selection table), {} before the stage ran."""
        f = run.stage(cls.name) / DECISION_FILE
        return {k: v for k, v in cls._read(f).items() if k != "decision"} if f.exists() else {}

    @classmethod
    def fit(cls, rows, labels, sources, pattern_branch: str = "fusion", signs=PATTERN_SIGNS) -> "TwoStepDecision":
        """Weights by bounded maximum likelihood on the rows that choose; every source (a label per row in
        `sources`) weighs the same in total; `signs`: the pattern signs the second step reads."""
        y = np.asarray(labels, dtype=np.float64)
        src = np.asarray(sources)
        names, counts = np.unique(src, return_counts=True)
        weight = np.array([1.0 / counts[names == s][0] for s in src]) * len(y) / len(names)
        disease, pattern = design(rows, signs)
        k = pattern.shape[1]

        def loss(theta):
            a_d, b_d, b_c, *wc = theta
            zd = a_d * disease + b_d
            zc = pattern @ np.asarray(wc) + b_c
            # log p = log sigmoid(zd) + log sigmoid(zc); log(1 - p) computed stably from p
            log_p = -np.logaddexp(0, -zd) - np.logaddexp(0, -zc)
            p = np.exp(log_p)
            log_q = np.log1p(-np.clip(p, 0, 1 - 1e-12))
            nll = -(weight * (y * log_p + (1 - y) * log_q)).sum() / weight.sum()
            return nll + L2 * (a_d ** 2 + float(np.sum(np.square(wc))))

        start = np.r_[1.0, 4.0, 0.0, 1.0, np.zeros(k - 1)]
        bounds = [(0, None), (None, None), (None, None)] + [(0, None)] * k
        res = minimize(loss, start, method="L-BFGS-B", bounds=bounds)
        a_d, b_d, b_c, a_c, *w = res.x.tolist()
        return cls(pattern_branch=pattern_branch, a_d=a_d, b_d=b_d, a_c=a_c, w=w, b_c=b_c, signs=list(signs),
                   fitted_on={str(s): int(n) for s, n in zip(names, counts)})


def selection_rows(rows):
    """The rows that choose the decision, from a table shaped like core.audits.external's rows (source,
    group, role, label, infection_visible): COVID-CT's validation split; COVID-SemiSeg's labelled train
    slices (all COVID); COVID-CT-MD's selection patients, where the COVID-19 patient counts only on the
    slices the radiologists marked infected (its others show no disease to find) and every slice of the
    normal and pneumonia patients counts as not COVID. Returns (rows, labels, sources)."""
    choose = rows[rows["role"] == "chooses"]
    md = choose["source"] == "covid-ct-md"
    keep = ~md | (choose["label"] == 0) | (choose["infection_visible"] == 1)
    part = choose[keep]
    return part, part["label"].to_numpy(dtype=float), part["source"].to_numpy()


def operating_point(p, labels, sources) -> float:
    """The probability cut with the best Youden's J (sensitivity + specificity - 1), each source weighing
    the same; a source with one class only (COVID-SemiSeg) counts towards its class alone."""
    p, y, src = np.asarray(p, dtype=float), np.asarray(labels, dtype=float), np.asarray(sources)
    names, counts = np.unique(src, return_counts=True)
    w = np.array([1.0 / counts[names == s][0] for s in src])
    pos, neg = w * (y == 1), w * (y == 0)
    order = np.argsort(-p)
    tpr = np.cumsum(pos[order]) / pos.sum()
    fpr = np.cumsum(neg[order]) / neg.sum()
    best = int(np.argmax(tpr - fpr))
    return float(p[order][best])


def fit_candidate(rows: pd.DataFrame, pattern_branch: str, signs) -> TwoStepDecision:
    """The two-step decision over `pattern_branch` and `signs` fitted on the rows that choose (`selection_rows` of a
    table shaped like core.audits.external's rows, with p_<pattern_branch> and the signs), its operating point
    chosen there too. Which candidate a run keeps: core.knowledge.selection."""
    part, y, src = selection_rows(rows)
    part = pattern_rows(part, pattern_branch)
    decision = TwoStepDecision.fit(part, y, src, pattern_branch, signs)
    decision.operating_point = operating_point(decision.predict(part), y, src)
    return decision
