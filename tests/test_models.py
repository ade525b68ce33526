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


def _tiny_student(seed=0):
    from mtkd.params import validate_params

    raw = {"seeds": [0], "data": {"tasks": ["rt"]}, "teachers": {"t": {"kind": "sklearn"}},
           "student": {"random_init": {"model_type": "distilbert", "num_hidden_layers": 1, "hidden_size": 16,
                                       "num_attention_heads": 2, "intermediate_size": 32},
                       "max_seq_length": 16, "num_train_epochs": 2, "per_device_train_batch_size": 4,
                       "learning_rate": 1e-2, "evaluations_per_epoch": 1},
           "distill": {"strategies": ["none"]}}
    from mtkd.models import build_classifier

    cfg = validate_params(raw).student
    model, tok = build_classifier(cfg, 2, seed)
    return cfg, model, tok


def test_compact_vocabulary_trains_like_the_full_matrix_and_exports_a_full_checkpoint():
    from mtkd.models import CompactVocabulary, special_ids
    from mtkd.training import encode, predict, train

    texts = ["a gripping, funny film", "dull and slow", "a masterpiece", "tedious", "warm and witty", "a mess",
             "great fun", "boring plot"]
    frame = pd.DataFrame({"id": [f"i{i}" for i in range(8)], "text_a": texts, "text_b": None, "label": [1, 0, 1, 0, 1, 0, 1, 0]})
    test = pd.DataFrame({"id": ["t0", "t1"], "text_a": ["funny and warm", "slow mess"], "text_b": None, "label": [1, 0]})
    cfg, full_model, tok = _tiny_student()
    init = {k: v.clone() for k, v in full_model.state_dict().items()}
    enc = {"train": encode(tok, frame, 16), "validation": encode(tok, frame, 16), "test": encode(tok, test, 16)}
    kw = dict(seed=0, num_classes=2, primary_metric="accuracy", bf16=False, bucketing=True)
    train(full_model, enc["train"], enc["validation"], cfg, pad_id=tok.pad_token_id, **kw)

    _, model, _ = _tiny_student()
    model.load_state_dict(init)
    vocab = CompactVocabulary(model, enc, special_ids(tok))
    assert model.get_input_embeddings().num_embeddings == len(vocab.rows) < 100  # not 30,522
    result = train(model, vocab.encoded["train"], vocab.encoded["validation"], cfg, pad_id=vocab.pad_id(tok.pad_token_id), **kw)
    compact_test = predict(model, vocab.encoded["test"], vocab.pad_id(tok.pad_token_id), bf16=False)
    vocab.restore(result.weight_decay_factor)
    emb = model.get_input_embeddings().weight.detach()
    assert emb.shape[0] == tok.vocab_size
    # The exported (full-vocabulary) model predicts the task's texts as the compact one did ...
    np.testing.assert_allclose(predict(model, enc["test"], tok.pad_token_id, bf16=False), compact_test, atol=1e-6)
    # ... and as full-vocabulary training did (same math; clipping sums the gradient norm in another order).
    np.testing.assert_allclose(predict(full_model, enc["test"], tok.pad_token_id, bf16=False), compact_test, atol=1e-4)
    unused = np.setdiff1d(np.arange(tok.vocab_size), vocab.rows)
    full_emb = full_model.get_input_embeddings().weight.detach()
    # Rows no text uses: weight decay alone, as full-vocabulary AdamW did to them.
    torch.testing.assert_close(emb[unused[:500]], full_emb[unused[:500]], rtol=1e-6, atol=1e-7)
    assert not torch.equal(emb[unused[:500]], init["distilbert.embeddings.word_embeddings.weight"][unused[:500]])


def _scripted_validation(monkeypatch, scores):
    """train()'s validation scores, one per evaluation, in order (the model itself still trains)."""
    import mtkd.training as training

    queue = list(scores)
    monkeypatch.setattr(training, "classification_metrics", lambda logits, labels, c: {"accuracy": queue.pop(0)})
    return queue


def _train_tiny(cfg, **update):
    from mtkd.training import encode, train

    frame = pd.DataFrame({"id": [f"i{i}" for i in range(8)], "text_a": ["good fun", "dull", "great", "bad"] * 2,
                          "text_b": None, "label": [1, 0, 1, 0] * 2})
    _, model, tok = _tiny_student()
    enc = encode(tok, frame, 16)
    return train(model, enc, enc, cfg.model_copy(update=update), seed=0, pad_id=tok.pad_token_id, num_classes=2,
                 primary_metric="accuracy", bf16=False, bucketing=True)


def test_early_stopping_stops_after_patience_evaluations_without_a_gain_over_the_threshold(monkeypatch):
    cfg, _, _ = _tiny_student()
    # threshold 0.01, patience 2: 0.5 and 0.6 are gains; 0.6 and 0.605 are not (not above 0.61),
    # so training stops after the 4th evaluation, keeping 0.605's weights (the best score so far).
    left = _scripted_validation(monkeypatch, [0.5, 0.6, 0.6, 0.605, 0.9, 0.9])
    result = _train_tiny(cfg, num_train_epochs=6, early_stopping_patience=2, early_stopping_threshold=0.01)
    assert [row["epoch"] for row in result.history] == [1, 2, 3, 4]
    assert result.stopped_early and result.best_epoch == 4 and result.validation == {"accuracy": 0.605}
    assert left == [0.9, 0.9]


def test_without_patience_every_epoch_trains(monkeypatch):
    cfg, _, _ = _tiny_student()
    _scripted_validation(monkeypatch, [0.5, 0.5, 0.5, 0.5])
    result = _train_tiny(cfg, num_train_epochs=4)
    assert len(result.history) == 4 and not result.stopped_early and result.best_epoch == 1


def test_the_last_evaluation_is_never_an_early_stop(monkeypatch):
    cfg, _, _ = _tiny_student()
    _scripted_validation(monkeypatch, [0.5, 0.4])
    result = _train_tiny(cfg, num_train_epochs=2, early_stopping_patience=1)
    assert len(result.history) == 2 and not result.stopped_early
