"""Scores against the human label distribution (issue #16): hand-computed values, brute-force intervals."""

import numpy as np
import pytest
from scipy.stats import entropy

from mtkd import stats
from mtkd.analysis import human as H
from mtkd.analysis import verdict as V


def test_kl_human_by_hand():
    h = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0], [0.25, 0.75, 0.0]])
    q = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25], [0.5, 0.5, 0.0]])
    # log 2; log 2; 0.25 log 0.5 + 0.75 log 1.5 = 0.130812 (a class no rater chose adds nothing, even at q = 0)
    np.testing.assert_allclose(H.kl_human(h, q), [np.log(2), np.log(2), 0.25 * np.log(0.5) + 0.75 * np.log(1.5)])
    assert H.kl_human(h, q)[2] == pytest.approx(0.130812, abs=1e-6)
    assert H.kl_human(h, h).tolist() == [0.0, 0.0, 0.0]
    # a model certain of a class some rater did not choose: clipped at 1e-12, not infinite
    assert H.kl_human(np.array([[0.5, 0.5]]), np.array([[1.0, 0.0]]))[0] == \
        pytest.approx(0.5 * np.log(0.5) + 0.5 * np.log(0.5 / 1e-12))  # 13.122


def test_rater_agreement_by_hand():
    h = np.array([[0.6, 0.4], [0.1, 0.9], [0.5, 0.5]])
    assert H.rater_agreement(h, np.array([0, 0, 1])).tolist() == [0.6, 0.1, 0.5]


def test_human_ece_by_hand():
    h = np.array([[0.6, 0.4], [1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    q = np.array([[0.9, 0.1], [0.85, 0.15], [0.3, 0.7], [0.1, 0.9]])
    # bins of 1/15, (lo, hi]: examples 1 and 4 at conf 0.9 (bin 13), 2 at 0.85 (bin 12), 3 at 0.7 (bin 10);
    # bin 13: 2/4 · |(0.6 + 1.0)/2 − 0.9| = 0.05; bin 12: 1/4 · |1.0 − 0.85| = 0.0375; bin 10: 1/4 · |0.5 − 0.7| = 0.05
    assert H.human_ece(h, q) == pytest.approx(0.1375)
    cols = H.human_calibration_columns(h, q)
    assert cols.shape == (4, 15) and cols[0, 13] == pytest.approx(-0.3) and cols[3, 13] == pytest.approx(0.1)
    assert H.human_ece(h, h) == pytest.approx(0.0)  # confidence = the raters' share of the top class, everywhere


def test_teacher_scores_by_hand():
    h = np.array([[0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.25, 0.75], [0.5, 0.5]])
    out = H.human_scores(h, q)
    # KL: (0.5 log 2 + 0.5 log(2/3) + log 2) / 2; agreement: predictions 1, 0 → (0.5 + 1) / 2;
    # ECE: conf 0.75 (bin 11) vs 0.5, conf 0.5 (bin 7) vs 1.0 → (0.25 + 0.5) / 2
    assert out == {"kl_human": round((0.5 * np.log(2) + 0.5 * np.log(2 / 3) + np.log(2)) / 2, 6),
                   "rater_agreement": 0.75, "human_ece": 0.375}


def _students(seed=0, n=24, C=5, seeds=(0, 1, 2)):
    """Raters' distributions and, per strategy and seed, probabilities nearer to or farther from them."""
    rng = np.random.default_rng(seed)
    human = rng.dirichlet(np.ones(C), size=n)
    noise = {"none": 3.0, "single_a": 1.0, "single_human": 0.05, "average": 0.5, "weighted": 2.0}
    probs = {}
    for s, scale in noise.items():
        probs[s] = {}
        for k in seeds:
            z = np.log(human) + scale * rng.normal(size=(n, C))
            probs[s][str(k)] = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return human, probs


# As analysis.run labels them: the human teacher's own student is the reference, not a single-teacher contender.
KINDS = {"none": "baseline", "single_a": "single", "single_human": "reference", "average": "multi", "weighted": "multi"}


def test_paired_kl_matches_a_brute_force_resample_loop():
    human, probs = _students()
    groups = [f"g{i // 3}" for i in range(len(human))]
    plan = V.make_plan(groups, 3)
    res = H.paired_kl(human, probs["average"], probs["single_a"], plan)
    kl = {s: {k: entropy(human.T, p.T) for k, p in by.items()} for s, by in probs.items()}  # scipy: Σ h log(h / q)
    seeds = list(probs["average"])
    assert res["diff"] == pytest.approx(np.mean([kl["average"][k].mean() - kl["single_a"][k].mean() for k in seeds]),
                                        abs=1e-6)
    codes = stats.factorize(groups)
    boot = []
    for r in range(plan.n_resamples):  # expand the counts into explicit example and seed lists
        idx = np.concatenate([np.flatnonzero(codes == g) for g in range(plan.n_groups)
                              for _ in range(int(plan.group_counts[r, g]))])
        drawn = [seeds[s] for s in range(3) for _ in range(int(plan.V[r, s]))]
        boot.append(np.mean([(kl["average"][k][idx] - kl["single_a"][k][idx]).mean() for k in drawn]))
    boot = np.array(boot)
    low, high = stats.percentile_interval(boot)
    assert (res["ci95_low"], res["ci95_high"]) == (pytest.approx(low, abs=1e-6), pytest.approx(high, abs=1e-6))
    assert res["prob_closer"] == pytest.approx(((boot < 0).sum() + 0.5 * (boot == 0).sum()) / len(boot), abs=1e-6)
    assert res["n_seeds"] == 3 and res["n_groups"] == 8 and res["n_resamples"] == stats.N_RESAMPLES
    assert H.closer_verdict(res) == ("multi closer" if high < 0 else "single closer" if low > 0 else H.NO_DIFFERENCE)


def test_closer_verdict_names_a_side_only_when_the_interval_excludes_0():
    assert H.closer_verdict({"diff": -0.2, "ci95_low": -0.3, "ci95_high": -0.1}) == "multi closer"
    assert H.closer_verdict({"diff": 0.2, "ci95_low": 0.1, "ci95_high": 0.3}) == "single closer"
    assert H.closer_verdict({"diff": -0.2, "ci95_low": -0.3, "ci95_high": 0.1}) == H.NO_DIFFERENCE
    assert H.closer_verdict({"diff": -0.2, "ci95_low": None, "ci95_high": None}) == "no interval"


def test_student_scores_intervals_match_brute_force():
    human, probs = _students(seed=1)
    groups = [f"g{i // 2}" for i in range(len(human))]
    plan = V.make_plan(groups, 3)
    out = H.student_scores(human, probs["single_a"], plan)
    by = probs["single_a"]
    assert out["kl_human"]["point"] == pytest.approx(np.mean([entropy(human.T, p.T).mean() for p in by.values()]), abs=1e-6)
    assert out["rater_agreement"]["point"] == pytest.approx(
        np.mean([human[np.arange(len(human)), p.argmax(1)].mean() for p in by.values()]), abs=1e-6)
    assert out["human_ece"]["point"] == pytest.approx(np.mean([H.human_ece(human, p) for p in by.values()]), abs=1e-6)
    codes, seeds, boot = stats.factorize(groups), list(by), []
    for r in range(plan.n_resamples):
        idx = np.concatenate([np.flatnonzero(codes == g) for g in range(plan.n_groups)
                              for _ in range(int(plan.group_counts[r, g]))])
        drawn = [seeds[s] for s in range(3) for _ in range(int(plan.V[r, s]))]
        boot.append(np.mean([H.human_ece(human[idx], by[k][idx]) for k in drawn]))
    low, high = stats.percentile_interval(np.array(boot))
    assert out["human_ece"]["ci95_low"] == pytest.approx(low, abs=1e-6)
    assert out["human_ece"]["ci95_high"] == pytest.approx(high, abs=1e-6)
    for score in H.SCORES:
        assert out[score]["ci95_low"] <= out[score]["point"] <= out[score]["ci95_high"]
    one = H.student_scores(human, {"0": by["0"]}, None)  # one seed: points, no interval, a note
    assert one["kl_human"]["ci95_low"] is None and one["human_ece"]["note"] == stats.NOTE_ONE_SEED


def test_fidelity_block_chooses_on_validation_and_leaves_the_human_student_out():
    human, probs = _students(seed=2)
    val_human, val_probs = _students(seed=3)
    groups = [f"g{i // 3}" for i in range(len(human))]
    teacher_probs = {"a": probs["single_a"]["0"], "human": human}
    out = H.human_fidelity({"validation": val_human, "test": human}, teacher_probs,
                           {"test": probs, "validation": val_probs}, KINDS, V.make_plan(groups, 3), ["human"])
    assert out["scores"] == ["kl_human", "rater_agreement", "human_ece"] and out["n_test"] == 24
    assert out["reference"] == ["single_human"]
    val_kl = {s: np.mean([entropy(val_human.T, p.T).mean() for p in by.values()]) for s, by in val_probs.items()}
    assert min(val_kl, key=val_kl.get) == "single_human"  # closest of all, yet the reference, not a contender
    c = out["comparison"]
    assert (c["multi"], c["single"], c["chosen_on"]) == ("average", "single_a", "validation kl_human")
    assert c["diff"] < 0 and c["verdict"] in ("multi closer", H.NO_DIFFERENCE)
    assert out["strategies"]["weighted"]["validation_kl_human"] == pytest.approx(val_kl["weighted"], abs=1e-6)
    assert out["teachers"]["human"] == {"kl_human": 0.0, "rater_agreement": round(human.max(axis=1).mean(), 6),
                                        "human_ece": 0.0}
    assert out["raters"]["mean_entropy"] == pytest.approx(entropy(human.T).mean(), abs=1e-6)
    assert out["note"] == "the multi-teacher strategies fuse the human teacher(s) human too"
    apart = H.human_fidelity({"validation": val_human, "test": human}, teacher_probs,  # distill.fused_teachers: [a]
                             {"test": probs, "validation": val_probs}, KINDS, V.make_plan(groups, 3), ["human"], ["a"])
    assert apart["note"] is None and apart["comparison"] == c
    without = H.human_fidelity({"validation": val_human, "test": human}, teacher_probs,
                               {"test": {"none": probs["none"]}, "validation": {"none": val_probs["none"]}},
                               {"none": "baseline"}, V.make_plan(groups, 3))
    assert without["comparison"] is None and without["note"] is None and without["reference"] == []
