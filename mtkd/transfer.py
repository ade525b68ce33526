"""The transfer set's texts (issue #17): augmented copies of train, plus optional unlabelled texts.

Distillation only needs the teachers' outputs, not gold labels, so the student can learn from
more inputs than train holds. Each train example gets K augmented copies made with EDA-style
word operations (Wei & Zou 2019: random deletion, nearby swap; plus masking), and a user may add
a file of unlabelled texts. Every row has ``label = -1`` (no gold label) and a ``source_id``
naming the example it came from, so a split by example never leaks a copy across splits.

An operation is one function ``(words, rate, rng, mask_token) -> words`` registered with
``@operation("name")`` where it is defined; they run in registration order (the order of
:data:`OPERATIONS`), whatever the order of the params' map. Adding one = that function + its test.

Copies are deterministic per ``(seed, id, copy)`` (:func:`example_rng`): an example's copies do
not depend on row order or on which other examples are present, so logits cached by id stay valid.
"""

from __future__ import annotations

import difflib
import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtkd.data import _read_local
from mtkd.errors import MtkdError

Operation = Callable[[list[str], float, np.random.Generator, str], list[str]]

OPERATIONS: dict[str, Operation] = {}

AUG_MARK = "#aug"  # id of a copy: f"{source id}#aug{k}"; reserved, so no unlabelled id may hold it
NO_LABEL = -1
OPERATIONS_KEY = "distill.transfer.operations"
COPIES_KEY = "distill.transfer.copies"
UNLABELLED_KEY = "distill.transfer.unlabelled_file"
UNLABELLED_SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl", ".parquet")


def operation(name: str):
    """Decorator: register a word-level augmentation ``fn(words, rate, rng, mask_token) -> words``."""

    def wrap(fn: Operation) -> Operation:
        if name in OPERATIONS:  # a programming error, not a user's: two functions, one name
            raise ValueError(f"augmentation '{name}' is registered twice")
        OPERATIONS[name] = fn
        return fn

    return wrap


@operation("delete")
def delete_words(words: list[str], rate: float, rng: np.random.Generator, mask_token: str) -> list[str]:
    """Drop each word with probability ``rate``; never return an empty text (keep one rng-chosen word).

    Draws: none for 0–1 words; else ``rng.random(n)`` (word i kept iff draw >= rate), and if none
    is kept, ``rng.integers(n)`` picks the survivor.
    """
    n = len(words)
    if n <= 1:
        return list(words)
    keep = rng.random(n) >= rate
    if not keep.any():
        keep[rng.integers(n)] = True
    return [w for w, k in zip(words, keep) if k]


@operation("swap")
def swap_words(words: list[str], rate: float, rng: np.random.Generator, mask_token: str) -> list[str]:
    """Swap neighbours: walk i = 0..n-2, one ``rng.random()`` per visited i; below ``rate`` swap i, i+1 and skip to i+2.

    Skipping after a swap keeps every word within one position of where it was (local noise,
    not a shuffle), so the text's meaning mostly survives.
    """
    out = list(words)
    i = 0
    while i < len(out) - 1:
        if rng.random() < rate:
            out[i], out[i + 1] = out[i + 1], out[i]
            i += 2
        else:
            i += 1
    return out


@operation("mask")
def mask_words(words: list[str], rate: float, rng: np.random.Generator, mask_token: str) -> list[str]:
    """Replace each word by ``mask_token`` with probability ``rate`` (draws: ``rng.random(n)``, masked iff < rate)."""
    masked = rng.random(len(words)) < rate
    return [mask_token if m else w for w, m in zip(words, masked)]


def check_operations(operations: dict[str, float], key: str = OPERATIONS_KEY) -> None:
    """Refuse unknown names, rates outside [0, 1) and a map that would change nothing.

    A rate of 1 would delete (or mask) every word: the copy would carry no text at all.
    """
    known = ", ".join(OPERATIONS)
    if not operations:
        raise MtkdError(f"{key}: no augmentation given (known: {known})")
    for name, rate in operations.items():
        if name not in OPERATIONS:
            close = difflib.get_close_matches(str(name), list(OPERATIONS), n=1, cutoff=0.6)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise MtkdError(f"{key}: unknown augmentation '{name}' (known: {known}){hint}")
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
            raise MtkdError(f"{key}.{name}: rate must lie in [0, 1), got {rate!r}")
    if all(rate == 0 for rate in operations.values()):
        raise MtkdError(f"{key}: no augmentation: every rate is 0")


def augment_text(text: str, operations: dict[str, float], rng: np.random.Generator, mask_token: str) -> str:
    """One augmented copy of ``text``: its whitespace-split words through each operation, in registry order.

    Registry order (not the map's) makes the result independent of how params list the
    operations; an operation absent or at rate 0 is skipped and draws nothing, so adding
    ``mask: 0`` leaves every copy as it was.
    """
    words = text.split()
    for name, fn in OPERATIONS.items():
        rate = float(operations.get(name, 0.0))
        if rate > 0:
            words = fn(words, rate, rng, mask_token)
    return " ".join(words)


def example_rng(seed: int, example_id: str, copy: int) -> np.random.Generator:
    """The generator of copy ``copy`` of example ``example_id``: a function of these three alone.

    Hashing the id (not using the row index) keeps a copy unchanged when rows are reordered,
    added or removed; sha256 (not ``hash``) is stable across processes.
    """
    digest = int.from_bytes(hashlib.sha256(str(example_id).encode()).digest()[:8], "little")
    return np.random.default_rng([seed, copy, digest])


def transfer_set(train: pd.DataFrame, copies: int, operations: dict[str, float], seed: int,
                 mask_token: str) -> pd.DataFrame:
    """K augmented copies of every train example, example-major (example 0's copies 1..K, then example 1's ...).

    Columns: id (``<id>#aug<k>``), text, [text_pair: augmented after text with the same
    generator], label (-1), source_id, [group: the source's, so group splits stay whole].
    """
    if isinstance(copies, bool) or not isinstance(copies, (int, np.integer)) or copies < 1:
        raise MtkdError(f"{COPIES_KEY}: must be >= 1, got {copies!r}")
    check_operations(operations)
    pair = "text_pair" in train.columns
    rows: dict[str, list] = {"id": [], "text": [], **({"text_pair": []} if pair else {}), "source_id": []}
    pairs = train["text_pair"].tolist() if pair else [None] * len(train)
    for source, text, text_pair in zip(train["id"].astype(str).tolist(), train["text"].tolist(), pairs):
        for k in range(1, copies + 1):
            rng = example_rng(seed, source, k)
            rows["id"].append(f"{source}{AUG_MARK}{k}")
            rows["text"].append(augment_text(str(text), operations, rng, mask_token))
            if pair:
                rows["text_pair"].append(augment_text(str(text_pair), operations, rng, mask_token))
            rows["source_id"].append(source)
    out = pd.DataFrame({"id": rows["id"], "text": rows["text"], **({"text_pair": rows["text_pair"]} if pair else {}),
                        "label": np.full(len(rows["id"]), NO_LABEL, dtype=np.int64),
                        "source_id": rows["source_id"]})
    if "group" in train.columns:
        out["group"] = train["group"].repeat(copies).reset_index(drop=True)
    return out


def _where(path: Path) -> str:
    return f"{UNLABELLED_KEY} {path}"


def _show(text: str, limit: int = 60) -> str:
    """A text short enough for a one-line message (its first line, cut)."""
    text = " ".join(text.split())
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _read_txt(path: Path) -> pd.DataFrame:
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except UnicodeDecodeError as exc:
        raise MtkdError(f"{_where(path)}: not UTF-8 text (byte {exc.start})") from None
    return pd.DataFrame({"text": lines})


def _cell_text(value) -> str:
    """A cell as text; missing (None/NaN) becomes '' so it is refused as empty."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return ""
    return str(value)


def read_unlabelled(path: Path, task_ids: set[str], pair: bool = False) -> pd.DataFrame:
    """Unlabelled texts for the transfer set, refused unless every row can join the task's examples.

    ``.txt`` holds one text per line; ``.csv/.tsv/.jsonl/.parquet`` a ``text`` column, an optional
    ``id`` and, for a pair task, ``text_pair``. Ids default to ``unlabelled-<row>`` (from 0).
    Ids must be unique, must not clash with the task's (logits are matched by id) and must not
    hold ``#aug`` (reserved for augmented copies). Returns id, text, [text_pair], label (-1), source_id.
    """
    path = Path(path)
    where = _where(path)
    if path.suffix not in UNLABELLED_SUFFIXES:
        raise MtkdError(f"{where}: unknown suffix '{path.suffix}' (use {', '.join(UNLABELLED_SUFFIXES)})")
    if not path.is_file():
        raise MtkdError(f"{where}: file does not exist")
    txt = path.suffix == ".txt"
    raw = _read_txt(path) if txt else _read_local(str(path), UNLABELLED_KEY)
    unit = "line" if txt else "row"
    needed = ["text"] + (["text_pair"] if pair else [])
    for column in needed:
        if column not in raw.columns:
            raise MtkdError(f"{where}: no column '{column}' (columns: {', '.join(map(str, raw.columns))})")
    if len(raw) == 0:
        raise MtkdError(f"{where}: holds no texts")
    out = pd.DataFrame({"id": ([_cell_text(v) for v in raw["id"]] if "id" in raw.columns
                               else [f"unlabelled-{i}" for i in range(len(raw))])})
    for column in needed:
        out[column] = [_cell_text(v) for v in raw[column]]
        empty = [i for i, t in enumerate(out[column]) if not t.strip()]
        if empty:
            raise MtkdError(f"{where}: empty {column} ({unit} {empty[0] + 1})")
    empty_ids = [i for i, v in enumerate(out["id"]) if not v.strip()]
    if empty_ids:
        raise MtkdError(f"{where}: empty id ({unit} {empty_ids[0] + 1})")
    reserved = out["id"][out["id"].str.contains(AUG_MARK, regex=False)]
    if len(reserved):
        raise MtkdError(f"{where}: id '{reserved.iloc[0]}' holds '{AUG_MARK}', reserved for augmented copies "
                        f"({unit} {reserved.index[0] + 1})")
    dup_ids = out["id"][out["id"].duplicated()]
    if len(dup_ids):
        raise MtkdError(f"{where}: duplicate id '{dup_ids.iloc[0]}' ({unit} {dup_ids.index[0] + 1})")
    clash = [v for v in out["id"] if v in task_ids]
    if clash:
        raise MtkdError(f"{where}: id '{clash[0]}' is already an id of the task's examples "
                        f"({len(clash)} clash{'es' if len(clash) > 1 else ''})")
    dup_texts = out[needed].duplicated()
    if dup_texts.any():
        i = int(np.flatnonzero(dup_texts.to_numpy())[0])
        first = int(np.flatnonzero((out[needed] == out[needed].iloc[i]).all(axis=1).to_numpy())[0])
        raise MtkdError(f"{where}: duplicate text {_show(out['text'].iloc[i])} ({unit}s {first + 1} and {i + 1})")
    out["label"] = np.full(len(out), NO_LABEL, dtype=np.int64)
    out["source_id"] = out["id"]
    return out[["id", *needed, "label", "source_id"]]


# ---------------------------------------------------------------------------------------------
# The transfer stage's product: one file per task, read by extract_logits and distill.

TRANSFER_DIR = Path("data/transfer")


def build_transfer(train: pd.DataFrame, task_ids: set[str], cfg, mask_token: str | None) -> pd.DataFrame:
    """The transfer set of one task from ``distill.transfer`` (``cfg``): augmented copies, then unlabelled texts.

    ``train`` is a prepared split (``text_a``, ``text_b``: None for a one-text task); so is the result
    (``id``, ``text_a``, ``text_b``, ``label`` = -1, ``source_id``), so that every teacher and the student
    read it as they read train.
    """
    pair = bool(train["text_b"].notna().any())
    texts = pd.DataFrame({"id": train["id"], "text": train["text_a"], **({"text_pair": train["text_b"]} if pair else {})})
    parts = []
    if cfg.copies:
        if mask_token is None and cfg.operations.get("mask"):
            raise MtkdError(f"{OPERATIONS_KEY}.mask: the student's tokenizer has no mask token; drop 'mask'")
        parts.append(transfer_set(texts, cfg.copies, cfg.operations, cfg.seed, mask_token or ""))
    if cfg.unlabelled_file:
        parts.append(read_unlabelled(Path(cfg.unlabelled_file), task_ids, pair=pair))
    frame = pd.concat([p[["id", "text", *(["text_pair"] if pair else []), "label", "source_id"]] for p in parts],
                      ignore_index=True)
    return pd.DataFrame({"id": frame["id"].astype(str), "text_a": frame["text"],
                         "text_b": frame["text_pair"] if pair else None,
                         "label": frame["label"].astype(np.int64), "source_id": frame["source_id"].astype(str)})


def transfer_fingerprint(frame: pd.DataFrame) -> str:
    """Order-sensitive hash of the transfer set's ids and texts: what its logits were computed for
    (a split's fingerprint hashes ids and labels; here every label is -1 and the texts are what vary)."""
    digest = hashlib.sha256()
    for row in zip(frame["id"], frame["text_a"], frame["text_b"]):
        digest.update(("\x1f".join(map(str, row)) + "\x1e").encode())
    return digest.hexdigest()


def load_transfer(task: str, root: Path = Path(".")) -> pd.DataFrame:
    path = root / TRANSFER_DIR / f"{task}.parquet"
    if not path.is_file():
        raise MtkdError(f"{path}: transfer set not found (run `dvc repro transfer`)")
    return pd.read_parquet(path)
