"""``python -m mtkd.analysis --from-metrics OUT.html``: redraw the report from the committed metrics/."""

from __future__ import annotations

import argparse
from pathlib import Path

from mtkd.analysis.page import page_command
from mtkd.analysis.run import report_from_metrics


def main(argv=None) -> int:
    from mtkd.params import load_params

    ap = argparse.ArgumentParser(prog="python -m mtkd.analysis",
                                 description="Redraw the analysis report from the committed metrics/ and "
                                             "plots/curves/ (no logits or predictions needed).")
    ap.add_argument("--from-metrics", metavar="OUT.html", required=True, type=Path, help="where to write the report")
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--root", default=".", type=Path)
    args = ap.parse_args(argv)
    return page_command(lambda: report_from_metrics(load_params(args.params), args.root), args.from_metrics)


if __name__ == "__main__":
    raise SystemExit(main())
