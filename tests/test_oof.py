"""Out-of-fold soft labels (``teachers.<name>.oof_folds``): folds, behaviour, bad input, end to end."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from mtkd.errors import MtkdError
from mtkd.logits import OOF_FILE, load_logits, load_oof_logits, read_meta, save_logits
from mtkd.metrics import confidence
from mtkd.params import SklearnTeacher, validate_params
from mtkd.teachers import TEACHER_KINDS, check_oof_folds, fold_assignment, train_out_of_fold
from tests import helpers
from tests.helpers import ROOT, assert_one_error_line, make_repo, run, tiny_params

TASK = {"task": "synthetic", "num_classes": 2, "primary_metric": "accuracy"}


# --------------------------------------------------------------------------------------------
# Folds


def test_fold_assignment_covers_each_example_once_seeded_and_stratified():
    labels = np.array([0] * 70 + [1] * 23 + [2] * 7)
    folds = fold_assignment(labels, 5, seed=3)
    assert folds.shape == labels.shape and set(folds) == set(range(5))  # each example in exactly one fold
    np.testing.assert_array_equal(folds, fold_assignment(labels, 5, seed=3))  # seeded
    assert not np.array_equal(folds, fold_assignment(labels, 5, seed=4))
    for c, n in zip(*np.unique(labels, return_counts=True)):  # stratified: each class split evenly
        per_fold = np.bincount(folds[labels == c], minlength=5)
        assert per_fold.max() - per_fold.min() <= 1, (c, per_fold)
        assert per_fold.sum() == n
    assert not np.array_equal(folds[:20], np.sort(folds[:20]))  # shuffled, not contiguous blocks


# --------------------------------------------------------------------------------------------
# Real behaviour of the sklearn teacher on a small synthetic task


def synthetic_task(n: int = 240, seed: int = 0, vocab: int = 150, length: int = 10) -> dict[str, pd.DataFrame]:
    """One cue word per example that shows its label 80% of the time, among ``length`` words drawn
    (Zipf) from a shared neutral vocabulary, as in real text: a model fits the other 20% of its
    training examples only by memorising their neutral-word combinations.

    (Not words unique to each example: unseen words vanish from a held-out TF-IDF vector, so its
    cue would weigh more after normalisation, and out-of-fold logits would come out *more*
    confident, which real text — measured on rt, see README — does not do.)
    """
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    zipf = 1 / np.arange(1, vocab + 1)
    zipf /= zipf.sum()
    cues = [["good", "great", "fine"], ["bad", "awful", "poor"]]

    def frame(prefix, n):
        y = rng.integers(0, 2, n)
        rows = []
        for i in range(n):
            shown = y[i] if rng.random() > 0.2 else 1 - y[i]
            text = " ".join([rng.choice(cues[shown]), *rng.choice(words, length, p=zipf)])
            rows.append({"id": f"{prefix}{i}", "text_a": text, "text_b": None, "label": int(y[i])})
        return pd.DataFrame(rows)

    return {"train": frame("tr", n), "validation": frame("va", n // 4)}


def test_sklearn_oof_logits_differ_and_are_less_confident_than_in_sample(tmp_path):
    splits = synthetic_task()
    cfg = SklearnTeacher(kind="sklearn", min_df=1, C=4.0, oof_folds=4, seed=7)
    kind = TEACHER_KINDS["sklearn"]
    kind.train("lr", cfg, TASK, splits, tmp_path / "full", None)
    in_sample = kind.predict(tmp_path / "full", {"train": splits["train"]}, None, num_classes=2)["train"]
    oof, info = train_out_of_fold("lr", cfg, TASK, splits, None)

    assert oof.dtype == np.float32 and oof.shape == in_sample.shape and np.isfinite(oof).all()
    assert info["folds"] == 4 and info["seed"] == 7 and sum(info["fold_sizes"]) == len(splits["train"])
    assert not np.allclose(oof, in_sample, atol=1e-3)
    y = splits["train"]["label"].to_numpy()
    c_in, c_oof = confidence(in_sample), confidence(oof)
    # The full model memorises its train examples (100% right, confidently); the fold models cannot.
    assert c_oof["mean_max_prob"] < c_in["mean_max_prob"] - 0.05, (c_in, c_oof)
    assert c_oof["mean_entropy"] > c_in["mean_entropy"]
    assert (in_sample.argmax(1) == y).mean() > (oof.argmax(1) == y).mean() + 0.1
    assert (in_sample.argmax(1) == y).mean() == 1.0
    # Out of fold, accuracy on train is what the cue word allows, as on unseen data: above chance, below 0.8.
    assert 0.55 < (oof.argmax(1) == y).mean() < 0.8
    # Deterministic: the same folds and fits again.
    np.testing.assert_array_equal(oof, train_out_of_fold("lr", cfg, TASK, splits, None)[0])
    assert not list(tmp_path.glob("*fold*"))  # fold checkpoints are not kept


def test_confidence_is_the_analysis_definition():
    from mtkd.analysis import confidence as analysis_confidence

    z = np.random.default_rng(0).normal(size=(50, 3)) * 3
    assert confidence(z) == analysis_confidence(z)


def test_checkpoint_publishes_the_oof_file_with_the_model(tmp_path):
    """The OOF file is written inside the checkpoint before its one rename; the full model is unchanged by it."""
    splits = synthetic_task(n=60)
    cfg = SklearnTeacher(kind="sklearn", min_df=1, oof_folds=2)
    kind = TEACHER_KINDS["sklearn"]
    kind.train("lr", cfg, TASK, splits, tmp_path / "plain", None)
    kind.train("lr", cfg, TASK, splits, tmp_path / "with", None,
               extra_files={OOF_FILE: lambda p: p.write_bytes(b"x")})
    assert sorted(p.name for p in (tmp_path / "with").iterdir()) == sorted(
        [OOF_FILE, *(p.name for p in (tmp_path / "plain").iterdir())])
    for p in (tmp_path / "plain").iterdir():
        assert (tmp_path / "with" / p.name).read_bytes() == p.read_bytes(), p.name
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


# --------------------------------------------------------------------------------------------
# Bad input: one line naming teachers.<name>.oof_folds


def tiny_raw(**oof) -> dict:
    raw = tiny_params(teachers=("tiny_bert", "tfidf_lr"))
    for teacher, k in oof.items():
        raw["teachers"][teacher]["oof_folds"] = k
    return raw


@pytest.mark.parametrize("teacher,value", [("tfidf_lr", 1), ("tiny_bert", 1), ("tfidf_lr", 0), ("tfidf_lr", "two")])
def test_params_refuse_fewer_than_two_folds(teacher, value):
    with pytest.raises(MtkdError) as err:
        validate_params(tiny_raw(**{teacher: value}))
    msg = str(err.value)
    assert f"teachers.{teacher}.oof_folds" in msg and "\n" not in msg, msg


def test_params_accept_folds_on_both_kinds():
    p = validate_params(tiny_raw(tfidf_lr=2, tiny_bert=3))
    assert p.teachers["tfidf_lr"].oof_folds == 2 and p.teachers["tiny_bert"].oof_folds == 3
    raw = tiny_raw()
    raw["teachers"]["tfidf_lr"].pop("oof_folds", None)  # params.yaml turns it on for tfidf_lr; the kind's default is off
    assert validate_params(raw).teachers["tfidf_lr"].oof_folds is None


def test_more_folds_than_the_rarest_class_is_refused():
    labels = np.array([0] * 20 + [1] * 3)
    check_oof_folds("tfidf_lr", 3, labels)
    with pytest.raises(MtkdError) as err:
        check_oof_folds("tfidf_lr", 4, labels)
    assert str(err.value) == ("teachers.tfidf_lr.oof_folds: 4 folds need at least 4 train examples of every class,"
                              " class 1 has 3")


def oof_file(tmp_path, ids, folds=2, fp="fp"):
    model_dir = tmp_path / "ckpt"
    model_dir.mkdir(exist_ok=True)
    save_logits(model_dir / OOF_FILE, teacher="t", task="rt", num_classes=2,
                splits={"train": (ids, np.zeros((len(ids), 2), np.float32))},
                provenance={"data_fingerprint": {"train": fp}, "oof": {"folds": folds}})
    return model_dir


TRAIN = pd.DataFrame({"id": ["a", "b", "c"], "label": [0, 1, 0]})


@pytest.mark.parametrize("ids,folds,message", [
    (["a", "b", "z"], 2, "ids do not match the prepared split (1 missing, 1 unknown, 0 duplicated)"),
    (["b", "a", "c"], 2, "right set in a different order"),
    (["a", "b"], 2, "(1 missing, 0 unknown, 0 duplicated)"),
    (["a", "b", "c"], 3, "made with 3 folds, teachers.t.oof_folds is 2"),
])
def test_mismatched_oof_file_is_refused(tmp_path, ids, folds, message):
    model_dir = oof_file(tmp_path, ids, folds)
    with pytest.raises(MtkdError) as err:
        load_oof_logits(model_dir, "t", 2, TRAIN, 2, "fp")
    assert message in str(err.value) and str(model_dir / OOF_FILE) in str(err.value) and "\n" not in str(err.value)


def test_oof_file_must_exist_exactly_when_folds_are_set(tmp_path):
    with pytest.raises(MtkdError, match=r"not found, but teachers\.t\.oof_folds is 2"):
        load_oof_logits(tmp_path, "t", 2, TRAIN, 2)
    assert load_oof_logits(tmp_path, "t", None, TRAIN, 2) is None
    model_dir = oof_file(tmp_path, ["a", "b", "c"])
    with pytest.raises(MtkdError, match=r"teachers\.t\.oof_folds is not set; stale checkpoint"):
        load_oof_logits(model_dir, "t", None, TRAIN, 2)
    with pytest.raises(MtkdError, match="stale logits"):
        load_oof_logits(model_dir, "t", 2, TRAIN, 2, "other-fingerprint")
    logits, info = load_oof_logits(model_dir, "t", 2, TRAIN, 2, "fp")
    assert logits.shape == (3, 2) and info == {"folds": 2}


# --------------------------------------------------------------------------------------------
# Through the stage entry points (sklearn teacher only: seconds)


def run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return helpers.run_stage(cwd, *args, MTKD_NUM_THREADS="1")


@pytest.fixture(scope="module")
def sklearn_dir(tmp_path_factory):
    """Prepared tiny data and a tfidf_lr checkpoint trained with oof_folds: 2."""
    work = tmp_path_factory.mktemp("oof_stage")
    raw = tiny_params(teachers=("tfidf_lr",), strategies=("none",))
    raw["teachers"]["tfidf_lr"]["oof_folds"] = 2
    (work / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    for args in (["stages.prepare"], ["stages.train_teacher", "--teacher", "tfidf_lr", "--task", "rt"]):
        proc = run_stage(work, *args)
        assert proc.returncode == 0, proc.stderr[-3000:]
    return work


def test_stage_refuses_more_folds_than_the_rarest_class(sklearn_dir, tmp_path):
    import shutil

    shutil.copytree(sklearn_dir / "data", tmp_path / "data")
    raw = yaml.safe_load((sklearn_dir / "params.yaml").read_text())
    raw["teachers"]["tfidf_lr"]["oof_folds"] = 10_000
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    proc = run_stage(tmp_path, "stages.train_teacher", "--teacher", "tfidf_lr", "--task", "rt")
    assert_one_error_line(proc, "teachers.tfidf_lr.oof_folds: 10000 folds need at least 10000 train examples")
    assert not (tmp_path / "models").exists()  # nothing trained, nothing written


def test_stage_refuses_tampered_oof_ids_and_keeps_outputs(sklearn_dir, tmp_path):
    import shutil

    for name in ("data", "models", "params.yaml"):
        src = sklearn_dir / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, tmp_path / name)
    path = tmp_path / "models/teachers/tfidf_lr-rt" / OOF_FILE
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["train/ids"] = arrays["train/ids"].copy()
    arrays["train/ids"][0] = "not-a-train-id"
    np.savez(path, **arrays)
    (tmp_path / "logits").mkdir()
    (tmp_path / "logits/tfidf_lr-rt.npz").write_bytes(b"previous")
    proc = run_stage(tmp_path, "stages.extract_logits", "--teacher", "tfidf_lr", "--task", "rt")
    assert_one_error_line(proc, f"{OOF_FILE}[train]: ids do not match the prepared split (1 missing, 1 unknown")
    assert (tmp_path / "logits/tfidf_lr-rt.npz").read_bytes() == b"previous"
    assert not (tmp_path / "metrics").exists()


# --------------------------------------------------------------------------------------------
# End to end: `python -m mtkd.pipeline && dvc repro` with oof_folds: 2 on an sklearn and an hf teacher


@pytest.fixture(scope="module")
def oof_repo(tmp_path_factory):
    raw = tiny_raw(tfidf_lr=2, tiny_bert=2)
    repo = make_repo(tmp_path_factory.mktemp("oof_e2e") / "repo", raw)  # runs `python -m mtkd.pipeline`
    proc = run("dvc repro", repo, MTKD_NUM_THREADS="1")
    return repo, proc.stdout + proc.stderr


@pytest.mark.parametrize("teacher", ["tfidf_lr", "tiny_bert"])
def test_e2e_train_logits_are_the_oof_ones(oof_repo, teacher):
    repo, log = oof_repo
    assert f"Running stage 'distill@average'" in log and "Running stage 'analyze'" in log
    model_dir = repo / "models/teachers" / f"{teacher}-rt"
    frames = {s: pd.read_parquet(repo / f"data/prepared/rt/{s}.parquet") for s in ("train", "validation", "test")}
    oof_path, logits_path = model_dir / OOF_FILE, repo / "logits" / f"{teacher}-rt.npz"
    oof = load_logits(oof_path, "train", frames["train"], 2)
    train = load_logits(logits_path, "train", frames["train"], 2)
    np.testing.assert_array_equal(train, oof)  # bit for bit: the train soft labels are the OOF ones
    meta = read_meta(logits_path)
    assert meta["train_logits"] == "out_of_fold" and meta["oof"]["folds"] == 2
    assert sum(meta["oof"]["fold_sizes"]) == len(frames["train"])
    # Validation/test come from the full model (re-predicted here from the checkpoint).
    full = TEACHER_KINDS[json.loads((model_dir / "mtkd_teacher.json").read_text())["kind"]].predict(
        model_dir, {s: frames[s] for s in ("train", "test")}, validate_params(yaml.safe_load(
            (repo / "params.yaml").read_text())).runtime, num_classes=2)
    # (This process may use another thread count than the stage: equal up to reduction order.)
    np.testing.assert_allclose(load_logits(logits_path, "test", frames["test"], 2), full["test"], atol=1e-3)
    assert np.abs(full["train"] - oof).max() > 1e-2
    conf = json.loads((repo / "metrics/teachers" / f"{teacher}-rt.json").read_text())["train_confidence"]["rt"]
    assert conf == meta["train_confidence"] and set(conf) == {"in_sample", "out_of_fold"}
    assert conf["out_of_fold"] == confidence(oof)
    assert conf["in_sample"] == pytest.approx(confidence(full["train"]), abs=1e-3)
    assert {p.name for p in model_dir.parent.iterdir()} - {".gitignore"} == {"tfidf_lr-rt", "tiny_bert-rt"}  # no fold leftovers
    print(f"\n{teacher} train confidence: in-sample {conf['in_sample']}, out-of-fold {conf['out_of_fold']}")


def test_e2e_lexical_teacher_is_less_confident_out_of_fold(oof_repo):
    repo, _ = oof_repo
    conf = json.loads((repo / "metrics/teachers/tfidf_lr-rt.json").read_text())["train_confidence"]["rt"]
    assert conf["out_of_fold"]["mean_max_prob"] < conf["in_sample"]["mean_max_prob"]
    assert conf["out_of_fold"]["mean_entropy"] > conf["in_sample"]["mean_entropy"]


def test_e2e_report_shows_train_confidence_in_sample_and_out_of_fold(oof_repo):
    repo, _ = oof_repo
    conf = json.loads((repo / "metrics/teachers/tfidf_lr-rt.json").read_text())["train_confidence"]["rt"]
    table = json.loads((repo / "metrics/teacher_confidence.json").read_text())["rt"]["tfidf_lr"]
    assert table["train_in_sample"] == conf["in_sample"]   # the full model on its own training data
    assert table["train"] == conf["out_of_fold"]            # what the student is distilled from
    rows = (repo / "plots/teacher_confidence.csv").read_text()
    assert "train_in_sample" in rows
    html = (repo / "reports/report.html").read_text()
    assert f"{conf['in_sample']['mean_max_prob']:.3f} in-sample vs {conf['out_of_fold']['mean_max_prob']:.3f} out-of-fold" in html
