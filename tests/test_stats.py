"""mtkd.stats: the hierarchical paired bootstrap against brute force, sklearn and statsmodels."""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from statsmodels.stats.multitest import multipletests

from mtkd import stats
from mtkd.metrics import expected_calibration_error_reference


def sk_metric(metric: str, y: np.ndarray, p: np.ndarray, C: int, sample_weight=None) -> float:
    """The metric as sklearn computes it (the reference for mtkd.stats)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if metric == "accuracy":
            return float(accuracy_score(y, p, sample_weight=sample_weight))
        if metric == "f1":
            return float(f1_score(y, p, labels=[0, 1], pos_label=1, average="binary", zero_division=0,
                                  sample_weight=sample_weight))
        if metric == "macro_f1":
            return float(f1_score(y, p, labels=list(range(C)), average="macro", zero_division=0,
                                  sample_weight=sample_weight))
        if metric == "mcc":
            return float(matthews_corrcoef(y, p, sample_weight=sample_weight))
    raise AssertionError(metric)


# ---------------------------------------------------------------------------------------------
# Brute force: every resample of a tiny design, by plain loops over duplicated examples

TINY_GROUPS = ["m2", "m0", "m0", "m1", "m1", "m1"]  # 3 groups of sizes 1, 2, 3 (not in sorted order)
TINY = {
    2: dict(labels=np.array([1, 0, 1, 1, 0, 0]),
            a={7: np.array([1, 0, 0, 1, 0, 1]), 3: np.array([1, 1, 1, 1, 0, 0])},
            b={7: np.array([0, 0, 1, 0, 0, 0]), 3: np.array([1, 0, 0, 1, 1, 0])}),
    3: dict(labels=np.array([2, 0, 1, 1, 0, 2]),
            a={7: np.array([2, 0, 0, 1, 2, 1]), 3: np.array([1, 0, 1, 1, 0, 2])},
            b={7: np.array([0, 0, 1, 2, 0, 2]), 3: np.array([2, 1, 1, 0, 0, 0])}),
}
CASES = [(2, m) for m in stats.METRICS] + [(3, m) for m in ("accuracy", "macro_f1", "mcc")]


def all_draws(S: int, G: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (seed draw, group draw) pair: S^S · G^G equally likely resamples."""
    pairs = list(itertools.product(itertools.product(range(S), repeat=S), itertools.product(range(G), repeat=G)))
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def loop_differences(labels, groups, a, b, metric, C, seed_draws, group_draws) -> np.ndarray:
    """A − B per resample, built by concatenating the drawn groups' examples and scoring each drawn seed."""
    names = list(dict.fromkeys(groups))
    members = {g: [i for i, x in enumerate(groups) if x == names[g]] for g in range(len(names))}
    seeds = list(a)
    memo: dict = {}

    def score(name, preds, s, gd):
        if (name, s, gd) not in memo:
            idx = [i for g in gd for i in members[g]]
            memo[name, s, gd] = sk_metric(metric, labels[idx], preds[seeds[s]][idx], C)
        return memo[name, s, gd]

    out = []
    for sd, gd in zip(seed_draws, group_draws):
        gd = tuple(int(g) for g in gd)
        mean_a = sum(score("a", a, s, gd) for s in sd) / len(sd)
        mean_b = sum(score("b", b, s, gd) for s in sd) / len(sd)
        out.append(mean_a - mean_b)
    return np.array(out)


@pytest.mark.parametrize("C,metric", CASES)
def test_explicit_plan_equals_loop_over_every_resample(C, metric):
    t = TINY[C]
    seed_draws, group_draws = all_draws(2, 3)
    assert len(seed_draws) == 2**2 * 3**3
    plan = stats.Plan.from_draws(TINY_GROUPS, seed_draws, group_draws)
    res = stats.paired_difference(t["labels"], TINY_GROUPS, t["a"], t["b"], metric, plan, num_classes=C)
    expected = loop_differences(t["labels"], TINY_GROUPS, t["a"], t["b"], metric, C, seed_draws, group_draws)
    np.testing.assert_allclose(res["bootstrap"], expected, rtol=0, atol=1e-12)
    point = np.mean([sk_metric(metric, t["labels"], t["a"][s], C) - sk_metric(metric, t["labels"], t["b"][s], C)
                     for s in t["a"]])
    assert res["diff"] == pytest.approx(point, abs=1e-12)


@pytest.mark.parametrize("C,metric", CASES)
def test_random_plan_matches_exact_bootstrap_distribution(C, metric):
    t = TINY[C]
    seed_draws, group_draws = all_draws(2, 3)
    exact = np.sort(loop_differences(t["labels"], TINY_GROUPS, t["a"], t["b"], metric, C, seed_draws, group_draws))
    R = 20000
    res = stats.paired_difference(t["labels"], TINY_GROUPS, t["a"], t["b"], metric, n_resamples=R, seed=11,
                                  num_classes=C)
    boot = np.sort(res["bootstrap"])
    assert boot.size == R
    # mean: 4 Monte-Carlo standard errors
    assert abs(boot.mean() - exact.mean()) <= 4 * exact.std() / math.sqrt(R) + 1e-12
    # whole distribution: DKW bound, P(sup |F_R − F| > 0.02) ≤ 2·exp(−2·R·0.02²) ≈ 2e-7
    values = np.unique(exact)
    F_exact = np.searchsorted(exact, values + 1e-9, side="right") / exact.size
    F_boot = np.searchsorted(boot, values + 1e-9, side="right") / R
    assert np.abs(F_exact - F_boot).max() <= 0.02
    # quantiles: each lies between the exact quantiles 0.02 either side
    for q in (0.025, 0.5, 0.975):
        got = np.quantile(boot, q, method="inverted_cdf")
        lo = np.quantile(exact, max(q - 0.02, 0.0), method="inverted_cdf")
        hi = np.quantile(exact, min(q + 0.02, 1.0), method="inverted_cdf")
        assert lo - 1e-12 <= got <= hi + 1e-12


def test_plan_weights_count_drawn_groups():
    seed_draws, group_draws = all_draws(2, 3)
    plan = stats.Plan.from_draws(TINY_GROUPS, seed_draws, group_draws)
    codes = [0, 1, 1, 2, 2, 2]  # first-occurrence numbering of TINY_GROUPS
    for r in (0, 5, 50, 107):
        assert plan.W[r].tolist() == [float(list(group_draws[r]).count(codes[i])) for i in range(6)]
        assert plan.V[r].tolist() == [float(list(seed_draws[r]).count(s)) for s in range(2)]
    assert (plan.n, plan.n_groups, plan.n_seeds, plan.n_resamples) == (6, 3, 2, 108)


def test_resample_plan_shapes_and_totals():
    groups = np.repeat(np.arange(52), 25)
    plan = stats.resample_plan(groups, n_seeds=5, n_resamples=2000, seed=0)
    assert plan.W.shape == (2000, 1300) and plan.V.shape == (2000, 5)
    assert (plan.V.sum(axis=1) == 5).all() and (plan.group_counts.sum(axis=1) == 52).all()
    assert (plan.W.sum(axis=1) == 1300).all()  # equal group sizes: every resample has n examples


# ---------------------------------------------------------------------------------------------
# Metrics from weighted confusion counts


def test_weighted_confusion_hand_values():
    labels = np.array([0, 1, 1, 0])
    preds = np.array([0, 1, 0, 1])
    w = np.array([[2.0, 1.0, 3.0, 0.0]])
    conf = stats.weighted_confusion(labels, preds, w)
    assert conf.shape == (1, 1, 2, 2)
    assert conf[0, 0].tolist() == [[2.0, 0.0], [3.0, 1.0]]
    m = {name: float(stats.metric_from_confusion(conf, name)[0, 0]) for name in stats.METRICS}
    assert m["accuracy"] == pytest.approx(3 / 6)
    assert m["f1"] == pytest.approx(2 * 1 / (4 + 1))
    assert m["macro_f1"] == pytest.approx((2 * 2 / (2 + 5) + 0.4) / 2)
    # s = 6, c = 3, pred totals (5, 1), true totals (2, 4): (3·6 − 14) / sqrt((36 − 26)(36 − 20))
    assert m["mcc"] == pytest.approx(4 / math.sqrt(160))
    for name in stats.METRICS:
        assert m[name] == pytest.approx(sk_metric(name, labels, preds, 2, sample_weight=w[0]), abs=1e-12)


@pytest.mark.parametrize("C", [2, 3, 4])
def test_weighted_metrics_equal_sklearn_sample_weight(C):
    rng = np.random.default_rng(C)
    n = 60
    labels = rng.integers(0, C, n)
    preds = np.where(rng.random((3, n)) < 0.6, labels, rng.integers(0, C, (3, n)))
    weights = rng.integers(0, 4, (5, n)).astype(float)
    conf = stats.weighted_confusion(labels, preds, weights, num_classes=C)
    for metric in ("accuracy", "macro_f1", "mcc") + (("f1",) if C == 2 else ()):
        got = stats.metric_from_confusion(conf, metric)
        assert got.shape == (5, 3)
        for r in range(5):
            for s in range(3):
                assert got[r, s] == pytest.approx(sk_metric(metric, labels, preds[s], C, weights[r]), abs=1e-12)


@pytest.mark.parametrize("C", [2, 3])
def test_full_metric_equals_sklearn_unweighted(C):
    rng = np.random.default_rng(10 + C)
    labels = rng.integers(0, C, 200)
    preds = np.where(rng.random((2, 200)) < 0.7, labels, rng.integers(0, C, (2, 200)))
    for metric in ("accuracy", "macro_f1", "mcc") + (("f1",) if C == 2 else ()):
        got = stats.full_metric(labels, preds, metric, C)
        for s in range(2):
            assert got[s] == pytest.approx(sk_metric(metric, labels, preds[s], C), abs=1e-12)


def test_macro_f1_counts_absent_class_as_zero_and_mcc_undefined_is_zero():
    labels, preds = np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1])
    conf = stats.weighted_confusion(labels, preds, np.ones((1, 4)), num_classes=3)
    assert stats.metric_from_confusion(conf, "macro_f1")[0, 0] == pytest.approx(2 / 3)
    assert stats.metric_from_confusion(conf, "macro_f1")[0, 0] == pytest.approx(sk_metric("macro_f1", labels, preds, 3))
    one_class = stats.weighted_confusion(np.zeros(4, int), np.zeros(4, int), np.ones((1, 4)), num_classes=2)
    assert stats.metric_from_confusion(one_class, "mcc")[0, 0] == 0.0
    with pytest.raises(ValueError, match="binary"):
        stats.metric_from_confusion(np.ones((1, 3, 3)), "f1")
    with pytest.raises(ValueError, match="known"):
        stats.metric_from_confusion(np.ones((1, 2, 2)), "auc")


# ---------------------------------------------------------------------------------------------
# Paired comparison


def grouped_design(n_groups=40, size=25, n_seeds=3, seed=0):
    """Errors that are all-or-nothing within a group (strong within-group correlation), shared by the
    seeds up to a few example-level flips."""
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_groups), size)
    n = n_groups * size
    labels = rng.integers(0, 2, n)
    ok_a, ok_b = (rng.random(n_groups) < 0.8)[groups], (rng.random(n_groups) < 0.7)[groups]
    a, b = {}, {}
    for s in range(n_seeds):
        a[s] = np.where(ok_a ^ (rng.random(n) < 0.05), labels, 1 - labels)
        b[s] = np.where(ok_b ^ (rng.random(n) < 0.05), labels, 1 - labels)
    return labels, groups, a, b


def test_groups_widen_the_interval():
    labels, groups, a, b = grouped_design()
    grouped = stats.paired_difference(labels, groups, a, b, "accuracy", n_resamples=2000, seed=0)
    flat = stats.paired_difference(labels, np.arange(labels.size), a, b, "accuracy", n_resamples=2000, seed=0)
    assert grouped["diff"] == flat["diff"]
    width = lambda r: r["ci95_high"] - r["ci95_low"]  # noqa: E731
    assert width(grouped) > 2 * width(flat)
    assert grouped["se"] > 2 * flat["se"]
    assert (grouped["n_groups"], flat["n_groups"]) == (40, 1000)


def test_result_fields_are_consistent():
    labels, groups, a, b = grouped_design(seed=3)
    r = stats.paired_difference(labels, groups, a, b, "mcc", n_resamples=1000, seed=1)
    d = r["bootstrap"]
    assert r["ci95_low"] < r["ci95_high"]
    assert r["se"] == pytest.approx(np.std(d, ddof=1))
    assert r["p_value"] == min(1.0, 2 * min((d <= 0).mean(), (d >= 0).mean()))
    assert r["prob_improvement"] == pytest.approx((d > 0).mean() + 0.5 * (d == 0).mean())
    assert r["half_width"] == pytest.approx((r["ci95_high"] - r["ci95_low"]) / 2)
    assert r["mdd"] == pytest.approx(stats.minimum_detectable_difference(r["se"]))
    assert (r["n_seeds"], r["n_groups"], r["n_resamples"], r["note"]) == (3, 40, 1000, None)
    assert "bootstrap" not in stats.without_bootstrap(r)
    assert all(isinstance(v, (float, int, str, type(None))) for v in stats.without_bootstrap(r).values())


def test_interval_excludes_zero_exactly_when_p_at_most_alpha():
    rng = np.random.default_rng(5)
    for _ in range(300):
        R = int(rng.integers(20, 400))
        d = np.round(rng.normal(rng.normal(0, 1.5), 1.0, R), 1)  # rounded: ties at 0 happen
        for alpha in (0.05, 0.05 / 3, 0.01, 0.2):
            low, high = stats.percentile_interval(d, alpha)
            assert (not low <= 0.0 <= high) == (stats.bootstrap_p_value(d) <= alpha)


def test_one_seed_gives_no_interval():
    labels, groups, a, b = grouped_design(n_seeds=1)
    r = stats.paired_difference(labels, groups, a, b, "accuracy")
    assert r["ci95_low"] is None and r["ci95_high"] is None and r["p_value"] is None and r["bootstrap"] is None
    assert r["note"] == stats.NOTE_ONE_SEED
    assert r["diff"] == pytest.approx((a[0] == labels).mean() - (b[0] == labels).mean())


def test_one_group_gives_no_interval():
    labels, _, a, b = grouped_design()
    r = stats.paired_difference(labels, ["all"] * labels.size, a, b, "accuracy")
    assert r["ci95_low"] is None and r["ci95_high"] is None and r["se"] is None
    assert r["note"] == stats.NOTE_ONE_GROUP and r["n_groups"] == 1


def test_identical_students_give_no_zero_width_interval():
    labels, groups, a, _ = grouped_design()
    r = stats.paired_difference(labels, groups, a, dict(a), "accuracy", n_resamples=200)
    assert r["diff"] == 0.0 and r["ci95_low"] is None and r["note"] == stats.NOTE_ZERO_WIDTH
    assert r["p_value"] == 1.0 and r["prob_improvement"] == 0.5


def test_seed_mismatch_names_the_missing_seeds():
    labels, groups, a, b = grouped_design()
    b = {0: b[0], 1: b[1], 9: b[2]}
    with pytest.raises(ValueError, match=r"\[2\].*\[9\]"):
        stats.paired_difference(labels, groups, a, b, "accuracy")


def test_plan_must_fit_the_data():
    labels, groups, a, b = grouped_design()
    with pytest.raises(ValueError, match="seeds"):
        stats.paired_difference(labels, groups, a, b, "accuracy", stats.resample_plan(groups, 2, 50))
    with pytest.raises(ValueError, match="other groups"):
        stats.paired_difference(labels, groups, a, b, "accuracy", stats.resample_plan(np.arange(labels.size), 3, 50))


def test_determinism():
    labels, groups, a, b = grouped_design()
    r1 = stats.paired_difference(labels, groups, a, b, "macro_f1", n_resamples=300, seed=4)
    r2 = stats.paired_difference(labels, groups, a, b, "macro_f1", n_resamples=300, seed=4)
    assert stats.without_bootstrap(r1) == stats.without_bootstrap(r2)
    np.testing.assert_array_equal(r1["bootstrap"], r2["bootstrap"])
    p1, p2 = stats.resample_plan(groups, 3, 300, seed=4), stats.resample_plan(groups, 3, 300, seed=5)
    np.testing.assert_array_equal(p1.W, stats.resample_plan(groups, 3, 300, seed=4).W)
    assert not np.array_equal(p1.group_counts, p2.group_counts) and not np.array_equal(p1.V, p2.V)
    r3 = stats.paired_difference(labels, groups, a, b, "macro_f1", n_resamples=300, seed=5)
    assert not np.array_equal(r1["bootstrap"], r3["bootstrap"])


# ---------------------------------------------------------------------------------------------
# Holm


def fake_result(n_le_zero: int, R: int = 1000) -> dict:
    """A comparison whose bootstrap has ``n_le_zero`` of R resamples at or below 0 (all others above)."""
    d = np.concatenate([-np.linspace(0.01, 0.5, n_le_zero), np.linspace(0.02, 1.0, R - n_le_zero)])
    low, high = stats.percentile_interval(d)
    return {"diff": 0.3, "ci95_low": low, "ci95_high": high, "p_value": stats.bootstrap_p_value(d), "bootstrap": d}


def test_holm_hand_example():
    comps = {"x": fake_result(5), "y": fake_result(20), "z": fake_result(15),
             "single_seed": {"diff": 0.1, "ci95_low": None, "ci95_high": None, "p_value": None, "bootstrap": None,
                             "note": stats.NOTE_ONE_SEED}}
    assert [comps[k]["p_value"] for k in "xyz"] == [0.01, 0.04, 0.03]
    out = stats.adjust_family(comps, alpha=0.05)
    reject, p_holm, _, _ = multipletests([0.01, 0.04, 0.03], alpha=0.05, method="holm")
    assert [out[k]["p_holm"] for k in "xyz"] == pytest.approx(list(p_holm))
    assert [out[k]["p_holm"] for k in "xyz"] == pytest.approx([0.03, 0.06, 0.06])
    assert [out[k]["reject_holm"] for k in "xyz"] == list(reject) == [True, False, False]
    assert [out[k]["holm_level"] for k in "xyz"] == pytest.approx([0.05 / 3, 0.05 / 1, 0.05 / 2])
    assert all(out[k]["family_size"] == 3 for k in "xyz")
    # y: p = 0.04 ≤ its own level 0.05, so its own interval excludes 0, but Holm stopped at z: widened to 0
    own_low, _ = stats.percentile_interval(comps["y"]["bootstrap"], 0.05)
    assert own_low > 0 and out["y"]["ci_adj_low"] == 0.0
    for k in "xyz":
        excludes = not out[k]["ci_adj_low"] <= 0.0 <= out[k]["ci_adj_high"]
        assert excludes == out[k]["reject_holm"]
        assert out[k]["ci_adj_low"] <= out[k]["ci95_low"] and out[k]["ci_adj_high"] >= out[k]["ci95_high"]
    s = out["single_seed"]
    assert s["p_holm"] is None and s["reject_holm"] is None and s["ci_adj_low"] is None and s["family_size"] == 0
    assert s["note"] == stats.NOTE_ONE_SEED


def test_adjusted_interval_excludes_zero_iff_holm_rejects_on_real_comparisons():
    labels, groups, a, _ = grouped_design(seed=7)
    rng = np.random.default_rng(8)
    comps = {}
    for k, noise in enumerate((0.0, 0.02, 0.05, 0.1, 0.2, 0.3)):
        b = {s: np.where(rng.random(labels.size) < noise, 1 - p, p) for s, p in a.items()}
        comps[f"c{k}"] = stats.paired_difference(labels, groups, a, b, "accuracy", n_resamples=1000, seed=k)
    out = stats.adjust_family(comps)
    in_family = [k for k, r in out.items() if r["ci_adj_low"] is not None]
    assert len(in_family) >= 4 and any(out[k]["reject_holm"] for k in in_family)
    for k in in_family:
        assert (not out[k]["ci_adj_low"] <= 0.0 <= out[k]["ci_adj_high"]) == out[k]["reject_holm"]
    assert out["c0"]["ci_adj_low"] is None  # identical students: no interval, but in the family (p = 1)
    assert out["c0"]["p_holm"] == 1.0 and out["c0"]["reject_holm"] is False


# ---------------------------------------------------------------------------------------------
# Detectable difference, positive quantities, calibration, gap closed, selection


def test_minimum_detectable_difference_hand_value():
    assert stats.minimum_detectable_difference(0.01) == pytest.approx((1.959963985 + 0.841621234) * 0.01, abs=1e-9)
    assert stats.minimum_detectable_difference(1.0, alpha=0.05, power=0.5) == pytest.approx(1.959963985, abs=1e-9)
    assert stats.half_width(0.1, 0.5) == pytest.approx(0.2) and stats.half_width(None, 0.5) is None


def test_mean_interval_of_nonnegative_values():
    rng = np.random.default_rng(2)
    groups = np.repeat(np.arange(30), 10)
    values = {s: np.where(rng.random(300) < 0.1, rng.exponential(1.0, 300), 0.0) for s in range(4)}
    plan = stats.resample_plan(groups, 4, 2000, seed=0)
    r = stats.mean_interval(values, plan)
    assert r["point"] == pytest.approx(np.mean([v.mean() for v in values.values()]))
    assert 0.0 <= r["ci95_low"] <= r["point"] <= r["ci95_high"]
    assert stats.resampled_mean(values, plan).min() >= 0.0


def test_resampled_mean_equals_duplicated_data():
    rng = np.random.default_rng(4)
    groups = ["g%d" % (i % 5) for i in range(17)]
    values = {s: rng.random(17) for s in "ab"}
    plan = stats.resample_plan(groups, 2, 30, seed=1)
    boot = stats.resampled_mean(values, plan)
    for r in range(30):
        per_seed = [np.repeat(values[s], plan.W[r].astype(int)).mean() for s in "ab"]
        assert boot[r] == pytest.approx(np.dot(plan.V[r], per_seed) / 2, abs=1e-12)


def probs_design(n=240, C=3, n_seeds=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, C, n)
    probs = {}
    for s in range(n_seeds):
        z = rng.normal(0, 1.5, (n, C))
        z[np.arange(n), labels] += 1.0
        p = np.exp(z)
        probs[s] = p / p.sum(axis=1, keepdims=True)
    return labels, np.repeat(np.arange(n // 8), 8), probs


def test_ece_point_equals_reference_and_resamples_equal_duplicated_data():
    labels, groups, probs = probs_design()
    plan = stats.resample_plan(groups, 3, 500, seed=0)
    r = stats.ece_interval(probs, labels, plan)
    ref = np.mean([expected_calibration_error_reference(p, labels) for p in probs.values()])
    assert r["point"] == pytest.approx(ref, abs=1e-12)
    assert 0.0 <= r["ci95_low"] < r["ci95_high"]
    boot = stats.resampled_ece(probs, labels, plan)
    for k in range(10):
        idx = np.repeat(np.arange(labels.size), plan.W[k].astype(int))
        per_seed = [expected_calibration_error_reference(probs[s][idx], labels[idx]) for s in range(3)]
        assert boot[k] == pytest.approx(np.dot(plan.V[k], per_seed) / 3, abs=1e-12)


def test_ece_and_mean_interval_degenerate():
    labels, groups, probs = probs_design(n_seeds=1)
    r = stats.ece_interval(probs, labels, stats.resample_plan(groups, 1, 50))
    assert r["ci95_low"] is None and r["note"] == stats.NOTE_ONE_SEED
    assert r["point"] == pytest.approx(expected_calibration_error_reference(probs[0], labels), abs=1e-12)


def test_gap_closed_hand_value():
    labels = np.array([0, 1] * 8)
    groups = np.repeat(np.arange(8), 2)
    teacher = labels.copy()  # accuracy 1
    none = {s: np.where(np.arange(16) % 4 < 2, labels, 1 - labels) for s in (1, 2)}  # accuracy 0.5
    student = {1: np.where(np.arange(16) % 4 < 3, labels, 1 - labels),  # 0.75
               2: np.where(np.arange(16) % 8 < 6, labels, 1 - labels)}  # 0.75
    plan = stats.resample_plan(groups, 2, 1000, seed=0)
    r = stats.gap_closed(labels, groups, student, none, teacher, "accuracy", plan)
    assert r["point"] == pytest.approx(0.5)
    assert r["ci95_low"] <= 0.5 <= r["ci95_high"] and r["note"] is None
    # none is wrong exactly on groups 1, 3, 5, 7: a resample without them has teacher = none and is dropped
    assert r["n_dropped"] == int((plan.group_counts[:, 1::2].sum(axis=1) == 0).sum())


def test_gap_closed_undefined_and_dropped_resamples():
    labels = np.array([0, 1] * 8)
    groups = np.repeat(np.arange(8), 2)
    none = {s: labels.copy() for s in (1, 2)}
    r = stats.gap_closed(labels, groups, none, none, labels.copy(), "accuracy")
    assert r["point"] is None and r["ci95_low"] is None and "undefined" in r["note"]
    # the teacher beats none only in group 0: resamples that skip group 0 have no denominator
    teacher = labels.copy()
    none = {s: np.where(groups == 0, 1 - labels, labels) for s in (1, 2)}
    student = {1: labels.copy(), 2: none[2].copy()}
    plan = stats.resample_plan(groups, 2, 400, seed=3)
    r = stats.gap_closed(labels, groups, student, none, teacher, "accuracy", plan)
    assert r["point"] == pytest.approx(0.5)
    assert r["n_dropped"] == int((plan.group_counts[:, 0] == 0).sum()) > 0
    assert 0.0 <= r["ci95_low"] <= r["ci95_high"] <= 1.0


def selection_design(near_tie: bool):
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(30), 10)
    labels = rng.integers(0, 2, 300)
    flip = lambda p, mask: np.where(mask, 1 - p, p)  # noqa: E731
    preds = {}
    for name, rate in (("multi:a", 0.10), ("multi:b", 0.12), ("single:x", 0.2), ("single:y", 0.2)):
        preds[name] = {s: flip(labels, rng.random(300) < rate) for s in range(3)}
    if not near_tie:
        # multi:b right everywhere; single:y wrong on the first example of every group on top of single:x's errors
        preds["multi:b"] = {s: labels.copy() for s in range(3)}
        first = np.arange(300) % 10 == 0
        preds["single:y"] = {s: flip(x, first & (x == labels)) for s, x in preds["single:x"].items()}
    return labels, groups, preds


def test_selection_stability_dominant_candidates():
    labels, groups, preds = selection_design(near_tie=False)
    r = stats.selection_stability(labels, groups, preds, ["multi:a", "multi:b"], ["single:y", "single:x"],
                                  "accuracy", n_resamples=500)
    assert (r["a_pick"], r["b_pick"]) == ("multi:b", "single:x")
    assert r["pair_share"] == r["a_share"] == r["b_share"] == 1.0
    assert r["a_picks"] == {"multi:a": 0.0, "multi:b": 1.0}


def test_selection_stability_near_tie():
    labels, groups, preds = selection_design(near_tie=True)
    r = stats.selection_stability(labels, groups, preds, ["multi:a", "multi:b"], ["single:x", "single:y"],
                                  "accuracy", n_resamples=500)
    assert 0.0 < r["b_share"] < 1.0 and 0.0 < r["pair_share"] < 1.0
    assert r["pair_share"] <= min(r["a_share"], r["b_share"])
    assert sum(r["b_picks"].values()) == pytest.approx(1.0)
    assert r["b_picks"][r["b_pick"]] == r["b_share"]


def test_selection_stability_ties_pick_first_in_list_and_one_seed_is_degenerate():
    labels, groups, preds = selection_design(near_tie=True)
    preds["single:copy"] = preds["single:x"]
    r = stats.selection_stability(labels, groups, preds, ["multi:a"], ["single:x", "single:copy"], "accuracy",
                                  n_resamples=200)
    assert r["b_pick"] == "single:x" and r["b_share"] == 1.0 and r["a_share"] == 1.0
    one = {k: {0: v[0]} for k, v in preds.items()}
    r = stats.selection_stability(labels, groups, one, ["multi:a", "multi:b"], ["single:x"], "accuracy")
    assert r["pair_share"] is None and r["note"] == stats.NOTE_ONE_SEED and r["a_pick"] in ("multi:a", "multi:b")
