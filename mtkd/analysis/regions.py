"""Where the teachers agree, what they did on each student error, how confident they are (SPEC §9).

Pure functions on arrays: teacher predictions are argmaxes ``[K, n]`` in the params' teacher order.
"""

from __future__ import annotations

import numpy as np

from mtkd.analysis.tables import rounded
from mtkd.metrics import confidence  # SPEC §9, shared with extract_logits

REGIONS = ("all_agree", "some_agree", "all_differ")
FAILURES = ("all_teachers_wrong", "all_teachers_right", "teachers_split")
CONFIDENCE_SPLITS = ("train", "test")
HIGH_CONFIDENCE = 0.95


def agreement_regions(teacher_preds: np.ndarray) -> np.ndarray:
    """Index into REGIONS per example from teacher argmaxes [K, n]: 0 all agree, 1 some agree, 2 all differ."""
    tp = np.sort(np.asarray(teacher_preds), axis=0)
    K = tp.shape[0]
    distinct = 1 + (np.diff(tp, axis=0) != 0).sum(axis=0)
    return np.where(distinct == 1, 0, np.where(distinct == K, 2, 1))


def region_accuracy(regions: np.ndarray, correct: np.ndarray) -> dict[str, float | None]:
    return {name: (rounded(correct[regions == i].mean()) if (regions == i).any() else None)
            for i, name in enumerate(REGIONS)}


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return rounded(np.mean(values)) if values else None


def agreement_analysis(labels: np.ndarray, teacher_preds: np.ndarray, teacher_names: list[str],
                       student_preds: dict[str, dict[str, np.ndarray]]) -> dict:
    """Share of test examples per region, and teacher / student accuracy per region (students: mean over seeds)."""
    regions = agreement_regions(teacher_preds)
    n = len(labels)
    counts = {name: int((regions == i).sum()) for i, name in enumerate(REGIONS)}
    disagree = regions != 0
    student_acc, student_disagree = {}, {}
    for strategy, by_seed in student_preds.items():
        per_seed = [region_accuracy(regions, p == labels) for p in by_seed.values()]
        student_acc[strategy] = {r: _mean_or_none([s[r] for s in per_seed]) for r in REGIONS}
        student_disagree[strategy] = (_mean_or_none([float((p == labels)[disagree].mean()) for p in by_seed.values()])
                                      if disagree.any() else None)
    return {
        "split": "test",
        "n": n,
        "count": counts,
        "share": {r: rounded(c / n) for r, c in counts.items()},
        "teacher_accuracy": {t: region_accuracy(regions, teacher_preds[k] == labels) for k, t in enumerate(teacher_names)},
        "student_accuracy": student_acc,
        "student_accuracy_when_teachers_disagree": student_disagree,
    }


def failure_category(labels: np.ndarray, teacher_preds: np.ndarray) -> np.ndarray:
    """Index into FAILURES per example: 0 every teacher wrong, 1 every teacher right, 2 teachers split."""
    right = np.asarray(teacher_preds) == labels[None, :]
    return np.where(~right.any(axis=0), 0, np.where(right.all(axis=0), 1, 2))


def failure_analysis(labels: np.ndarray, teacher_preds: np.ndarray, preds_by_seed: dict[str, np.ndarray]) -> dict:
    """Student errors of one strategy by what the teachers did; counts are means over seeds, shares pooled."""
    cat = failure_category(labels, teacher_preds)
    counts = np.array([np.bincount(cat[p != labels], minlength=len(FAILURES)) for p in preds_by_seed.values()])
    total = counts.sum()
    return {
        "n_seeds": len(preds_by_seed),
        "errors_per_seed": rounded(counts.sum(axis=1).mean()),
        "error_rate": rounded(counts.sum(axis=1).mean() / len(labels)),
        "count_per_seed": {c: rounded(counts[:, i].mean()) for i, c in enumerate(FAILURES)},
        "share": {c: (rounded(counts[:, i].sum() / total) if total else None) for i, c in enumerate(FAILURES)},
    }


def base_failure_shares(labels: np.ndarray, teacher_preds: np.ndarray) -> dict[str, float]:
    cat = failure_category(labels, teacher_preds)
    return {c: rounded((cat == i).mean()) for i, c in enumerate(FAILURES)}


def teacher_confidence(teacher_names: list[str], logits: dict[str, np.ndarray]) -> dict:
    """Per teacher and split (``logits``: split → [K, n, C]), plus the mean over teachers."""
    out = {t: {s: confidence(z[k]) for s, z in logits.items()} for k, t in enumerate(teacher_names)}
    out["all_teachers"] = {s: {m: rounded(np.mean([out[t][s][m] for t in teacher_names])) for m in out[teacher_names[0]][s]}
                           for s in logits}
    return out
