"""prepare: load every task in ``data.tasks``, split it, write ``data/prepared/<task>/``."""

from pathlib import Path

from mtkd.cli import stage
from mtkd.data import prepare_task
from mtkd.pipeline import load_stage_params

OUT = Path("data/prepared")


@stage
def main(argv=None):
    params = load_stage_params()
    for task in params.data.tasks:
        meta = prepare_task(params.data, task, OUT / task)
        sizes = ", ".join(f"{s} {v['n']}" for s, v in meta["splits"].items())
        print(f"prepared {task}: {sizes}")


if __name__ == "__main__":
    main()
