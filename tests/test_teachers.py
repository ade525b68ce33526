"""Every registered teacher kind, checked alike: params model, logits by id, a round trip without pickle, bad checkpoints.

Adding a kind to :mod:`mtkd.teachers` means adding its smallest working params to ``EXAMPLES``.
"""

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from mtkd.errors import MtkdError
from mtkd.params import Runtime, validate_params
from mtkd.teachers import CHECKPOINT_INFO, TEACHER_KINDS, get_teacher_kind
from tests.checkpoints import copy_ckpt, one_line, predict, truncate

EXAMPLES = {
    "hf": {"kind": "hf", "random_init": {"model_type": "bert", "num_hidden_layers": 1, "hidden_size": 16,
                                          "num_attention_heads": 2, "intermediate_size": 32},
           "max_seq_length": 16, "num_train_epochs": 1, "per_device_train_batch_size": 8, "learning_rate": 1e-3},
    "sklearn": {"kind": "sklearn", "min_df": 1},
    "precomputed": {"kind": "precomputed", "path": "scores.jsonl"},  # the fixture writes the file (tests/test_precomputed.py)
    "human": {"kind": "human"},  # reads the frames' human_* columns (the raters' distribution)
}
TEXTS = ["good fun", "great film", "awful", "bad plot", "good acting", "terrible", "great", "bad", "fine work", "dreadful"]
TASK = {"task": "rt", "num_classes": 2, "primary_metric": "accuracy"}
PICKLED = (".bin", ".pkl", ".pickle", ".pt", ".pth", ".joblib")


def frame(rows=range(len(TEXTS))) -> pd.DataFrame:
    """Examples with labels and, as a task with rater data has, their raters' distribution (human_0, human_1)."""
    rows = list(rows)
    labels = [int(TEXTS[i].startswith(("good", "great", "fine"))) for i in rows]
    return pd.DataFrame({"id": [f"i{i}" for i in rows], "text_a": [TEXTS[i] for i in rows], "text_b": None,
                         "label": labels, "human_0": [0.2 if y else 1.0 for y in labels],
                         "human_1": [0.8 if y else 0.0 for y in labels]})


def test_every_kind_has_an_example_and_owns_its_params_model():
    assert set(EXAMPLES) == set(TEACHER_KINDS)
    for name, kind in TEACHER_KINDS.items():
        assert kind.name == name and get_teacher_kind(name) is kind
        cfg = type(kind).Params.model_validate(EXAMPLES[name])
        assert cfg.kind == name
    with pytest.raises(MtkdError, match=r"unknown teacher kind 'hff' \(known: hf, human, precomputed, sklearn"):
        get_teacher_kind("hff")


def test_params_build_the_teacher_union_from_the_registry():
    raw = {"seeds": [0], "data": {"tasks": ["vader5"]}, "teachers": {f"t_{k}": v for k, v in EXAMPLES.items()},
           "student": {"random_init": {"model_type": "distilbert"}}, "distill": {"strategies": ["none"]}}
    params = validate_params(raw)
    assert {t: type(c) for t, c in params.teachers.items()} == {f"t_{k}": type(v).Params for k, v in TEACHER_KINDS.items()}


@pytest.fixture(scope="module", params=sorted(TEACHER_KINDS))
def trained(request, tmp_path_factory):
    name = request.param
    kind = TEACHER_KINDS[name]
    example = dict(EXAMPLES[name])
    if name == "precomputed":  # scores from elsewhere: a file of logits per example id
        scores = tmp_path_factory.mktemp("scores") / "scores.jsonl"
        z = np.random.default_rng(0).normal(size=(len(TEXTS), 2))
        pd.DataFrame({"id": frame()["id"], "scores": z.tolist()}).to_json(scores, orient="records", lines=True)
        example["path"] = str(scores)
    cfg = type(kind).Params.model_validate(example)
    out = tmp_path_factory.mktemp(name) / "ckpt"
    result = kind.train(f"t_{name}", cfg, TASK, {"train": frame(), "validation": frame()}, out, Runtime(num_threads=1))
    return name, kind, out, result


def test_train_publishes_a_checkpoint_without_pickle(trained):
    name, kind, out, result = trained
    assert {"best_epoch", "history"} <= set(result)
    info = json.loads((out / "mtkd_teacher.json").read_text())
    assert info["kind"] == name and info["num_classes"] == 2
    assert not [p.name for p in out.rglob("*") if p.suffix in PICKLED]
    assert list(out.glob("*.safetensors")) or name in ("precomputed", "human")  # nothing trained: it records what it is
    assert not list(out.parent.glob(".*.tmp"))  # published by rename, no temporary left


def test_logits_by_id_in_row_order_and_reloads_identically(trained):
    name, kind, out, _ = trained
    full = kind.predict(out, {"test": frame()}, Runtime(), num_classes=2)["test"]
    assert full.shape == (len(TEXTS), 2) and full.dtype == np.float32 and np.isfinite(full).all()
    order = [3, 0, 9, 5]
    part = kind.predict(out, {"test": frame(order)}, Runtime(), num_classes=2)["test"]
    np.testing.assert_allclose(part, full[order], rtol=1e-5, atol=1e-5)  # rows follow the frame's ids
    again = kind.predict(out, {"test": frame()}, Runtime(), num_classes=2)["test"]
    np.testing.assert_array_equal(again, full)


def test_bad_checkpoints_are_one_line_errors(trained, tmp_path):
    name, kind, out, _ = trained
    with pytest.raises(MtkdError, match="checkpoint has 2 labels, the task has 3"):
        kind.predict(out, {"test": frame()}, Runtime(), num_classes=3)
    with pytest.raises(MtkdError, match="not a teacher checkpoint"):
        kind.predict(tmp_path / "missing", {"test": frame()}, Runtime(), num_classes=2)
    other = next(k for k in TEACHER_KINDS if k != name)
    moved = tmp_path / "other"
    shutil.copytree(out, moved)
    info = json.loads((moved / "mtkd_teacher.json").read_text())
    (moved / "mtkd_teacher.json").write_text(json.dumps({**info, "kind": other}))
    with pytest.raises(MtkdError, match=f"checkpoint kind '{other}' but params say '{name}'"):
        kind.predict(moved, {"test": frame()}, Runtime(), num_classes=2)
    with pytest.raises(MtkdError) as exc:
        kind.predict(moved, {"test": frame()}, Runtime(), num_classes=2)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------------------------
# Teacher checkpoints: truncated, pickled, wrong label count, tokenizer mismatch.


def test_hf_checkpoint_round_trip(work):
    out = predict(work, "hf", work["ckpt"]["hf"])
    assert out["test"].shape == (len(work["frames"]["test"]), 2) and np.isfinite(out["test"]).all()


@pytest.mark.parametrize("kind, message", [("hf", "corrupt or truncated safetensors"),
                                           ("sklearn", "cannot load the sklearn teacher's arrays")])
def test_truncated_checkpoint_names_the_file(work, tmp_path, kind, message):
    ckpt = copy_ckpt(work, kind, tmp_path)
    truncate(ckpt / "model.safetensors")
    with pytest.raises(MtkdError) as err:
        predict(work, kind, ckpt)
    one_line(err, str(ckpt / "model.safetensors"), message)


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
# The human teacher (kind: human): the raters' distribution as logits, where a task has rater data.


def _human_checkpoint(directory, **params):
    kind = get_teacher_kind("human")
    cfg = type(kind).Params.model_validate({"kind": "human", **params})
    out = directory / "human-ckpt"
    assert kind.train("t_human", cfg, TASK, {"train": frame(), "validation": frame()}, out, Runtime()) == \
        {"best_epoch": 1, "history": []}
    return kind, out


def test_human_logits_are_the_log_of_the_raters_shares_with_a_floor(tmp_path):
    from mtkd.metrics import softmax
    from mtkd.teachers import HUMAN_FLOOR, human_logits

    kind, out = _human_checkpoint(tmp_path)
    z = kind.predict(out, {"test": frame([0, 2])}, Runtime(), num_classes=2)["test"]  # "good fun" 0.2/0.8, "awful" 1/0
    assert HUMAN_FLOOR == 1e-3
    np.testing.assert_allclose(z, [[np.log(0.2), np.log(0.8)], [0.0, np.log(1e-3)]], rtol=1e-6)
    np.testing.assert_allclose(z[1], [0.0, -6.907755], rtol=1e-6)
    # softmax at T = 1 gives the raters' shares back, a class no rater chose at floor / (1 + floor)
    np.testing.assert_allclose(softmax(z), [[0.2, 0.8], [1 / 1.001, 0.001 / 1.001]], rtol=1e-6)
    np.testing.assert_allclose(human_logits(np.array([[0.0, 0.5, 0.5]]), floor=0.01), [np.log([0.01, 0.5, 0.5])],
                               rtol=1e-6)
    info = json.loads((out / CHECKPOINT_INFO).read_text())
    assert info["floor"] == 1e-3 and kind.provenance(out) == {"soft_labels": "raters' distribution", "floor": 1e-3}


def test_human_teacher_on_a_task_without_rater_data_is_refused_by_params():
    raw = {"seeds": [0], "data": {"tasks": ["vader5", "rt"]}, "teachers": {"raters": {"kind": "human"}},
           "student": {"random_init": {"model_type": "distilbert"}}, "distill": {"strategies": ["none", "single_raters"]}}
    with pytest.raises(MtkdError) as err:
        validate_params(raw)
    one_line(err, "teachers.raters.kind: a 'human' teacher needs rater data; task 'rt' has none"
                  " (tasks with rater data: vader5)")
    raw["data"]["tasks"] = ["vader5"]
    assert validate_params(raw).teachers["raters"].floor == 1e-3
    raw["teachers"]["raters"]["floor"] = 0.5
    with pytest.raises(MtkdError, match=r"teachers\.raters\.floor: Input should be less than 0\.1"):
        validate_params(raw)


def test_human_teacher_on_frames_without_rater_data_names_the_split(tmp_path):
    kind, out = _human_checkpoint(tmp_path)
    bare = frame().drop(columns=["human_0", "human_1"])
    with pytest.raises(MtkdError) as err:
        kind.predict(out, {"validation": bare}, Runtime(), num_classes=2)
    one_line(err, "teachers.t_human: split 'validation': no rater data (no column human_0")
    cfg = type(kind).Params.model_validate(EXAMPLES["human"])
    with pytest.raises(MtkdError) as err:
        kind.train("raters", cfg, TASK, {"train": bare, "validation": frame()}, tmp_path / "ckpt", Runtime())
    one_line(err, "teachers.raters: task rt split 'train': no rater data")
    assert not (tmp_path / "ckpt").exists()
    moved = tmp_path / "tampered"
    shutil.copytree(out, moved)
    info = json.loads((moved / CHECKPOINT_INFO).read_text())
    (moved / CHECKPOINT_INFO).write_text(json.dumps({**info, "floor": 0}))
    with pytest.raises(MtkdError, match=r"'floor' must be a number in \(0, 0\.1\), got 0"):
        kind.predict(moved, {"test": frame()}, Runtime(), num_classes=2)
