"""Teacher logits keyed by example id: the one thing every teacher kind reduces to.

One ``.npz`` per teacher × task holds, per split, the ids and a ``[n, C]`` float32
array, plus provenance (data fingerprint, checkpoint hash) and the sha256 of each split's
array, so that values edited in place (ids intact) are refused on load. Loading never unpickles
(``allow_pickle=False``) and checks ids (content *and* order), shape, class count,
finiteness and provenance against the prepared data: a mismatch is an error, never
a silent re-alignment.
"""

from __future__ import annotations

import functools
import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from mtkd.errors import MtkdError
from mtkd.io import sha256_tree, write_npz

FORMAT_VERSION = 1
# Out-of-fold train logits, written by train_teachers inside the checkpoint directory when
# ``teachers.<t>.oof_folds`` is set (same format as a logits file, one split: train).
OOF_FILE = "oof_train_logits.npz"


def save_logits(path: Path, *, teacher: str, task: str, num_classes: int, splits: dict[str, tuple[list[str], np.ndarray]],
                provenance: dict) -> None:
    arrays: dict[str, np.ndarray] = {}
    hashes: dict[str, str] = {}
    for split, (ids, logits) in splits.items():
        logits = np.asarray(logits, dtype=np.float32)
        check_array(logits, ids, num_classes, f"{path}[{split}]")
        arrays[f"{split}/ids"] = np.asarray(ids, dtype=str)
        arrays[f"{split}/logits"] = logits
        hashes[split] = array_sha256(logits)
    meta = {"format": FORMAT_VERSION, "teacher": teacher, "task": task, "num_classes": num_classes,
            "splits": sorted(splits), **provenance, "logits_sha256": hashes}
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    write_npz(path, **arrays)


def array_sha256(logits: np.ndarray) -> str:
    """sha256 of a logits array's float32 values (C order) and shape: what ``load_logits`` re-checks."""
    a = np.ascontiguousarray(logits, dtype=np.float32)
    digest = hashlib.sha256(f"{a.shape}".encode())
    digest.update(a.tobytes())
    return digest.hexdigest()


def check_array(logits: np.ndarray, ids, num_classes: int, where: str) -> None:
    if logits.ndim != 2 or logits.shape[0] != len(ids):
        raise MtkdError(f"{where}: logits shape {logits.shape} does not match {len(ids)} ids")
    if logits.shape[1] != num_classes:
        raise MtkdError(f"{where}: logits have {logits.shape[1]} classes, the task has {num_classes}")
    if not np.isfinite(logits).all():
        bad = int((~np.isfinite(logits)).any(axis=1).sum())
        raise MtkdError(f"{where}: {bad} rows of logits are not finite (NaN or inf)")


def read_meta(path: Path) -> dict:
    with _open(path) as npz:
        return json.loads(str(npz["meta"]))


def _open(path: Path):
    path = Path(path)
    if not path.is_file():
        raise MtkdError(f"{path}: logits file not found (run `dvc repro extract_logits` or `dvc pull`)")
    try:
        return np.load(path, allow_pickle=False)
    except Exception as exc:
        raise MtkdError(f"{path}: not a readable logits file ({type(exc).__name__}: {exc})") from None


def load_logits(path: Path, split: str, expected: pd.DataFrame, num_classes: int,
                data_fingerprint: str | None = None, checkpoint_dir: Path | None = None) -> np.ndarray:
    """Logits of ``split`` for exactly the examples of ``expected`` (same ids, same order).

    With ``checkpoint_dir`` (the teacher checkpoint the logits should come from), logits
    recorded for a different checkpoint hash are refused; an absent checkpoint is not
    checked (``dvc pull`` of logits alone is a normal way to work).
    """
    path = Path(path)
    with _open(path) as npz:
        if "meta" not in npz.files:
            raise MtkdError(f"{path}: no metadata; not a logits file written by extract_logits")
        if f"{split}/ids" not in npz.files or f"{split}/logits" not in npz.files:
            raise MtkdError(f"{path}: no '{split}' split (has: {', '.join(sorted({k.split('/')[0] for k in npz.files} - {'meta'}))})")
        try:
            meta = json.loads(str(npz["meta"]))
            ids = npz[f"{split}/ids"]
            logits = npz[f"{split}/logits"]
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:  # pickled arrays, bad JSON, corrupt members
            raise MtkdError(f"{path}: not a readable logits file ('{split}': {type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict):
        raise MtkdError(f"{path}: metadata is not a JSON object")
    where = f"{path}[{split}]"
    if meta.get("num_classes") != num_classes:
        raise MtkdError(f"{where}: recorded for {meta.get('num_classes')} classes, the task has {num_classes}")
    check_array(logits, ids, num_classes, where)
    want = expected["id"].astype(str).to_numpy()
    if len(ids) != len(want) or not np.array_equal(ids, want):
        if len(ids) == len(want) and set(ids) == set(want):
            raise MtkdError(f"{where}: ids are the right set in a different order; re-extract the logits")
        missing, extra = len(set(want) - set(ids)), len(set(ids) - set(want))
        dup = len(ids) - len(set(ids))
        raise MtkdError(f"{where}: ids do not match the prepared split ({missing} missing, {extra} unknown, {dup} duplicated)")
    hashes = meta.get("logits_sha256")  # absent in files written before hashes were recorded
    if isinstance(hashes, dict) and hashes.get(split) is not None and hashes[split] != (now := array_sha256(logits)):
        raise MtkdError(f"{where}: logits differ from those extract_logits wrote (sha256 recorded {str(hashes[split])[:12]}…,"
                        f" the array is now {now[:12]}…): edited in place? re-run `dvc repro extract_logits`")
    recorded = meta.get("data_fingerprint", {}).get(split)
    if data_fingerprint is not None and recorded is not None and recorded != data_fingerprint:
        raise MtkdError(f"{where}: computed for data fingerprint {recorded}, the prepared split is {data_fingerprint}; stale logits")
    if checkpoint_dir is not None and Path(checkpoint_dir).exists():
        recorded, current = meta.get("checkpoint_sha256"), _tree_hash(str(checkpoint_dir))
        if recorded is not None and recorded != current:
            raise MtkdError(f"{where}: computed from checkpoint {recorded[:12]}…, {checkpoint_dir} is now {current[:12]}…;"
                            " stale logits (run `dvc repro extract_logits`)")
    return logits


def load_oof_logits(model_dir: Path, teacher: str, folds: int | None, expected: pd.DataFrame, num_classes: int,
                    data_fingerprint: str | None = None) -> tuple[np.ndarray, dict] | None:
    """The out-of-fold train logits of a checkpoint (ids, shape, fingerprint checked), or None when off.

    ``folds`` is ``teachers.<teacher>.oof_folds``: the file must exist exactly when it is set,
    and must have been made with that many folds; anything else is a stale checkpoint.
    """
    path = Path(model_dir) / OOF_FILE
    if folds is None:
        if path.exists():
            raise MtkdError(f"{path}: out-of-fold logits present but teachers.{teacher}.oof_folds is not set;"
                            " stale checkpoint (run `dvc repro train_teachers`)")
        return None
    if not path.is_file():
        raise MtkdError(f"{path}: not found, but teachers.{teacher}.oof_folds is {folds}"
                        " (run `dvc repro train_teachers` or `dvc pull`)")
    logits = load_logits(path, "train", expected, num_classes, data_fingerprint)
    info = read_meta(path).get("oof") or {}
    if info.get("folds") != folds:
        raise MtkdError(f"{path}: made with {info.get('folds')} folds, teachers.{teacher}.oof_folds is {folds};"
                        " stale checkpoint (run `dvc repro train_teachers`)")
    return logits, info


@functools.lru_cache(maxsize=None)
def _tree_hash(path: str) -> str:
    # One hash per checkpoint per process, though each split's logits are checked against it.
    return sha256_tree(path)
