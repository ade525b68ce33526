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

    def train(self, name: str, cfg, task: dict, splits: dict[str, pd.DataFrame], out_dir: Path, runtime,
              on_epoch: Callable[[dict], None] | None = None,
              extra_files: dict[str, Callable[[Path], None]] | None = None) -> dict:
        raise NotImplementedError

    def predict(self, model_dir: Path, frames: dict[str, pd.DataFrame], runtime, *, num_classes: int,
                trust_remote_code: bool = False) -> dict[str, np.ndarray]:
        raise NotImplementedError


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
