import subprocess
import sys
from pathlib import Path

import yaml

from mtkd.params import load_params
from mtkd.pipeline import main, render

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_matches_params():
    assert main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(ROOT / "dvc.yaml")]) == 0


def test_stale_dvc_yaml_is_reported(tmp_path, capsys):
    out = tmp_path / "dvc.yaml"
    out.write_text("stages: {}\n")
    assert main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_none_does_not_read_temperature_or_alpha():
    stages = yaml.safe_load(render(load_params(ROOT / "params.yaml")))["stages"]
    items = stages["distill"]["foreach"]
    assert not any(r.startswith("distill") for r in items["none"]["reads"])
    assert {"distill.T", "distill.alpha"} <= set(items["average"]["reads"])
    assert "distill.gating" in items["gating"]["reads"]
    # Every teacher × task logits file is a dependency of distill.
    deps = stages["distill"]["do"]["deps"]
    for t in ("minilm_l6", "minilm_l3", "tfidf_lr"):
        assert f"logits/{t}-rt.npz" in deps
