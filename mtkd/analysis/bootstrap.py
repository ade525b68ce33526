"""Paired bootstrap over test examples: is the best multi-teacher student better than the best single one?

Both students are scored on the same resampled test examples; the RNG is seeded, so a rerun
gives the same interval.
"""

from __future__ import annotations

import numpy as np

from mtkd.analysis.tables import rounded
from mtkd.errors import MtkdError
from mtkd.metrics import softmax

N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
NO_DIFFERENCE = "no detectable difference"


def verdict(low: float, high: float) -> str:
    if low <= 0.0 <= high:
        return NO_DIFFERENCE
    return "multi better" if low > 0 else "single better"


def confusion_counts(labels: np.ndarray, preds: np.ndarray, idx: np.ndarray, num_classes: int) -> np.ndarray:
    """Confusion matrices [B, C, C] (rows: label, columns: prediction) of the resamples ``idx`` [B, n]."""
    B = idx.shape[0]
    C = num_classes
    codes = labels[idx].astype(np.int64) * C + preds[idx] + (np.arange(B, dtype=np.int64) * C * C)[:, None]
    return np.bincount(codes.ravel(), minlength=B * C * C).reshape(B, C, C)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    return np.divide(num, den, out=np.zeros_like(num, dtype=np.float64), where=den != 0)


def metric_from_confusion(conf: np.ndarray, metric: str) -> np.ndarray:
    """accuracy | f1 (positive class 1, binary) | macro_f1 | mcc of each confusion matrix [B, C, C].

    Same conventions as sklearn's ``accuracy_score``, ``f1_score(zero_division=0)`` and
    ``matthews_corrcoef`` (0 when undefined).
    """
    conf = np.asarray(conf, dtype=np.float64)
    n = conf.sum(axis=(1, 2))
    tp = np.einsum("bii->bi", conf)
    true, pred = conf.sum(axis=2), conf.sum(axis=1)
    if metric == "accuracy":
        return tp.sum(axis=1) / n
    if metric == "f1":
        if conf.shape[1] != 2:
            raise MtkdError(f"primary metric f1 needs a binary task, got {conf.shape[1]} classes")
        return _safe_div(2 * tp[:, 1], true[:, 1] + pred[:, 1])
    if metric == "macro_f1":
        return _safe_div(2 * tp, true + pred).mean(axis=1)
    if metric == "mcc":
        num = tp.sum(axis=1) * n - (true * pred).sum(axis=1)
        den = np.sqrt((n**2 - (pred**2).sum(axis=1)) * (n**2 - (true**2).sum(axis=1)))
        return _safe_div(num, den)
    raise MtkdError(f"primary metric '{metric}': no bootstrap formula (known: accuracy, f1, macro_f1, mcc)")


def seed_averaged_predictions(logits_by_seed: dict[str, np.ndarray]) -> np.ndarray:
    """Argmax of the student's probabilities averaged over seeds (the seed ensemble)."""
    probs = np.mean([softmax(z) for z in logits_by_seed.values()], axis=0)
    return probs.argmax(axis=1)


def paired_bootstrap(labels: np.ndarray, preds_multi: np.ndarray, preds_single: np.ndarray, metric: str,
                     num_classes: int, n_resamples: int = N_BOOTSTRAP, seed: int = BOOTSTRAP_SEED,
                     chunk: int = 200) -> dict:
    """Multi − single on ``metric`` (pp): observed difference and 95% percentile interval."""
    labels = np.asarray(labels, dtype=np.int64)
    a, b = np.asarray(preds_multi, dtype=np.int64), np.asarray(preds_single, dtype=np.int64)
    n = len(labels)
    full = np.arange(n)[None, :]
    observed = 100.0 * float(metric_from_confusion(confusion_counts(labels, a, full, num_classes), metric)[0]
                             - metric_from_confusion(confusion_counts(labels, b, full, num_classes), metric)[0])
    rng = np.random.default_rng(seed)
    diffs = []
    for start in range(0, n_resamples, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_resamples - start), n))
        diffs.append(metric_from_confusion(confusion_counts(labels, a, idx, num_classes), metric)
                     - metric_from_confusion(confusion_counts(labels, b, idx, num_classes), metric))
    d = 100.0 * np.concatenate(diffs)
    low, high = (float(x) for x in np.percentile(d, [2.5, 97.5]))
    return {"metric": metric, "n_resamples": n_resamples, "seed": seed, "diff_pp": rounded(observed),
            "ci95_low": rounded(low), "ci95_high": rounded(high), "verdict": verdict(low, high)}
