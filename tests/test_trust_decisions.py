"""Can a decision be trusted? Conformal prediction sets (core.trust.conformal) and the out-of-distribution flag
(core.trust.ood, core.trust.probes)."""
import numpy as np
import pytest

from core.trust.conformal import CLASSES, PredictionSets, coverage, describe, run_sets
from core.trust.image_check import STATISTICS, SliceStatistics, measure
from core.trust.ood import describe as describe_flag
from core.trust.ood import (ALPHA, COLUMNS, FLAG_COLUMN, IMAGE_COLUMN, LUNGS_COLUMN, NETWORK_COLUMN, WHY_COLUMN, Check,
                            Mahalanobis, OodFlag, conformal_threshold, fit_run, ledoit_wolf_shrinkage, run_rows,
                            run_statistics)
from core.trust.probes import HELD_OUT_PHOTOS, KINDS, PHOTOS, lungless, photo, probes


def _draw(rng, n: int, prevalence: float, hard_covid: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Exchangeable (label, P(COVID)) pairs; with `hard_covid` the COVID class scores far less cleanly."""
    y = (rng.random(n) < prevalence).astype(int)
    spread = np.where(y == 1, 2.5 if hard_covid else 1.0, 1.0)
    logit = np.where(y == 1, 1.0, -1.5) + rng.normal(0, 1, n) * spread
    return y, 1 / (1 + np.exp(-logit))


# ---- prediction sets -----------------------------------------------------------------------------------
def test_sets_match_crepes_and_their_cutoffs():
    from crepes import ConformalClassifier

    rng = np.random.default_rng(0)
    y, p = _draw(rng, 60, 0.5)
    sets = PredictionSets(y, p, level=0.9)
    grid = np.concatenate([np.linspace(0, 1, 401), p])  # the calibration values themselves: ties
    # crepes directly, class by class on its own calibration slices
    ref = np.zeros((len(grid), 2), bool)
    for c in (0, 1):
        nonconformity = (lambda q: 1 - q) if c == 1 else (lambda q: q)  # 1 - P(class c)
        cc = ConformalClassifier().fit(nonconformity(p[y == c]))
        ref[:, c] = cc.predict_p(nonconformity(grid), smoothing=False) >= 1 - 0.9
    assert np.array_equal(sets.sets(grid), ref)
    cut = sets.cutoffs
    assert np.array_equal(sets.sets(grid)[:, 1], grid >= cut["covid_from"])
    assert np.array_equal(sets.sets(grid)[:, 0], grid <= cut["non_covid_to"])
    assert sets.set_of(1.0) == ("COVID",) and sets.set_of(0.0) == ("non-COVID",)
    assert sets.always_in == []
    few = PredictionSets([0] * 8 + [1] * 20, np.linspace(0, 1, 28), level=0.9)  # 1 / 9 >= 0.1: non-COVID in every set
    assert few.always_in == ["non-COVID"] and few.sets(np.linspace(0, 1, 50))[:, 0].all()
    assert not few.sets(np.linspace(0, 1, 50))[:, 1].all()
    middle = (cut["covid_from"] + cut["non_covid_to"]) / 2
    assert len(sets.set_of(middle)) == (2 if cut["covid_from"] <= cut["non_covid_to"] else 0)


@pytest.mark.parametrize("prevalence, hard_covid", [(0.5, False), (0.08, True)])
def test_each_class_keeps_its_coverage_even_when_rare(prevalence, hard_covid):
    """Over many calibration draws, each class's coverage on fresh data is within sampling error of the
    level (split conformal: at least the level, above it by at most 1 / (n_class + 1) on average)."""
    rng = np.random.default_rng(1)
    level, n_cal, n_test, repeats = 0.9, 400, 2000, 40
    per = {c: [] for c in CLASSES}
    pooled_rare = []
    for _ in range(repeats):
        yc, pc = _draw(rng, n_cal, prevalence, hard_covid)
        yt, pt = _draw(rng, n_test, prevalence, hard_covid)
        rep = PredictionSets(yc, pc, level).report(yt, pt)
        for c in CLASSES:
            per[c].append(rep["per_class"][c]["coverage"])
        # one pooled calibration (no Mondrian categories), for contrast: the COVID slices' coverage under it
        pooled = np.sort(np.where(yc == 1, 1 - pc, pc))[int(np.ceil((n_cal + 1) * level)) - 1]
        pooled_rare.append(np.mean(1 - pt[yt == 1] <= pooled))
    for c in CLASSES:
        n_c = (prevalence if c == "COVID" else 1 - prevalence) * n_cal
        mean = np.mean(per[c])
        se = np.std(per[c], ddof=1) / np.sqrt(repeats)
        assert level - 3 * se <= mean <= level + 1 / (n_c + 1) + 3 * se, (c, mean, se)
    if hard_covid:  # the rare, harder class loses coverage under one pooled calibration: why the sets are Mondrian
        assert np.mean(pooled_rare) < level - 0.1, np.mean(pooled_rare)


def test_coverage_report_and_plain_words():
    sets = np.array([[1, 0], [0, 1], [1, 1], [0, 0], [0, 1]], bool)
    labels = np.array([0, 0, 1, 1, 1])
    rep = coverage(sets, labels)
    assert rep["per_class"]["non-COVID"] == {"n": 2, "coverage": 0.5}
    assert rep["per_class"]["COVID"]["coverage"] == pytest.approx(2 / 3)
    assert rep["two_class_share"] == pytest.approx(0.2) and rep["empty_share"] == pytest.approx(0.2)
    assert describe(("COVID",), 0.9).startswith("COVID at 90%")
    assert "cannot tell" in describe(("non-COVID", "COVID"), 0.9) and "Neither" in describe((), 0.9)


def test_prediction_sets_refuse_bad_calibration():
    with pytest.raises(ValueError, match="class COVID"):
        PredictionSets([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="within"):
        PredictionSets([0, 1], [0.1, 1.2])
    with pytest.raises(ValueError, match="level"):
        PredictionSets([0, 1], [0.1, 0.9], level=1.0)


def test_run_sets_on_the_synthetic_run(synthetic_run):
    from core.runs.runfolder import RunError, RunFolder

    out = run_sets(RunFolder(synthetic_run), "fusion", 0.9)
    assert out["calibration"]["split"] == "val" and out["split"] == "test"
    assert out["n"] == sum(v["n"] for v in out["per_class"].values()) > 0
    assert 0 <= out["two_class_share"] <= 1 and 0 <= out["per_class"]["COVID"]["coverage"] <= 1
    with pytest.raises(RunError, match="no nope probabilities"):
        run_sets(RunFolder(synthetic_run), "nope")


# ---- the out-of-distribution flag --------------------------------------------------------------------------
def test_mahalanobis_matches_sklearns_ledoit_wolf():
    from sklearn.covariance import LedoitWolf
    from sklearn.covariance import ledoit_wolf_shrinkage as sk_shrinkage

    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 12)) @ rng.normal(size=(12, 12)) + 3
    d = Mahalanobis(x)
    assert d.shrinkage == pytest.approx(sk_shrinkage(x), rel=1e-9)
    assert ledoit_wolf_shrinkage(x - x.mean(0)) == pytest.approx(sk_shrinkage(x), rel=1e-9)
    new = rng.normal(size=(5, 12)) * 2
    assert d(new) ** 2 == pytest.approx(LedoitWolf().fit(x).mahalanobis(new), rel=1e-6)
    wide = rng.normal(size=(20, 300))  # more dimensions than rows: the sample covariance alone is singular
    probes = np.vstack([wide[:1] * 0, rng.normal(size=(1, 300)) * 10])
    far = Mahalanobis(wide)(probes)
    assert np.isfinite(far).all() and far[1] > far[0]
    assert far ** 2 == pytest.approx(LedoitWolf().fit(wide).mahalanobis(probes), rel=1e-6)
    flat = np.vstack([wide[:10], wide[:10] + 1e-9])  # rank 10 of 20 rows: what the span leaves out
    assert Mahalanobis(flat)(probes) ** 2 == pytest.approx(LedoitWolf().fit(flat).mahalanobis(probes), rel=1e-6)
    with pytest.raises(ValueError, match="do not vary"):
        Mahalanobis(np.ones((5, 3)))


def test_threshold_is_the_conformal_quantile_of_validation_scores():
    scores = np.arange(1.0, 200.0)  # 199 scores
    t, bound = conformal_threshold(scores, 0.05)
    assert t == 190.0 and bound == pytest.approx(1 - 190 / 200)
    t, bound = conformal_threshold(np.arange(1.0, 11.0), ALPHA)  # too few for 1%: the largest, and a weaker bound
    assert t == 10.0 and bound == pytest.approx(1 / 11)
    rng = np.random.default_rng(2)
    train, val, new = (rng.normal(size=(n, 8)) for n in (200, 300, 4000))
    check = Check(train, val, 0.05)
    assert (check.relative(new) > 1).mean() == pytest.approx(0.05, abs=0.02)  # exchangeable: flagged at the level
    assert (check.relative(rng.normal(size=(50, 8)) + 6) > 1).all()


def _stats(values: np.ndarray, found=True) -> list[SliceStatistics]:
    return [SliceStatistics(found, "" if found else "no thick dark region", v) for v in values]


def test_flag_unites_the_network_and_the_image_checks_each_at_half_the_level():
    rng = np.random.default_rng(3)
    net = [rng.normal(size=(n, 8)) for n in (300, 2000, 4000)]
    img = [rng.normal(size=(n, len(STATISTICS))) * 5 + 10 for n in (300, 2000, 4000)]  # standardised on training
    flag = OodFlag((net[0], net[1]), (img[0], img[1]), alpha=0.1)
    assert flag.network.threshold == pytest.approx(conformal_threshold(flag.network.distance(net[1]), 0.05)[0])
    got = flag.assess(net[2], _stats(img[2]))
    assert list(got.columns) == list(COLUMNS) and len(got) == 4000
    # exchangeable slices: each check flags about 5%, the union at most 10% (a little less: some flagged by both)
    for col in (NETWORK_COLUMN, IMAGE_COLUMN):
        assert (got[col] > 1).mean() == pytest.approx(0.05, abs=0.02)
    assert 0.06 < got[FLAG_COLUMN].mean() <= 0.1 + 0.02 and flag.false_alarm_bound <= 0.1
    assert (got[FLAG_COLUMN] == ((got[NETWORK_COLUMN] > 1) | (got[IMAGE_COLUMN] > 1))).all()
    # the image alone, the network alone, and no lung field each flag, and say why
    odd_image = flag.assess(net[2][:3], _stats(img[2][:3] + 60)).iloc[0]
    odd_net = flag.assess(net[2][:3] + 6, _stats(img[2][:3])).iloc[0]
    no_lungs = flag.assess(net[2][:1], _stats(np.zeros((1, len(STATISTICS))), found=False)).iloc[0]
    assert odd_image[FLAG_COLUMN] and odd_image[NETWORK_COLUMN] < 3 and "in the image" in odd_image[WHY_COLUMN]
    assert odd_net[FLAG_COLUMN] and "to the network" in odd_net[WHY_COLUMN]
    assert no_lungs[FLAG_COLUMN] and np.isnan(no_lungs[IMAGE_COLUMN]) and not no_lungs[LUNGS_COLUMN]
    assert no_lungs[WHY_COLUMN] == "no lung field found (no thick dark region)"
    assert describe_flag(no_lungs).startswith("No lung field found (no thick dark region): the network has not seen")
    assert "lung field" in flag.rule() and "training slices" in flag.rule()
    with pytest.raises(ValueError, match="3 vectors but 1"):
        flag.assess(net[2][:3], _stats(img[2][:1]))


def test_image_check_finds_the_lungs_of_a_ct_slice_and_caches_by_content(tmp_path):
    from PIL import Image

    from core.data.image_cache import cache_dir
    from core.data.imaging import read_slice
    from core.data.phantom import make_phantom
    from core.trust.image_check import VERSION, measure_file
    from core.trust.probes import noise

    ct = measure(make_phantom(0, covid=True, size=128).image)
    assert ct.lungs_found and ct.reason == "" and ct.values.shape == (len(STATISTICS),)
    named = dict(zip(STATISTICS, ct.values))
    assert 0.02 < named["lung_share"] < 0.95 and named["lung_vessels"] > 0 and 0 <= named["lung_median"] < 0.5
    assert named["mirror_match"] > 0.5  # a chest is close to its left-right mirror
    ramp = np.tile(np.linspace(0, 1, 128, dtype=np.float32), (128, 1))  # dark left, bright right
    assert dict(zip(STATISTICS, measure(ramp).values))["mirror_match"] == pytest.approx(-1, abs=1e-3)
    flat = measure(noise(0, 128))
    lung = [i for i, name in enumerate(STATISTICS) if name.startswith("lung_")]
    assert not flat.lungs_found and flat.reason and not flat.values[lung].any()  # no field: its statistics are 0
    path = tmp_path / "slice.png"
    Image.fromarray((make_phantom(1, covid=False, size=128).image * 255).astype(np.uint8)).save(path)
    first = measure_file(path)
    assert first.lungs_found and np.allclose(first.values, measure(read_slice(path)).values)
    assert list(cache_dir().glob(f"*-image-check-{VERSION}.npy"))  # kept on disk, by content
    assert np.array_equal(measure_file(path).values, first.values)


def test_probes_are_no_chest_ct():
    found = probes(per_kind=2)
    assert {k for k, _, _ in found} == set(KINDS) and [n for k, n, _ in found if k == "photo"] == list(PHOTOS)
    for kind, name, img in found:
        assert img.ndim == 2 and img.min() >= 0 and img.max() <= 1 and img.std() > 0.01, name
    from core.data.phantom import make_phantom
    from core.inputs.lungs import lung_field

    assert lung_field(make_phantom(0, covid=False, size=256).image).found
    img = lungless(0)
    assert not lung_field(img).found  # its lungs are filled: no field left to find
    assert not np.array_equal(probes(per_kind=1, seed=1)[-1][2], probes(per_kind=1, seed=0)[-1][2])
    assert not set(HELD_OUT_PHOTOS) & set(PHOTOS)  # never looked at when the image statistics were chosen
    for name in HELD_OUT_PHOTOS:  # every one ships with scikit-image (no download) and reads as a grey image
        img = photo(name)
        assert img.ndim == 2 and img.std() > 0.01, name


def test_ood_flags_noise_and_not_the_runs_own_slices(synthetic_run):
    from core.inference import TrainedRun
    from core.runs.runfolder import RunFolder
    from core.trust.probes import noise

    run = RunFolder(synthetic_run)
    rows = run_rows(run)
    assert all(len(rows[s][0]) for s in ("train", "val", "test"))
    flag = fit_run(run)
    assert flag.n_train == len(rows["train"][0]) and flag.n_val == len(rows["val"][0])
    test = flag.assess(rows["test"][0], run_statistics(run, rows["test"][1]))
    assert test[FLAG_COLUMN].mean() <= 0.25
    tr = TrainedRun.load(synthetic_run)
    for seed in (0, 1):
        img = noise(seed, 96)
        row = flag.assess(tr.fusion_vector(tr.analyse(img)), [measure(img)]).iloc[0]
        assert row[FLAG_COLUMN] and (not row[LUNGS_COLUMN] or row[IMAGE_COLUMN] > 1), f"noise {seed}: {row.to_dict()}"
    # a slice of the run scored live lands where its cached vector and statistics do
    from core.data.covidct import read_covidct
    from core.data.imaging import read_slice

    one = next(s for s in read_covidct(run.config["data_root"]) if s.split == "test")
    cached = test.iloc[rows["test"][1].index(one.key)]
    live = flag.assess(tr.fusion_vector(tr.analyse(read_slice(one.path))), [measure(read_slice(one.path))]).iloc[0]
    assert live[NETWORK_COLUMN] < max(1.5, cached[NETWORK_COLUMN] * 1.5)
    assert live[IMAGE_COLUMN] == pytest.approx(cached[IMAGE_COLUMN])  # the cached statistics are the live ones


def test_the_flag_table_is_stored_once_per_level_and_matches_a_fresh_check(synthetic_run):
    import pandas as pd

    from core.runs.run_view import RunView
    from core.runs.runfolder import RunFolder
    from core.trust.slices import slice_flags, stored_slice_flags

    run, view, fits = RunFolder(synthetic_run), RunView(synthetic_run.parent, synthetic_run.name), []

    def fit(alpha):
        fits.append(alpha)
        return fit_run(run, alpha)

    stored = stored_slice_flags(view, 0.2, lambda: fit(0.2))
    again = stored_slice_flags(view, 0.2, lambda: fit(0.2))
    assert fits == [0.2]  # the second call read the table
    fresh = slice_flags(fit_run(run, 0.2), run, view.features("fusion"), view.feature_keys)
    for table in (stored, again):
        pd.testing.assert_frame_equal(table[list(fresh.columns)], fresh, check_dtype=False)
    stored_slice_flags(view, 0.3, lambda: fit(0.3))
    assert fits == [0.2, 0.3]  # another level is another table
