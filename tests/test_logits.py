import numpy as np
import pandas as pd
import pytest

from mtkd.errors import MtkdError
from mtkd.logits import load_logits, save_logits

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
