"""Fidelity against generalisation (issue #17, Stanton et al. 2021): the summary's ``transfer`` block, its
figure and its reading sentence, on hand-made numbers."""

import copy
import dataclasses

import numpy as np
import pytest
from scipy.stats import spearmanr

from mtkd import analysis as A
from mtkd.analysis.inputs import load_task_inputs, read_distill
from mtkd.analysis.page import Page
from mtkd.analysis.readings import transfer_sentence
from mtkd.analysis.registry import Analysis, get_figure
from mtkd.analysis.report import add_figure
from mtkd.analysis.run import analyse_task
from mtkd.analysis.transfer import spearman, transfer_block

# Three teachers, four test examples, two classes. The ensemble is the argmax of the mean of the teachers'
# probabilities: example 0 is right (mean p(0) = (1 + 2 · 0.119) / 3 = 0.413, though the mean logit favours
# class 0), example 1 is right (p(0) = (2 · 0.475 + 0.993) / 3 = 0.648, though two of three teachers say 1),
# example 2 is wrong, example 3 right: accuracy 3/4.
TEACHER_LOGITS = np.array([
    [[10, 0], [0, 0.1], [1, 0], [0, 1]],
    [[0, 2], [0, 0.1], [1, 0], [0, 1]],
    [[0, 2], [5, 0], [1, 0], [0, 1]],
], dtype=np.float32)
LABELS = np.array([1, 0, 1, 1])


def _run(test: float, agreement: float | None = None, kl: float | None = None) -> dict:
    run = {"best_epoch": 1, "validation": {"accuracy": 0.5}, "test": {"accuracy": test, "macro_f1": test / 2}}
    if agreement is not None:
        run["fidelity"] = {"a": {"agreement": 0.5, "kl": 1.0}, "fused": {"agreement": agreement, "kl": kl}}
    return run


def _block(*runs) -> dict:
    return {"T": 2.0, "alpha": 0.5, "seeds": {str(seed): run for seed, run in enumerate(runs)}}


DISTILL = {
    "none": _block(_run(0.5), _run(0.55)),  # no teacher, no fidelity: left out
    "single_a": _block(_run(0.6, 0.7, 0.4), _run(0.62, 0.72, 0.38)),
    "average": _block(_run(0.6, 0.80, 0.30), _run(0.7, 0.84, 0.26)),
    "average+transfer": _block(_run(0.7, 0.90, 0.20), _run(0.74, 0.92, 0.16)),
    "ca_mkd+transfer": _block(_run(0.66, 0.123456789, 0.5), _run(0.68, 0.88, 0.45)),  # its base is not in the run
}


@pytest.fixture(scope="module")
def block():
    return transfer_block(DISTILL, "accuracy", TEACHER_LOGITS, LABELS, 2)


def test_no_variant_no_block():
    plain = {s: b for s, b in DISTILL.items() if "+" not in s}
    assert transfer_block(plain, "accuracy", TEACHER_LOGITS, LABELS, 2) is None
    assert transfer_block({}, "accuracy", TEACHER_LOGITS, LABELS, 2) is None


def test_points_are_every_teacher_using_student_and_seed(block):
    assert list(block) == ["points", "ensemble", "pairs", "spearman"]
    points = block["points"]
    assert [(p["strategy"], p["seed"]) for p in points] == [
        (s, seed) for s in ("single_a", "average", "average+transfer", "ca_mkd+transfer") for seed in ("0", "1")]
    assert points[2] == {"strategy": "average", "base": "average", "setting": "train only", "seed": "0", "test": 0.6,
                         "agreement_fused": 0.8, "kl_fused": 0.3}
    assert points[4] == {"strategy": "average+transfer", "base": "average", "setting": "transfer", "seed": "0",
                         "test": 0.7, "agreement_fused": 0.9, "kl_fused": 0.2}
    assert points[6]["base"] == "ca_mkd" and points[6]["agreement_fused"] == 0.123457  # 6 decimals
    assert {p["setting"] for p in points[:4]} == {"train only"}


def test_ensemble_is_the_mean_of_the_teachers_probabilities(block):
    assert block["ensemble"] == {"test": 0.75}
    # neither the mean logit (example 0 wrong) nor the majority vote (example 1 wrong) gives 3/4
    assert (TEACHER_LOGITS.mean(axis=0).argmax(axis=1) == LABELS).mean() == 0.5
    f1 = transfer_block(DISTILL, "macro_f1", TEACHER_LOGITS, LABELS, 2)
    # predictions [1, 0, 0, 1]: class 0 P = 1/2, R = 1 → F1 2/3; class 1 P = 1, R = 2/3 → F1 0.8
    assert f1["ensemble"]["test"] == pytest.approx((2 / 3 + 0.8) / 2, abs=1e-6)
    assert f1["points"][0]["test"] == 0.3


def test_pairs_are_variant_minus_base_means(block):
    # average+transfer − average: test (0.72 − 0.65), agreement (0.91 − 0.82), KL (0.18 − 0.28)
    assert len(block["pairs"]) == 1  # ca_mkd is not in the run
    pair = block["pairs"][0]
    assert pair["variant"] == "average+transfer" and pair["base"] == "average"
    assert pair["test_diff"] == pytest.approx(0.07) and pair["agreement_diff"] == pytest.approx(0.09)
    assert pair["kl_diff"] == pytest.approx(-0.10)


def test_spearman_is_scipys_over_every_point(block):
    agreement = [p["agreement_fused"] for p in block["points"]]
    test = [p["test"] for p in block["points"]]
    assert block["spearman"]["n"] == 8
    assert block["spearman"]["rho"] == pytest.approx(spearmanr(agreement, test).statistic, abs=1e-6)
    assert spearman([0.1, 0.2], [0.3, 0.4]) == {"rho": None, "n": 2}  # under 3 points
    assert spearman([0.1, 0.2, 0.3], [0.5, 0.5, 0.5]) == {"rho": None, "n": 3}  # a constant input
    assert spearman([0.1, 0.2, 0.3], [0.3, 0.2, 0.1]) == {"rho": -1.0, "n": 3}


def test_reading_sentence(block):
    s = {"primary_metric": "accuracy", "transfer": block}
    rho = block["spearman"]["rho"]
    assert rho > 0.3
    assert transfer_sentence("rt", s) == (
        "rt: the transfer set moved average's mean test agreement with the fused teacher by +9.0 pp and its mean "
        "test accuracy by +7.0 pp (average+transfer − average). The teachers' ensemble scores 75.0% on test. Over 8 "
        f"students (strategy × seed), higher fidelity went with higher test accuracy (ρ = {rho:.2f}, n = 8).")
    weak = copy.deepcopy(block)
    weak["spearman"] = {"rho": -0.1, "n": 8}
    assert "no monotone relation between fidelity and test accuracy (ρ = −0.10, n = 8)." in transfer_sentence("rt", {
        "primary_metric": "accuracy", "transfer": weak})
    weak["spearman"] = {"rho": -0.5, "n": 8}
    assert "lower fidelity went with higher test accuracy (ρ = −0.50, n = 8)." in transfer_sentence("rt", {
        "primary_metric": "accuracy", "transfer": weak})
    weak["spearman"], weak["pairs"] = {"rho": None, "n": 2}, []
    assert transfer_sentence("rt", {"primary_metric": "accuracy", "transfer": weak}) == (
        "rt: no +transfer variant has its base strategy in this run. The teachers' ensemble scores 75.0% on test. "
        "Over 2 students (strategy × seed), no rank correlation of fidelity and test accuracy (ρ n/a, n = 2).")


def _analysis(summary: dict) -> Analysis:
    return Analysis(summary=summary, agreement={}, failures={}, confidence={}, comparisons={}, curves={}, gates={},
                    setup={})


def test_fidelity_figure(block):
    figure = get_figure("fidelity")
    a = _analysis({"rt": {"primary_metric": "accuracy", "transfer": block}, "plain": {"primary_metric": "accuracy"}})
    assert figure.per_task and figure.table is None  # no plots/ table: dvc.yaml does not change
    assert figure.drawn_if(a, "rt") and not figure.drawn_if(a, "plain")
    # listed only for a run with a +transfer student: the default run's report is unchanged
    assert not figure.applies("rt", ["none", "average"]) and "fig-rt-fidelity" not in A.figure_ids(["rt"], ["average"])
    assert figure.applies("rt", ["average", "average+transfer"])
    assert "fig-rt-fidelity" in A.figure_ids(["rt"], ["average", "average+transfer"])
    drawn = figure.draw(a, "rt")
    assert drawn.layout.title.text.startswith("rt: fidelity to the fused teacher against test accuracy")
    # one trace per student in each panel: 4 students × 2 panels
    assert [(t.name, t.xaxis) for t in drawn.data] == [(s, x) for x in ("x", "x2") for s in
                                                        ("single_a", "average", "average+transfer", "ca_mkd+transfer")]
    assert list(drawn.data[1].x) == pytest.approx([80, 84]) and list(drawn.data[1].y) == pytest.approx([60, 70])
    assert list(drawn.data[5].x) == pytest.approx([0.3, 0.26])  # KL in nats
    assert [t.marker.symbol for t in drawn.data[:4]] == ["circle", "circle", "diamond", "diamond"]
    assert drawn.data[1].marker.color == drawn.data[2].marker.color != drawn.data[3].marker.color  # colour by base
    lines = [s for s in drawn.layout.shapes if s.line.dash == "dash"]
    assert len(lines) == 2 and all(s.y0 == s.y1 == pytest.approx(75) for s in lines)
    assert [n.text for n in drawn.layout.annotations].count("teachers' ensemble") == 2
    details = figure.details(a, "rt")
    assert "<td>average+transfer</td><td>average</td><td>transfer</td><td>2</td><td>72.0%</td><td>91.0%</td><td>0.180</td>" \
        in details
    assert "<tr><td>teachers' ensemble</td><td></td><td></td><td></td><td>75.0%</td><td></td><td></td></tr>" in details
    page = Page("t")
    add_figure(page, figure, a, "rt")  # drawn where it applies, with its reading
    assert page.figure_ids == ["fig-rt-fidelity"] and page.readings == [transfer_sentence("rt", a.summary["rt"])]
    add_figure(page, figure, a, "plain")  # without the block: nothing, not even a note
    assert page.figure_ids == ["fig-rt-fidelity"]


def test_analyse_task_adds_the_block_only_with_a_variant(tmp_path):
    """On test_analysis' synthetic tree: summary["transfer"] appears with an ``average+transfer`` student only."""
    from tests.test_analysis import SEEDS, STRATEGIES, TEACHERS, build_tree

    root = build_tree(tmp_path)
    distill_all, curves_all = read_distill(root, STRATEGIES)
    inp = load_task_inputs(root, "rt", TEACHERS, STRATEGIES, SEEDS, distill_all, curves_all)
    plain = analyse_task(copy.deepcopy(inp), TEACHERS, SEEDS)
    assert "transfer" not in plain.summary
    with_variant = copy.deepcopy(inp)
    for field in ("distill", "student_test", "student_validation", "student_fused"):
        by = getattr(with_variant, field)
        if "average" in by:
            by["average+transfer"] = copy.deepcopy(by["average"])
    out = analyse_task(with_variant, TEACHERS, SEEDS)
    t = out.summary["transfer"]
    assert t == transfer_block(with_variant.distill, "accuracy", inp.teacher_logits["test"], inp.labels["test"], 2)
    assert t["pairs"] == [{"variant": "average+transfer", "base": "average", "test_diff": 0.0, "agreement_diff": 0.0,
                           "kl_diff": 0.0}]
    assert {p["strategy"] for p in t["points"]} == {"single_a", "single_b", "average", "gating", "average+transfer"}


def test_paired_over_seeds_is_a_t_interval_of_the_differences():
    from scipy.stats import t

    from mtkd.analysis.transfer import paired_over_seeds

    diffs = [0.01, 0.03, 0.02, 0.04]  # mean 0.025, sample sd sqrt(0.0005/3)
    half = t.ppf(0.975, 3) * np.sqrt(0.0005 / 3) / 2
    got = paired_over_seeds(diffs)
    assert got["mean"] == pytest.approx(0.025) and got["n"] == 4
    assert got["low"] == pytest.approx(0.025 - half, abs=1e-6) and got["high"] == pytest.approx(0.025 + half, abs=1e-6)
    assert paired_over_seeds([0.5]) == {"mean": 0.5, "low": None, "high": None, "n": 1}  # one seed: no interval


def _points(strategy: str, by_seed: dict) -> list[dict]:
    return [{"strategy": strategy, "seed": seed, "test": test, "agreement_fused": agr, "kl_fused": kl}
            for seed, (test, agr, kl) in by_seed.items()]


def test_longer_training_pairs_each_student_with_its_own_seed():
    from mtkd.analysis.transfer import longer_training

    short = {"points": _points("average", {"0": (0.80, 0.90, 0.20), "1": (0.81, 0.92, 0.18)})
             + _points("average+transfer", {"0": (0.82, 0.93, 0.15)})
             + _points("gone", {"0": (0.7, 0.8, 0.3)})}
    long = {"points": _points("average", {"1": (0.83, 0.95, 0.14), "0": (0.80, 0.94, 0.16), "7": (0.9, 0.9, 0.1)})
            + _points("average+transfer", {"0": (0.84, 0.95, 0.12)})}
    rows = {r["strategy"]: r for r in longer_training(short, long)}
    assert set(rows) == {"average", "average+transfer"}  # only strategies, and seeds, in both runs
    avg = rows["average"]
    assert avg["setting"] == "train only" and rows["average+transfer"]["setting"] == "transfer"
    assert avg["agreement_fused"]["n"] == 2  # seed 7 has no partner
    assert avg["agreement_fused"]["mean"] == pytest.approx(((0.94 - 0.90) + (0.95 - 0.92)) / 2)
    assert avg["kl_fused"]["mean"] == pytest.approx(((0.16 - 0.20) + (0.14 - 0.18)) / 2)
    assert avg["test"]["mean"] == pytest.approx((0.0 + 0.02) / 2)
    assert avg["kl_fused"]["low"] == pytest.approx(-0.04) == avg["kl_fused"]["high"]  # equal differences: zero width
    assert rows["average+transfer"]["test"]["low"] is None  # one pair: no interval


def test_longer_reading_says_what_moved():
    from mtkd.analysis.readings import longer_sentence

    def row(name, agr, test):
        iv = lambda m, lo, hi: {"mean": m, "low": lo, "high": hi, "n": 5}
        return {"strategy": name, "agreement_fused": iv(*agr), "kl_fused": iv(-0.02, -0.03, -0.01), "test": iv(*test)}

    up = [row("average", (0.02, 0.01, 0.03), (0.01, 0.002, 0.018)), row("single_a", (0.01, 0.001, 0.02), (0.0, -0.01, 0.01))]
    text = longer_sentence("rt", up, "accuracy", (1, 2), "results/transfer/")
    assert text.startswith("rt: 2 epochs instead of 1 (each student paired with its own seed's in `results/transfer/`; "
                           "mean of long − short over 5 seeds")
    assert "average: agreement +2.0 pp [+1.0, +3.0], KL −0.020 nats [−0.030, −0.010], test accuracy +1.0 pp [+0.2, +1.8]" in text
    assert "raised every student's agreement" in text and "test accuracy rose detectably for 1 of 2" in text
    flat = [row("average", (0.0, -0.01, 0.01), (0.0, -0.01, 0.01))]
    assert "no student's agreement with its fused teacher moved detectably" in longer_sentence("rt", flat, "accuracy", (1, 2), "x/")
    assert "no strategy's test accuracy rose detectably" in longer_sentence("rt", flat, "accuracy", (1, 2), "x/")
    mixed = [*up, row("weighted", (-0.02, -0.03, -0.01), (0.0, -0.01, 0.01)), *flat]
    assert "raised agreement with the fused teacher for 2 of 4 strategies and lowered it for 1" in longer_sentence(
        "rt", mixed, "accuracy", (1, 2), "x/")
    assert "nothing to pair" in longer_sentence("rt", [], "accuracy", (1, 2), "x/")
