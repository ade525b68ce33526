"""Teacher kinds: each trains on a task and maps any split to logits ``[n, C]``.

A kind is a class registered with :func:`teacher_kind` where it is defined; it owns its
params model (``Params``, the ``teachers.<name>`` block of ``params.yaml``, from which
:mod:`mtkd.params` builds the teacher union). Everything downstream sees only logits
keyed by example id, never which kind produced them (TextBrewer's adaptor idea).
Checkpoints are safetensors (plus JSON): nothing we load is ever unpickled.

Adding a kind = one class here (``Params``, ``train``, ``predict``) + its entry in
``tests/test_teachers.py``, which checks every registered kind alike.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from mtkd.errors import MtkdError
from mtkd.io import atomic_path
from mtkd.schema import RandomInit, Strict, TrainArgs

CHECKPOINT_INFO = "mtkd_teacher.json"


class TeacherKind:
    """A way to make a teacher: fit it on a task's train split, then score any split.

    ``train`` publishes a checkpoint directory at ``out_dir`` (atomically, with
    :data:`CHECKPOINT_INFO` and any ``extra_files``) and returns ``{"best_epoch", "history"}``;
    ``predict`` loads that directory and returns ``{split: logits [n, C] float32}`` in the
    frames' row order, refusing a checkpoint of another kind or class count.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Strict]]  # the teachers.<name> block; its `kind` field is Literal[name]
    # It can score a text it has never seen (an augmented copy, an unlabelled text: distill.transfer).
    scores_new_texts: ClassVar[bool] = True

    def train(self, name: str, cfg, task: dict, splits: dict[str, pd.DataFrame], out_dir: Path, runtime,
              on_epoch: Callable[[dict], None] | None = None,
              extra_files: dict[str, Callable[[Path], None]] | None = None) -> dict:
        raise NotImplementedError

    def predict(self, model_dir: Path, frames: dict[str, pd.DataFrame], runtime, *, num_classes: int,
                trust_remote_code: bool = False) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def dvc_deps(self, cfg, task: str) -> list[str]:
        """Files the teacher reads for ``task`` besides the prepared data and its checkpoint.

        ``python -m mtkd.pipeline`` makes them dependencies of the teacher's own
        ``train_teachers`` and ``extract_logits`` stages (and of no other teacher's).
        """
        return []

    def check_params(self, name: str, cfg, tasks: list[str]) -> None:
        """Checks of ``teachers.<name>`` that need more than its own block (params validation calls it)."""

    def provenance(self, model_dir: Path) -> dict:
        """What ``extract_logits`` records in the logits' metadata besides the checkpoint hash."""
        return {}


TEACHER_KINDS: dict[str, TeacherKind] = {}


def teacher_kind(name: str):
    """Class decorator: register a :class:`TeacherKind` under ``name`` (the ``kind:`` of params)."""

    def register(cls):
        if name in TEACHER_KINDS:
            raise ValueError(f"teacher kind '{name}' is registered twice")
        cls.name = name
        TEACHER_KINDS[name] = cls()
        return cls

    return register


def get_teacher_kind(name: str) -> TeacherKind:
    if name not in TEACHER_KINDS:
        raise MtkdError(f"unknown teacher kind '{name}' (known: {', '.join(sorted(TEACHER_KINDS))})")
    return TEACHER_KINDS[name]


def _check_checkpoint(model_dir: Path, expected_kind: str, num_classes: int) -> dict:
    info_path = Path(model_dir) / CHECKPOINT_INFO
    if not info_path.is_file():
        raise MtkdError(f"{model_dir}: not a teacher checkpoint (no {CHECKPOINT_INFO}; run `dvc repro train_teachers` or `dvc pull`)")
    try:
        info = json.loads(info_path.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise MtkdError(f"{info_path}: not valid JSON ({exc}); re-run `dvc repro train_teachers`") from None
    if not isinstance(info, dict):
        raise MtkdError(f"{info_path}: expected a JSON object")
    if info.get("kind") != expected_kind:
        raise MtkdError(f"{model_dir}: checkpoint kind '{info.get('kind')}' but params say '{expected_kind}'")
    if info.get("num_classes") != num_classes:
        raise MtkdError(f"{model_dir}: checkpoint has {info.get('num_classes')} labels, the task has {num_classes}")
    return info


def _check_safetensors(model_dir: Path) -> None:
    """Refuse a checkpoint without safetensors weights, or with truncated ones, naming the file.

    transformers would otherwise fall back to a pickled ``pytorch_model.bin``.
    """
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise MtkdError(f"{model_dir}: no *.safetensors weights (pickled checkpoints such as pytorch_model.bin are never loaded)")
    for file in files:
        try:
            with safe_open(str(file), "pt"):  # parses the header and checks it covers the whole file
                pass
        except Exception as exc:
            raise MtkdError(f"{file}: corrupt or truncated safetensors ({exc})") from None


def vocab_sha256(tokenizer) -> str:
    """Hash of the token → id map: two tokenizers that encode differently hash differently."""
    return hashlib.sha256(json.dumps(sorted(tokenizer.get_vocab().items())).encode()).hexdigest()


def _check_tokenizer(model_dir: Path, model, tokenizer, info: dict) -> None:
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise MtkdError(f"{model_dir}: tokenizer has {len(tokenizer)} tokens, the model's embedding only {rows} rows"
                        " (tokenizer and model do not belong together)")
    recorded = info.get("tokenizer_sha256")
    if recorded is not None and recorded != vocab_sha256(tokenizer):
        raise MtkdError(f"{model_dir}: tokenizer vocabulary differs from the one the teacher was trained with"
                        f" ({CHECKPOINT_INFO} records {recorded[:12]}…)")


class HFTeacher(TrainArgs):
    kind: Literal["hf"]
    # asset:<name> (a packaged model, see mtkd.assets), a local directory, or a hub id.
    model_name_or_path: str | None = None
    random_init: RandomInit | None = None
    trust_remote_code: bool = False
    seed: int = 42
    # Train-split soft labels from k fold models, each predicting the fold it did not see
    # (train_out_of_fold); null: the full model's in-sample train logits.
    oof_folds: int | None = Field(None, ge=2)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.model_name_or_path is None) == (self.random_init is None):
            raise ValueError("give exactly one of model_name_or_path or random_init")
        return self


@teacher_kind("hf")
class HFKind(TeacherKind):
    """Any ``AutoModelForSequenceClassification``, fine-tuned with :func:`mtkd.training.train`."""

    Params = HFTeacher

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None, extra_files=None):
        from mtkd.engine import get_engine
        from mtkd.models import CompactVocabulary, build_classifier, special_ids
        from mtkd.training import encode, train

        model, tokenizer = build_classifier(cfg, task["num_classes"], cfg.seed, key=f"teachers.{name}")  # imports go to .cache/
        enc = {s: encode(tokenizer, f, cfg.max_seq_length) for s, f in splits.items()}
        pad_id = tokenizer.pad_token_id or 0
        vocab = CompactVocabulary(model, enc, special_ids(tokenizer)) if getattr(runtime, "compact_vocabulary", False) else None
        if vocab is not None:
            enc, pad_id = vocab.encoded, vocab.pad_id(pad_id)
        result = train(model, enc["train"], enc["validation"], cfg, seed=cfg.seed, pad_id=pad_id,
                       num_classes=task["num_classes"], primary_metric=task["primary_metric"], bf16=runtime.bf16,
                       bucketing=runtime.length_bucketing, desc=name, on_epoch=on_epoch)
        if vocab is not None:
            vocab.restore(result.weight_decay_factor)
        if not get_engine().is_main:  # under a multi-process launcher, one process writes
            return {"best_epoch": result.best_epoch, "history": result.history}
        with atomic_path(out_dir, is_dir=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / CHECKPOINT_INFO).write_text(json.dumps(
                {"kind": "hf", "teacher": name, "task": task["task"], "num_classes": task["num_classes"],
                 "max_seq_length": cfg.max_seq_length, "best_epoch": result.best_epoch,
                 "tokenizer_sha256": vocab_sha256(tokenizer)}, indent=2))
            _write_extra(tmp, extra_files)
        return {"best_epoch": result.best_epoch, "history": result.history}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from mtkd.training import encode, predict

        info = _check_checkpoint(model_dir, "hf", num_classes)
        _check_safetensors(model_dir)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code,
                                                                       use_safetensors=True)
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        except Exception as exc:
            raise MtkdError(f"{model_dir}: cannot load the teacher checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        if model.config.num_labels != num_classes:
            raise MtkdError(f"{model_dir}: model has {model.config.num_labels} labels, the task has {num_classes}")
        _check_tokenizer(model_dir, model, tokenizer, info)
        return {s: predict(model, encode(tokenizer, f, info["max_seq_length"]), tokenizer.pad_token_id or 0,
                           bf16=runtime.bf16, desc=f"logits {s}") for s, f in frames.items()}


def _write_extra(directory: Path, extra_files) -> None:
    """Files published together with the checkpoint (one rename): ``{name: writer(path)}``."""
    for file_name, writer in (extra_files or {}).items():
        writer(Path(directory) / file_name)


def _texts(frame: pd.DataFrame) -> list[str]:
    if frame["text_b"].notna().any():
        return (frame["text_a"] + " [SEP] " + frame["text_b"].fillna("")).tolist()
    return frame["text_a"].tolist()


class SklearnTeacher(Strict):
    kind: Literal["sklearn"]
    ngram_range: tuple[int, int] = (1, 2)
    min_df: int = Field(2, ge=1)
    max_features: int | None = Field(50000, ge=1)
    C: float = Field(4.0, gt=0)
    max_iter: int = Field(1000, ge=1)
    seed: int = 42  # the fold assignment of oof_folds (the fit itself is deterministic)
    oof_folds: int | None = Field(None, ge=2)  # as for hf teachers

    @field_validator("ngram_range")
    @classmethod
    def _ngrams(cls, v):
        if not 1 <= v[0] <= v[1]:
            raise ValueError("must be [low, high] with 1 <= low <= high")
        return v


@teacher_kind("sklearn")
class SklearnKind(TeacherKind):
    """TF-IDF + logistic regression: an architecturally different teacher (the seed's future work).

    Saved as arrays (safetensors) + vocabulary (JSON), never pickled. Logits are the
    decision function's log-odds; for two classes, ``[−s/2, s/2]`` so that softmax gives
    the model's probabilities and the logits are centred like a network's.
    """

    Params = SklearnTeacher

    def _vectorizer(self, cfg, vocabulary=None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=tuple(cfg["ngram_range"]), min_df=cfg["min_df"], max_features=cfg["max_features"],
                               sublinear_tf=True, lowercase=True, vocabulary=vocabulary, dtype=np.float64)

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None, extra_files=None):
        from safetensors.numpy import save_file
        from sklearn.linear_model import LogisticRegression

        hp = cfg.model_dump(exclude={"seed", "oof_folds"})  # what the fit uses: the checkpoint is the same with or without OOF
        vec = self._vectorizer(hp)
        x = vec.fit_transform(_texts(splits["train"]))
        clf = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter).fit(x, splits["train"]["label"].to_numpy())
        vocab = {term: int(i) for term, i in sorted(vec.vocabulary_.items(), key=lambda kv: kv[1])}
        with atomic_path(out_dir, is_dir=True) as tmp:
            save_file({"idf": vec.idf_, "coef": clf.coef_, "intercept": clf.intercept_,
                       "classes": clf.classes_.astype(np.int64)}, str(tmp / "model.safetensors"))
            (tmp / "vocabulary.json").write_text(json.dumps(vocab))
            (tmp / CHECKPOINT_INFO).write_text(json.dumps(
                {"kind": "sklearn", "teacher": name, "task": task["task"], "num_classes": task["num_classes"],
                 "hyperparameters": hp}, indent=2))
            _write_extra(tmp, extra_files)
        return {"best_epoch": 1, "history": []}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from safetensors.numpy import load_file

        info = _check_checkpoint(model_dir, "sklearn", num_classes)
        weights, vocab_file = Path(model_dir) / "model.safetensors", Path(model_dir) / "vocabulary.json"
        try:
            arrays = load_file(str(weights))
        except Exception as exc:
            raise MtkdError(f"{weights}: cannot load the sklearn teacher's arrays ({type(exc).__name__}: {exc})") from None
        try:
            vocab = json.loads(vocab_file.read_text())
        except Exception as exc:
            raise MtkdError(f"{vocab_file}: cannot load the sklearn teacher's vocabulary ({type(exc).__name__}: {exc})") from None
        if missing := {"idf", "coef", "intercept", "classes"} - set(arrays):
            raise MtkdError(f"{weights}: missing arrays {sorted(missing)}")
        if len(arrays["classes"]) != num_classes:
            raise MtkdError(f"{weights}: classifier has {len(arrays['classes'])} labels, the task has {num_classes}")
        if len(vocab) != len(arrays["idf"]) or arrays["coef"].shape[1] != len(vocab):
            raise MtkdError(f"{model_dir}: vocabulary ({len(vocab)}) and arrays {arrays['coef'].shape} disagree")
        if not isinstance(info.get("hyperparameters"), dict):
            raise MtkdError(f"{Path(model_dir) / CHECKPOINT_INFO}: no 'hyperparameters' recorded")
        vec = self._vectorizer(info["hyperparameters"], vocabulary=vocab)
        vec.idf_ = arrays["idf"]
        out = {}
        for split, frame in frames.items():
            scores = vec.transform(_texts(frame)) @ arrays["coef"].T + arrays["intercept"]
            scores = np.asarray(scores)
            out[split] = (np.concatenate([-scores / 2, scores / 2], axis=1) if scores.shape[1] == 1 else scores).astype(np.float32)
        return out


# ---------------------------------------------------------------------------------------------
# Scores computed elsewhere (``kind: precomputed``)

SCORE_SUFFIXES = (".parquet", ".jsonl", ".npz")


class PrecomputedTeacher(Strict):
    kind: Literal["precomputed"]
    # parquet / jsonl: columns `id` and `scores` (a list of C numbers), optionally `split`;
    # npz: `<split>/ids` + `<split>/logits` (a logits/*.npz file) or `<split>/scores`, or `ids` + `scores`.
    # `{task}` in the path stands for the task's name (one file per task).
    path: str = Field(min_length=1)
    scores: Literal["logits", "probabilities"] = "logits"  # probabilities: checked, then logits = log(p)

    @field_validator("path")
    @classmethod
    def _suffix(cls, v):
        suffix = Path(v).suffix
        if suffix not in SCORE_SUFFIXES:
            raise ValueError(f"'{v}' has unknown extension '{suffix}' (use {', '.join(SCORE_SUFFIXES)})")
        return v

    def file(self, task: str) -> str:
        return self.path.replace("{task}", task)


def _id_text(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


class ScoreTable:
    """A scores file read and checked: ids, float32 logits ``[n, C]`` and, if the file gives them, splits."""

    PROB_TOLERANCE = 1e-4

    def __init__(self, path: Path, where: str, scores: str, num_classes: int):
        self.path, self.where = Path(path), where
        if not self.path.is_file():
            raise MtkdError(f"{where}: {self.path} does not exist")
        ids, values, splits = self._read()
        values = np.asarray(values)
        if values.ndim != 2 or values.shape[0] != len(ids):
            raise MtkdError(f"{where}: {self.path}: scores of shape {values.shape} for {len(ids)} ids")
        if values.shape[1] != num_classes:
            raise MtkdError(f"{where}: {self.path} has {values.shape[1]} scores per example, the task has {num_classes} classes")
        if not np.issubdtype(values.dtype, np.number):
            raise MtkdError(f"{where}: {self.path}: scores are not numbers ({values.dtype})")
        ids = np.asarray([_id_text(i) for i in ids], dtype=object)
        uniq, counts = np.unique(ids.astype(str), return_counts=True)
        if (counts > 1).any():
            raise MtkdError(f"{where}: {self.path}: id '{uniq[counts > 1][0]}' occurs {int(counts.max())} times"
                            f" ({int((counts > 1).sum())} ids repeated); every id once")
        bad = ~np.isfinite(values).all(axis=1)
        if bad.any():
            raise MtkdError(f"{where}: {self.path}: {int(bad.sum())} rows of scores are not finite (NaN or inf),"
                            f" first id '{ids[bad][0]}'")
        if scores == "probabilities":
            if (values < 0).any():
                row = int(np.flatnonzero((values < 0).any(axis=1))[0])
                raise MtkdError(f"{where}: {self.path}: probabilities must be >= 0, id '{ids[row]}' has {values[row].min():g}")
            sums = values.astype(np.float64).sum(axis=1)
            off = np.abs(sums - 1.0) > self.PROB_TOLERANCE
            if off.any():
                row = int(np.flatnonzero(off)[0])
                raise MtkdError(f"{where}: {self.path}: probabilities of id '{ids[row]}' sum to {sums[row]:.6f}, not 1"
                                f" (within {self.PROB_TOLERANCE:g}; {int(off.sum())} such rows); logits? set scores: logits")
            # log(0) would be -inf: a zero probability becomes float32's smallest normal number's log (-87.3)
            values = np.log(np.clip(values.astype(np.float64), np.finfo(np.float32).tiny, None))
        self.ids, self.logits = ids, np.asarray(values, dtype=np.float32)
        self.splits = splits
        self.index = {i: r for r, i in enumerate(self.ids)}

    def _read(self):
        path, where = self.path, self.where
        try:
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as npz:
                    files = set(npz.files)
                    if "ids" in files and ({"scores", "logits"} & files):
                        return npz["ids"], npz["scores" if "scores" in files else "logits"], None
                    parts = sorted({k.split("/")[0] for k in files if k.endswith("/ids")})
                    ids, values, splits = [], [], []
                    for split in parts:
                        key = next((f"{split}/{v}" for v in ("scores", "logits") if f"{split}/{v}" in files), None)
                        if key is None:
                            raise MtkdError(f"{where}: {path}: '{split}/ids' without '{split}/scores' or '{split}/logits'")
                        ids.append(npz[f"{split}/ids"])
                        values.append(npz[key])
                        splits += [split] * len(ids[-1])
                    if not parts:
                        raise MtkdError(f"{where}: {path}: no arrays 'ids' + 'scores', nor '<split>/ids' + '<split>/logits'"
                                        f" (has: {', '.join(sorted(files))})")
                    return np.concatenate(ids), np.concatenate(values), np.asarray(splits, dtype=object)
            frame = (pd.read_parquet(path) if path.suffix == ".parquet"
                     else pd.read_json(path, lines=True, dtype=False, convert_dates=False))
        except MtkdError:
            raise
        except Exception as exc:  # malformed or truncated file, pickled npz arrays …
            first = str(exc).splitlines()[0] if str(exc) else ""
            raise MtkdError(f"{where}: {path} cannot be read ({type(exc).__name__}: {first[:200]})") from None
        if missing := [c for c in ("id", "scores") if c not in frame.columns]:
            raise MtkdError(f"{where}: {path}: no column {missing[0]!r} (needs 'id' and 'scores', a list of one score per"
                            f" class; optional 'split'; has: {', '.join(map(str, frame.columns))})")
        try:
            values = np.array([np.asarray(v, dtype=np.float64) for v in frame["scores"]])
        except (TypeError, ValueError) as exc:
            raise MtkdError(f"{where}: {path}: 'scores' must be a list of numbers per row ({exc})") from None
        if values.dtype == object:
            raise MtkdError(f"{where}: {path}: rows of 'scores' differ in length")
        splits = frame["split"].astype(str).to_numpy(dtype=object) if "split" in frame.columns else None
        return frame["id"].to_numpy(), values.reshape(len(frame), -1) if len(frame) else values, splits

    def select(self, frame: pd.DataFrame, split: str) -> np.ndarray:
        """Logits for ``frame``'s ids, in its row order; every id must be in the file (in ``split`` if it says)."""
        want = frame["id"].astype(str).tolist()
        missing = [i for i in want if i not in self.index]
        if missing:
            raise MtkdError(f"{self.where}: {self.path} has no scores for {len(missing)} of the {len(want)} '{split}'"
                            f" examples (first id '{missing[0]}')")
        rows = np.fromiter((self.index[i] for i in want), dtype=np.int64, count=len(want))
        if self.splits is not None and len(rows):
            wrong = self.splits[rows] != split
            if wrong.any():
                r = int(rows[np.flatnonzero(wrong)[0]])
                raise MtkdError(f"{self.where}: {self.path} gives id '{self.ids[r]}' in split '{self.splits[r]}',"
                                f" the prepared data has it in '{split}'")
        return self.logits[rows]

    def check_no_extra(self, known: set[str]) -> None:
        extra = [i for i in self.ids if i not in known]
        if extra:
            raise MtkdError(f"{self.where}: {self.path} has scores for {len(extra)} ids in no split of the prepared task"
                            f" (first '{extra[0]}'): a stale file, or another task's")


@teacher_kind("precomputed")
class PrecomputedKind(TeacherKind):
    """Scores computed elsewhere (a model queried elsewhere, an API, another framework), read from a file.

    Nothing is trained: the checkpoint directory records the file's path and sha256, and
    ``predict`` reads the file again, refusing it if it changed since, and puts its rows in
    each split's id order (every id exactly once; with all splits, no id outside them).
    """

    scores_new_texts = False  # its scores come from a file: a new text has none

    Params = PrecomputedTeacher

    def dvc_deps(self, cfg, task):
        return [cfg.file(task)]

    def check_params(self, name, cfg, tasks):
        if len(tasks) > 1 and "{task}" not in cfg.path:
            raise MtkdError(f"teachers.{name}.path: {len(tasks)} tasks need a file each; put {{task}} in the path"
                            f" (got '{cfg.path}')")

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None, extra_files=None):
        from mtkd.io import sha256_file

        path = Path(cfg.file(task["task"]))
        table = ScoreTable(path, f"teachers.{name}.path", cfg.scores, task["num_classes"])
        for split, frame in splits.items():
            table.select(frame, split)  # refused now rather than at extraction
        with atomic_path(out_dir, is_dir=True) as tmp:
            (tmp / CHECKPOINT_INFO).write_text(json.dumps(
                {"kind": "precomputed", "teacher": name, "task": task["task"], "num_classes": task["num_classes"],
                 "path": str(path), "scores": cfg.scores, "scores_sha256": sha256_file(path),
                 "examples": len(table.ids)}, indent=2))
            _write_extra(tmp, extra_files)
        return {"best_epoch": 1, "history": []}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from mtkd.data import SPLITS
        from mtkd.io import sha256_file

        info = _check_checkpoint(model_dir, "precomputed", num_classes)
        path, where = Path(str(info.get("path"))), f"teachers.{info.get('teacher')}.path"
        if not path.is_file():
            raise MtkdError(f"{where}: {path} does not exist (the scores file of {model_dir})")
        if sha256_file(path) != info.get("scores_sha256"):
            raise MtkdError(f"{where}: {path} changed since train_teachers recorded it in {model_dir};"
                            " run `dvc repro` (or `dvc repro train_teachers`)")
        table = ScoreTable(path, where, info.get("scores", "logits"), num_classes)
        out = {split: table.select(frame, split) for split, frame in frames.items()}
        if set(SPLITS) <= set(frames):  # every split of the task (extract_logits): nothing else may be in the file
            table.check_no_extra({i for f in frames.values() for i in f["id"].astype(str)})
        return out

    def provenance(self, model_dir):
        info = json.loads((Path(model_dir) / CHECKPOINT_INFO).read_text())
        return {"scores_file": info["path"], "scores_sha256": info["scores_sha256"], "scores": info["scores"]}


# ---------------------------------------------------------------------------------------------
# The raters' own distribution (``kind: human``), where a task has rater data

# The probability a class no rater chose gets before the log: a tenth of one rater's share at the most
# raters a sentence has (~100), so logits stay finite and on the scale of the other teachers' (log 1e-3 =
# −6.9; float32's smallest normal number, as for precomputed probabilities, would give −87 and swamp any
# logit average). Renormalised by softmax, a row with k such classes moves by at most k·floor.
HUMAN_FLOOR = 1e-3


class HumanTeacher(Strict):
    kind: Literal["human"]
    floor: float = Field(HUMAN_FLOOR, gt=0, lt=0.1)  # probability of a class no rater chose, before the log


def human_logits(shares: np.ndarray, floor: float = HUMAN_FLOOR) -> np.ndarray:
    """Logits of the raters' distribution: ``log max(p, floor)`` per class, float32 [n, C]."""
    return np.log(np.maximum(np.asarray(shares, dtype=np.float64), floor)).astype(np.float32)


@teacher_kind("human")
class HumanKind(TeacherKind):
    """The raters' label distribution as a teacher (issue #16): the "perfect dark knowledge" reference.

    Its logits are :func:`human_logits` of the prepared split's ``human_*`` columns, on every
    split, so it is distilled (``single_<name>``) and fused like any teacher. Nothing is trained:
    the checkpoint records what it is. Only tasks with rater data (``vader5``) have it.
    """

    scores_new_texts = False  # raters rated the dataset's sentences only

    Params = HumanTeacher

    def check_params(self, name, cfg, tasks):
        from mtkd.data import TASKS, has_rater_data

        if without := [t for t in tasks if not has_rater_data(t)]:
            have = [t for t in TASKS if has_rater_data(t)]
            raise MtkdError(f"teachers.{name}.kind: a 'human' teacher needs rater data; task '{without[0]}' has none"
                            f" (tasks with rater data: {', '.join(have)})")

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None, extra_files=None):
        from mtkd.data import human_shares

        for split, frame in splits.items():  # refused now rather than at extraction
            human_shares(frame, task["num_classes"], f"teachers.{name}: task {task['task']} split '{split}'")
        with atomic_path(out_dir, is_dir=True) as tmp:
            (tmp / CHECKPOINT_INFO).write_text(json.dumps(
                {"kind": "human", "teacher": name, "task": task["task"], "num_classes": task["num_classes"],
                 "floor": cfg.floor, "logits": "log max(raters' share, floor) per class, from the prepared split"},
                indent=2))
            _write_extra(tmp, extra_files)
        return {"best_epoch": 1, "history": []}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from mtkd.data import human_shares

        info = _check_checkpoint(model_dir, "human", num_classes)
        floor = info.get("floor")
        if not isinstance(floor, (int, float)) or not 0 < floor < 0.1:
            raise MtkdError(f"{Path(model_dir) / CHECKPOINT_INFO}: 'floor' must be a number in (0, 0.1), got {floor!r}")
        return {split: human_logits(human_shares(frame, num_classes, f"teachers.{info.get('teacher')}: split '{split}'"),
                                    floor)
                for split, frame in frames.items()}

    def provenance(self, model_dir):
        info = json.loads((Path(model_dir) / CHECKPOINT_INFO).read_text())
        return {"soft_labels": "raters' distribution", "floor": info["floor"]}


# ---------------------------------------------------------------------------------------------
# Out-of-fold train logits (``teachers.<name>.oof_folds``)


def check_oof_folds(teacher: str, k: int, labels) -> None:
    """Every class needs at least ``k`` train examples, so that each fold holds every class."""
    values, counts = np.unique(np.asarray(labels), return_counts=True)
    rarest = int(np.argmin(counts))
    if counts[rarest] < k:
        raise MtkdError(f"teachers.{teacher}.oof_folds: {k} folds need at least {k} train examples of every class,"
                        f" class {int(values[rarest])} has {int(counts[rarest])}")


def fold_assignment(labels, k: int, seed: int) -> np.ndarray:
    """Fold index (0..k-1) of each train example: seeded, stratified by label.

    Stratified so that each fold model sees every class in the same proportion as the full
    model and each held-out fold has the train split's class balance: the out-of-fold
    soft labels then differ from in-sample ones by memorisation, not by a shifted class
    prior (and a binary logistic regression never meets a one-class fold). Seeded (the
    teacher's ``seed``) so the stage is a function of its params.
    """
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    folds = np.full(len(labels), -1, dtype=np.int64)
    for f, (_, held) in enumerate(StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
                                  .split(np.zeros(len(labels)), labels)):
        folds[held] = f
    return folds


def train_out_of_fold(name: str, cfg, task: dict, splits: dict[str, pd.DataFrame], runtime,
                      log=None) -> tuple[np.ndarray, dict]:
    """Train-split logits ``[n, C]`` (train order) from ``cfg.oof_folds`` fold models, and their record.

    Fold model f is the teacher's own recipe (same kind, hyperparameters, seed and validation
    split for model selection) trained on the other k−1 folds; it predicts fold f and is
    deleted. So every train example's soft label comes from a model that never saw it.
    """
    import tempfile

    from mtkd.engine import get_engine

    k, train = cfg.oof_folds, splits["train"]
    labels = train["label"].to_numpy()
    check_oof_folds(name, k, labels)
    if get_engine().distributed:  # fold models go through a per-process temporary checkpoint
        raise MtkdError(f"teachers.{name}.oof_folds: out-of-fold training runs in one process;"
                        f" run train_teachers@{name}-{task['task']} with runtime.launcher: python"
                        f" (got {get_engine().world} processes)")
    folds = fold_assignment(labels, k, cfg.seed)
    kind = get_teacher_kind(cfg.kind)
    out = np.full((len(train), task["num_classes"]), np.nan, dtype=np.float32)
    best_epochs = []
    for f in range(k):
        held = folds == f
        fold_splits = {**splits, "train": train[~held].reset_index(drop=True)}
        with tempfile.TemporaryDirectory(prefix=f"mtkd-oof-{name}-") as tmp:
            model_dir = Path(tmp) / "model"
            result = kind.train(name, cfg, task, fold_splits, model_dir, runtime)  # errors name teachers.<name>
            out[held] = kind.predict(model_dir, {"held_out": train[held].reset_index(drop=True)}, runtime,
                                     num_classes=task["num_classes"],
                                     trust_remote_code=getattr(cfg, "trust_remote_code", False))["held_out"]
        best_epochs.append(result["best_epoch"])
        if log:
            log(f"{name}: fold {f + 1}/{k} trained on {int((~held).sum())}, predicted {int(held.sum())}")
    info = {"folds": k, "seed": cfg.seed, "stratified_by": "label",
            "fold_sizes": [int((folds == f).sum()) for f in range(k)], "fold_best_epochs": best_epochs}
    return out, info
