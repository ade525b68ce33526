"""bench/gpu.py: the stage plan read from dvc.yaml, the scheduler that runs it without DVC, and the CPU/GPU table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from bench.gpu import compare, distill_only, dvc_dir_hash, run_plan, stage_plan, sweep_plan
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


def test_distill_only_plans_the_students_on_carried_teachers():
    plan = {s["name"]: s for s in distill_only(stage_plan(ROOT))}
    assert {n.split("@")[0] for n in plan} == {"configure", "distill", "analyze"}
    for name, s in plan.items():
        assert set(s["after"]) <= set(plan), name  # nothing waits on a stage that will not run there
    assert set(plan["distill@average"]["after"]) == {"configure"}
    assert {n for n in plan if n.startswith("distill@")} <= set(plan["analyze"]["after"])


def test_dvc_dir_hash_is_what_dvc_records(tmp_path):
    import subprocess

    import yaml

    repo = tmp_path / "repo"
    out = repo / "ckpt"
    (out / "sub").mkdir(parents=True)
    (out / "model.safetensors").write_bytes(bytes(range(256)) * 7)
    (out / "config.json").write_text('{"a": 1}')
    (out / "sub" / "z.txt").write_text("z")
    (out / "b.txt").write_text("")
    dvc = str(Path(sys.executable).with_name("dvc"))
    subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
    subprocess.run([dvc, "add", "-q", "ckpt"], cwd=repo, check=True)
    recorded = yaml.safe_load((repo / "ckpt.dvc").read_text())["outs"][0]
    assert dvc_dir_hash(out) == {k: recorded[k] for k in ("md5", "size", "nfiles")}
    assert recorded["md5"].endswith(".dir") and recorded["nfiles"] == 4


def test_sweep_plan_gives_each_T_its_own_workspace(tmp_path):
    import yaml

    root = tmp_path / "root"
    for rel in ["mtkd", "stages", "data/prepared", "logits", "metrics/teachers"]:
        (root / rel).mkdir(parents=True)
    (root / "dvc.yaml").write_text("stages: {}\n")
    (root / "params.yaml").write_text(yaml.safe_dump({"seeds": [0, 1, 2, 3, 4], "distill": {"T": 6.0, "alpha": 0.7}}))
    dirs, plan = sweep_plan(root, tmp_path / "sweep", [3.0, 9.0], [0, 1], ["average", "gating"])
    assert [d.name for d in dirs] == ["T3", "T9"]
    for d, T in zip(dirs, (3.0, 9.0)):
        p = yaml.safe_load((d / "params.yaml").read_text())
        assert p == {"seeds": [0, 1], "distill": {"T": T, "alpha": 0.7}}
        assert (d / "logits").resolve() == (root / "logits").resolve() and (d / "metrics" / "teachers").is_symlink()
        assert not (d / "metrics" / "distill").exists()  # each T writes its own scores
    names = {s["name"]: s for s in plan}
    assert set(names) == {f"sweep-T{t}/{s}" for t in (3, 9) for s in ("configure", "distill@average", "distill@gating")}
    assert names["sweep-T9/distill@gating"]["after"] == ["sweep-T9/configure"]
    assert names["sweep-T3/distill@average"]["cmd"] == f"cd {dirs[0]} && python -m stages.distill --strategy average"
    assert yaml.safe_load((root / "params.yaml").read_text())["distill"]["T"] == 6.0  # the base is not touched


@pytest.mark.slow
def test_run_sweeps_T_then_trains_the_students_with_the_chosen_map(tmp_path):
    # What the GPU machine does after `carry --distill`, on the tiny profile and this CPU: the
    # teachers' logits come made; the sweep's best T on validation goes into params.yaml; the
    # students then train with it; the checkpoint folders' DVC hashes come back in gpu-outs.json.
    import tarfile

    import yaml

    from tests.helpers import make_repo, run, tiny_params

    repo = make_repo(tmp_path / "repo", tiny_params(strategies=("none", "average", "single_tfidf_lr")))
    run("dvc repro extract_logits@tiny_bert-rt extract_logits@tfidf_lr-rt", repo)
    work, out = tmp_path / "work", tmp_path / "out"
    (work / "site").mkdir(parents=True)
    (work / "plan.json").write_text(json.dumps(distill_only(stage_plan(repo))))  # as unpacked from the parts
    proc = run([sys.executable, "-m", "bench.gpu", "run", "--root", str(repo), "--work", str(work), "--out", str(out),
                "--sweep", "2,8", "--sweep-seeds", "1", "--jobs", "2"], ROOT)
    stages = json.loads((out / "gpu-stages.json").read_text())["stages"]
    assert {r["stage"] for r in stages} == {f"sweep-T{t}/{s}" for t in (2, 8) for s in
                                            ("configure", "distill@average", "distill@single_tfidf_lr")} | {
        "sweep: choose T (python -m mtkd.sweep --runs)",
        "configure", "distill@none", "distill@average", "distill@single_tfidf_lr", "analyze"}
    assert all(r["returncode"] == 0 for r in stages), stages
    # The map written is the one the sweep's validation scores choose (ties: the lower T).
    chosen = {}
    for s in ("average", "single_tfidf_lr"):
        val = {T: json.loads((work / "sweep" / f"T{T}" / "metrics" / "distill" / f"{s}.json").read_text())
               ["rt"]["validation"]["accuracy"]["mean"] for T in (2, 8)}
        chosen[s] = 2.0 if val[2] >= val[8] else 8.0
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert params["distill"]["T"] == chosen and "wrote distill.T" in proc.stdout
    for s in ("average", "single_tfidf_lr"):  # the students ran with it, on every seed of the default
        m = json.loads((repo / "metrics" / "distill" / f"{s}.json").read_text())["rt"]
        assert m["T"] == chosen[s] and len(m["seeds"]) == len(params["seeds"])
    outs = json.loads((out / "gpu-outs.json").read_text())
    assert set(outs) == {f"models/students/{s}" for s in ("none", "average", "single_tfidf_lr")}
    assert outs["models/students/average"] == dvc_dir_hash(repo / "models" / "students" / "average")
    with tarfile.open(out / "gpu-results.tar.gz") as tar:
        names = set(tar.getnames())
    assert {"params.yaml", "metrics/summary.json", "sweep/T2/params.yaml",
            "sweep/T8/metrics/distill/average.json"} <= names
