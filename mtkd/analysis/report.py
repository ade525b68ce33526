"""reports/report.html: the headline, then every registered figure with its reading sentence."""

from __future__ import annotations

from mtkd.analysis.bootstrap import BOOTSTRAP_SEED, N_BOOTSTRAP
from mtkd.analysis.page import Page, html_table
from mtkd.analysis.readings import headline_sentence, interval, pct, score, signed
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
        single, multi, adv, boot, gap = (s["best_single"], s["best_multi"], s["multi_advantage_pp"], s["bootstrap"],
                                         s["gap_closed"])
        rows.append([
            task, m,
            f"{s['best_teacher']['name']} {score(s['best_teacher']['test'], m)}" if s["best_teacher"] else "n/a",
            score(s["none"]["test"], m) if s["none"] else "n/a",
            f"{single['strategy']} {score(single['test'], m)}" if single else "n/a",
            f"{multi['strategy']} {score(multi['test'], m)}" if multi else "n/a",
            f"{signed(adv['mean'])} {interval(adv['ci95_low'], adv['ci95_high'])}" if adv else "n/a",
            f"{signed(boot['diff_pp'])} {interval(boot['ci95_low'], boot['ci95_high'])}" if boot else "n/a",
            boot["verdict"] if boot else "n/a",
            f"{pct(gap['best_single'])} / {pct(gap['best_multi'])}",
        ])
    return html_table(["task", "metric", "best teacher", "none", "best single", "best multi",
                       "advantage pp (seeds, 95% CI)", "bootstrap pp (95% CI)", "verdict", "gap closed single / multi"],
                      rows)


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
              "reported on test. Advantage: paired per-seed differences, t-interval. Bootstrap: "
              f"{N_BOOTSTRAP} paired resamples of test examples (seed {BOOTSTRAP_SEED}), students averaged over seeds. "
              "Gap closed = (student − none) / (best teacher − none).")
    figures = registered_figures()
    for task in analysis.tasks:
        page.heading(f"Task {task}")
        for figure in (f for f in figures if f.per_task):
            add_figure(page, figure, analysis, task)
    page.heading("All tasks")
    for figure in (f for f in figures if not f.per_task):
        add_figure(page, figure, analysis)
    page.raw('<p class="note">T × α grids: after a sweep (<code>dvc exp run --queue -S distill.T=… -S distill.alpha=…</code>), '
             '<code>python -m mtkd.sweep</code> draws them in reports/sweep.html, chosen on validation.</p>')
    return page
