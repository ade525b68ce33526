"""End to end (issue #17): `dvc repro` of the tiny profile with a transfer set (two augmented copies of each
train text plus a file of unlabelled texts) for `+transfer` students beside their train-only twins; every
teacher scores the transfer set; a transfer change re-runs exactly what reads it.

Kept small: 300 examples, two seeds, one thread, the tiny random-init student and teachers.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import assert_one_error_line, make_repo, run, tiny_params

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

TEACHERS = ("tiny_bert", "tfidf_lr")
STRATEGIES = ["none", "single_tfidf_lr", "average", "single_tfidf_lr+transfer", "average+transfer"]
UNLABELLED = ["an unlabelled sentence about a film", "another text nobody labelled", "a third one, quite dull"]


@pytest.fixture(scope="module")
def transfer_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("transfer_e2e") / "repo"
    raw = tiny_params(teachers=TEACHERS, strategies=STRATEGIES, max_examples=300, num_threads=1)
    raw["teachers"]["tfidf_lr"]["oof_folds"] = None  # in-sample train logits: fewer fits
    raw["distill"]["transfer"] = {"copies": 2, "operations": {"delete": 0.2, "swap": 0.2, "mask": 0.2}, "seed": 0,
                                  "unlabelled_file": "data/unlabelled.txt"}
    make_repo(repo, raw)
    (repo / "data").mkdir(exist_ok=True)
    (repo / "data/unlabelled.txt").write_text("\n".join(UNLABELLED) + "\n")
    run("git add -A && git commit -qm tiny", repo)
    proc = run("dvc repro", repo, MTKD_NUM_THREADS="1")
    return repo, proc.stdout + proc.stderr


def test_every_stage_ran_and_the_transfer_set_holds_copies_and_unlabelled_texts(transfer_repo):
    repo, log = transfer_repo
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {"prepare", "configure", "analyze", "transfer@rt",
                   *(f"{s}@{t}-rt" for s in ("train_teachers", "extract_logits") for t in TEACHERS),
                   *(f"distill@{s}" for s in STRATEGIES)}
    train = pd.read_parquet(repo / "data/prepared/rt/train.parquet")
    transfer = pd.read_parquet(repo / "data/transfer/rt.parquet")
    assert transfer["id"].tolist() == [f"{i}#aug{k}" for i in train["id"] for k in (1, 2)] + [
        f"unlabelled-{r}" for r in range(3)]
    assert transfer["text_a"].tolist()[-3:] == UNLABELLED and (transfer["label"] == -1).all()
    assert (transfer["text_a"].iloc[:-3] != train["text_a"].repeat(2).to_numpy()).mean() > 0.5  # most copies changed
    assert "[MASK]" in " ".join(transfer["text_a"])  # the student tokenizer's mask token


def test_every_teacher_scored_the_transfer_set_by_id(transfer_repo):
    repo, _ = transfer_repo
    ids = pd.read_parquet(repo / "data/transfer/rt.parquet")["id"].tolist()
    for t in TEACHERS:
        with np.load(repo / f"logits/transfer/{t}-rt.npz", allow_pickle=False) as npz:
            assert npz["transfer/ids"].tolist() == ids and npz["transfer/logits"].shape == (len(ids), 2)
            assert np.isfinite(npz["transfer/logits"]).all()


def test_transfer_students_train_on_train_and_transfer(transfer_repo):
    repo, _ = transfer_repo
    n_train = len(pd.read_parquet(repo / "data/prepared/rt/train.parquet"))
    n_transfer = len(pd.read_parquet(repo / "data/transfer/rt.parquet"))
    batch = yaml.safe_load((repo / "params.yaml").read_text())["student"]["per_device_train_batch_size"]
    steps = {}
    for s in ("average", "average+transfer"):
        rows = json.loads((repo / f"plots/curves/distill/{s}.json").read_text())
        steps[s] = max(r["step"] for r in rows if r["seed"] == 0)
    epochs = yaml.safe_load((repo / "params.yaml").read_text())["student"]["num_train_epochs"]
    assert steps["average"] == epochs * -(-n_train // batch)
    assert steps["average+transfer"] == epochs * -(-(n_train + n_transfer) // batch)
    settings = yaml.safe_load((repo / "configs/distill/average+transfer.yaml").read_text())
    assert settings["transfer"]["copies"] == 2 and "transfer" not in yaml.safe_load(
        (repo / "configs/distill/average.yaml").read_text())
    pairs = json.loads((repo / "metrics/comparisons.json").read_text())["rt"]["pairs"]
    assert {"average+transfer_vs_average", "single_tfidf_lr+transfer_vs_single_tfidf_lr"} <= set(pairs)
    summary = json.loads((repo / "metrics/summary.json").read_text())["rt"]
    assert summary["strategies"]["average+transfer"]["kind"] == "multi"


def test_a_transfer_change_reruns_only_what_reads_it(transfer_repo):
    repo, _ = transfer_repo
    params = repo / "params.yaml"
    original = params.read_text()
    raw = yaml.safe_load(original)
    raw["distill"]["transfer"]["seed"] = 1
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        log = run("dvc repro", repo, MTKD_NUM_THREADS="1").stdout
        ran = set(re.findall(r"Running stage '([^']+)'", log))
        assert ran == {"transfer@rt", "configure", *(f"extract_logits@{t}-rt" for t in TEACHERS),
                       "distill@single_tfidf_lr+transfer", "distill@average+transfer", "analyze"}
    finally:
        params.write_text(original)


def test_transfer_logits_that_miss_an_id_stop_the_student_in_one_line(transfer_repo):
    repo, _ = transfer_repo
    path = repo / "data/transfer/rt.parquet"
    original = path.read_bytes()
    frame = pd.read_parquet(path)
    try:
        frame.iloc[1:].to_parquet(path, index=False)  # the logits know one transfer example more
        proc = run(["python", "-m", "stages.distill", "--strategy", "average+transfer"], repo, check=False)
        assert_one_error_line(proc, "-rt.npz[transfer]: ids do not match", "logits/transfer/")
    finally:
        path.write_bytes(original)


@pytest.mark.parametrize("change, message", [
    ({"strategies": ["none", "ca_mkd+transfer"]}, "'ca_mkd+transfer': ca_mkd's targets read the gold train labels"),
    ({"strategies": ["none", "none+transfer"]}, "'none+transfer': a transfer set has no labels, so it needs a teacher"),
    ({"transfer": {"copies": 0, "unlabelled_file": None}}, "distill.transfer.copies: must be >= 1 (0 only with an unlabelled_file)"),
    ({"transfer": {"operations": {"shuffle": 0.1}}}, "distill.transfer.operations: unknown augmentation 'shuffle'"),
    ({"transfer": {"operations": {"delete": 1.0}}}, "distill.transfer.operations.delete: rate must lie in [0, 1), got 1.0"),
])
def test_bad_transfer_params_stop_the_pipeline_in_one_line(transfer_repo, change, message):
    repo, _ = transfer_repo
    params = repo / "params.yaml"
    original, dvc_yaml = params.read_text(), (repo / "dvc.yaml").read_bytes()
    raw = yaml.safe_load(original)
    for key, value in change.items():
        raw["distill"][key] = {**raw["distill"][key], **value} if isinstance(value, dict) else value
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        for cmd in (["mtkd.pipeline"], ["stages.transfer", "--task", "rt"]):
            assert_one_error_line(run(["python", "-m", *cmd], repo, check=False), message)
        assert (repo / "dvc.yaml").read_bytes() == dvc_yaml
    finally:
        params.write_text(original)


def test_unlabelled_texts_that_clash_stop_the_transfer_stage_in_one_line(transfer_repo):
    repo, _ = transfer_repo
    path = repo / "data/unlabelled.txt"
    before = (repo / "data/transfer/rt.parquet").read_bytes()
    try:
        path.write_text("a text\n\nanother\n")
        proc = run(["python", "-m", "stages.transfer", "--task", "rt"], repo, check=False)
        assert_one_error_line(proc, "distill.transfer.unlabelled_file data/unlabelled.txt", "empty text (line 2)")
        assert (repo / "data/transfer/rt.parquet").read_bytes() == before  # nothing overwritten
    finally:
        path.write_text("\n".join(UNLABELLED) + "\n")
