"""analyze (SPEC §8–9): hand-checked numbers on a synthetic tree with the real file formats."""

import json
import math
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from mtkd import analysis as A
from mtkd.analysis.page import escape
from mtkd.analysis.registry import plot_tables
from mtkd.data import fingerprint
from mtkd.errors import MtkdError
from mtkd.io import write_json, write_npz
from mtkd.logits import save_logits
from mtkd.metrics import softmax, summarize
from mtkd.params import validate_params

TEACHERS = ["a", "b", "c"]
STRATEGIES = ["none", "single_a", "single_b", "average", "gating"]
SEEDS = [0, 1]
N_TEST, N_TRAIN, N_VAL = 40, 20, 10
H99 = -(0.99 * math.log(0.99) + 0.01 * math.log(0.01))
H90 = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1))
H75 = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))

# Test split: block A (0–19) every teacher right; block B (20–29) a and b right, c wrong; block C (30–39) all wrong.
A_, B_, C_ = range(0, 20), range(20, 30), range(30, 40)


def _labels(n):
    return np.arange(n) % 2


def _logits(labels, right, margin):
    """Binary logits: margin on the predicted class (label where ``right``), 0 on the other."""
    labels = np.asarray(labels)
    preds = np.where(right, labels, 1 - labels)
    z = np.zeros((len(labels), 2), dtype=np.float32)
    z[np.arange(len(labels)), preds] = np.broadcast_to(margin, len(labels))
    return z


def _mask(n, *ranges):
    m = np.zeros(n, dtype=bool)
    for r in ranges:
        m[list(r)] = True
    return m


def _student_right():
    """Which test examples each strategy's student gets right, per seed (see the module comment for the blocks)."""
    none = _mask(N_TEST, range(4, 20), range(20, 25))
    single_a = _mask(N_TEST, A_, B_)
    single_b = _mask(N_TEST, A_, range(20, 25))
    avg0 = _mask(N_TEST, A_, range(22, 30))
    avg1 = _mask(N_TEST, A_, B_)
    return {"none": [none, none], "single_a": [single_a, single_a], "single_b": [single_b, single_b],
            "average": [avg0, avg1], "gating": [none, none]}


VALIDATION = {"none": [0.5, 0.5], "single_a": [0.70, 0.70], "single_b": [0.80, 0.80], "average": [0.77, 0.79],
              "gating": [0.6, 0.6]}
TEACHER_SCORES = {"a": (0.90, 0.75), "b": (0.85, 0.75), "c": (0.80, 0.50)}  # (validation, test) accuracy


def _params():
    return validate_params({
        "seeds": SEEDS, "data": {"tasks": ["rt"]},
        "teachers": {t: {"kind": "sklearn"} for t in TEACHERS},
        "student": {"random_init": {}},
        "distill": {"strategies": STRATEGIES},
    })


def build_tree(root):
    data = root / "data/prepared/rt"
    data.mkdir(parents=True)
    frames = {s: pd.DataFrame({"id": [f"rt-{s}-{i:03d}" for i in range(n)], "text_a": [f"text {i}" for i in range(n)],
                               "text_b": None, "label": _labels(n), "group": [f"g{i // 4}" for i in range(n)]})
              for s, n in (("train", N_TRAIN), ("validation", N_VAL), ("test", N_TEST))}
    for s, f in frames.items():
        f.to_parquet(data / f"{s}.parquet", index=False)
    meta = {"task": "rt", "num_classes": 2, "primary_metric": "accuracy",
            "splits": {s: {"n": len(f), "fingerprint": fingerprint(f)} for s, f in frames.items()}}
    write_json(data / "meta.json", meta)

    y = {s: f["label"].to_numpy() for s, f in frames.items()}
    parity = np.arange(N_TEST) % 2 == 0
    test_right = {"a": _mask(N_TEST, A_, B_), "b": _mask(N_TEST, A_, B_), "c": _mask(N_TEST, A_)}
    test_margin = {"a": np.log(99.0), "b": np.where(parity, np.log(99.0), np.log(3.0)), "c": np.log(3.0)}
    train_margin = {"a": np.log(9.0), "b": np.where(np.arange(N_TRAIN) % 2 == 0, np.log(99.0), np.log(3.0)),
                    "c": np.log(3.0)}
    for t in TEACHERS:
        splits = {
            "train": (frames["train"]["id"].tolist(), _logits(y["train"], True, train_margin[t])),
            "validation": (frames["validation"]["id"].tolist(), _logits(y["validation"], True, 2.0)),
            "test": (frames["test"]["id"].tolist(), _logits(y["test"], test_right[t], test_margin[t])),
        }
        save_logits(root / "logits" / f"{t}-rt.npz", teacher=t, task="rt", num_classes=2, splits=splits,
                    provenance={"data_fingerprint": {s: meta["splits"][s]["fingerprint"] for s in splits}})
        val, test = TEACHER_SCORES[t]
        write_json(root / "metrics/teachers" / f"{t}-rt.json",
                   {"rt": {"validation": {"accuracy": val, "macro_f1": val, "ece": 0.05},
                           "test": {"accuracy": test, "macro_f1": test, "ece": 0.05}}})
        write_json(root / "plots/curves/teachers" / f"{t}-rt.json",
                   [] if t == "c" else [{"epoch": e, "train_loss": 1.0 / e, "val_accuracy": val - 0.1 / e} for e in (1, 2)])

    for s, rights in _student_right().items():
        arrays = {"rt/test/ids": frames["test"]["id"].to_numpy(dtype=str),
                  "rt/validation/ids": frames["validation"]["id"].to_numpy(dtype=str)}
        seeds = {}
        for k, (seed, right) in enumerate(zip(SEEDS, rights)):
            # seed 0 of `average` is wrong on 20, 21 with a small margin; seed 1 right there with a large one,
            # so the seed ensemble is right there.
            margin = np.where(_mask(N_TEST, (20, 21)), 1.0 if k == 0 else 3.0, 2.0) if s == "average" else 2.0
            arrays[f"rt/test/seed{seed}"] = _logits(y["test"], right, margin)
            if s != "none":  # what the student was distilled towards: teacher a's test probabilities
                arrays[f"rt/test/fused/seed{seed}"] = softmax(_logits(y["test"], test_right["a"], test_margin["a"]))
            # the first round(10 · VALIDATION) validation examples right: predictions pick as the metrics do
            arrays[f"rt/validation/seed{seed}"] = _logits(y["validation"], np.arange(N_VAL) < round(N_VAL * VALIDATION[s][k]), 1.0)
            acc = float(right.mean())
            scores = {"best_epoch": 2, "validation": {"accuracy": VALIDATION[s][k], "ece": 0.1},
                      "test": {"accuracy": acc, "ece": 0.1}}
            if s != "none":
                scores["fidelity"] = {"a": {"agreement": 0.9, "kl": 0.1}, "fused": {"agreement": 0.95, "kl": 0.05}}
            if s == "gating":
                scores["gate_weights_train"] = {"a": 0.5, "b": 0.3, "c": 0.2}
                scores["gate_weights_test"] = {"a": 0.6 - 0.1 * k, "b": 0.2 + 0.1 * k, "c": 0.2}
            seeds[str(seed)] = scores
        write_npz(root / "predictions" / f"{s}.npz", **arrays)
        block = {"T": 6.0, "alpha": 0.0 if s == "none" else 0.7,
                 "test": {m: summarize([v["test"][m] for v in seeds.values()]) for m in ("accuracy", "ece")},
                 "validation": {m: summarize([v["validation"][m] for v in seeds.values()]) for m in ("accuracy", "ece")},
                 "seeds": seeds}
        write_json(root / "metrics/distill" / f"{s}.json", {"rt": block})
        write_json(root / "plots/curves/distill" / f"{s}.json",
                   [{"task": "rt", "seed": seed, "epoch": e, "train_loss": 0.5 / e, "val_accuracy": VALIDATION[s][k] - 0.05 / e}
                    for k, seed in enumerate(SEEDS) for e in (1, 2)])
    return root


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = build_tree(tmp_path_factory.mktemp("analysis"))
    out = A.run_analysis(_params(), root)
    return root, out


def _json(root, name):
    return json.loads((root / name).read_text())


# ---------------------------------------------------------------------------------------------- pure functions


def test_agreement_regions_and_region_accuracy():
    teacher_preds = np.array([[0, 0, 1, 0, 2],
                              [0, 1, 1, 1, 1],
                              [0, 1, 1, 2, 0]])
    regions = A.agreement_regions(teacher_preds)
    assert regions.tolist() == [0, 1, 0, 2, 2]
    correct = np.array([True, False, False, True, False])
    assert A.region_accuracy(regions, correct) == {"all_agree": 0.5, "some_agree": 0.0, "all_differ": 0.5}
    assert A.region_accuracy(np.zeros(2, dtype=int), np.array([True, True]))["all_differ"] is None


def test_failure_categories_hand_case():
    labels = np.array([0, 1, 1, 0, 1])
    teacher_preds = np.array([[1, 1, 0, 0, 1],
                              [1, 1, 1, 1, 1]])
    # example 0: both wrong; 1: both right; 2: split; 3: split; 4: both right
    assert A.failure_category(labels, teacher_preds).tolist() == [0, 1, 2, 2, 1]
    seeds = {"0": np.array([1, 0, 0, 0, 1]),   # errors on 0 (all wrong), 1 (all right), 2 (split)
             "1": np.array([1, 1, 1, 1, 1])}   # errors on 0 (all wrong), 3 (split)
    out = A.failure_analysis(labels, teacher_preds, seeds)
    assert out["errors_per_seed"] == 2.5
    assert out["error_rate"] == 0.5
    assert out["count_per_seed"] == {"all_teachers_wrong": 1.0, "all_teachers_right": 0.5, "teachers_split": 1.0}
    assert out["share"] == {"all_teachers_wrong": 0.4, "all_teachers_right": 0.2, "teachers_split": 0.4}


def test_gap_closed_formula_and_zero_guard():
    assert A.gap_closed(0.85, 0.80, 0.90) == pytest.approx(0.5)
    assert A.gap_closed(0.80, 0.80, 0.90) == 0.0
    assert A.gap_closed(0.95, 0.80, 0.90) == pytest.approx(1.5)
    assert A.gap_closed(0.85, 0.80, 0.80) is None
    assert A.gap_closed(0.85, 0.80, 0.80 + 1e-9) is None


def test_pick_best_and_rank():
    assert A.pick_best({"x": 0.7, "y": 0.9, "z": 0.9}) == "y"
    assert A.pick_best({}) is None
    assert A.pick_best({"x": None, "y": 0.1}) == "y"
    assert A.rank_scores({"x": 0.7, "y": 0.9, "z": 0.9, "w": 0.1}) == {"x": 3, "y": 1, "z": 1, "w": 4}


def test_confidence_hand_values():
    z = np.array([[np.log(99.0), 0.0], [0.0, np.log(3.0)], [0.0, 0.0]])
    out = A.confidence(z)
    assert out["mean_max_prob"] == pytest.approx((0.99 + 0.75 + 0.5) / 3, abs=1e-6)
    assert out["mean_entropy"] == pytest.approx((H99 + H75 + math.log(2)) / 3, abs=1e-6)
    assert out["high_confidence_share"] == pytest.approx(1 / 3, abs=1e-6)


# ---------------------------------------------------------------------------------------------- end to end


def test_summary_chooses_on_validation_and_reports_test(tree):
    root, _ = tree
    s = _json(root, "metrics/summary.json")["rt"]
    assert s["primary_metric"] == "accuracy" and s["n_test"] == N_TEST and s["n_seeds"] == 2
    assert s["best_teacher"] == {"name": "a", "validation": 0.9, "test": 0.75}
    # single_a is better on test (0.75) but single_b is better on validation (0.80): single_b is chosen.
    assert s["best_single"]["strategy"] == "single_b"
    assert s["best_single"]["test"] == pytest.approx(0.625)
    assert s["best_multi"]["strategy"] == "average"
    assert s["best_multi"]["test"] == pytest.approx(0.725)
    assert s["none"]["test"] == pytest.approx(0.525)
    # Headline: seed-mean difference (70.0 − 62.5 and 75.0 − 62.5 pp), 2 seeds × 10 test groups of 4.
    h = s["headline"]
    assert (h["multi"], h["single"], h["metric"]) == ("average", "single_b", "accuracy")
    assert h["diff"] == pytest.approx(0.10) and (h["n_seeds"], h["n_groups"]) == (2, 10)
    assert h["family_size"] == 8  # average, gating × single_a, single_b; and all four vs none
    assert h["ci_adj_low"] <= h["ci95_low"] < h["diff"] < h["ci95_high"] <= h["ci_adj_high"]
    # Named a winner only where the Holm-adjusted interval excludes 0.
    assert h["verdict"] == ("no detectable difference" if h["ci_adj_low"] <= 0 <= h["ci_adj_high"] else "multi better")
    assert h["mdd"] > 0 and h["half_width"] == pytest.approx((h["ci95_high"] - h["ci95_low"]) / 2, abs=1e-6)
    sel = h["selection"]  # validation: average 8/10 (both seeds) > gating 6/10; single_b 8/10 > single_a 7/10
    assert (sel["a_pick"], sel["b_pick"]) == ("average", "single_b")
    assert 0 < sel["pair_share"] <= sel["b_share"] <= 1 and sum(sel["b_picks"].values()) == pytest.approx(1.0)
    # Gap closed: denominator 0.75 − 0.525 = 0.225.
    gap = s["gap_closed"]
    assert gap["reference_teacher"] == "a"
    assert gap["denominator_pp"] == pytest.approx(22.5)
    assert gap["best_multi"] == pytest.approx(0.2 / 0.225, abs=1e-6)
    assert gap["best_single"] == pytest.approx(0.1 / 0.225, abs=1e-6)
    assert gap["by_strategy"]["none"] == 0.0 and gap["by_strategy"]["single_a"] == pytest.approx(1.0)
    assert gap["intervals"]["average"]["point"] == pytest.approx(gap["best_multi"], abs=1e-6)
    assert "none" not in gap["intervals"]
    # Positive quantities: bootstrap intervals, never below 0; the KL point is the hand-computed mean.
    for name, v in s["strategies"].items():
        assert 0 <= v["ece"]["ci95_low"] <= v["ece"]["point"] <= v["ece"]["ci95_high"], name
        assert ("kl_fused" in v) == (name != "none")
    kl = s["strategies"]["single_a"]["kl_fused"]
    sig = 1 / (1 + math.exp(-2.0))  # single_a: margin 2 on teacher a's class (0.99) on every test example
    assert kl["point"] == pytest.approx(0.99 * math.log(0.99 / sig) + 0.01 * math.log(0.01 / (1 - sig)), abs=1e-5)
    assert 0 <= kl["ci95_low"] <= kl["point"] <= kl["ci95_high"]
    ranks = {k: v["rank"] for k, v in s["strategies"].items()}
    assert ranks == {"single_a": 1, "average": 2, "single_b": 3, "none": 4, "gating": 4}


def test_agreement_regions_end_to_end(tree):
    root, _ = tree
    a = _json(root, "metrics/agreement.json")["rt"]
    assert a["count"] == {"all_agree": 30, "some_agree": 10, "all_differ": 0}
    assert a["share"] == {"all_agree": 0.75, "some_agree": 0.25, "all_differ": 0.0}
    assert a["teacher_accuracy"]["a"] == {"all_agree": pytest.approx(2 / 3, abs=1e-6), "some_agree": 1.0, "all_differ": None}
    assert a["teacher_accuracy"]["c"]["some_agree"] == 0.0
    assert a["student_accuracy"]["none"] == {"all_agree": pytest.approx(16 / 30, abs=1e-6), "some_agree": 0.5,
                                             "all_differ": None}
    assert a["student_accuracy"]["average"]["some_agree"] == pytest.approx(0.9)  # seeds: 8/10 and 10/10
    assert a["student_accuracy_when_teachers_disagree"]["average"] == pytest.approx(0.9)


def test_failure_categories_end_to_end(tree):
    root, _ = tree
    f = _json(root, "metrics/failures.json")["rt"]
    assert f["base_share"] == {"all_teachers_wrong": 0.25, "all_teachers_right": 0.5, "teachers_split": 0.25}
    none = f["strategies"]["none"]
    assert none["errors_per_seed"] == 19.0
    assert none["count_per_seed"] == {"all_teachers_wrong": 10.0, "all_teachers_right": 4.0, "teachers_split": 5.0}
    assert none["share"]["all_teachers_wrong"] == pytest.approx(10 / 19, abs=1e-6)
    avg = f["strategies"]["average"]
    assert avg["errors_per_seed"] == 11.0 and avg["error_rate"] == pytest.approx(0.275)
    assert avg["share"] == {"all_teachers_wrong": pytest.approx(20 / 22, abs=1e-6), "all_teachers_right": 0.0,
                            "teachers_split": pytest.approx(2 / 22, abs=1e-6)}


def test_teacher_confidence_end_to_end(tree):
    root, _ = tree
    c = _json(root, "metrics/teacher_confidence.json")["rt"]
    assert c["a"]["test"] == pytest.approx({"mean_max_prob": 0.99, "mean_entropy": H99, "high_confidence_share": 1.0}, abs=1e-5)
    assert c["a"]["train"] == pytest.approx({"mean_max_prob": 0.9, "mean_entropy": H90, "high_confidence_share": 0.0}, abs=1e-5)
    assert c["b"]["test"] == pytest.approx({"mean_max_prob": 0.87, "mean_entropy": (H99 + H75) / 2,
                                            "high_confidence_share": 0.5}, abs=1e-5)
    assert c["c"]["test"] == pytest.approx({"mean_max_prob": 0.75, "mean_entropy": H75, "high_confidence_share": 0.0}, abs=1e-5)
    assert c["all_teachers"]["test"]["mean_max_prob"] == pytest.approx((0.99 + 0.87 + 0.75) / 3, abs=1e-5)


def test_results_and_plot_tables(tree):
    root, _ = tree
    res = pd.read_csv(root / "metrics/results.csv", keep_default_na=False)
    assert list(res.columns[:4]) == ["method", "kind", "task", "seed"]
    assert len(res) == len(TEACHERS) + len(STRATEGIES) * len(SEEDS)
    kinds = dict(zip(res["method"], res["kind"]))
    assert kinds == {"a": "teacher", "b": "teacher", "c": "teacher", "none": "baseline", "single_a": "single",
                     "single_b": "single", "average": "multi", "gating": "multi"}
    assert set(res.loc[res["kind"] == "teacher", "seed"]) == {""}
    row = res[(res["method"] == "average") & (res["seed"] == "0")].iloc[0]
    assert float(row["test_accuracy"]) == pytest.approx(0.7) and float(row["validation_accuracy"]) == pytest.approx(0.77)
    assert float(row["fidelity_fused_agreement"]) == pytest.approx(0.95)
    assert {"test_ece", "validation_ece", "fidelity_a_kl", "gate_test_a", "best_epoch"} <= set(res.columns)
    plot = pd.read_csv(root / "plots/strategies.csv")
    assert list(plot.columns) == ["strategy", "task", "kind", "test_primary", "ci95_low", "ci95_high"]
    assert plot["strategy"].tolist() == TEACHERS + STRATEGIES
    avg = plot[plot["strategy"] == "average"].iloc[0]
    assert avg["test_primary"] == pytest.approx(0.725) and avg["ci95_low"] < 0.725 < avg["ci95_high"]


def test_report_is_self_contained_with_readings(tree):
    root, out = tree
    text = (root / "reports/report.html").read_text(encoding="utf-8")
    assert not re.search(r"<script[^>]*\bsrc=", text)  # no external script (CDN or otherwise)
    assert "https://cdn.plot.ly/plotly" not in text
    assert text.count("plotly.js v") >= 1 and len(text) > 1_000_000  # the library itself is inline
    n_figures = len(A.figure_ids(["rt"]))  # the synthetic tree has every analysis: every registered figure is drawn
    assert text.count('class="plotly-graph-div"') == n_figures
    readings = out["readings"]
    assert len(readings) == n_figures + 1  # every figure + the headline
    for sentence in readings:
        assert escape(sentence) in text
    assert readings[0].startswith("rt: best multi (average) vs best single (single_b), both chosen on validation: "
                                  "+10.0 pp on test, 95% interval [")
    assert "over 2 seeds × 10 test examples, Holm-adjusted over 8 comparisons" in readings[0]
    assert readings[0].split(": ")[-2].endswith("no detectable difference. Resampling validation examples and seeds picks "
                                                "this same pair 70% of the time (average 100%, single_b 70%). Smallest "
                                                "difference this design detects (80% power, measured seed and example variance)")
    assert any(re.search(r"best multi average closes 89% \[\d+%, \d+%\] and best single single_b closes 44% \[\d+%, \d+%\] "
                         r"of the 22\.5 pp gap", r) for r in readings)
    assert any("teachers all agree on 75.0% of test examples" in r for r in readings)
    assert any("the gate puts the most weight on a (0.55 on test" in r for r in readings)


def test_plot_tables_for_dvc_plots(tree):
    """plots/*.csv: the SPEC §9 analyses as long tables, one labelled bar per row, same numbers as metrics/."""
    root, _ = tree
    for table in plot_tables():
        frame = pd.read_csv(root / table.path)
        assert list(frame.columns) == list(table.columns), table.path
        if table.plot.y == "label":  # one bar per row
            assert frame["label"].is_unique, table.path
    gap = pd.read_csv(root / "plots/gap_closed.csv").set_index("strategy")
    assert list(gap.index) == ["single_a", "single_b", "average", "gating"]  # `none` closes 0 by definition
    assert gap.loc["average", "gap_closed"] == pytest.approx(0.2 / 0.225, abs=1e-6)
    assert set(gap["reference_teacher"]) == {"a"}
    agree = pd.read_csv(root / "plots/agreement.csv")
    assert set(agree["region"]) == {"all_agree", "some_agree"}  # all_differ is empty here
    row = agree[(agree["strategy"] == "average") & (agree["region"] == "some_agree")].iloc[0]
    assert row["student_accuracy"] == pytest.approx(0.9) and row["region_share"] == 0.25
    assert row["label"] == "rt · some_agree · average"
    fail = pd.read_csv(root / "plots/failures.csv").set_index(["strategy", "category"])
    assert fail.loc[("none", "all_teachers_wrong"), "errors_per_seed"] == 10.0
    assert fail.loc[("none", "all_teachers_right"), "errors_per_seed"] == 4.0
    assert fail.loc[("average", "teachers_split"), "share_of_errors"] == pytest.approx(2 / 22, abs=1e-6)
    conf = pd.read_csv(root / "plots/teacher_confidence.csv").set_index(["teacher", "split"])
    assert len(conf) == len(TEACHERS) * 2  # no all_teachers mean
    assert conf.loc[("b", "test"), "high_confidence_share"] == pytest.approx(0.5)
    rank = pd.read_csv(root / "plots/ranking.csv")
    assert rank["strategy"].tolist()[:3] == ["single_a", "average", "single_b"] and rank["rank"].is_monotonic_increasing
    assert rank["label"].iloc[0] == "rt · #1 single_a"


def test_report_declares_figures_and_redraws_from_metrics(tree):
    """<meta name="mtkd-figures"> lists every figure; report_from_metrics gives the same bytes without predictions."""
    root, out = tree
    text = (root / "reports/report.html").read_text(encoding="utf-8")
    assert f'<meta name="mtkd-figures" content="{" ".join(out["figures"])}">' in text
    for fid, sentence in out["figures"].items():
        assert f'<figure class="mtkd-figure" data-figure="{fid}">' in text
        assert f'<figcaption class="reading">{escape(sentence)}</figcaption>' in text
    assert out["figures"]["fig-ranking"] == ("Top-ranked strategy on test rt: single_a (75.0%), best-ranked "
                                             "multi-teacher strategy average at rank 2 of 5 (72.5%).")
    report = A.report_from_metrics(_params(), root)
    assert report.html().encode("utf-8") == (root / "reports/report.html").read_bytes()


def test_rerun_is_byte_identical(tree, tmp_path):
    root, _ = tree
    before = {name: (root / name).read_bytes() for name in A.OUTPUTS}
    A.run_analysis(_params(), root)
    assert {name: (root / name).read_bytes() for name in A.OUTPUTS} == before


def test_missing_input_names_file_and_command(tmp_path):
    root = build_tree(tmp_path)
    (root / "predictions/average.npz").unlink()
    with pytest.raises(MtkdError, match=r"predictions/average\.npz: predictions not found \(run `dvc repro distill@average`\)"):
        A.run_analysis(_params(), root)
    shutil.rmtree(root / "metrics/teachers")
    with pytest.raises(MtkdError, match=r"metrics/teachers/a-rt\.json: not found \(run `dvc repro extract_logits@a-rt`\)"):
        A.run_analysis(_params(), root)
    (root / "metrics/distill/gating.json").unlink()
    with pytest.raises(MtkdError, match=r"metrics/distill/gating\.json: not found \(run `dvc repro distill@gating`\)"):
        A.run_analysis(_params(), root)


def test_prediction_ids_must_match(tmp_path):
    root = build_tree(tmp_path)
    path = root / "predictions/single_a.npz"
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["rt/test/ids"] = arrays["rt/test/ids"][::-1].copy()
    write_npz(path, **arrays)
    with pytest.raises(MtkdError, match=r"predictions/single_a\.npz\[rt/test\]: ids do not match"):
        A.run_analysis(_params(), root)


def test_convergence_hand_case_and_the_limit_it_writes():
    from mtkd.analysis.run import convergence_limits
    from mtkd.analysis.tables import convergence

    rows = {"none": [{"seed": 0, "epoch": 1.0, "val_accuracy": 0.80}, {"seed": 0, "epoch": 0.5, "val_accuracy": 0.70},
                     {"seed": 1, "epoch": 0.5, "val_accuracy": 0.75}, {"seed": 1, "epoch": 1.0, "val_accuracy": 0.75}],
            "avg": [{"seed": 0, "epoch": 0.5, "val_accuracy": 0.81}, {"seed": 0, "epoch": 1.0, "val_accuracy": 0.80},
                    {"seed": 1, "epoch": 0.5, "val_accuracy": 0.79}],  # one evaluation: not a curve
            "empty": []}
    conv = convergence(rows, "accuracy")
    # gains (last − previous, in epoch order): +0.10, 0.00 (a tie: the earlier is best), −0.01
    assert conv == {"runs": 3, "best_at_last": 1, "last_gain_mean": 0.03, "last_gain_median": 0.0,
                    "flat_gain": 0.002, "flattened": False}
    assert convergence(rows, "accuracy", flat_gain=0.05)["flattened"] is True
    assert convergence({"none": rows["avg"][2:]}, "accuracy") is None
    (limit,) = convergence_limits(conv, "accuracy")
    assert "last evaluation in 1 of 3 runs" in limit and "+3.00 pp" in limit and "below 0.2 pp" in limit
    assert convergence_limits({**conv, "flattened": True}, "accuracy") == [] and convergence_limits(None, "x") == []


def test_results_table_writes_sub_epoch_best_epochs_as_they_are():
    """A student evaluated within an epoch may be best at 0.75 (vader5's run): written as such, whole ones as 1."""
    from mtkd.analysis.tables import results_table

    rows = [{"method": "t", "kind": "teacher", "task": "rt", "test_accuracy": 0.9},
            {"method": "a", "kind": "multi", "task": "rt", "seed": 0, "best_epoch": 1.0, "test_accuracy": 0.8},
            {"method": "a", "kind": "multi", "task": "rt", "seed": 1, "best_epoch": 0.75, "test_accuracy": 0.7}]
    csv = results_table(rows).to_csv(index=False, lineterminator="\n").splitlines()
    assert csv[0] == "method,kind,task,seed,best_epoch,test_accuracy"
    assert csv[1:] == ["t,teacher,rt,,,0.9", "a,multi,rt,0.0,1,0.8", "a,multi,rt,1.0,0.75,0.7"]


def test_design_limits_say_what_the_params_leave_untuned():
    import yaml

    from mtkd.analysis.run import design_limits
    from mtkd.params import validate_params
    from tests.helpers import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())

    def limits(**student_and_T):
        p = json.loads(json.dumps(raw))
        p["distill"]["T"] = student_and_T.pop("T")
        p["student"].update(student_and_T)
        return " ".join(design_limits(validate_params(p, "p.yaml"), 2))

    fixed = limits(T=6.0, num_train_epochs=1, early_stopping_patience=None)
    assert "at T = 6 and α = 0.7 for every strategy, not tuned per strategy" in fixed
    assert "train for 1 epoch(s) whatever their validation curve does" in fixed
    mapped = limits(T={s: 3.0 for s in raw["distill"]["strategies"] if s != "none"}, num_train_epochs=4,
                    early_stopping_patience=2)
    assert "T is set per strategy (distill.T's map, chosen on validation" in mapped and "α = 0.7 serves every" in mapped
    assert "epoch(s)" not in mapped  # early stopping: whether curves flattened is convergence_limits' to say


def test_agreement_and_failures_leave_a_human_teacher_out(tmp_path):
    """A teacher of kind ``human`` (the raters' distribution) is a reference: regions and failure categories
    are those of the other teachers, exactly as if it were not there."""
    from mtkd.analysis.inputs import load_task_inputs, read_distill
    from mtkd.analysis.regions import agreement_analysis, base_failure_shares
    from mtkd.analysis.run import analyse_task

    root = build_tree(tmp_path)
    distill_all, curves_all = read_distill(root, STRATEGIES)
    inp = load_task_inputs(root, "rt", TEACHERS, STRATEGIES, SEEDS, distill_all, curves_all)
    out = analyse_task(inp, TEACHERS, SEEDS, human_teachers=["c"])
    y = inp.labels["test"]
    models = inp.teacher_logits["test"][:2].argmax(axis=2)  # a and b
    students = {s: {seed: z.argmax(axis=1) for seed, z in by.items()} for s, by in inp.student_test.items()}
    assert out.agreement == agreement_analysis(y, models, ["a", "b"], students)
    assert out.failures["base_share"] == base_failure_shares(y, models)
    assert out.failures["strategies"]["average"] == A.failure_analysis(y, models, students["average"])
    everyone = analyse_task(inp, TEACHERS, SEEDS)  # without a human teacher: all three, as before
    assert set(everyone.agreement["teacher_accuracy"]) == {"a", "b", "c"}
