"""Fidelity against generalisation (issue #17; Stanton et al., NeurIPS 2021, "Does knowledge distillation
really work?").

A ``<strategy>+transfer`` variant is that strategy's student distilled on train + an augmented transfer
set. :func:`transfer_block` sets every teacher-using student's test fidelity to its fused teacher (top-1
agreement, KL(fused ‖ student) at T = 1) beside its test primary metric, the mean effect of the transfer
set per variant (variant − its base strategy), and the rank correlation of fidelity with the test metric
over students. Plain numbers: no intervals (those come from elsewhere).
"""

from __future__ import annotations

import warnings

import numpy as np

from mtkd.analysis.tables import rounded
from mtkd.metrics import classification_metrics, softmax

TRANSFER, TRAIN_ONLY = "transfer", "train only"


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else rounded(a - b)


def ensemble_score(teacher_test_logits: np.ndarray, test_labels: np.ndarray, num_classes: int, primary: str) -> float:
    """The teachers' ensemble: argmax of the mean of the K teachers' softmax probabilities, scored on ``primary``."""
    probs = softmax(np.asarray(teacher_test_logits)).mean(axis=0)  # [n, C]
    # classification_metrics takes logits: log-probabilities keep the argmax (and softmax gives the mean back).
    return rounded(classification_metrics(np.log(np.clip(probs, 1e-12, 1.0)), test_labels, num_classes)[primary])


def spearman(x: list, y: list) -> dict:
    """Spearman's rho (scipy) of ``x`` and ``y`` over the pairs with both values; rho None under 3 pairs or
    for a constant input."""
    from scipy.stats import spearmanr

    pairs = [(a, b) for a, b in zip(x, y) if a is not None and b is not None]
    rho = None
    if len(pairs) >= 3:
        with warnings.catch_warnings():  # a constant input: a warning and nan, reported as None
            warnings.simplefilter("ignore")
            rho = rounded(spearmanr([a for a, _ in pairs], [b for _, b in pairs]).statistic)
    return {"rho": rho, "n": len(pairs)}


def transfer_block(distill: dict, primary: str, teacher_test_logits: np.ndarray, test_labels: np.ndarray,
                   num_classes: int) -> dict | None:
    """The summary's ``transfer`` block of one task, or None when no strategy of ``distill`` (strategy → its
    metrics block for this task) is a ``+transfer`` variant.

    ``points``: every teacher-using student (strategy × seed; those without fidelity, e.g. ``none``, are left
    out) with its test primary metric and its test agreement and KL with the fused teacher; ``ensemble``: the
    teachers' ensemble's test primary metric; ``pairs``: per variant whose base strategy is in the run, the
    mean over seeds of variant − base; ``spearman``: rank correlation of agreement and test metric over points.
    """
    from mtkd.fusion import transfer_base  # imports torch: only when a task is analysed

    if not any(transfer_base(s) is not None for s in distill):
        return None
    points = []
    for strategy, block in distill.items():
        base = transfer_base(strategy)
        for seed, run in block.get("seeds", {}).items():
            fused = (run.get("fidelity") or {}).get("fused")
            if fused is None:
                continue
            points.append({"strategy": strategy, "base": base or strategy,
                           "setting": TRAIN_ONLY if base is None else TRANSFER, "seed": seed,
                           "test": rounded(run["test"][primary]), "agreement_fused": rounded(fused["agreement"]),
                           "kl_fused": rounded(fused["kl"])})

    def means(strategy: str) -> dict | None:
        own = [p for p in points if p["strategy"] == strategy]
        return {k: _mean([p[k] for p in own]) for k in ("test", "agreement_fused", "kl_fused")} if own else None

    pairs = []
    for variant in distill:
        base = transfer_base(variant)
        if base is None or base not in distill or (v := means(variant)) is None or (b := means(base)) is None:
            continue
        pairs.append({"variant": variant, "base": base, "test_diff": _diff(v["test"], b["test"]),
                      "agreement_diff": _diff(v["agreement_fused"], b["agreement_fused"]),
                      "kl_diff": _diff(v["kl_fused"], b["kl_fused"])})
    return {"points": points,
            "ensemble": {"test": ensemble_score(teacher_test_logits, test_labels, num_classes, primary)},
            "pairs": pairs,
            "spearman": spearman([p["agreement_fused"] for p in points], [p["test"] for p in points])}


def paired_over_seeds(diffs: list[float]) -> dict:
    """Mean of per-seed differences with the seed summaries' t interval (:func:`mtkd.metrics.summarize`,
    uncut: a difference has no range); no interval under 2 seeds."""
    from mtkd.metrics import summarize

    s = summarize(diffs)
    return {"mean": s["mean"], "low": s["ci95_low"], "high": s["ci95_high"], "n": len(diffs)}


def longer_training(short: dict, long: dict) -> list[dict]:
    """What training longer moved, per strategy present in both runs' ``transfer`` blocks.

    ``short``/``long``: the summary ``transfer`` blocks of two runs that differ in the students' epochs
    only (same teachers, data, strategies and seeds). Each student is paired with its own seed's student of
    the other run; per strategy, the mean over seeds of long − short in test agreement and KL with the fused
    teacher and in the test primary metric, each with a t interval over those seeds (the test examples are
    the same in both runs and are not resampled).
    """
    keyed = {(p["strategy"], p["seed"]): p for p in short["points"]}
    rows: dict[str, dict[str, list[float]]] = {}
    for p in long["points"]:
        q = keyed.get((p["strategy"], p["seed"]))
        if q is None:
            continue
        row = rows.setdefault(p["strategy"], {"agreement_fused": [], "kl_fused": [], "test": []})
        for key in row:
            row[key].append(p[key] - q[key])
    from mtkd.fusion import transfer_base

    return [{"strategy": s, "setting": TRAIN_ONLY if transfer_base(s) is None else TRANSFER,
             **{key: paired_over_seeds(values) for key, values in d.items()}} for s, d in rows.items()]
