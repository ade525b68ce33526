"""Seed summaries of a student's metrics (mtkd.metrics.summarize, mtkd.distill.aggregate)."""

import pytest


def test_seed_summary_hand_values():
    from mtkd.metrics import summarize

    # mean 0.75, std sqrt((0.05² + 0 + 0.05²)/2) = 0.05, half-width t(0.975, 2) · 0.05 / √3 = 4.302653 · 0.028868
    got = summarize([0.7, 0.75, 0.8], "accuracy")
    assert got["mean"] == pytest.approx(0.75) and got["std"] == pytest.approx(0.05)
    assert got["ci95_low"] == pytest.approx(0.75 - 0.124207, abs=1e-6)
    assert got["ci95_high"] == pytest.approx(0.75 + 0.124207, abs=1e-6)
    high = summarize([0.9, 0.95, 1.0], "accuracy")  # 0.95 + 0.124207 would pass 1: cut to the metric's range
    assert high["ci95_low"] == pytest.approx(0.95 - 0.124207, abs=1e-6) and high["ci95_high"] == 1.0
    assert summarize([0.9, 0.95, 1.0])["ci95_high"] == pytest.approx(0.95 + 0.124207, abs=1e-6)  # no metric: no range


def test_one_seed_has_no_interval_and_a_kl_interval_stays_above_zero():
    from mtkd.distill import aggregate

    one = aggregate({"0": {"test": {"accuracy": 0.8, "ece": 0.05}, "validation": {"accuracy": 0.7, "ece": 0.04}}},
                    ["test", "validation"], T=6.0, alpha=0.7)
    assert one["test"]["accuracy"] == {"mean": 0.8, "std": None, "ci95_low": None, "ci95_high": None}
    kls = [0.001, 0.002, 0.09]  # a t-interval of these would reach below 0
    seeds = {str(i): {"test": {"accuracy": 0.8}, "validation": {"accuracy": 0.8},
                      "fidelity": {"tfidf_lr": {"agreement": 0.99, "kl": kl}}} for i, kl in enumerate(kls)}
    kl = aggregate(seeds, ["test", "validation"], T=6.0, alpha=0.7)["fidelity"]["tfidf_lr"]["kl"]
    assert kl["mean"] - 4.302653 * kl["std"] / 3 ** 0.5 < 0 and kl["ci95_low"] == 0.0
    assert kl["ci95_high"] == pytest.approx(kl["mean"] + 4.302653 * kl["std"] / 3 ** 0.5, abs=1e-5)
    agreement = aggregate(seeds, ["test"], T=6.0, alpha=0.7)["fidelity"]["tfidf_lr"]["agreement"]
    assert agreement["std"] == 0.0 and agreement["ci95_low"] == agreement["ci95_high"] == 0.99  # no spread: measured
