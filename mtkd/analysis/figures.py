"""Every figure of the report, registered where it is defined, in page order.

Each figure is its drawing function (plotly), decorated with ``@register_figure``: its id, per
task or global, and its reading sentence (from :mod:`mtkd.analysis.readings`). Where ``dvc plots``
shows it too, its ``table`` is the function making that table's rows, decorated with
``@plot_table``: its path under ``plots/``, its columns and its dvc.yaml plot spec.

To add a figure: write it here, where it should sit on the page, and give it its reading in
``tests/test_figures.py``; every other check there covers it as it is.
"""

from __future__ import annotations

import plotly.colors
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from mtkd.analysis.page import html_table
from mtkd.analysis.readings import (agreement_sentence, comparisons_sentence, confidence_sentence, curves_sentence,
                                    failures_sentence, gap_sentence, gate_sentence, human_sentence, pct, ranking_sentence,
                                    score, strategies_sentence, transfer_sentence)
from mtkd.analysis.regions import CONFIDENCE_SPLITS, FAILURES, HIGH_CONFIDENCE, REGIONS
from mtkd.analysis.registry import Analysis, DvcPlot, plot_table, register_figure
from mtkd.data import has_rater_data

KIND_COLOURS = {"baseline": "#7f7f7f", "single": "#1f77b4", "multi": "#d62728", "teacher": "#2ca02c",
                "reference": "#9467bd"}


def _layout(fig, title: str, height: int = 420, **kw):
    fig.update_layout(title=title, template="plotly_white", height=height, margin=dict(l=60, r=30, t=60, b=50), **kw)
    return fig


def _label(*parts) -> str:
    """The ``label`` column of a table: one bar per row in dvc's bar templates."""
    return " · ".join(str(p) for p in parts)


def _students(summary: dict) -> list[str]:
    """Strategies that distil from a teacher (the baseline closes no gap by definition)."""
    return [s for s, v in summary["strategies"].items() if v["kind"] != "baseline"]


# ---------------------------------------------------------------------------------------------
# Per task: students by strategy


@plot_table("plots/strategies.csv", ("strategy", "task", "kind", "test_primary", "ci95_low", "ci95_high"),
            DvcPlot("bar_horizontal", x="test_primary", y="strategy",
                    title="Students by strategy (test, mean over seeds)", headline=True))
def strategies_table(a: Analysis) -> list[dict]:
    """Per task, teachers (kind teacher, no interval) then students: test primary metric."""
    rows = []
    for task, s in a.summary.items():
        rows += [{"strategy": t, "task": task, "kind": "teacher", "test_primary": v["test"], "ci95_low": v["test"],
                  "ci95_high": v["test"]} for t, v in s["teachers"].items()]
        rows += [{"strategy": st, "task": task, "kind": v["kind"], "test_primary": v["test"], "ci95_low": v["ci95_low"],
                  "ci95_high": v["ci95_high"]} for st, v in s["strategies"].items()]
    return rows


@register_figure("strategies", per_task=True, table=strategies_table,
                 reading=lambda a, task: strategies_sentence(task, a.summary[task]))
def fig_strategies(a: Analysis, task: str):
    s = a.summary[task]
    m = s["primary_metric"]
    names = list(s["strategies"])[::-1]
    v = [s["strategies"][n] for n in names]
    fig = go.Figure(go.Bar(
        x=[100 * x["test"] for x in v], y=names, orientation="h",
        marker_color=[KIND_COLOURS[x["kind"]] for x in v],
        error_x=dict(type="data", symmetric=False,
                     array=[0 if x["ci95_high"] is None else 100 * (x["ci95_high"] - x["test"]) for x in v],
                     arrayminus=[0 if x["ci95_low"] is None else 100 * (x["test"] - x["ci95_low"]) for x in v]),
        hovertemplate="%{y}: %{x:.2f}<extra></extra>"))
    at: dict[float, list[str]] = {}
    for t, tv in s["teachers"].items():  # one line per distinct score, naming every teacher on it
        at.setdefault(tv["test"], []).append(t)
    for x, names_at in at.items():
        fig.add_vline(x=100 * x, line_dash="dot", line_color=KIND_COLOURS["teacher"],
                      annotation_text=f"teacher {', '.join(names_at)}", annotation_position="top")
    lo = min([100 * (x["test"] if x["ci95_low"] is None else x["ci95_low"]) for x in v]
             + [100 * t["test"] for t in s["teachers"].values()])
    hi = max([100 * (x["test"] if x["ci95_high"] is None else x["ci95_high"]) for x in v]
             + [100 * t["test"] for t in s["teachers"].values()])
    pad = max(1.0, 0.1 * (hi - lo))
    fig.update_xaxes(title=f"test {m} ×100 (mean over seeds; 95% CI, seeds × test {s.get('group_by', 'example')}s)",
                     range=[lo - pad, hi + pad])
    return _layout(fig, f"{task}: students by strategy (dotted: teachers)", height=120 + 40 * len(names))


# ---------------------------------------------------------------------------------------------
# Per task: the comparison matrix (issue #12)


@plot_table("plots/comparisons.csv", ("label", "task", "a", "b", "diff_pp", "ci95_low_pp", "ci95_high_pp",
                                      "ci_adj_low_pp", "ci_adj_high_pp", "p_holm", "prob_improvement", "verdict"),
            DvcPlot("bar_horizontal", x="diff_pp", y="label",
                    title="Paired test differences A - B (pp), seeds x test groups bootstrap", headline=True))
def comparisons_table(a: Analysis) -> list[dict]:
    """Every comparison of the matrix: A − B in pp with its 95% and Holm-adjusted intervals."""

    def pp(v):
        return None if v is None else round(100 * v, 4)

    return [{"label": _label(task, f"{v['a']} - {v['b']}"), "task": task, "a": v["a"], "b": v["b"],
             "diff_pp": pp(v["diff"]), "ci95_low_pp": pp(v["ci95_low"]), "ci95_high_pp": pp(v["ci95_high"]),
             "ci_adj_low_pp": pp(v["ci_adj_low"]), "ci_adj_high_pp": pp(v["ci_adj_high"]), "p_holm": v["p_holm"],
             "prob_improvement": v["prob_improvement"], "verdict": v["verdict"]}
            for task, c in a.comparisons.items() for v in c["pairs"].values()]


def _cell(v: dict) -> str:
    if v["ci_adj_low"] is None:
        return f"{100 * v['diff']:+.1f}"
    mark = "*" if v["reject_holm"] else ""
    return (f"{100 * v['diff']:+.1f}{mark}<br>[{100 * v['ci_adj_low']:+.1f}, {100 * v['ci_adj_high']:+.1f}]"
            f"<br>P={v['prob_improvement']:.2f}")


@register_figure("comparisons", per_task=True, table=comparisons_table,
                 reading=lambda a, task: comparisons_sentence(task, a.comparisons[task]),
                 drawn_if=lambda a, task: bool(a.comparisons.get(task, {}).get("pairs")),
                 absent_note="{task}: no comparison matrix (needs single- or multi-teacher students).")
def fig_comparisons(a: Analysis, task: str):
    pairs = a.comparisons[task]["pairs"].values()
    rows = list(dict.fromkeys(v["a"] for v in pairs))
    cols = list(dict.fromkeys(v["b"] for v in pairs))
    at = {(v["a"], v["b"]): v for v in pairs}
    z = [[None if (r, c) not in at else 100 * at[r, c]["diff"] for c in cols] for r in rows]
    text = [["" if (r, c) not in at else _cell(at[r, c]) for c in cols] for r in rows]
    span = max([abs(x) for row in z for x in row if x is not None] + [0.5])
    fig = go.Figure(go.Heatmap(z=z, x=cols, y=rows, text=text, texttemplate="%{text}", colorscale="RdBu",
                               zmid=0, zmin=-span, zmax=span, colorbar=dict(title="A − B (pp)"),
                               hovertemplate="%{y} − %{x}: %{z:.2f} pp<extra></extra>"))
    fig.update_xaxes(title="B (single-teacher students, none)")
    fig.update_yaxes(title="A", autorange="reversed")
    return _layout(fig, f"{task}: test {a.summary[task]['primary_metric']} A − B, pp (Holm-adjusted 95% CI; * excludes 0)",
                   height=160 + 70 * len(rows))


# ---------------------------------------------------------------------------------------------
# Per task: gap closed


@plot_table("plots/gap_closed.csv", ("label", "task", "strategy", "kind", "reference_teacher", "gap_closed"),
            DvcPlot("bar_horizontal", x="gap_closed", y="label",
                    title="Gap closed = (student - none) / (best teacher - none), test"))
def gap_closed_table(a: Analysis) -> list[dict]:
    """Share of the none → best-teacher gap each student closes (fraction; empty if undefined)."""
    return [{"label": _label(task, st), "task": task, "strategy": st, "kind": s["strategies"][st]["kind"],
             "reference_teacher": s["gap_closed"]["reference_teacher"], "gap_closed": s["gap_closed"]["by_strategy"][st]}
            for task, s in a.summary.items() for st in _students(s)]


@register_figure("gap", per_task=True, table=gap_closed_table,
                 reading=lambda a, task: gap_sentence(task, a.summary[task]))
def fig_gap(a: Analysis, task: str):
    s = a.summary[task]
    g = s["gap_closed"]["by_strategy"]
    names = _students(s)
    fig = go.Figure(go.Bar(x=names, y=[None if g[n] is None else 100 * g[n] for n in names],
                           marker_color=[KIND_COLOURS[s["strategies"][n]["kind"]] for n in names]))
    fig.update_yaxes(title=f"gap closed to {s['gap_closed']['reference_teacher']} (%)")
    return _layout(fig, f"{task}: share of the none → best-teacher gap closed (test)")


# ---------------------------------------------------------------------------------------------
# Per task: teacher agreement regions


@plot_table("plots/agreement.csv", ("label", "task", "region", "region_share", "strategy", "student_accuracy"),
            DvcPlot("bar_horizontal", x="student_accuracy", y="label",
                    title="Student test accuracy per teacher-agreement region and strategy"))
def agreement_table(a: Analysis) -> list[dict]:
    """Student accuracy (mean over seeds) per agreement region and strategy; empty regions left out."""
    return [{"label": _label(task, r, s), "task": task, "region": r, "region_share": ag["share"][r], "strategy": s,
             "student_accuracy": acc[r]}
            for task, ag in a.agreement.items()
            for r in REGIONS if ag["count"][r] > 0 for s, acc in ag["student_accuracy"].items()]


@register_figure("agreement", per_task=True, table=agreement_table,
                 reading=lambda a, task: agreement_sentence(task, a.agreement[task]))
def fig_agreement(a: Analysis, task: str):
    ag = a.agreement[task]
    regions = [r for r in REGIONS if ag["count"][r] > 0]
    labels = [f"{r.replace('_', ' ')} ({100 * ag['share'][r]:.1f}%)" for r in regions]
    fig = go.Figure([go.Bar(name=s, x=labels, y=[None if acc[r] is None else 100 * acc[r] for r in regions])
                     for s, acc in ag["student_accuracy"].items()])
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="student accuracy (%) on test, mean over seeds")
    return _layout(fig, f"{task}: student accuracy by teacher agreement region (share of test examples)")


# ---------------------------------------------------------------------------------------------
# Per task: failure categories

SHORT_FAILURE = {"all_teachers_wrong": "all wrong", "all_teachers_right": "all right", "teachers_split": "split"}


@plot_table("plots/failures.csv", ("label", "task", "strategy", "category", "errors_per_seed", "share_of_errors"),
            DvcPlot("bar_horizontal", x="errors_per_seed", y="label",
                    title="Student errors by what the teachers did (mean over seeds)"))
def failures_table(a: Analysis) -> list[dict]:
    """Student errors per failure category and strategy (mean count over seeds, pooled share)."""
    return [{"label": _label(task, s, f"teachers {SHORT_FAILURE[c]}"), "task": task, "strategy": s, "category": c,
             "errors_per_seed": v["count_per_seed"][c], "share_of_errors": v["share"][c]}
            for task, f in a.failures.items() for s, v in f["strategies"].items() for c in FAILURES]


@register_figure("failures", per_task=True, table=failures_table,
                 reading=lambda a, task: failures_sentence(task, a.failures[task]))
def fig_failures(a: Analysis, task: str):
    f = a.failures[task]
    names = list(f["strategies"])
    fig = go.Figure([go.Bar(name=c.replace("_", " "), x=names, y=[f["strategies"][n]["count_per_seed"][c] for n in names])
                     for c in FAILURES])
    fig.update_layout(barmode="stack")
    fig.update_yaxes(title="student errors on test (mean over seeds)")
    return _layout(fig, f"{task}: what the teachers did on each student error")


# ---------------------------------------------------------------------------------------------
# Per task: training curves (no dvc table: DVCLive's plots hold them)


def _has_curves(a: Analysis, task: str) -> bool:
    rows, teacher_rows = a.curves[task]
    return any(rows.values()) or any(teacher_rows.values())


@register_figure("curves", per_task=True, drawn_if=_has_curves,
                 absent_note="{task}: no training curves found under plots/curves/.",
                 reading=lambda a, task: curves_sentence(task, a.curves[task][0], a.summary[task]["primary_metric"],
                                                         a.summary[task].get("convergence")))
def fig_curves(a: Analysis, task: str):
    rows, teacher_rows = a.curves[task]
    primary = a.summary[task]["primary_metric"]
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


# ---------------------------------------------------------------------------------------------
# Per task: learned gate weights (only where a strategy has a gate)


def gate_table(a: Analysis, task: str) -> str:
    """Gate weight per teacher beside that teacher's own test score: does the gate trust the better teachers?"""
    s = a.summary[task]
    m = s["primary_metric"]
    rows = [[strategy, split, t, f"{v:.3f}", score(s["teachers"][t]["test"], m) if t in s["teachers"] else "n/a"]
            for strategy, weights in a.gates[task].items() for split, w in weights.items() for t, v in w.items()]
    return html_table(["strategy", "split", "teacher", "mean gate weight", f"teacher test {m}"], rows)


@register_figure("gates", per_task=True, drawn_if=lambda a, task: bool(a.gates.get(task)),
                 reading=lambda a, task: " ".join(gate_sentence(task, s, w) for s, w in a.gates[task].items()),
                 details=gate_table)
def fig_gates(a: Analysis, task: str):
    s = a.summary[task]
    traces = []
    for strategy, weights in a.gates[task].items():
        for split, w in weights.items():
            traces.append(go.Bar(name=f"{strategy} ({split})", x=list(w), y=list(w.values())))
    teachers = [t for t in next(iter(next(iter(a.gates[task].values())).values())) if t in s["teachers"]]
    traces.append(go.Scatter(name=f"teacher test {s['primary_metric']}", x=teachers, mode="markers",
                             y=[s["teachers"][t]["test"] for t in teachers], marker=dict(symbol="diamond", size=12,
                                                                                          color=KIND_COLOURS["teacher"])))
    fig = go.Figure(traces)
    fig.update_layout(barmode="group")
    fig.update_yaxes(title="mean gate weight (bars) · teacher test score (diamonds)", range=[0, 1])
    return _layout(fig, f"{task}: learned gate weight per teacher, beside each teacher's test score")


# ---------------------------------------------------------------------------------------------
# Per task, where examples carry rater data: teachers and students against the human distribution


HUMAN_PANELS = (("kl_human", "KL(human ‖ model), nats"), ("rater_agreement", "agreement with a random rater (%)"),
                ("human_ece", "calibration vs human frequencies (ECE)"))


def human_table(a: Analysis, task: str) -> str:
    """Every score against the raters' distribution, teachers then students (mean over seeds, 95% interval)."""
    h = a.summary[task]["human"]

    def cell(v: dict) -> str:
        ci = "" if v["ci95_low"] is None else f" [{v['ci95_low']:.3f}, {v['ci95_high']:.3f}]"
        return f"{v['point']:.3f}{ci}"

    rows = [[t, "teacher", *(f"{v[k]:.3f}" for k, _ in HUMAN_PANELS), ""] for t, v in h["teachers"].items()]
    rows += [[s, v["kind"], *(cell(v[k]) for k, _ in HUMAN_PANELS),
              "" if v["validation_kl_human"] is None else f"{v['validation_kl_human']:.3f}"]
             for s, v in h["strategies"].items()]
    return html_table(["method", "kind", "test KL(human ‖ model)", "test agreement with a random rater",
                       "test human ECE", "validation KL"], rows)


@register_figure("human", per_task=True, applies=lambda task, strategies: has_rater_data(task), details=human_table,
                 drawn_if=lambda a, task: "human" in a.summary[task],
                 absent_note="{task}: no scores against the raters' distribution in metrics/summary.json (re-run analyze).",
                 reading=lambda a, task: human_sentence(task, a.summary[task]))
def fig_human(a: Analysis, task: str):
    h = a.summary[task]["human"]
    names = [*h["teachers"], *h["strategies"]]
    kinds = ["teacher"] * len(h["teachers"]) + [v["kind"] for v in h["strategies"].values()]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[title for _, title in HUMAN_PANELS])
    for col, (key, _) in enumerate(HUMAN_PANELS, start=1):
        scale = 100.0 if key == "rater_agreement" else 1.0
        points = [{"point": v[key], "ci95_low": None, "ci95_high": None} for v in h["teachers"].values()]
        points += [v[key] for v in h["strategies"].values()]
        fig.add_trace(go.Bar(
            x=names, y=[scale * p["point"] for p in points], marker_color=[KIND_COLOURS[k] for k in kinds],
            showlegend=False, hovertemplate="%{x}: %{y:.3f}<extra></extra>",
            error_y=dict(type="data", symmetric=False,
                         array=[0 if p["ci95_high"] is None else scale * (p["ci95_high"] - p["point"]) for p in points],
                         arrayminus=[0 if p["ci95_low"] is None else scale * (p["point"] - p["ci95_low"]) for p in points])),
            row=1, col=col)
    return _layout(fig, f"{task}: teachers (green) and students against the raters' distribution on test "
                        "(students: mean over seeds, 95% CI)", height=480)


# ---------------------------------------------------------------------------------------------
# Per task, where the run has `+transfer` variants (issue #17): fidelity against generalisation


FIDELITY_PANELS = (("agreement_fused", "test agreement with the fused teacher (%)", 100.0),
                   ("kl_fused", "test KL(fused ‖ student), nats", 1.0))
SETTING_SYMBOLS = {"train only": "circle", "transfer": "diamond"}


def _has_transfer(a: Analysis, task: str) -> bool:
    return "transfer" in a.summary[task]


def _transfer_in_run(task: str, strategies: list[str]) -> bool:
    """``applies``: the run has a ``+transfer`` student (without one, the report is as it was)."""
    from mtkd.fusion import transfer_base  # imports torch: only when a report is built

    return any(transfer_base(s) is not None for s in strategies)


def fidelity_table(a: Analysis, task: str) -> str:
    """Per student (mean over its seeds): test metric, agreement and KL with the fused teacher."""
    s = a.summary[task]
    t, m = s["transfer"], s["primary_metric"]
    by: dict[str, list[dict]] = {}
    for p in t["points"]:
        by.setdefault(p["strategy"], []).append(p)

    def mean(ps, k):
        v = [p[k] for p in ps if p[k] is not None]
        return sum(v) / len(v) if v else None

    rows = [[strategy, ps[0]["base"], ps[0]["setting"], len(ps), score(mean(ps, "test"), m),
             score(mean(ps, "agreement_fused"), "accuracy"),
             "n/a" if (kl := mean(ps, "kl_fused")) is None else f"{kl:.3f}"] for strategy, ps in by.items()]
    rows.append(["teachers' ensemble", "", "", "", score(t["ensemble"]["test"], m), "", ""])
    return html_table(["student", "base strategy", "setting", "seeds", f"test {m}",
                       "test agreement with the fused teacher", "test KL(fused ‖ student), nats"], rows)


@register_figure("fidelity", per_task=True, applies=_transfer_in_run, drawn_if=_has_transfer, details=fidelity_table,
                 reading=lambda a, task: transfer_sentence(task, a.summary[task]))
def fig_fidelity(a: Analysis, task: str):
    s = a.summary[task]
    t, m = s["transfer"], s["primary_metric"]
    palette = plotly.colors.qualitative.Plotly
    bases = list(dict.fromkeys(p["base"] for p in t["points"]))
    fig = make_subplots(rows=1, cols=2, subplot_titles=[title for _, title, _ in FIDELITY_PANELS], shared_yaxes=True)
    for col, (key, _, scale) in enumerate(FIDELITY_PANELS, start=1):
        for strategy in dict.fromkeys(p["strategy"] for p in t["points"]):
            ps = [p for p in t["points"] if p["strategy"] == strategy]
            base, setting = ps[0]["base"], ps[0]["setting"]
            fig.add_trace(go.Scatter(
                x=[None if p[key] is None else scale * p[key] for p in ps],
                y=[None if p["test"] is None else 100 * p["test"] for p in ps], mode="markers", name=strategy,
                legendgroup=strategy, showlegend=col == 1, text=[f"{strategy} seed {p['seed']}" for p in ps],
                marker=dict(color=palette[bases.index(base) % len(palette)], symbol=SETTING_SYMBOLS[setting], size=10),
                hovertemplate="%{text}: %{x:.3f}, %{y:.2f}<extra></extra>"), row=1, col=col)
        fig.add_hline(y=100 * t["ensemble"]["test"], line_dash="dash", line_color=KIND_COLOURS["teacher"],
                      annotation_text="teachers' ensemble", annotation_position="bottom right", row=1, col=col)
    fig.update_xaxes(title=FIDELITY_PANELS[0][1], row=1, col=1)
    fig.update_xaxes(title=FIDELITY_PANELS[1][1], row=1, col=2)
    fig.update_yaxes(title=f"test {m} ({'×100' if m == 'mcc' else '%'})", row=1, col=1)
    return _layout(fig, f"{task}: fidelity to the fused teacher against test {m} (one marker per student and seed; "
                        "circle: train only, diamond: + transfer set)", height=480)


# ---------------------------------------------------------------------------------------------
# All tasks: teacher confidence


@plot_table("plots/teacher_confidence.csv",
            ("label", "task", "teacher", "split", "mean_max_prob", "mean_entropy", "high_confidence_share"),
            DvcPlot("bar_horizontal", x="high_confidence_share", y="label",
                    title=f"Teacher confidence (share with max probability > {HIGH_CONFIDENCE})"))
def teacher_confidence_table(a: Analysis) -> list[dict]:
    """One row per task, teacher and split (not the mean over teachers)."""
    return [{"label": _label(task, t, split), "task": task, "teacher": t, "split": split, **v}
            for task, by in a.confidence.items() for t, splits in by.items() if t != "all_teachers"
            for split, v in splits.items()]


def confidence_table(a: Analysis, task: None = None) -> str:
    """Every confidence number (the mean over teachers too), in a table under the figure."""
    rows = [[task, t, split, f"{v['mean_max_prob']:.3f}", f"{v['mean_entropy']:.3f}", pct(v["high_confidence_share"])]
            for task, by in a.confidence.items() for t, splits in by.items() for split, v in splits.items()]
    return html_table(["task", "teacher", "split", "mean max prob", "mean entropy (nats)", f"max prob > {HIGH_CONFIDENCE}"],
                      rows)


@register_figure("confidence", per_task=False, table=teacher_confidence_table, details=confidence_table,
                 reading=lambda a, task: confidence_sentence(a.confidence))
def fig_confidence(a: Analysis, task: None = None):
    conf = a.confidence
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


# ---------------------------------------------------------------------------------------------
# All tasks: ranking of strategies


@plot_table("plots/ranking.csv", ("label", "task", "strategy", "kind", "rank", "test_primary"),
            DvcPlot("bar_horizontal_sorted", x="test_primary", y="label",
                    title="Ranking of strategies per task (test primary metric, mean over seeds)", headline=True))
def ranking_table(a: Analysis) -> list[dict]:
    """Per task, strategies by rank (1 = best test primary metric, mean over seeds)."""
    return [{"label": _label(task, f"#{v['rank']} {st}"), "task": task, "strategy": st, "kind": v["kind"],
             "rank": v["rank"], "test_primary": v["test"]}
            for task, s in a.summary.items()
            for st, v in sorted(s["strategies"].items(), key=lambda kv: (kv[1]["rank"], kv[0]))]


@register_figure("ranking", per_task=False, table=ranking_table, reading=lambda a, task: ranking_sentence(a.summary))
def fig_ranking(a: Analysis, task: None = None):
    summary = a.summary
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
