"""Interruption and determinism on a cut-down tiny profile (issue #7, items 3–4).

One temporary repository (module fixture) runs the whole pipeline once; then each long
stage — teacher training, logits extraction, distillation — is SIGKILLed at the worst
moment (its output written to a temporary, not yet renamed; see helpers.SITECUSTOMIZE),
`dvc repro` is run again, and a watcher checks throughout that no output path ever held
a partial file. Ctrl-C (SIGINT) must stop a stage with one short line and exit 130.
Determinism: re-running a student with the same params gives byte-identical metrics;
another seed gives different ones.

The profile is tiny.yaml with two teachers (tiny_bert: an HF teacher, tfidf_lr: the
sklearn one), two strategies (none, average), 400 examples and one torch thread: every
stage kind, half the stages (see helpers.tiny_params).
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from mtkd.io import _remove_stale_temps
from tests.helpers import env_for, is_complete, make_repo, run, snapshot, tiny_params, write_hook

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

PAUSED = "PAUSED-BEFORE-RENAME"
INTERRUPTED = "interrupted: stopped without leaving a partial output; re-run to finish"
OUTPUT_GLOBS = ["data/prepared/*/*", "models/teachers/*", "models/students/*/*", "logits/*.npz", "predictions/*.npz",
                "metrics/**/*.json", "metrics/*.csv", "plots/**/*.json", "plots/*.csv"]


class Watcher:
    """Polls every output path while stages run; records any that does not read back whole."""

    def __init__(self, repo: Path):
        self.repo, self.partial, self.checks = repo, [], 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self._stop.is_set():
            for pattern in OUTPUT_GLOBS:
                for path in self._paths(pattern):
                    if any(part.startswith(".") for part in path.relative_to(self.repo).parts):
                        continue  # temporaries (.<name>.XXXXXXXX.tmp) and .gitignore files
                    self.checks += 1
                    if not is_complete(path):
                        self.partial.append(str(path.relative_to(self.repo)))
            self._stop.wait(0.2)

    def _paths(self, pattern: str) -> list[Path]:
        try:
            return list(self.repo.glob(pattern))
        except FileNotFoundError:  # DVC removed a directory while it was listed: look again next round
            return []

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    repo = make_repo(root / "repo", tiny_params())
    hook = write_hook(root / "hook")
    with Watcher(repo) as watcher:
        proc = run("dvc repro", repo)
    log = proc.stdout + proc.stderr
    assert not watcher.partial, watcher.partial
    baseline = snapshot(repo, ["metrics", "predictions", "logits"])
    return {"repo": repo, "hook": hook, "log": log, "baseline": baseline, "root": root}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_paused(ctx, cmd, target: str, ctrl_c: bool = False) -> tuple[subprocess.Popen, Path]:
    """Start ``cmd`` in its own process group; return once it is paused before publishing ``target``.

    ``ctrl_c``: Ctrl-C's default action restored in ``cmd``, as in a terminal's foreground job, even
    when pytest itself runs in the background (where it is ignored, and stays so across exec)."""
    repo = ctx["repo"]
    log = ctx["root"] / f"log-{time.monotonic_ns()}.txt"
    with open(log, "w") as fh:
        # No shell: ``proc`` is dvc (or the stage) itself, so wait() reaps it and DVC's stale-lock
        # check (is the PID in .dvc/tmp/rwlock alive?) does not see a zombie.
        proc = subprocess.Popen(cmd.split(), cwd=repo, stdout=fh, stderr=subprocess.STDOUT,
                                env=env_for(repo, ctx["hook"], MTKD_TEST_PAUSE_BEFORE_RENAME=target),
                                start_new_session=True, preexec_fn=_default_sigint if ctrl_c else None)
    deadline = time.monotonic() + 400
    while PAUSED not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, signal.SIGKILL)
            raise AssertionError(f"{cmd} never reached the write of {target}:\n{log.read_text()[-4000:]}")
        time.sleep(0.1)
    return proc, log


def stop(proc: subprocess.Popen, sig: int) -> int:
    try:
        os.killpg(proc.pid, sig)
    except ProcessLookupError:
        pass
    return proc.wait(timeout=60)


def temporaries(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{path.name}.????????.tmp"))


def assert_clean(repo: Path) -> None:
    out = run("dvc status", repo).stdout
    assert "up to date" in out, out


def kill_and_repro(ctx, cmd, target: str, repro: str = "dvc repro") -> str:
    """SIGKILL ``cmd`` while ``target``'s temporary is written but not renamed; then ``repro``."""
    repo = ctx["repo"]
    out = repo / target
    with Watcher(repo) as watcher:
        proc, log = start_paused(ctx, cmd, target)
        assert temporaries(out), "paused without a temporary beside the output"
        assert not out.exists() or is_complete(out)
        assert stop(proc, signal.SIGKILL) == -signal.SIGKILL
        assert not out.exists() or is_complete(out)
        rerun = run(repro, repo)
    assert not watcher.partial, watcher.partial
    assert watcher.checks > 0
    assert_clean(repo)
    assert is_complete(out)
    return rerun.stdout + rerun.stderr


def test_full_run(repo):
    assert "Running stage 'distill@average'" in repo["log"]
    assert_clean(repo["repo"])


def test_sigkill_teacher_training(repo):
    # Train again for real (a plain `dvc repro` would check the last run's checkpoint out of the
    # cache): the new run must clean up the killed run's temporary and reproduce the checkpoint
    # bit for bit, so the `dvc repro` after it finds extraction unchanged.
    out = kill_and_repro(repo, "dvc repro -f train_teachers@tiny_bert-rt", "models/teachers/tiny_bert-rt",
                         repro="dvc repro -f train_teachers@tiny_bert-rt && dvc repro")
    assert "Running stage 'train_teachers@tiny_bert-rt'" in out
    assert "Running stage 'extract_logits@tiny_bert-rt'" not in out
    assert not temporaries(repo["repo"] / "models/teachers/tiny_bert-rt")


def test_sigkill_extraction_keeps_the_previous_logits(repo):
    """Killed outside DVC (which would have removed the output first): the old file stays, byte for byte."""
    r = repo["repo"]
    target = r / "logits/tiny_bert-rt.npz"
    before = target.read_bytes()
    with Watcher(r) as watcher:
        proc, _ = start_paused(repo, "python -m stages.extract_logits --teacher tiny_bert --task rt",
                               "logits/tiny_bert-rt.npz")
        assert target.read_bytes() == before and temporaries(target)
        stop(proc, signal.SIGKILL)
    assert target.read_bytes() == before
    assert not watcher.partial, watcher.partial
    assert_clean(r)
    assert "Running stage" not in run("dvc repro", r).stdout


def test_sigkill_distillation(repo):
    # A plain `dvc repro` restores the killed stage from the run-cache: the kill left the cache intact.
    # Killed while publishing the first seed's student, i.e. half-way through the stage.
    out = kill_and_repro(repo, "dvc repro -f distill@average", "models/students/average/rt")
    assert "distill@average" in out and "Running stage 'analyze'" not in out
    assert is_complete(repo["repo"] / "predictions/average.npz")
    r = repo["repo"]
    assert snapshot(r, ["metrics/distill/average.json"]) == {k: v for k, v in repo["baseline"].items()
                                                            if k == "metrics/distill/average.json"}


def test_sigint_stops_with_one_line_and_no_partial_output(repo):
    r = repo["repo"]
    target = r / "models/students/none/rt"
    before = snapshot(r, ["models/students/none", "predictions/none.npz", "metrics/distill/none.json"])
    proc, log = start_paused(repo, "python -m stages.distill --strategy none", "models/students/none/rt", ctrl_c=True)
    assert stop(proc, signal.SIGINT) == 130  # Ctrl-C reaches the whole foreground process group
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.splitlines()[-1] == INTERRUPTED
    assert not temporaries(target)  # the interrupted write cleaned up after itself
    assert snapshot(r, ["models/students/none", "predictions/none.npz", "metrics/distill/none.json"]) == before
    assert_clean(r)


def _seed_workers(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    return [int(p) for p in out if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")]


def test_a_seed_worker_killed_stops_the_stage_in_one_line(repo):
    r = repo["repo"]
    names = ["models/students/none", "predictions/none.npz", "metrics/distill/none.json"]
    before = snapshot(r, names)
    proc, log = start_paused(repo, "python -m stages.distill --strategy none", "models/students/none/rt")
    workers = _seed_workers(proc.pid)
    assert len(workers) == 2, workers  # tiny: two seeds, runtime.seed_workers 2
    os.kill(workers[0], signal.SIGKILL)  # as the kernel's out-of-memory killer would
    assert proc.wait(timeout=120) == 2
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "a seed worker outlived its stage"
    text = log.read_text()
    assert "Traceback" not in text, text[-3000:]
    assert text.splitlines()[-1].startswith("error: runtime.seed_workers: a seed worker process stopped abruptly "
                                            "(killed by signal 9"), text[-500:]
    # A SIGKILLed writer cannot clean up after itself: if the killed worker was the one writing (the
    # paused one, between the two renames of its directory swap), its temporary stays beside the output
    # and the previous version waits in `.rt.old`; the next write of that output recovers them (as here).
    rt = r / "models/students/none/rt"
    if temporaries(rt):
        _remove_stale_temps(rt)
    assert not temporaries(rt) and not rt.with_name(".rt.old").exists()
    assert snapshot(r, names) == before
    assert_clean(r)


def test_seed_workers_stop_when_the_stage_is_killed(repo):
    """SIGKILL to the stage's process alone (a scheduler's kill, not the terminal's group): its seed
    workers get SIGTERM from the kernel (PR_SET_PDEATHSIG), unwind, and leave the output as it was."""
    r = repo["repo"]
    names = ["models/students/none", "predictions/none.npz", "metrics/distill/none.json"]
    before = snapshot(r, names)
    proc, _ = start_paused(repo, "python -m stages.distill --strategy none", "models/students/none/rt")
    workers = _seed_workers(proc.pid)
    assert len(workers) == 2, workers
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
    deadline = time.monotonic() + 60
    while [w for w in workers if Path(f"/proc/{w}").exists()] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "seed workers outlived their killed stage"
    rt = r / "models/students/none/rt"
    assert not temporaries(rt) and not rt.with_name(".rt.old").exists()  # the paused writer unwound its swap
    assert snapshot(r, names) == before
    assert_clean(r)


def test_same_params_give_byte_identical_metrics_and_another_seed_does_not(repo):
    r = repo["repo"]
    base = repo["baseline"]
    out = run("dvc repro -f distill@average", r)
    assert "Running stage 'distill@average'" in out.stdout + out.stderr
    again = snapshot(r, ["metrics/distill/average.json", "predictions/average.npz"])
    assert again == {k: base[k] for k in again}
    status = run("dvc status distill@average", r).stdout
    assert "up to date" in status, status

    params = yaml.safe_load((r / "params.yaml").read_text())
    params["seeds"] = [5]
    (r / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc repro distill@average", r)
    old = json.loads(base["metrics/distill/average.json"])["rt"]["seeds"]["0"]
    new = json.loads((r / "metrics/distill/average.json").read_text())["rt"]["seeds"]["5"]
    assert (r / "metrics/distill/average.json").read_bytes() != base["metrics/distill/average.json"]
    assert new["validation"] != old["validation"] or new["test"] != old["test"]
    with np.load(r / "predictions/average.npz") as now, np.load(io.BytesIO(base["predictions/average.npz"])) as then:
        assert not np.array_equal(now["rt/test/seed5"], then["rt/test/seed0"])
