from pathlib import Path

import pytest

from mtkd.findings import END, START, main, task_table, update

ROOT = Path(__file__).resolve().parents[1]


def test_readme_findings_match_committed_metrics():
    """The README's numbers are the ones in metrics/: regenerate with `python -m mtkd.findings`."""
    assert main(["--check", "--readme", str(ROOT / "README.md"), "--metrics", str(ROOT / "metrics")]) == 0


def test_update_replaces_only_the_marked_section():
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert update(text, f"{START}\nnew\n{END}") == f"intro\n{START}\nnew\n{END}\noutro\n"
    with pytest.raises(ValueError):
        update("no markers", "x")


def test_task_table_orders_by_rank_and_formats_percent():
    s = {"primary_metric": "accuracy", "teachers": {"a": {"test": 0.9}},
         "strategies": {"none": {"kind": "baseline", "test": 0.8, "ci95_low": 0.79, "ci95_high": 0.81, "rank": 2},
                        "average": {"kind": "multi", "test": 0.85, "ci95_low": 0.84, "ci95_high": 0.86, "rank": 1}}}
    lines = task_table("rt", s).splitlines()
    assert lines[2] == "| teacher `a` | teacher | 90.00 | | |"
    assert lines[3] == "| `average` | multi | 85.00 | [84.00, 86.00] | 1 |"
    assert lines[4].startswith("| `none` | baseline | 80.00")
