"""transfer@<task>: the transfer set (issue #17) that `<strategy>+transfer` students distil on besides train:
``distill.transfer.copies`` augmented copies of each train text and/or ``distill.transfer.unlabelled_file``."""

import argparse
from pathlib import Path

from mtkd.cli import stage
from mtkd.data import load_split
from mtkd.io import atomic_path
from mtkd.pipeline import load_stage_params
from mtkd.transfer import TRANSFER_DIR, build_transfer

DATA = Path("data/prepared")


def mask_token(student) -> str | None:
    from mtkd.models import load_tokenizer

    return load_tokenizer(student, key="student").mask_token


@stage
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_stage_params()
    cfg = params.distill.transfer
    frames = {s: load_split(DATA, args.task, s) for s in ("train", "validation", "test")}
    task_ids = {i for f in frames.values() for i in f["id"]}
    frame = build_transfer(frames["train"], task_ids, cfg, mask_token(params.student) if cfg.copies else None)
    with atomic_path(TRANSFER_DIR / f"{args.task}.parquet") as tmp:
        frame.to_parquet(tmp, index=False)
    copies = int(frame["id"].str.contains("#aug", regex=False).sum())
    print(f"transfer set of {args.task}: {len(frame)} examples ({copies} augmented copies of "
          f"{len(frames['train'])} train texts, {len(frame) - copies} unlabelled texts)")


if __name__ == "__main__":
    main()
