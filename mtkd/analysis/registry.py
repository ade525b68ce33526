"""The Figure registry: every figure of the report, in page order, and what comes with it.

A :class:`Figure` is registered where it is defined (:mod:`mtkd.analysis.figures`) by
decorating its drawing function with :func:`register_figure`; a figure that ``dvc plots``
shows too names its :class:`PlotTable`, a rows function decorated with :func:`plot_table`.
The report, ``OUTPUTS``, ``dvc_entries()`` (dvc.yaml's ``analyze`` outputs and top-level
``plots:``) and the tests all loop over :func:`registered_figures`; :func:`get_figure` names
the known ids on a typo.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import pandas as pd

from mtkd.errors import MtkdError


@dataclass(frozen=True)
class Analysis:
    """Everything the figures, their tables and the report read; each dict is keyed by task, in params order."""

    summary: dict     # task → headline summary (metrics/summary.json)
    agreement: dict   # task → teacher agreement regions (metrics/agreement.json)
    failures: dict    # task → failure categories (metrics/failures.json)
    confidence: dict  # task → teacher confidence (metrics/teacher_confidence.json)
    comparisons: dict  # task → the comparison matrix (metrics/comparisons.json)
    curves: dict      # task → (student curve rows by strategy, teacher curve rows by teacher)
    gates: dict       # task → strategy → mean gate weights (only strategies with a gate)
    setup: dict       # tasks, teachers, strategies, seeds: what the run was

    @property
    def tasks(self) -> list[str]:
        return list(self.summary)


@dataclass(frozen=True)
class DvcPlot:
    """How ``dvc plots show`` draws a table: one entry of dvc.yaml's top-level ``plots:``."""

    template: str
    x: str
    y: str
    title: str
    headline: bool = False  # the per-strategy scores: listed first in dvc.yaml, so drawn first

    def spec(self) -> dict:
        return {"template": self.template, "x": self.x, "y": self.y, "title": self.title}


@dataclass(frozen=True)
class PlotTable:
    """A figure's numbers as one long table under ``plots/`` (git-tracked, for ``dvc plots``)."""

    path: str
    columns: tuple[str, ...]
    rows: Callable[[Analysis], list[dict]]  # every task's rows, in task order
    plot: DvcPlot

    def frame(self, analysis: Analysis) -> pd.DataFrame:
        return pd.DataFrame(self.rows(analysis), columns=list(self.columns))


def plot_table(path: str, columns: tuple[str, ...], plot: DvcPlot):
    """Decorator for a function making a table's rows: turns it into that :class:`PlotTable`."""

    def wrap(rows: Callable[[Analysis], list[dict]]) -> PlotTable:
        return PlotTable(path, columns, rows, plot)

    return wrap


def _always(analysis: Analysis, task: str | None) -> bool:
    return True


def _every_task(task: str, strategies: list[str]) -> bool:
    return True


@dataclass(frozen=True)
class Figure:
    """One figure of the report. ``draw``, ``reading``, ``drawn_if`` and ``details`` take
    ``(analysis, task)``; ``task`` is None for a global figure."""

    id: str
    per_task: bool
    draw: Callable[[Analysis, str | None], Any]   # → a plotly figure
    reading: Callable[[Analysis, str | None], str]  # → its reading sentence, shown under it
    table: PlotTable | None = None
    drawn_if: Callable[[Analysis, str | None], bool] = _always
    absent_note: str | None = None  # said instead (``{task}`` filled in) when drawn_if is false
    details: Callable[[Analysis, str | None], str] | None = None  # HTML under the figure (a table)
    # Whether a per-task figure exists for a task at all, from the task's declaration and the run's
    # strategies alone (e.g. its rater data, a `+transfer` student): a figure that does not apply is
    # neither drawn, nor noted, nor listed by figure_ids. ``(task, strategies) -> bool``.
    applies: Callable[[str, list[str]], bool] = _every_task

    def div_id(self, task: str | None = None) -> str:
        """``fig-<task>-<id>`` for a per-task figure, ``fig-<id>`` for a global one."""
        return f"fig-{task}-{self.id}" if self.per_task else f"fig-{self.id}"


_FIGURES: dict[str, Figure] = {}


def register_figure(id: str, *, per_task: bool, reading: Callable, table: PlotTable | None = None,
                    drawn_if: Callable = _always, absent_note: str | None = None, details: Callable | None = None,
                    applies: Callable[[str, list[str]], bool] = _every_task):
    """Decorator for a drawing function: registers it as figure ``id``, after those registered before it."""

    def wrap(draw):
        if id in _FIGURES:
            raise MtkdError(f"figure '{id}' is registered twice")
        if table and table.path in {f.table.path for f in _FIGURES.values() if f.table}:
            raise MtkdError(f"figure '{id}': {table.path} is already written by another figure")
        _FIGURES[id] = Figure(id, per_task, draw, reading, table, drawn_if, absent_note, details, applies)
        return draw

    return wrap


def get_figure(id: str) -> Figure:
    """The registered figure ``id`` (MtkdError naming the known ones otherwise)."""
    if id not in _FIGURES:
        raise MtkdError(f"unknown figure '{id}' (known: {', '.join(_FIGURES)})")
    return _FIGURES[id]


def registered_figures() -> list[Figure]:
    """Every figure, in page order (the order they are defined in)."""
    return list(_FIGURES.values())


def figure_ids(tasks: list[str], strategies: list[str] = ()) -> list[str]:
    """The div ids of every figure for ``tasks`` and the run's ``strategies``, in page order: each task's
    figures (those that apply to it), then the global ones."""
    per_task = [f for f in registered_figures() if f.per_task]
    return ([f.div_id(task) for task in tasks for f in per_task if f.applies(task, list(strategies))]
            + [f.div_id() for f in registered_figures() if not f.per_task])


def plot_tables() -> list[PlotTable]:
    """The figures' tables, in page order."""
    return [f.table for f in registered_figures() if f.table]
