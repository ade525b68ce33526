"""Stage memory and `dvc repro` wall times, in a temporary copy of the repository.

* :func:`stage_rss` runs every stage module of a profile (``python -m stages.<name>``, in
  dependency order) as a child process that writes its own peak RSS (``VmHWM``) at exit (exact:
  the kernel's high-water mark of that process), then times ``dvc repro`` of the same
  copy, a no-op ``dvc repro`` and ``dvc exp run -S distill.T=9``.
* :func:`dvc_times` does the latter for the default profile (~20 min on 2 cores), sampling
  each stage process's ``VmHWM`` (its peak RSS) from ``/proc`` every 0.2 s while DVC runs.

The copy has its own git repository and DVC cache; nothing in the working repository is
touched. Prepared assets (the packaged model and data) are read from the installed packages.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.common import ROOT

COPY = ["mtkd", "stages", "profiles", ".dvcignore"]


def _env(repo: Path) -> dict:
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "PYTHONPATH": str(repo),
            "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench",
            "GIT_COMMITTER_EMAIL": "bench@localhost", "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}


def make_copy(profile: str) -> tuple[tempfile.TemporaryDirectory, Path]:
    tmp = tempfile.TemporaryDirectory(prefix=f"mtkd-bench-{profile}-")
    repo = Path(tmp.name) / "repo"
    repo.mkdir()
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, repo / name)
    if profile == "default":
        shutil.copy(ROOT / "params.yaml", repo / "params.yaml")
    else:
        from mtkd.params import load_profile

        (repo / "params.yaml").write_text(yaml.safe_dump(load_profile(ROOT / "profiles" / f"{profile}.yaml",
                                                                      ROOT / "params.yaml"), sort_keys=False))
    return tmp, repo


def _sh(cmd: str, repo: Path, log: Path, check: bool = True) -> float:
    t0 = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"\n$ {cmd}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=repo, env=_env(repo), shell=True, stdout=fh, stderr=subprocess.STDOUT)
    dt = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed ({proc.returncode}); see {log}")
    return dt


def stage_commands(params: dict) -> list[list[str]]:
    tasks = params["data"]["tasks"]
    cmds = [["prepare"]]
    cmds += [["train_teacher", "--teacher", t, "--task", k] for t in params["teachers"] for k in tasks]
    cmds += [["extract_logits", "--teacher", t, "--task", k] for t in params["teachers"] for k in tasks]
    cmds += [["distill", "--strategy", s] for s in params["distill"]["strategies"]]
    return cmds + [["analyze"]]


def _label(args: list[str]) -> str:
    name, rest = args[0], args[1:]
    vals = [rest[i + 1] for i in range(0, len(rest), 2)]
    stage = {"train_teacher": "train_teachers", "extract_logits": "extract_logits"}.get(name, name)
    if name in ("train_teacher", "extract_logits"):
        return f"{stage}@{vals[0]}-{vals[1]}"
    return f"{stage}@{vals[0]}" if vals else stage


def _git_dvc_init(repo: Path, log: Path) -> None:
    _sh("git init -q && dvc init -q && dvc config core.analytics false", repo, log)
    _sh(f"{sys.executable} -m mtkd.pipeline", repo, log)
    _sh("git add -A && git commit -qm bench", repo, log)


def _dvc_repro_times(repo: Path, log: Path, *, repeats: int = 3) -> dict:
    """After a full `dvc repro`: no-op repro (best and median of ``repeats``), `dvc status`, then exp run -S distill.T=9."""
    noop = [_sh("dvc repro", repo, log) for _ in range(repeats)]
    status = _sh("dvc status", repo, log)
    _sh("git add -A && git commit -qm lock", repo, log)
    exp = _sh("dvc exp run -S distill.T=9", repo, log)
    return {"noop_repro_s": round(min(noop), 2), "noop_repro_median_s": round(sorted(noop)[len(noop) // 2], 2),
            "dvc_status_s": round(status, 2), "exp_run_T9_s": round(exp, 1)}


# Runs ``stages.<name>`` as __main__ and writes the process's own peak RSS (VmHWM, kB) to argv[1] at exit.
# Not wait4's ru_maxrss: a child started from this (large) process inherits its peak at exec, so
# every stage read the bench's own 2.6 GB.
PEAK_WRAPPER = """
import atexit, runpy, sys
out = sys.argv[1]
def _peak():
    with open("/proc/self/status") as f:
        kb = next(line.split()[1] for line in f if line.startswith("VmHWM:"))
    with open(out, "w") as f:
        f.write(kb)
atexit.register(_peak)
sys.argv = sys.argv[2:]
runpy.run_module(sys.argv[0], run_name="__main__", alter_sys=True)
"""


def stage_rss(profile: str = "tiny") -> dict:
    """Every stage of ``profile`` run directly (peak RSS via wait4), then the same copy under DVC (wall times)."""
    tmp, repo = make_copy(profile)
    log = Path(tmp.name) / "bench.log"
    params = yaml.safe_load((repo / "params.yaml").read_text())
    stages = []
    try:
        for args in stage_commands(params):
            t0 = time.perf_counter()
            peak_file = Path(tmp.name) / "peak_kb"
            with open(log, "a") as fh:
                proc = subprocess.run([sys.executable, "-c", PEAK_WRAPPER, str(peak_file), f"stages.{args[0]}", *args[1:]],
                                      cwd=repo, env=_env(repo), stdout=fh, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                raise RuntimeError(f"stages.{args[0]} {' '.join(args[1:])} failed ({proc.returncode}): {log.read_text()[-2000:]}")
            stages.append({"stage": _label(args), "peak_rss_mb": round(int(peak_file.read_text()) / 1024, 1),
                           "wall_s": round(time.perf_counter() - t0, 2)})
            print(f"  {profile} {stages[-1]['stage']}: {stages[-1]['peak_rss_mb']} MB, {stages[-1]['wall_s']} s", flush=True)
        out = {"profile": profile, "method": "VmHWM of each `python -m stages.<name>` process at its exit (seed workers not included)", "stages": stages,
               "max_peak_rss_mb": max(s["peak_rss_mb"] for s in stages),
               "sum_stage_wall_s": round(sum(s["wall_s"] for s in stages), 1)}
        # A fresh copy under DVC: a full repro from scratch, a no-op repro, an experiment.
        out["dvc"] = dvc_times(profile)
        return out
    except Exception:
        keep = Path(tempfile.gettempdir()) / f"mtkd-bench-{profile}-failed.log"
        shutil.copy(log, keep)
        print(f"  log kept at {keep}", flush=True)
        raise
    finally:
        tmp.cleanup()


class _Poller(threading.Thread):
    """Peak RSS (VmHWM) of each stage process running in ``repo``, sampled every ``interval`` s."""

    def __init__(self, repo: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.repo, self.interval = str(repo), interval
        self.peak: dict[str, float] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for pid in os.listdir("/proc"):
                if not pid.isdigit():
                    continue
                try:
                    args = open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")
                    if "-m" not in args or not args[args.index("-m") + 1].startswith("stages."):
                        continue
                    if os.readlink(f"/proc/{pid}/cwd") != self.repo:
                        continue
                    for line in open(f"/proc/{pid}/status"):
                        if line.startswith("VmHWM:"):
                            mb = int(line.split()[1]) / 1024
                            i = args.index("-m")
                            label = _label([args[i + 1].removeprefix("stages."), *[a for a in args[i + 2:] if a]])
                            self.peak[label] = max(self.peak.get(label, 0.0), mb)
                except (OSError, ValueError, IndexError):
                    continue
            self.stop.wait(self.interval)


def dvc_times(profile: str = "default") -> dict:
    """Wall time of a full `dvc repro` of ``profile`` from scratch, a no-op one, and `dvc exp run -S distill.T=9`."""
    tmp, repo = make_copy(profile)
    log = Path(tmp.name) / "bench.log"
    try:
        _git_dvc_init(repo, log)
        poller = _Poller(repo)
        poller.start()
        full = _sh("dvc repro", repo, log)
        poller.stop.set()
        poller.join()
        out = {"profile": profile, "full_repro_s": round(full, 1), "full_repro_min": round(full / 60, 2),
               **_dvc_repro_times(repo, log),
               "stage_peak_rss_mb": {k: round(v, 1) for k, v in sorted(poller.peak.items())},
               "rss_method": "VmHWM of each stage process sampled from /proc every 0.2 s during `dvc repro`"}
        out["max_stage_peak_rss_mb"] = max(out["stage_peak_rss_mb"].values()) if out["stage_peak_rss_mb"] else None
        print(f"  {profile} dvc: full {out['full_repro_min']} min, no-op {out['noop_repro_s']} s, exp {out['exp_run_T9_s']} s",
              flush=True)
        return out
    except Exception:
        keep = Path(tempfile.gettempdir()) / f"mtkd-bench-{profile}-failed.log"
        shutil.copy(log, keep)
        print(f"  log kept at {keep}", flush=True)
        raise
    finally:
        tmp.cleanup()
