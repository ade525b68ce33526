"""VADER's human-rated sentiment sets (tweets, amazon, nyt, and vader5: all three, five classes, with
each sentence's raters' distribution) from the vaderSentiment==3.3.2 sdist.

Loaders run on the real archive (`make setup` downloads it into .cache/sources/); the
counts below are what README's "Other offline tasks" reports.
"""

from __future__ import annotations

import json
import re
import shutil
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import ROOT, make_repo, profile, run
from mtkd.assets import VADER_SDIST, source_archive, vader_ratings_files
from mtkd.data import (FINE_EDGES, FINE_LABELS, N_RATERS, SOURCE, TASKS, VADER, _stable_id, _unescape, _vader_rows,
                       fine_class, human_columns, human_shares, load_split, load_vader, prepare_task, rater_shares)
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


def pinned_to_its_kept_run(raw: dict) -> dict:
    """``raw`` with the setting a kept profile pins (1-epoch students, one T = 6) put back to the default's."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert raw["student"]["num_train_epochs"] == 1 and "early_stopping_patience" not in raw["student"]
    assert raw["distill"]["T"] == 6.0
    raw["student"]["num_train_epochs"] = default["student"]["num_train_epochs"]
    raw["student"]["early_stopping_patience"] = default["student"]["early_stopping_patience"]
    raw["distill"]["T"] = default["distill"]["T"]
    return raw


def test_sentiment_profile_is_the_default_with_four_tasks():
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    sentiment = pinned_to_its_kept_run(profile("sentiment"))
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


# --------------------------------------------------------------------------------------------
# vader5: the three sets together, five classes (SST-5's scheme), each sentence's raters' distribution

# A rater's own integer rating → class, written out (SST-5's edges −2.4 / −0.8 / +0.8 / +2.4 on −4…+4).
BY_HAND = {-4: 0, -3: 0, -2: 1, -1: 1, 0: 2, 1: 3, 2: 3, 3: 4, 4: 4}
# class → examples, and set → examples, of vader5 (13,098 rated; 11 texts whose copies fall in two
# classes dropped (22 rows), 72 duplicate copies dropped)
VADER5_CLASSES = {0: 344, 1: 2942, 2: 5423, 3: 3492, 4: 803}
VADER5_SETS = {"tweets": 4200, "amazon": 3697, "nyt": 5107}


@pytest.fixture(scope="module")
def vader5():
    return TASKS["vader5"].load(Data(tasks=["vader5"]), TASKS["vader5"])


def test_fine_classes_follow_sst5_edges_intervals_lo_hi():
    assert FINE_EDGES == (-2.4, -0.8, 0.8, 2.4) and len(FINE_LABELS) == 5
    assert fine_class([-4, -2.4, -2.39, -0.8, -0.79, 0, 0.8, 0.81, 2.4, 2.41, 4]).tolist() == \
        [0, 0, 1, 1, 2, 2, 2, 3, 3, 4, 4]
    assert fine_class(list(BY_HAND)).tolist() == list(BY_HAND.values())


def test_rater_shares_by_hand():
    shares = rater_shares([[-4, 0, 0, 3], [1, 2], [-1, -2, -3]])
    np.testing.assert_allclose(shares, [[0.25, 0, 0.5, 0, 0.25], [0, 0, 0, 1, 0], [1 / 3, 2 / 3, 0, 0, 0]])


def test_vader5_is_registered_with_rater_data():
    task = TASKS["vader5"]
    assert (task.num_classes, task.primary_metric, task.label_names, task.group_by, task.rater_data) == \
        (5, "accuracy", ("very_negative", "negative", "neutral", "positive", "very_positive"), "document", True)
    assert not any(TASKS[name].rater_data for name in ("rt", *VADER))


def test_vader5_counts_classes_and_sets(vader5):
    frame = _all(vader5)
    assert len(frame) == 13004 >= 10000
    assert frame["label"].value_counts().sort_index().to_dict() == VADER5_CLASSES
    assert frame[SOURCE].value_counts().to_dict() == VADER5_SETS
    assert list(frame.columns) == ["id", "text_a", "text_b", "label", "group", SOURCE, N_RATERS, *human_columns(5)]
    assert frame["id"].is_unique and frame["text_a"].is_unique and not frame["text_a"].str.contains("&amp;").any()
    assert (frame["id"] == [_stable_id("vader5", t) for t in frame["text_a"]]).all()
    assert {len(vader5[s]) for s in ("train", "validation", "test")} == {10404, 1302, 1298}
    for split in ("train", "validation", "test"):  # every class in every split
        assert set(vader5[split]["label"]) == set(range(5))


def test_vader5_groups_are_namespaced_documents_never_split(vader5):
    frame = _all(vader5)
    prefix = frame["group"].str.partition(":")[0]
    assert (prefix == frame[SOURCE]).all()
    tweets = frame[frame[SOURCE] == "tweets"]
    assert tweets["group"].is_unique  # a tweet stands alone
    by_group = pd.concat([vader5[s].assign(split=s) for s in ("train", "validation", "test")]).groupby("group")["split"]
    assert (by_group.nunique() == 1).all()
    assert frame.loc[frame[SOURCE] == "amazon", "group"].nunique() == 300  # binary amazon: 299 (one review all neutral)
    assert frame.loc[frame[SOURCE] == "nyt", "group"].nunique() == 498


def test_vader5_shares_and_labels_come_from_each_raters_rating(vader5):
    """Shares and label recomputed from the raw file with the class map written out by hand."""
    frame = _all(vader5).set_index("text_a")
    for name in ("amazon", "tweets"):
        stem = VADER[name]
        _, files = vader_ratings_files(f"{stem}_GroundTruth.txt", f"{stem}_anonDataRatings.txt")
        texts = {sid: _unescape(t) for sid, _m, t in _vader_rows(files[f"{stem}_GroundTruth.txt"], "t", 3)}
        for sid, _mean, _sd, raw in _vader_rows(files[f"{stem}_anonDataRatings.txt"], "t", 4)[:300]:
            if texts[sid] not in frame.index:  # a duplicate copy
                continue
            ratings = json.loads(raw)
            row = frame.loc[texts[sid]]
            counts = [sum(BY_HAND[r] == k for r in ratings) for k in range(5)]
            np.testing.assert_allclose(row[human_columns(5)].to_numpy(dtype=float), np.array(counts) / len(ratings))
            assert row[N_RATERS] == len(ratings)
            m = sum(ratings) / len(ratings)
            assert row["label"] == (0 if m <= -2.4 else 1 if m <= -0.8 else 2 if m <= 0.8 else 3 if m <= 2.4 else 4)


def test_vader5_label_is_the_mean_of_the_ratings_not_groundtruths_mean(vader5):
    """Tweet 9: GroundTruth's mean −1.77 (negative), its 95 ratings (9 × −4, 38 × −3, 40 × −2, 8 × −1) average
    −238/95 = −2.505: very negative, with 47/95 of the raters in very negative and 48/95 in negative."""
    row = _all(vader5).set_index("text_a").loc["Ugh. I hate hate hate getting blood drawn."]
    assert row["label"] == 0 and row[N_RATERS] == 95 and row["group"] == "tweets:9"
    np.testing.assert_allclose(row[human_columns(5)].to_numpy(dtype=float), [47 / 95, 48 / 95, 0, 0, 0])


def test_vader5_prepared_meta_and_load_split(tmp_path):
    meta = prepare_task(Data(tasks=["vader5"]), "vader5", tmp_path / "vader5")
    assert meta["rater_data"] == {"columns": human_columns(5), "n_raters": "n_raters", "source": "source"}
    assert meta["splits"]["train"]["label_counts"] == {"0": 270, "1": 2369, "2": 4322, "3": 2791, "4": 652}
    assert sum(meta["splits"][s]["sources"]["tweets"] for s in meta["splits"]) == 4200
    test = load_split(tmp_path, "vader5", "test")
    assert len(test) == 1298 and human_shares(test, 5, "t").shape == (1298, 5)
    test.assign(extra=1).to_parquet(tmp_path / "vader5" / "test.parquet", index=False)  # an unknown column
    with pytest.raises(MtkdError, match="expected non-empty columns"):
        load_split(tmp_path, "vader5", "test")


def test_human_shares_refuse_a_split_without_rater_data_or_a_bad_row():
    frame = pd.DataFrame({"id": ["a", "b"], "human_0": [0.5, 0.7], "human_1": [0.5, 0.2]})
    with pytest.raises(MtkdError) as err:
        human_shares(frame[["id"]], 2, "data/prepared/rt/test.parquet")
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("data/prepared/rt/test.parquet: no rater data (no column human_0") \
        and "vader5" in msg
    with pytest.raises(MtkdError, match=r"x: the rater shares of id 'b' are \[0\.7, 0\.2\], not a distribution \(1 such rows\)"):
        human_shares(frame, 2, "x")


# A fake hutto_ICWSM_2014 archive: the six files vader5 reads, as bytes (vader_ratings_files patched).

def _fake_sets(rows: dict[str, list[tuple[str, list]]]) -> dict[str, bytes]:
    """set name → [(sid, ratings)] to the bytes of its GroundTruth and anonDataRatings files."""
    files = {}
    for name, entries in rows.items():
        stem = VADER[name]
        truth = "".join(f"{sid}\t{sum(r) / len(r):.6f}\t{name} sentence {sid}\n" for sid, r in entries)
        ratings = "".join(f"{sid}\t0\t0\t{json.dumps(r)}\n" for sid, r in entries)
        files[f"{stem}_GroundTruth.txt"], files[f"{stem}_anonDataRatings.txt"] = truth.encode(), ratings.encode()
    return files


def _balanced(n_docs: int = 40) -> dict[str, list[tuple[str, list]]]:
    """Every class in every set: document d's sentences have ratings centred on class d % 5."""
    centres = [-3, -2, 0, 2, 3]
    return {"tweets": [(str(d), [centres[d % 5]] * 19 + [0]) for d in range(n_docs)],
            "amazon": [(f"{d}_{s}", [centres[(d + s) % 5]] * 20) for d in range(n_docs) for s in range(2)],
            "nyt": [(f"{d}_{s}", [centres[(d + s) % 5], centres[(d + s) % 5] + 1]) for d in range(n_docs) for s in range(2)]}


def _patch_archive(monkeypatch, tmp_path, files: dict[str, bytes]) -> None:
    import mtkd.assets

    def fake(*names):
        return tmp_path / "fake.tar.gz", {n: files[n] for n in names}

    (tmp_path / "fake.tar.gz").write_bytes(b"fake")
    monkeypatch.setattr(mtkd.assets, "vader_ratings_files", fake)


def test_fake_archive_gives_the_hand_computed_shares(tmp_path, monkeypatch):
    _patch_archive(monkeypatch, tmp_path, _fake_sets(_balanced()))
    meta = prepare_task(Data(tasks=["vader5"]), "vader5", tmp_path / "out")
    assert sum(s["n"] for s in meta["splits"].values()) == 40 + 80 + 80
    splits = {s: pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "validation", "test")}
    rows = pd.concat(splits.values()).set_index("text_a")
    # tweet 3: 19 ratings of +2 and one 0 → 19/20 positive, 1/20 neutral, mean 1.9 → positive
    np.testing.assert_allclose(rows.loc["tweets sentence 3", human_columns(5)].to_numpy(dtype=float), [0, 0, 0.05, 0.95, 0])
    assert rows.loc["tweets sentence 3", "label"] == 3
    # nyt 0_0: ratings −3 and −2 → one rater very negative, one negative; mean −2.5 → very negative
    np.testing.assert_allclose(rows.loc["nyt sentence 0_0", human_columns(5)].to_numpy(dtype=float), [0.5, 0.5, 0, 0, 0])
    assert rows.loc["nyt sentence 0_0", "label"] == 0 and rows.loc["nyt sentence 0_0", "group"] == "nyt:0"


@pytest.mark.parametrize("case, message", [
    ("one_rating", "tweets_anonDataRatings.txt: id 7 has fewer than 2 ratings"),
    ("out_of_range", "amazonReviewSnippets_anonDataRatings.txt: id 3_1: rating 5 outside -4…+4"),
    ("no_class", "task vader5: class 4 (very_positive) has no training examples"),
], ids=["fewer-than-2-ratings", "rating-outside-scale", "class-without-train-examples"])
def test_bad_rater_data_is_one_line_and_overwrites_nothing(tmp_path, monkeypatch, case, message):
    sets = _balanced()
    if case == "one_rating":
        sets["tweets"][7] = ("7", [2])
    elif case == "out_of_range":
        sets["amazon"][7] = ("3_1", [5] + [3] * 19)
    else:  # nothing rated above +2.4: no very positive sentence anywhere
        sets = {name: [(sid, [min(r, 2) for r in ratings]) for sid, ratings in entries] for name, entries in sets.items()}
    _patch_archive(monkeypatch, tmp_path, _fake_sets(sets))
    out = tmp_path / "prepared" / "vader5"
    out.mkdir(parents=True)
    (out / "meta.json").write_text("previous")
    with pytest.raises(MtkdError) as err:
        prepare_task(Data(tasks=["vader5"]), "vader5", out)
    msg = str(err.value)
    assert "\n" not in msg and message in msg, msg
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"] and (out / "meta.json").read_text() == "previous"
    if case != "no_class":  # the shared reader refuses it for the binary tasks too
        name = "tweets" if case == "one_rating" else "amazon"
        with pytest.raises(MtkdError, match=re.escape(message)):
            load_vader(Data(tasks=[name]), TASKS[name])


def test_vader5_profile_is_the_default_with_the_human_teacher():
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = pinned_to_its_kept_run(profile("vader5"))
    assert raw["data"]["tasks"] == ["vader5"]
    assert raw["teachers"]["human"] == {"kind": "human"}
    assert list(raw["teachers"]) == [*default["teachers"], "human"]
    assert raw["distill"]["strategies"] == [*default["distill"]["strategies"][:4], "single_human",
                                            *default["distill"]["strategies"][4:]]
    assert raw["distill"]["fused_teachers"] == list(default["teachers"])  # the fusions leave the reference out
    raw["data"]["tasks"], raw["distill"]["strategies"] = default["data"]["tasks"], default["distill"]["strategies"]
    raw["distill"]["fused_teachers"] = default["distill"]["fused_teachers"]
    del raw["teachers"]["human"]
    assert raw == default
    Params.model_validate(profile("vader5"))
