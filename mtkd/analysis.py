"""analyze: what the experiment found (SPEC §8–9).

Small pure functions on arrays and dicts compute every number; :func:`run_analysis`
is the only place that reads inputs and writes outputs:

- ``metrics/results.csv``            one row per (method, task, seed), every metric
- ``metrics/summary.json``           per task: best teacher / single / multi (chosen on
                                     validation, reported on test), multi-teacher advantage
                                     with its seed interval, gap closed, paired bootstrap
- ``metrics/agreement.json``         teacher agreement regions on test, student accuracy per region
- ``metrics/failures.json``          what the teachers did on each student error
- ``metrics/teacher_confidence.json`` max probability, entropy, share above 0.95 (train, test)
- ``plots/strategies.csv``           test primary metric per method (``dvc plots``)
- ``plots/gap_closed.csv``, ``plots/agreement.csv``, ``plots/failures.csv``,
  ``plots/teacher_confidence.csv``, ``plots/ranking.csv``
                                     the same analyses as long tables for ``dvc plots``
                                     (``label``: one bar per row in the bar templates)
- ``reports/report.html``            one self-contained plotly report (plotly.js inline); every
                                     figure sits in a ``<figure>`` with its reading sentence,
                                     and ``<meta name="mtkd-figures">`` lists the figure ids

``python -m mtkd.analysis --from-metrics OUT.html`` redraws the report from the committed
``metrics/`` and ``plots/curves/`` alone (no logits or predictions needed).

Choices are never made on test: the best teacher, best single-teacher student and
best multi-teacher student are picked by their validation primary metric. Every
output is deterministic (fixed bootstrap seed, explicit plot div ids), so a rerun is
byte-identical.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.data import load_meta, load_split
from mtkd.errors import MtkdError
from mtkd.io import atomic_path, write_json
from mtkd.logits import check_array, load_logits
from mtkd.metrics import confidence, softmax, summarize  # confidence: SPEC §9, shared with extract_logits

REGIONS = ("all_agree", "some_agree", "all_differ")
FAILURES = ("all_teachers_wrong", "all_teachers_right", "teachers_split")
CONFIDENCE_SPLITS = ("train", "test")
HIGH_CONFIDENCE = 0.95
N_BOOTSTRAP = 2000
BOOTSTRAP_SEED = 0
ZERO_GAP = 1e-6  # |best teacher − none| below this: gap closed is undefined (null)
NO_DIFFERENCE = "no detectable difference"

DATA = Path("data/prepared")
PLOT_TABLES = ("plots/gap_closed.csv", "plots/agreement.csv", "plots/failures.csv", "plots/teacher_confidence.csv",
               "plots/ranking.csv")
OUTPUTS = ("metrics/results.csv", "metrics/summary.json", "metrics/agreement.json", "metrics/failures.json",
           "metrics/teacher_confidence.json", "plots/strategies.csv", *PLOT_TABLES, "reports/report.html")


def _r(x) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)


# ---------------------------------------------------------------------------------------------
# Results table


def method_kind(method: str, teachers) -> str:
    """teacher | baseline (``none``) | single (``single_*``) | multi (every fusion strategy)."""
    if method in teachers:
        return "teacher"
    if method == "none":
        return "baseline"
    if method.startswith("single_"):
        return "single"
    return "multi"


def _seed_columns(scores: dict) -> dict:
    row: dict = {}
    for key, val in scores.items():
        if key == "best_epoch":
            row["best_epoch"] = val
        elif key == "fidelity":
            row.update({f"fidelity_{ref}_{m}": v for ref, d in val.items() for m, v in d.items()})
        elif key.startswith("gate_weights_"):
            row.update({f"gate_{key.removeprefix('gate_weights_')}_{t}": w for t, w in val.items()})
        elif isinstance(val, dict):  # a split: validation, test, test_mismatched
            row.update({f"{key}_{m}": v for m, v in val.items()})
    return row


def results_rows(task: str, teacher_metrics: dict[str, dict], distill_metrics: dict[str, dict]) -> list[dict]:
    """Rows of the results table for one task: teachers (no seed), then every student seed."""
    rows = []
    for teacher, scores in teacher_metrics.items():
        row = {"method": teacher, "kind": "teacher", "task": task, "seed": ""}
        row.update({f"{split}_{m}": v for split, metrics in scores.items() for m, v in metrics.items()})
        rows.append(row)
    for strategy, block in distill_metrics.items():
        for seed, scores in block["seeds"].items():
            rows.append({"method": strategy, "kind": method_kind(strategy, teacher_metrics), "task": task, "seed": seed,
                         "T": block.get("T"), "alpha": block.get("alpha"), **_seed_columns(scores)})
    return rows


def results_table(rows: list[dict]) -> pd.DataFrame:
    """Rows → frame with identity columns first, then validation_*, test_*, fidelity_*, gate_* columns."""
    cols = list(dict.fromkeys(k for row in rows for k in row))
    lead = [c for c in ("method", "kind", "task", "seed", "T", "alpha", "best_epoch") if c in cols]
    groups = ("validation_", "test_", "fidelity_", "gate_")
    rest = sorted((c for c in cols if c not in lead),
                  key=lambda c: next((i for i, g in enumerate(groups) if c.startswith(g)), len(groups)))
    frame = pd.DataFrame(rows, columns=lead + rest)
    if "best_epoch" in frame:
        frame["best_epoch"] = frame["best_epoch"].astype("Int64")  # integer, empty for teachers
    return frame


# ---------------------------------------------------------------------------------------------
# Choices (validation) and headline numbers (test)


def pick_best(validation: dict[str, float | None]) -> str | None:
    """Name with the highest validation score (first one on ties); None when there is none."""
    best = None
    for name, value in validation.items():
        if value is not None and math.isfinite(value) and (best is None or value > validation[best]):
            best = name
    return best


def strategy_scores(block: dict, primary: str) -> dict:
    """Primary metric of one strategy: validation mean, test summary and per-seed test values."""
    return {"validation": _r(block["validation"][primary]["mean"]),
            "test": {k: _r(v) for k, v in block["test"][primary].items()},
            "per_seed": {seed: float(s["test"][primary]) for seed, s in block["seeds"].items()}}


def gap_closed(student: float, none: float, teacher: float) -> float | None:
    """(student − none) / (teacher − none); None when the teacher does not differ from ``none``."""
    den = teacher - none
    if abs(den) < ZERO_GAP:
        return None
    return _r((student - none) / den)


def paired_advantage(multi: dict[str, float], single: dict[str, float]) -> dict | None:
    """Multi − single (pp) per shared seed: mean, std and t-interval over seeds."""
    seeds = [s for s in multi if s in single]
    if not seeds:
        return None
    return {**summarize([100.0 * (multi[s] - single[s]) for s in seeds]), "n_seeds": len(seeds)}


def rank_scores(scores: dict[str, float]) -> dict[str, int]:
    """1 = best (highest); ties share the better rank."""
    values = sorted(scores.values(), reverse=True)
    return {name: values.index(v) + 1 for name, v in scores.items()}


def verdict(low: float, high: float) -> str:
    if low <= 0.0 <= high:
        return NO_DIFFERENCE
    return "multi better" if low > 0 else "single better"


# ---------------------------------------------------------------------------------------------
# Paired bootstrap over test examples


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
    """Multi − single on ``metric`` (pp): observed difference and 95% percentile interval.

    Both methods are scored on the same resampled test examples (paired); the RNG is seeded.
    """
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
    return {"metric": metric, "n_resamples": n_resamples, "seed": seed, "diff_pp": _r(observed),
            "ci95_low": _r(low), "ci95_high": _r(high), "verdict": verdict(low, high)}


# ---------------------------------------------------------------------------------------------
# Agreement regions, failure categories, teacher confidence


def agreement_regions(teacher_preds: np.ndarray) -> np.ndarray:
    """Index into REGIONS per example from teacher argmaxes [K, n]: 0 all agree, 1 some agree, 2 all differ."""
    tp = np.sort(np.asarray(teacher_preds), axis=0)
    K = tp.shape[0]
    distinct = 1 + (np.diff(tp, axis=0) != 0).sum(axis=0)
    return np.where(distinct == 1, 0, np.where(distinct == K, 2, 1))


def region_accuracy(regions: np.ndarray, correct: np.ndarray) -> dict[str, float | None]:
    return {name: (_r(correct[regions == i].mean()) if (regions == i).any() else None) for i, name in enumerate(REGIONS)}


def _mean_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return _r(np.mean(values)) if values else None


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
        "share": {r: _r(c / n) for r, c in counts.items()},
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
        "errors_per_seed": _r(counts.sum(axis=1).mean()),
        "error_rate": _r(counts.sum(axis=1).mean() / len(labels)),
        "count_per_seed": {c: _r(counts[:, i].mean()) for i, c in enumerate(FAILURES)},
        "share": {c: (_r(counts[:, i].sum() / total) if total else None) for i, c in enumerate(FAILURES)},
    }


def base_failure_shares(labels: np.ndarray, teacher_preds: np.ndarray) -> dict[str, float]:
    cat = failure_category(labels, teacher_preds)
    return {c: _r((cat == i).mean()) for i, c in enumerate(FAILURES)}


def teacher_confidence(teacher_names: list[str], logits: dict[str, np.ndarray]) -> dict:
    """Per teacher and split (``logits``: split → [K, n, C]), plus the mean over teachers."""
    out = {t: {s: confidence(z[k]) for s, z in logits.items()} for k, t in enumerate(teacher_names)}
    out["all_teachers"] = {s: {m: _r(np.mean([out[t][s][m] for t in teacher_names])) for m in out[teacher_names[0]][s]}
                           for s in logits}
    return out


# ---------------------------------------------------------------------------------------------
# Per-task summary and plot rows


def task_summary(primary: str, teachers: dict[str, dict], scores: dict[str, dict], kinds: dict[str, str],
                 n_test: int, n_seeds: int, bootstrap: dict | None) -> dict:
    """The headline of one task. ``teachers``: name → {validation, test}; ``scores``: from strategy_scores."""
    best_teacher = pick_best({t: v["validation"] for t, v in teachers.items()})
    best_single = pick_best({s: v["validation"] for s, v in scores.items() if kinds[s] == "single"})
    best_multi = pick_best({s: v["validation"] for s, v in scores.items() if kinds[s] == "multi"})
    ranks = rank_scores({s: v["test"]["mean"] for s, v in scores.items()})
    none = scores.get("none")
    teacher_test = teachers[best_teacher]["test"] if best_teacher else None

    def gap(strategy):
        if none is None or teacher_test is None:
            return None
        return gap_closed(scores[strategy]["test"]["mean"], none["test"]["mean"], teacher_test)

    def pick(strategy):
        if strategy is None:
            return None
        s = scores[strategy]
        return {"strategy": strategy, "validation": s["validation"], "test": s["test"]["mean"],
                "ci95_low": s["test"]["ci95_low"], "ci95_high": s["test"]["ci95_high"]}

    return {
        "primary_metric": primary,
        "n_test": n_test,
        "n_seeds": n_seeds,
        "best_teacher": ({"name": best_teacher, **teachers[best_teacher]} if best_teacher else None),
        "teachers": teachers,
        "none": ({"validation": none["validation"], "test": none["test"]["mean"],
                  **{k: none["test"][k] for k in ("ci95_low", "ci95_high")}} if none else None),
        "best_single": pick(best_single),
        "best_multi": pick(best_multi),
        "multi_advantage_pp": (paired_advantage(scores[best_multi]["per_seed"], scores[best_single]["per_seed"])
                               if best_single and best_multi else None),
        "gap_closed": {
            "reference_teacher": best_teacher,
            "denominator_pp": (_r(100 * (teacher_test - none["test"]["mean"])) if none and teacher_test is not None else None),
            "best_single": gap(best_single) if best_single else None,
            "best_multi": gap(best_multi) if best_multi else None,
            "by_strategy": {s: gap(s) for s in scores},
        },
        "bootstrap": bootstrap,
        "strategies": {s: {"kind": kinds[s], "validation": v["validation"], "test": v["test"]["mean"],
                           "std": v["test"]["std"], "ci95_low": v["test"]["ci95_low"], "ci95_high": v["test"]["ci95_high"],
                           "rank": ranks[s]} for s, v in scores.items()},
    }


def strategy_plot_rows(task: str, summary: dict) -> list[dict]:
    """plots/strategies.csv rows: teachers (kind teacher, no interval) then students, test primary metric."""
    rows = [{"strategy": t, "task": task, "kind": "teacher", "test_primary": v["test"], "ci95_low": v["test"],
             "ci95_high": v["test"]} for t, v in summary["teachers"].items()]
    rows += [{"strategy": s, "task": task, "kind": v["kind"], "test_primary": v["test"], "ci95_low": v["ci95_low"],
              "ci95_high": v["ci95_high"]} for s, v in summary["strategies"].items()]
    return rows


def _label(*parts) -> str:
    return " · ".join(str(p) for p in parts)


def gap_closed_rows(task: str, summary: dict) -> list[dict]:
    """plots/gap_closed.csv: share of the none → best-teacher gap each student closes (fraction; empty if undefined)."""
    g = summary["gap_closed"]
    return [{"label": _label(task, s), "task": task, "strategy": s, "kind": summary["strategies"][s]["kind"],
             "reference_teacher": g["reference_teacher"], "gap_closed": v}
            for s, v in g["by_strategy"].items() if s != "none"]


def agreement_rows(task: str, a: dict) -> list[dict]:
    """plots/agreement.csv: student accuracy (mean over seeds) per agreement region and strategy."""
    return [{"label": _label(task, r, s), "task": task, "region": r, "region_share": a["share"][r], "strategy": s,
             "student_accuracy": acc[r]}
            for r in REGIONS if a["count"][r] > 0 for s, acc in a["student_accuracy"].items()]


def failure_rows(task: str, f: dict) -> list[dict]:
    """plots/failures.csv: student errors per failure category and strategy (mean count over seeds, pooled share)."""
    short = {"all_teachers_wrong": "all wrong", "all_teachers_right": "all right", "teachers_split": "split"}
    return [{"label": _label(task, s, f"teachers {short[c]}"), "task": task, "strategy": s, "category": c,
             "errors_per_seed": v["count_per_seed"][c], "share_of_errors": v["share"][c]}
            for s, v in f["strategies"].items() for c in FAILURES]


def confidence_rows(conf: dict) -> list[dict]:
    """plots/teacher_confidence.csv: one row per task, teacher and split."""
    return [{"label": _label(task, t, split), "task": task, "teacher": t, "split": split, **v}
            for task, by in conf.items() for t, splits in by.items() if t != "all_teachers"
            for split, v in splits.items()]


def ranking_rows(task: str, summary: dict) -> list[dict]:
    """plots/ranking.csv: strategies by rank (1 = best test primary metric, mean over seeds)."""
    order = sorted(summary["strategies"].items(), key=lambda kv: (kv[1]["rank"], kv[0]))
    return [{"label": _label(task, f"#{v['rank']} {s}"), "task": task, "strategy": s, "kind": v["kind"],
             "rank": v["rank"], "test_primary": v["test"]} for s, v in order]


PLOT_COLUMNS = {
    "plots/gap_closed.csv": ["label", "task", "strategy", "kind", "reference_teacher", "gap_closed"],
    "plots/agreement.csv": ["label", "task", "region", "region_share", "strategy", "student_accuracy"],
    "plots/failures.csv": ["label", "task", "strategy", "category", "errors_per_seed", "share_of_errors"],
    "plots/teacher_confidence.csv": ["label", "task", "teacher", "split", "mean_max_prob", "mean_entropy",
                                     "high_confidence_share"],
    "plots/ranking.csv": ["label", "task", "strategy", "kind", "rank", "test_primary"],
}


def plot_tables(summary: dict, agreement: dict, failures: dict, conf: dict) -> dict[str, pd.DataFrame]:
    """Every analysis as a long table for ``dvc plots`` (path → frame)."""
    rows = {
        "plots/gap_closed.csv": [r for t, s in summary.items() for r in gap_closed_rows(t, s)],
        "plots/agreement.csv": [r for t, a in agreement.items() for r in agreement_rows(t, a)],
        "plots/failures.csv": [r for t, f in failures.items() for r in failure_rows(t, f)],
        "plots/teacher_confidence.csv": confidence_rows(conf),
        "plots/ranking.csv": [r for t, s in summary.items() for r in ranking_rows(t, s)],
    }
    return {path: pd.DataFrame(rows[path], columns=cols) for path, cols in PLOT_COLUMNS.items()}


# ---------------------------------------------------------------------------------------------
# Reading sentences (one per figure, generated from the numbers)


def _score(v: float | None, metric: str) -> str:
    if v is None:
        return "n/a"
    return f"{100 * v:.1f}" + ("" if metric == "mcc" else "%")


def _signed(v: float) -> str:
    return f"{'+' if v >= 0 else '−'}{abs(v):.1f}"


def _interval(low: float, high: float) -> str:
    return f"[{_signed(low)}, {_signed(high)}]"


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.0f}%"


def headline_sentence(task: str, s: dict) -> str:
    single, multi = s["best_single"], s["best_multi"]
    if not single or not multi:
        return f"{task}: no comparison (needs at least one single-teacher and one multi-teacher strategy)."
    adv, boot = s["multi_advantage_pp"], s["bootstrap"]
    text = (f"{task}: Best multi ({multi['strategy']}) vs best single ({single['strategy']}): "
            f"{_signed(adv['mean'])} pp {_interval(adv['ci95_low'], adv['ci95_high'])} over {adv['n_seeds']} seeds")
    if boot:
        text += (f"; paired bootstrap on test examples {_signed(boot['diff_pp'])} pp "
                 f"{_interval(boot['ci95_low'], boot['ci95_high'])}: {boot['verdict']}")
    return text + "."


def strategies_sentence(task: str, s: dict) -> str:
    m = s["primary_metric"]
    students = {k: v for k, v in s["strategies"].items()}
    top = max(students, key=lambda k: (students[k]["test"], -list(students).index(k)))
    text = (f"{task} test {m}: highest student is {top} {_score(students[top]['test'], m)} "
            f"[{_score(students[top]['ci95_low'], m)}, {_score(students[top]['ci95_high'], m)}]")
    if s["none"]:
        text += f"; none {_score(s['none']['test'], m)}"
    if s["best_teacher"]:
        text += f"; best teacher (chosen on validation) {s['best_teacher']['name']} {_score(s['best_teacher']['test'], m)}"
    return text + "."


def gap_sentence(task: str, s: dict) -> str:
    g = s["gap_closed"]
    if g["reference_teacher"] is None or s["none"] is None:
        return f"{task}: gap closed needs the none student and at least one teacher."
    if g["denominator_pp"] is None or abs(g["denominator_pp"]) < 100 * ZERO_GAP:
        return f"{task}: gap closed is undefined: the best teacher ({g['reference_teacher']}) ties with the none student."
    parts = [f"{k.replace('_', ' ')} {s[k]['strategy']} closes {_pct(g[k])}" for k in ("best_multi", "best_single") if s[k]]
    return (f"{task}: {' and '.join(parts) or 'no student is compared'} of the {g['denominator_pp']:.1f} pp gap "
            f"between none and the best teacher ({g['reference_teacher']}).")


def agreement_sentence(task: str, a: dict) -> str:
    share = a["share"]["all_agree"]
    dis = {k: v for k, v in a["student_accuracy_when_teachers_disagree"].items() if v is not None}
    if not dis:
        return f"{task}: teachers agree on every test example ({a['n']}), so no region separates the strategies."
    lo, hi = min(dis, key=dis.get), max(dis, key=dis.get)
    return (f"{task}: teachers all agree on {100 * share:.1f}% of test examples; where they disagree, student accuracy "
            f"ranges from {100 * dis[lo]:.1f}% ({lo}) to {100 * dis[hi]:.1f}% ({hi}).")


def failures_sentence(task: str, f: dict) -> str:
    totals = np.sum([[v["count_per_seed"][c] for c in FAILURES] for v in f["strategies"].values()], axis=0)
    if totals.sum() == 0:
        return f"{task}: the students make no errors on test."
    share = totals / totals.sum()
    return (f"{task}: of all student errors (every strategy, mean over seeds), {100 * share[0]:.0f}% are examples every "
            f"teacher also gets wrong, {100 * share[1]:.0f}% examples every teacher gets right (transfer failed) and "
            f"{100 * share[2]:.0f}% examples where the teachers split.")


def confidence_sentence(conf: dict) -> str:
    parts = []
    for task, by_teacher in conf.items():
        names = [t for t in by_teacher if t != "all_teachers"]
        most = max(names, key=lambda t: by_teacher[t]["test"]["mean_max_prob"])
        least = min(names, key=lambda t: by_teacher[t]["test"]["mean_max_prob"])
        c, d = by_teacher[most]["test"], by_teacher[least]["test"]
        parts.append(f"{task} test: most confident teacher {most} (mean max prob {c['mean_max_prob']:.3f}, "
                     f"{100 * c['high_confidence_share']:.0f}% above {HIGH_CONFIDENCE}), least {least} "
                     f"({d['mean_max_prob']:.3f}, {100 * d['high_confidence_share']:.0f}%)")
        for t in names:
            if "train_in_sample" in by_teacher[t]:
                parts.append(f"{task} train, {t}: mean max prob {by_teacher[t]['train_in_sample']['mean_max_prob']:.3f} "
                             f"in-sample vs {by_teacher[t]['train']['mean_max_prob']:.3f} out-of-fold")
    return "; ".join(parts) + "."


def ranking_sentence(summary: dict) -> str:
    parts = []
    for task, s in summary.items():
        m, st = s["primary_metric"], s["strategies"]
        order = sorted(st, key=lambda k: st[k]["rank"])  # stable: ties keep the strategies' order
        first = [k for k in order if st[k]["rank"] == 1]
        text = f"{task}: {' = '.join(first)} ({_score(st[first[0]]['test'], m)})"
        multi = [k for k in order if st[k]["kind"] == "multi"]
        if multi and multi[0] not in first:
            text += (f", best-ranked multi-teacher strategy {multi[0]} at rank {st[multi[0]]['rank']} of {len(st)} "
                     f"({_score(st[multi[0]]['test'], m)})")
        parts.append(text)
    return "Top-ranked strategy on test " + "; ".join(parts) + "."


def curves_sentence(task: str, rows: dict[str, list[dict]], primary: str) -> str:
    key = f"val_{primary}"
    finals = [(s, r["seed"], r[key]) for s, rs in rows.items() for r in rs
              if r.get(key) is not None and r["epoch"] == max(x["epoch"] for x in rs if x["seed"] == r["seed"])]
    if not finals:
        return f"{task}: no student training curves found."
    epochs = sorted({r["epoch"] for rs in rows.values() for r in rs})
    lo, hi = min(finals, key=lambda f: f[2]), max(finals, key=lambda f: f[2])
    return (f"{task}: students trained for {len(epochs)} epoch(s); final validation {primary} ranges from "
            f"{_score(lo[2], primary)} ({lo[0]}, seed {lo[1]}) to {_score(hi[2], primary)} ({hi[0]}, seed {hi[1]}).")


def gate_weights(block: dict) -> dict[str, dict[str, float]]:
    """Mean over seeds of the gate weights per teacher: {train|test: {teacher: w}}; {} without a gate."""
    out = {}
    for split in ("train", "test"):
        rows = [s[f"gate_weights_{split}"] for s in block["seeds"].values() if f"gate_weights_{split}" in s]
        if rows:
            out[split] = {t: _r(np.mean([r[t] for r in rows])) for t in rows[0]}
    return out


def gate_sentence(task: str, strategy: str, weights: dict) -> str:
    split = "test" if "test" in weights else "train"
    w = weights[split]
    top = max(w, key=w.get)
    return (f"{task} {strategy}: the gate puts the most weight on {top} ({w[top]:.2f} on {split}, "
            f"uniform would be {1 / len(w):.2f}).")


# ---------------------------------------------------------------------------------------------
# Figures


def _layout(fig, title: str, height: int = 420, **kw):
    fig.update_layout(title=title, template="plotly_white", height=height, margin=dict(l=60, r=30, t=60, b=50), **kw)
    return fig


KIND_COLOURS = {"baseline": "#7f7f7f", "single": "#1f77b4", "multi": "#d62728", "teacher": "#2ca02c"}


def fig_strategies(task: str, s: dict):
    import plotly.graph_objects as go

    m = s["primary_metric"]
    names = list(s["strategies"])[::-1]
    v = [s["strategies"][n] for n in names]
    fig = go.Figure(go.Bar(
        x=[100 * x["test"] for x in v], y=names, orientation="h",
        marker_color=[KIND_COLOURS[x["kind"]] for x in v],
        error_x=dict(type="data", symmetric=False, array=[100 * (x["ci95_high"] - x["test"]) for x in v],
                     arrayminus=[100 * (x["test"] - x["ci95_low"]) for x in v]),
        hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
    at: dict[float, list[str]] = {}
    for t, tv in s["teachers"].items():  # one line per distinct score, naming every teacher on it
        at.setdefault(tv["test"], []).append(t)
    for x, names_at in at.items():
        fig.add_vline(x=100 * x, line_dash="dot", line_color=KIND_COLOURS["teacher"],
                      annotation_text=f"teacher {', '.join(names_at)}", annotation_position="top")
    lo = min([100 * x["ci95_low"] for x in v] + [100 * t["test"] for t in s["teachers"].values()])
    hi = max([100 * x["ci95_high"] for x in v] + [100 * t["test"] for t in s["teachers"].values()])
    pad = max(1.0, 0.1 * (hi - lo))
    fig.update_xaxes(title=f"test {m} ×100 (mean over seeds, 95% CI)", range=[lo - pad, hi + pad])
    return _layout(fig, f"{task}: students by strategy (dotted: teachers)", height=120 + 40 * len(names))


def fig_gap(task: str, s: dict):
    import plotly.graph_objects as go

    g = s["gap_closed"]["by_strategy"]
    names = [n for n in g if n != "none"]
    fig = go.Figure(go.Bar(x=names, y=[None if g[n] is None else 100 * g[n] for n in names],
                           marker_color=[KIND_COLOURS[s["strategies"][n]["kind"]] for n in names]))
    fig.update_yaxes(title=f"gap closed to {s['gap_closed']['reference_teacher']} (%)")
    return _layout(fig, f"{task}: share of the none → best-teacher gap closed (test)")


def fig_agreement(task: str, a: dict):
    import plotly.graph_objects as go

    regions = [r for r in REGIONS if a["count"][r] > 0]
    labels = [f"{r.replace('_', ' ')} ({100 * a['share'][r]:.1f}%)" for r in regions]
    fig = go.Figure([go.Bar(name=s, x=labels, y=[None if acc[r] is None else 100 * acc[r] for r in regions])
                     for s, acc in a["student_accuracy"].items()])
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="student accuracy (%) on test, mean over seeds")
    return _layout(fig, f"{task}: student accuracy by teacher agreement region (share of test examples)")


def fig_failures(task: str, f: dict):
    import plotly.graph_objects as go

    names = list(f["strategies"])
    fig = go.Figure([go.Bar(name=c.replace("_", " "), x=names, y=[f["strategies"][n]["count_per_seed"][c] for n in names])
                     for c in FAILURES])
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="student errors on test (mean over seeds)")
    return _layout(fig, f"{task}: what the teachers did on each student error")


def fig_confidence(conf: dict):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    panels = (("mean_max_prob", "mean max probability", 1.0), ("mean_entropy", "mean entropy (nats)", 1.0),
              ("high_confidence_share", f"share with max prob > {HIGH_CONFIDENCE} (%)", 100.0))
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels])
    colours = {"train": "#9ecae1", "test": "#1f77b4", "train_in_sample": "#fdae6b"}
    x = [f"{task} · {t}" for task, by in conf.items() for t in by if t != "all_teachers"]
    # With out-of-fold teachers, "train" is out-of-fold and "train_in_sample" the full model on its own data.
    shown = [*CONFIDENCE_SPLITS] + (["train_in_sample"] if any("train_in_sample" in v for by in conf.values()
                                                               for v in by.values()) else [])
    for col, (key, _, scale) in enumerate(panels, start=1):
        for split in shown:
            y = [scale * by[t][split][key] if split in by[t] else None
                 for by in conf.values() for t in by if t != "all_teachers"]
            fig.add_trace(go.Bar(name=split, x=x, y=y, marker_color=colours[split], legendgroup=split,
                                 showlegend=col == 1), row=1, col=col)
    fig.update_layout(barmode="group")
    fig.update_yaxes(range=[0, 1], row=1, col=1)
    fig.update_yaxes(range=[0, 100], row=1, col=3)
    return _layout(fig, "Teacher confidence per teacher and task (train and test)")


def fig_ranking(summary: dict):
    import plotly.graph_objects as go

    tasks = list(summary)
    names = list(dict.fromkeys(s for t in tasks for s in summary[t]["strategies"]))
    z = [[summary[t]["strategies"].get(n, {}).get("rank") for t in tasks] for n in names]
    text = [[(f"{summary[t]['strategies'][n]['rank']} · {100 * summary[t]['strategies'][n]['test']:.1f}"
              if n in summary[t]["strategies"] else "") for t in tasks] for n in names]
    fig = go.Figure(go.Heatmap(z=z, x=tasks, y=names, text=text, texttemplate="%{text}", colorscale="Blues",
                               reversescale=True, colorbar=dict(title="rank")))
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, "Rank of each strategy per task (test primary metric ×100, 1 = best)",
                   height=120 + 35 * len(names))


def fig_curves(task: str, rows: dict[str, list[dict]], teacher_rows: dict[str, list[dict]], primary: str):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=2, subplot_titles=("train loss", f"validation {primary}"))
    for s, rs in rows.items():
        for i, seed in enumerate(sorted({r["seed"] for r in rs})):
            pts = sorted((r for r in rs if r["seed"] == seed), key=lambda r: r["epoch"])
            for col, key in ((1, "train_loss"), (2, f"val_{primary}")):
                fig.add_trace(go.Scatter(x=[r["epoch"] for r in pts], y=[r.get(key) for r in pts], mode="lines+markers",
                                         name=s, legendgroup=s, showlegend=(i == 0 and col == 1),
                                         hovertext=f"{s} seed {seed}"), row=1, col=col)
    for t, rs in teacher_rows.items():
        if not rs:
            continue
        pts = sorted(rs, key=lambda r: r["epoch"])
        for col, key in ((1, "train_loss"), (2, f"val_{primary}")):
            fig.add_trace(go.Scatter(x=[r["epoch"] for r in pts], y=[r.get(key) for r in pts], mode="lines+markers",
                                     name=f"teacher {t}", legendgroup=f"teacher {t}", showlegend=(col == 1),
                                     line=dict(dash="dash")), row=1, col=col)
    fig.update_xaxes(title="epoch", dtick=1)
    return _layout(fig, f"{task}: training curves (students per seed; dashed: teachers)")


def fig_gates(task: str, gates: dict[str, dict]):
    import plotly.graph_objects as go

    traces = []
    for strategy, weights in gates.items():
        for split, w in weights.items():
            traces.append(go.Bar(name=f"{strategy} ({split})", x=list(w), y=list(w.values())))
    fig = go.Figure(traces)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="mean gate weight (mean over seeds)", range=[0, 1])
    return _layout(fig, f"{task}: learned gate weights per teacher")


# ---------------------------------------------------------------------------------------------
# HTML


CSS = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; max-width: 1150px; margin: 2em auto;
       padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: .8em 0; font-size: .92em; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #f4f4f4; } td:first-child, th:first-child { text-align: left; }
.reading { background: #f6f8fa; border-left: 4px solid #1f77b4; padding: .5em .8em; margin: .8em 0; }
figure.mtkd-figure { margin: 1.2em 0 1.8em; }
p.note { color: #666; font-size: .9em; }
"""


def _e(text) -> str:
    return html.escape(str(text), quote=False)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def headline_table(summary: dict) -> str:
    rows = []
    for task, s in summary.items():
        m = s["primary_metric"]
        single, multi, adv, boot, gap = (s["best_single"], s["best_multi"], s["multi_advantage_pp"], s["bootstrap"],
                                         s["gap_closed"])
        rows.append([
            task, m,
            f"{s['best_teacher']['name']} {_score(s['best_teacher']['test'], m)}" if s["best_teacher"] else "n/a",
            _score(s["none"]["test"], m) if s["none"] else "n/a",
            f"{single['strategy']} {_score(single['test'], m)}" if single else "n/a",
            f"{multi['strategy']} {_score(multi['test'], m)}" if multi else "n/a",
            f"{_signed(adv['mean'])} {_interval(adv['ci95_low'], adv['ci95_high'])}" if adv else "n/a",
            f"{_signed(boot['diff_pp'])} {_interval(boot['ci95_low'], boot['ci95_high'])}" if boot else "n/a",
            boot["verdict"] if boot else "n/a",
            f"{_pct(gap['best_single'])} / {_pct(gap['best_multi'])}",
        ])
    return _table(["task", "metric", "best teacher", "none", "best single", "best multi", "advantage pp (seeds, 95% CI)",
                   "bootstrap pp (95% CI)", "verdict", "gap closed single / multi"], rows)


def confidence_table(conf: dict) -> str:
    rows = [[task, t, split, f"{v['mean_max_prob']:.3f}", f"{v['mean_entropy']:.3f}", _pct(v["high_confidence_share"])]
            for task, by in conf.items() for t, splits in by.items() for split, v in splits.items()]
    return _table(["task", "teacher", "split", "mean max prob", "mean entropy (nats)", f"max prob > {HIGH_CONFIDENCE}"],
                  rows)


@dataclass
class Report:
    """Sections of the HTML report; every figure comes with its reading sentence."""

    parts: list[str] = field(default_factory=list)
    readings: list[str] = field(default_factory=list)
    figures: dict[str, str] = field(default_factory=dict)  # figure div id → its reading sentence

    @property
    def figure_ids(self) -> list[str]:
        return list(self.figures)

    def heading(self, text: str, level: int = 2):
        self.parts.append(f"<h{level}>{_e(text)}</h{level}>")

    def raw(self, fragment: str):
        self.parts.append(fragment)

    def reading(self, sentence: str):
        self.readings.append(sentence)
        self.parts.append(f'<p class="reading">{_e(sentence)}</p>')

    def figure(self, fig, div_id: str, sentence: str):
        """A plotly figure (plotly.js inline with the first one) and its reading, in one ``<figure>``."""
        if div_id in self.figures:
            raise ValueError(f"duplicate figure id {div_id}")
        plot = fig.to_html(full_html=False, include_plotlyjs=not self.figures, div_id=div_id,
                           config={"displaylogo": False, "responsive": True})
        self.figures[div_id] = sentence
        self.readings.append(sentence)
        self.parts.append(f'<figure class="mtkd-figure" data-figure="{html.escape(div_id)}">\n{plot}\n'
                          f'<figcaption class="reading">{_e(sentence)}</figcaption>\n</figure>')

    def html(self, title: str) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f'<meta name="mtkd-figures" content="{html.escape(" ".join(self.figure_ids))}">\n'
                f"<title>{_e(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                + "\n".join(self.parts) + "\n</body>\n</html>\n")


def build_report(summary: dict, agreement: dict, failures: dict, conf: dict, curves: dict, gates: dict,
                 setup: dict) -> Report:
    """The whole report. ``curves``: task → (student rows by strategy, teacher rows by teacher); ``gates``:
    task → strategy → gate weights."""
    r = Report()
    r.raw(f"<h1>{_e('Multi-teacher knowledge distillation: results')}</h1>")
    r.raw(f'<p class="note">{_e(setup_sentence(setup))}</p>')
    r.heading("Headline: best multi-teacher vs best single-teacher student")
    r.raw(headline_table(summary))
    for task, s in summary.items():
        r.reading(headline_sentence(task, s))
    r.raw('<p class="note">Best single / multi and best teacher are chosen on the validation primary metric and '
          'reported on test. Advantage: paired per-seed differences, t-interval. Bootstrap: '
          f'{N_BOOTSTRAP} paired resamples of test examples (seed {BOOTSTRAP_SEED}), students averaged over seeds. '
          'Gap closed = (student − none) / (best teacher − none).</p>')
    for task, s in summary.items():
        r.heading(f"Task {task}")
        r.figure(fig_strategies(task, s), f"fig-{task}-strategies", strategies_sentence(task, s))
        r.figure(fig_gap(task, s), f"fig-{task}-gap", gap_sentence(task, s))
        r.figure(fig_agreement(task, agreement[task]), f"fig-{task}-agreement", agreement_sentence(task, agreement[task]))
        r.figure(fig_failures(task, failures[task]), f"fig-{task}-failures", failures_sentence(task, failures[task]))
        rows, teacher_rows = curves[task]
        if any(rows.values()) or any(teacher_rows.values()):
            r.figure(fig_curves(task, rows, teacher_rows, s["primary_metric"]), f"fig-{task}-curves",
                     curves_sentence(task, rows, s["primary_metric"]))
        else:
            r.raw(f'<p class="note">{_e(task)}: no training curves found under plots/curves/.</p>')
        if gates.get(task):
            r.figure(fig_gates(task, gates[task]), f"fig-{task}-gates",
                     " ".join(gate_sentence(task, k, w) for k, w in gates[task].items()))
    r.heading("All tasks")
    r.figure(fig_confidence(conf), "fig-confidence", confidence_sentence(conf))
    r.raw(confidence_table(conf))
    r.figure(fig_ranking(summary), "fig-ranking", ranking_sentence(summary))
    r.raw('<p class="note">T × α grids: after a sweep (<code>dvc exp run --queue -S distill.T=… -S distill.alpha=…</code>), '
          '<code>python -m mtkd.sweep</code> draws them in reports/sweep.html, chosen on validation.</p>')
    return r


def setup_sentence(setup: dict) -> str:
    return (f"Tasks: {', '.join(setup['tasks'])}. Teachers: {', '.join(setup['teachers'])}. "
            f"Strategies: {', '.join(setup['strategies'])}. Seeds: {', '.join(map(str, setup['seeds']))}. "
            "Test is used for reporting only.")


# ---------------------------------------------------------------------------------------------
# Inputs


def _read_json(path: Path, how: str):
    if not path.is_file():
        raise MtkdError(f"{path}: not found (run `{how}`)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise MtkdError(f"{path}: not valid JSON ({exc}); re-run `{how}`") from None


def load_student_logits(path: Path, strategy: str, task: str, split: str, frame: pd.DataFrame, num_classes: int,
                        seeds: list) -> dict[str, np.ndarray]:
    """Student logits per seed from ``predictions/<strategy>.npz``, ids checked against the prepared split."""
    how = f"dvc repro distill@{strategy}"
    if not path.is_file():
        raise MtkdError(f"{path}: predictions not found (run `{how}`)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise MtkdError(f"{path}: not a readable predictions file ({type(exc).__name__}); re-run `{how}`") from None
    with npz:
        key = f"{task}/{split}/ids"
        if key not in npz.files:
            raise MtkdError(f"{path}: no '{key}' (re-run `{how}`)")
        ids, want = npz[key], frame["id"].astype(str).to_numpy()
        if len(ids) != len(want) or not np.array_equal(ids, want):
            raise MtkdError(f"{path}[{task}/{split}]: ids do not match data/prepared/{task}/{split}.parquet "
                            f"({len(ids)} vs {len(want)} ids); stale predictions, re-run `{how}`")
        out = {}
        for seed in seeds:
            key = f"{task}/{split}/seed{seed}"
            if key not in npz.files:
                raise MtkdError(f"{path}: no '{key}' for seed {seed} (re-run `{how}`)")
            z = np.asarray(npz[key], dtype=np.float32)
            check_array(z, want, num_classes, f"{path}[{key}]")
            out[str(seed)] = z
    return out


@dataclass
class TaskInputs:
    task: str
    meta: dict
    labels: dict[str, np.ndarray]                # split → labels
    teacher_logits: dict[str, np.ndarray]        # train / test → [K, n, C]
    teacher_metrics: dict[str, dict]             # teacher → split → metric → value
    distill: dict[str, dict]                     # strategy → metrics block of this task
    student_test: dict[str, dict[str, np.ndarray]]  # strategy → seed → test logits
    curves: dict[str, list[dict]]                # strategy → curve rows of this task
    teacher_curves: dict[str, list[dict]]        # teacher → curve rows
    # teacher → in-sample train confidence, for teachers whose train logits are out-of-fold (oof_folds)
    train_in_sample: dict[str, dict] = field(default_factory=dict)


def load_task_inputs(root: Path, task: str, teachers: list[str], strategies: list[str], seeds: list,
                     distill_all: dict[str, dict], curves_all: dict[str, list]) -> TaskInputs:
    data = root / DATA
    meta = load_meta(data, task)
    C = meta["num_classes"]
    frames = {s: load_split(data, task, s) for s in ("train", "validation", "test")}
    logits = {}
    for split in CONFIDENCE_SPLITS:
        stack = []
        for t in teachers:
            path = root / "logits" / f"{t}-{task}.npz"
            if not path.is_file():
                raise MtkdError(f"{path}: teacher logits not found (run `dvc repro extract_logits@{t}-{task}` or `dvc pull`)")
            stack.append(load_logits(path, split, frames[split], C, meta["splits"][split]["fingerprint"],
                                     checkpoint_dir=root / "models/teachers" / f"{t}-{task}"))
        logits[split] = np.stack(stack)
    teacher_metrics, train_in_sample = {}, {}
    for t in teachers:
        path = root / "metrics/teachers" / f"{t}-{task}.json"
        record = _read_json(path, f"dvc repro extract_logits@{t}-{task}")
        train_conf = (record.get("train_confidence") or {}).get(task) or {}
        if "out_of_fold" in train_conf and "in_sample" in train_conf:
            train_in_sample[t] = train_conf["in_sample"]
        scores = record.get(task)
        if not scores or not {"validation", "test"} <= set(scores):
            raise MtkdError(f"{path}: no validation/test scores for task '{task}' (re-run `dvc repro extract_logits@{t}-{task}`)")
        teacher_metrics[t] = scores
    distill, student_test = {}, {}
    for s in strategies:
        path = root / "metrics/distill" / f"{s}.json"
        block = distill_all[s].get(task)
        if block is None:
            raise MtkdError(f"{path}: no results for task '{task}' (re-run `dvc repro distill@{s}`)")
        have = sorted(block.get("seeds", {}))
        if have != sorted(str(x) for x in seeds):
            raise MtkdError(f"{path}: results for seeds {have}, params.yaml seeds are {list(seeds)} "
                            f"(re-run `dvc repro distill@{s}`)")
        distill[s] = block
        student_test[s] = load_student_logits(root / "predictions" / f"{s}.npz", s, task, "test", frames["test"], C, seeds)
        # Validation predictions must describe the same examples as well.
        load_student_logits(root / "predictions" / f"{s}.npz", s, task, "validation", frames["validation"], C, seeds)
    teacher_curves = {}
    for t in teachers:
        path = root / "plots/curves/teachers" / f"{t}-{task}.json"
        teacher_curves[t] = json.loads(path.read_text()) if path.is_file() else []
    return TaskInputs(task, meta, {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}, logits,
                      teacher_metrics, distill, student_test,
                      {s: [r for r in curves_all.get(s, []) if r.get("task") == task] for s in strategies},
                      teacher_curves, train_in_sample)


# ---------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class TaskResults:
    summary: dict
    agreement: dict
    failures: dict
    confidence: dict
    rows: list[dict]
    gates: dict


def analyse_task(inp: TaskInputs, teachers: list[str], seeds: list) -> TaskResults:
    """Every number of one task from its loaded inputs (no I/O)."""
    primary, C = inp.meta["primary_metric"], inp.meta["num_classes"]
    y = inp.labels["test"]
    kinds = {s: method_kind(s, teachers) for s in inp.distill}
    scores = {s: strategy_scores(b, primary) for s, b in inp.distill.items()}
    teacher_scores = {t: {"validation": _r(m["validation"][primary]), "test": _r(m["test"][primary])}
                      for t, m in inp.teacher_metrics.items()}
    validation = {s: v["validation"] for s, v in scores.items()}
    best_single = pick_best({s: v for s, v in validation.items() if kinds[s] == "single"})
    best_multi = pick_best({s: v for s, v in validation.items() if kinds[s] == "multi"})
    boot = None
    if best_single and best_multi:
        boot = {"multi": best_multi, "single": best_single,
                **paired_bootstrap(y, seed_averaged_predictions(inp.student_test[best_multi]),
                                   seed_averaged_predictions(inp.student_test[best_single]), primary, C)}
    summary = task_summary(primary, teacher_scores, scores, kinds, len(y), len(seeds), boot)
    teacher_preds = inp.teacher_logits["test"].argmax(axis=2)
    student_preds = {s: {seed: z.argmax(axis=1) for seed, z in by.items()} for s, by in inp.student_test.items()}
    agreement = agreement_analysis(y, teacher_preds, teachers, student_preds)
    failures = {"base_share": base_failure_shares(y, teacher_preds),
                "strategies": {s: failure_analysis(y, teacher_preds, p) for s, p in student_preds.items()}}
    conf = teacher_confidence(teachers, inp.teacher_logits)
    for t, in_sample in inp.train_in_sample.items():  # the "train" entry is then out-of-fold: what the student sees
        conf[t]["train_in_sample"] = {k: _r(v) for k, v in in_sample.items()}
    gates = {s: w for s, b in inp.distill.items() if (w := gate_weights(b))}
    return TaskResults(summary, agreement, failures, conf, results_rows(inp.task, inp.teacher_metrics, inp.distill), gates)


def _write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def run_analysis(params, root: Path = Path(".")) -> dict:
    """Read every input under ``root``, write every output (module docstring) under ``root``; return the results."""
    root = Path(root)
    teachers, strategies = list(params.teachers), list(params.distill.strategies)
    seeds, tasks = list(params.seeds), list(params.data.tasks)
    distill_all = {s: _read_json(root / "metrics/distill" / f"{s}.json", f"dvc repro distill@{s}") for s in strategies}
    curves_all = {}
    for s in strategies:
        path = root / "plots/curves/distill" / f"{s}.json"
        curves_all[s] = json.loads(path.read_text()) if path.is_file() else []
    results, curves = {}, {}
    for task in tasks:
        inp = load_task_inputs(root, task, teachers, strategies, seeds, distill_all, curves_all)
        results[task] = analyse_task(inp, teachers, seeds)
        curves[task] = (inp.curves, inp.teacher_curves)
        del inp
    summary = {t: r.summary for t, r in results.items()}
    agreement = {t: r.agreement for t, r in results.items()}
    failures = {t: r.failures for t, r in results.items()}
    conf = {t: r.confidence for t, r in results.items()}
    gates = {t: r.gates for t, r in results.items()}
    report = build_report(summary, agreement, failures, conf, curves, gates,
                          {"tasks": tasks, "teachers": teachers, "strategies": strategies, "seeds": seeds})

    _write_csv(root / "metrics/results.csv", results_table([row for r in results.values() for row in r.rows]))
    write_json(root / "metrics/summary.json", summary)
    write_json(root / "metrics/agreement.json", agreement)
    write_json(root / "metrics/failures.json", failures)
    write_json(root / "metrics/teacher_confidence.json", conf)
    _write_csv(root / "plots/strategies.csv",
               pd.DataFrame([row for t, s in summary.items() for row in strategy_plot_rows(t, s)],
                            columns=["strategy", "task", "kind", "test_primary", "ci95_low", "ci95_high"]))
    for path, frame in plot_tables(summary, agreement, failures, conf).items():
        _write_csv(root / path, frame)
    with atomic_path(root / "reports/report.html") as tmp:
        tmp.write_bytes(report.html("mtkd report").encode("utf-8"))
    return {"summary": summary, "agreement": agreement, "failures": failures, "teacher_confidence": conf,
            "readings": report.readings, "figures": report.figures}


def _read_curves(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.is_file() else []


def report_from_metrics(params, root: Path = Path(".")) -> Report:
    """The report redrawn from what ``analyze`` and ``distill`` commit to git (``metrics/``, ``plots/curves/``),
    without logits or predictions; the same bytes as :func:`run_analysis` writes for the same inputs."""
    root = Path(root)
    teachers, strategies = list(params.teachers), list(params.distill.strategies)
    seeds, tasks = list(params.seeds), list(params.data.tasks)
    how = "dvc repro analyze"
    loaded = {name: _read_json(root / "metrics" / f"{name}.json", how)
              for name in ("summary", "agreement", "failures", "teacher_confidence")}
    for name, by_task in loaded.items():
        if missing := [t for t in tasks if t not in by_task]:
            raise MtkdError(f"{root / 'metrics' / name}.json: no results for task(s) {missing} (re-run `{how}`)")
    summary, agreement, failures, conf = ({t: loaded[name][t] for t in tasks}
                                          for name in ("summary", "agreement", "failures", "teacher_confidence"))
    distill_all = {s: _read_json(root / "metrics/distill" / f"{s}.json", f"dvc repro distill@{s}") for s in strategies}
    curves_all = {s: _read_curves(root / "plots/curves/distill" / f"{s}.json") for s in strategies}
    curves, gates = {}, {}
    for task in tasks:
        curves[task] = ({s: [r for r in curves_all[s] if r.get("task") == task] for s in strategies},
                        {t: _read_curves(root / "plots/curves/teachers" / f"{t}-{task}.json") for t in teachers})
        gates[task] = {s: w for s in strategies if (w := gate_weights(distill_all[s].get(task) or {"seeds": {}}))}
    return build_report(summary, agreement, failures, conf, curves, gates,
                        {"tasks": tasks, "teachers": teachers, "strategies": strategies, "seeds": seeds})


def main(argv=None) -> int:
    import argparse
    import sys

    from mtkd.params import load_params

    ap = argparse.ArgumentParser(description="Redraw the analysis report from the committed metrics/ and "
                                             "plots/curves/ (no logits or predictions needed).")
    ap.add_argument("--from-metrics", metavar="OUT.html", required=True, type=Path, help="where to write the report")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--root", default=".", type=Path)
    args = ap.parse_args(argv)
    try:
        report = report_from_metrics(load_params(args.params), args.root)
        with atomic_path(args.from_metrics) as tmp:
            tmp.write_bytes(report.html("mtkd report").encode("utf-8"))
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.from_metrics} ({len(report.figure_ids)} figures)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
