"""Task metrics (through the local `evaluate` module), calibration and fidelity (SPEC §8)."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np

MODULE_DIR = Path(__file__).parent / "evaluate_metrics" / "classification"


@functools.lru_cache(maxsize=1)
def _classification_metric():
    import evaluate

    return evaluate.load(str(MODULE_DIR))


def softmax(z: np.ndarray, T: float = 1.0) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64) / T
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """ECE (Guo et al. 2017), torchmetrics' implementation: top-1 confidence, equal-width bins, L1."""
    import torch
    from torchmetrics.functional.classification import multiclass_calibration_error

    probs = np.array(probs, dtype=np.float32)  # a writable copy: torch refuses read-only views
    return float(multiclass_calibration_error(torch.from_numpy(probs), torch.from_numpy(np.array(labels, dtype=np.int64)),
                                              num_classes=probs.shape[1], n_bins=n_bins, norm="l1"))


def expected_calibration_error_reference(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """The same ECE written out (Σ_b |B|/n · |acc(B) − conf(B)|): a cross-check of the library in tests."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins) - 1, 0, n_bins - 1).astype(int)  # bins are (lo, hi]
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - conf[mask].mean())
    return float(ece)


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict[str, float]:
    preds = np.asarray(logits).argmax(axis=1)
    out = _classification_metric().compute(predictions=preds.tolist(), references=np.asarray(labels).tolist(),
                                           num_classes=num_classes)
    out["ece"] = expected_calibration_error(softmax(logits), np.asarray(labels))
    return {k: round(float(v), 6) for k, v in out.items()}


def fidelity(student_logits: np.ndarray, teacher_probs: np.ndarray) -> dict[str, float]:
    """Stanton et al.: top-1 agreement and mean KL(teacher ‖ student) at T=1."""
    q = softmax(student_logits)
    p = np.clip(teacher_probs, 1e-12, 1.0)
    kl = (p * (np.log(p) - np.log(np.clip(q, 1e-12, 1.0)))).sum(axis=1)
    return {"agreement": round(float((q.argmax(1) == p.argmax(1)).mean()), 6), "kl": round(float(kl.mean()), 6)}


def confidence(logits: np.ndarray, threshold: float = 0.95) -> dict[str, float]:
    """Teacher confidence (SPEC §9): mean max probability, mean entropy (nats), share with max probability > ``threshold``."""
    p = softmax(logits)
    top = p.max(axis=1)
    entropy = -(p * np.log(np.where(p > 0, p, 1.0))).sum(axis=1)
    return {"mean_max_prob": round(float(top.mean()), 6), "mean_entropy": round(float(entropy.mean()), 6),
            "high_confidence_share": round(float((top > threshold).mean()), 6)}


# Where each metric can lie: a seed interval is cut to it (a mean KL is never below 0).
METRIC_RANGE = {"accuracy": (0.0, 1.0), "macro_f1": (0.0, 1.0), "f1": (0.0, 1.0), "mcc": (-1.0, 1.0),
                "ece": (0.0, 1.0), "agreement": (0.0, 1.0), "kl": (0.0, math.inf)}


def summarize(values: list[float], metric: str | None = None) -> dict[str, float | None]:
    """Mean, standard deviation and a t-based 95% interval over seeds.

    With one seed there is no spread to measure: std and interval are None, never zero-width.
    The interval is cut to ``metric``'s range (:data:`METRIC_RANGE`). The verdict's intervals,
    which also resample test groups, are the bootstrap ones in ``metrics/comparisons.json``.
    """
    from scipy import stats

    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean())
    if len(a) < 2:
        return {"mean": round(mean, 6), "std": None, "ci95_low": None, "ci95_high": None}
    std = float(a.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(a) - 1) * std / math.sqrt(len(a)))
    lo, hi = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    return {"mean": round(mean, 6), "std": round(std, 6), "ci95_low": round(max(mean - half, lo), 6),
            "ci95_high": round(min(mean + half, hi), 6)}
