"""Inference for comparisons between students (SPEC §8–9): a paired, hierarchical bootstrap.

Students pair by seed (seed s = same initialisation and batch order for every strategy), and
the test split is made of whole groups (rt: movies), so one bootstrap resample draws the seeds
with replacement *and* the test groups with replacement; every method is scored on the same
draw. Everything here is a pure function: numpy arrays in, plain Python floats (or None) out.

Conventions shared by every function:

* Metrics are fractions (not pp): ``accuracy``, ``f1`` (F1 of class 1, binary tasks only),
  ``macro_f1`` (mean over all ``num_classes`` classes, 0 for a class absent from both labels
  and predictions: sklearn ``f1_score(labels=range(C), average="macro", zero_division=0)``),
  ``mcc`` (sklearn's multiclass Matthews formula, 0 when undefined).
* Intervals are bootstrap percentile intervals taken as order statistics: at level 1 − a the
  ``j`` lowest and ``j`` highest resamples are dropped, ``j`` the largest count with 2j/R ≤ a.
  With that choice an interval excludes 0 exactly when the bootstrap p-value is ≤ a.
* Degenerate designs (one seed, one group) give no interval: the fields are None and
  ``note`` says why. A zero-width interval is never reported either (None and a note).
* Per-seed inputs are dicts ``{seed: array}``; the seeds of the first dict fix the order in
  which plan columns map to seeds, and every other dict must hold the same seeds.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

METRICS = ("accuracy", "f1", "macro_f1", "mcc")
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0
ALPHA = 0.05
TIE = 1e-12  # |difference| below this counts as a tie: metrics are ratios of counts, smaller is rounding
ZERO_GAP = 1e-6  # |teacher − none| below this: gap closed is undefined (as mtkd.analysis.ZERO_GAP)

NOTE_ONE_SEED = "one seed: no interval (seed variation cannot be estimated)"
NOTE_ONE_GROUP = "one test group: no interval (group variation cannot be estimated)"
NOTE_ZERO_WIDTH = "zero-width interval (every resample gives the same value): no interval"


# ---------------------------------------------------------------------------------------------
# Resampling plan


@dataclass(frozen=True)
class Plan:
    """Which seeds and which groups each bootstrap resample draws, as counts.

    ``group_counts[r, g]`` is how often resample r drew group g, ``V[r, s]`` how often it drew
    seed column s; ``group_codes[i]`` is the group of example i (numbered by first occurrence).
    Counts rather than indices: a resample then acts as example weights, so every statistic is
    a matrix product instead of a loop over resamples.
    """

    group_codes: np.ndarray  # [n] int64
    group_counts: np.ndarray  # [R, G] float64 (integer-valued)
    V: np.ndarray  # [R, S] float64 (integer-valued), rows sum to S
    seed: int | None = None

    @property
    def n(self) -> int:
        return int(self.group_codes.shape[0])

    @property
    def n_groups(self) -> int:
        return int(self.group_counts.shape[1])

    @property
    def n_seeds(self) -> int:
        return int(self.V.shape[1])

    @property
    def n_resamples(self) -> int:
        return int(self.V.shape[0])

    @property
    def W(self) -> np.ndarray:
        """Example weights [R, n]: how many times each example's group was drawn."""
        return self.group_counts[:, self.group_codes]

    @classmethod
    def from_draws(cls, groups: Iterable[Hashable], seed_draws: np.ndarray, group_draws: np.ndarray,
                   seed: int | None = None) -> Plan:
        """Plan from explicit draws: ``seed_draws`` [R, S] seed columns, ``group_draws`` [R, G] group codes."""
        codes = factorize(groups)
        G = int(codes.max()) + 1 if codes.size else 0
        seed_draws = np.asarray(seed_draws, dtype=np.int64)
        group_draws = np.asarray(group_draws, dtype=np.int64)
        if group_draws.ndim != 2 or group_draws.shape[1] != G:
            raise ValueError(f"group_draws must be [R, {G}] (one draw per distinct group), got {group_draws.shape}")
        if seed_draws.ndim != 2 or seed_draws.shape[0] != group_draws.shape[0]:
            raise ValueError(f"seed_draws must be [R, S] with R = {group_draws.shape[0]}, got {seed_draws.shape}")
        if seed_draws.size and not (0 <= seed_draws.min() and seed_draws.max() < seed_draws.shape[1]):
            raise ValueError("seed_draws must be seed columns in range(S)")
        if group_draws.size and not (0 <= group_draws.min() and group_draws.max() < G):
            raise ValueError(f"group_draws must be group codes in range({G})")
        return cls(group_codes=codes, group_counts=_row_counts(group_draws, G),
                   V=_row_counts(seed_draws, seed_draws.shape[1]), seed=seed)


def factorize(groups: Iterable[Hashable]) -> np.ndarray:
    """Group code of each example, numbered by first occurrence (the same partition gives the same codes)."""
    index: dict = {}
    return np.array([index.setdefault(g, len(index)) for g in groups], dtype=np.int64)


def _row_counts(draws: np.ndarray, k: int) -> np.ndarray:
    """[R, m] draws in range(k) → [R, k] counts per row."""
    R = draws.shape[0]
    flat = (draws + (np.arange(R, dtype=np.int64) * k)[:, None]).ravel()
    return np.bincount(flat, minlength=R * k).reshape(R, k).astype(np.float64)


def resample_plan(groups: Iterable[Hashable], n_seeds: int, n_resamples: int = N_RESAMPLES,
                  seed: int = BOOTSTRAP_SEED) -> Plan:
    """Two-level bootstrap plan: per resample, S seeds and G groups drawn with replacement.

    Deterministic from ``seed``. Ungrouped tasks pass each example as its own group.
    """
    codes = factorize(groups)
    G = int(codes.max()) + 1 if codes.size else 0
    if G == 0 or n_seeds < 1 or n_resamples < 1:
        raise ValueError(f"a plan needs examples, seeds and resamples (got n={codes.size}, "
                         f"n_seeds={n_seeds}, n_resamples={n_resamples})")
    rng = np.random.default_rng(seed)
    seed_draws = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    group_draws = rng.integers(0, G, size=(n_resamples, G))
    return Plan(group_codes=codes, group_counts=_row_counts(group_draws, G),
                V=_row_counts(seed_draws, n_seeds), seed=seed)


def _check_plan(plan: Plan, groups: Iterable[Hashable] | None, n: int, n_seeds: int) -> None:
    if plan.n != n:
        raise ValueError(f"plan covers {plan.n} examples, the data has {n}")
    if plan.n_seeds != n_seeds:
        raise ValueError(f"plan draws {plan.n_seeds} seeds, the data has {n_seeds}")
    if groups is not None and not np.array_equal(factorize(groups), plan.group_codes):
        raise ValueError("plan was built for other groups than the ones given")


def _plan_for(plan: Plan | None, groups: Iterable[Hashable], n: int, n_seeds: int,
              n_resamples: int, seed: int) -> Plan:
    """The given plan (checked against the data) or a fresh one."""
    groups = list(groups)
    if plan is None:
        plan = resample_plan(groups, n_seeds, n_resamples, seed)
    _check_plan(plan, groups, n, n_seeds)
    return plan


# ---------------------------------------------------------------------------------------------
# Metrics from weighted confusion counts


def _group_sums(codes: np.ndarray, G: int, columns: np.ndarray) -> np.ndarray:
    """Sum of ``columns`` [n, k] within each group → [G, k]."""
    out = np.zeros((G, columns.shape[1]), dtype=np.float64)
    np.add.at(out, codes, columns)
    return out


def _confusion_columns(labels: np.ndarray, preds: np.ndarray, C: int) -> np.ndarray:
    """One-hot (label, prediction) cell per example and seed: [n, S·C·C]."""
    S, n = preds.shape
    cols = np.zeros((n, S * C * C), dtype=np.float64)
    cell = labels[None, :] * C + preds + (np.arange(S) * C * C)[:, None]
    cols[np.broadcast_to(np.arange(n), (S, n)).ravel(), cell.ravel()] = 1.0
    return cols


def weighted_confusion(labels: np.ndarray, preds: np.ndarray, weights: np.ndarray,
                       num_classes: int | None = None) -> np.ndarray:
    """Confusion matrices [R, S, C, C] (rows: label, columns: prediction) under example weights [R, n].

    ``preds`` is [S, n] (or [n], giving S = 1). Weighted counts equal the counts on the data
    with each example repeated ``weight`` times, which is what a bootstrap resample is.
    """
    labels, preds = _as_labels(labels), _as_preds(preds)
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    C = _num_classes(labels, [preds], num_classes)
    S = preds.shape[0]
    return (weights @ _confusion_columns(labels, preds, C)).reshape(weights.shape[0], S, C, C)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    num, den = np.broadcast_arrays(np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64))
    return np.divide(num, den, out=np.zeros(num.shape), where=den != 0)


def metric_from_confusion(conf: np.ndarray, metric: str) -> np.ndarray:
    """accuracy | f1 | macro_f1 | mcc of each confusion matrix in ``conf`` [..., C, C].

    Same values as sklearn's ``accuracy_score``, ``f1_score(zero_division=0)`` (binary: class 1;
    macro: over all C classes) and ``matthews_corrcoef`` (0 when undefined).
    """
    conf = np.asarray(conf, dtype=np.float64)
    C = conf.shape[-1]
    n = conf.sum(axis=(-2, -1))
    tp = np.diagonal(conf, axis1=-2, axis2=-1)
    true, pred = conf.sum(axis=-1), conf.sum(axis=-2)
    if metric == "accuracy":
        return _safe_div(tp.sum(axis=-1), n)
    if metric == "f1":
        if C != 2:
            raise ValueError(f"metric f1 (positive class) needs a binary task, got {C} classes")
        return _safe_div(2 * tp[..., 1], true[..., 1] + pred[..., 1])
    if metric == "macro_f1":
        return _safe_div(2 * tp, true + pred).mean(axis=-1)
    if metric == "mcc":
        num = tp.sum(axis=-1) * n - (true * pred).sum(axis=-1)
        den = np.sqrt((n**2 - (pred**2).sum(axis=-1)) * (n**2 - (true**2).sum(axis=-1)))
        return _safe_div(num, den)
    raise ValueError(f"metric '{metric}': no formula (known: {', '.join(METRICS)})")


def per_seed_resampled_metric(labels: np.ndarray, preds: np.ndarray, metric: str, plan: Plan,
                              num_classes: int | None = None) -> np.ndarray:
    """Metric [R, S] of each seed column on each resample's examples (seed draws not applied yet)."""
    labels, preds = _as_labels(labels), _as_preds(preds)
    C = _num_classes(labels, [preds], num_classes)
    S = preds.shape[0]
    cells = _group_sums(plan.group_codes, plan.n_groups, _confusion_columns(labels, preds, C))
    conf = (plan.group_counts @ cells).reshape(plan.n_resamples, S, C, C)
    return metric_from_confusion(conf, metric)


def seed_mean(per_seed: np.ndarray, plan: Plan) -> np.ndarray:
    """Mean over each resample's drawn seeds (a seed drawn twice counts twice): [R, S] → [R]."""
    return (plan.V * per_seed).sum(axis=1) / plan.V.sum(axis=1)


def resampled_metric(labels: np.ndarray, preds: np.ndarray, metric: str, plan: Plan,
                     num_classes: int | None = None) -> np.ndarray:
    """Bootstrap distribution [R] of the seed-averaged metric: resampled groups, then resampled seeds."""
    return seed_mean(per_seed_resampled_metric(labels, preds, metric, plan, num_classes), plan)


def full_metric(labels: np.ndarray, preds: np.ndarray, metric: str, num_classes: int | None = None) -> np.ndarray:
    """Metric of each seed [S] on the full data (no resampling)."""
    labels = _as_labels(labels)
    return metric_from_confusion(weighted_confusion(labels, preds, np.ones((1, labels.size)), num_classes), metric)[0]


# ---------------------------------------------------------------------------------------------
# Intervals and p-values from a bootstrap distribution


def tail_count(n_resamples: int, alpha: float) -> int:
    """Resamples dropped at each end of a level-(1 − alpha) interval: the largest j with 2j/R ≤ alpha."""
    R = int(n_resamples)
    j = int(np.floor(alpha * R / 2))
    while 2.0 * (j + 1) / R <= alpha:
        j += 1
    while j > 0 and 2.0 * j / R > alpha:
        j -= 1
    return min(j, (R - 1) // 2)


def percentile_interval(boot: np.ndarray, alpha: float = ALPHA) -> tuple[float, float]:
    """Level-(1 − alpha) percentile interval of ``boot`` as order statistics (see module docstring)."""
    d = np.sort(np.asarray(boot, dtype=np.float64))
    j = tail_count(d.size, alpha)
    return float(d[j]), float(d[d.size - 1 - j])


def bootstrap_p_value(boot: np.ndarray) -> float:
    """Two-sided bootstrap p-value of "difference = 0": 2·min(share ≤ 0, share ≥ 0), at most 1.

    p = 0 means every resample fell on one side (p < 1/R at this resolution).
    """
    d = np.asarray(boot, dtype=np.float64)
    k = min(int((d <= 0).sum()), int((d >= 0).sum()))
    return min(1.0, 2.0 * k / d.size)


def prob_improvement(boot: np.ndarray) -> float:
    """P(A > B): share of resamples with a positive difference, ties counted half."""
    d = np.asarray(boot, dtype=np.float64)
    return float(((d > 0).sum() + 0.5 * (d == 0).sum()) / d.size)


def minimum_detectable_difference(se: float, alpha: float = ALPHA, power: float = 0.8) -> float:
    """Smallest true difference a two-sided level-alpha test detects with ``power``: (z_{1−α/2} + z_power)·se."""
    from scipy.stats import norm

    return float((norm.ppf(1 - alpha / 2) + norm.ppf(power)) * se)


def half_width(low: float | None, high: float | None) -> float | None:
    """Half the width of an interval: the design's resolution read off the interval itself."""
    return None if low is None or high is None else float((high - low) / 2)


def _degenerate_note(n_seeds: int, n_groups: int) -> str | None:
    if n_seeds < 2:
        return NOTE_ONE_SEED
    if n_groups < 2:
        return NOTE_ONE_GROUP
    return None


def _interval_fields(boot: np.ndarray, alpha: float = ALPHA) -> tuple[float | None, float | None, str | None]:
    """(low, high, note): None and a note instead of a zero-width interval."""
    low, high = percentile_interval(boot, alpha)
    if not high > low:
        return None, None, NOTE_ZERO_WIDTH
    return low, high, None


# ---------------------------------------------------------------------------------------------
# Paired comparison of two strategies


def paired_difference(labels: np.ndarray, groups: Iterable[Hashable], preds_a: Mapping, preds_b: Mapping,
                      metric: str, plan: Plan | None = None, *, n_resamples: int = N_RESAMPLES,
                      seed: int = BOOTSTRAP_SEED, num_classes: int | None = None) -> dict:
    """A − B on ``metric``, paired by seed, with its hierarchical-bootstrap interval and p-value.

    ``diff`` is the mean over seeds of metric_A − metric_B on the full test set; ``bootstrap``
    holds the R resampled differences (a numpy array, for :func:`adjust_family`; drop it with
    :func:`without_bootstrap` before writing JSON). With one seed or one group nothing is
    resampled: every bootstrap field is None and ``note`` says why. (With one seed the groups
    could still be resampled, but that interval would leave out seed variation, and SPEC §8
    gives no interval with one seed.) ``mdd`` is the smallest difference this design detects
    (:func:`minimum_detectable_difference` of ``se``); ``half_width`` is the interval's reading.
    """
    seeds = _paired_seeds(preds_a, preds_b)
    labels = _as_labels(labels)
    groups = list(groups)
    A = _stack(preds_a, seeds, labels.size)
    B = _stack(preds_b, seeds, labels.size)
    C = _num_classes(labels, [A, B], num_classes)
    n_groups = int(factorize(groups).max()) + 1
    diff = float(np.mean(full_metric(labels, A, metric, C) - full_metric(labels, B, metric, C)))
    out = {"metric": metric, "diff": diff, "ci95_low": None, "ci95_high": None, "p_value": None,
           "prob_improvement": None, "se": None, "mdd": None, "half_width": None,
           "n_seeds": len(seeds), "n_groups": n_groups, "n_resamples": None, "seed": None,
           "note": _degenerate_note(len(seeds), n_groups), "bootstrap": None}
    if out["note"] is not None:
        return out
    plan = _plan_for(plan, groups, labels.size, len(seeds), n_resamples, seed)
    per_seed = (per_seed_resampled_metric(labels, A, metric, plan, C)
                - per_seed_resampled_metric(labels, B, metric, plan, C))
    boot = seed_mean(per_seed, plan)
    boot[np.abs(boot) < TIE] = 0.0
    low, high, note = _interval_fields(boot)
    se = float(boot.std(ddof=1))
    out.update(ci95_low=low, ci95_high=high, p_value=bootstrap_p_value(boot), prob_improvement=prob_improvement(boot),
               se=se, mdd=minimum_detectable_difference(se), half_width=half_width(low, high),
               n_resamples=plan.n_resamples, seed=plan.seed, note=note, bootstrap=boot)
    return out


def without_bootstrap(result: Mapping) -> dict:
    """The result without its bootstrap vector: plain, JSON-ready values."""
    return {k: v for k, v in result.items() if k != "bootstrap"}


# ---------------------------------------------------------------------------------------------
# Family-wise adjustment


def adjust_family(comparisons: Mapping[str, Mapping], alpha: float = ALPHA) -> dict[str, dict]:
    """Holm adjustment over the comparisons that have a bootstrap p-value, with adjusted intervals.

    Adds ``p_holm``, ``reject_holm``, ``holm_level``, ``family_size`` and ``ci_adj_low``/``ci_adj_high``.
    The adjusted interval is the percentile interval at the level Holm used for that comparison's
    step, alpha/(m − i + 1) for the i-th smallest p-value (tied p-values share the stricter
    level). By construction it excludes 0 exactly when the comparison's own p-value is within
    that level; where Holm stops before reaching the comparison, it is widened to reach 0. So
    an adjusted interval excludes 0 if and only if Holm rejects. Comparisons without a p-value
    (one seed, one group) stay out of the family and keep None; a comparison with a p-value
    but no interval (zero width) is in the family and keeps a None interval.
    """
    from statsmodels.stats.multitest import multipletests

    out = {name: {**res, "p_holm": None, "reject_holm": None, "holm_level": None, "family_size": 0,
                  "ci_adj_low": None, "ci_adj_high": None} for name, res in comparisons.items()}
    family = [name for name, res in comparisons.items()
              if res.get("p_value") is not None and res.get("bootstrap") is not None]
    m = len(family)
    if m == 0:
        return out
    p = np.array([comparisons[name]["p_value"] for name in family], dtype=np.float64)
    reject, p_holm, _, _ = multipletests(p, alpha=alpha, method="holm")
    step = np.searchsorted(np.sort(p), p, side="left")  # 0-based Holm step; ties take the first (strictest)
    levels = alpha / (m - step)
    for k, name in enumerate(family):
        res = out[name]
        res.update(p_holm=float(p_holm[k]), reject_holm=bool(reject[k]), holm_level=float(levels[k]), family_size=m)
        if res.get("ci95_low") is None:
            continue
        low, high = percentile_interval(comparisons[name]["bootstrap"], levels[k])
        if not reject[k]:
            low, high = min(low, 0.0), max(high, 0.0)
        res.update(ci_adj_low=low, ci_adj_high=high)
    return out


# ---------------------------------------------------------------------------------------------
# Gap closed, positive quantities, calibration


def gap_closed(labels: np.ndarray, groups: Iterable[Hashable], preds_student: Mapping, preds_none: Mapping,
               teacher_preds: np.ndarray, metric: str, plan: Plan | None = None, *,
               n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED, num_classes: int | None = None) -> dict:
    """(student − none) / (teacher − none) with its bootstrap interval.

    Student and ``none`` pair by seed; the teacher (trained once) is scored on the same resampled
    examples. The point is None when the full-data denominator is below ZERO_GAP; resamples whose
    denominator is below ZERO_GAP are dropped from the interval and counted in ``n_dropped``.
    """
    seeds = _paired_seeds(preds_student, preds_none)
    labels = _as_labels(labels)
    groups = list(groups)
    St = _stack(preds_student, seeds, labels.size)
    No = _stack(preds_none, seeds, labels.size)
    T = _as_preds(teacher_preds)
    C = _num_classes(labels, [St, No, T], num_classes)
    n_groups = int(factorize(groups).max()) + 1
    s_full = float(full_metric(labels, St, metric, C).mean())
    n_full = float(full_metric(labels, No, metric, C).mean())
    t_full = float(full_metric(labels, T, metric, C)[0])
    den = t_full - n_full
    point = None if abs(den) < ZERO_GAP else (s_full - n_full) / den
    out = {"metric": metric, "point": point, "ci95_low": None, "ci95_high": None, "n_dropped": None,
           "n_resamples": None, "n_seeds": len(seeds), "n_groups": n_groups, "seed": None,
           "note": _degenerate_note(len(seeds), n_groups)}
    if point is None:
        out["note"] = "teacher does not differ from none: gap closed undefined"
    if out["note"] is not None:
        return out
    plan = _plan_for(plan, groups, labels.size, len(seeds), n_resamples, seed)
    s_boot = resampled_metric(labels, St, metric, plan, C)
    n_boot = resampled_metric(labels, No, metric, plan, C)
    t_boot = per_seed_resampled_metric(labels, T, metric, plan, C)[:, 0]
    den_boot = t_boot - n_boot
    keep = np.abs(den_boot) >= ZERO_GAP
    out.update(n_dropped=int((~keep).sum()), n_resamples=plan.n_resamples, seed=plan.seed)
    if not keep.any():
        out["note"] = "teacher equals none on every resample: no interval"
        return out
    low, high, note = _interval_fields((s_boot[keep] - n_boot[keep]) / den_boot[keep])
    out.update(ci95_low=low, ci95_high=high, note=note)
    return out


def mean_interval(values: Mapping, plan: Plan) -> dict:
    """Mean of a per-example quantity (e.g. KL(teacher ‖ student)) over examples and seeds, with its interval.

    Each resample takes the weighted mean over its drawn groups for each drawn seed, so the
    interval of a non-negative quantity never goes below 0.
    """
    X = np.stack([np.asarray(values[s], dtype=np.float64) for s in values])  # [S, n]
    return _positive_interval(float(X.mean(axis=1).mean()), resampled_mean(values, plan), plan)


def resampled_mean(values: Mapping, plan: Plan) -> np.ndarray:
    """Bootstrap distribution [R] of the seed-averaged mean of a per-example quantity."""
    X = np.stack([np.asarray(values[s], dtype=np.float64) for s in values])  # [S, n]
    _check_plan(plan, None, X.shape[1], X.shape[0])
    sums = plan.group_counts @ _group_sums(plan.group_codes, plan.n_groups, X.T)  # [R, S]
    return seed_mean(sums / _resample_sizes(plan)[:, None], plan)


def _resample_sizes(plan: Plan) -> np.ndarray:
    """Number of examples [R] in each resample."""
    return plan.group_counts @ np.bincount(plan.group_codes, minlength=plan.n_groups).astype(np.float64)


def _positive_interval(point: float, boot: np.ndarray, plan: Plan) -> dict:
    out = {"point": point, "ci95_low": None, "ci95_high": None, "n_seeds": plan.n_seeds, "n_groups": plan.n_groups,
           "n_resamples": plan.n_resamples, "seed": plan.seed, "note": _degenerate_note(plan.n_seeds, plan.n_groups)}
    if out["note"] is None:
        low, high, note = _interval_fields(boot)
        out.update(ci95_low=low, ci95_high=high, note=note)
    return out


def _ece_columns(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> np.ndarray:
    """Per example: (correct − confidence) in its confidence bin's column, [n, n_bins].

    ECE = Σ_b |B|/n·|acc(B) − conf(B)| = Σ_b |Σ_{i∈B} (correct_i − conf_i)| / n, so per-bin sums
    of this column under example weights give the ECE of a resample.
    """
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins) - 1, 0, n_bins - 1).astype(np.int64)  # bins are (lo, hi]
    cols = np.zeros((labels.size, n_bins))
    cols[np.arange(labels.size), bins] = correct - conf
    return cols


def ece_interval(probs: Mapping, labels: np.ndarray, plan: Plan, n_bins: int = 15) -> dict:
    """Top-1 ECE (``n_bins`` equal-width bins (lo, hi], as torchmetrics) averaged over seeds, with its interval.

    The point is the mean over seeds of the unweighted ECE; each resample recomputes every
    seed's ECE on its drawn groups.
    """
    labels = _as_labels(labels)
    cols = [_ece_columns(np.asarray(probs[s], dtype=np.float64), labels, n_bins) for s in probs]
    point = float(np.mean([np.abs(c.sum(axis=0)).sum() / labels.size for c in cols]))
    return _positive_interval(point, resampled_ece(probs, labels, plan, n_bins), plan)


def resampled_ece(probs: Mapping, labels: np.ndarray, plan: Plan, n_bins: int = 15) -> np.ndarray:
    """Bootstrap distribution [R] of the seed-averaged top-1 ECE."""
    labels = _as_labels(labels)
    S = len(probs)
    _check_plan(plan, None, labels.size, S)
    cols = np.concatenate([_ece_columns(np.asarray(probs[s], dtype=np.float64), labels, n_bins) for s in probs], axis=1)
    binned = plan.group_counts @ _group_sums(plan.group_codes, plan.n_groups, cols)  # [R, S·n_bins]
    per_seed = np.abs(binned.reshape(plan.n_resamples, S, n_bins)).sum(axis=2) / _resample_sizes(plan)[:, None]
    return seed_mean(per_seed, plan)


# ---------------------------------------------------------------------------------------------
# Stability of a validation choice


def selection_stability(labels: np.ndarray, groups: Iterable[Hashable], preds: Mapping[str, Mapping],
                        candidates_a: Sequence[str], candidates_b: Sequence[str], metric: str,
                        plan: Plan | None = None, *, n_resamples: int = N_RESAMPLES, seed: int = BOOTSTRAP_SEED,
                        num_classes: int | None = None) -> dict:
    """How often resampled validation data (groups and seeds) picks the same best-of-A and best-of-B.

    On the full data and on each resample the best of each list is the one with the highest
    seed-averaged metric, the first in list order on ties (as ``mtkd.analysis.pick_best``).
    Reports ``pair_share`` (both picks as on the full data), ``a_share``, ``b_share`` and the
    distributions ``a_picks``/``b_picks`` ({name: share}). One seed or one group: shares None.
    """
    candidates_a, candidates_b = list(candidates_a), list(candidates_b)
    names = list(dict.fromkeys(candidates_a + candidates_b))
    if not candidates_a or not candidates_b:
        raise ValueError("selection_stability needs at least one candidate on each side")
    missing = [name for name in names if name not in preds]
    if missing:
        raise ValueError(f"no predictions for {missing}")
    seeds = list(preds[names[0]])
    for name in names[1:]:
        _paired_seeds(preds[names[0]], preds[name], f"{names[0]} vs {name}")
    labels = _as_labels(labels)
    groups = list(groups)
    stacks = {name: _stack(preds[name], seeds, labels.size) for name in names}
    C = _num_classes(labels, list(stacks.values()), num_classes)
    full = {name: float(full_metric(labels, stacks[name], metric, C).mean()) for name in names}
    pick_a = candidates_a[int(np.argmax([full[c] for c in candidates_a]))]
    pick_b = candidates_b[int(np.argmax([full[c] for c in candidates_b]))]
    n_groups = int(factorize(groups).max()) + 1
    out = {"metric": metric, "a_pick": pick_a, "b_pick": pick_b, "pair_share": None, "a_share": None,
           "b_share": None, "a_picks": None, "b_picks": None, "n_seeds": len(seeds), "n_groups": n_groups,
           "n_resamples": None, "seed": None, "note": _degenerate_note(len(seeds), n_groups)}
    if out["note"] is not None:
        return out
    plan = _plan_for(plan, groups, labels.size, len(seeds), n_resamples, seed)
    boot = {name: resampled_metric(labels, stacks[name], metric, plan, C) for name in names}
    ia = np.argmax(np.stack([boot[c] for c in candidates_a], axis=1), axis=1)  # first maximum on ties
    ib = np.argmax(np.stack([boot[c] for c in candidates_b], axis=1), axis=1)
    same_a, same_b = ia == candidates_a.index(pick_a), ib == candidates_b.index(pick_b)
    out.update(pair_share=float((same_a & same_b).mean()), a_share=float(same_a.mean()), b_share=float(same_b.mean()),
               a_picks={c: float((ia == i).mean()) for i, c in enumerate(candidates_a)},
               b_picks={c: float((ib == i).mean()) for i, c in enumerate(candidates_b)},
               n_resamples=plan.n_resamples, seed=plan.seed)
    return out


# ---------------------------------------------------------------------------------------------
# Input handling


def _as_labels(labels: np.ndarray) -> np.ndarray:
    return np.asarray(labels, dtype=np.int64).ravel()


def _as_preds(preds: np.ndarray) -> np.ndarray:
    return np.atleast_2d(np.asarray(preds, dtype=np.int64))


def _num_classes(labels: np.ndarray, preds: list[np.ndarray], given: int | None) -> int:
    seen = max([int(labels.max(initial=0))] + [int(p.max(initial=0)) for p in preds]) + 1
    if given is None:
        return max(2, seen)
    if given < seen:
        raise ValueError(f"num_classes={given}, but class {seen - 1} occurs")
    return int(given)


def _paired_seeds(a: Mapping, b: Mapping, what: str = "A vs B") -> list:
    """The seeds of ``a`` (in its order), which must be exactly those of ``b``."""
    only_a = [s for s in a if s not in b]
    only_b = [s for s in b if s not in a]
    if only_a or only_b:
        raise ValueError(f"{what}: students pair by seed, but seeds {only_a} are missing from B "
                         f"and seeds {only_b} are missing from A")
    if not a:
        raise ValueError(f"{what}: no seeds")
    return list(a)


def _stack(preds: Mapping, seeds: list, n: int) -> np.ndarray:
    out = np.stack([np.asarray(preds[s], dtype=np.int64).ravel() for s in seeds])
    if out.shape[1] != n:
        raise ValueError(f"predictions cover {out.shape[1]} examples, labels {n}")
    return out
