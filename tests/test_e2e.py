"""End to end: `dvc repro` of the tiny profile in a temporary copy of the repository."""

import json
import re
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.helpers import profile

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

ROOT = Path(__file__).resolve().parents[1]
COPY = ["mtkd", "stages", "profiles", ".dvcignore"]


def run(cmd, cwd, check=True):
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(cwd),
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("tiny") / "repo"
    repo.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, repo / name)
    (repo / "params.yaml").write_text(yaml.safe_dump(profile("tiny"), sort_keys=False))
    run("git init -q && dvc init -q", repo)
    run([sys.executable, "-m", "mtkd.pipeline"], repo)
    proc = run("dvc repro", repo)
    return repo, proc.stdout + proc.stderr


def stage_names(repo):
    out = run("dvc stage list --name-only", repo).stdout
    return [l.strip() for l in out.splitlines() if l.strip()]


def test_every_stage_ran(tiny_repo):
    repo, log = tiny_repo
    names = stage_names(repo)
    assert len(names) == 1 + 3 + 3 + 1 + 8 + 1
    for name in names:
        assert f"Running stage '{name}'" in log, name
    assert (repo / "dvc.lock").is_file()


def test_teachers_learn(tiny_repo):
    repo, _ = tiny_repo
    test = pd.read_parquet(repo / "data/prepared/rt/test.parquet")
    majority = test["label"].value_counts(normalize=True).max()
    scores = {t: json.loads((repo / f"metrics/teachers/{t}-rt.json").read_text())["rt"]
              for t in ("minilm_l3", "tiny_bert", "tfidf_lr")}
    for t, s in scores.items():
        assert set(s) == {"validation", "test"}
        assert set(s["test"]) == {"accuracy", "macro_f1", "f1", "mcc", "ece"}
        assert s["test"]["accuracy"] >= 0.5, t
    # The pretrained and the lexical teacher beat always answering the majority class.
    assert scores["minilm_l3"]["test"]["accuracy"] > majority
    assert scores["tfidf_lr"]["test"]["accuracy"] > majority


def test_student_metrics(tiny_repo):
    repo, _ = tiny_repo
    for strategy in ("none", "single_tfidf_lr", "average", "weighted", "best_per_sample", "gating"):
        m = json.loads((repo / f"metrics/distill/{strategy}.json").read_text())["rt"]
        assert set(m["seeds"]) == {"0", "1"}
        acc = m["test"]["accuracy"]
        assert set(acc) == {"mean", "std", "ci95_low", "ci95_high"}
        assert 0.0 <= acc["ci95_low"] <= acc["mean"] <= acc["ci95_high"] <= 1.0
        assert m["alpha"] == (0.0 if strategy == "none" else 0.7)
        if strategy != "none":
            assert set(m["fidelity"]) >= {"fused", "minilm_l3", "tiny_bert", "tfidf_lr"}
            assert 0 <= m["fidelity"]["fused"]["agreement"]["mean"] <= 1
    gating = json.loads((repo / "metrics/distill/gating.json").read_text())["rt"]["seeds"]["0"]
    assert sum(gating["gate_weights_train"].values()) == pytest.approx(1.0, abs=1e-4)
    student = repo / "models/students/average/rt"
    assert (student / "model.safetensors").is_file() and not list(student.glob("*.bin"))


def test_analysis_outputs(tiny_repo):
    repo, _ = tiny_repo
    summary = json.loads((repo / "metrics/summary.json").read_text())
    assert "rt" in summary
    results = pd.read_csv(repo / "metrics/results.csv")
    assert len(results) == 3 + 8 * 2  # teachers + strategies × seeds
    html = (repo / "reports/report.html").read_text()
    assert "plotly" in html.lower() and not re.search(r"<script[^>]*\bsrc=", html)


def test_second_repro_runs_nothing(tiny_repo):
    repo, _ = tiny_repo
    out = run("dvc repro", repo).stdout
    assert "Running stage" not in out


def ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_remote_round_trip_and_sweep_in_fresh_clones(tiny_repo, tmp_path):
    """Push to a local remote; a fresh clone pulls and re-runs nothing; `-S distill.T=9` re-runs only distillation."""
    repo, _ = tiny_repo
    remote = tmp_path / "remote"
    run(f"dvc remote add -f -d local {remote} && dvc push -q --run-cache", repo)
    run("git add -A && git commit -qm tiny", repo)

    pulled = tmp_path / "pulled"
    run(f"git clone -q {repo} {pulled}", tmp_path)
    run("dvc pull -q", pulled)
    assert ran_stages(run("dvc repro", pulled).stdout) == set()
    assert "up to date" in run("dvc status", pulled).stdout

    fresh = tmp_path / "fresh"
    run(f"git clone -q {repo} {fresh}", tmp_path)
    out = run("dvc exp run --pull --allow-missing -S distill.T=9", fresh)
    ran = ran_stages(out.stdout + out.stderr)
    strategies = ["single_minilm_l3", "single_tiny_bert", "single_tfidf_lr", "average", "weighted", "best_per_sample", "gating"]
    assert ran == {f"distill@{s}" for s in strategies} | {"configure", "analyze"}  # no teacher, no logits, not `none`
    metrics = json.loads((fresh / "metrics/distill/average.json").read_text())
    assert metrics["rt"]["T"] == 9.0
    # A student-only runtime key re-runs the students, not the teachers nor their logits.
    out = run("dvc exp run --pull --allow-missing -S runtime.seed_workers=1", fresh)
    assert ran_stages(out.stdout + out.stderr) == {f"distill@{s}" for s in ["none", *strategies]} | {"analyze"}
