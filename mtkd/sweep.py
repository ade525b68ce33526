"""Sweep report: T × α grids from ``dvc exp show --json`` (SPEC §9).

After a grid sweep such as::

    dvc exp run --queue -S 'distill.T=3,6,9' -S 'distill.alpha=0.3,0.5,0.7'
    dvc queue start -j 1 && dvc queue status     # one job at a time on 2 cores
    python -m mtkd.sweep

this writes ``reports/sweep.html`` (a heatmap per strategy and task, best cell marked)
and ``metrics/sweep.json`` (best cell and best T per strategy). Cells are scored on the
**validation** primary metric — the sweep is model selection, so test never decides —
and the test value of the chosen cell is reported beside it.

A sweep run outside DVC's queue (e.g. on a machine without DVC: ``bench/gpu.py``) reads the
same way from its workspaces, each a directory holding the ``params.yaml`` it ran with and its
``metrics/distill/*.json``: ``python -m mtkd.sweep --runs T3/ T6/ T9/``.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mtkd.analysis.page import Page
from mtkd.errors import MtkdError


@dataclass(frozen=True)
class Run:
    name: str
    params: dict
    metrics: dict  # path → parsed metrics file


# Executor states whose row does not hold the experiment's own results: DVC shows a failed
# (or still running) experiment with its own params but the *baseline's* metrics, and a
# queued one without metrics.
NOT_FINISHED = {"queued", "running", "failed"}
DISTILL = "metrics/distill/"  # a strategy's metrics: metrics/distill/<strategy>.json


def _records(node, out: list[Run], name: str | None = None, state: str | None = None) -> None:
    """Every finished experiment (and baseline) in DVC's nested exp-show JSON, whatever its depth."""
    if isinstance(node, list):
        for child in node:
            _records(child, out, name, state)
        return
    if not isinstance(node, dict):
        return
    label = node.get("name") or node.get("rev") or name
    state = (node.get("executor") or {}).get("state", state)
    data = node.get("data")
    if isinstance(data, dict) and "params" in data and not node.get("error") and state not in NOT_FINISHED:
        params = (data.get("params") or {}).get("params.yaml", {}).get("data") or {}
        metrics = {path: (v or {}).get("data") or {} for path, v in (data.get("metrics") or {}).items()}
        out.append(Run(str(label), params, metrics))
    for key in ("experiments", "revs"):
        if key in node:
            _records(node[key], out, label, state if key == "revs" else None)


def collect(exp_show: list) -> list[Run]:
    runs: list[Run] = []
    _records(exp_show, runs)
    return runs


def workspace_run(path: Path) -> Run:
    """One sweep cell run outside DVC's queue: ``path/params.yaml`` and ``path/metrics/distill/*.json``."""
    import yaml

    params_file = path / "params.yaml"
    if not params_file.is_file():
        raise MtkdError(f"--runs {path}: no params.yaml there")
    metrics = {f"{DISTILL}{f.name}": json.loads(f.read_text()) for f in sorted((path / DISTILL).glob("*.json"))}
    if not metrics:
        raise MtkdError(f"--runs {path}: no {DISTILL}*.json there (did its distill stages run?)")
    return Run(path.name, yaml.safe_load(params_file.read_text()) or {}, metrics)


def temperature(params: dict, strategy: str) -> float | None:
    T = params.get("distill", {}).get("T")
    if isinstance(T, dict):
        T = T.get(strategy)
    return float(T) if isinstance(T, (int, float)) else None


def cells(runs: list[Run], strategy: str, task: str, primary: str) -> dict[tuple[float, float], dict]:
    """(T, α) → validation and test primary means of ``strategy`` on ``task`` (first run wins on duplicates)."""
    out: dict[tuple[float, float], dict] = {}
    for run in runs:
        block = run.metrics.get(f"{DISTILL}{strategy}.json", {}).get(task)
        T, alpha = temperature(run.params, strategy), run.params.get("distill", {}).get("alpha")
        if not block or T is None or alpha is None:
            continue
        try:
            val, test = block["validation"][primary]["mean"], block["test"][primary]["mean"]
        except (KeyError, TypeError):
            continue
        # The metrics file records the T and α it was made with: a row whose params say
        # otherwise (an edited but not reproduced workspace) shows stale metrics.
        if any(isinstance(block.get(k), (int, float)) and not math.isclose(float(block[k]), float(v))
               for k, v in (("T", T), ("alpha", alpha))):
            continue
        out.setdefault((T, float(alpha)), {"validation": val, "test": test, "experiment": run.name})
    return out


def best_cell(grid: dict[tuple[float, float], dict]) -> dict | None:
    if not grid:
        return None
    (T, alpha), v = max(grid.items(), key=lambda kv: (kv[1]["validation"], -kv[0][0], -kv[0][1]))
    return {"T": T, "alpha": alpha, **v}


def best_T(grid: dict[tuple[float, float], dict]) -> dict[str, float]:
    """Per T, the best validation score over α; and the T that maximises it."""
    per_T: dict[float, float] = {}
    for (T, _), v in grid.items():
        per_T[T] = max(per_T.get(T, -math.inf), v["validation"])
    return {"best_T": max(per_T, key=lambda t: (per_T[t], -t)), "validation_by_T": {str(t): per_T[t] for t in sorted(per_T)}}


def _distill_blocks(run: Run) -> dict[str, dict]:
    """strategy → its distill metrics (task → block) in one run."""
    return {p.removeprefix(DISTILL).removesuffix(".json"): m for p, m in run.metrics.items() if p.startswith(DISTILL)}


def swept_tasks(runs: list[Run]) -> list[str]:
    """Every task some run has distill results for (the keys of a distill metrics file are its tasks)."""
    return sorted({task for r in runs for block in _distill_blocks(r).values() for task in block})


def summarize_sweep(runs: list[Run], primary: dict[str, str]) -> dict:
    from mtkd.fusion import strategy_kind  # imports torch: only when a sweep is summarised

    # The baseline distils from no teacher: T and α do not touch it, so it has no grid.
    strategies = sorted({s for r in runs for s in _distill_blocks(r) if strategy_kind(s) != "baseline"})
    out: dict = {}
    for task, metric in primary.items():
        for strategy in strategies:
            grid = cells(runs, strategy, task, metric)
            if len(grid) < 2:
                continue
            out.setdefault(task, {})[strategy] = {"cells": len(grid), "best": best_cell(grid), **best_T(grid)}
    return out


def chosen_temperatures(summary: dict) -> dict[str, float]:
    """strategy → the T with the best validation score, averaged over the swept tasks (ties: the lower T)."""
    by: dict[str, dict[float, list[float]]] = {}
    for strategies in summary.values():
        for strategy, s in strategies.items():
            for T, v in s["validation_by_T"].items():
                by.setdefault(strategy, {}).setdefault(float(T), []).append(v)
    return {s: max(per_T, key=lambda t: (float(np.mean(per_T[t])), -t)) for s, per_T in sorted(by.items())}


def set_distill_T(text: str, T_map: dict[str, float]) -> str:
    """``text`` (a params.yaml) with ``distill.T`` replaced by ``T_map``, every other line as it was.

    A line edit, not a YAML round trip: round trips re-wrap flow lists and drop ``null``s."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"distill:\s*(#.*)?$", line)), None)
    if start is None:
        raise MtkdError("--write-params: the params file has no top-level `distill:` block")
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\S", lines[i]) and not lines[i].startswith("#")),
               len(lines))
    child = next((re.match(r"( +)\S", line).group(1) for line in lines[start + 1:end] if re.match(r" +[^\s#]", line)), "  ")
    T_line = next((i for i in range(start + 1, end) if re.match(rf"{child}T:", lines[i])), None)
    comment = ""
    if T_line is None:
        T_line = stop = start + 1
    else:
        m = re.search(r"\s(#.*)$", lines[T_line].rstrip("\n"))
        comment = f"  {m.group(1)}" if m else ""
        stop = T_line + 1  # the old value's own lines (a block map) are indented deeper
        while stop < end and (not lines[stop].strip() or len(lines[stop]) - len(lines[stop].lstrip(" ")) > len(child)):
            stop += 1
        while stop > T_line + 1 and not lines[stop - 1].strip():  # blank lines before the next key stay
            stop -= 1
    block = [f"{child}T:{comment}\n"] + [f"{child}  {s}: {float(T)!r}\n" for s, T in T_map.items()]
    return "".join(lines[:T_line] + block + lines[stop:])


def write_temperatures(chosen: dict[str, float], params_file: Path) -> dict[str, float]:
    """Set ``distill.T`` in ``params_file`` to the map strategy → chosen T (comments kept).

    Every distilling strategy of ``distill.strategies`` gets an entry: the sweep's choice, or its
    current temperature when the sweep did not cover it. The result is validated before writing.
    """
    import yaml

    from mtkd.fusion import get_strategy
    from mtkd.io import write_text
    from mtkd.params import load_params, validate_params

    current = load_params(params_file)
    T_map = {s: float(chosen.get(s, current.distill.temperature(s))) for s in current.distill.strategies
             if get_strategy(s).uses_teachers}
    if unknown := sorted(set(chosen) - set(T_map)):
        print(f"note: swept strategies not in distill.strategies, left out: {', '.join(unknown)}", file=sys.stderr)
    text = set_distill_T(params_file.read_text(), T_map)
    validate_params(yaml.safe_load(text), str(params_file))
    write_text(params_file, text)
    return T_map


def heatmap(grid: dict, title: str):
    import plotly.graph_objects as go

    Ts, alphas = sorted({t for t, _ in grid}), sorted({a for _, a in grid})
    z = [[grid.get((t, a), {}).get("validation", np.nan) for a in alphas] for t in Ts]
    text = [[f"{v:.4f}" if v == v else "" for v in row] for row in z]
    fig = go.Figure(go.Heatmap(z=z, x=[str(a) for a in alphas], y=[str(t) for t in Ts], text=text,
                               texttemplate="%{text}", colorscale="Viridis", colorbar={"title": "validation"}))
    best = best_cell(grid)
    fig.add_trace(go.Scatter(x=[str(best["alpha"])], y=[str(best["T"])], mode="markers",
                             marker={"symbol": "star", "size": 18, "color": "red"}, name="best (validation)"))
    fig.update_layout(title=title, xaxis_title="α", yaxis_title="T", height=380, width=520, template="plotly_white")
    return fig


def sweep_sentence(task: str, strategy: str, s: dict) -> str:
    b = s["best"]
    return (f"{strategy} on {task}: best cell T={b['T']:g}, α={b['alpha']:g} "
            f"(validation {b['validation']:.4f}, test {b['test']:.4f}); best T over α = {s['best_T']:g}.")


def report(runs: list[Run], summary: dict, primary: dict[str, str]) -> Page:
    """The sweep page: a heatmap per strategy and task, each with its reading sentence."""
    page = Page("mtkd sweep")
    page.heading("T × α sweep", level=1)
    page.note("Cells scored on validation; test shown for the chosen cell only.")
    for task, strategies in summary.items():
        for strategy, s in strategies.items():
            fig = heatmap(cells(runs, strategy, task, primary[task]), f"{strategy} · {task} · validation {primary[task]}")
            page.figure(fig, f"sweep-{task}-{strategy}", sweep_sentence(task, strategy, s))
    if not page.figures:
        page.note("No sweep found: run a T × α grid first (see the README).")
    return page


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="T × α sweep report from dvc exp show --json")
    source = ap.add_mutually_exclusive_group()
    source.add_argument("--input", help="a saved `dvc exp show --json` file (default: run it)")
    source.add_argument("--runs", nargs="+", type=Path, metavar="DIR",
                        help="instead: workspaces of a sweep run without DVC, each with params.yaml and metrics/distill/")
    ap.add_argument("--html", default="reports/sweep.html")
    ap.add_argument("--json", default="metrics/sweep.json")
    ap.add_argument("--write-params", metavar="PARAMS", type=Path,
                    help="also set distill.T in PARAMS (params.yaml) to each strategy's best T on validation")
    args = ap.parse_args(argv)
    try:
        if args.runs:
            runs = [workspace_run(d) for d in args.runs]
        else:
            if args.input:
                exp_show = json.loads(Path(args.input).read_text())
            else:
                proc = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
                if proc.returncode != 0:
                    raise MtkdError(f"dvc exp show --json failed: {proc.stderr.strip().splitlines()[-1:]}")
                exp_show = json.loads(proc.stdout)
            runs = collect(exp_show)
        from mtkd.data import TASKS, load_meta
        from mtkd.io import write_json

        # a custom task (data.custom) records its primary metric in its prepared meta
        primary = {t: TASKS[t].primary_metric if t in TASKS else load_meta(Path("data/prepared"), t)["primary_metric"]
                   for t in swept_tasks(runs)}
        summary = summarize_sweep(runs, primary)
        write_json(args.json, summary)
        report(runs, summary, primary).write(args.html)
        if args.write_params is not None:
            chosen = chosen_temperatures(summary)
            if not chosen:
                raise MtkdError("--write-params: the sweep has no strategy with two or more temperatures")
            T_map = write_temperatures(chosen, args.write_params)
            print(f"wrote distill.T to {args.write_params}: " + ", ".join(f"{k} {v:g}" for k, v in T_map.items()))
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n = sum(len(v) for v in summary.values())
    print(f"sweep: {len(runs)} runs, {n} strategy grids → {args.html}, {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
