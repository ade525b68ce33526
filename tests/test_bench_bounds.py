"""bench/: the matmul-only bound of a student step, and the model edits of the bound rows (issue #14)."""

import pytest
import torch
from transformers import DistilBertConfig, DistilBertForSequenceClassification

from bench.mfu import block_linear_shapes, block_matmul_flops, matmul_only_rate, shape, train_flops
from bench.report import markdown, targets
from bench.throughput import COMPACT, _bf16_weights, _compiled, _drop_masks


def _distilbert(layers=2, dim=16, hidden=40):
    cfg = DistilBertConfig(vocab_size=50, n_layers=layers, dim=dim, hidden_dim=hidden, n_heads=2, max_position_embeddings=32,
                           num_labels=2, dropout=0.1, attention_dropout=0.1, seq_classif_dropout=0.2)
    torch.manual_seed(0)
    return DistilBertForSequenceClassification(cfg)


def test_block_shapes_are_each_layers_projections_and_ffn_without_the_head():
    shapes = block_linear_shapes(_distilbert())
    assert shapes == [(16, 16)] * 4 + [(16, 40), (40, 16)] + [(16, 16)] * 4 + [(16, 40), (40, 16)]


def test_block_matmul_flops_by_hand_and_against_the_mfu_formula():
    assert block_matmul_flops([(2, 3)], 5) == 180  # 3 products × 2·5·2·3
    assert block_matmul_flops([(2, 3), (4, 1)], 1) == 6 * (6 + 4)
    assert block_matmul_flops([(2, 3)], 5, backward=False) == 60  # inference: the forward product only
    model = _distilbert()
    sh = shape(model)
    tokens = 100
    linear = block_matmul_flops(block_linear_shapes(model), tokens)
    # The formula's 6·N_layers·S also counts biases and LayerNorm parameters: a little more, never less.
    per_token_formula = train_flops(sh, tokens, 0, 0)
    assert linear < per_token_formula
    assert linear / per_token_formula > 0.9


def test_matmul_only_rate_reports_a_consistent_step():
    # Shapes big enough for a step of about a millisecond: the row's rounding is then far below 1%.
    shapes = [(256, 512), (512, 256)]
    row = matmul_only_rate(shapes, tokens=256, examples=8, seconds=0.05, repeats=2)
    assert row["tokens_per_step"] == 256 and row["examples_per_step"] == 8
    assert row["step_ms"] > 0
    assert row["examples_per_s"] == pytest.approx(8 / (row["step_ms"] / 1e3), rel=0.01)
    flops = block_matmul_flops(shapes, 256)
    assert row["tflops"] == pytest.approx(flops / (row["step_ms"] / 1e3) / 1e12, rel=0.01)


def test_matmul_only_rate_for_inference_counts_one_product():
    full = matmul_only_rate([(512, 512)], tokens=512, examples=8, seconds=0.05, repeats=2)
    forward = matmul_only_rate([(512, 512)], tokens=512, examples=8, seconds=0.05, repeats=2, backward=False)
    flops = block_matmul_flops([(512, 512)], 512, backward=False)
    assert forward["tflops"] == pytest.approx(flops / (forward["step_ms"] / 1e3) / 1e12, rel=0.01)
    assert forward["step_ms"] < full["step_ms"]  # one product instead of three


def test_drop_masks_zeroes_dropout_outside_attention_and_undoes():
    model = _distilbert()
    before = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    undo = _drop_masks(model)
    now = {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    assert all(p == before[n] for n, p in now.items() if "attention" in n)
    assert any("attention" in n for n in now) and any("attention" not in n for n in now)
    assert all(p == 0.0 for n, p in now.items() if "attention" not in n)
    undo()
    assert {n: m.p for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout)} == before


def test_bf16_weights_cast_and_undo_keep_the_parameter_objects():
    model = _distilbert()
    params = list(model.parameters())
    undo = _bf16_weights(model)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    undo()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(a is b for a, b in zip(params, model.parameters()))  # an optimizer built on them still sees them


def test_compiled_undo_returns_to_eager():
    model = _distilbert()
    undo = _compiled(model)
    assert model._compiled_call_impl is not None
    undo()
    assert model._compiled_call_impl is None
    ids = torch.tensor([[1, 2, 3]])
    model.eval()
    assert model(input_ids=ids).logits.shape == (1, 2)


def _results(bound_ratio: float) -> dict:
    ref = {"name": "reference", "examples_per_s": 60.0, "mfu_vs_fp32": 0.2, "mean_padded_width": 64, "mean_real_tokens": 27}
    row = {"examples_per_s": 180.0, "ratio_vs_reference": 3.0, "mfu_vs_bf16": 0.36, "mean_padded_width": 28,
           "gflop_per_example": 0.85}
    bound = {"tokens_per_step": 850, "examples_per_step": 32, "step_ms": 80.0, "examples_per_s": 60.0 * bound_ratio,
             "tflops": 0.35, "ratio_vs_reference": bound_ratio, "ours": 180.0, "ours_share_of_bound": 3.0 / bound_ratio}
    return {"machine": {"device": "cpu", "cpu_count": 2, "torch": "x", "torch_threads": 2}, "command": "c", "mode": "quick",
            "started": "t", "sections": {"student": {
                "reference": ref, "matmul_only_bound": {COMPACT: bound},
                "ours": {"ours: bucketing + bf16 autocast": row, COMPACT: row,
                         "proposal: x": {"name": "proposal: x", "error": "RuntimeError: no compiler"}}}}}


@pytest.mark.parametrize("bound_ratio, out_of_reach", [(4.5, True), (7.0, False)])
def test_student_target_names_the_matmul_only_bound(bound_ratio, out_of_reach):
    r = _results(bound_ratio)
    (student,) = [t for t in targets(r) if t["target"].startswith("student distillation")]
    assert f"a step doing only its linear-layer matmuls: {bound_ratio:.1f}x" in student["note"]
    assert ("(the goal is out of reach at this batch size)" in student["note"]) is out_of_reach


def test_extraction_target_names_its_matmul_only_bound():
    r = _results(7.0)
    r["sections"]["extraction"] = {
        "ours": {"examples_per_s": 400.0, "ratio_vs_reference": 5.0, "mfu_vs_bf16": 0.6, "tokenise_s": 0.2},
        "reference": {"examples_per_s": 80.0, "mfu_vs_fp32": 0.4, "tokenise_s": 0.5},
        "agreement": {"max_abs_logit_diff": 0.04, "argmax_agreement": 0.9998},
        "matmul_only_bound": {"tokens_per_step": 3500, "examples_per_step": 128, "step_ms": 160.0, "examples_per_s": 800.0,
                              "tflops": 0.38, "ratio_vs_reference": 9.0}}
    (row,) = [t for t in targets(r) if t["target"].startswith("logit extraction")]
    assert "batches doing only their linear-layer matmuls: 9.0x (out of reach)" in row["note"]
    assert "a batch of 128 that did only its linear-layer forward products (3500 real tokens) takes 160.0 ms" in markdown(
        {**r, "targets": []})


def test_markdown_prints_the_bound_and_a_failed_proposal_as_rows():
    text = markdown({**_results(7.0), "targets": []})
    assert "takes 80.0 ms: 420.0 ex/s = **7.00×** the reference" in text
    assert "ours reaches 43% of it" in text
    assert "| proposal: x | failed: RuntimeError: no compiler | | | |" in text


def test_both_edits_at_once_and_their_undo():
    from bench.throughput import _both

    model = _distilbert()
    undo = _both(model)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert all(m.p == 0.0 for n, m in model.named_modules() if isinstance(m, torch.nn.Dropout) and "attention" not in n)
    undo()
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert model.dropout.p == 0.2 and model.distilbert.embeddings.dropout.p == 0.1
