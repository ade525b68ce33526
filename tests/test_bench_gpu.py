"""bench/gpu.py: the stage plan read from dvc.yaml, the scheduler that runs it without DVC, and the CPU/GPU table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bench.gpu import compare, run_plan, stage_plan
from tests.helpers import ROOT


def test_stage_plan_waits_for_what_each_stage_reads():
    plan = {s["name"]: s for s in stage_plan(ROOT)}
    assert json.loads(json.dumps(plan)) == plan  # plain data: it travels as plan.json
    assert plan["prepare"]["after"] == [] and plan["configure"]["after"] == []
    extraction = {n for n in plan if n.startswith("extract_logits@")}
    distill = {n for n in plan if n.startswith("distill@")}
    assert extraction and distill
    for name in distill:
        assert set(plan[name]["after"]) == {"prepare", "configure", *extraction}, name  # never another student
        assert plan[name]["cmd"] == f"python -m stages.distill --strategy {name.split('@')[1]}"
    for name in extraction:
        teacher = name.split("@")[1]
        assert set(plan[name]["after"]) == {"prepare", f"train_teachers@{teacher}"}
    assert distill <= set(plan["analyze"]["after"])


def _script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return f"{sys.executable} {path}"


def test_run_plan_orders_skips_dependents_of_a_failure_and_stops_at_the_deadline(tmp_path):
    stamp = tmp_path / "order.txt"
    write = "import sys; open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')"
    cmd = _script(tmp_path, "w", write)
    plan = [{"name": "a", "cmd": f"{cmd} {stamp} a", "after": []},
            {"name": "b", "cmd": f"{cmd} {stamp} b", "after": ["a"]},
            {"name": "bad", "cmd": f"{sys.executable} -c 'raise SystemExit(3)'", "after": ["a"]},
            {"name": "c", "cmd": f"{cmd} {stamp} c", "after": ["b", "bad"]},
            {"name": "d", "cmd": f"{cmd} {stamp} d", "after": ["b"]}]
    rows = {r["stage"]: r for r in run_plan(plan, jobs=2, env=None, logs=tmp_path / "logs")}
    order = stamp.read_text().split()
    assert order.index("a") < order.index("b") < order.index("d") and "c" not in order
    assert rows["bad"]["returncode"] == 3 and rows["c"]["returncode"] is None and "failed" in rows["c"]["skipped"]
    assert rows["d"]["returncode"] == 0 and rows["d"]["started_s"] >= rows["b"]["started_s"] + rows["b"]["wall_s"] - 0.01
    assert (tmp_path / "logs" / "bad.log").is_file()

    slow = [{"name": "sleep", "cmd": f"{sys.executable} -c 'import time; time.sleep(30)'", "after": []},
            {"name": "after", "cmd": "true", "after": ["sleep"]}]
    rows = {r["stage"]: r for r in run_plan(slow, jobs=1, env=None, logs=tmp_path / "logs2", deadline_s=0.5)}
    assert rows["sleep"]["returncode"] is None and "deadline" in rows["sleep"]["stopped"] and rows["sleep"]["wall_s"] < 10
    assert "deadline" in rows["after"]["skipped"]


def _metrics(root: Path, teacher_acc: float, students: dict[str, tuple[float, float, float]], headline: dict) -> Path:
    (root / "teachers").mkdir(parents=True)
    (root / "distill").mkdir()
    (root / "teachers" / "t1-rt.json").write_text(json.dumps({"rt": {"test": {"accuracy": teacher_acc}}}))
    for name, (mean, lo, hi) in students.items():
        (root / "distill" / f"{name}.json").write_text(json.dumps(
            {"rt": {"test": {"accuracy": {"mean": mean, "ci95_low": lo, "ci95_high": hi}}}}))
    (root / "summary.json").write_text(json.dumps({"rt": {"primary_metric": "accuracy", "headline": headline}}))
    return root


def test_compare_puts_each_gpu_mean_against_the_cpu_seed_interval(tmp_path):
    head = {"multi": "average", "single": "single_t1", "diff": -0.008, "ci95_low": -0.016, "ci95_high": 0.001,
            "verdict": "no detectable difference"}
    cpu = _metrics(tmp_path / "cpu", 0.80, {"none": (0.80, 0.79, 0.81), "average": (0.81, 0.805, 0.815)}, head)
    gpu = _metrics(tmp_path / "gpu", 0.7937, {"none": (0.795, 0.78, 0.81), "average": (0.80, 0.79, 0.81)}, head)
    text = compare(cpu, gpu)
    assert "| t1-rt | 0.8000 | 0.7937 | -0.63 |" in text
    assert "| none | 0.8000 [0.7900, 0.8100] | 0.7950 [0.7800, 0.8100] | -0.50 | yes |" in text
    assert "| average | 0.8100 [0.8050, 0.8150] | 0.8000 [0.7900, 0.8100] | -1.00 | **no** |" in text
    assert "1 of 2 students' GPU means lie within the CPU run's seed interval." in text
    assert "- GPU: best multi (average) vs best single (single_t1): -0.8 pp [-1.6, +0.1], no detectable difference." in text
