from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mtkd.errors import MtkdError
from mtkd.io import sha256_tree
from mtkd.logits import load_logits, save_logits
from tests.checkpoints import one_line, truncate
from tests.helpers import ROOT

FRAME = pd.DataFrame({"id": ["x1", "x2", "x3"], "label": [0, 1, 1]})
Z = np.array([[1.0, -1.0], [0.0, 2.0], [0.5, 0.5]], dtype=np.float32)


def saved(tmp_path, ids=None, z=None, num_classes=2, fp="abc"):
    path = tmp_path / "t-rt.npz"
    np.savez(path, **{"test/ids": np.asarray(ids if ids is not None else FRAME["id"], dtype=str),
                      "test/logits": z if z is not None else Z,
                      "meta": np.asarray(f'{{"num_classes": {num_classes}, "data_fingerprint": {{"test": "{fp}"}}}}')})
    return path


def test_round_trip(tmp_path):
    path = tmp_path / "a.npz"
    save_logits(path, teacher="t", task="rt", num_classes=2, splits={"test": (FRAME["id"].tolist(), Z)},
                provenance={"data_fingerprint": {"test": "abc"}})
    np.testing.assert_array_equal(load_logits(path, "test", FRAME, 2, "abc"), Z)
    assert not list(tmp_path.glob(".*tmp"))


@pytest.mark.parametrize("kwargs,message", [
    (dict(ids=["x2", "x1", "x3"]), "right set in a different order"),
    (dict(ids=["x1", "x2", "zz"]), "1 missing, 1 unknown"),
    (dict(ids=["x1", "x1", "x3"]), "1 duplicated"),
    (dict(z=Z[:2], ids=["x1", "x2"]), "1 missing"),
    (dict(z=np.array([[np.nan, 0], [0, 1], [1, 1]], dtype=np.float32)), "1 rows of logits are not finite"),
    (dict(z=np.zeros((3, 3), dtype=np.float32), num_classes=3), "recorded for 3 classes, the task has 2"),
    (dict(z=np.zeros((3, 3), dtype=np.float32)), "logits have 3 classes, the task has 2"),
    (dict(fp="old"), "stale logits"),
])
def test_bad_logits_are_refused(tmp_path, kwargs, message):
    path = saved(tmp_path, **kwargs)
    with pytest.raises(MtkdError, match=message) as err:
        load_logits(path, "test", FRAME, 2, "abc")
    assert str(path) in str(err.value)


def test_missing_and_pickled_files_are_refused(tmp_path):
    with pytest.raises(MtkdError, match="logits file not found"):
        load_logits(tmp_path / "none.npz", "test", FRAME, 2)
    path = tmp_path / "p.npz"
    np.savez(path, **{"test/ids": np.array(["x1", "x2", "x3"], dtype=object), "test/logits": Z, "meta": np.asarray("{}")})
    with pytest.raises(MtkdError, match="not a readable logits file|no 'test' split"):
        load_logits(path, "test", FRAME, 2)


def test_save_refuses_bad_arrays(tmp_path):
    with pytest.raises(MtkdError, match="not finite"):
        save_logits(tmp_path / "b.npz", teacher="t", task="rt", num_classes=2,
                    splits={"test": (["a"], np.array([[np.inf, 0.0]]))}, provenance={})
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------------------------
# Logits files beyond test_logits.py: the file itself, and their provenance.


def real_logits(work, tmp_path, checkpoint_sha256="abc") -> Path:
    path = tmp_path / "t-rt.npz"
    frames, meta = work["frames"], work["meta"]
    save_logits(path, teacher="t", task="rt", num_classes=2,
                splits={s: (f["id"].tolist(), np.zeros((len(f), 2), np.float32)) for s, f in frames.items()},
                provenance={"data_fingerprint": {s: meta["splits"][s]["fingerprint"] for s in frames},
                            "checkpoint_sha256": checkpoint_sha256})
    return path


def test_truncated_logits_file(work, tmp_path):
    path = real_logits(work, tmp_path)
    truncate(path, 0.6)
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", work["frames"]["test"], 2)
    one_line(err, str(path), "not a readable logits file")


def test_logits_without_the_split(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    save_logits(path, teacher="t", task="rt", num_classes=2, provenance={},
                splits={"train": (work["frames"]["train"]["id"].tolist(), np.zeros((len(work["frames"]["train"]), 2)))})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", work["frames"]["test"], 2)
    one_line(err, str(path), "no 'test' split (has: train)")


def test_logits_without_metadata(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    f = work["frames"]["test"]
    np.savez(path, **{"test/ids": f["id"].to_numpy(str), "test/logits": np.zeros((len(f), 2), np.float32)})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", f, 2)
    one_line(err, str(path), "no metadata")


def test_logits_one_dimensional(work, tmp_path):
    path = tmp_path / "t-rt.npz"
    f = work["frames"]["test"]
    np.savez(path, **{"test/ids": f["id"].to_numpy(str), "test/logits": np.zeros(len(f), np.float32),
                      "meta": np.asarray('{"num_classes": 2}')})
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", f, 2)
    one_line(err, str(path), "logits shape")


def test_logits_from_another_checkpoint_are_stale(work, tmp_path):
    ckpt = work["ckpt"]["sklearn"]
    path = real_logits(work, tmp_path, checkpoint_sha256=sha256_tree(ckpt))
    f = work["frames"]["test"]
    assert load_logits(path, "test", f, 2, checkpoint_dir=ckpt).shape == (len(f), 2)
    stale = real_logits(work, tmp_path, checkpoint_sha256="0" * 64)
    with pytest.raises(MtkdError) as err:
        load_logits(stale, "test", f, 2, checkpoint_dir=ckpt)
    one_line(err, str(stale), str(ckpt), "stale logits")
    # Logits pulled without their checkpoint are not second-guessed.
    assert load_logits(stale, "test", f, 2, checkpoint_dir=tmp_path / "absent").shape == (len(f), 2)


def test_extract_logits_records_provenance():
    source = (ROOT / "stages/extract_logits.py").read_text()
    assert '"data_fingerprint"' in source and '"checkpoint_sha256": sha256_tree(model_dir)' in source


def test_each_split_records_its_arrays_hash(tmp_path):
    from mtkd.logits import array_sha256, read_meta

    path = tmp_path / "a.npz"
    save_logits(path, teacher="t", task="rt", num_classes=2, splits={"test": (FRAME["id"].tolist(), Z)},
                provenance={"data_fingerprint": {"test": "abc"}})
    meta = read_meta(path)
    assert meta["logits_sha256"] == {"test": array_sha256(Z)} and len(meta["logits_sha256"]["test"]) == 64
    assert array_sha256(Z) != array_sha256(Z.reshape(2, 3))  # the shape is part of it


def test_logits_edited_in_place_with_ids_intact_are_refused(tmp_path):
    path = tmp_path / "t-rt.npz"
    save_logits(path, teacher="t", task="rt", num_classes=2, splits={"test": (FRAME["id"].tolist(), Z)},
                provenance={"data_fingerprint": {"test": "abc"}})
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["test/logits"] = arrays["test/logits"].copy()
    arrays["test/logits"][1, 0] += 0.25  # same ids, same shape, one value changed
    np.savez(path, **arrays)
    with pytest.raises(MtkdError) as err:
        load_logits(path, "test", FRAME, 2, "abc")
    text = str(err.value)
    assert "\n" not in text and str(path) in text and "differ from those extract_logits wrote" in text
