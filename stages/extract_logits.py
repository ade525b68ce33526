"""extract_logits@<teacher>-<task>: teacher logits for every split, keyed by example id; teacher metrics."""

import argparse
from pathlib import Path

from mtkd.cli import set_threads, stage
from mtkd.data import SPLITS, load_meta, load_split, report_splits
from mtkd.engine import get_engine
from mtkd.errors import MtkdError
from mtkd.io import sha256_tree, write_json
from mtkd.logits import load_oof_logits, save_logits
from mtkd.metrics import classification_metrics, confidence
from mtkd.pipeline import load_stage_params
from mtkd.teachers import get_teacher_kind
from mtkd.transfer import load_transfer, transfer_fingerprint

DATA = Path("data/prepared")


@stage
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_stage_params()
    if args.teacher not in params.teachers:
        raise MtkdError(f"--teacher: '{args.teacher}' is not in params.yaml teachers ({', '.join(params.teachers)})")
    set_threads(params.runtime)
    cfg = params.teachers[args.teacher]
    meta = load_meta(DATA, args.task)
    names = list(dict.fromkeys(SPLITS + report_splits(args.task, params.data)))
    frames = {s: load_split(DATA, args.task, s) for s in names}
    name = f"{args.teacher}-{args.task}"
    model_dir = Path("models/teachers") / name
    kind = get_teacher_kind(cfg.kind)
    # With a transfer set (a `<strategy>+transfer` student, issue #17) every teacher scores it too.
    transfer = load_transfer(args.task) if params.distill.uses_transfer else None
    logits = kind.predict(model_dir, {**frames, **({"transfer": transfer} if transfer is not None else {})},
                          params.runtime, num_classes=meta["num_classes"],
                          trust_remote_code=getattr(cfg, "trust_remote_code", False))
    transfer_logits = logits.pop("transfer", None)
    # Train soft labels: out-of-fold when teachers.<t>.oof_folds is set (the full model's own
    # train logits are memorised, near one-hot); validation/test always from the full model.
    train_confidence = {"in_sample": confidence(logits["train"])}
    oof = load_oof_logits(model_dir, args.teacher, getattr(cfg, "oof_folds", None), frames["train"], meta["num_classes"],
                          meta["splits"]["train"]["fingerprint"])
    provenance = {"data_fingerprint": {s: meta["splits"][s]["fingerprint"] for s in names},
                  "checkpoint_sha256": sha256_tree(model_dir), "train_logits": "full_model",
                  **kind.provenance(model_dir)}  # a precomputed teacher: its scores file and that file's sha256
    if oof is not None:
        logits["train"], provenance["oof"] = oof
        train_confidence["out_of_fold"] = confidence(logits["train"])
        provenance["train_logits"] = "out_of_fold"
    provenance["train_confidence"] = train_confidence
    if not get_engine().is_main:  # under a multi-process launcher every process holds all logits; one writes
        return
    save_logits(Path("logits") / f"{name}.npz", teacher=args.teacher, task=args.task, num_classes=meta["num_classes"],
                splits={s: (frames[s]["id"].tolist(), logits[s]) for s in names}, provenance=provenance)
    if transfer is not None:
        save_logits(Path("logits/transfer") / f"{name}.npz", teacher=args.teacher, task=args.task,
                    num_classes=meta["num_classes"], splits={"transfer": (transfer["id"].tolist(), transfer_logits)},
                    provenance={"data_fingerprint": {"transfer": transfer_fingerprint(transfer)},
                                "checkpoint_sha256": provenance["checkpoint_sha256"]})
    scores = {s: classification_metrics(logits[s], frames[s]["label"].to_numpy(), meta["num_classes"])
              for s in names if s != "train"}
    # Train confidence sits beside the task's scores, not among its splits (consumers read <task>.<split>).
    write_json(Path("metrics/teachers") / f"{name}.json",
               {args.task: scores, "train_confidence": {args.task: train_confidence}})
    primary = meta["primary_metric"]
    print(f"{name}: validation {primary} {scores['validation'][primary]:.4f}, test {primary} {scores['test'][primary]:.4f}"
          + (f"; scored {len(transfer)} transfer examples" if transfer is not None else ""))
    for how, c in train_confidence.items():
        print(f"{name}: train confidence ({how.replace('_', ' ')}): mean max prob {c['mean_max_prob']:.3f},"
              f" entropy {c['mean_entropy']:.3f}, {100 * c['high_confidence_share']:.1f}% above 0.95")


if __name__ == "__main__":
    main()
