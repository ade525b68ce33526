"""train_teachers@<teacher>-<task>: fine-tune one teacher on one task; write its checkpoint and metrics."""

import argparse
from pathlib import Path

from mtkd.cli import set_threads, stage
from mtkd.data import load_meta, load_split
from mtkd.io import write_json
from mtkd.params import load_params
from mtkd.teachers import TEACHER_KINDS

DATA = Path("data/prepared")


@stage
def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher", required=True)
    ap.add_argument("--task", required=True)
    args = ap.parse_args(argv)
    params = load_params()
    if args.teacher not in params.teachers:
        from mtkd.errors import MtkdError
        raise MtkdError(f"--teacher: '{args.teacher}' is not in params.yaml teachers ({', '.join(params.teachers)})")
    set_threads(params.runtime)
    cfg = params.teachers[args.teacher]
    meta = load_meta(DATA, args.task)
    splits = {s: load_split(DATA, args.task, s) for s in ("train", "validation")}
    name = f"{args.teacher}-{args.task}"
    out = TEACHER_KINDS[cfg.kind].train(args.teacher, cfg, meta, splits, Path("models/teachers") / name, params.runtime)
    write_json(Path("plots/curves/teachers") / f"{name}.json", out["history"])
    print(f"trained {name} (best epoch {out['best_epoch']})")


if __name__ == "__main__":
    main()
