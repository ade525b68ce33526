"""Timed runs of the library's own training loop.

Every "ours" number comes from :func:`mtkd.training.train` itself, on whatever device the
library runs (``mtkd.engine``: the CPU, or CUDA when torch sees one): its ``timer`` hook
feeds a :class:`~bench.common.StepClock` as each step ends (and, for the profile, as each
phase of a step ends: ``batch``, ``forward``, ``backward``, ``clip``, ``optimizer``). There is
no copy of the loop here. Inference is :func:`mtkd.training.predict`, called directly.
"""

from __future__ import annotations

import numpy as np

from bench.common import NUM_CLASSES, StepClock


def subset(enc, n: int | None, seed: int = 0):
    """The first ``n`` examples of a random permutation (or all), as an Encoded split."""
    from mtkd.training import Encoded

    if n is None or n >= len(enc):
        return enc
    idx = np.sort(np.random.default_rng(seed).choice(len(enc), n, replace=False))
    return Encoded([enc.ids[i] for i in idx], [enc.input_ids[i] for i in idx],
                   None if enc.token_type_ids is None else [enc.token_type_ids[i] for i in idx], enc.labels[idx])


def _with(args, **update):
    """``args`` (a params model, or a SimpleNamespace without pydantic) with some fields changed."""
    if hasattr(args, "model_copy"):
        return args.model_copy(update=update)
    import copy

    out = copy.copy(args)
    for k, v in update.items():
        setattr(out, k, v)
    return out


def library_train(setup, model, enc, args, *, seed: int, bucketing: bool, bf16: bool, objective, clock: StepClock,
                  needs_hidden: bool = False, extra_modules=None, extra_lr=None, val_enc=None,
                  compact_vocabulary: bool = False, also=None):
    """``mtkd.training.train`` for one epoch over ``enc``, timed by ``clock`` through the loop's ``timer``.

    ``objective(logits, hidden, idx, y, progress)`` is the library's objective signature (a
    ``Distiller.loss``); the time spent inside it goes to ``clock.obj``. Validation runs once,
    after the last step (``evaluations_per_epoch=1``), outside the timed steps. With
    ``compact_vocabulary``, the model trains on :class:`mtkd.models.CompactVocabulary` as
    ``mtkd.distill.train_seed`` does under ``runtime.compact_vocabulary`` (the rows of every split
    of the task), and the full embedding is restored afterwards. ``also(phase, idx)`` is called
    after the clock's own timer (e.g. to start and stop a profiler between steps).
    """
    from mtkd.training import train

    val = val_enc if val_enc is not None else subset(setup.encoded["validation"], 64)
    pad_id, vocab = setup.pad_id, None
    if compact_vocabulary:
        from mtkd.engine import get_engine
        from mtkd.models import CompactVocabulary, special_ids

        # On the device first: restore() writes the compact rows back into the full matrix,
        # which must be on the same device (train() would move only the compact one).
        model.to(get_engine().device)
        vocab = CompactVocabulary(model, {**setup.encoded, "bench_train": enc, "bench_validation": val},
                                  special_ids(setup.tokenizer))
        enc, val, pad_id = vocab.encoded["bench_train"], vocab.encoded["bench_validation"], vocab.pad_id(pad_id)
    tick = clock.timer(enc.lengths)
    timer = tick if also is None else (lambda phase, idx: (tick(phase, idx), also(phase, idx)))
    result = None
    try:
        result = train(model, enc, val, _with(args, evaluations_per_epoch=1), seed=seed, pad_id=pad_id,
                       num_classes=NUM_CLASSES, primary_metric="accuracy", bf16=bf16, bucketing=bucketing,
                       objective=clock.objective(objective), needs_hidden=needs_hidden, extra_modules=extra_modules,
                       extra_lr=extra_lr, desc="bench", timer=timer)
    finally:
        if vocab is not None:  # the full matrix again, so the next run can load the shared init
            vocab.restore(result.weight_decay_factor if result is not None else 1.0)
    return result
