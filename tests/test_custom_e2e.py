"""End to end (issue #15): `dvc repro` of a custom 5-class task from a CSV file, with a TF-IDF teacher and a
precomputed teacher (probabilities from a JSONL file), a single_ and a fusion strategy; the student
served by transformers.pipeline; editing either file re-runs exactly what depends on it.

Kept small: 150 examples, one seed, one thread, tiny random-init student.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import make_repo, run, tiny_params
from tests.test_custom_tasks import TOPICS, topic_frame

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

STRATEGIES = ["single_tfidf_lr", "average"]
TASK = "topics"


def scores_file(frame: pd.DataFrame, seed: int = 1) -> pd.DataFrame:
    """A model queried elsewhere: probabilities per id, right more often than not."""
    rng = np.random.default_rng(seed)
    names = sorted(TOPICS)
    p = rng.dirichlet(np.ones(len(names)), size=len(frame))
    right = np.array([names.index(t) for t in frame["topic"]])
    p[np.arange(len(frame)), right] += 1.0
    p /= p.sum(axis=1, keepdims=True)
    return pd.DataFrame({"id": frame["sid"], "scores": p.tolist()})


@pytest.fixture(scope="module")
def custom_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("custom_e2e") / "repo"
    raw = tiny_params(teachers=("tfidf_lr",), strategies=STRATEGIES, max_examples=400, num_threads=1)
    raw["seeds"] = [0]
    raw["data"]["tasks"] = [TASK]
    raw["data"]["custom"] = {TASK: {"train_file": "data/topics.csv", "text_column": "sentence", "label_column": "topic",
                                    "id_column": "sid", "group_column": "author"}}
    raw["teachers"]["api"] = {"kind": "precomputed", "path": "data/api_scores.jsonl", "scores": "probabilities"}
    raw["runtime"]["bf16"] = False  # the served model runs in fp32: so does the stage, for an exact comparison
    make_repo(repo, raw)
    frame = topic_frame(150)
    (repo / "data").mkdir(exist_ok=True)
    frame.to_csv(repo / "data/topics.csv", index=False)
    scores_file(frame).to_json(repo / "data/api_scores.jsonl", orient="records", lines=True)
    proc = run("dvc repro", repo, MTKD_NUM_THREADS="1")
    return repo, proc.stdout + proc.stderr


def test_every_stage_ran_on_the_custom_task(custom_repo):
    repo, log = custom_repo
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {"prepare", "configure", "analyze", *(f"{s}@{t}-{TASK}" for s in ("train_teachers", "extract_logits")
                                                        for t in ("tfidf_lr", "api")),
                   *(f"distill@{s}" for s in STRATEGIES)}
    meta = json.loads((repo / f"data/prepared/{TASK}/meta.json").read_text())
    assert meta["num_classes"] == 5 and meta["label_names"] == sorted(TOPICS) and meta["group_by"] == "author"
    for t in ("tfidf_lr", "api"):
        m = json.loads((repo / f"metrics/teachers/{t}-{TASK}.json").read_text())[TASK]
        assert "f1" not in m["test"] and 0 <= m["test"]["accuracy"] <= 1
    for s in STRATEGIES:
        m = json.loads((repo / f"metrics/distill/{s}.json").read_text())[TASK]
        assert 0 <= m["test"]["accuracy"]["mean"] <= 1 and set(m["fidelity"]) >= {"tfidf_lr", "api"}
    assert TASK in json.loads((repo / "metrics/summary.json").read_text())


def test_precomputed_logits_record_the_file_and_follow_the_ids(custom_repo):
    from mtkd.io import sha256_file
    from mtkd.logits import read_meta

    repo, _ = custom_repo
    meta = read_meta(repo / f"logits/api-{TASK}.npz")
    assert meta["scores_file"] == "data/api_scores.jsonl" and meta["scores"] == "probabilities"
    assert meta["scores_sha256"] == sha256_file(repo / "data/api_scores.jsonl")
    assert set(meta["logits_sha256"]) == {"train", "validation", "test"}
    scores = pd.read_json(repo / "data/api_scores.jsonl", lines=True, dtype=False).set_index("id")["scores"]
    with np.load(repo / f"logits/api-{TASK}.npz", allow_pickle=False) as npz:
        for split in ("train", "validation", "test"):
            prepared = pd.read_parquet(repo / f"data/prepared/{TASK}/{split}.parquet")
            assert npz[f"{split}/ids"].tolist() == prepared["id"].tolist()
            want = np.log(np.stack(scores.loc[prepared["id"]].map(np.asarray))).astype(np.float32)
            np.testing.assert_allclose(npz[f"{split}/logits"], want, rtol=1e-6)


def test_the_student_serves_the_label_names(custom_repo):
    from transformers import pipeline

    repo, _ = custom_repo
    student = repo / f"models/students/single_tfidf_lr/{TASK}"
    test = pd.read_parquet(repo / f"data/prepared/{TASK}/test.parquet")
    clf = pipeline("text-classification", model=str(student), device="cpu")
    served = [r["label"] for r in clf(test["text_a"].tolist(), batch_size=16)]
    with np.load(repo / "predictions/single_tfidf_lr.npz", allow_pickle=False) as npz:
        assert npz[f"{TASK}/test/ids"].tolist() == test["id"].tolist()
        staged = [sorted(TOPICS)[k] for k in npz[f"{TASK}/test/seed0"].argmax(axis=1)]
    assert served == staged and set(served) <= set(TOPICS)


def test_data_files_are_deps_and_editing_them_reruns_what_depends_on_them(custom_repo):
    repo, _ = custom_repo
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    assert "data/topics.csv" in stages["prepare"]["deps"]
    assert stages["train_teachers"]["foreach"][f"api-{TASK}"]["file0"] == "data/api_scores.jsonl"
    assert "up to date" in run("dvc status", repo).stdout  # nothing to do after the run

    csv = repo / "data/topics.csv"
    original = csv.read_bytes()
    csv.write_text(csv.read_text().replace("sport sportish", "sport sportive", 1))
    status = run("dvc status --json", repo).stdout
    changed = json.loads(status)
    assert "prepare" in changed and {"changed deps": {"data/topics.csv": "modified"}} in changed["prepare"], status
    csv.write_bytes(original)

    scores = repo / "data/api_scores.jsonl"
    frame = pd.read_json(scores, lines=True, dtype=False)
    scores_file(topic_frame(150), seed=2).assign(id=frame["id"]).to_json(scores, orient="records", lines=True)
    changed = json.loads(run("dvc status --json", repo).stdout)
    assert set(changed) == {f"train_teachers@api-{TASK}", f"extract_logits@api-{TASK}"}, changed  # not tfidf_lr's
    for stage in changed.values():
        assert {"changed deps": {"data/api_scores.jsonl": "modified"}} in stage
