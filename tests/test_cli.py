"""Stage entry points (mtkd.cli.stage): a bad input exits 2 with one line and overwrites nothing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests import helpers
from tests.checkpoints import TINY_BERT, TFIDF, truncate
from tests.helpers import assert_one_error_line, snapshot


# --------------------------------------------------------------------------------------------
# The same failures through a stage entry point: exit 2, one line, nothing overwritten.


@pytest.fixture()
def stage_dir(work, tmp_path):
    """A working directory with params, prepared data, both checkpoints and earlier outputs."""
    params = helpers.profile("tiny")
    params["teachers"] = {"tiny_bert": TINY_BERT, "tfidf_lr": TFIDF}
    params["distill"]["strategies"] = ["none", "average"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(work["root"] / "data", tmp_path / "data")
    shutil.copytree(work["root"] / "models", tmp_path / "models")
    for name in ("tiny_bert-rt", "tfidf_lr-rt"):
        (tmp_path / "logits").mkdir(exist_ok=True)
        (tmp_path / "logits" / f"{name}.npz").write_bytes(b"previous logits")
        (tmp_path / "metrics/teachers").mkdir(parents=True, exist_ok=True)
        (tmp_path / "metrics/teachers" / f"{name}.json").write_text('{"previous": true}')
    return tmp_path


def run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return helpers.run_stage(cwd, *args, HF_HUB_OFFLINE="1")


def test_stage_with_truncated_checkpoint_exits_2_and_keeps_outputs(stage_dir):
    truncate(stage_dir / "models/teachers/tiny_bert-rt/model.safetensors")
    before = snapshot(stage_dir, ["logits", "metrics"])
    proc = run_stage(stage_dir, "stages.extract_logits", "--teacher", "tiny_bert", "--task", "rt")
    assert_one_error_line(proc, "models/teachers/tiny_bert-rt/model.safetensors", "truncated")
    assert snapshot(stage_dir, ["logits", "metrics"]) == before


def test_stage_with_unwritable_output_exits_2_and_keeps_outputs(stage_dir):
    shutil.rmtree(stage_dir / "logits")
    (stage_dir / "logits").write_text("a file where the logits directory should be")
    before = snapshot(stage_dir, ["logits", "metrics"])
    proc = run_stage(stage_dir, "stages.extract_logits", "--teacher", "tfidf_lr", "--task", "rt")
    assert_one_error_line(proc, "logits/tfidf_lr-rt.npz", "cannot write")
    assert snapshot(stage_dir, ["logits", "metrics"]) == before
