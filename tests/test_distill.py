"""mtkd.distill: one student per seed; seeds in worker processes give the same students as one after another."""

import numpy as np
import pytest
import torch

from mtkd.data import load_split, prepare_task
from mtkd.distill import SeedRun, distill_task, run_seeds, seed_threads
from mtkd.models import load_tokenizer
from mtkd.training import encode
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


def _by_seed(metrics, preds, curves, seed):
    return (metrics["seeds"][str(seed)], {k: v for k, v in preds.items() if k.endswith(f"seed{seed}")},
            [c for c in curves if c["seed"] == seed])


@pytest.mark.parametrize("strategy", ["none", "average", "gating"])
def test_seed_workers_train_the_same_students_as_one_process(task, strategy):
    """3 seeds on 2 one-thread workers: seeds 0 and 1 side by side, then seed 2 with both threads;
    each equals the same seed trained in one process with that many threads."""
    meta, frames, teachers = task
    entry = get_strategy(strategy, teachers.names)
    out = {}
    for threads, workers in ((1, 1), (2, 1), (2, 2)):
        p = params(threads, workers)
        torch.set_num_threads(threads if workers == 1 else 1)
        curves = []
        metrics, preds = distill_task(entry, entry.settings(p.distill), meta, frames,
                                      teachers if entry.uses_teachers else None, p, None, curves)
        out[threads, workers] = (metrics, preds, curves)
    torch.set_num_threads(2)
    workers_run = out[2, 2]
    for seed, one_process in ((0, out[1, 1]), (1, out[1, 1]), (2, out[2, 1])):
        (m1, p1, c1), (m2, p2, c2) = _by_seed(*one_process, seed), _by_seed(*workers_run, seed)
        assert m1 == m2 and c1 == c2
        assert sorted(p1) == sorted(p2) and all(np.array_equal(p1[k], p2[k]) for k in p1)
    assert sorted(workers_run[0]["seeds"]) == ["0", "1", "2"]
    assert {k for k in workers_run[1] if "seed" not in k} == {k for k in out[1, 1][1] if "seed" not in k}


@pytest.mark.parametrize(("runs", "workers", "threads", "plan"), [
    (5, 2, 1, [1, 1, 1, 1, 2]),      # the default: seeds 0-3 two at a time, seed 4 with both threads
    (4, 2, 1, [1, 1, 1, 1]),
    (3, 3, 1, [1, 1, 1]),
    (7, 4, 2, [2, 2, 2, 2, 2, 2, 2]),  # 3 left over share 8 threads: 2 each
    (6, 4, 1, [1, 1, 1, 1, 2, 2]),
    (1, 2, 1, [2]),
])
def test_seed_threads_gives_leftover_runs_every_thread(runs, workers, threads, plan):
    assert seed_threads(runs, workers, threads) == plan


def test_the_leftover_seed_trains_with_every_thread(task):
    meta, frames, _ = task
    p = params(2, 2)
    entry = get_strategy("none", [])
    tokenizer = load_tokenizer(p.student, key="student")
    encoded = {s: encode(tokenizer, f, p.student.max_seq_length) for s, f in frames.items()}
    labels = {s: f["label"].to_numpy(dtype=np.int64) for s, f in frames.items()}
    runs = [SeedRun("none", [], entry.settings(p.distill), meta, labels, encoded, None, p.student, p.runtime, seed, None)
            for seed in p.seeds]
    results = run_seeds(runs, workers=2, threads=1)
    assert [(r.seed, r.threads) for r in results] == [(0, 1), (1, 1), (2, 2)]
    assert all(r.seconds > 0 for r in results)


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

