"""Compare two revisions of the results in one offline plotly page.

    python -m mtkd.compare main my-branch           # reports/compare.html
    python -m mtkd.compare HEAD~1 workspace

Reads ``metrics/summary.json`` of each revision (``git show REV:path``; ``workspace``
means the files on disk), and draws, per task, every method's test primary metric with
its 95% interval side by side, plus a table of the differences and the params that
changed (``dvc params diff`` gives the same list on the command line).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import yaml

from mtkd.analysis.page import Page, page_command
from mtkd.errors import MtkdError

SUMMARY = "metrics/summary.json"


def read_at(rev: str, path: str) -> str:
    if rev == "workspace":
        p = Path(path)
        if not p.is_file():
            raise MtkdError(f"{path}: not found in the workspace (run `dvc repro`)")
        return p.read_text()
    proc = subprocess.run(["git", "show", f"{rev}:{path}"], capture_output=True, text=True)
    if proc.returncode != 0:
        raise MtkdError(f"{rev}:{path}: not found ({proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else 'git show failed'})")
    return proc.stdout


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(flatten(v, key + ".") if isinstance(v, dict) else {key: v})
    return out


def params_changes(a: dict, b: dict) -> list[tuple[str, object, object]]:
    fa, fb = flatten(a), flatten(b)
    return [(k, fa.get(k), fb.get(k)) for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]


def method_rows(summary: dict) -> dict[str, dict]:
    """method → {test, low, high} for teachers and students of one task."""
    rows = {t: {"test": v["test"], "low": v["test"], "high": v["test"]} for t, v in summary["teachers"].items()}
    rows.update({s: {"test": v["test"], "low": v["ci95_low"], "high": v["ci95_high"]}
                 for s, v in summary["strategies"].items()})
    return rows


def compare(a: dict, b: dict) -> dict:
    """Per task present in both: method → (a, b, b − a) of the test primary metric."""
    out = {}
    for task in sorted(set(a) & set(b)):
        ra, rb = method_rows(a[task]), method_rows(b[task])
        out[task] = {m: {"a": ra.get(m, {}).get("test"), "b": rb.get(m, {}).get("test"),
                         "diff": (rb[m]["test"] - ra[m]["test"]) if m in ra and m in rb else None}
                     for m in list(dict.fromkeys([*ra, *rb]))}
    return out


def figure(task: str, a: dict, b: dict, rev_a: str, rev_b: str):
    import plotly.graph_objects as go

    fig = go.Figure()
    for rev, summary in ((rev_a, a), (rev_b, b)):
        rows = method_rows(summary)
        names = list(rows)
        fig.add_trace(go.Bar(name=rev, x=names, y=[rows[m]["test"] for m in names],
                             error_y={"type": "data", "symmetric": False,
                                      "array": [rows[m]["high"] - rows[m]["test"] for m in names],
                                      "arrayminus": [rows[m]["test"] - rows[m]["low"] for m in names]}))
    lo = min(min(r["low"] for r in method_rows(s).values()) for s in (a, b))
    fig.update_layout(barmode="group", title=f"{task}: test {a['primary_metric']} by method, {rev_a} vs {rev_b}",
                      yaxis={"range": [max(0.0, lo - 0.02), None]}, template="plotly_white", height=460)
    return fig


def _f(v, signed=False) -> str:
    if v is None:
        return "–"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def compare_sentence(task: str, rows: dict[str, dict], metric: str, rev_a: str, rev_b: str) -> str:
    """What the figure of one task shows: how many methods moved, and the largest move."""
    both = {m: r["diff"] for m, r in rows.items() if r["diff"] is not None}
    moved = {m: d for m, d in both.items() if d != 0}
    if not moved:
        return f"{task}: no method's test {metric} differs between {rev_a} and {rev_b}."
    top = max(moved, key=lambda m: abs(moved[m]))
    return (f"{task}: test {metric} differs for {len(moved)} of the {len(both)} methods in both {rev_a} and {rev_b}; "
            f"the largest difference is {top} ({_f(moved[top], signed=True)}).")


def render(rev_a: str, rev_b: str, a: dict, b: dict, changes: list) -> Page:
    page = Page("mtkd compare")
    page.heading(f"{rev_a} vs {rev_b}", level=1)
    page.heading("Params that differ")
    if changes:
        page.table(["key", rev_a, rev_b], [list(change) for change in changes])
    else:
        page.note("No params changed.")
    page.heading("Results")
    for task, rows in compare(a, b).items():
        page.figure(figure(task, a[task], b[task], rev_a, rev_b), f"compare-{task}",
                    compare_sentence(task, rows, a[task]["primary_metric"], rev_a, rev_b))
        page.table(["method", rev_a, rev_b, "Δ"],
                   [[m, _f(r["a"]), _f(r["b"]), _f(r["diff"], signed=True)] for m, r in rows.items()])
    return page


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Compare the results of two revisions")
    ap.add_argument("rev_a")
    ap.add_argument("rev_b", nargs="?", default="workspace")
    ap.add_argument("--out", default="reports/compare.html")
    args = ap.parse_args(argv)

    def build() -> Page:
        a, b = (json.loads(read_at(r, SUMMARY)) for r in (args.rev_a, args.rev_b))
        pa, pb = (yaml.safe_load(read_at(r, "params.yaml")) for r in (args.rev_a, args.rev_b))
        return render(args.rev_a, args.rev_b, a, b, params_changes(pa, pb))

    return page_command(build, args.out)


if __name__ == "__main__":
    sys.exit(main())
