import subprocess
import sys
from pathlib import Path

import yaml

import pytest

from mtkd.errors import MtkdError
from mtkd.fusion import get_strategy
from mtkd.params import apply_profile, load_params, validate_params
from mtkd.pipeline import TEMPLATE, load_stage_params, main, render

ROOT = Path(__file__).resolve().parents[1]


def test_committed_dvc_yaml_matches_params():
    assert main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(ROOT / "dvc.yaml")]) == 0


def test_stale_dvc_yaml_is_reported(tmp_path, capsys):
    out = tmp_path / "dvc.yaml"
    out.write_text("stages: {}\n")
    assert main(["--check", "--params", str(ROOT / "params.yaml"), "--out", str(out)]) == 1
    assert "stale" in capsys.readouterr().err


def test_none_does_not_read_temperature_or_alpha():
    params = load_params(ROOT / "params.yaml")
    settings = {s: get_strategy(s).settings(params.distill) for s in params.distill.strategies}
    assert settings["none"] == {}
    assert {"T", "alpha"} <= set(settings["average"]) and "gating" not in settings["average"]
    assert settings["gating"]["gating"] == params.distill.gating.model_dump()
    stages = yaml.safe_load(render(params))["stages"]
    # Each distill item depends on its own settings file, written by `configure` from `distill`.
    assert stages["configure"]["params"] == ["distill"]
    assert [next(iter(o)) for o in stages["configure"]["outs"]] == [f"configs/distill/{s}.yaml" for s in params.distill.strategies]
    deps = stages["distill"]["do"]["deps"]
    assert "configs/distill/${item}.yaml" in deps
    assert not any(str(p).startswith("distill") for p in stages["distill"]["do"]["params"])
    # Every teacher × task logits file is a dependency of distill.
    for t in ("minilm_l6", "minilm_l3", "tfidf_lr"):
        assert f"logits/{t}-rt.npz" in deps


def test_template_is_yaml_and_only_marked_lists_are_generated():
    template = yaml.safe_load(TEMPLATE.read_text())
    rendered = yaml.safe_load(render(load_params(ROOT / "params.yaml")))
    assert set(template["stages"]) - {"transfer"} == set(rendered["stages"])  # `# when: transfer`: not by default
    for name, stage in template["stages"].items():
        if name == "transfer":
            continue
        body, out = stage.get("do", stage), rendered["stages"][name].get("do", rendered["stages"][name])
        # commands are DVC's templating, except the launcher, which the generator writes in
        assert body["cmd"].replace("${runtime.launcher}", "python") == out["cmd"]
        for key in ("deps", "params", "outs", "metrics", "plots"):
            kept = [e for e in body.get(key, []) if not (isinstance(e, str) and e.startswith("<"))]
            assert all(e in out.get(key, []) for e in kept), (name, key)


def test_profiles_are_short_overrides_of_params_yaml(tmp_path):
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for path in sorted((ROOT / "profiles").glob("*.yaml")):
        patch = yaml.safe_load(path.read_text())
        assert len(path.read_text().splitlines()) < len((ROOT / "params.yaml").read_text().splitlines()), path
        merged = apply_profile(base, patch)
        validate_params(merged)
        assert all(merged.get(k) == v for k, v in base.items() if k not in patch), path  # the rest is params.yaml's
    params_file = tmp_path / "params.yaml"
    params_file.write_text((ROOT / "params.yaml").read_text())
    assert main(["--params", str(params_file), "--out", str(tmp_path / "dvc.yaml"),
                 "--profile", str(ROOT / "profiles" / "sentiment.yaml")]) == 0
    assert load_params(params_file).data.tasks == ["rt", "tweets", "amazon", "nyt"]
    assert load_params(params_file).teachers == load_params(ROOT / "params.yaml").teachers


def test_apply_profile_merges_deletes_and_replaces():
    base = {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2]}
    assert apply_profile(base, {"b": {"y": None, "z": 3}, "c": [3], "d": {"e": 1}}) == \
        {"a": 1, "b": {"x": 1, "z": 3}, "c": [3], "d": {"e": 1}}
    assert base == {"a": 1, "b": {"x": 1, "y": 2}, "c": [1, 2]}  # untouched
    assert list(apply_profile({"t": {"p": 1, "q": 2}}, {"t": {"p": None, "r": 3, "q": 4}})["t"]) == ["q", "r"]
    with pytest.raises(MtkdError, match="must be a YAML mapping"):
        apply_profile(base, [1, 2], "profiles/x.yaml")


def test_a_stage_refuses_a_stale_dvc_yaml(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (tmp_path / "dvc.yaml").write_text(render(validate_params(params)))
    assert load_stage_params(tmp_path / "params.yaml").distill.strategies == params["distill"]["strategies"]
    params["distill"]["strategies"].remove("gating")  # one strategy fewer, dvc.yaml not regenerated
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    with pytest.raises(MtkdError, match=r"dvc.yaml is stale for params.yaml .*run: python -m mtkd.pipeline"):
        load_stage_params(tmp_path / "params.yaml")
    params["distill"]["T"] = 9.0  # a T change leaves dvc.yaml valid (DVC's own templating)
    params["distill"]["strategies"].append("gating")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert load_stage_params(tmp_path / "params.yaml").distill.T == 9.0


def test_a_transfer_student_brings_the_transfer_stage_and_its_own_dependencies():
    from mtkd.params import validate_params
    from mtkd.pipeline import FILLER

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["distill"]["strategies"] = ["none", "single_tfidf_lr", "average", "average+transfer"]
    raw["distill"]["transfer"]["unlabelled_file"] = "data/extra.txt"
    text = render(validate_params(raw))
    stages = yaml.safe_load(text)["stages"]
    assert list(stages) == ["prepare", "train_teachers", "transfer", "extract_logits", "configure", "distill", "analyze"]
    assert "# when:" not in text and stages["transfer"]["foreach"] == "${data.tasks}"
    assert stages["transfer"]["do"]["outs"] == ["data/transfer/${item}.parquet"]
    assert "data/extra.txt" in stages["transfer"]["do"]["deps"]
    assert "data/transfer/${item.task}.parquet" in stages["extract_logits"]["deps"]
    assert "logits/transfer/${item.teacher}-${item.task}.npz" in stages["extract_logits"]["outs"]
    items = stages["distill"]["foreach"]
    files = ["data/transfer/rt.parquet", *(f"logits/transfer/{t}-rt.npz" for t in ("minilm_l6", "minilm_l3", "tfidf_lr"))]
    assert [v for k, v in items["average+transfer"].items() if k != "name"] == files
    for s in ("none", "single_tfidf_lr", "average"):  # a student on train alone reads no transfer file
        assert set(v for k, v in items[s].items() if k != "name") == {FILLER} and items[s]["name"] == s
    do = stages["distill"]["do"]
    assert do["cmd"] == "python -m stages.distill --strategy ${item.name}" and "${item}" not in text.split("distill:")[-1]
    assert [f"${{item.transfer{k}}}" for k in range(4)] == [d for d in do["deps"] if str(d).startswith("${item.transfer")]


def test_a_stage_with_an_unknown_condition_is_refused(tmp_path):
    template = tmp_path / "pipeline.yaml"
    template.write_text(TEMPLATE.read_text().replace("# when: transfer", "# when: moon"))
    with pytest.raises(MtkdError, match="stage 'transfer' has an unknown condition 'moon'"):
        render(load_params(ROOT / "params.yaml"), template)


def test_an_optional_key_the_params_file_leaves_out_is_not_a_stage_param():
    # DVC refuses a listed params key that params.yaml lacks ("Parameters ... are missing"), and a
    # user's or a test's own params file may leave distill.fused_teachers at its default.
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert "fused_teachers" in raw["distill"]
    listed = yaml.safe_load(render(validate_params(raw)))["stages"]["analyze"]["params"]
    assert "distill.fused_teachers" in listed
    del raw["distill"]["fused_teachers"]
    params = validate_params(raw)
    assert params.distill.fused_teachers is None
    listed = yaml.safe_load(render(params))["stages"]["analyze"]["params"]
    assert listed == ["seeds", "data.tasks", "distill.strategies"]
    raw["distill"]["fused_teachers"] = ["minilm_l6", "minilm_l3"]
    assert "distill.fused_teachers" in yaml.safe_load(render(validate_params(raw)))["stages"]["analyze"]["params"]
    # The same for runtime (every training stage lists it) and a transfer student's block left to its defaults.
    del raw["runtime"], raw["distill"]["transfer"]
    raw["distill"]["strategies"] = ["none", "average", "average+transfer"]
    stages = yaml.safe_load(render(validate_params(raw)))["stages"]
    listed = [p for stage in stages.values() for p in stage.get("do", stage).get("params", [])]
    assert "student" in listed and not {"runtime", "distill.transfer"} & {str(p) for p in listed}
    assert not [p for p in listed if str(p).startswith("runtime")]
    assert stages["transfer"]["do"]["params"] == ["student"]


def test_teachers_list_only_the_runtime_keys_they_read():
    # Changing a student's runtime key (seed_workers) must not retrain a teacher or re-extract logits.
    stages = yaml.safe_load(render(load_params(ROOT / "params.yaml")))["stages"]
    teacher, extraction = stages["train_teachers"]["params"], stages["extract_logits"]["params"]
    assert [p for p in teacher if p.startswith("runtime")] == ["runtime.num_threads", "runtime.bf16",
                                                                "runtime.length_bucketing", "runtime.compact_vocabulary"]
    assert [p for p in extraction if p.startswith("runtime")] == ["runtime.num_threads", "runtime.bf16"]
    assert "runtime" in stages["distill"]["do"]["params"]  # a student reads every runtime key
