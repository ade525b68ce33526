"""The comparison matrix (issue #12): pairs, Holm family, intervals checked by brute force."""

import itertools

import numpy as np
import pytest

from mtkd import stats
from mtkd.analysis import verdict as V

KINDS = {"none": "baseline", "single_a": "single", "single_b": "single", "average": "multi", "gating": "multi"}


def test_pairs_are_multi_vs_single_then_everyone_vs_none():
    assert V.comparison_pairs(KINDS) == [("average", "single_a"), ("average", "single_b"), ("gating", "single_a"),
                                         ("gating", "single_b"), ("average", "none"), ("gating", "none"),
                                         ("single_a", "none"), ("single_b", "none")]
    assert V.comparison_pairs({"none": "baseline", "single_a": "single"}) == [("single_a", "none")]
    assert V.comparison_pairs({"average": "multi"}) == []
    # a reference teacher's student (human) is no contender: compared with none only
    assert V.comparison_pairs({**KINDS, "single_h": "reference"}) == [*V.comparison_pairs(KINDS), ("single_h", "none")]
    # a transfer-set student is a contender of its kind, and compared with its strategy on train alone
    with_transfer = {**KINDS, "average+transfer": "multi", "single_a+transfer": "single"}
    assert V.comparison_pairs(with_transfer)[-2:] == [("average+transfer", "average"), ("single_a+transfer", "single_a")]
    assert ("average+transfer", "single_a+transfer") in V.comparison_pairs(with_transfer)
    assert V.comparison_key("average", "single_a") == "average_vs_single_a"


def _data(n_groups=6, per_group=3, seeds=(0, 1, 2), seed=0):
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    labels = rng.integers(0, 2, n)
    groups = [f"m{i // per_group}" for i in range(n)]
    skill = {"none": 0.55, "single_a": 0.65, "single_b": 0.6, "average": 0.7, "gating": 0.5}
    preds = {s: {k: np.where(rng.random(n) < p, labels, 1 - labels) for k in seeds} for s, p in skill.items()}
    return labels, groups, preds


def test_every_comparison_matches_a_brute_force_resample_loop():
    labels, groups, preds = _data()
    plan = V.make_plan(groups, 3)
    out = V.compare_students(labels, groups, preds, KINDS, "accuracy", 2, plan)
    codes = stats.factorize(groups)
    seeds = list(preds["none"])
    for key, res in out.items():
        a, b = res["a"], res["b"]
        boot = []
        for r in range(plan.n_resamples):  # expand the counts into explicit example and seed lists
            idx = np.concatenate([np.flatnonzero(codes == g).repeat(1) for g in range(plan.n_groups)
                                  for _ in range(int(plan.group_counts[r, g]))])
            drawn = [seeds[s] for s in range(3) for _ in range(int(plan.V[r, s]))]
            boot.append(np.mean([(preds[a][k][idx] == labels[idx]).mean() - (preds[b][k][idx] == labels[idx]).mean()
                                 for k in drawn]))
        low, high = stats.percentile_interval(np.array(boot))
        assert res["ci95_low"] == pytest.approx(low, abs=1e-6) and res["ci95_high"] == pytest.approx(high, abs=1e-6), key
        assert res["diff"] == pytest.approx(np.mean([(preds[a][k] == labels).mean() - (preds[b][k] == labels).mean()
                                                     for k in seeds]), abs=1e-6)
        assert res["prob_improvement"] == pytest.approx((np.sum(np.array(boot) > 1e-12)
                                                         + 0.5 * np.sum(np.abs(boot) <= 1e-12)) / len(boot), abs=1e-6)
        assert res["family_size"] == 8 and res["ci_adj_low"] <= res["ci95_low"] and res["ci_adj_high"] >= res["ci95_high"]
        assert res["verdict"] == (V.NO_DIFFERENCE if res["ci_adj_low"] <= 0 <= res["ci_adj_high"]
                                  else ("A better" if res["diff"] > 0 else "B better"))


def test_holm_matches_statsmodels_over_the_family():
    from statsmodels.stats.multitest import multipletests

    labels, groups, preds = _data(n_groups=12, seed=3)
    out = V.compare_students(labels, groups, preds, KINDS, "accuracy", 2, V.make_plan(groups, 3))
    p = [v["p_value"] for v in out.values()]
    _, p_holm, _, _ = multipletests(p, method="holm")
    assert [v["p_holm"] for v in out.values()] == pytest.approx(list(p_holm), abs=1e-6)


def test_a_clear_winner_is_named_and_a_tie_is_not():
    labels = np.arange(60) % 2
    groups = [f"g{i // 3}" for i in range(60)]
    right = {k: labels.copy() for k in range(3)}
    wrong = {k: 1 - labels for k in range(3)}
    kinds = {"none": "baseline", "single_a": "single", "average": "multi"}
    out = V.compare_students(labels, groups, {"none": wrong, "single_a": wrong, "average": right}, kinds, "accuracy", 2,
                             V.make_plan(groups, 3))
    assert out["average_vs_single_a"]["verdict"] == "A better" and out["average_vs_single_a"]["diff"] == 1.0
    assert out["single_a_vs_none"]["verdict"] == V.NO_DIFFERENCE  # identical students: a difference of exactly 0
    assert out["single_a_vs_none"]["ci95_low"] is None  # zero width is never reported as an interval


def test_one_seed_gives_no_interval_and_a_note_not_a_crash():
    labels, groups, preds = _data(seeds=(0,))
    assert V.make_plan(groups, 1) is None
    out = V.compare_students(labels, groups, preds, KINDS, "accuracy", 2, None)
    for res in out.values():
        assert res["ci95_low"] is None and res["ci_adj_low"] is None and res["p_holm"] is None
        assert res["note"] == stats.NOTE_ONE_SEED and res["verdict"] == V.NO_INTERVAL
    iv = V.strategy_interval(labels, preds["average"], "accuracy", 2, None)
    assert iv["ci95_low"] is None and iv["note"] == stats.NOTE_ONE_SEED and iv["point"] is not None
    head = V.headline(out, "average", "single_a", None)
    assert head["verdict"] == V.NO_INTERVAL and head["multi"] == "average"


def test_one_group_gives_no_interval():
    labels, _, preds = _data()
    groups = ["all"] * len(labels)
    assert V.make_plan(groups, 3) is None
    out = V.compare_students(labels, groups, preds, KINDS, "accuracy", 2, None)
    assert all(res["note"] == stats.NOTE_ONE_GROUP for res in out.values())


def test_strategy_interval_is_the_seed_mean_with_a_bootstrap_interval():
    labels, groups, preds = _data()
    plan = V.make_plan(groups, 3)
    iv = V.strategy_interval(labels, preds["single_a"], "accuracy", 2, plan)
    point = np.mean([(p == labels).mean() for p in preds["single_a"].values()])
    assert iv["point"] == pytest.approx(point, abs=1e-6)
    assert iv["ci95_low"] < iv["point"] < iv["ci95_high"]


@pytest.mark.parametrize("seeds", [(0, 1), (0, 1, 2)])
def test_positive_intervals_never_go_below_zero(seeds):
    labels, groups, preds = _data(seeds=seeds)
    plan = V.make_plan(groups, len(seeds))
    rng = np.random.default_rng(1)
    probs = {"single_a": {k: np.stack([1 - (q := rng.uniform(0.0, 1.0, len(labels))), q], 1) for k in seeds}}
    fused = {"single_a": {k: np.tile([0.5, 0.5], (len(labels), 1)) for k in seeds}}
    row = V.positive_intervals(labels, probs, fused, plan)["single_a"]
    for key in ("ece", "kl_fused"):
        assert 0 <= row[key]["ci95_low"] <= row[key]["point"] <= row[key]["ci95_high"], key
    # KL(uniform ‖ q) by hand, mean over examples and seeds
    expected = np.mean([np.mean(0.5 * np.log(0.5 / np.clip(p[:, 0], 1e-12, 1)) + 0.5 * np.log(0.5 / np.clip(p[:, 1], 1e-12, 1)))
                        for p in probs["single_a"].values()])
    assert row["kl_fused"]["point"] == pytest.approx(expected, abs=1e-5)


def test_selection_stability_counts_how_often_the_same_pair_wins():
    labels, groups, preds = _data(n_groups=8, seed=5)
    sel = V.selection(labels, groups, preds, KINDS, "accuracy", 2)
    full = {s: np.mean([(p == labels).mean() for p in preds[s].values()]) for s in preds}
    assert sel["a_pick"] == max(["average", "gating"], key=lambda s: (full[s], -["average", "gating"].index(s)))
    assert sel["b_pick"] == max(["single_a", "single_b"], key=lambda s: (full[s], -["single_a", "single_b"].index(s)))
    assert 0 <= sel["pair_share"] <= min(sel["a_share"], sel["b_share"]) <= 1
    assert sum(sel["a_picks"].values()) == pytest.approx(1.0)
    assert V.selection(labels, groups, preds, {"none": "baseline", "single_a": "single"}, "accuracy", 2) is None


def test_headline_is_the_validation_picked_pair():
    labels, groups, preds = _data()
    out = V.compare_students(labels, groups, preds, KINDS, "accuracy", 2, V.make_plan(groups, 3))
    head = V.headline(out, "gating", "single_b", {"pair_share": 0.5})
    assert head["multi"] == "gating" and head["single"] == "single_b"
    assert head["diff"] == out["gating_vs_single_b"]["diff"]
    assert head["verdict"] in (V.NO_DIFFERENCE, "multi better", "single better")
    assert V.headline(out, None, "single_b", None) is None
    assert list(itertools.islice(out, 1)) == ["average_vs_single_a"]  # stable key order: the pairs' order
