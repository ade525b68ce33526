"""Reading what the earlier stages wrote, with every id and seed checked against params and data.

Each error names the file and the command that (re)makes it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.analysis.regions import CONFIDENCE_SPLITS
from mtkd.data import human_shares, load_meta, load_split
from mtkd.errors import MtkdError
from mtkd.logits import check_array, load_logits

DATA = Path("data/prepared")


def read_json(path: Path, how: str):
    """The JSON file at ``path``; ``how`` is the command that makes it, named when it is missing or broken."""
    if not path.is_file():
        raise MtkdError(f"{path}: not found (run `{how}`)")
    try:
        return json.loads(path.read_text())
    except ValueError as exc:
        raise MtkdError(f"{path}: not valid JSON ({exc}); re-run `{how}`") from None


def read_curves(path: Path) -> list[dict]:
    """Training-curve rows; none when the file is absent (curves are optional in the report)."""
    return json.loads(path.read_text()) if path.is_file() else []


def load_student_logits(path: Path, strategy: str, task: str, split: str, frame: pd.DataFrame, num_classes: int,
                        seeds: list, kind: str = "") -> dict[str, np.ndarray]:
    """Student logits per seed from ``predictions/<strategy>.npz``, ids checked against the prepared split.

    ``kind="fused/"`` reads what the student was distilled towards instead (probabilities at
    T = 1; {} when the file holds none, as for ``none``).
    """
    how = f"dvc repro distill@{strategy}"
    if not path.is_file():
        raise MtkdError(f"{path}: predictions not found (run `{how}`)")
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise MtkdError(f"{path}: not a readable predictions file ({type(exc).__name__}); re-run `{how}`") from None
    with npz:
        key = f"{task}/{split}/ids"
        if key not in npz.files:
            raise MtkdError(f"{path}: no '{key}' (re-run `{how}`)")
        ids, want = npz[key], frame["id"].astype(str).to_numpy()
        if len(ids) != len(want) or not np.array_equal(ids, want):
            raise MtkdError(f"{path}[{task}/{split}]: ids do not match data/prepared/{task}/{split}.parquet "
                            f"({len(ids)} vs {len(want)} ids); stale predictions, re-run `{how}`")
        out = {}
        if kind and f"{task}/{split}/{kind}seed{seeds[0]}" not in npz.files:
            return out
        for seed in seeds:
            key = f"{task}/{split}/{kind}seed{seed}"
            if key not in npz.files:
                raise MtkdError(f"{path}: no '{key}' for seed {seed} (re-run `{how}`)")
            z = np.asarray(npz[key], dtype=np.float32)
            check_array(z, want, num_classes, f"{path}[{key}]")
            out[str(seed)] = z
    return out


@dataclass
class TaskInputs:
    task: str
    meta: dict
    labels: dict[str, np.ndarray]                # split → labels
    teacher_logits: dict[str, np.ndarray]        # train / test → [K, n, C]
    teacher_metrics: dict[str, dict]             # teacher → split → metric → value
    distill: dict[str, dict]                     # strategy → metrics block of this task
    student_test: dict[str, dict[str, np.ndarray]]  # strategy → seed → test logits
    curves: dict[str, list[dict]]                # strategy → curve rows of this task
    teacher_curves: dict[str, list[dict]]        # teacher → curve rows
    # teacher → in-sample train confidence, for teachers whose train logits are out-of-fold (oof_folds)
    train_in_sample: dict[str, dict] = field(default_factory=dict)
    groups: dict[str, np.ndarray] = field(default_factory=dict)  # split → group of each example (the bootstrap unit)
    student_validation: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # strategy → seed → logits
    student_fused: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # strategy → seed → fused test probs
    # validation / test → the raters' distribution [n, C], for a task with rater data (meta.json's rater_data)
    human: dict[str, np.ndarray] = field(default_factory=dict)


def load_task_inputs(root: Path, task: str, teachers: list[str], strategies: list[str], seeds: list,
                     distill_all: dict[str, dict], curves_all: dict[str, list]) -> TaskInputs:
    data = root / DATA
    meta = load_meta(data, task)
    C = meta["num_classes"]
    frames = {s: load_split(data, task, s) for s in ("train", "validation", "test")}
    logits = {}
    for split in CONFIDENCE_SPLITS:
        stack = []
        for t in teachers:
            path = root / "logits" / f"{t}-{task}.npz"
            if not path.is_file():
                raise MtkdError(f"{path}: teacher logits not found (run `dvc repro extract_logits@{t}-{task}` or `dvc pull`)")
            stack.append(load_logits(path, split, frames[split], C, meta["splits"][split]["fingerprint"],
                                     checkpoint_dir=root / "models/teachers" / f"{t}-{task}"))
        logits[split] = np.stack(stack)
    teacher_metrics, train_in_sample = {}, {}
    for t in teachers:
        path = root / "metrics/teachers" / f"{t}-{task}.json"
        record = read_json(path, f"dvc repro extract_logits@{t}-{task}")
        train_conf = (record.get("train_confidence") or {}).get(task) or {}
        if "out_of_fold" in train_conf and "in_sample" in train_conf:
            train_in_sample[t] = train_conf["in_sample"]
        scores = record.get(task)
        if not scores or not {"validation", "test"} <= set(scores):
            raise MtkdError(f"{path}: no validation/test scores for task '{task}' (re-run `dvc repro extract_logits@{t}-{task}`)")
        teacher_metrics[t] = scores
    distill, student_test, student_validation, student_fused = {}, {}, {}, {}
    for s in strategies:
        path = root / "metrics/distill" / f"{s}.json"
        block = distill_all[s].get(task)
        if block is None:
            raise MtkdError(f"{path}: no results for task '{task}' (re-run `dvc repro distill@{s}`)")
        have = sorted(block.get("seeds", {}))
        if have != sorted(str(x) for x in seeds):
            raise MtkdError(f"{path}: results for seeds {have}, params.yaml seeds are {list(seeds)} "
                            f"(re-run `dvc repro distill@{s}`)")
        distill[s] = block
        path = root / "predictions" / f"{s}.npz"
        student_test[s] = load_student_logits(path, s, task, "test", frames["test"], C, seeds)
        student_validation[s] = load_student_logits(path, s, task, "validation", frames["validation"], C, seeds)
        if fused := load_student_logits(path, s, task, "test", frames["test"], C, seeds, kind="fused/"):
            student_fused[s] = fused
    teacher_curves = {t: read_curves(root / "plots/curves/teachers" / f"{t}-{task}.json") for t in teachers}
    human = ({s: human_shares(frames[s], C, str(data / task / f"{s}.parquet")) for s in ("validation", "test")}
             if "rater_data" in meta else {})
    return TaskInputs(task, meta, {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}, logits,
                      teacher_metrics, distill, student_test, task_curves(curves_all, task, strategies),
                      teacher_curves, train_in_sample, {s: f["group"].astype(str).to_numpy() for s, f in frames.items()},
                      student_validation, student_fused, human)


def task_curves(curves_all: dict[str, list], task: str, strategies: list[str]) -> dict[str, list[dict]]:
    """strategy → the curve rows of ``task`` (a distill curve file holds every task's rows)."""
    return {s: [r for r in curves_all.get(s, []) if r.get("task") == task] for s in strategies}


def read_distill(root: Path, strategies: list[str]) -> tuple[dict[str, dict], dict[str, list]]:
    """Every strategy's distill metrics and training-curve rows (all tasks)."""
    metrics = {s: read_json(root / "metrics/distill" / f"{s}.json", f"dvc repro distill@{s}") for s in strategies}
    curves = {s: read_curves(root / "plots/curves/distill" / f"{s}.json") for s in strategies}
    return metrics, curves
