"""Atomic writes and content hashes.

Every output goes to a temporary sibling first and is renamed into place, so an
interrupted stage never leaves a half-written file where DVC (or the next stage)
would take it for a finished one.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from mtkd.errors import MtkdError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``.

    A path we cannot write (a parent that is a file, a read-only mount, a full disk)
    becomes one :class:`MtkdError` naming ``path``; ``path`` itself is left as it was.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stale_temps(path)
        if is_dir:
            tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
        else:
            fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
            os.close(fd)
            tmp = Path(name)
    except OSError as exc:
        raise MtkdError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    old = path.with_name(f".{path.name}.old")
    try:
        yield tmp
        # mkstemp/mkdtemp create owner-only modes; outputs are ordinary shared files.
        os.chmod(tmp, 0o755 if is_dir else 0o644)
        if is_dir and path.exists():
            # Directories cannot be replaced in one rename: move the old one aside first.
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException as exc:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        if is_dir and old.exists() and not path.exists():
            os.replace(old, path)  # stopped between the two renames (Ctrl-C): put the previous version back
        if isinstance(exc, OSError):
            raise MtkdError(f"{path}: cannot write ({type(exc).__name__}: {exc.strerror or exc})") from None
        raise


def _remove_stale_temps(path: Path) -> None:
    """Delete temporaries of ``path`` left by a killed run (SIGKILL skips our cleanup).

    One stage owns each output, so a sibling ``.<name>.XXXXXXXX.tmp`` (tempfile's eight
    random characters) can only be such a leftover.
    """
    for stale in path.parent.glob(f".{glob.escape(path.name)}.????????.tmp"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
    old = path.with_name(f".{path.name}.old")
    if old.exists() and not path.exists():
        # Killed between the two renames of a directory swap: the old version is whole; put it back.
        os.replace(old, path)
    shutil.rmtree(old, ignore_errors=True)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_npz(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def sha256_tree(path: str | os.PathLike) -> str:
    """Hash of a file, or of every file (relative name + content) under a directory."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(str(file.relative_to(path)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()
