"""The results table, the choices made on validation, and each task's headline summary (SPEC §8).

Pure functions on dicts: nothing here reads or writes a file.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

ZERO_GAP = 1e-6  # |best teacher − none| below this: gap closed is undefined (null)


def rounded(x) -> float | None:
    """A number as metrics/ records it: 6 decimals; None for a missing or non-finite value."""
    return None if x is None or not math.isfinite(float(x)) else round(float(x), 6)


# ---------------------------------------------------------------------------------------------
# Results table


def method_kind(method: str, teachers) -> str:
    """teacher | baseline | single | multi: a teacher by name, a student by its strategy's kind."""
    if method in teachers:
        return "teacher"
    # mtkd.fusion imports torch: imported here, so that the report and the README Findings,
    # which read kinds from metrics/, never load it.
    from mtkd.fusion import strategy_kind

    return strategy_kind(method)


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
        # empty for teachers; a sub-epoch evaluation (0.75) as it is, a whole epoch as an integer (1)
        frame["best_epoch"] = frame["best_epoch"].map(lambda v: "" if pd.isna(v) else f"{v:g}")
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
    return {"validation": rounded(block["validation"][primary]["mean"]),
            "test": {k: rounded(v) for k, v in block["test"][primary].items()},
            "per_seed": {seed: float(s["test"][primary]) for seed, s in block["seeds"].items()}}


def gap_closed(student: float, none: float, teacher: float) -> float | None:
    """(student − none) / (teacher − none); None when the teacher does not differ from ``none``."""
    den = teacher - none
    if abs(den) < ZERO_GAP:
        return None
    return rounded((student - none) / den)


def rank_scores(scores: dict[str, float]) -> dict[str, int]:
    """1 = best (highest); ties share the better rank."""
    values = sorted(scores.values(), reverse=True)
    return {name: values.index(v) + 1 for name, v in scores.items()}


def best_of_kind(validation: dict[str, float | None], kinds: dict[str, str], kind: str) -> str | None:
    """The strategy of ``kind`` (single | multi) chosen on validation."""
    return pick_best({s: v for s, v in validation.items() if kinds[s] == kind})


def task_summary(primary: str, teachers: dict[str, dict], scores: dict[str, dict], kinds: dict[str, str],
                 n_test: int, n_seeds: int, headline: dict | None = None, contenders: list[str] | None = None) -> dict:
    """The headline of one task. ``teachers``: name → {validation, test}; ``scores``: from strategy_scores
    (their test intervals replaced by the bootstrap's); ``headline``: :func:`mtkd.analysis.verdict.headline`;
    ``contenders``: the teachers the best teacher is chosen among (None: all; a reference is left out)."""
    best_teacher = pick_best({t: v["validation"] for t, v in teachers.items() if contenders is None or t in contenders})
    validation = {s: v["validation"] for s, v in scores.items()}
    best_single, best_multi = best_of_kind(validation, kinds, "single"), best_of_kind(validation, kinds, "multi")
    ranks = rank_scores({s: v["test"]["mean"] for s, v in scores.items()})
    none = scores.get("none")  # the baseline, by its key in the metrics
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
        "gap_closed": {
            "reference_teacher": best_teacher,
            "denominator_pp": (rounded(100 * (teacher_test - none["test"]["mean"]))
                               if none and teacher_test is not None else None),
            "best_single": gap(best_single) if best_single else None,
            "best_multi": gap(best_multi) if best_multi else None,
            "by_strategy": {s: gap(s) for s in scores},
        },
        "headline": headline,
        "strategies": {s: {"kind": kinds[s], "validation": v["validation"], "test": v["test"]["mean"],
                           "std": v["test"]["std"], "ci95_low": v["test"]["ci95_low"], "ci95_high": v["test"]["ci95_high"],
                           "rank": ranks[s]} for s, v in scores.items()},
    }


# A student's validation curve has flattened when its last evaluation gained less than this
# (in the primary metric; 0.002 = 0.2 pp, about 2.5 of rt's 1,271 validation examples).
FLAT_GAIN = 0.002


def convergence(rows: dict[str, list[dict]], primary: str, flat_gain: float = FLAT_GAIN) -> dict | None:
    """Whether the students' validation curves flattened (issue #13): over every run (strategy × seed)
    with two or more evaluations, how many had their best evaluation last, and the last evaluation's
    gain over the one before it. None without such runs."""
    key = f"val_{primary}"
    runs = []
    for strategy_rows in rows.values():
        for seed in sorted({r["seed"] for r in strategy_rows}):
            curve = sorted((r for r in strategy_rows if r["seed"] == seed and r.get(key) is not None),
                           key=lambda r: r["epoch"])
            if len(curve) >= 2:
                runs.append([r[key] for r in curve])
    if not runs:
        return None
    gains = np.array([v[-1] - v[-2] for v in runs])
    best_at_last = sum(int(np.argmax(v)) == len(v) - 1 for v in runs)  # ties: the earlier evaluation is best
    return {"runs": len(runs), "best_at_last": best_at_last, "last_gain_mean": rounded(float(gains.mean())),
            "last_gain_median": rounded(float(np.median(gains))), "flat_gain": flat_gain,
            "flattened": bool(gains.mean() < flat_gain)}


def gate_weights(block: dict) -> dict[str, dict[str, float]]:
    """Mean over seeds of the gate weights per teacher: {train|test: {teacher: w}}; {} without a gate."""
    out = {}
    for split in ("train", "test"):
        rows = [s[f"gate_weights_{split}"] for s in block["seeds"].values() if f"gate_weights_{split}" in s]
        if rows:
            out[split] = {t: rounded(np.mean([r[t] for r in rows])) for t in rows[0]}
    return out
