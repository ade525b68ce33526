"""Training curves in DVCLive's format, so they reach ``dvc plots`` and ``dvc exp show``.

The training loop records one row per evaluation (``epoch``, ``step``, ``train_loss``,
``val_<metric>``); a stage passes its rows here once training is over. DVCLive writes
``metrics.json`` (the last evaluation: a column per value in ``dvc exp show``) and
``plots/metrics/**.tsv`` (one curve per value for ``dvc plots``). The directory is written
whole to a temporary and renamed, like every output, so an interrupted stage leaves none.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mtkd.io import atomic_path

CURVE_KEYS = ("train_loss",)  # plus every val_* key


def write_curves(out_dir: Path, rows: list[dict], prefix=lambda row: "") -> None:
    """Log ``rows`` (one per evaluation, in order) to a DVCLive directory at ``out_dir``.

    ``prefix(row)`` names the series a row belongs to (``rt/seed0/``), so several seeds or
    tasks evaluated at the same steps become parallel curves of one step axis.
    """
    logging.getLogger("dvclive").setLevel(logging.WARNING)
    by_step: dict[int, list[dict]] = {}
    for row in rows:
        by_step.setdefault(int(row["step"]), []).append(row)
    with atomic_path(Path(out_dir), is_dir=True) as tmp:
        # No dvc.yaml of its own, no experiment of its own: the stage is already part of one.
        with _FilesOnlyLive(dir=str(tmp), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False) as live:
            for step in sorted(by_step):
                live.step = step
                live.log_metric("epoch", float(by_step[step][0]["epoch"]))
                for row in by_step[step]:
                    for key, value in row.items():
                        if key in CURVE_KEYS or key.startswith("val_"):
                            live.log_metric(f"{prefix(row)}{key}", float(value))
            if not by_step:
                live.summary["evaluations"] = 0


def _files_only_live():
    from dvclive import Live

    class FilesOnlyLive(Live):
        """DVCLive's files without its DVC integration.

        The stage already runs inside a DVC pipeline whose dvc.yaml declares these files.
        DVCLive 3.49's own integration opens the repository, reads its git revision (it raises
        in a repository without commits: `git init` then `dvc repro`) and may stage files,
        none of which a stage should do.
        """

        def _init_dvc(self):
            self._dvc_file = None

    return FilesOnlyLive


def _FilesOnlyLive(**kwargs):
    return _files_only_live()(**kwargs)
