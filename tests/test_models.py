import json

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from mtkd.assets import minilm_l6_dir
from mtkd.errors import MtkdError
from mtkd.metrics import classification_metrics, expected_calibration_error
from mtkd.models import distilbert_from_bert
from mtkd.params import Runtime, SklearnTeacher
from mtkd.teachers import TEACHER_KINDS


def test_distilbert_from_all_bert_layers_reproduces_bert():
    """Folding token type 0 into the word embeddings makes the renamed weights exact."""
    path = str(minilm_l6_dir())
    tok = AutoTokenizer.from_pretrained(path)
    batch = tok(["a gripping, funny film", "dull"], padding=True, return_tensors="pt")
    bert = AutoModel.from_pretrained(path).eval()
    student = distilbert_from_bert(path, list(range(6)), num_labels=2).eval()
    with torch.no_grad():
        want = bert(**batch).last_hidden_state
        got = student.distilbert(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    mask = batch["attention_mask"].bool()
    assert torch.allclose(got[mask], want[mask], atol=1e-4)


def test_default_student_takes_layers_0_2_4():
    path = str(minilm_l6_dir())
    student = distilbert_from_bert(path, [0, 2, 4], num_labels=2)
    bert = AutoModel.from_pretrained(path)
    assert student.config.n_layers == 3
    for i, layer in enumerate([0, 2, 4]):
        assert torch.equal(student.distilbert.transformer.layer[i].ffn.lin1.weight,
                           bert.encoder.layer[layer].intermediate.dense.weight)
    with pytest.raises(MtkdError, match="out of range"):
        distilbert_from_bert(path, [0, 6], num_labels=2)


def test_sklearn_teacher_round_trip_without_pickle(tmp_path):
    frame = pd.DataFrame({"id": [f"i{i}" for i in range(8)], "text_a": ["good fun", "great film", "awful", "bad plot",
                          "good acting", "terrible", "great", "bad"], "text_b": None, "label": [1, 1, 0, 0, 1, 0, 1, 0]})
    kind = TEACHER_KINDS["sklearn"]
    cfg = SklearnTeacher(kind="sklearn", min_df=1)
    task = {"task": "rt", "num_classes": 2}
    kind.train("tfidf_lr", cfg, task, {"train": frame, "validation": frame}, tmp_path / "m", Runtime())
    files = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert files == ["model.safetensors", "mtkd_teacher.json", "vocabulary.json"]
    logits = kind.predict(tmp_path / "m", {"train": frame}, Runtime(), num_classes=2)["train"]
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, max_features=50000)
    x = vec.fit_transform(frame["text_a"])
    ref = LogisticRegression(C=4.0, max_iter=1000).fit(x, frame["label"])
    s = ref.decision_function(x)
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], s, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits.sum(1), 0, atol=1e-6)
    with pytest.raises(MtkdError, match="checkpoint has 2 labels, the task has 3"):
        kind.predict(tmp_path / "m", {"train": frame}, Runtime(), num_classes=3)


def test_classification_metrics_hand_values():
    z = np.array([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0], [0.0, 1.0]])
    y = np.array([0, 1, 1, 1])  # predictions 0,1,0,1: one false negative
    m = classification_metrics(z, y, 2)
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(0.8)  # P=1, R=2/3
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2, abs=1e-6)
    assert m["mcc"] == pytest.approx(1 / np.sqrt(3), abs=1e-6)


def test_ece_hand_value():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = np.array([0, 1, 0, 1])
    # bins: 0.9 → acc 0.5 vs conf 0.9 (2/4), 0.6 → 1 vs 0.6 (1/4), 0.7 → 1 vs 0.7 (1/4)
    assert expected_calibration_error(probs, y) == pytest.approx(0.5 * 0.4 + 0.25 * 0.4 + 0.25 * 0.3)
