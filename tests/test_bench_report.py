"""bench/report.py: issue #14's targets, read off a results dict, and the ceiling each allows."""

import pytest

from bench.report import ceiling, markdown, targets
from bench.throughput import COMPACT


def _results(student_ours: dict, extraction_mfu: float) -> dict:
    ref = {"name": "reference", "examples_per_s": 60.0, "mfu_vs_fp32": 0.2, "mean_padded_width": 64, "mean_real_tokens": 27}
    full = {"examples_per_s": 240.0, "ratio_vs_reference": 4.0, "mfu_vs_bf16": 0.25, "mean_padded_width": 28,
            "gflop_per_example": 0.88}
    return {"machine": {"device": "cpu", "cpu_count": 2, "torch": "x", "torch_threads": 2}, "command": "c", "mode": "quick",
            "started": "t", "sections": {
                "student": {"reference": ref, "ours": {"ours: bucketing + bf16 autocast": full, **student_ours}},
                "extraction": {"ours": {"examples_per_s": 360.0, "ratio_vs_reference": 4.8, "mfu_vs_bf16": extraction_mfu,
                                        "tokenise_s": 0.3},
                               "reference": {"examples_per_s": 75.0, "mfu_vs_fp32": 0.29, "tokenise_s": 0.6},
                               "agreement": {"max_abs_logit_diff": 1e-3, "argmax_agreement": 0.997}}}}


def test_ceiling_is_the_ratio_at_the_full_peak():
    assert ceiling(4.0, 0.25) == pytest.approx(16.0)
    assert ceiling(4.8, 0.6) == pytest.approx(8.0)
    assert ceiling(3.0, None) is None and ceiling(3.0, 0.0) is None


def test_student_target_reads_the_compact_vocabulary_row_the_stages_train():
    compact = {"examples_per_s": 300.0, "ratio_vs_reference": 5.0, "mfu_vs_bf16": 0.3, "mean_padded_width": 28}
    rows = {t["target"]: t for t in targets(_results({COMPACT: compact}, 0.5))}
    student = rows["student distillation throughput vs reference (compact vocabulary, as the stages train)"]
    assert student["measured"] == "5.00x" and student["goal"] == ">= 5x" and student["met"] is True
    assert "at 100% of the bf16 peak: 16.7x" in student["note"]
    assert rows["student MFU vs bf16 matmul peak"]["met"] is True  # 30% >= 15%


def test_missed_targets_say_by_how_much_and_whether_the_peak_allows_them():
    rows = {t["target"]: t for t in targets(_results({}, 0.6))}
    student = rows["student distillation throughput vs reference (full vocabulary)"]
    assert student["met"] is False and "missed by 1.00x (20% below)" in student["note"]
    extraction = rows["logit extraction vs max_length fp32 inference"]
    assert extraction["met"] is False and extraction["goal"] == ">= 10x"
    assert "at 100% of the bf16 peak: 8.0x (the goal is out of reach here)" in extraction["note"]
    assert "| logit extraction vs max_length fp32 inference | 4.80x | >= 10x | **no** |" in markdown(
        {**_results({}, 0.6), "targets": targets(_results({}, 0.6))})


def test_targets_are_not_judged_off_the_cpu():
    r = _results({}, 0.6)
    r["machine"]["device"] = "cuda"
    assert all(t["met"] is None for t in targets(r) if "throughput" in t["target"] or "extraction" in t["target"])
