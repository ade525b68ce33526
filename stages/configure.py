"""configure: what each strategy reads from ``distill``, one file per strategy.

``configs/distill/<strategy>.yaml`` holds that strategy's resolved settings (its T from a
map, α, the α schedule, its own block; nothing for ``none``). ``distill@<strategy>``
depends on its file, so DVC re-trains a student only when its own settings change.
"""

import argparse
from pathlib import Path

import yaml

from mtkd.cli import stage
from mtkd.fusion import get_strategy
from mtkd.io import write_text
from mtkd.pipeline import load_stage_params, strategy_settings_path


def settings_text(strategy: str, settings: dict) -> str:
    body = yaml.safe_dump(settings, sort_keys=True) if settings else "{}\n"
    return f"# distill@{strategy} reads these settings (written by `dvc repro configure` from params.yaml)\n{body}"


@stage
def main(argv=None):
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args(argv)
    params = load_stage_params()
    for name in params.distill.strategies:
        strategy = get_strategy(name, list(params.teachers))
        write_text(Path(strategy_settings_path(name)), settings_text(name, strategy.settings(params.distill)))
    print(f"configured {len(params.distill.strategies)} strategies: {', '.join(params.distill.strategies)}")


if __name__ == "__main__":
    main()
