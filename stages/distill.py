"""distill@<strategy>: one student per seed per task, distilled under one fusion strategy."""

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.cli import set_threads, stage
from mtkd.curves import write_curves
from mtkd.data import load_meta, load_split, report_splits
from mtkd.distill import distill_task, load_teacher_validation_metric
from mtkd.engine import get_engine
from mtkd.errors import MtkdError
from mtkd.fusion import TeacherLogits, get_strategy
from mtkd.io import write_json, write_npz
from mtkd.logits import load_logits
from mtkd.pipeline import load_stage_params
from mtkd.transfer import load_transfer, transfer_fingerprint

DATA = Path("data/prepared")


@stage
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--strategy", required=True)
    args = ap.parse_args(argv)
    params = load_stage_params()
    teachers = list(params.teachers)
    try:
        strategy = get_strategy(args.strategy, teachers)
    except MtkdError as exc:
        raise MtkdError(f"--strategy: {exc}") from None
    settings = strategy.settings(params.distill)
    set_threads(params.runtime)
    metrics, arrays, curves = {}, {}, []
    for task in params.data.tasks:
        meta = load_meta(DATA, task)
        splits = ["train", "validation", *report_splits(task, params.data)]
        frames = {s: load_split(DATA, task, s) for s in splits}
        teacher_logits = None
        if strategy.uses_teachers:
            fp, used = meta["splits"], strategy.teacher_names(teachers, settings)
            by_split = {s: np.stack([load_logits(Path("logits") / f"{t}-{task}.npz", s, frames[s], meta["num_classes"],
                                                 fp[s]["fingerprint"], checkpoint_dir=Path("models/teachers") / f"{t}-{task}")
                                     for t in used]) for s in splits}
            if strategy.transfer:  # train + the transfer set: soft targets on both, gold labels on train only
                frames["train"], by_split["train"] = with_transfer(task, frames["train"], by_split["train"], used,
                                                                   meta["num_classes"])
            teacher_logits = TeacherLogits(
                used, by_split,
                {t: load_teacher_validation_metric(Path("metrics/teachers"), t, task, meta["primary_metric"]) for t in used},
            )
        metrics[task], preds = distill_task(strategy, settings, meta, frames, teacher_logits, params,
                                            Path("models/students") / args.strategy / task, curves)
        arrays.update({f"{task}/{k}": v for k, v in preds.items()})
    if not get_engine().is_main:  # under a multi-process launcher, one process writes
        return
    write_npz(Path("predictions") / f"{args.strategy}.npz", **arrays)
    write_json(Path("plots/curves/distill") / f"{args.strategy}.json", curves)
    write_curves(Path("dvclive/distill") / args.strategy, curves, lambda row: f"{row['task']}/seed{row['seed']}/")
    write_json(Path("metrics/distill") / f"{args.strategy}.json", metrics)
    for task, m in metrics.items():
        primary = load_meta(DATA, task)["primary_metric"]
        t = m["test"][primary]
        spread = f" ± {t['std']:.4f}" if t["std"] is not None else ""  # one seed: no spread to show
        print(f"distill@{args.strategy} {task}: test {primary} {t['mean']:.4f}{spread} over {len(params.seeds)} seeds")


def with_transfer(task: str, train: pd.DataFrame, train_logits: np.ndarray, teachers: list[str], num_classes: int):
    """Train followed by the task's transfer set (label -1), and the teachers' logits [K, n, C] on both."""
    transfer = load_transfer(task)
    fp = transfer_fingerprint(transfer)
    extra = np.stack([load_logits(Path("logits/transfer") / f"{t}-{task}.npz", "transfer", transfer, num_classes, fp,
                                  checkpoint_dir=Path("models/teachers") / f"{t}-{task}") for t in teachers])
    rows = transfer[[c for c in transfer.columns if c in train.columns]]
    return pd.concat([train, rows], ignore_index=True), np.concatenate([train_logits, extra], axis=1)


if __name__ == "__main__":
    main()
