"""The analyze stage's I/O edge: read every input, compute every number, write every output.

:func:`run_analysis` is what ``python -m stages.analyze`` runs; :func:`report_from_metrics`
redraws the report from the committed ``metrics/`` and ``plots/curves/`` alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mtkd.analysis import verdict
from mtkd.analysis.human import human_fidelity
from mtkd.analysis.inputs import TaskInputs, load_task_inputs, read_curves, read_distill, read_json, task_curves
from mtkd.analysis.outputs import METRICS, REPORT, RESULTS, write_csv
from mtkd.analysis.page import Page
from mtkd.analysis.regions import agreement_analysis, base_failure_shares, failure_analysis, teacher_confidence
from mtkd.analysis.registry import Analysis, plot_tables
from mtkd.analysis.report import build_report
from mtkd.analysis.tables import (best_of_kind, convergence, gate_weights, method_kind, results_rows, results_table, rounded,
                                  strategy_scores, task_summary)
from mtkd.analysis.transfer import transfer_block
from mtkd.errors import MtkdError
from mtkd.io import write_json
from mtkd.metrics import softmax


@dataclass
class TaskResults:
    summary: dict
    agreement: dict
    failures: dict
    confidence: dict
    rows: list[dict]
    gates: dict
    comparisons: dict


def analyse_task(inp: TaskInputs, teachers: list[str], seeds: list, limits: list[str] | None = None,
                 human_teachers: list[str] = (), fused_teachers: list[str] | None = None) -> TaskResults:
    """Every number of one task from its loaded inputs (no I/O); ``human_teachers``: those of kind ``human``
    (references: their students are not contenders, nor are they the best teacher); ``fused_teachers``:
    those the fusions read (None: every teacher)."""
    primary, C = inp.meta["primary_metric"], inp.meta["num_classes"]
    y, groups = inp.labels["test"], inp.groups["test"]
    kinds = {s: reference_kind(method_kind(s, teachers), s, human_teachers) for s in inp.distill}
    scores = {s: strategy_scores(b, primary) for s, b in inp.distill.items()}
    teacher_scores = {t: {"validation": rounded(m["validation"][primary]), "test": rounded(m["test"][primary])}
                      for t, m in inp.teacher_metrics.items()}
    teacher_preds = inp.teacher_logits["test"].argmax(axis=2)
    student_preds = {s: {seed: z.argmax(axis=1) for seed, z in by.items()} for s, by in inp.student_test.items()}

    # One plan: every student is scored on the same resamples of seeds and test groups.
    plan = verdict.make_plan(groups, len(seeds))
    intervals = {s: verdict.strategy_interval(y, p, primary, C, plan) for s, p in student_preds.items()}
    for s, iv in intervals.items():  # the seeds-only t-interval of distill's metrics is replaced
        scores[s]["test"].update(ci95_low=iv["ci95_low"], ci95_high=iv["ci95_high"])
    pairs = verdict.compare_students(y, groups, student_preds, kinds, primary, C, plan)
    validation = {s: v["validation"] for s, v in scores.items()}
    best_single, best_multi = best_of_kind(validation, kinds, "single"), best_of_kind(validation, kinds, "multi")
    val_preds = {s: {seed: z.argmax(axis=1) for seed, z in by.items()} for s, by in inp.student_validation.items()}
    stability = (verdict.selection(inp.labels["validation"], inp.groups["validation"], val_preds, kinds, primary, C)
                 if val_preds else None)
    head = verdict.headline(pairs, best_multi, best_single, stability)
    summary = task_summary(primary, teacher_scores, scores, kinds, len(y), len(seeds), head,
                           contenders=[t for t in teacher_scores if t not in human_teachers])
    for s, iv in intervals.items():
        summary["strategies"][s]["interval_note"] = iv["note"]
    reference = summary["gap_closed"]["reference_teacher"]  # the best teacher, chosen on validation
    summary["gap_closed"]["intervals"] = verdict.gap_intervals(
        y, groups, student_preds, teacher_preds[teachers.index(reference)] if reference else None, primary, C, plan)
    probs = {s: {seed: softmax(z) for seed, z in by.items()} for s, by in inp.student_test.items()}
    for s, row in verdict.positive_intervals(y, probs, inp.student_fused, plan).items():
        summary["strategies"][s].update(row)
    summary["n_groups"] = len(set(groups))
    summary["group_by"] = inp.meta.get("group_by", "example")
    summary["convergence"] = convergence(inp.curves, primary)
    summary["limits"] = list(limits or []) + convergence_limits(summary["convergence"], primary)
    if inp.human:  # a task with rater data: every teacher and student against the raters' distribution
        student_probs = {"test": probs, "validation": {s: {seed: softmax(z) for seed, z in by.items()}
                                                       for s, by in inp.student_validation.items()}}
        teacher_probs = {t: softmax(inp.teacher_logits["test"][k]) for k, t in enumerate(teachers)}
        summary["human"] = human_fidelity(inp.human, teacher_probs, student_probs, kinds, plan, list(human_teachers),
                                          fused_teachers)
    if (block := transfer_block(inp.distill, primary, inp.teacher_logits["test"], y, C)) is not None:
        summary["transfer"] = block  # `+transfer` variants (issue #17): fidelity against generalisation
    comparisons = {"metric": primary, "n_seeds": len(seeds), "n_groups": summary["n_groups"],
                   "group_by": summary["group_by"], "n_resamples": plan.n_resamples if plan else None,
                   "bootstrap_seed": plan.seed if plan else None, "pairs": pairs}
    # Where the *model* teachers agree and what they did on each student error: a human teacher is the
    # raters' own distribution (a reference, near the label by construction), and counting it would
    # leave almost no example on which "every teacher is wrong".
    models = [k for k, t in enumerate(teachers) if t not in human_teachers]
    model_preds = teacher_preds[models]
    agreement = agreement_analysis(y, model_preds, [teachers[k] for k in models], student_preds)
    failures = {"base_share": base_failure_shares(y, model_preds),
                "strategies": {s: failure_analysis(y, model_preds, p) for s, p in student_preds.items()}}
    conf = teacher_confidence(teachers, inp.teacher_logits)
    for t, in_sample in inp.train_in_sample.items():  # the "train" entry is then out-of-fold: what the student sees
        conf[t]["train_in_sample"] = {k: rounded(v) for k, v in in_sample.items()}
    gates = {s: w for s, b in inp.distill.items() if (w := gate_weights(b))}
    return TaskResults(summary, agreement, failures, conf, results_rows(inp.task, inp.teacher_metrics, inp.distill), gates,
                       comparisons)


def reference_kind(kind: str, strategy: str, human_teachers) -> str:
    """A ``human`` teacher's own student is the reference (kind ``reference``), not a single-teacher contender."""
    from mtkd.fusion import SINGLE_PREFIX

    return "reference" if kind == "single" and strategy.removeprefix(SINGLE_PREFIX) in human_teachers else kind


def design_limits(params, num_classes: int) -> list[str]:
    """What this design cannot tell, from params (README Findings, issue #12)."""
    limits = ["Each teacher is trained once (one seed): teacher variation is not in any interval, so a conclusion "
              "holds for these teacher checkpoints, not for the teacher recipes."]
    student_init = getattr(params.student, "model_name_or_path", None)
    shared = [t for t, cfg in params.teachers.items() if student_init and getattr(cfg, "model_name_or_path", None) == student_init]
    if shared:
        limits.append(f"The student is initialised from the same pretrained weights as {', '.join(shared)} "
                      f"({student_init}): a single-teacher student of {', '.join(shared)} is distilled from a "
                      "relative, which may favour it over other teachers.")
    if num_classes == 2 and len(params.teachers) >= 3:
        limits.append("The task is binary: three or more teachers can never all disagree, so fusion can only "
                      "arbitrate between two answers.")
    T, alpha, student = params.distill.T, params.distill.alpha, params.student
    if isinstance(T, dict):
        limits.append(f"T is set per strategy (distill.T's map, chosen on validation by a T sweep: README, \"Sweeps\"), "
                      f"but α = {alpha:g} serves every strategy, not tuned per strategy: a strategy that needs another α "
                      "is not given it here.")
    else:
        limits.append(f"Students train at T = {T:g} and α = {alpha:g} for every strategy, not tuned per strategy on "
                      "validation: a strategy that needs another temperature is not given it here.")
    if getattr(student, "early_stopping_patience", None) is None:  # with it, convergence_limits reads the curves
        limits.append(f"Students train for {student.num_train_epochs} epoch(s) whatever their validation curve does: "
                      "a strategy that needs longer training is not given it here.")
    return limits


def convergence_limits(conv: dict | None, primary: str) -> list[str]:
    """A limit when the students' validation curves had not flattened by their last evaluation."""
    if conv is None or conv["flattened"]:
        return []
    return [f"The students are not trained to convergence: the best validation {primary} came at the last "
            f"evaluation in {conv['best_at_last']} of {conv['runs']} runs, and the last evaluation still gained "
            f"{100 * conv['last_gain_mean']:+.2f} pp on average (flat: below {100 * conv['flat_gain']:.1f} pp). "
            "Longer training could move every student, and not necessarily all alike."]


def _setup(params) -> dict:
    return {"tasks": list(params.data.tasks), "teachers": list(params.teachers),
            "strategies": list(params.distill.strategies), "seeds": list(params.seeds)}


def write_outputs(root: Path, analysis: Analysis, results_rows_all: list[dict], report: Page) -> None:
    """Every output of the module docstring of :mod:`mtkd.analysis`, under ``root``."""
    write_csv(root / RESULTS, results_table(results_rows_all))
    for field, path in METRICS.items():
        write_json(root / path, getattr(analysis, field))
    for table in plot_tables():
        write_csv(root / table.path, table.frame(analysis))
    report.write(root / REPORT)


def run_analysis(params, root: Path = Path(".")) -> dict:
    """Read every input under ``root``, write every output under ``root``; return the results."""
    root = Path(root)
    setup = _setup(params)
    teachers, strategies, seeds = setup["teachers"], setup["strategies"], setup["seeds"]
    distill_all, curves_all = read_distill(root, strategies)
    results, curves = {}, {}
    for task in setup["tasks"]:
        inp = load_task_inputs(root, task, teachers, strategies, seeds, distill_all, curves_all)
        results[task] = analyse_task(inp, teachers, seeds, design_limits(params, inp.meta["num_classes"]),
                                     [t for t, cfg in params.teachers.items() if cfg.kind == "human"],
                                     params.distill.fused_teachers)
        curves[task] = (inp.curves, inp.teacher_curves)
        del inp  # one task's logits in memory at a time
    analysis = Analysis(summary={t: r.summary for t, r in results.items()},
                        agreement={t: r.agreement for t, r in results.items()},
                        failures={t: r.failures for t, r in results.items()},
                        confidence={t: r.confidence for t, r in results.items()},
                        comparisons={t: r.comparisons for t, r in results.items()},
                        curves=curves, gates={t: r.gates for t, r in results.items()}, setup=setup)
    report = build_report(analysis)
    write_outputs(root, analysis, [row for r in results.values() for row in r.rows], report)
    return {"summary": analysis.summary, "comparisons": analysis.comparisons, "agreement": analysis.agreement,
            "failures": analysis.failures,
            "teacher_confidence": analysis.confidence, "readings": report.readings, "figures": report.figures}


def analysis_from_metrics(params, root: Path = Path(".")) -> Analysis:
    """The :class:`Analysis` from what ``analyze`` and ``distill`` commit to git (``metrics/``, ``plots/curves/``)."""
    root = Path(root)
    setup = _setup(params)
    tasks, teachers, strategies = setup["tasks"], setup["teachers"], setup["strategies"]
    how = "dvc repro analyze"
    loaded = {field: read_json(root / path, how) for field, path in METRICS.items()}
    for field, by_task in loaded.items():
        if missing := [t for t in tasks if t not in by_task]:
            raise MtkdError(f"{root / METRICS[field]}: no results for task(s) {missing} (re-run `{how}`)")
    distill_all, curves_all = read_distill(root, strategies)
    curves = {task: (task_curves(curves_all, task, strategies),
                     {t: read_curves(root / "plots/curves/teachers" / f"{t}-{task}.json") for t in teachers})
              for task in tasks}
    gates = {task: {s: w for s in strategies if (w := gate_weights(distill_all[s].get(task) or {"seeds": {}}))}
             for task in tasks}
    by_task = {field: {t: loaded[field][t] for t in tasks} for field in METRICS}
    return Analysis(**by_task, curves=curves, gates=gates, setup=setup)


def report_from_metrics(params, root: Path = Path(".")) -> Page:
    """The report redrawn without logits or predictions; the same bytes as :func:`run_analysis` writes."""
    return build_report(analysis_from_metrics(params, root))
