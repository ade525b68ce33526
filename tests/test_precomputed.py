"""Teachers from a file of scores (issue #15.2, ``kind: precomputed``) and students ready to serve (#15.3).

A precomputed teacher made from another teacher's logits file must give that teacher's
``single_`` student bit for bit; its file's ids, classes and values are checked like logits.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from tests.helpers import profile
from mtkd.data import load_split, prepare_task
from mtkd.distill import distill_task
from mtkd.errors import MtkdError
from mtkd.fusion import TeacherLogits, get_strategy
from mtkd.logits import save_logits
from mtkd.metrics import classification_metrics, softmax
from mtkd.params import Data, Runtime, validate_params
from mtkd.teachers import TEACHER_KINDS, PrecomputedTeacher

SPLITS = ("train", "validation", "test")
RUNTIME = Runtime(num_threads=1, bf16=False)


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    """A small rt, a TF-IDF teacher trained on it, and that teacher's logits file (logits/<t>-<task>.npz format)."""
    root = tmp_path_factory.mktemp("precomputed")
    meta = prepare_task(Data(tasks=["rt"], max_examples=160, validation_fraction=0.2, test_fraction=0.2), "rt", root / "rt")
    frames = {s: load_split(root, "rt", s) for s in SPLITS}
    sk = TEACHER_KINDS["sklearn"]
    cfg = type(sk).Params.model_validate({"kind": "sklearn", "min_df": 1})
    sk.train("tfidf_lr", cfg, meta, {s: frames[s] for s in ("train", "validation")}, root / "tfidf_ckpt", RUNTIME)
    logits = sk.predict(root / "tfidf_ckpt", frames, RUNTIME, num_classes=2)
    path = root / "tfidf_lr-rt.npz"
    save_logits(path, teacher="tfidf_lr", task="rt", num_classes=2,
                splits={s: (frames[s]["id"].tolist(), logits[s]) for s in SPLITS},
                provenance={"data_fingerprint": {s: meta["splits"][s]["fingerprint"] for s in SPLITS}})
    return root, meta, frames, logits, path


def precomputed(path, scores="logits") -> PrecomputedTeacher:
    return PrecomputedTeacher(kind="precomputed", path=str(path), scores=scores)


def train_and_predict(root, meta, frames, cfg, name="api"):
    kind = TEACHER_KINDS["precomputed"]
    out = root / f"ckpt-{name}"
    kind.train(name, cfg, meta, {s: frames[s] for s in ("train", "validation")}, out, RUNTIME)
    return out, kind.predict(out, frames, RUNTIME, num_classes=meta["num_classes"])


def table(frames, logits) -> pd.DataFrame:
    return pd.concat([pd.DataFrame({"split": s, "id": frames[s]["id"], "scores": list(map(list, logits[s].astype(np.float64)))})
                      for s in SPLITS], ignore_index=True)


def student_params():
    raw = profile("tiny")
    raw["seeds"] = [0]
    raw["student"]["num_train_epochs"] = 1
    raw["runtime"].update(num_threads=1, seed_workers=1, bf16=False)
    return validate_params(raw)


def distill_single(teacher: str, logits: dict, frames, meta, save_dir=None):
    torch.set_num_threads(1)
    p = student_params()
    val = classification_metrics(logits["validation"], frames["validation"]["label"].to_numpy(), 2)["accuracy"]
    teachers = TeacherLogits([teacher], {s: logits[s][None] for s in SPLITS}, {teacher: val})
    strategy = get_strategy(f"single_{teacher}", [teacher])
    return distill_task(strategy, strategy.settings(p.distill), meta, frames, teachers, p, save_dir, [])


def test_a_logits_file_as_teacher_gives_that_teachers_student_bit_for_bit(rt, tmp_path):
    root, meta, frames, logits, path = rt
    ckpt, again = train_and_predict(root, meta, frames, precomputed(path))
    for s in SPLITS:
        assert again[s].dtype == np.float32 and np.array_equal(again[s], logits[s]), s
    info = json.loads((ckpt / "mtkd_teacher.json").read_text())
    assert info["kind"] == "precomputed" and info["scores_sha256"] and info["path"] == str(path)
    assert TEACHER_KINDS["precomputed"].provenance(ckpt) == {"scores_file": str(path), "scores": "logits",
                                                             "scores_sha256": info["scores_sha256"]}

    m_orig, p_orig = distill_single("tfidf_lr", logits, frames, meta)
    m_file, p_file = distill_single("api", again, frames, meta, save_dir=tmp_path / "student")
    m_file["seeds"]["0"]["fidelity"] = {("tfidf_lr" if k == "api" else k): v for k, v in m_file["seeds"]["0"]["fidelity"].items()}
    m_file["fidelity"] = {("tfidf_lr" if k == "api" else k): v for k, v in m_file["fidelity"].items()}
    assert m_file == m_orig  # every metric, every seed
    assert sorted(p_file) == sorted(p_orig) and all(np.array_equal(p_file[k], p_orig[k]) for k in p_orig)

    # Students ready to serve (#15.3): transformers.pipeline names the task's labels, and agrees with the stage.
    from transformers import pipeline

    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["id2label"] == {"0": "rotten", "1": "fresh"} and config["label2id"] == {"rotten": 0, "fresh": 1}
    clf = pipeline("text-classification", model=str(tmp_path / "student"), device="cpu")
    served = [r["label"] for r in clf(frames["test"]["text_a"].tolist(), batch_size=8)]
    staged = [meta["label_names"][k] for k in p_file["test/seed0"].argmax(axis=1)]
    assert served == staged and set(served) <= {"rotten", "fresh"}


@pytest.mark.parametrize("fmt", ["parquet", "jsonl", "npz_flat"])
def test_every_file_format_and_probabilities(rt, tmp_path, fmt):
    root, meta, frames, logits, _ = rt
    t = table(frames, logits).sample(frac=1.0, random_state=0)  # any row order: rows follow the ids
    if fmt == "parquet":
        path = tmp_path / "scores.parquet"
        t.to_parquet(path, index=False)
    elif fmt == "jsonl":  # probabilities, without a split column
        path = tmp_path / "scores.jsonl"
        t.drop(columns="split").assign(scores=[list(softmax(np.asarray(z))) for z in t["scores"]]).to_json(
            path, orient="records", lines=True)
    else:
        path = tmp_path / "scores.npz"
        np.savez(path, ids=t["id"].to_numpy(dtype=str), scores=np.stack(t["scores"].map(np.asarray)))
    cfg = precomputed(path, "probabilities" if fmt == "jsonl" else "logits")
    _, got = train_and_predict(root, meta, frames, cfg, name=fmt)
    for s in SPLITS:
        if fmt == "jsonl":  # log(p): the same distribution
            np.testing.assert_allclose(softmax(got[s]), softmax(logits[s]), atol=1e-6)
        else:
            assert np.array_equal(got[s], logits[s]), s


def test_a_zero_probability_stays_finite(rt, tmp_path):
    root, meta, frames, logits, _ = rt
    t = table(frames, logits).assign(scores=lambda f: [[1.0, 0.0]] * len(f))
    path = tmp_path / "hard.jsonl"
    t.to_json(path, orient="records", lines=True)
    _, got = train_and_predict(root, meta, frames, precomputed(path, "probabilities"))
    assert np.isfinite(got["test"]).all() and (softmax(got["test"])[:, 0] > 0.999999).all()


def _drop_one(t):
    return t.drop(index=t.index[t["split"] == "train"][0])


def _extra(t):
    return pd.concat([t, pd.DataFrame({"split": ["test"], "id": ["rt-not-a-prepared-id"], "scores": [[0.0, 1.0]]})],
                     ignore_index=True)


def _dup(t):
    return pd.concat([t, t.iloc[[3]]], ignore_index=True)


def _set(row, value):
    def mutate(t):
        t = t.copy()
        t.at[t.index[row], "scores"] = value
        return t
    return mutate


def _swap_split(t):
    t = t.copy()
    t.loc[t.index[t["split"] == "train"][0], "split"] = "test"
    return t


@pytest.mark.parametrize("mutate, scores, needle", [
    (_drop_one, "logits", "has no scores for 1 of the 96 'train' examples (first id"),
    (_extra, "logits", "has scores for 1 ids in no split of the prepared task (first 'rt-not-a-prepared-id')"),
    (_dup, "logits", "occurs 2 times (1 ids repeated); every id once"),
    (lambda t: t.assign(scores=[[*s, 0.0] for s in t["scores"]]), "logits", "has 3 scores per example, the task has 2 classes"),
    (_set(5, [float("nan"), 0.0]), "logits", "1 rows of scores are not finite (NaN or inf)"),
    (_set(5, [float("inf"), 0.0]), "logits", "not finite"),
    (lambda t: t.assign(scores=[list(softmax(np.asarray(s))) for s in t["scores"]]).pipe(_set(2, [1.2, -0.2])),
     "probabilities", "probabilities must be >= 0"),
    (lambda t: t.assign(scores=[list(softmax(np.asarray(s))) for s in t["scores"]]).pipe(_set(2, [0.5, 0.6])),
     "probabilities", "sum to 1.100000, not 1 (within 0.0001"),
    (lambda t: t, "probabilities", "probabilities must be >= 0"),  # logits read as probabilities
    (lambda t: t.assign(scores=[list(np.abs(s)) for s in t["scores"]]), "probabilities", "sum to"),
    (_swap_split, "logits", "in split 'test', the prepared data has it in 'train'"),
    (lambda t: t.drop(columns="scores"), "logits", "no column 'scores'"),
])
def test_bad_score_files_are_one_line(rt, tmp_path, mutate, scores, needle):
    root, meta, frames, logits, _ = rt
    path = tmp_path / "bad.jsonl"
    mutate(table(frames, logits)).to_json(path, orient="records", lines=True)
    with pytest.raises(MtkdError) as err:
        train_and_predict(root, meta, frames, precomputed(path, scores))
    text = str(err.value)
    assert "\n" not in text and text.startswith(f"teachers.api.path: {path}") and needle in text, text


def test_missing_unreadable_and_changed_files(rt, tmp_path):
    root, meta, frames, logits, _ = rt
    with pytest.raises(MtkdError, match=r"^teachers\.api\.path: .*nowhere\.parquet does not exist$"):
        train_and_predict(root, meta, frames, precomputed(tmp_path / "nowhere.parquet"))
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"not parquet at all")
    with pytest.raises(MtkdError, match=r"^teachers\.api\.path: .*garbage\.parquet cannot be read"):
        train_and_predict(root, meta, frames, precomputed(garbage))
    path = tmp_path / "scores.jsonl"
    table(frames, logits).to_json(path, orient="records", lines=True)
    ckpt, _ = train_and_predict(root, meta, frames, precomputed(path))
    table(frames, {s: -z for s, z in logits.items()}).to_json(path, orient="records", lines=True)  # edited since
    with pytest.raises(MtkdError, match=r"scores\.jsonl changed since train_teachers recorded it"):
        TEACHER_KINDS["precomputed"].predict(ckpt, frames, RUNTIME, num_classes=2)


def params_with(teacher: dict, tasks=("rt",)) -> dict:
    raw = profile("tiny")
    raw["data"]["tasks"] = list(tasks)
    raw["teachers"] = {"tfidf_lr": {"kind": "sklearn"}, "api": teacher}
    raw["distill"]["strategies"] = ["none", "single_api", "average"]
    return raw


@pytest.mark.parametrize("teacher, tasks, needle", [
    ({"kind": "precomputed", "path": "scores.csv"}, ["rt"],
     "teachers.api.path: 'scores.csv' has unknown extension '.csv' (use .parquet, .jsonl, .npz)"),
    ({"kind": "precomputed", "path": "scores.npz"}, ["rt", "tweets"],
     "teachers.api.path: 2 tasks need a file each; put {task} in the path (got 'scores.npz')"),
    ({"kind": "precomputed", "path": "s.npz", "scores": "probs"}, ["rt"], "teachers.api.scores:"),
    ({"kind": "precomputed", "path": "s.npz", "oof_folds": 3}, ["rt"], "teachers.api.oof_folds: unknown key"),
    ({"kind": "precomputed"}, ["rt"], "teachers.api.path: required key is missing"),
])
def test_bad_precomputed_params_are_one_line(teacher, tasks, needle):
    with pytest.raises(MtkdError) as err:
        validate_params(params_with(teacher, tasks))
    assert "\n" not in str(err.value) and needle in str(err.value), str(err.value)


def test_the_file_is_a_dependency_of_that_teachers_stages_only():
    from mtkd.pipeline import render

    raw = params_with({"kind": "precomputed", "path": "scores/{task}.parquet"}, ("rt", "tweets"))
    stages = yaml.safe_load(render(validate_params(raw)))["stages"]
    for name in ("train_teachers", "extract_logits"):
        stage = stages[name]
        assert "matrix" not in stage and "${item.file0}" in stage["do"]["deps"]
        assert stage["foreach"] == {  # the matrix's own stage names: <teacher>-<task>
            "tfidf_lr-rt": {"teacher": "tfidf_lr", "task": "rt", "file0": "data/prepared"},
            "tfidf_lr-tweets": {"teacher": "tfidf_lr", "task": "tweets", "file0": "data/prepared"},
            "api-rt": {"teacher": "api", "task": "rt", "file0": "scores/rt.parquet"},
            "api-tweets": {"teacher": "api", "task": "tweets", "file0": "scores/tweets.parquet"}}
        assert stage["do"]["cmd"].endswith("--teacher ${item.teacher} --task ${item.task}")
    # without a kind that reads files, the template's matrix is kept as it is
    plain = yaml.safe_load(render(validate_params(profile("tiny"))))["stages"]
    assert "matrix" in plain["train_teachers"] and "${item.file0}" not in plain["train_teachers"]["deps"]
