"""reports/report.html: the headline, then every registered figure with its reading sentence."""

from __future__ import annotations

import html

from mtkd.analysis.page import Page, html_table
from mtkd.analysis.readings import headline_sentence, pct, pp, pp_interval, score
from mtkd.stats import BOOTSTRAP_SEED, N_RESAMPLES
from mtkd.analysis.registry import Analysis, Figure, registered_figures

TITLE = "mtkd report"


def setup_sentence(setup: dict) -> str:
    return (f"Tasks: {', '.join(setup['tasks'])}. Teachers: {', '.join(setup['teachers'])}. "
            f"Strategies: {', '.join(setup['strategies'])}. Seeds: {', '.join(map(str, setup['seeds']))}. "
            "Test is used for reporting only.")


def headline_table(summary: dict) -> str:
    rows = []
    for task, s in summary.items():
        m = s["primary_metric"]
        single, multi, h, gap = s["best_single"], s["best_multi"], s.get("headline"), s["gap_closed"]
        sel = (h or {}).get("selection") or {}
        rows.append([
            task, m,
            f"{s['best_teacher']['name']} {score(s['best_teacher']['test'], m)}" if s["best_teacher"] else "n/a",
            score(s["none"]["test"], m) if s["none"] else "n/a",
            f"{single['strategy']} {score(single['test'], m)}" if single else "n/a",
            f"{multi['strategy']} {score(multi['test'], m)}" if multi else "n/a",
            f"{pp(h['diff'])} {pp_interval(h['ci95_low'], h['ci95_high'])}" if h else "n/a",
            pp_interval(h["ci_adj_low"], h["ci_adj_high"]) if h else "n/a",
            f"{h['prob_improvement']:.2f}" if h and h["prob_improvement"] is not None else "n/a",
            h["verdict"] if h else "n/a",
            pct(sel.get("pair_share")),
            f"{100 * h['mdd']:.1f}" if h and h.get("mdd") is not None else "n/a",
            f"{pct(gap['best_single'])} / {pct(gap['best_multi'])}",
        ])
    return html_table(["task", "metric", "best teacher", "none", "best single", "best multi",
                       "multi − single pp (95% CI)", "Holm-adjusted CI", "P(multi > single)", "verdict",
                       "same pair on resampled validation", "detectable pp (80% power)", "gap closed single / multi"],
                      rows)


def limits_list(summary: dict) -> str:
    items = list(dict.fromkeys(limit for s in summary.values() for limit in s.get("limits", [])))
    return "<ul>" + "".join(f"<li>{html.escape(limit)}</li>" for limit in items) + "</ul>" if items else ""


def add_figure(page: Page, figure: Figure, analysis: Analysis, task: str | None = None) -> None:
    """``figure`` for ``task`` on ``page`` with its reading (and details), or its note where it is not drawn."""
    if figure.drawn_if(analysis, task):
        page.figure(figure.draw(analysis, task), figure.div_id(task), figure.reading(analysis, task))
        if figure.details:
            page.raw(figure.details(analysis, task))
    elif figure.absent_note:
        page.note(figure.absent_note.format(task=task))


def build_report(analysis: Analysis) -> Page:
    """The whole report: headline, each task's figures, then the figures over all tasks."""
    page = Page(TITLE)
    page.heading("Multi-teacher knowledge distillation: results", level=1)
    page.note(setup_sentence(analysis.setup))
    page.heading("Headline: best multi-teacher vs best single-teacher student")
    page.raw(headline_table(analysis.summary))
    for task, s in analysis.summary.items():
        page.reading(headline_sentence(task, s))
    page.note("Best single / multi and best teacher are chosen on the validation primary metric and "
              f"reported on test. Intervals: {N_RESAMPLES} hierarchical bootstrap resamples (seed {BOOTSTRAP_SEED}) that "
              "draw seeds and whole test groups (rt: movies) with replacement, every student on the same draws, paired "
              "by seed; the difference is of seed means. Holm adjusts over every comparison of the matrix; a winner "
              "is named only when the adjusted interval excludes 0. Gap closed = (student − none) / (best teacher − none).")
    if limits := limits_list(analysis.summary):
        page.heading("What this design cannot tell")
        page.raw(limits)
    figures = registered_figures()
    for task in analysis.tasks:
        page.heading(f"Task {task}")
        for figure in (f for f in figures if f.per_task and f.applies(task, analysis.setup["strategies"])):
            add_figure(page, figure, analysis, task)
    page.heading("All tasks")
    for figure in (f for f in figures if not f.per_task):
        add_figure(page, figure, analysis)
    page.raw('<p class="note">T × α grids: after a sweep (<code>dvc exp run --queue -S distill.T=… -S distill.alpha=…</code>), '
             '<code>python -m mtkd.sweep</code> draws them in reports/sweep.html, chosen on validation.</p>')
    return page
