import pandas as pd
import pytest

from mtkd.data import fingerprint, load_split, prepare_task, split_by_group
from mtkd.errors import MtkdError
from mtkd.params import Data


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    out = tmp_path_factory.mktemp("prep") / "rt"
    meta = prepare_task(Data(tasks=["rt"]), "rt", out)
    return meta, {s: load_split(out.parent, "rt", s) for s in ("train", "validation", "test")}


def test_rt_matches_the_spec_counts(rt):
    meta, splits = rt
    allx = pd.concat(splits.values())
    assert len(allx) == 12752  # 13,905 rows minus 1,097 plot rows and duplicate texts (SPEC §3)
    assert (allx["label"] == 1).sum() == 7368 and (allx["label"] == 0).sum() == 5384
    assert allx["id"].is_unique and allx["text_a"].is_unique
    assert meta["num_classes"] == 2 and meta["primary_metric"] == "accuracy"
    assert len(meta["source_sha256"]) == 64


def test_rt_split_is_80_10_10_by_movie(rt):
    _, splits = rt
    n = sum(len(f) for f in splits.values())
    assert len(splits["train"]) / n == pytest.approx(0.8, abs=0.02)
    assert len(splits["validation"]) / n == pytest.approx(0.1, abs=0.02)
    assert len(splits["test"]) / n == pytest.approx(0.1, abs=0.02)


def test_rt_keeps_each_snippets_movie_as_its_group(rt):
    meta, splits = rt
    assert meta["group_by"] == "movie"
    groups = {s: set(f["group"]) for s, f in splits.items()}
    assert not (groups["train"] & groups["test"]) and not (groups["validation"] & groups["test"])
    assert not (groups["train"] & groups["validation"])
    assert meta["splits"]["test"]["groups"] == len(groups["test"]) == 43  # 1,273 test snippets from 43 movies
    assert sum(len(g) for g in groups.values()) == 507  # SPEC §3: 507 movies


def test_no_movie_spans_two_splits():
    groups = pd.Series(["a", "a", "b", "c", "c", "c", "d", "e"] * 3)
    split = split_by_group(groups, groups.value_counts(), seed=0, validation=0.2, test=0.2)
    assert (pd.DataFrame({"g": groups, "s": split}).groupby("g")["s"].nunique() == 1).all()


def test_prepare_is_deterministic(tmp_path, rt):
    meta, _ = rt
    again = prepare_task(Data(tasks=["rt"]), "rt", tmp_path / "rt")
    assert again["splits"] == meta["splits"]


def test_fingerprint_is_order_sensitive():
    f = pd.DataFrame({"id": ["a", "b"], "label": [0, 1]})
    assert fingerprint(f) != fingerprint(f.iloc[::-1])


def test_tiny_max_examples_and_empty_split_error(tmp_path):
    meta = prepare_task(Data(tasks=["rt"], max_examples=300), "rt", tmp_path / "rt")
    assert sum(s["n"] for s in meta["splits"].values()) == 300
    with pytest.raises(MtkdError, match="split 'test' is empty"):
        prepare_task(Data(tasks=["rt"], max_examples=30, test_fraction=0.01), "rt", tmp_path / "rt2")
    assert not (tmp_path / "rt2").exists()


def test_every_registered_task_is_declared_alike():
    from mtkd.data import PRIMARY_METRICS, TASKS, get_task

    assert {"rt", "tweets", "amazon", "nyt", "sst2", "mnli", "qqp", "mrpc"} <= set(TASKS)
    for name, task in TASKS.items():
        assert task.name == name and get_task(name) is task
        assert task.num_classes >= 2 and len(task.label_names) == task.num_classes, name
        assert task.primary_metric in PRIMARY_METRICS and callable(task.load), name
        assert all(s.startswith("test_") for s in task.extra_test_splits), name
    with pytest.raises(MtkdError, match=r"unknown task 'imdb' \(known: amazon, cola"):
        get_task("imdb")


def test_task_decorator_registers_where_the_loader_is_defined():
    from mtkd.data import TASKS, task

    @task(name="_probe", num_classes=3, label_names=("a", "b", "c"))
    def load_probe(params_data, t):
        return {}

    try:
        assert TASKS["_probe"].load is load_probe and TASKS["_probe"].primary_metric == "accuracy"
        with pytest.raises(ValueError, match="registered twice"):
            task(name="_probe", num_classes=2)(load_probe)
    finally:
        del TASKS["_probe"]
