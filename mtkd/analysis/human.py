"""Fidelity to the human label distribution (issue #16), for tasks whose examples carry rater data.

Each test example i has its raters' distribution h_i over the C classes (the share of its raters
whose own rating falls in each class, ``human_*`` columns of the prepared split); a model gives
probabilities q_i (softmax of its logits at T = 1) and a prediction ŷ_i = argmax q_i. Three scores,
each a mean over test examples (students: then over seeds):

- ``kl_human``: KL(h_i ‖ q_i) = Σ_c h_ic log(h_ic / q_ic) in nats, 0 · log 0 = 0 (:func:`kl_human`);
  0 only for a model that reproduces the raters' distribution.
- ``rater_agreement``: h_i[ŷ_i], the chance that a randomly drawn rater chose the predicted class
  (:func:`rater_agreement`); at most the mean of max_c h_ic, reached by predicting the raters' mode.
- ``human_ece``: calibration against human frequencies, the 15-bin ECE (Guo et al.; equal-width bins
  (lo, hi] of conf_i = max_c q_ic) with "the prediction is correct" replaced by h_i[ŷ_i]:
  Σ_b |B|/n · |mean_B h_i[ŷ_i] − mean_B conf_i| (:func:`human_ece`); 0 when the model's confidence in
  its top class matches the share of raters who chose it, bin by bin.

Students' intervals come from the task's one bootstrap plan (seeds × test groups, :mod:`mtkd.analysis.verdict`);
the headline of this analysis is the paired difference of KL between the best multi-teacher and the
best single-teacher student, both chosen on validation KL (the human teacher's own single student is
the reference, left out of that choice). Pure functions; nothing here reads or writes a file.
"""

from __future__ import annotations

import numpy as np

from mtkd import stats
from mtkd.analysis.tables import rounded

SCORES = ("kl_human", "rater_agreement", "human_ece")
N_BINS = 15
NO_DIFFERENCE = "no detectable difference"


def kl_human(human: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Per-example KL(human ‖ model) in nats, 0 · log 0 = 0; model probabilities clipped at 1e-12."""
    h = np.asarray(human, dtype=np.float64)
    q = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    return np.where(h > 0, h * (np.log(np.where(h > 0, h, 1.0)) - np.log(q)), 0.0).sum(axis=1)


def rater_agreement(human: np.ndarray, preds: np.ndarray) -> np.ndarray:
    """Per example, the share of its raters who chose the predicted class: h[i, ŷ_i]."""
    h = np.asarray(human, dtype=np.float64)
    return h[np.arange(h.shape[0]), np.asarray(preds, dtype=np.int64)]


def human_calibration_columns(human: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """Per example, h[i, ŷ_i] − conf_i in the column of its confidence bin: [n, n_bins].

    The ECE is the sum over bins of |column sum| / n, so group sums of these columns under a
    resample's weights give that resample's :func:`human_ece` (as ``mtkd.stats`` does for the ECE).
    """
    q = np.asarray(probs, dtype=np.float64)
    conf = q.max(axis=1)
    bins = np.clip(np.ceil(conf * n_bins) - 1, 0, n_bins - 1).astype(np.int64)  # bins are (lo, hi]
    cols = np.zeros((q.shape[0], n_bins))
    cols[np.arange(q.shape[0]), bins] = rater_agreement(human, q.argmax(axis=1)) - conf
    return cols


def human_ece(human: np.ndarray, probs: np.ndarray, n_bins: int = N_BINS) -> float:
    """Σ_b |B|/n · |mean_B h[i, ŷ_i] − mean_B conf_i| over ``n_bins`` equal-width confidence bins."""
    cols = human_calibration_columns(human, probs, n_bins)
    return float(np.abs(cols.sum(axis=0)).sum() / cols.shape[0])


def human_scores(human: np.ndarray, probs: np.ndarray) -> dict[str, float]:
    """The three scores of one model (a teacher: one set of probabilities, no seeds)."""
    return {"kl_human": rounded(kl_human(human, probs).mean()),
            "rater_agreement": rounded(rater_agreement(human, np.asarray(probs).argmax(axis=1)).mean()),
            "human_ece": rounded(human_ece(human, probs))}


def resampled_human_ece(human: np.ndarray, probs: dict, plan: stats.Plan, n_bins: int = N_BINS) -> np.ndarray:
    """Bootstrap distribution [R] of the seed-averaged :func:`human_ece` (as ``stats.resampled_ece``)."""
    S = len(probs)
    cols = np.concatenate([human_calibration_columns(human, probs[s], n_bins) for s in probs], axis=1)
    binned = plan.group_counts @ stats._group_sums(plan.group_codes, plan.n_groups, cols)  # [R, S·n_bins]
    sizes = plan.group_counts @ np.bincount(plan.group_codes, minlength=plan.n_groups).astype(np.float64)
    per_seed = np.abs(binned.reshape(plan.n_resamples, S, n_bins)).sum(axis=2) / sizes[:, None]
    return stats.seed_mean(per_seed, plan)


def _interval(d: dict) -> dict:
    return {k: (rounded(v) if isinstance(v, float) else v) for k, v in d.items()}


def student_scores(human: np.ndarray, probs: dict, plan: stats.Plan | None) -> dict:
    """Per score, the mean over seeds with its bootstrap interval (``point``, ``ci95_low``, ``ci95_high``, …)."""
    per_example = {"kl_human": {s: kl_human(human, p) for s, p in probs.items()},
                   "rater_agreement": {s: rater_agreement(human, p.argmax(axis=1)) for s, p in probs.items()}}
    ece_point = float(np.mean([human_ece(human, p) for p in probs.values()]))
    if plan is None:
        note = stats._degenerate_note(len(probs), 1)
        out = {k: {"point": float(np.mean([v.mean() for v in by.values()])), "ci95_low": None, "ci95_high": None,
                   "note": note} for k, by in per_example.items()}
        out["human_ece"] = {"point": ece_point, "ci95_low": None, "ci95_high": None, "note": note}
    else:
        out = {k: stats.mean_interval(by, plan) for k, by in per_example.items()}
        out["human_ece"] = stats._positive_interval(ece_point, resampled_human_ece(human, probs, plan), plan)
    return {k: _interval(out[k]) for k in SCORES}


def paired_kl(human: np.ndarray, probs_a: dict, probs_b: dict, plan: stats.Plan | None) -> dict:
    """KL(human ‖ A) − KL(human ‖ B), paired by seed, with its interval; negative: A is closer to the raters.

    ``prob_closer`` is P(A closer) = the share of resamples with a negative difference (ties half).
    """
    diff = {s: kl_human(human, probs_a[s]) - kl_human(human, probs_b[s]) for s in probs_a}
    out = {"diff": float(np.mean([d.mean() for d in diff.values()])), "ci95_low": None, "ci95_high": None,
           "p_value": None, "prob_closer": None, "n_seeds": len(diff), "n_groups": None, "n_resamples": None,
           "note": stats._degenerate_note(len(diff), 1) if plan is None else None}
    if plan is not None:
        boot = stats.resampled_mean(diff, plan)
        low, high, note = stats._interval_fields(boot)
        out.update(ci95_low=low, ci95_high=high, p_value=stats.bootstrap_p_value(boot),
                   prob_closer=stats.prob_improvement(-boot), n_groups=plan.n_groups, n_resamples=plan.n_resamples,
                   note=note)
    return _interval(out)


def closer_verdict(result: dict) -> str:
    """What the interval of :func:`paired_kl` says: a side only when it excludes 0."""
    if result["ci95_low"] is None:
        return "no interval"
    if result["ci95_low"] <= 0 <= result["ci95_high"]:
        return NO_DIFFERENCE
    return "multi closer" if result["diff"] < 0 else "single closer"


def _pick(validation_kl: dict[str, float], candidates: list[str]) -> str | None:
    """The candidate with the lowest validation KL (ties: the first in params order)."""
    scored = [s for s in candidates if validation_kl.get(s) is not None]
    return min(scored, key=lambda s: (validation_kl[s], scored.index(s))) if scored else None


def _mean_entropy(human: np.ndarray) -> float:
    h = np.asarray(human, dtype=np.float64)
    return float(-(h * np.log(np.where(h > 0, h, 1.0))).sum(axis=1).mean())


def human_fidelity(human: dict[str, np.ndarray], teacher_probs: dict[str, np.ndarray],
                   student_probs: dict[str, dict[str, dict]], kinds: dict[str, str], plan: stats.Plan | None,
                   human_teachers: list[str] = (), fused_teachers: list[str] | None = None) -> dict:
    """``metrics/summary.json``'s ``human`` block of one task.

    ``human``: split → raters' distribution [n, C] (validation, test); ``teacher_probs``: teacher →
    test probabilities; ``student_probs``: split → strategy → seed → probabilities; ``kinds``:
    strategy → baseline | single | multi | reference (the student of a ``human`` teacher, never a
    contender); ``human_teachers``: teachers of kind ``human``; ``fused_teachers``: those the
    multi-teacher strategies fuse (None: every teacher).
    """
    test, val = human["test"], human["validation"]
    reference = [s for s, k in kinds.items() if k == "reference"]
    validation_kl = {s: rounded(np.mean([kl_human(val, p).mean() for p in by.values()]))
                     for s, by in student_probs["validation"].items()}
    strategies = {}
    for s, by in student_probs["test"].items():
        strategies[s] = {"kind": kinds[s], "validation_kl_human": validation_kl.get(s), **student_scores(test, by, plan)}
    best_multi = _pick(validation_kl, [s for s, k in kinds.items() if k == "multi"])
    best_single = _pick(validation_kl, [s for s, k in kinds.items() if k == "single" and s not in reference])
    comparison = None
    if best_multi and best_single:
        res = paired_kl(test, student_probs["test"][best_multi], student_probs["test"][best_single], plan)
        comparison = {"multi": best_multi, "single": best_single, "chosen_on": "validation kl_human", **res,
                      "verdict": closer_verdict(res)}
    fused = [t for t in human_teachers if any(k == "multi" for k in kinds.values())
             and (fused_teachers is None or t in fused_teachers)]
    return {
        "scores": list(SCORES),
        "n_test": int(test.shape[0]),
        "raters": {"mean_entropy": rounded(_mean_entropy(test)),
                   "mean_max_share": rounded(np.asarray(test).max(axis=1).mean())},
        "teachers": {t: human_scores(test, p) for t, p in teacher_probs.items()},
        "strategies": strategies,
        "reference": reference,
        "comparison": comparison,
        "note": (f"the multi-teacher strategies fuse the human teacher(s) {', '.join(fused)} too" if fused else None),
    }
