"""Queued experiments: `dvc queue start -j N` with N jobs × M torch threads (issue #3).

In a temporary copy with a small real configuration (the default params with ``seeds: [0]``,
``data.max_examples`` cut, the ``tfidf_lr`` teacher only and ``distill.strategies: [none,
single_tfidf_lr]``), after one baseline ``dvc repro``, queue the 2 × 2 grid
``-S distill.T=3,9 -S distill.alpha=0.5,0.7`` (each experiment re-runs
``distill@single_tfidf_lr`` + ``analyze``) and time ``MTKD_NUM_THREADS=M dvc queue start -j N``
until the last experiment has finished, for each (N, M). Between configurations the queue,
the experiments and the run-cache are cleared (else the second configuration's stages would
be restored from the run-cache instead of run) and every worker is stopped (a worker keeps
the environment it was started with).

While the queue runs, ``/proc`` is sampled every 0.2 s: each stage process's lifetime, how
many ran at once, and the ``MTKD_NUM_THREADS`` it really saw. The bench's own processes
(the detached queue workers) are not counted as contention (``bench.common.OWN_ROOTS``).

``python -m bench.run --only queue [--quick] [--queue-configs 1x2,2x1,2x2] [--queue-examples N]``
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from bench.common import GUARD, OWN_ROOTS, ROOT, ContentionMonitor, wait_idle
from bench.pipeline_bench import _env, _git_dvc_init, _label, make_copy

GRID = "-S 'distill.T=3,9' -S 'distill.alpha=0.5,0.7'"
DEFAULT_CONFIGS = "1x2,2x1,2x2"


def parse_configs(text: str) -> list[tuple[int, int]]:
    """``"1x2,2x1"`` → [(jobs 1, threads 2), (jobs 2, threads 1)]."""
    out = []
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)x(\d+)\s*", part)
        if not m or min(int(m.group(1)), int(m.group(2))) < 1:
            raise ValueError(f"--queue-configs: expected JOBSxTHREADS[,...], got {part!r}")
        out.append((int(m.group(1)), int(m.group(2))))
    return out


def small_params(quick: bool, max_examples: int | None) -> dict:
    """The configuration each queued experiment runs (default params, or the tiny profile with --quick)."""
    from mtkd.params import load_profile

    p = (load_profile(ROOT / "profiles/tiny.yaml", ROOT / "params.yaml") if quick
         else yaml.safe_load((ROOT / "params.yaml").read_text()))
    p["seeds"] = [0]
    p["teachers"] = {"tfidf_lr": p["teachers"]["tfidf_lr"]}
    p["distill"]["strategies"] = ["none", "single_tfidf_lr"]
    p["distill"]["T"], p["distill"]["alpha"] = 6.0, 0.7
    p["data"]["max_examples"] = max_examples if max_examples is not None else (400 if quick else 8000)
    p["runtime"]["num_threads"] = 2  # the baseline; queued runs get MTKD_NUM_THREADS
    return p


def _sh(cmd: str, repo: Path, log: Path, threads: int | None = None, check: bool = True) -> subprocess.CompletedProcess:
    env = _env(repo)
    env.pop("MTKD_NUM_THREADS", None)
    if threads is not None:
        env["MTKD_NUM_THREADS"] = str(threads)
    with open(log, "a") as fh:
        fh.write(f"\n$ {'MTKD_NUM_THREADS=' + str(threads) + ' ' if threads else ''}{cmd}\n")
        fh.flush()
        proc = subprocess.run(cmd, cwd=repo, env=env, shell=True, capture_output=True, text=True)
        fh.write(proc.stdout + proc.stderr)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{cmd}` failed ({proc.returncode}); see {log}")
    return proc


def _cmdline(pid: str) -> list[str]:
    return open(f"/proc/{pid}/cmdline", "rb").read().decode(errors="replace").split("\0")


def _cwd(pid: str) -> str:
    return os.readlink(f"/proc/{pid}/cwd")


def workers(repo: Path) -> list[int]:
    """Queue worker processes (`dvc exp queue-worker`) of ``repo``."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if "queue-worker" in _cmdline(pid) and _cwd(pid) == str(repo):
                out.append(int(pid))
        except OSError:
            continue
    return out


class QueueWatch(threading.Thread):
    """Samples /proc every ``interval`` s: running experiments (`dvc exp exec-run` of this repo) and stage processes."""

    def __init__(self, repo: Path, interval: float = 0.2):
        super().__init__(daemon=True)
        self.repo, self.interval = str(repo), interval
        self.exps_root = str(repo / ".dvc" / "tmp" / "exps")
        self.last_exec = None  # perf_counter of the last sample that saw a running experiment
        self.stages: dict[int, dict] = {}  # pid → {label, first, last, threads}
        self.max_stages = 0
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            now, running = time.perf_counter(), 0
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    args = _cmdline(pid)
                    if "exec-run" in args and any(self.repo in a for a in args):
                        self.last_exec = now
                        continue
                    if "-m" not in args or not args[args.index("-m") + 1].startswith("stages."):
                        continue
                    if not _cwd(pid).startswith(self.exps_root):
                        continue
                    running += 1
                    rec = self.stages.get(int(pid))
                    if rec is None:
                        env = dict(kv.split("=", 1) for kv in open(f"/proc/{pid}/environ", "rb").read()
                                   .decode(errors="replace").split("\0") if "=" in kv)
                        i = args.index("-m")
                        label = _label([args[i + 1].removeprefix("stages."), *[a for a in args[i + 2:] if a]])
                        rec = self.stages[int(pid)] = {"label": label, "first": now, "threads": env.get("MTKD_NUM_THREADS")}
                    rec["last"] = now
                except (OSError, ValueError, IndexError):
                    continue
            self.max_stages = max(self.max_stages, running)
            self.stop.wait(self.interval)


def queue_status(repo: Path, log: Path) -> dict[str, str]:
    out = _sh("dvc queue status", repo, log).stdout
    return {c[1]: c[-1] for c in (line.split() for line in out.splitlines())
            if len(c) >= 4 and c[0] != "Task" and c[-1] in {"Queued", "Running", "Success", "Failed"}}


def run_queue(repo: Path, log: Path, jobs: int, threads: int, timeout: float) -> dict:
    """Queue the grid, start ``jobs`` workers with ``threads`` threads, wait until every experiment finished."""
    _sh("dvc queue remove --all && dvc exp remove -A", repo, log, check=False)
    shutil.rmtree(repo / ".dvc" / "cache" / "runs", ignore_errors=True)  # no run-cache hits from earlier configs
    names = re.findall(r"Queued experiment '([^']+)'", (lambda p: p.stdout + p.stderr)(_sh(f"dvc exp run --queue {GRID}", repo, log)))
    if GUARD["max_wait"]:
        wait_idle(GUARD["max_wait"])
    watch, monitor = QueueWatch(repo), ContentionMonitor().__enter__()
    watch.start()
    t0 = time.perf_counter()
    _sh(f"dvc queue start -j {jobs}", repo, log, threads=threads)
    idle_since, statuses, restarts = t0, {}, 0
    try:
        while True:
            time.sleep(0.5)
            now = time.perf_counter()
            if now - t0 > timeout:
                raise RuntimeError(f"queue not done after {timeout:.0f} s (-j {jobs}, {threads} threads); see {log}")
            if watch.last_exec is not None and now - watch.last_exec < 3.0 or now - idle_since < 3.0:
                continue
            statuses = queue_status(repo, log)  # nothing running for 3 s: is anything still queued?
            if not {"Queued", "Running"} & set(statuses.values()):
                break
            if "Running" not in statuses.values() and not workers(repo):
                # Seen once with -j 2 x 2 threads: both workers exited with 2 experiments still queued.
                # Restart them and say so: that run's wall time then includes the stall.
                _sh(f"dvc queue start -j {jobs}", repo, log, threads=threads)
                restarts += 1
            idle_since = time.perf_counter()
    finally:
        watch.stop.set()
        watch.join()
        monitor.__exit__(None, None, None)
    end = watch.last_exec or time.perf_counter()
    _sh("dvc queue stop", repo, log, check=False)
    deadline = time.monotonic() + 60
    while workers(repo) and time.monotonic() < deadline:  # the next config must start fresh workers
        time.sleep(0.5)
    stages = list(watch.stages.values())
    distill = [s["last"] - s["first"] for s in stages if s["label"].startswith("distill@")]
    analyze = [s["last"] - s["first"] for s in stages if s["label"] == "analyze"]
    wall = end - t0
    contended = monitor.report()["contended_fraction"]
    GUARD["log"].append({"run": f"queue -j {jobs} × {threads} threads", "contended_fraction": contended})
    return {"jobs": jobs, "threads": threads, "experiments": len(names),
            "succeeded": sum(statuses.get(n) == "Success" for n in names), "wall_s": round(wall, 1),
            "per_experiment_s": round(wall / max(1, len(names)), 1),
            "distill_stage_s_mean": round(sum(distill) / len(distill), 1) if distill else None,
            "analyze_stage_s_mean": round(sum(analyze) / len(analyze), 1) if analyze else None,
            "stages_seen": len(stages), "max_concurrent_stages": watch.max_stages,
            "threads_seen": sorted({str(s["threads"]) for s in stages}), "contended_fraction": contended,
            "worker_restarts": restarts}


def run(opts) -> dict:
    configs = parse_configs(getattr(opts, "queue_configs", None) or DEFAULT_CONFIGS)
    params = small_params(opts.quick, getattr(opts, "queue_examples", None))
    tmp, repo = make_copy("default")
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    log = Path(tmp.name) / "bench.log"
    OWN_ROOTS.append(str(repo))
    try:
        _git_dvc_init(repo, log)
        t0 = time.perf_counter()
        _sh("dvc repro", repo, log)
        baseline = time.perf_counter() - t0
        _sh("git add -A && git commit -qm baseline", repo, log)
        out = {"config": {"seeds": params["seeds"], "max_examples": params["data"]["max_examples"],
                          "teachers": list(params["teachers"]), "strategies": params["distill"]["strategies"],
                          "grid": GRID, "profile": "tiny" if opts.quick else "default"},
               "baseline_repro_s": round(baseline, 1),
               "method": "wall time from `MTKD_NUM_THREADS=M dvc queue start -j N` until the last queued experiment"
                         " finished (/proc sampled every 0.2 s); queue, experiments and run-cache cleared between runs",
               "runs": []}
        for jobs, threads in configs:
            r = run_queue(repo, log, jobs, threads, timeout=3600)
            out["runs"].append(r)
            print(f"  -j {jobs} × {threads} threads: {r['wall_s']} s for {r['experiments']} experiments"
                  f" ({r['succeeded']} succeeded; distill stage {r['distill_stage_s_mean']} s,"
                  f" max {r['max_concurrent_stages']} stages at once, MTKD_NUM_THREADS seen {r['threads_seen']})", flush=True)
            if r["succeeded"] != r["experiments"] or r["threads_seen"] != [str(threads)]:
                raise RuntimeError(f"-j {jobs} × {threads}: {r}; see {log}")
        ref = out["runs"][0]["wall_s"]
        for r in out["runs"]:
            r["speedup_vs_first"] = round(ref / r["wall_s"], 2) if r["wall_s"] else None
        return out
    except Exception:
        keep = Path(tempfile.gettempdir()) / "mtkd-bench-queue-failed.log"
        shutil.copy(log, keep)
        print(f"  log kept at {keep}", flush=True)
        raise
    finally:
        _sh("dvc queue stop --kill", repo, log, check=False)
        OWN_ROOTS.remove(str(repo))
        tmp.cleanup()


if __name__ == "__main__":  # python -m bench.queue_bench: same as `python -m bench.run --only queue`
    from bench.run import main

    sys.exit(main(["--only", "queue", *sys.argv[1:]]))
