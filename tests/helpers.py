"""Shared helpers for tests that run stages or DVC in a temporary copy of the repository.

Never run stages in the working repository: its outputs are the committed experiment.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
COPY = ["mtkd", "stages", "profiles", ".dvcignore"]

# Imported automatically by every Python process whose PYTHONPATH starts with HOOK_DIR
# (site imports `sitecustomize`): pauses the rename that publishes one output, so a test
# can interrupt a stage at the worst moment — its temporary is written, the rename is not.
SITECUSTOMIZE = '''
import os, sys, time

_target = os.environ.get("MTKD_TEST_PAUSE_BEFORE_RENAME")
if _target:
    _real_replace = os.replace

    def _paused_replace(src, dst, *args, **kwargs):
        s, d = os.fspath(src), os.fspath(dst)
        ours = os.path.basename(s).startswith("." + os.path.basename(d) + ".") and s.endswith(".tmp")
        if ours and os.path.abspath(d).endswith(_target):
            sys.stderr.write(f"PAUSED-BEFORE-RENAME {d} {s}\\n")
            sys.stderr.flush()
            time.sleep(600)
        return _real_replace(src, dst, *args, **kwargs)

    os.replace = _paused_replace
'''


def env_for(repo: Path, hook_dir: Path | None = None, **extra: str) -> dict[str, str]:
    path = [str(hook_dir)] if hook_dir else []
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
            "PYTHONPATH": os.pathsep.join([*path, str(repo)]),
            "DVC_NO_ANALYTICS": "1",  # no background daemon, no network
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t",
            **extra}


def run(cmd, cwd: Path, check: bool = True, **env_extra: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env_for(cwd, **env_extra), capture_output=True, text=True,
                          shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}")
    return proc


def profile(name: str) -> dict:
    """``params.yaml`` with the overrides of ``profiles/<name>.yaml`` (a raw dict, as the pipeline writes it)."""
    from mtkd.params import load_profile

    return load_profile(ROOT / "profiles" / f"{name}.yaml", ROOT / "params.yaml")


def make_repo(dest: Path, params: dict | None = None) -> Path:
    """A git + DVC repository at ``dest`` with the code, ``params`` (default: the tiny profile) and its dvc.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif src.exists():
            shutil.copy(src, dest / name)
    if params is None:
        (dest / "params.yaml").write_text(yaml.safe_dump(profile("tiny"), sort_keys=False))
    else:
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git init -q && dvc init -q", dest)
    run([sys.executable, "-m", "mtkd.pipeline"], dest)
    return dest


def tiny_params(teachers=("tiny_bert", "tfidf_lr"), strategies=("none", "average"), max_examples: int = 400,
                num_threads: int = 1) -> dict:
    """The tiny profile cut to the given teachers, strategies and size (fewer stages, same code paths).

    One torch thread per stage: tests may share the cores with another job, and two jobs with
    two threads each run at 0.39x (FACTS), while these tiny models gain little from a second thread.
    """
    raw = profile("tiny")
    raw["teachers"] = {k: v for k, v in raw["teachers"].items() if k in teachers}
    raw["distill"]["strategies"] = list(strategies)
    raw["data"]["max_examples"] = max_examples
    raw["runtime"]["num_threads"] = num_threads
    return raw


def write_hook(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return directory


def is_complete(path: Path) -> bool:
    """Whether ``path`` (file or checkpoint directory) reads back whole."""
    try:
        if path.is_dir():
            return all(is_complete(p) for p in path.rglob("*") if p.is_file())
        if path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                for key in npz.files:
                    npz[key]
        elif path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), "np") as f:
                for key in f.keys():
                    f.get_tensor(key)
        elif path.suffix == ".parquet":
            import pandas as pd

            pd.read_parquet(path)
        return True
    except FileNotFoundError:
        return True  # replaced or removed while we looked: absent is not partial
    except Exception:
        return False


def snapshot(root: Path, names) -> dict[str, bytes]:
    """Bytes of every file under each of ``names`` (relative to ``root``)."""
    out = {}
    for name in names:
        p = root / name
        files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()) if p.is_dir() else []
        out.update({str(f.relative_to(root)): f.read_bytes() for f in files})
    return out


def run_stage(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``python -m <args>`` in ``cwd`` (the repository's code on PYTHONPATH), output captured, never raising."""
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, capture_output=True, text=True, env=env_for(ROOT, **env))


def assert_one_error_line(proc, *needles):
    """A stage refused bad input: exit 2, exactly one ``error:`` line containing every needle, no traceback."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def write_table(frame, path: Path) -> str:
    """``frame`` written as the file its suffix names (csv, tsv, jsonl, else parquet); returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".tsv":
        frame.to_csv(path, sep="\t", index=False)
    elif path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path, index=False)
    return str(path)
