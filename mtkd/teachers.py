"""Teacher kinds: each trains on a task and maps any split to logits ``[n, C]``.

A kind is a named entry in :data:`TEACHER_KINDS`; everything downstream sees only
logits keyed by example id, never which kind produced them (TextBrewer's adaptor idea).
Checkpoints are safetensors (plus JSON): nothing we load is ever unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from mtkd.errors import MtkdError
from mtkd.io import atomic_path

CHECKPOINT_INFO = "mtkd_teacher.json"


class TeacherKind(Protocol):
    def train(self, name: str, cfg, task: dict, splits: dict[str, pd.DataFrame], out_dir: Path, runtime,
              on_epoch=None) -> dict: ...

    def predict(self, model_dir: Path, frames: dict[str, pd.DataFrame], runtime) -> dict[str, np.ndarray]: ...


def _check_checkpoint(model_dir: Path, expected_kind: str, num_classes: int) -> dict:
    info_path = Path(model_dir) / CHECKPOINT_INFO
    if not info_path.is_file():
        raise MtkdError(f"{model_dir}: not a teacher checkpoint (no {CHECKPOINT_INFO}; run `dvc repro train_teachers` or `dvc pull`)")
    info = json.loads(info_path.read_text())
    if info.get("kind") != expected_kind:
        raise MtkdError(f"{model_dir}: checkpoint kind '{info.get('kind')}' but params say '{expected_kind}'")
    if info.get("num_classes") != num_classes:
        raise MtkdError(f"{model_dir}: checkpoint has {info.get('num_classes')} labels, the task has {num_classes}")
    return info


class HFKind:
    """Any ``AutoModelForSequenceClassification``, fine-tuned with :func:`mtkd.training.train`."""

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None):
        from mtkd.models import build_classifier
        from mtkd.training import encode, predict, train

        model, tokenizer = build_classifier(cfg, task["num_classes"], cfg.seed, work_dir=out_dir.parent)
        enc = {s: encode(tokenizer, f, cfg.max_seq_length) for s, f in splits.items()}
        result = train(model, enc["train"], enc["validation"], cfg, seed=cfg.seed, pad_id=tokenizer.pad_token_id or 0,
                       num_classes=task["num_classes"], primary_metric=task["primary_metric"], bf16=runtime.bf16,
                       bucketing=runtime.length_bucketing, desc=name, on_epoch=on_epoch)
        with atomic_path(out_dir, is_dir=True) as tmp:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
            (tmp / CHECKPOINT_INFO).write_text(json.dumps(
                {"kind": "hf", "teacher": name, "task": task["task"], "num_classes": task["num_classes"],
                 "max_seq_length": cfg.max_seq_length, "best_epoch": result.best_epoch}, indent=2))
        return {"best_epoch": result.best_epoch, "history": result.history}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from mtkd.training import encode, predict

        info = _check_checkpoint(model_dir, "hf", num_classes)
        try:
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
            tokenizer = AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
        except Exception as exc:
            raise MtkdError(f"{model_dir}: cannot load the teacher checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
        if model.config.num_labels != num_classes:
            raise MtkdError(f"{model_dir}: model has {model.config.num_labels} labels, the task has {num_classes}")
        return {s: predict(model, encode(tokenizer, f, info["max_seq_length"]), tokenizer.pad_token_id or 0,
                           bf16=runtime.bf16, desc=f"logits {s}") for s, f in frames.items()}


def _texts(frame: pd.DataFrame) -> list[str]:
    if frame["text_b"].notna().any():
        return (frame["text_a"] + " [SEP] " + frame["text_b"].fillna("")).tolist()
    return frame["text_a"].tolist()


class SklearnKind:
    """TF-IDF + logistic regression: an architecturally different teacher (the seed's future work).

    Saved as arrays (safetensors) + vocabulary (JSON), never pickled. Logits are the
    decision function's log-odds; for two classes, ``[−s/2, s/2]`` so that softmax gives
    the model's probabilities and the logits are centred like a network's.
    """

    def _vectorizer(self, cfg, vocabulary=None):
        from sklearn.feature_extraction.text import TfidfVectorizer

        return TfidfVectorizer(ngram_range=tuple(cfg["ngram_range"]), min_df=cfg["min_df"], max_features=cfg["max_features"],
                               sublinear_tf=True, lowercase=True, vocabulary=vocabulary, dtype=np.float64)

    def train(self, name, cfg, task, splits, out_dir, runtime, on_epoch=None):
        from safetensors.numpy import save_file
        from sklearn.linear_model import LogisticRegression

        hp = cfg.model_dump()
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
        return {"best_epoch": 1, "history": []}

    def predict(self, model_dir, frames, runtime, *, num_classes: int, trust_remote_code: bool = False):
        from safetensors.numpy import load_file

        info = _check_checkpoint(model_dir, "sklearn", num_classes)
        try:
            arrays = load_file(str(Path(model_dir) / "model.safetensors"))
            vocab = json.loads((Path(model_dir) / "vocabulary.json").read_text())
        except Exception as exc:
            raise MtkdError(f"{model_dir}: cannot load the sklearn teacher ({type(exc).__name__}: {exc})") from None
        if len(vocab) != len(arrays["idf"]) or arrays["coef"].shape[1] != len(vocab):
            raise MtkdError(f"{model_dir}: vocabulary ({len(vocab)}) and arrays {arrays['coef'].shape} disagree")
        vec = self._vectorizer(info["hyperparameters"], vocabulary=vocab)
        vec.idf_ = arrays["idf"]
        out = {}
        for split, frame in frames.items():
            scores = vec.transform(_texts(frame)) @ arrays["coef"].T + arrays["intercept"]
            scores = np.asarray(scores)
            out[split] = (np.concatenate([-scores / 2, scores / 2], axis=1) if scores.shape[1] == 1 else scores).astype(np.float32)
        return out


TEACHER_KINDS: dict[str, TeacherKind] = {"hf": HFKind(), "sklearn": SklearnKind()}
