"""Outputs: unwritable paths, failed writes and interrupted renames keep the previous output; every output goes through atomic_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mtkd.errors import MtkdError
from mtkd.io import atomic_path, write_json, write_npz
from tests.checkpoints import one_line


# --------------------------------------------------------------------------------------------
# Unwritable outputs.


def test_unwritable_output_directory_names_the_path(tmp_path):
    blocker = tmp_path / "somefile"
    blocker.write_text("a regular file where a directory should be")
    target = blocker / "sub" / "metrics.json"
    with pytest.raises(MtkdError) as err:
        write_json(target, {"a": 1})
    one_line(err, str(target), "cannot write")
    assert blocker.read_text() == "a regular file where a directory should be"


def test_output_path_taken_by_a_directory(tmp_path):
    target = tmp_path / "logits.npz"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(MtkdError) as err:
        write_npz(target, a=np.zeros(2))
    one_line(err, str(target), "cannot write")
    assert (target / "keep").read_text() == "x"
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_write_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"previous": true}\n')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    target = tmp_path / "ckpt"
    (tmp_path / ".ckpt.abcd1234.tmp").mkdir()  # as a SIGKILLed earlier run leaves it
    (tmp_path / ".ckpt.abcd1234.tmp" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / ".ckpt.b.abcd1234.tmp").write_text("another output's temporary")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.b.abcd1234.tmp", "ckpt"]


def test_directory_swap_interrupted_by_ctrl_c_keeps_the_previous_version(tmp_path, monkeypatch):
    import os

    from mtkd import io

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("previous")
    real = os.replace

    def ctrl_c_on_second_rename(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", ctrl_c_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out", is_dir=True) as tmp:
            (tmp / "x").write_text("new")
    monkeypatch.undo()
    assert (tmp_path / "out" / "x").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_directory_swap_killed_between_renames_is_restored(tmp_path):
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "x").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out", is_dir=True):
            raise RuntimeError
    assert (tmp_path / "out" / "x").read_text() == "previous"
