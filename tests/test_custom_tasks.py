"""Custom tasks (issue #15.1): any labelled text dataset declared in params as ``data.custom.<name>``.

Files are made in temporary directories; the hub path loads a local directory with `datasets`
(offline). The end-to-end `dvc repro` is in tests/test_custom_e2e.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests.helpers import assert_one_error_line, profile, run_stage, write_table
from mtkd.data import get_task, load_split, prepare_task, report_splits
from mtkd.errors import MtkdError
from mtkd.params import Data, validate_params

TOPICS = ["sport", "art", "science", "music", "food"]
WORDS = "the a of and to in on at very quite new old big small good bad".split()


def topic_frame(n: int = 150, seed: int = 0, authors: int = 25) -> pd.DataFrame:
    """``n`` rows: sid, sentence (with a word of its topic), topic (5 classes), author."""
    rng = np.random.default_rng(seed)
    topic = np.asarray(TOPICS)[np.arange(n) % len(TOPICS)]
    text = [" ".join([*rng.choice(WORDS, 4), t, f"{t}ish"]) for t in topic]
    return pd.DataFrame({"sid": [f"s{i:03d}" for i in range(n)], "sentence": text, "topic": topic,
                         "author": [f"author{i}" for i in rng.integers(0, authors, n)]})



SPEC = {"text_column": "sentence", "label_column": "topic", "id_column": "sid"}


def data(spec: dict, name: str = "topics", **kw) -> Data:
    return Data(tasks=[name], custom={name: spec}, **kw)


def prepare(tmp_path: Path, spec: dict, name: str = "topics", **kw):
    d = data(spec, name, **kw)
    out = tmp_path / "prepared"
    meta = prepare_task(d, name, out / name)
    return meta, {s: load_split(out, name, s) for s in ("train", "validation", "test")}


# --------------------------------------------------------------------------------------------
# Loading


def test_csv_with_five_classes_groups_and_ids(tmp_path):
    frame = topic_frame()
    spec = {"train_file": write_table(frame, tmp_path / "topics.csv"), **SPEC, "group_column": "author"}
    meta, splits = prepare(tmp_path, spec)
    assert meta["num_classes"] == 5 and meta["label_names"] == sorted(TOPICS)  # the sorted distinct values
    assert meta["primary_metric"] == "accuracy" and meta["pair"] is False and meta["group_by"] == "author"
    every = pd.concat(splits.values())
    assert sorted(every["id"]) == sorted(frame["sid"])  # ids are the file's
    by_id = frame.set_index("sid")
    for _, row in every.iterrows():
        assert row["text_a"] == by_id.loc[row["id"], "sentence"] and row["text_b"] is None
        assert meta["label_names"][row["label"]] == by_id.loc[row["id"], "topic"]
        assert row["group"] == by_id.loc[row["id"], "author"]
    groups = {s: set(f["group"]) for s, f in splits.items()}  # cut by author: none spans two splits
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    assert not (groups["validation"] & groups["test"])
    assert get_task("topics", data(spec)).group_by == "author" and report_splits("topics", data(spec)) == ("test",)


def test_cut_by_example_seeded_by_split_seed(tmp_path):
    spec = {"train_file": write_table(topic_frame(200), tmp_path / "t.jsonl"), **SPEC}
    _, a = prepare(tmp_path / "a", spec, validation_fraction=0.2, test_fraction=0.1)
    _, b = prepare(tmp_path / "b", spec, validation_fraction=0.2, test_fraction=0.1)
    _, c = prepare(tmp_path / "c", spec, validation_fraction=0.2, test_fraction=0.1, split_seed=7)
    assert a["test"]["id"].tolist() == b["test"]["id"].tolist()  # same seed, same cut
    assert set(a["test"]["id"]) != set(c["test"]["id"])
    assert len(a["validation"]) == 40 and len(a["test"]) == 20  # by example: exact shares
    assert (a["train"]["group"] == a["train"]["id"]).all()  # no group column: each example its own group


def test_given_splits_are_kept_whole_pairs_and_label_names_over_class_ids(tmp_path):
    names = ["negative", "neutral", "positive"]

    def pairs(n, seed):
        rng = np.random.default_rng(seed)
        return pd.DataFrame({"premise": [" ".join(rng.choice(WORDS, 5)) for _ in range(n)],
                             "hypothesis": [" ".join(rng.choice(WORDS, 4)) for _ in range(n)],
                             "label": np.arange(n) % 3})

    spec = {"train_file": write_table(pairs(60, 0), tmp_path / "train.tsv"),
            "validation_file": write_table(pairs(15, 1), tmp_path / "dev.parquet"),
            "test_file": write_table(pairs(12, 2), tmp_path / "test.jsonl"),
            "text_column": "premise", "text_pair_column": "hypothesis", "label_names": names, "primary_metric": "mcc"}
    meta, splits = prepare(tmp_path, spec, name="nli3")
    assert meta["label_names"] == names and meta["num_classes"] == 3 and meta["pair"] is True
    assert meta["primary_metric"] == "mcc"
    assert {s: len(f) for s, f in splits.items()} == {"train": 60, "validation": 15, "test": 12}
    assert splits["test"]["id"].tolist() == [f"nli3-test-{i}" for i in range(12)]  # ids from the file row
    assert splits["test"]["label"].tolist() == (np.arange(12) % 3).tolist()  # class ids 0..2, named by label_names
    assert splits["validation"]["text_b"].notna().all()


def test_pairs_tokenise_as_pairs(tmp_path):
    from mtkd.models import load_tokenizer
    from mtkd.params import HFTeacher
    from mtkd.training import encode

    frame = pd.DataFrame({"a": ["good film", "bad plot", "fine", "dull"] * 5, "b": ["yes", "no", "maybe", "so"] * 5,
                          "y": ["x", "y"] * 10})
    spec = {"train_file": write_table(frame, tmp_path / "p.csv"), "text_column": "a", "text_pair_column": "b", "label_column": "y"}
    _, splits = prepare(tmp_path, spec, name="pairs", validation_fraction=0.2, test_fraction=0.2)
    tok = load_tokenizer(HFTeacher(kind="hf", random_init={}))
    enc = encode(tok, splits["train"], 32)
    assert all((ids == tok.sep_token_id).sum() == 2 for ids in enc.input_ids)  # [CLS] a [SEP] b [SEP]
    assert all((types == 1).any() for types in enc.token_type_ids)


def test_label_names_name_the_values(tmp_path):
    frame = topic_frame(50)
    spec = {"train_file": write_table(frame, tmp_path / "t.parquet"), **SPEC, "label_names": TOPICS}
    meta, splits = prepare(tmp_path, spec, validation_fraction=0.2, test_fraction=0.2)
    assert meta["label_names"] == TOPICS  # the given order, not sorted
    got = pd.concat(splits.values()).set_index("id")["label"]
    assert all(TOPICS[got[sid]] == t for sid, t in zip(frame["sid"], frame["topic"]))


def test_numeric_labels_sort_as_numbers(tmp_path):
    frame = pd.DataFrame({"text": [f"w{i} x" for i in range(40)], "label": [2, 10, 1, 3] * 10})
    spec = {"train_file": write_table(frame, tmp_path / "n.jsonl")}
    meta, _ = prepare(tmp_path, spec, name="nums", validation_fraction=0.2, test_fraction=0.2)
    assert meta["label_names"] == ["1", "2", "3", "10"]


def test_hub_dataset_loads_offline_with_a_split_map(tmp_path, monkeypatch):
    """dataset_name: a `datasets` id; here a local directory (offline), its ClassLabel names as label names."""
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["no", "yes"])})
    root = tmp_path / "hub_like"
    root.mkdir()
    for split, n in (("train", 40), ("dev", 10)):
        rows = {"text": [f"word{i} {'yes' if i % 2 else 'no'}" for i in range(n)], "label": [i % 2 for i in range(n)]}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / f"{split}.parquet"))
    spec = {"dataset_name": "parquet", "dataset_splits": {"train": "train", "test": "dev"}}
    files = {"train": str(root / "train.parquet"), "dev": str(root / "dev.parquet")}
    real = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: real(name, config, data_files=files))
    meta, splits = prepare(tmp_path, spec, name="hubtask", validation_fraction=0.2)
    assert meta["label_names"] == ["no", "yes"] and len(meta["source_sha256"]) == 64
    assert len(splits["test"]) == 10 and splits["test"]["id"].iloc[0] == "hubtask-dev-0"
    assert len(splits["validation"]) == 8 and len(splits["train"]) == 32


def test_hub_dataset_not_in_the_cache_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_hf_home"))
    with pytest.raises(MtkdError) as err:
        prepare(tmp_path, {"dataset_name": "someone/not-cached", "dataset_config_name": "x"}, name="hubtask")
    text = str(err.value)
    assert "\n" not in text and text.startswith("data.custom.hubtask.dataset_name: cannot load someone/not-cached (x)")
    assert "HF_DATASETS_OFFLINE=0" in text


# --------------------------------------------------------------------------------------------
# Bad input: one line naming the key or file; nothing written


@pytest.mark.parametrize("mutate, spec_change, needles", [
    (None, {"train_file": "nowhere/topics.csv"}, ["data.custom.topics.train_file: nowhere/topics.csv does not exist"]),
    (lambda f: f.drop(columns="topic"), {}, ["data.custom.topics.label_column: no column 'topic' in",
                                             "topics.csv", "has: sid, sentence, author"]),
    (lambda f: f.drop(columns="sentence"), {}, ["data.custom.topics.text_column: no column 'sentence'"]),
    (None, {"text_pair_column": "second"}, ["data.custom.topics.text_pair_column: no column 'second'"]),
    (lambda f: f.assign(topic="sport"), {}, ["data.custom.topics.label_column: 'topic' has a single value 'sport'",
                                             "at least 2 classes"]),
    (None, {"label_names": ["sport", "art", "science"]}, ["data.custom.topics.label_names:",
                                                          "do not cover label 'music'"]),
    (lambda f: f.assign(sentence=f["sentence"].where(f.index != 7, "   ")), {},
     ["data.custom.topics.text_column: empty or missing text ('sentence')", "row 7 (0-based; 1 such rows)"]),
    (lambda f: f.assign(sentence=f["sentence"].where(f.index != 3, None)), {},
     ["data.custom.topics.text_column: empty or missing text", "row 3"]),
    (lambda f: f.assign(topic=f["topic"].where(f.index != 5, None)), {}, ["data.custom.topics.label_column: missing label"]),
    (lambda f: f.assign(sid=f["sid"].where(f.index != 9, "s001")), {},
     ["data.custom.topics.id_column: id 's001' occurs 2 times", "1 ids are not unique"]),
    (None, {"primary_metric": "f1"}, ["data.custom.topics.primary_metric: 'f1' is the positive class's F1",
                                      "this task has 5 classes"]),
    (None, {"group_column": "writer"}, ["data.custom.topics.group_column: no column 'writer'"]),
])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_bad_files_are_one_line_and_write_nothing(tmp_path, mutate, spec_change, needles, suffix):
    frame = topic_frame(60)
    path = write_table(mutate(frame) if mutate else frame, tmp_path / f"topics{suffix}")
    spec = {"train_file": path, **SPEC, **spec_change}
    if "train_file" in spec_change:
        spec["train_file"] = spec_change["train_file"].replace(".csv", suffix)
    with pytest.raises(MtkdError) as err:
        prepare(tmp_path, spec)
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle.replace(".csv", suffix) in text, (needle, text)
    assert not (tmp_path / "prepared").exists()


def test_duplicate_ids_across_files(tmp_path):
    frame = topic_frame(60)
    spec = {"train_file": write_table(frame, tmp_path / "train.csv"), "test_file": write_table(frame.iloc[:10], tmp_path / "test.csv"),
            **SPEC}
    with pytest.raises(MtkdError, match=r"data\.custom\.topics\.id_column: id 's000' occurs 2 times \(in "
                                        r"data\.custom\.topics\.test_file .*; data\.custom\.topics\.train_file"):
        prepare(tmp_path, spec)


def test_a_group_in_two_given_files_is_refused(tmp_path):
    frame = topic_frame(60, authors=5)
    spec = {"train_file": write_table(frame.iloc[:40], tmp_path / "train.csv"), "test_file": write_table(frame.iloc[40:], tmp_path / "test.csv"),
            **SPEC, "group_column": "author"}
    with pytest.raises(MtkdError, match=r"^data\.custom\.topics\.group_column: author 'author\d' is in "
                                        r"data\.custom\.topics\.test_file .* and data\.custom\.topics\.train_file .*;"
                                        r" a group stays in one split"):
        prepare(tmp_path, spec)


def base_params(custom: dict, tasks=("topics",)) -> dict:
    raw = profile("tiny")
    raw["data"] = {"tasks": list(tasks), "custom": custom}
    raw["teachers"] = {"tfidf_lr": {"kind": "sklearn"}}
    raw["distill"]["strategies"] = ["none", "single_tfidf_lr"]
    return raw


@pytest.mark.parametrize("custom, tasks, needles", [
    ({"rt": {"train_file": "a.csv"}}, ["rt"], ["data.custom.rt: 'rt' is a built-in task; give the custom task another name"]),
    ({"topics": {"train_file": "topics.xlsx"}}, ["topics"],
     ["data.custom.topics.train_file: 'topics.xlsx' has unknown extension '.xlsx' (use .csv, .tsv, .jsonl, .parquet)"]),
    ({"topics": {"train_file": "a.csv", "test_file": "b.txt"}}, ["topics"], ["data.custom.topics.test_file: 'b.txt'"]),
    ({"topics": {"text_column": "t"}}, ["topics"], ["data.custom.topics: give exactly one of train_file"]),
    ({"topics": {"train_file": "a.csv", "dataset_name": "x/y"}}, ["topics"], ["give exactly one of"]),
    ({"topics": {"dataset_name": "x/y", "test_file": "t.csv"}}, ["topics"], ["data.custom.topics.test_file: goes with train_file"]),
    ({"topics": {"dataset_name": "x/y", "dataset_splits": {"dev": "validation"}}}, ["topics"],
     ["data.custom.topics.dataset_splits: unknown split 'dev'"]),
    ({"topics": {"dataset_name": "x/y", "dataset_splits": {"test": "test"}}}, ["topics"],
     ["data.custom.topics.dataset_splits: needs 'train'"]),
    ({"topics": {"train_file": "a.csv", "label_names": ["a", "b", "c"], "primary_metric": "f1"}}, ["topics"],
     ["data.custom.topics.primary_metric: 'f1' is the positive class's F1 of a binary task; this task has 3 classes"]),
    ({"topics": {"train_file": "a.csv", "label_names": ["only"]}}, ["topics"], ["data.custom.topics.label_names: a task needs at least 2"]),
    ({"topics": {"train_file": "a.csv", "label_names": ["a", "a"]}}, ["topics"], ["data.custom.topics.label_names: names must be distinct"]),
    ({"topics": {"train_file": "a.csv", "text_colum": "x"}}, ["topics"],
     ["data.custom.topics.text_colum: unknown key", "did you mean 'text_column'?"]),
    ({"my-task": {"train_file": "a.csv"}}, ["my-task"], ["data.custom.my-task: a task name is a letter"]),
    ({"topics": {"train_file": "a.csv"}}, ["topic"], ["data.tasks: unknown task 'topic' (did you mean 'topics'?)",
                                                      "or declare it under data.custom"]),
])
def test_bad_params_are_one_line(custom, tasks, needles):
    with pytest.raises(MtkdError) as err:
        validate_params(base_params(custom, tasks))
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert needle in text, (needle, text)


def test_f1_is_fine_for_two_classes(tmp_path):
    frame = topic_frame(40)
    frame = frame[frame["topic"].isin(["sport", "art"])]
    meta, _ = prepare(tmp_path, {"train_file": write_table(frame, tmp_path / "two.csv"), **SPEC, "primary_metric": "f1"},
                      validation_fraction=0.25, test_fraction=0.25)
    assert meta["primary_metric"] == "f1" and meta["label_names"] == ["art", "sport"]


def test_prepare_stage_refuses_a_bad_file_and_keeps_the_previous_output(tmp_path):
    """`stages.prepare`: exit 2, one `error:` line naming key and file; the prepared data of the last good run stay."""
    frame = topic_frame(60)
    write_table(frame, tmp_path / "data" / "topics.csv")
    raw = base_params({"topics": {"train_file": "data/topics.csv", **SPEC}})
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    first = run_stage(tmp_path, "stages.prepare")
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.read_bytes() for p in (tmp_path / "data" / "prepared").rglob("*") if p.is_file()}
    assert json.loads((tmp_path / "data/prepared/topics/meta.json").read_text())["num_classes"] == 5
    write_table(frame.assign(topic="sport"), tmp_path / "data" / "topics.csv")  # one class only
    proc = run_stage(tmp_path, "stages.prepare")
    assert_one_error_line(proc, "data.custom.topics.label_column: 'topic' has a single value 'sport'")
    assert {p: p.read_bytes() for p in (tmp_path / "data" / "prepared").rglob("*") if p.is_file()} == before


def test_pipeline_makes_the_files_deps_of_prepare():
    from mtkd.pipeline import render

    raw = base_params({"topics": {"train_file": "data/topics.csv", "test_file": "data/topics_test.jsonl", **SPEC},
                       "unused": {"train_file": "data/unused.csv"}})
    deps = yaml.safe_load(render(validate_params(raw)))["stages"]["prepare"]["deps"]
    assert "data/topics.csv" in deps and "data/topics_test.jsonl" in deps
    assert "data/unused.csv" not in deps  # declared but not in data.tasks: not run, not a dependency
