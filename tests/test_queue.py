"""DVC's experiment tooling on a real run, in a temporary copy (tiny profile cut to `none` + `average`).

* A queued T × α grid plus one experiment with an invalid value, run by `dvc queue start -j 1`:
  the valid ones succeed (and run only `configure`, `distill@average` + `analyze`), the invalid one fails
  with mtkd's one-line error in `dvc queue logs`, and `python -m mtkd.sweep` reports the grid
  from the real `dvc exp show --json` without the failed experiment.
* `dvc plots diff` / `dvc metrics diff` / `dvc exp show` across a commit and a changed `distill.T`.
* `dvc push` / `dvc pull` without a remote say how to configure one.

About 2–3 minutes on one thread.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.helpers import make_repo, run, tiny_params

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

THREADS = {"MTKD_NUM_THREADS": "1"}  # queued workers inherit it from `dvc queue start`
QUEUE_TIMEOUT_S = 420


def ran_stages(log: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", log))


def queued_names(proc) -> list[str]:
    return re.findall(r"Queued experiment '([^']+)' for future execution", proc.stdout + proc.stderr)


def queue_status(repo: Path) -> tuple[dict[str, str], int]:
    """name → status of every queue task, and the number of active workers (`dvc queue status`)."""
    out = run("dvc queue status", repo).stdout
    tasks = {}
    for line in out.splitlines():
        cols = line.split()
        if len(cols) >= 4 and cols[-1] in {"Queued", "Running", "Success", "Failed"} and cols[0] != "Task":
            tasks[cols[1]] = cols[-1]
    active = re.search(r"Worker status: (\d+) active", out)
    return tasks, int(active.group(1)) if active else 0


class StageEnvSampler(threading.Thread):
    """`MTKD_NUM_THREADS` of every stage process running inside the repository's queue workspaces."""

    def __init__(self, repo: Path):
        super().__init__(daemon=True)
        self.root = str(repo / ".dvc" / "tmp" / "exps")
        self.seen: dict[int, str | None] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in filter(str.isdigit, os.listdir("/proc")):
                if int(pid) in self.seen:
                    continue
                try:
                    cmd = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
                    if b"-m" not in cmd or not cmd[cmd.index(b"-m") + 1].startswith(b"stages."):
                        continue
                    if not os.readlink(f"/proc/{pid}/cwd").startswith(self.root):
                        continue
                    env = dict(kv.split(b"=", 1) for kv in open(f"/proc/{pid}/environ", "rb").read().split(b"\0") if b"=" in kv)
                    value = env.get(b"MTKD_NUM_THREADS")
                    self.seen[int(pid)] = value.decode() if value is not None else None
                except (OSError, ValueError, IndexError):
                    continue
            self.stop.wait(0.1)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory):
    """The tiny profile, committed, reproduced, and its dvc.lock committed: the experiments' baseline."""
    repo = make_repo(tmp_path_factory.mktemp("queue") / "repo", tiny_params(strategies=("none", "average")))
    run("git add -A && git commit -qm code", repo)
    run("dvc repro", repo, **THREADS)
    run("git add -A && git commit -qm baseline", repo)
    yield repo
    run("dvc queue stop --kill", repo, check=False)  # no worker outlives the test


@pytest.fixture(scope="module")
def queued(baseline):
    """`distill.T=-1` (invalid) queued first, then the 2 × 1 grid; `dvc queue start -j 1` until the queue is empty."""
    repo = baseline
    bad = queued_names(run("dvc exp run --queue -n bad-T -S distill.T=-1", repo))
    grid = queued_names(run("dvc exp run --queue -S 'distill.T=3,9' -S 'distill.alpha=0.5'", repo))
    assert bad == ["bad-T"] and len(grid) == 2, (bad, grid)
    sampler = StageEnvSampler(repo)
    sampler.start()
    run("dvc queue start -j 1", repo, **THREADS)
    t0 = time.monotonic()
    try:
        while True:
            time.sleep(3)
            tasks, active = queue_status(repo)
            if not {"Queued", "Running"} & set(tasks.values()) and active == 0:
                break
            if time.monotonic() - t0 > QUEUE_TIMEOUT_S:
                run("dvc queue stop --kill", repo, check=False)
                pytest.fail(f"queue not done after {QUEUE_TIMEOUT_S} s: {tasks}")
    finally:
        sampler.stop.set()
        sampler.join()
    logs = {name: run(f"dvc queue logs {name}", repo).stdout for name in ["bad-T", *grid]}
    exp_show = json.loads(run("dvc exp show --json", repo).stdout)
    return {"repo": repo, "bad": "bad-T", "grid": grid, "tasks": tasks, "logs": logs, "exp_show": exp_show,
            "stage_env": sampler.seen}


def experiments(exp_show: list) -> dict[str, dict]:
    """name → {state, error, params (params.yaml), metrics (path → data)} of every experiment of the baseline commit."""
    out = {}
    for exp in exp_show[1].get("experiments") or []:
        rev = exp["revs"][0]
        data = rev.get("data") or {}
        out[exp["name"]] = {"state": (exp.get("executor") or {}).get("state"), "error": rev.get("error"),
                            "params": data["params"]["params.yaml"]["data"],
                            "metrics": {p: (v or {}).get("data") for p, v in (data.get("metrics") or {}).items()}}
    return out


def test_valid_experiments_succeed_with_their_params_and_metrics(queued):
    exps = experiments(queued["exp_show"])
    assert set(exps) == {"bad-T", *queued["grid"]}
    assert {queued["tasks"][n] for n in queued["grid"]} == {"Success"}
    seen_T = set()
    for name in queued["grid"]:
        e = exps[name]
        assert e["state"] == "success" and e["error"] is None, (name, e["state"], e["error"])
        T, alpha = e["params"]["distill"]["T"], e["params"]["distill"]["alpha"]
        seen_T.add(T)
        assert alpha == 0.5
        # Metrics are the experiment's own: the student file records the T and α it was trained with.
        block = e["metrics"]["metrics/distill/average.json"]["rt"]
        assert (block["T"], block["alpha"]) == (float(T), 0.5)
        assert 0.0 <= block["validation"]["accuracy"]["mean"] <= 1.0
        live = e["metrics"]["dvclive/distill/average/metrics.json"]
        assert {"step", "epoch", "rt"} <= set(live) and set(live["rt"]["seed0"]) == {"train_loss", "val_accuracy"}
        # `none` ignores T and α: cached, so its metrics are the baseline's (α = 0).
        assert e["metrics"]["metrics/distill/none.json"]["rt"]["alpha"] == 0.0
    assert seen_T == {3, 9}


def test_queued_experiments_ran_only_distillation_and_analyze(queued):
    for name in queued["grid"]:
        log = queued["logs"][name]
        assert ran_stages(log) == {"configure", "distill@average", "analyze"}, log[-3000:]
        for cached in ("prepare", "train_teachers@tiny_bert-rt", "train_teachers@tfidf_lr-rt",
                       "extract_logits@tiny_bert-rt", "extract_logits@tfidf_lr-rt", "distill@none"):
            assert f"Stage '{cached}' didn't change, skipping" in log, (name, cached)
    # Every queued stage process saw MTKD_NUM_THREADS from `dvc queue start`'s environment.
    assert queued["stage_env"] and set(queued["stage_env"].values()) == {"1"}, queued["stage_env"]


def test_invalid_experiment_fails_with_one_clear_line(queued):
    exps = experiments(queued["exp_show"])
    assert queued["tasks"]["bad-T"] == "Failed"
    assert exps["bad-T"]["state"] == "failed" and exps["bad-T"]["error"]
    log = queued["logs"]["bad-T"]
    ours = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(ours) == 1 and re.fullmatch(r"error: params\.yaml: distill\.T: .*> 0.*-1.*", ours[0]), ours
    assert "Traceback" not in log
    assert ran_stages(log) == {"configure"}  # the first stage that reads distill.T failed; nothing after it started
    for name in queued["grid"]:  # run after the failure, untouched by it
        assert "error:" not in queued["logs"][name] and "ERROR" not in queued["logs"][name]


def test_sweep_report_from_real_exp_show(queued, tmp_path):
    repo = queued["repo"]
    html, js = tmp_path / "sweep.html", tmp_path / "sweep.json"
    proc = run(f"python -m mtkd.sweep --html {html} --json {js}", repo)
    assert "strategy grids" in proc.stdout
    summary = json.loads(js.read_text())
    avg = summary["rt"]["average"]
    # Baseline (6, 0.7) and the two grid cells; the failed T=-1 row (DVC shows it with the
    # baseline's metrics) is not a cell.
    assert avg["cells"] == 3 and set(avg["validation_by_T"]) == {"3.0", "6.0", "9.0"}
    assert avg["best"]["T"] in (3.0, 6.0, 9.0) and "none" not in summary["rt"]
    page = html.read_text()
    assert "average on rt: best cell T=" in page and 'id="sweep-rt-average"' in page


def test_missing_remote_says_how_to_add_one(queued, tmp_path):
    repo = queued["repo"]
    push = run("dvc push", repo, check=False)
    assert push.returncode != 0
    msg = push.stdout + push.stderr
    assert "no remote specified" in msg and "dvc remote add -d <remote name> <remote url>" in msg, msg
    clone = tmp_path / "clone"
    run(f"git clone -q {repo} {clone}", tmp_path)
    pull = run("dvc pull", clone, check=False)
    assert pull.returncode != 0
    assert "No remote provided and no default remote set" in pull.stdout + pull.stderr


def test_plots_metrics_and_exp_show_across_commits(queued):
    """Workspace with distill.T = 9 against the committed baseline (T = 6). Runs last: it changes the workspace."""
    repo = queued["repo"]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["distill"]["T"] = 9.0
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    repro = run("dvc repro", repo, **THREADS)
    assert ran_stages(repro.stdout) == {"configure", "distill@average", "analyze"}

    plots = json.loads(run("dvc plots diff HEAD --json", repo).stdout)["data"]
    declared = ["plots/strategies.csv", *[f"dvclive/distill/{s}/plots/metrics/rt/seed0/train_loss.tsv" for s in ("none", "average")],
                "dvclive/distill/average/plots/metrics/rt/seed1/val_accuracy.tsv",
                "dvclive/teachers/tiny_bert-rt/plots/metrics/train_loss.tsv"]
    for target in declared:
        assert target in plots, (target, sorted(plots))
        (plot,) = plots[target]
        assert sorted(plot["revisions"]) == ["HEAD", "workspace"]
        values = plot["content"]["data"]["values"]
        assert {v["rev"] for v in values} == {"HEAD", "workspace"}, target
    loss = {rev: [v["train_loss"] for v in plots["dvclive/distill/average/plots/metrics/rt/seed0/train_loss.tsv"][0]
                  ["content"]["data"]["values"] if v["rev"] == rev] for rev in ("HEAD", "workspace")}
    assert len(loss["HEAD"]) == len(loss["workspace"]) == 2 and loss["HEAD"] != loss["workspace"]  # T changed the KD loss

    diff = json.loads(run("dvc metrics diff HEAD --all --json", repo).stdout)
    avg = diff["metrics/distill/average.json"]
    assert avg["rt.T"] == {"old": 6.0, "new": 9.0, "diff": 3.0}
    assert {"rt.test.accuracy.mean", "rt.test.accuracy.ci95_low", "rt.validation.accuracy.mean",
            "rt.seeds.0.test.accuracy"} <= set(avg)
    assert {"step", "epoch", "rt.seed0.train_loss", "rt.seed1.val_accuracy"} <= set(diff["dvclive/distill/average/metrics.json"])
    assert "rt.T" in run("dvc metrics diff HEAD", repo).stdout  # changed metrics, as a table

    table = run("dvc exp show --md --drop '.*' --keep 'Experiment|dvclive/distill/average/metrics.json|distill\\.T$'", repo).stdout
    header = table.splitlines()[0]
    for column in ("step", "epoch", "rt.seed0.train_loss", "rt.seed0.val_accuracy"):
        assert f"dvclive/distill/average/metrics.json:{column}" in header, header
    assert "distill.T" in header
