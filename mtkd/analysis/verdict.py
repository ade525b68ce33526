"""The verdict (SPEC §8–9, issue #12): every comparison the question is about, with intervals
that respect how the test set is grouped and how many seeds there are.

One hierarchical bootstrap plan per task (seeds and test groups drawn with replacement,
:mod:`mtkd.stats`) scores every student on the same resamples, so the comparisons pair by
seed (same seed = same initialisation and batch order for every strategy) and by resample.
Pure functions: arrays and dicts in, JSON-ready dicts out.
"""

from __future__ import annotations

import numpy as np

from mtkd import stats
from mtkd.analysis.tables import rounded

NO_DIFFERENCE = "no detectable difference"
NO_INTERVAL = "no interval"


def comparison_pairs(kinds: dict[str, str]) -> list[tuple[str, str]]:
    """(A, B) pairs the question is about: each multi vs each single, then each of them (and a reference
    teacher's student) vs ``none``, then each ``+transfer`` student vs its strategy on train alone."""
    multi = [s for s, k in kinds.items() if k == "multi"]
    single = [s for s, k in kinds.items() if k == "single"]
    reference = [s for s, k in kinds.items() if k == "reference"]
    baseline = [s for s, k in kinds.items() if k == "baseline"]
    pairs = [(a, b) for a in multi for b in single]
    pairs += [(a, b) for b in baseline for a in multi + single + reference]
    from mtkd.fusion import transfer_base  # imports torch: only where students are compared

    # a `<strategy>+transfer` student against the same strategy's on train alone (issue #17)
    pairs += [(a, base) for a in kinds if (base := transfer_base(a)) is not None and base in kinds]
    return pairs


def comparison_key(a: str, b: str) -> str:
    """The stable key of a comparison in ``metrics/comparisons.json``: ``<A>_vs_<B>``."""
    return f"{a}_vs_{b}"


def verdict_of(result: dict) -> str:
    """What the Holm-adjusted interval says: a winner only when it excludes 0."""
    if result.get("reject_holm") is None:
        return NO_INTERVAL
    if not result["reject_holm"]:
        return NO_DIFFERENCE
    return "A better" if result["diff"] > 0 else "B better"


def make_plan(groups, n_seeds: int) -> stats.Plan | None:
    """The task's one resampling plan; None when seeds or groups are too few to resample."""
    n_groups = len(set(groups))
    if n_seeds < 2 or n_groups < 2:
        return None
    return stats.resample_plan(list(groups), n_seeds)


def _rounded(d: dict) -> dict:
    """Floats as metrics/ records them (6 decimals); everything else as is."""
    return {k: (rounded(v) if isinstance(v, float) else v) for k, v in d.items()}




def compare_students(labels: np.ndarray, groups, preds: dict[str, dict], kinds: dict[str, str], metric: str,
                     num_classes: int, plan: stats.Plan | None) -> dict:
    """Every comparison of :func:`comparison_pairs`: paired difference, Holm-adjusted across the family.

    ``preds``: strategy → seed → predicted labels [n] on test. Differences are fractions of the
    metric (×100 for pp). Keys: :func:`comparison_key`; each entry names ``a`` and ``b``.
    """
    raw = {}
    for a, b in comparison_pairs(kinds):
        raw[comparison_key(a, b)] = {"a": a, "b": b, **stats.paired_difference(
            labels, groups, preds[a], preds[b], metric, plan, num_classes=num_classes)}
    adjusted = stats.adjust_family(raw)
    return {key: {**_rounded(stats.without_bootstrap(res)), "verdict": verdict_of(res)} for key, res in adjusted.items()}


def strategy_interval(labels: np.ndarray, preds_by_seed: dict, metric: str, num_classes: int,
                      plan: stats.Plan | None) -> dict:
    """Seed-mean test metric with its hierarchical-bootstrap interval (None with one seed or group)."""
    stack = np.stack([np.asarray(p, dtype=np.int64) for p in preds_by_seed.values()])
    point = float(stats.full_metric(labels, stack, metric, num_classes).mean())
    if plan is None:
        return {"point": rounded(point), "ci95_low": None, "ci95_high": None,
                "note": stats._degenerate_note(len(preds_by_seed), 1)}
    low, high, note = stats._interval_fields(stats.resampled_metric(labels, stack, metric, plan, num_classes))
    return _rounded({"point": point, "ci95_low": low, "ci95_high": high, "note": note})


def gap_intervals(labels: np.ndarray, groups, preds: dict[str, dict], teacher_preds: np.ndarray | None,
                  metric: str, num_classes: int, plan: stats.Plan | None) -> dict:
    """Gap closed (student − none) / (teacher − none) of every student with a teacher, with its interval."""
    if teacher_preds is None or "none" not in preds:
        return {}
    out = {}
    for s in preds:
        if s == "none":
            continue
        res = stats.gap_closed(labels, groups, preds[s], preds["none"], teacher_preds, metric, plan,
                               num_classes=num_classes)
        out[s] = _rounded(res)
    return out


def positive_intervals(labels: np.ndarray, probs: dict[str, dict], fused: dict[str, dict],
                       plan: stats.Plan | None) -> dict:
    """Per strategy: test ECE and KL(fused teacher ‖ student) at T = 1, bootstrap intervals (never below 0)."""
    out = {}
    for s, by_seed in probs.items():
        row = {}
        if plan is not None:
            row["ece"] = _rounded(stats.ece_interval(by_seed, labels, plan))
            if s in fused:
                kl = {seed: _kl(fused[s][seed], by_seed[seed]) for seed in by_seed}
                row["kl_fused"] = _rounded(stats.mean_interval(kl, plan))
        else:
            row["ece"] = {"point": None, "ci95_low": None, "ci95_high": None,
                          "note": stats._degenerate_note(len(by_seed), 1)}
        out[s] = row
    return out


def _kl(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Per-example KL(p ‖ q) in nats (p, q probabilities [n, C])."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-12, 1.0)
    q = np.clip(np.asarray(q, dtype=np.float64), 1e-12, 1.0)
    return (p * (np.log(p) - np.log(q))).sum(axis=1)


def selection(labels_val: np.ndarray, groups_val, preds_val: dict[str, dict], kinds: dict[str, str],
              metric: str, num_classes: int) -> dict | None:
    """How often resampled validation groups and seeds pick the same best multi and best single."""
    multi = [s for s, k in kinds.items() if k == "multi"]
    single = [s for s, k in kinds.items() if k == "single"]
    if not multi or not single:
        return None
    res = stats.selection_stability(labels_val, groups_val, preds_val, multi, single, metric, num_classes=num_classes)
    return _rounded({k: ({n: rounded(v) for n, v in val.items()} if isinstance(val, dict) else val)
                     for k, val in res.items()})


def headline(comparisons: dict, best_multi: str | None, best_single: str | None, stability: dict | None) -> dict | None:
    """Best multi vs best single (both chosen on validation): its comparison and how stable the choice is."""
    if not best_multi or not best_single:
        return None
    res = comparisons[comparison_key(best_multi, best_single)]
    verdict = {"A better": "multi better", "B better": "single better"}.get(res["verdict"], res["verdict"])
    return {"multi": best_multi, "single": best_single, **{k: v for k, v in res.items() if k not in ("a", "b")},
            "verdict": verdict, "selection": stability}
