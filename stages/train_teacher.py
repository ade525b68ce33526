"""train_teachers@<teacher>-<task>: fine-tune one teacher on one task; write its checkpoint and metrics.

With ``teachers.<teacher>.oof_folds: k``, also k fold models whose out-of-fold train logits
go into the checkpoint directory (``oof_train_logits.npz``); the fold models are not kept.
"""

import argparse
from pathlib import Path

from mtkd.cli import log, set_threads, stage
from mtkd.curves import write_curves
from mtkd.data import load_meta, load_split
from mtkd.engine import get_engine
from mtkd.io import write_json
from mtkd.pipeline import load_stage_params
from mtkd.logits import OOF_FILE, save_logits
from mtkd.teachers import get_teacher_kind, train_out_of_fold

DATA = Path("data/prepared")


@stage
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_stage_params()
    if args.teacher not in params.teachers:
        from mtkd.errors import MtkdError
        raise MtkdError(f"--teacher: '{args.teacher}' is not in params.yaml teachers ({', '.join(params.teachers)})")
    set_threads(params.runtime)
    cfg = params.teachers[args.teacher]
    meta = load_meta(DATA, args.task)
    splits = {s: load_split(DATA, args.task, s) for s in ("train", "validation")}
    name = f"{args.teacher}-{args.task}"
    extra = {}
    if getattr(cfg, "oof_folds", None) is not None:  # a precomputed teacher has no folds
        # Fold models first (they are deleted); their train logits are published inside the
        # full model's checkpoint, in the same rename, so neither exists without the other.
        oof, info = train_out_of_fold(args.teacher, cfg, meta, splits, params.runtime, log=log.info)
        extra[OOF_FILE] = lambda path: save_logits(
            path, teacher=args.teacher, task=args.task, num_classes=meta["num_classes"],
            splits={"train": (splits["train"]["id"].tolist(), oof)},
            provenance={"data_fingerprint": {"train": meta["splits"]["train"]["fingerprint"]}, "oof": info})
    out = get_teacher_kind(cfg.kind).train(args.teacher, cfg, meta, splits, Path("models/teachers") / name, params.runtime,
                                        extra_files=extra)
    if not get_engine().is_main:  # under a multi-process launcher, one process writes
        return
    history = out["history"] or one_evaluation(cfg, meta, splits, Path("models/teachers") / name, params.runtime)
    write_json(Path("plots/curves/teachers") / f"{name}.json", out["history"])
    write_curves(Path("dvclive/teachers") / name, history)
    print(f"trained {name} (best epoch {out['best_epoch']})")


def one_evaluation(cfg, meta, splits, model_dir, runtime) -> list[dict]:
    """A teacher fitted in one go (sklearn) has no curve: its single point is its validation score."""
    from mtkd.metrics import classification_metrics

    logits = get_teacher_kind(cfg.kind).predict(model_dir, {"validation": splits["validation"]}, runtime,
                                             num_classes=meta["num_classes"])["validation"]
    score = classification_metrics(logits, splits["validation"]["label"].to_numpy(), meta["num_classes"])
    return [{"epoch": 1.0, "step": 1, f"val_{meta['primary_metric']}": score[meta["primary_metric"]]}]


if __name__ == "__main__":
    main()
