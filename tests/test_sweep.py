import re
import json

import pytest

from mtkd.errors import MtkdError
from mtkd.sweep import best_cell, cells, collect, main, summarize_sweep


def run_entry(name, T, alpha, val_avg, test_avg, val_single, test_single):
    def block(v, t):
        return {"rt": {"validation": {"accuracy": {"mean": v}}, "test": {"accuracy": {"mean": t}}}}

    return {"rev": name[:7], "name": name, "data": {
        "params": {"params.yaml": {"data": {"distill": {"T": T, "alpha": alpha}}}},
        "metrics": {"metrics/distill/average.json": {"data": block(val_avg, test_avg)},
                    "metrics/distill/single_a.json": {"data": block(val_single, test_single)},
                    "metrics/distill/none.json": {"data": block(0.5, 0.5)}}}}


def exp_show():
    # DVC nests experiments under their baseline: [{..., experiments: [{revs: [...]}]}].
    grid = [(3, 0.5, 0.84, 0.80, 0.80, 0.81), (6, 0.5, 0.82, 0.90, 0.81, 0.80),
            (9, 0.5, 0.81, 0.79, 0.83, 0.82), (3, 0.7, 0.83, 0.78, 0.79, 0.80)]
    exps = [{"revs": [run_entry(f"exp-{i}", *g)]} for i, g in enumerate(grid)]
    base = run_entry("workspace", 6, 0.5, 0.0, 0.0, 0.0, 0.0)  # duplicate of a cell: first one wins
    base["experiments"] = exps
    return [base]


def test_collect_walks_nested_experiments():
    runs = collect(exp_show())
    assert [r.name for r in runs] == ["workspace", "exp-0", "exp-1", "exp-2", "exp-3"]


def test_best_cell_is_chosen_on_validation_not_test():
    grid = cells(collect(exp_show())[1:], "average", "rt", "accuracy")
    best = best_cell(grid)
    assert (best["T"], best["alpha"]) == (3.0, 0.5)  # validation 0.84; (6, 0.5) has the best *test* 0.90
    assert best["test"] == 0.80


def test_per_strategy_best_T():
    summary = summarize_sweep(collect(exp_show())[1:], {"rt": "accuracy"})
    assert summary["rt"]["average"]["best_T"] == 3.0
    assert summary["rt"]["single_a"]["best_T"] == 9.0
    assert "none" not in summary["rt"]


def test_T_may_be_a_map():
    entry = run_entry("m", {"average": 2.0, "single_a": 8.0}, 0.5, 0.8, 0.8, 0.8, 0.8)
    other = run_entry("n", {"average": 4.0, "single_a": 8.0}, 0.5, 0.9, 0.8, 0.8, 0.8)
    grid = cells(collect([entry, other]), "average", "rt", "accuracy")
    assert set(grid) == {(2.0, 0.5), (4.0, 0.5)}


def test_cli_writes_report_and_json(tmp_path):
    src = tmp_path / "exp.json"
    src.write_text(json.dumps(exp_show()))
    assert main(["--input", str(src), "--html", str(tmp_path / "s.html"), "--json", str(tmp_path / "s.json")]) == 0
    html = (tmp_path / "s.html").read_text()
    assert "average on rt: best cell T=3, α=0.5" in html
    # The shared page builder: every heatmap declared, each with its reading under it.
    assert '<meta name="mtkd-figures" content="sweep-rt-average sweep-rt-single_a">' in html
    assert '<figcaption class="reading">average on rt: best cell T=3, α=0.5' in html
    assert not re.search(r"<script[^>]*\bsrc=", html)  # plotly.js inline: opens offline
    assert json.loads((tmp_path / "s.json").read_text())["rt"]["average"]["best"]["T"] == 3.0


def test_failed_queued_and_stale_rows_are_not_cells():
    # DVC shows a failed experiment with its own params but the baseline's metrics, and a
    # queued one without metrics: neither is a cell. Nor is a row whose metrics file records
    # another T than its params (an edited, not reproduced workspace).
    def exp(name, state, T, error=None):
        entry = run_entry(name, T, 0.5, 0.99, 0.99, 0.99, 0.99)
        entry["error"] = error
        return {"name": name, "executor": {"state": state}, "revs": [entry]}

    base = run_entry("base", 6, 0.5, 0.8, 0.8, 0.8, 0.8)
    base["experiments"] = [exp("ok", "success", 3), exp("bad", "failed", -1, {"msg": "Experiment run failed"}),
                           exp("waiting", "queued", 9), exp("going", "running", 12)]
    stale = run_entry("workspace", 15, 0.5, 0.7, 0.7, 0.7, 0.7)
    stale["data"]["metrics"]["metrics/distill/average.json"]["data"]["rt"]["T"] = 6.0
    runs = collect([stale, base])
    assert [r.name for r in runs] == ["workspace", "base", "ok"]
    assert set(cells(runs, "average", "rt", "accuracy")) == {(6.0, 0.5), (3.0, 0.5)}


def test_write_params_sets_the_T_map_chosen_on_validation(tmp_path, capsys):
    from pathlib import Path

    import yaml

    from mtkd.params import load_params

    root = Path(__file__).resolve().parents[1]
    params = tmp_path / "params.yaml"
    p = yaml.safe_load((root / "params.yaml").read_text())
    p["distill"]["strategies"] = ["none", "single_minilm_l6", "average"]
    p["distill"]["T"] = 6.0
    params.write_text("# my comment survives\n" + yaml.safe_dump(p, sort_keys=False))
    src = tmp_path / "exp.json"
    src.write_text(json.dumps(exp_show()))
    assert main(["--input", str(src), "--html", str(tmp_path / "s.html"), "--json", str(tmp_path / "s.json"),
                 "--write-params", str(params)]) == 0
    got = load_params(params)
    # average: best validation over α at T=3 (0.84); single_minilm_l6 was not swept: its current T; none reads no T.
    assert got.distill.T == {"single_minilm_l6": 6.0, "average": 3.0}
    assert params.read_text().startswith("# my comment survives")
    assert "single_a" in capsys.readouterr().err  # swept but not run here: left out, said so


def test_runs_reads_workspaces_of_a_sweep_run_without_dvc(tmp_path):
    # The same grid as exp_show(), laid out as one workspace per cell (what bench/gpu.py writes).
    import yaml

    dirs = []
    for entry in [r["revs"][0] for r in exp_show()[0]["experiments"]]:
        d = tmp_path / entry["name"]
        (d / "metrics" / "distill").mkdir(parents=True)
        (d / "params.yaml").write_text(yaml.safe_dump(entry["data"]["params"]["params.yaml"]["data"]))
        for path, m in entry["data"]["metrics"].items():
            (d / path).write_text(json.dumps(m["data"]))
        dirs.append(str(d))
    out = tmp_path / "s.json"
    assert main(["--runs", *dirs, "--html", str(tmp_path / "s.html"), "--json", str(out)]) == 0
    from_exp_show = tmp_path / "e.json"
    (tmp_path / "exp.json").write_text(json.dumps(exp_show()))
    assert main(["--input", str(tmp_path / "exp.json"), "--html", str(tmp_path / "e.html"), "--json", str(from_exp_show)]) == 0
    got, want = json.loads(out.read_text()), json.loads(from_exp_show.read_text())
    # exp_show() also holds the workspace row (a duplicate T=6, α=0.5 cell with zeros, which loses): same choices
    assert got["rt"]["average"]["best"]["T"] == want["rt"]["average"]["best"]["T"] == 3.0
    assert got["rt"]["single_a"]["validation_by_T"] == {"3.0": 0.80, "6.0": 0.81, "9.0": 0.83}  # best over α per T


@pytest.mark.parametrize("layout,message", [("empty", "no params.yaml there"), ("no-metrics", "no metrics/distill/*.json there (did its distill stages run?)")])
def test_runs_bad_workspace_is_one_line(tmp_path, capsys, layout, message):
    d = tmp_path / "cell"
    d.mkdir()
    if layout == "no-metrics":
        (d / "params.yaml").write_text("distill: {T: 3, alpha: 0.5}\n")
    out = tmp_path / "s.json"
    assert main(["--runs", str(d), "--html", str(tmp_path / "s.html"), "--json", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: --runs {d}: {message}" and not out.exists()


def test_set_distill_T_edits_only_that_entry():
    from mtkd.sweep import set_distill_T

    text = ("seeds: [0]\n"
            "distill:\n"
            "  strategies: [none, average,\n"
            "               gating]\n"
            "  T: 6.0      # a number, or a map\n"
            "  alpha: 0.7\n"
            "  fused_teachers: null   # all\n"
            "runtime:\n"
            "  T: 1\n")
    once = set_distill_T(text, {"average": 3.0, "gating": 9.0})
    assert once == text.replace("  T: 6.0      # a number, or a map\n",
                                "  T:  # a number, or a map\n    average: 3.0\n    gating: 9.0\n")
    # an existing map is replaced whole, blank lines inside it too; other blocks' T untouched
    twice = set_distill_T(once.replace("    gating: 9.0\n", "\n    gating: 9.0\n"), {"average": 6.0, "gating": 6.0})
    assert twice == text.replace("  T: 6.0      # a number, or a map\n",
                                 "  T:  # a number, or a map\n    average: 6.0\n    gating: 6.0\n")
    # a blank line between T and the next key stays
    assert set_distill_T("distill:\n  T: 6.0\n\n  alpha: 0.5\n", {"average": 3.0}) == \
        "distill:\n  T:\n    average: 3.0\n\n  alpha: 0.5\n"
    # no T yet: added first in the block
    assert set_distill_T("distill:\n  alpha: 0.5\n", {"average": 3.0}) == "distill:\n  T:\n    average: 3.0\n  alpha: 0.5\n"
    with pytest.raises(MtkdError, match="no top-level `distill:` block"):
        set_distill_T("student: {}\n", {"average": 3.0})
