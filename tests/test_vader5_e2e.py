"""End to end (issue #16): `dvc repro` of vader5 (600 of its sentences) with two TF-IDF teachers and the human
teacher, single_ students and a fusion of the two TF-IDF teachers (`distill.fused_teachers`, as the vader5
profile leaves the human teacher out of its fusions); the analysis scores every model against the raters'
distribution, the human teacher's student as the reference. A human teacher on a task without rater data
stops the pipeline in one line.

Kept small: two seeds (an interval needs two), one thread, the tiny random-init student.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT, assert_one_error_line, make_repo, run, tiny_params

pytestmark = pytest.mark.slow  # end to end: `pytest -m "not slow"` skips it

STRATEGIES = ["none", "single_tfidf_lr", "single_human", "average"]
HUMAN = [f"human_{k}" for k in range(5)]
SOURCES = {"MTKD_SOURCES_DIR": str(ROOT / ".cache" / "sources")}


@pytest.fixture(scope="module")
def vader5_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("vader5_e2e") / "repo"
    raw = tiny_params(teachers=("tfidf_lr",), strategies=STRATEGIES, max_examples=600, num_threads=1)
    raw["data"]["tasks"] = ["vader5"]
    raw["teachers"]["tfidf_lr"]["oof_folds"] = None  # in-sample train logits: fewer fits
    raw["teachers"]["tfidf_strong"] = {**raw["teachers"]["tfidf_lr"], "C": 10.0}  # a second, more confident one
    raw["teachers"]["human"] = {"kind": "human"}
    raw["distill"]["fused_teachers"] = ["tfidf_lr", "tfidf_strong"]
    make_repo(repo, raw)
    proc = run("dvc repro", repo, MTKD_NUM_THREADS="1", **SOURCES)
    return repo, proc.stdout + proc.stderr


def test_every_stage_ran_and_the_split_carries_the_raters(vader5_repo):
    repo, log = vader5_repo
    ran = set(re.findall(r"Running stage '([^']+)'", log))
    assert ran == {"prepare", "configure", "analyze", *(f"{s}@{t}-vader5" for s in ("train_teachers", "extract_logits")
                                                        for t in ("tfidf_lr", "tfidf_strong", "human")),
                   *(f"distill@{s}" for s in STRATEGIES)}
    meta = json.loads((repo / "data/prepared/vader5/meta.json").read_text())
    assert meta["num_classes"] == 5 and meta["group_by"] == "document" and meta["rater_data"]["columns"] == HUMAN
    assert sum(s["n"] for s in meta["splits"].values()) == 600
    info = json.loads((repo / "models/teachers/human-vader5/mtkd_teacher.json").read_text())
    assert info["kind"] == "human" and info["floor"] == 1e-3 and sorted(p.name for p in
                                                                        (repo / "models/teachers/human-vader5").iterdir()) \
        == ["mtkd_teacher.json"]


def test_human_logits_are_the_log_of_the_prepared_shares(vader5_repo):
    repo, _ = vader5_repo
    with np.load(repo / "logits/human-vader5.npz", allow_pickle=False) as npz:
        for split in ("train", "validation", "test"):
            prepared = pd.read_parquet(repo / f"data/prepared/vader5/{split}.parquet")
            assert npz[f"{split}/ids"].tolist() == prepared["id"].tolist()
            shares = prepared[HUMAN].to_numpy()
            np.testing.assert_allclose(npz[f"{split}/logits"], np.log(np.maximum(shares, 1e-3)), rtol=1e-6)


def test_summary_scores_every_model_against_the_raters(vader5_repo):
    repo, _ = vader5_repo
    h = json.loads((repo / "metrics/summary.json").read_text())["vader5"]["human"]
    test = pd.read_parquet(repo / "data/prepared/vader5/test.parquet")
    shares = test[HUMAN].to_numpy()
    assert h["n_test"] == len(test) and set(h["teachers"]) == {"tfidf_lr", "tfidf_strong", "human"}
    assert list(h["strategies"]) == STRATEGIES
    # the human teacher: q = max(h, 1e-3) / Z with Z = 1 + 1e-3 · (classes no rater chose), so KL(h ‖ q) = log Z
    zeros = (shares == 0).sum(axis=1)
    assert h["teachers"]["human"]["kl_human"] == pytest.approx(np.log1p(1e-3 * zeros).mean(), abs=2e-6)
    assert h["teachers"]["human"]["rater_agreement"] == pytest.approx(shares.max(axis=1).mean(), abs=1e-6)
    assert h["reference"] == ["single_human"]
    c = h["comparison"]
    assert (c["multi"], c["single"], c["n_seeds"]) == ("average", "single_tfidf_lr", 2)
    assert c["ci95_low"] <= c["diff"] <= c["ci95_high"] and c["verdict"] in ("multi closer", "single closer",
                                                                             "no detectable difference")
    for s, v in h["strategies"].items():
        assert v["kl_human"]["ci95_low"] <= v["kl_human"]["point"] <= v["kl_human"]["ci95_high"], s
        assert 0 <= v["rater_agreement"]["point"] <= shares.max(axis=1).mean() + 1e-9, s
    assert h["note"] is None  # the fusion reads the two TF-IDF teachers only


def test_the_fusion_reads_the_fused_teachers_and_the_human_student_is_the_reference(vader5_repo):
    repo, _ = vader5_repo
    fidelity = json.loads((repo / "metrics/distill/average.json").read_text())["vader5"]["fidelity"]
    assert list(fidelity) == ["tfidf_lr", "tfidf_strong", "fused"]  # no human logits loaded
    assert yaml.safe_load((repo / "configs/distill/average.yaml").read_text())["teachers"] == ["tfidf_lr", "tfidf_strong"]
    s = json.loads((repo / "metrics/summary.json").read_text())["vader5"]
    assert s["strategies"]["single_human"]["kind"] == "reference" and s["best_single"]["strategy"] == "single_tfidf_lr"
    assert s["best_teacher"]["name"] in ("tfidf_lr", "tfidf_strong")  # chosen without the raters themselves
    pairs = json.loads((repo / "metrics/comparisons.json").read_text())["vader5"]["pairs"]
    assert "single_human_vs_none" in pairs and not any(k.endswith("_vs_single_human") for k in pairs)


def test_report_draws_the_human_figure_and_declares_no_new_outputs(vader5_repo):
    repo, _ = vader5_repo
    html = (repo / "reports/report.html").read_text(encoding="utf-8")
    assert '<figure class="mtkd-figure" data-figure="fig-vader5-human">' in html
    assert re.search(r"vader5: against the raters' distribution on test \(\d+ examples", html)
    default = yaml.safe_load((ROOT / "dvc.yaml").read_text())
    here = yaml.safe_load((repo / "dvc.yaml").read_text())
    assert here["stages"]["analyze"]["metrics"] == default["stages"]["analyze"]["metrics"]
    assert here["plots"] == default["plots"]


def test_human_teacher_on_a_task_without_rater_data_stops_in_one_line(vader5_repo):
    repo, _ = vader5_repo
    params = repo / "params.yaml"
    original, dvc_yaml = params.read_text(), (repo / "dvc.yaml").read_bytes()
    raw = yaml.safe_load(original)
    raw["data"]["tasks"] = ["rt"]
    params.write_text(yaml.safe_dump(raw, sort_keys=False))
    try:
        for cmd in (["mtkd.pipeline"], ["stages.prepare"], ["stages.train_teacher", "--teacher", "human", "--task", "rt"]):
            proc = run(["python", "-m", *cmd], repo, check=False, **SOURCES)
            assert_one_error_line(proc, "teachers.human.kind: a 'human' teacher needs rater data; task 'rt' has none")
        assert (repo / "dvc.yaml").read_bytes() == dvc_yaml and not (repo / "data/prepared/rt").exists()
    finally:
        params.write_text(original)


def test_agreement_and_failures_read_the_model_teachers_only(vader5_repo):
    """The raters' own distribution is a reference: counted as a teacher, it is right almost everywhere, and
    'every teacher wrong' would all but vanish. Regions and failure categories come from the model teachers."""
    repo, _ = vader5_repo
    labels = pd.read_parquet(repo / "data/prepared/vader5/test.parquet")["label"].to_numpy()
    preds = []
    for t in ("tfidf_lr", "tfidf_strong"):
        with np.load(repo / f"logits/{t}-vader5.npz", allow_pickle=False) as npz:
            preds.append(npz["test/logits"].argmax(axis=1))
    preds = np.stack(preds)
    agreement = json.loads((repo / "metrics/agreement.json").read_text())["vader5"]
    assert set(agreement["teacher_accuracy"]) == {"tfidf_lr", "tfidf_strong"}
    assert agreement["count"]["all_agree"] == int((preds[0] == preds[1]).sum())
    base = json.loads((repo / "metrics/failures.json").read_text())["vader5"]["base_share"]
    assert base["all_teachers_wrong"] == pytest.approx(float((preds != labels).all(axis=0).mean()), abs=1e-6)
    assert base["all_teachers_right"] == pytest.approx(float((preds == labels).all(axis=0).mean()), abs=1e-6)
