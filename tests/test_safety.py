"""Static and loading safety: nothing we load is unpickled; trust_remote_code only when a param says so;
every output is written through atomic_path."""

from __future__ import annotations

import ast

import pytest

from mtkd.params import HFTeacher, load_params
from tests.checkpoints import TINY_BERT, predict
from tests.helpers import ROOT


# --------------------------------------------------------------------------------------------
# Safe loading: nothing we load is unpickled; trust_remote_code only when a param says so.

SOURCES = sorted([*(ROOT / "mtkd").rglob("*.py"), *(ROOT / "stages").glob("*.py")])
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def calls(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
            yield name, node, {k.arg: k.value for k in node.keywords}


def test_no_pickle_module_is_imported():
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                names = {(node.module or "").split(".")[0]}
            else:
                continue
            assert not names & PICKLE_MODULES, f"{path}: imports {names & PICKLE_MODULES}"


def test_every_load_call_refuses_pickles():
    for path in SOURCES:
        for name, node, kw in calls(ast.parse(path.read_text())):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") in ("np", "numpy"):
                assert isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False, where
            if name == "load" and isinstance(node.func, ast.Attribute) and getattr(node.func.value, "id", "") == "torch":
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, where
            assert name not in ("read_pickle", "load_pickle", "Unpickler"), where


def test_trust_remote_code_is_never_hard_coded_on():
    seen = 0
    for path in SOURCES:
        for name, node, kw in calls(ast.parse(path.read_text())):
            if "trust_remote_code" in kw:
                seen += 1
                value = kw["trust_remote_code"]
                assert not (isinstance(value, ast.Constant) and value.value is True), f"{path}:{node.lineno}"
    assert seen >= 4
    assert HFTeacher(**TINY_BERT).trust_remote_code is False
    assert load_params(ROOT / "params.yaml").student.trust_remote_code is False


def test_teacher_loading_passes_the_safety_flags(work, monkeypatch):
    import transformers

    seen = []
    real_model, real_tok = transformers.AutoModelForSequenceClassification.from_pretrained, transformers.AutoTokenizer.from_pretrained

    def spy(real):
        def wrapped(*args, **kwargs):
            seen.append(kwargs)
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(transformers.AutoModelForSequenceClassification, "from_pretrained", spy(real_model))
    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", spy(real_tok))
    predict(work, "hf", work["ckpt"]["hf"])
    assert [k["trust_remote_code"] for k in seen] == [False, False]
    assert seen[0]["use_safetensors"] is True
    seen.clear()
    predict(work, "hf", work["ckpt"]["hf"], trust_remote_code=True)  # only when the teacher's param says so
    assert [k["trust_remote_code"] for k in seen] == [True, True]


def test_teachers_load_without_any_unpickling(work, monkeypatch):
    import pickle

    import torch

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling attempted")

    for name in ("load", "loads"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    for kind in ("hf", "sklearn"):
        assert predict(work, kind, work["ckpt"][kind])["test"].shape[1] == 2


@pytest.mark.parametrize("kind,allowed", [("hf", {".safetensors", ".json", ".txt"}), ("sklearn", {".safetensors", ".json"})])
def test_checkpoints_are_safetensors_and_json_only(work, kind, allowed):
    files = [p for p in work["ckpt"][kind].rglob("*") if p.is_file()]
    assert {p.suffix for p in files} <= allowed, files
    assert (work["ckpt"][kind] / "model.safetensors").is_file()


# --------------------------------------------------------------------------------------------
# Every output is written through atomic_path (temp file, then rename).

WRITERS = {"write_text", "write_bytes", "save_pretrained", "to_parquet", "save_file", "savez", "savez_compressed",
           "to_csv", "dump", "save", "write_html", "savefig", "copyfile", "copy", "copytree", "to_json"}


def test_every_write_goes_through_atomic_path():
    checked = 0
    for path in SOURCES:
        if path.name == "io.py":
            continue  # the module that implements atomic_path
        tree = ast.parse(path.read_text())
        parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
        for name, node, kw in calls(tree):
            if name not in WRITERS or not isinstance(node.func, ast.Attribute):
                continue
            if name == "to_csv" and not node.args and "path_or_buf" not in kw:
                continue  # to_csv() returning a string
            if name in ("copy", "save", "dump") and getattr(node.func.value, "id", "") not in ("shutil", "torch", "json", "np"):
                continue  # dict.copy(), DataFrame.copy() …
            up, inside = node, False
            while up in parents:
                up = parents[up]
                if isinstance(up, ast.With) and any(
                        isinstance(i.context_expr, ast.Call) and getattr(i.context_expr.func, "id", getattr(i.context_expr.func, "attr", "")) == "atomic_path"
                        for i in up.items):
                    inside = True
                    break
            assert inside, f"{path.relative_to(ROOT)}:{node.lineno}: {name}() outside `with atomic_path(...)`"
            checked += 1
    assert checked >= 8  # the checkpoint, parquet, CSV and report writers were all found
