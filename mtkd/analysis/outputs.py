"""What ``analyze`` writes, and how dvc.yaml declares it (:func:`dvc_entries`, for the pipeline generator)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mtkd.analysis import figures as _figures  # noqa: F401  (fills the registry the lists below are read from)
from mtkd.analysis.registry import plot_tables
from mtkd.io import atomic_path

RESULTS = "metrics/results.csv"
# Analysis field → its metrics file (dvc metrics, git-tracked).
METRICS = {"summary": "metrics/summary.json", "agreement": "metrics/agreement.json",
           "failures": "metrics/failures.json", "confidence": "metrics/teacher_confidence.json",
           "comparisons": "metrics/comparisons.json"}
REPORT = "reports/report.html"  # ~5 MB with plotly.js inline: cached by DVC, not git

OUTPUTS = (RESULTS, *METRICS.values(), *(t.path for t in plot_tables()), REPORT)


def write_csv(path: Path, frame: pd.DataFrame) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(frame.to_csv(index=False, lineterminator="\n"), encoding="utf-8")


def dvc_entries() -> dict:
    """dvc.yaml's entries for ``analyze``, from the registry.

    ``outs``: DVC-cached outputs; ``outs_no_cache``: git-tracked outputs (``cache: false``);
    ``metrics``: metrics files (``cache: false``); ``plots``: the top-level ``plots:`` section,
    ``[{path: {template, x, y, title}}]``, headline plots first.
    """
    tables = plot_tables()
    ordered = [t for t in tables if t.plot.headline] + [t for t in tables if not t.plot.headline]
    return {"outs": [REPORT],
            "outs_no_cache": [RESULTS, *(t.path for t in tables)],
            "metrics": list(METRICS.values()),
            "plots": [{t.path: t.plot.spec()} for t in ordered]}
