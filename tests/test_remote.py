"""An unreachable DVC remote (local paths: no network): push and pull fail and keep the workspace."""

from __future__ import annotations

import shutil

import pytest

from tests.helpers import run, snapshot


# --------------------------------------------------------------------------------------------
# An unreachable DVC remote (local paths only: no network in tests).


@pytest.fixture()
def dvc_repo(tmp_path):

    repo = tmp_path / "repo"
    repo.mkdir()
    run("git init -q && dvc init -q", repo)
    (repo / "logits.npz").write_bytes(b"teacher logits")
    (repo / "other.npz").write_bytes(b"another teacher's logits")
    run("dvc add -q logits.npz other.npz", repo)
    return repo, run


@pytest.mark.parametrize("url", ["blocker/sub/storage", "/proc/mtkd-no-such-remote"], ids=["under-a-file", "unwritable"])
def test_push_to_unreachable_remote_fails_and_keeps_workspace(dvc_repo, tmp_path, url):
    repo, run = dvc_repo
    (tmp_path / "blocker").write_text("a file, not a directory")
    url = str(tmp_path / url) if not url.startswith("/") else url
    run(f"dvc remote add -d broken {url}", repo)
    tracked = ["logits.npz", "logits.npz.dvc", "other.npz", "other.npz.dvc", ".dvc/cache"]
    before = snapshot(repo, tracked)
    proc = run("dvc push", repo, check=False)
    assert proc.returncode != 0
    assert "ERROR" in proc.stderr + proc.stdout
    assert snapshot(repo, tracked) == before


def test_pull_from_missing_remote_fails_and_keeps_workspace(dvc_repo, tmp_path):
    repo, run = dvc_repo
    run(f"dvc remote add -d gone {tmp_path / 'no-such-storage'}", repo)
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "other.npz").unlink()  # as in a fresh clone: only the remote has it
    before = snapshot(repo, ["logits.npz", "logits.npz.dvc", "other.npz.dvc"])
    proc = run("dvc pull", repo, check=False)
    assert proc.returncode != 0
    assert "other.npz" in proc.stderr + proc.stdout
    assert snapshot(repo, ["logits.npz", "logits.npz.dvc", "other.npz.dvc"]) == before
    assert not (repo / "other.npz").exists()
