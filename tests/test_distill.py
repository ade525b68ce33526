"""mtkd.distill: one student per seed; seeds in worker processes give the same students as one after another."""

import numpy as np
import pytest
import torch

from mtkd.data import load_split, prepare_task
from mtkd.distill import distill_task
from mtkd.fusion import TeacherLogits, get_strategy
from mtkd.params import Data, validate_params

from tests.helpers import profile


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    meta = prepare_task(Data(tasks=["rt"], max_examples=160, validation_fraction=0.2, test_fraction=0.2), "rt", root / "rt")
    frames = {s: load_split(root, "rt", s) for s in ("train", "validation", "test")}
    g = np.random.default_rng(0)
    teachers = TeacherLogits(["a", "b"], {s: g.normal(size=(2, len(f), 2)).astype(np.float32) for s, f in frames.items()},
                             {"a": 0.7, "b": 0.6})
    return meta, frames, teachers


def params(threads: int, workers: int):
    raw = profile("tiny")
    raw["seeds"] = [0, 1, 2]
    raw["student"]["num_train_epochs"] = 1
    raw["runtime"].update(num_threads=threads, seed_workers=workers)
    return validate_params(raw)


@pytest.mark.parametrize("strategy", ["none", "average", "gating"])
def test_seed_workers_train_the_same_students_as_one_process(task, strategy):
    meta, frames, teachers = task
    entry = get_strategy(strategy, teachers.names)
    out = {}
    for threads, workers in ((1, 1), (2, 2)):
        p = params(threads, workers)
        torch.set_num_threads(1)  # what each of the two workers gets
        curves = []
        metrics, preds = distill_task(entry, entry.settings(p.distill), meta, frames,
                                      teachers if entry.uses_teachers else None, p, None, curves)
        out[workers] = (metrics, preds, curves)
    (m1, p1, c1), (m2, p2, c2) = out[1], out[2]
    assert m1 == m2 and c1 == c2
    assert sorted(p1) == sorted(p2) and all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert sorted(m1["seeds"]) == ["0", "1", "2"]
    torch.set_num_threads(2)


def test_same_seed_same_start_and_batch_order_for_every_strategy(task, monkeypatch):
    """Common random numbers (issue #12): seed s gives every strategy's student the same initial
    weights and the same batches in the same order, so comparisons can pair by seed."""
    import mtkd.distill as distill

    meta, frames, teachers = task
    seen = {}
    real_train = distill.train

    def recording_train(model, *args, seed, **kwargs):
        start = torch.cat([p.detach().flatten().float() for p in model.parameters()]).clone()
        batches = []
        kwargs["timer"] = lambda phase, idx: batches.append(np.asarray(idx).copy()) if phase == "batch" else None
        result = real_train(model, *args, seed=seed, **kwargs)
        seen.setdefault(name, {})[seed] = (start, batches)
        return result

    monkeypatch.setattr(distill, "train", recording_train)
    p = params(1, 1)
    for name in ("none", "average", "single_a"):
        entry = get_strategy(name, teachers.names)
        distill_task(entry, entry.settings(p.distill), meta, frames, teachers if entry.uses_teachers else None, p, None, [])
    for seed in (0, 1, 2):
        start, batches = seen["none"][seed]
        for name in ("average", "single_a"):
            other_start, other_batches = seen[name][seed]
            assert torch.equal(start, other_start), (name, seed)
            assert len(batches) == len(other_batches) > 0
            assert all(np.array_equal(a, b) for a, b in zip(batches, other_batches)), (name, seed)
    assert not torch.equal(seen["none"][0][0], seen["none"][1][0])  # and another seed is another start

