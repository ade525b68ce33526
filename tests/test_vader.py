"""VADER's human-rated sentiment sets (tweets, amazon, nyt) from the vaderSentiment==3.3.2 sdist.

Loaders run on the real archive (`make setup` downloads it into .cache/sources/); the
counts below are what README's "Other offline tasks" reports.
"""

from __future__ import annotations

import re
import shutil
import sys

import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT, make_repo, profile, run
from mtkd.assets import VADER_SDIST, source_archive, vader_ratings_files
from mtkd.data import TASKS, VADER, _stable_id, _unescape, _vader_rows, load_split, load_vader, prepare_task
from mtkd.errors import MtkdError
from mtkd.params import Data, Params

# task → (examples kept, positive, negative) with the default split params (seed 13, 80/10/10).
EXPECTED = {"tweets": (3689, 2546, 1143), "amazon": (3116, 1829, 1287), "nyt": (3539, 1461, 2078)}


@pytest.fixture(scope="module")
def loaded():
    return {name: load_vader(Data(tasks=[name]), TASKS[name]) for name in VADER}


def _all(splits: dict) -> pd.DataFrame:
    return pd.concat([splits[s] for s in ("train", "validation", "test")])


def test_pin_agrees_with_requirements_file():
    text = (ROOT / "requirements" / "sources.txt").read_text()
    name, sha = VADER_SDIST
    assert re.search(rf"^vaderSentiment==3\.3\.2 --hash=sha256:{sha}$", text, re.M)
    assert name == "vaderSentiment-3.3.2.tar.gz"
    assert source_archive(*VADER_SDIST).name == name  # present and matching (make setup)


def test_tasks_are_registered_binary_sentiment():
    for name in VADER:
        task = TASKS[name]
        assert (task.num_classes, task.primary_metric, task.label_names, task.pair) == \
            (2, "accuracy", ("negative", "positive"), False)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_counts_and_label_balance(loaded, name):
    frame = _all(loaded[name])
    total, pos, neg = EXPECTED[name]
    assert len(frame) == total
    assert (frame["label"] == 1).sum() == pos and (frame["label"] == 0).sum() == neg
    assert frame["id"].is_unique and frame["text_a"].is_unique
    assert frame["text_b"].isna().all() and (frame["text_a"].str.strip() != "").all()
    assert not frame["text_a"].str.contains("&amp;").any()  # HTML entities decoded (NYT has "&amp;amp;")
    assert len(loaded[name]["_source_sha256"]) == 64
    for split in ("validation", "test"):
        assert len(loaded[name][split]) / total == pytest.approx(0.1, abs=0.015)
        assert 0 < loaded[name][split]["label"].mean() < 1


@pytest.mark.parametrize("name", sorted(VADER))
def test_no_id_or_text_in_two_splits(loaded, name):
    seen_ids, seen_texts = set(), set()
    for split in ("train", "validation", "test"):
        ids, texts = set(loaded[name][split]["id"]), set(loaded[name][split]["text_a"])
        assert not ids & seen_ids and not texts & seen_texts
        seen_ids |= ids
        seen_texts |= texts


def _documents(name: str) -> dict[str, str]:
    """Text → source document (the part of the file's id before ``_``), from the raw file."""
    stem = VADER[name]
    _, files = vader_ratings_files(f"{stem}_GroundTruth.txt")
    docs: dict[str, set] = {}
    for sid, _mean, text in _vader_rows(files[f"{stem}_GroundTruth.txt"], "test", 3):
        docs.setdefault(_unescape(text), set()).add(sid.partition("_")[0])
    # a text found in several documents (amazon: "!") is kept once, in the first
    return {t: min(d, key=int) for t, d in docs.items()}


@pytest.mark.parametrize("name, n_docs", [("amazon", 299), ("nyt", 498)])
def test_documents_never_span_two_splits(loaded, name, n_docs):
    docs = _documents(name)
    rows = [(docs[t], split) for split in ("train", "validation", "test") for t in loaded[name][split]["text_a"]]
    by_doc = pd.DataFrame(rows, columns=["doc", "split"]).groupby("doc")["split"].nunique()
    assert len(by_doc) == n_docs
    assert (by_doc == 1).all(), by_doc[by_doc > 1].head()


def test_labels_follow_the_sign_of_the_mean_rating(loaded):
    stem = VADER["nyt"]
    _, files = vader_ratings_files(f"{stem}_GroundTruth.txt")
    rows = _vader_rows(files[f"{stem}_GroundTruth.txt"], "t", 3)
    means: dict[str, list[float]] = {}
    for _sid, m, t in rows:
        means.setdefault(_unescape(t), []).append(float(m))
    frame = _all(loaded["nyt"])
    for text, label in zip(frame["text_a"], frame["label"]):
        # some copy of the text is rated clearly (|mean| >= 0.25) with the label's sign; near-neutral ones are dropped
        assert any(abs(m) >= 0.25 and (m > 0) == (label == 1) for m in means[text])
    assert len(rows) == 5190 and len(frame) < 5190 - 1500  # NYT is the most neutral set


def test_ids_are_stable_content_hashes(loaded):
    again = load_vader(Data(tasks=["tweets"]), TASKS["tweets"])
    for split in ("train", "validation", "test"):
        pd.testing.assert_frame_equal(again[split], loaded["tweets"][split])
    frame = _all(loaded["tweets"])
    assert (frame["id"] == [_stable_id("tweets", t) for t in frame["text_a"]]).all()
    # another split seed moves examples between splits, never changes their ids
    other = load_vader(Data(tasks=["tweets"], split_seed=7), TASKS["tweets"])
    assert set(_all(other)["id"]) == set(frame["id"])
    assert set(other["test"]["id"]) != set(loaded["tweets"]["test"]["id"])


def test_max_examples_and_fractions_are_respected():
    out = load_vader(Data(tasks=["amazon"], max_examples=600, validation_fraction=0.2, test_fraction=0.2),
                     TASKS["amazon"])
    n = sum(len(out[s]) for s in ("train", "validation", "test"))
    assert n == 600
    assert len(out["test"]) / n == pytest.approx(0.2, abs=0.05)
    assert len(out["validation"]) / n == pytest.approx(0.2, abs=0.05)


def test_missing_archive_is_one_line_naming_file_and_command(tmp_path, monkeypatch):
    monkeypatch.setenv("MTKD_SOURCES_DIR", str(tmp_path))
    with pytest.raises(MtkdError) as err:
        load_vader(Data(tasks=["tweets"]), TASKS["tweets"])
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / VADER_SDIST[0]) in msg and "missing" in msg and "make setup" in msg


def test_tampered_archive_is_refused(tmp_path, monkeypatch):
    copy = tmp_path / VADER_SDIST[0]
    shutil.copy(source_archive(*VADER_SDIST), copy)
    with copy.open("ab") as fh:
        fh.write(b"\0")
    monkeypatch.setenv("MTKD_SOURCES_DIR", str(tmp_path))
    with pytest.raises(MtkdError) as err:
        load_vader(Data(tasks=["nyt"]), TASKS["nyt"])
    msg = str(err.value)
    assert "\n" not in msg and str(copy) in msg and "sha256" in msg and "make setup" in msg


def test_dvc_temp_workspace_uses_the_enclosing_repository_sources(tmp_path):
    """`dvc exp run --temp/--queue` runs in <repo>/.dvc/tmp/exps/…, which has no .cache/."""
    repo = tmp_path / "repo"
    (repo / ".cache" / "sources").mkdir(parents=True)
    workspace = repo / ".dvc" / "tmp" / "exps" / "run" / "abc"
    shutil.copytree(ROOT / "mtkd", workspace / "mtkd", ignore=shutil.ignore_patterns("__pycache__"))
    code = "from mtkd.assets import sources_dir; print(sources_dir())"
    proc = run([sys.executable, "-c", code], workspace, MTKD_SOURCES_DIR="")
    assert proc.stdout.strip() == str(repo / ".cache" / "sources")
    # here, as in a checkout, the repository's own directory
    proc = run([sys.executable, "-c", code], ROOT, MTKD_SOURCES_DIR="")
    assert proc.stdout.strip() == str(ROOT / ".cache" / "sources")


def test_sentiment_profile_is_the_default_with_four_tasks():
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    sentiment = profile("sentiment")
    assert sentiment["data"]["tasks"] == ["rt", "tweets", "amazon", "nyt"]
    sentiment["data"]["tasks"] = default["data"]["tasks"]
    assert sentiment == default
    Params.model_validate(profile("sentiment"))


def test_prepare_writes_parquet_splits(tmp_path):
    meta = prepare_task(Data(tasks=["nyt"]), "nyt", tmp_path / "nyt")
    assert meta["label_names"] == ["negative", "positive"] and meta["num_classes"] == 2
    assert sum(s["n"] for s in meta["splits"].values()) == EXPECTED["nyt"][0]
    for split in ("train", "validation", "test"):
        assert len(load_split(tmp_path, "nyt", split)) == meta["splits"][split]["n"]


def test_prepare_stage_in_a_temp_copy(tmp_path):
    params = profile("tiny")
    params["data"]["tasks"] = ["tweets", "amazon"]
    params["data"]["max_examples"] = 400
    repo = make_repo(tmp_path / "repo", params)
    sources = str(ROOT / ".cache" / "sources")
    proc = run([sys.executable, "-m", "stages.prepare"], repo, MTKD_SOURCES_DIR=sources)
    assert "prepared tweets" in proc.stdout and "prepared amazon" in proc.stdout
    for task in ("tweets", "amazon"):
        frames = [pd.read_parquet(repo / "data" / "prepared" / task / f"{s}.parquet") for s in ("train", "validation", "test")]
        assert sum(map(len, frames)) == 400
        assert all(list(f.columns) == ["id", "text_a", "text_b", "label", "group"] for f in frames)
    # the copy has no .cache/sources: without the variable, one line naming the file and the fix
    failed = run([sys.executable, "-m", "stages.prepare"], repo, check=False, MTKD_SOURCES_DIR="")
    assert failed.returncode == 2
    line = failed.stderr.strip().splitlines()[-1]
    assert line.startswith("error: source archive ") and VADER_SDIST[0] in line and "make setup" in line
