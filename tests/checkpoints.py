"""Teacher checkpoints and a prepared task built in-process, shared by the bad-input tests
(the session fixture ``work`` in conftest.py builds them once)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mtkd.data import load_split, prepare_task
from mtkd.params import Data, HFTeacher, Runtime, SklearnTeacher
from mtkd.teachers import TEACHER_KINDS

RUNTIME = Runtime(num_threads=2, bf16=True, length_bucketing=True)
TINY_BERT = {"kind": "hf", "random_init": {"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 32,
                                            "num_attention_heads": 2, "intermediate_size": 64},
             "max_seq_length": 32, "num_train_epochs": 1, "per_device_train_batch_size": 32, "learning_rate": 1e-3}
TFIDF = {"kind": "sklearn", "min_df": 1, "C": 4.0}


def one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert str(needle) in text, (needle, text)
    return text


def build_work(root: Path) -> dict:
    """A small prepared rt task and one trained checkpoint of each teacher kind under ``root``."""
    data = Data(tasks=["rt"], max_examples=300, validation_fraction=0.15, test_fraction=0.15)
    meta = prepare_task(data, "rt", root / "data/prepared/rt")
    frames = {s: load_split(root / "data/prepared", "rt", s) for s in ("train", "validation", "test")}
    ckpt = {}
    for name, cfg in (("tiny_bert", HFTeacher(**TINY_BERT)), ("tfidf_lr", SklearnTeacher(**TFIDF))):
        out = root / "models/teachers" / f"{name}-rt"
        TEACHER_KINDS[cfg.kind].train(name, cfg, meta, {s: frames[s] for s in ("train", "validation")}, out, RUNTIME)
        ckpt[cfg.kind] = out
    return {"root": root, "meta": meta, "frames": frames, "ckpt": ckpt}


def copy_ckpt(work, kind: str, dest: Path) -> Path:
    out = dest / f"{kind}-ckpt"
    shutil.copytree(work["ckpt"][kind], out)
    return out


def predict(work, kind: str, model_dir: Path, num_classes: int = 2, **kwargs):
    return TEACHER_KINDS[kind].predict(model_dir, {"test": work["frames"]["test"]}, RUNTIME,
                                       num_classes=num_classes, **kwargs)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
