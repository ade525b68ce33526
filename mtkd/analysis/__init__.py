"""analyze: what the experiment found (SPEC §8–9).

Small pure functions compute every number; :func:`run_analysis` (``run.py``) is the only place
that reads inputs and writes outputs:

- ``metrics/results.csv``            one row per (method, task, seed), every metric
- ``metrics/summary.json``           per task: best teacher / single / multi (chosen on
                                     validation, reported on test), the headline comparison
                                     and how stable its validation pick is, gap closed with
                                     intervals, what the design cannot tell; for a task with
                                     rater data (vader5), ``human``: every teacher and student
                                     against the raters' distribution (``mtkd.analysis.human``)
- ``metrics/comparisons.json``       per task: every multi vs single and vs none comparison,
                                     ``<A>_vs_<B>``: difference, 95% and Holm-adjusted intervals,
                                     P(A > B), minimum detectable difference
- ``metrics/agreement.json``         teacher agreement regions on test, student accuracy per region
- ``metrics/failures.json``          what the teachers did on each student error
- ``metrics/teacher_confidence.json`` max probability, entropy, share above 0.95 (train, test)
- ``plots/*.csv``                    each figure's numbers as a long table for ``dvc plots``
                                     (``label``: one bar per row in the bar templates)
- ``reports/report.html``            one self-contained plotly report (plotly.js inline); every
                                     figure sits in a ``<figure>`` with its reading sentence,
                                     and ``<meta name="mtkd-figures">`` lists the figure ids

``python -m mtkd.analysis --from-metrics OUT.html`` redraws the report from the committed
``metrics/`` and ``plots/curves/`` alone (no logits or predictions needed).

Choices are never made on test: the best teacher, best single-teacher student and best
multi-teacher student are picked by their validation primary metric. Every output is
deterministic (fixed bootstrap seed, explicit plot div ids), so a rerun is byte-identical.

Modules, one concept each:

- ``inputs``     reading the earlier stages' files, ids and seeds checked
- ``tables``     the results table, choices on validation, each task's summary
- ``verdict``    the comparison matrix: hierarchical bootstrap over seeds and test groups
                 (:mod:`mtkd.stats`), Holm-adjusted; strategy, gap-closed, ECE and KL intervals
- ``regions``    teacher agreement regions, failure categories, teacher confidence
- ``human``      scores against the raters' distribution (KL, agreement with a random rater,
                 calibration vs human frequencies) and multi vs single on KL, where a task has rater data
- ``readings``   the reading sentences (also quoted in the README's Findings)
- ``registry``   the ``Figure`` registry: ``register_figure``, ``get_figure``, ``registered_figures``
- ``figures``    every figure of the report, registered where it is defined, in page order
- ``page``       the one HTML page builder (report, ``mtkd.sweep``, ``mtkd.compare``)
- ``report``     the report: headline, then every registered figure
- ``outputs``    what analyze writes; ``dvc_entries()`` for dvc.yaml
- ``run``        ``run_analysis`` and ``report_from_metrics``

**A new figure** goes in ``figures.py``: its drawing function decorated with
``@register_figure`` (id, per task or global, reading sentence) and, if ``dvc plots`` should show
it too, a rows function decorated with ``@plot_table`` (path under ``plots/``, columns, dvc plot
spec) as its ``table``; plus its reading in ``tests/test_figures.py``. The report, ``OUTPUTS``,
``dvc_entries()`` and the browser test pick it up from the registry.
"""

from mtkd.analysis.outputs import OUTPUTS, dvc_entries  # outputs imports figures: the registry is full from here on
from mtkd.analysis.page import Page
from mtkd.analysis.readings import (agreement_sentence, comparisons_sentence, confidence_sentence, failures_sentence,
                                    gap_sentence, headline_sentence)
from mtkd.analysis.regions import (agreement_regions, confidence, failure_analysis, failure_category,
                                   region_accuracy)
from mtkd.analysis.registry import Analysis, Figure, figure_ids, get_figure, registered_figures
from mtkd.analysis.run import analysis_from_metrics, report_from_metrics, run_analysis
from mtkd.analysis.tables import gap_closed, pick_best, rank_scores
from mtkd.analysis.verdict import NO_DIFFERENCE, compare_students, comparison_key, comparison_pairs

__all__ = [
    "OUTPUTS", "NO_DIFFERENCE", "Analysis", "Figure", "Page",
    "run_analysis", "report_from_metrics", "analysis_from_metrics", "dvc_entries",
    "registered_figures", "get_figure", "figure_ids",
    "headline_sentence", "comparisons_sentence", "gap_sentence", "agreement_sentence", "failures_sentence", "confidence_sentence",
    "agreement_regions", "region_accuracy", "failure_category", "failure_analysis", "confidence",
    "gap_closed", "pick_best", "rank_scores", "compare_students", "comparison_key", "comparison_pairs",
]
