"""The distributed engine (Accelerate), the launcher param, α schedules, library ECE, DVCLive curves."""

import json
import sys

import numpy as np
import pytest
import torch
import yaml

from mtkd.distill import alpha_at
from mtkd.errors import MtkdError
from mtkd.fusion import get_strategy
from mtkd.metrics import expected_calibration_error, expected_calibration_error_reference, softmax
from mtkd.params import validate_params
from mtkd.pipeline import render
from tests.helpers import ROOT, make_repo, run, tiny_params


def _params(**runtime):
    raw = tiny_params()
    raw["runtime"].update(runtime)
    return raw


# --- α schedule (teacher annealing) ---------------------------------------------------------

def test_alpha_schedule_constant_and_linear():
    assert alpha_at(0.7, "constant", 0.0) == alpha_at(0.7, "constant", 0.99) == 0.7
    assert alpha_at(0.7, "linear", 0.0) == 0.7
    assert alpha_at(0.8, "linear", 0.5) == pytest.approx(0.4)
    assert alpha_at(0.8, "linear", 0.75) == pytest.approx(0.2)
    values = [alpha_at(0.9, "linear", p) for p in np.linspace(0, 0.999, 50)]
    assert all(a > b for a, b in zip(values, values[1:])) and values[-1] < 0.001


def test_alpha_schedule_is_validated():
    raw = tiny_params()
    raw["distill"]["alpha_schedule"] = "cosine"
    with pytest.raises(MtkdError, match=r"distill.alpha_schedule"):
        validate_params(raw)


def test_only_distilling_strategies_read_the_schedule():
    # Each distill@<strategy> depends on configs/distill/<strategy>.yaml (the configure stage):
    # the schedule is in the file of every strategy that distils, and not in none's.
    raw = tiny_params(strategies=("none", "average"))
    raw["distill"]["alpha_schedule"] = "linear"
    params = validate_params(raw)
    teachers = list(params.teachers)
    assert get_strategy("average", teachers).settings(params.distill)["alpha_schedule"] == "linear"
    assert get_strategy("none", teachers).settings(params.distill) == {}
    distill = yaml.safe_load(render(params))["stages"]["distill"]
    assert distill["do"]["deps"].count("configs/distill/${item}.yaml") == 1
    assert "distill.alpha_schedule" not in str(distill)  # read from the settings file, not from params


# --- ECE from the library, checked against the written-out formula ------------------------------

@pytest.mark.parametrize("classes", [2, 3, 5])
def test_library_ece_matches_the_formula(classes):
    rng = np.random.default_rng(classes)
    probs = softmax(rng.normal(size=(2000, classes)) * 2.5)
    labels = rng.integers(0, classes, 2000)
    assert expected_calibration_error(probs, labels) == pytest.approx(
        expected_calibration_error_reference(probs, labels), abs=1e-6)


def test_ece_of_a_perfectly_calibrated_split_is_zero():
    # 10 examples at confidence 0.8, 8 of them right: accuracy equals confidence in the one bin.
    probs = np.tile([[0.8, 0.2]], (10, 1))
    labels = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, labels) == pytest.approx(0.0, abs=1e-7)


# --- launcher param ---------------------------------------------------------------------------

def test_launcher_is_written_into_training_stage_commands():
    raw = _params(launcher="torchrun --standalone --nproc_per_node 4")
    stages = yaml.safe_load(render(validate_params(raw)))["stages"]
    for name in ("train_teachers", "extract_logits"):
        assert stages[name]["cmd"].startswith("torchrun --standalone --nproc_per_node 4 -m stages.")
    assert stages["distill"]["do"]["cmd"].startswith("torchrun --standalone --nproc_per_node 4 -m stages.distill")
    assert stages["prepare"]["cmd"] == "python -m stages.prepare"  # data work stays one process


@pytest.mark.parametrize("launcher, needle", [("srun python", "must start with one of"),
                                              ("accelerate --num_processes 2", "accelerate launch"),
                                              ("python '", "not a shell command")])
def test_bad_launcher_is_one_line(launcher, needle):
    with pytest.raises(MtkdError, match=needle) as info:
        validate_params(_params(launcher=launcher))
    assert "runtime.launcher" in str(info.value) and "\n" not in str(info.value)


# --- DVCLive curves -----------------------------------------------------------------------------

def test_curves_become_dvclive_metrics_and_plots(tmp_path):
    from mtkd.curves import write_curves

    rows = [{"task": "rt", "seed": s, "epoch": e, "step": 4 * e, "train_loss": 1.0 / (e + s), "val_accuracy": 0.5 + e / 10}
            for e in (1, 2) for s in (0, 1)]
    write_curves(tmp_path / "live", rows, lambda r: f"{r['task']}/seed{r['seed']}/")
    summary = json.loads((tmp_path / "live/metrics.json").read_text())
    assert summary["step"] == 8 and summary["epoch"] == 2
    assert summary["rt"]["seed1"] == {"train_loss": pytest.approx(1 / 3), "val_accuracy": pytest.approx(0.7)}
    tsv = (tmp_path / "live/plots/metrics/rt/seed0/train_loss.tsv").read_text().split()
    assert tsv == ["step", "train_loss", "4", "1.0", "8", "0.5"]
    assert not list(tmp_path.glob(".live.*"))  # published by rename, no temporary left


# --- two processes on the CPU (gloo) ------------------------------------------------------------

@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Tiny repo with teachers and logits, the student at batch 16 in fp32 (so two processes at 8 compare)."""
    raw = tiny_params(teachers=("tiny_bert", "tfidf_lr"), strategies=("none", "average", "gating"), max_examples=400)
    raw["student"]["per_device_train_batch_size"] = 16
    raw["runtime"]["bf16"] = False
    repo = make_repo(tmp_path_factory.mktemp("dist") / "repo", raw)
    run("dvc repro distill@average distill@gating", repo)
    return repo, raw


def _torchrun(repo, module_args: str):
    return run(f"{sys.executable} -m torch.distributed.run --standalone --nproc_per_node 2 -m {module_args}", repo,
               MTKD_NUM_THREADS="1", OMP_NUM_THREADS="1")


@pytest.mark.parametrize("strategy", ["average", "gating"])
def test_two_process_distillation_matches_one_process(trained, strategy):
    repo, raw = trained
    one = json.loads((repo / f"metrics/distill/{strategy}.json").read_text())["rt"]
    with np.load(repo / f"predictions/{strategy}.npz") as npz:
        one_pred = {k: npz[k] for k in npz.files}
    raw = json.loads(json.dumps(raw))
    raw["student"]["per_device_train_batch_size"] = 8  # 2 processes x 8 = the same global batch of 16
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = _torchrun(repo, f"stages.distill --strategy {strategy}")
    assert proc.stdout.count(f"distill@{strategy} rt:") == 1  # one process reports and writes
    two = json.loads((repo / f"metrics/distill/{strategy}.json").read_text())["rt"]
    with np.load(repo / f"predictions/{strategy}.npz") as npz:
        two_pred = {k: npz[k] for k in npz.files}
    assert one_pred.keys() == two_pred.keys()
    for key in one_pred:
        if key.endswith("/ids"):
            assert (one_pred[key] == two_pred[key]).all()
        else:
            # Stated tolerance. Both runs see the same global batches in the same order and average
            # the same gradient, but the two processes draw their dropout masks from their own
            # copies of the seeded generator, so the trajectories differ by dropout noise (measured:
            # up to 0.008 in a probability on this tiny student): probabilities within 0.05.
            assert np.abs(softmax(one_pred[key]) - softmax(two_pred[key])).max() < 0.05, key
    for seed in one["seeds"]:
        assert one["seeds"][seed]["best_epoch"] == two["seeds"][seed]["best_epoch"]
        assert two["seeds"][seed]["test"]["accuracy"] == pytest.approx(one["seeds"][seed]["test"]["accuracy"], abs=3 / 60)


def test_two_process_extraction_scores_every_example_once_in_id_order(trained):
    repo, _ = trained
    path = repo / "logits/tiny_bert-rt.npz"
    with np.load(path) as npz:
        one = {k: npz[k] for k in npz.files}
    _torchrun(repo, "stages.extract_logits --teacher tiny_bert --task rt")
    with np.load(path) as npz:
        two = {k: npz[k] for k in npz.files}
    import pandas as pd

    for split in ("train", "validation", "test"):
        ids = pd.read_parquet(repo / f"data/prepared/rt/{split}.parquet")["id"].to_numpy(dtype=str)
        id_key = next(k for k in two if k.startswith(split) and k.endswith("ids"))
        logit_key = next(k for k in two if k.startswith(split) and k.endswith("logits"))
        assert (two[id_key] == ids).all() and len(set(two[id_key])) == len(ids)
        assert np.isfinite(two[logit_key]).all()
        np.testing.assert_allclose(two[logit_key], one[logit_key], atol=1e-5)


@pytest.mark.parametrize("strategy", ["prob_average", "likelihood_weighted", "calibrated_average"])
def test_strategies_beyond_the_seed_run_as_distill_stages(trained, strategy):
    """Each extra strategy is a named distill@ item: add it to distill.strategies, regenerate, repro."""
    repo, raw = trained
    raw = yaml.safe_load((repo / "params.yaml").read_text())
    raw["distill"]["strategies"] = [*raw["distill"]["strategies"], strategy]
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    run([sys.executable, "-m", "mtkd.pipeline"], repo)
    proc = run(f"dvc repro distill@{strategy}", repo, MTKD_NUM_THREADS="1")
    assert f"Running stage 'distill@{strategy}'" in proc.stdout
    assert "Running stage 'train_teachers" not in proc.stdout  # teachers and logits are reused
    metrics = json.loads((repo / f"metrics/distill/{strategy}.json").read_text())["rt"]
    assert metrics["T"] == raw["distill"]["T"] and metrics["alpha"] == raw["distill"]["alpha"]
    fused = metrics["fidelity"]["fused"]
    assert 0.0 <= fused["agreement"]["mean"] <= 1.0 and fused["kl"]["mean"] >= 0.0


# --- runtime.bf16: auto ----------------------------------------------------------------------

@pytest.mark.parametrize("device,setting,expected", [
    ("cpu", "auto", True), ("cuda", "auto", False),
    ("cpu", False, False), ("cuda", True, True), ("cpu", True, True), ("cuda", False, False)])
def test_bf16_auto_is_on_for_the_cpu_only(device, setting, expected):
    from mtkd.engine import Engine

    engine = Engine.__new__(Engine)  # no Accelerator: only the device matters here
    engine.device = torch.device(device)
    assert engine.use_bf16(setting) is expected


def test_bf16_auto_autocasts_on_the_cpu():
    from mtkd.engine import get_engine

    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with get_engine().autocast("auto"):
        assert (a @ b).dtype == torch.bfloat16
    with get_engine().autocast(False):
        assert (a @ b).dtype == torch.float32


def test_bf16_accepts_auto_and_booleans_only():
    for ok in ("auto", True, False):
        assert validate_params(_params(bf16=ok), "p.yaml").runtime.bf16 == ok
    with pytest.raises(MtkdError, match=r"^p.yaml: runtime.bf16: must be true, false or auto \(got 'yes please'\)$"):
        validate_params(_params(bf16="yes please"), "p.yaml")
