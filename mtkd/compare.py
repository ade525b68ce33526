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


def render(rev_a: str, rev_b: str, a: dict, b: dict, changes: list) -> str:
    diff = compare(a, b)
    parts, first = [], True
    for task, rows in diff.items():
        fig = figure(task, a[task], b[task], rev_a, rev_b)
        parts.append(fig.to_html(full_html=False, include_plotlyjs=first, div_id=f"compare-{task}"))
        first = False
        body = "".join(f"<tr><td>{m}</td><td>{_f(r['a'])}</td><td>{_f(r['b'])}</td><td>{_f(r['diff'], signed=True)}</td></tr>"
                       for m, r in rows.items())
        parts.append(f"<table><tr><th>method</th><th>{rev_a}</th><th>{rev_b}</th><th>Δ</th></tr>{body}</table>")
    ptable = "".join(f"<tr><td>{k}</td><td>{va}</td><td>{vb}</td></tr>" for k, va, vb in changes) or \
        "<tr><td colspan=3>no params changed</td></tr>"
    return ("<!doctype html><html><head><meta charset='utf-8'><title>mtkd compare</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}</style></head><body>"
            f"<h1>{rev_a} vs {rev_b}</h1><h2>Params that differ</h2><table><tr><th>key</th><th>{rev_a}</th>"
            f"<th>{rev_b}</th></tr>{ptable}</table><h2>Results</h2>{''.join(parts)}</body></html>\n")


def _f(v, signed=False) -> str:
    if v is None:
        return "–"
    return f"{v:+.4f}" if signed else f"{v:.4f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Compare the results of two revisions")
    ap.add_argument("rev_a")
    ap.add_argument("rev_b", nargs="?", default="workspace")
    ap.add_argument("--out", default="reports/compare.html")
    args = ap.parse_args(argv)
    try:
        a, b = (json.loads(read_at(r, SUMMARY)) for r in (args.rev_a, args.rev_b))
        pa, pb = (yaml.safe_load(read_at(r, "params.yaml")) for r in (args.rev_a, args.rev_b))
        from mtkd.io import write_text

        write_text(args.out, render(args.rev_a, args.rev_b, a, b, params_changes(pa, pb)))
    except MtkdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
