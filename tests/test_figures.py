"""The Figure registry: every registered figure checked alike, on the synthetic tree of ``test_analysis``.

Adding a figure: register it in ``mtkd/analysis/figures.py`` and give it its reading on the
synthetic tree in ``READINGS`` below; every other check here applies to it as it is.
"""

import dataclasses
import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

from mtkd import analysis as A
from mtkd.analysis.page import escape
from mtkd.analysis.registry import get_figure, plot_tables, register_figure, registered_figures
from mtkd.analysis.report import build_report
from mtkd.errors import MtkdError

from tests.test_analysis import _params, build_tree

ROOT = Path(__file__).resolve().parents[1]

# Each figure's reading sentence on the synthetic tree (hand-checked against test_analysis' numbers).
READINGS = {
    # single_a is the same student on both seeds: its interval is over the 10 test groups alone
    "fig-rt-strategies": "rt test accuracy: highest student is single_a 75.0% [50.0%, 100.0%]; none 52.5%; "
                         "best teacher (chosen on validation) a 75.0%.",
    "fig-rt-comparisons": "rt: of 8 comparisons (each multi vs each single, each vs none; 2 seeds × 10 test examples "
                          "resampled, Holm-adjusted), 0 exclude 0.",
    # every student is right on a subset of teacher a's examples and on nearly all of none's: within [0, 1]
    "fig-rt-gap": "rt: best multi average closes 89% [0%, 100%] and best single single_b closes 44% [0%, 100%] of "
                  "the 22.5 pp gap between none and the best teacher (a).",
    "fig-rt-agreement": "rt: teachers all agree on 75.0% of test examples; where they disagree, student accuracy "
                        "ranges from 50.0% (none) to 100.0% (single_a).",
    "fig-rt-failures": "rt: of all student errors (every strategy, mean over seeds), 68% are examples every teacher "
                       "also gets wrong, 11% examples every teacher gets right (transfer failed) and 22% examples "
                       "where the teachers split.",
    # every synthetic curve is V − 0.05/epoch at epochs 1 and 2: best last, a last gain of 2.5 pp everywhere
    "fig-rt-curves": "rt: students trained for 2 evaluation(s) up to epoch 2; final validation accuracy ranges from "
                     "47.5% (none, seed 0) to 77.5% (single_b, seed 0). Best evaluation last in 10 of 10 runs; last "
                     "gain +2.50 pp on average (not flattened: the threshold is 0.2 pp).",
    "fig-rt-gates": "rt gating: the gate puts the most weight on a (0.55 on test, uniform would be 0.33).",
    "fig-confidence": "rt test: most confident teacher a (mean max prob 0.990, 100% above 0.95), least c (0.750, 0%).",
    "fig-ranking": "Top-ranked strategy on test rt: single_a (75.0%), best-ranked multi-teacher strategy average "
                   "at rank 2 of 5 (72.5%).",
}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """(root, analysis, report html) of the synthetic tree after run_analysis."""
    root = build_tree(tmp_path_factory.mktemp("figures"))
    A.run_analysis(_params(), root)
    return root, A.analysis_from_metrics(_params(), root), (root / "reports/report.html").read_text(encoding="utf-8")


def _tasks(figure, analysis):
    """The tasks a figure is drawn for: per task, those it applies to (the human figure: tasks with rater data)."""
    return [t for t in analysis.tasks if figure.applies(t, analysis.setup["strategies"])] if figure.per_task else [None]


def test_every_figure_has_its_reading_here():
    assert list(READINGS) == A.figure_ids(["rt"]), "a registered figure needs its reading on the synthetic tree"


@pytest.mark.parametrize("figure", registered_figures(), ids=lambda f: f.id)
def test_figure_is_drawn_with_its_reading(figure, synthetic):
    _, analysis, html = synthetic
    assert re.fullmatch(r"[a-z][a-z_]*", figure.id)
    for task in _tasks(figure, analysis):
        div_id = figure.div_id(task)
        assert div_id == (f"fig-{task}-{figure.id}" if figure.per_task else f"fig-{figure.id}")
        assert figure.drawn_if(analysis, task), f"{div_id}: the synthetic tree has every analysis"
        sentence = figure.reading(analysis, task)
        assert sentence == READINGS[div_id]
        drawn = figure.draw(analysis, task)
        assert drawn.data and drawn.layout.title.text, f"{div_id}: a plotly figure with data and a title"
        assert (f'<figure class="mtkd-figure" data-figure="{div_id}">' in html
                and f'<figcaption class="reading">{escape(sentence)}</figcaption>' in html)


@pytest.mark.parametrize("figure", [f for f in registered_figures() if f.table], ids=lambda f: f.id)
def test_figure_table_is_written_declared_and_plottable(figure, synthetic):
    root, analysis, _ = synthetic
    table = figure.table
    assert re.fullmatch(r"plots/[a-z_]+\.csv", table.path)
    written = pd.read_csv(root / table.path)
    assert list(written.columns) == list(table.columns)
    assert (root / table.path).read_text(encoding="utf-8") == table.frame(analysis).to_csv(index=False, lineterminator="\n")
    assert len(written) > 0
    assert {table.plot.x, table.plot.y} <= set(table.columns)
    assert pd.api.types.is_numeric_dtype(written[table.plot.x]), f"{table.path}: x must be a number to draw a bar"
    entries = A.dvc_entries()
    assert table.path in A.OUTPUTS and table.path in entries["outs_no_cache"]
    assert {table.path: table.plot.spec()} in entries["plots"]


def test_get_figure_names_the_known_ones():
    assert get_figure("ranking").id == "ranking"
    known = ", ".join(f.id for f in registered_figures())
    with pytest.raises(MtkdError, match=re.escape(f"unknown figure 'rankings' (known: {known})")):
        get_figure("rankings")


def test_registering_an_id_or_a_table_twice_is_an_error():
    before = registered_figures()
    with pytest.raises(MtkdError, match="figure 'ranking' is registered twice"):
        register_figure("ranking", per_task=False, reading=lambda a, t: "")(lambda a, t: None)
    with pytest.raises(MtkdError, match=r"plots/ranking\.csv is already written by another figure"):
        register_figure("ranking2", per_task=False, reading=lambda a, t: "",
                        table=get_figure("ranking").table)(lambda a, t: None)
    assert registered_figures() == before


def test_figures_not_drawn_leave_their_note(synthetic):
    """Without curves the page says so where they would be; without a gate there is nothing to say."""
    _, analysis, _ = synthetic
    bare = dataclasses.replace(analysis, curves={"rt": ({}, {})}, gates={"rt": {}})
    page = build_report(bare)
    assert "fig-rt-curves" not in page.figures and "fig-rt-gates" not in page.figures
    assert page.figure_ids == [f for f in A.figure_ids(["rt"]) if f not in ("fig-rt-curves", "fig-rt-gates")]
    assert '<p class="note">rt: no training curves found under plots/curves/.</p>' in page.html()


def test_dvc_entries_are_what_dvc_yaml_declares():
    """What the pipeline generator writes for analyze: the committed dvc.yaml, entry for entry, in order."""
    dvc = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    analyze = dvc["stages"]["analyze"]
    not_cached = [o for o in analyze["outs"] if not isinstance(o, str)]
    assert all(list(o.values()) == [{"cache": False}] for o in not_cached + analyze["metrics"])
    assert A.dvc_entries() == {
        "outs": [o for o in analyze["outs"] if isinstance(o, str)],
        "outs_no_cache": [next(iter(o)) for o in not_cached],
        "metrics": [next(iter(m)) for m in analyze["metrics"]],
        "plots": dvc["plots"],
    }


def test_outputs_are_the_dvc_entries():
    entries = A.dvc_entries()
    assert sorted(A.OUTPUTS) == sorted(entries["outs"] + entries["outs_no_cache"] + entries["metrics"])
    assert [t.path for t in plot_tables()] == [p for p in A.OUTPUTS if p.startswith("plots/")]


def test_gate_weights_sit_beside_each_teachers_score(synthetic):
    """Issue #13: the report shows each teacher's gate weight beside that teacher's own test score."""
    _, analysis, html = synthetic
    table = get_figure("gates").details(analysis, "rt")
    assert table == get_figure("gates").details(analysis, "rt") and table in html
    # gating, test split: teacher a weight (0.6 + 0.5) / 2 = 0.55 beside a's test accuracy 75.0%
    assert re.search(r"<td>gating</td>\s*<td>test</td>\s*<td>a</td>\s*<td>0\.550</td>\s*<td>75\.0%</td>", table)
    assert re.search(r"<td>gating</td>\s*<td>test</td>\s*<td>c</td>\s*<td>0\.200</td>\s*<td>50\.0%</td>", table)


# The human figure (issue #16) applies only to tasks with rater data: not to the synthetic rt tree above,
# so it is read here on a hand-written summary of such a task.


def _iv(point, low, high):
    return {"point": point, "ci95_low": low, "ci95_high": high, "note": None}


HUMAN_BLOCK = {
    "scores": ["kl_human", "rater_agreement", "human_ece"], "n_test": 4,
    "raters": {"mean_entropy": 0.5, "mean_max_share": 0.75},
    "teachers": {"a": {"kl_human": 0.9, "rater_agreement": 0.5, "human_ece": 0.2},
                 "raters": {"kl_human": 0.001, "rater_agreement": 0.75, "human_ece": 0.0}},
    "strategies": {
        "none": {"kind": "baseline", "validation_kl_human": 0.8, "kl_human": _iv(0.7, 0.6, 0.8),
                 "rater_agreement": _iv(0.5, 0.4, 0.6), "human_ece": _iv(0.3, 0.2, 0.4)},
        "single_a": {"kind": "single", "validation_kl_human": 0.6, "kl_human": _iv(0.5, 0.4, 0.6),
                     "rater_agreement": _iv(0.6, 0.5, 0.7), "human_ece": _iv(0.2, 0.1, 0.3)},
        "single_raters": {"kind": "single", "validation_kl_human": 0.1, "kl_human": _iv(0.1, 0.05, 0.15),
                          "rater_agreement": _iv(0.7, 0.6, 0.8), "human_ece": _iv(0.05, 0.01, 0.1)},
        "average": {"kind": "multi", "validation_kl_human": 0.5, "kl_human": _iv(0.4, 0.3, 0.5),
                    "rater_agreement": _iv(0.65, 0.55, 0.75), "human_ece": _iv(0.1, 0.05, 0.2)}},
    "reference": ["single_raters"],
    "comparison": {"multi": "average", "single": "single_a", "chosen_on": "validation kl_human", "diff": -0.1,
                   "ci95_low": -0.15, "ci95_high": -0.05, "p_value": 0.0, "prob_closer": 1.0, "n_seeds": 2,
                   "n_groups": 3, "n_resamples": 2000, "note": None, "verdict": "multi closer"},
    "note": "the multi-teacher strategies fuse the human teacher(s) raters too",
}


def test_human_figure_applies_to_tasks_with_rater_data_and_reads_its_numbers(synthetic):
    _, analysis, html = synthetic
    figure = get_figure("human")
    assert figure.per_task and not figure.applies("rt", []) and figure.applies("vader5", [])
    assert "fig-rt-human" not in A.figure_ids(["rt"]) and "fig-rt-human" not in html  # rt's report is unchanged
    assert A.figure_ids(["vader5"])[-3:] == ["fig-vader5-human", "fig-confidence", "fig-ranking"]
    task = {"group_by": "document", "human": HUMAN_BLOCK}
    a = dataclasses.replace(analysis, summary={"vader5": task})
    assert figure.drawn_if(a, "vader5") and not figure.drawn_if(dataclasses.replace(analysis, summary={"vader5": {}}),
                                                                "vader5")
    assert figure.reading(a, "vader5") == (
        "vader5: against the raters' distribution on test (4 examples; raters' mean entropy 0.500 nats, their most "
        "chosen class has 75% of them on average), the closest student is single_raters (KL(human ‖ student) 0.100 "
        "[0.050, 0.150] nats; a random rater agrees with its prediction 70% of the time; human ECE 0.050); teachers "
        "range from raters (KL 0.001) to a (KL 0.900). Best multi (average) vs best single (single_a), both chosen on "
        "validation KL: KL difference −0.100 nats on test, 95% interval [−0.150, −0.050] over 2 seeds × 3 test "
        "documents; P(multi closer) = 1.00: multi closer (the multi-teacher strategies fuse the human teacher(s) "
        "raters too).")
    drawn = figure.draw(a, "vader5")
    assert len(drawn.data) == 3 and drawn.layout.title.text.startswith("vader5: teachers (green) and students")
    assert list(drawn.data[0].x) == ["a", "raters", "none", "single_a", "single_raters", "average"]
    assert list(drawn.data[1].y) == pytest.approx([50, 75, 50, 60, 70, 65])  # agreement with a random rater, %
    details = figure.details(a, "vader5")
    assert "<td>average</td><td>multi</td><td>0.400 [0.300, 0.500]</td><td>0.650 [0.550, 0.750]</td>" in details
