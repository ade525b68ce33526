"""Fusion overhead per student step, each strategy vs ``single_*``.

Every registered fusion strategy that can run with the bench's three teachers (from
:func:`mtkd.fusion.strategy_names`, not a hand list), plus the registry's first single-teacher
strategy as the baseline, is built exactly as :func:`mtkd.distill.train_seed` builds it:
``get_strategy(name, teachers).distiller(teachers, labels, strategy.settings(params.distill))``
with the params of ``params.yaml`` validated by :func:`mtkd.params.validate_params`; then per
run ``distiller.start(seed, hidden)`` (the modules that train with the student, e.g. the
gate) and the library's :func:`mtkd.training.train` with ``objective=distiller.loss``,
``needs_hidden``, ``extra_modules`` and ``modules_learning_rate``, under the ``runtime``
settings distill uses (bf16, bucketing, compact vocabulary). Building the distiller (the
fusion context and, for fixed fusions, the train targets) is a one-off cost, reported apart.
Every strategy trains the same student init on the same batches (same seed). The teachers'
logits are seeded random numbers: values do not change the cost.

Overhead = median over steps of (step time of the strategy / step time of single) − 1,
each step's time being the minimum over interleaved rounds (rounds filter out noise from
other processes; pairing by step removes the batch-length variation). The time spent
inside the objective itself (``Distiller.loss``) is reported too: it is the low-noise view.
"""

from __future__ import annotations

import time

import numpy as np

from bench.common import TEACHERS, StepClock, default_params, guarded, train_args
from bench.loop import library_train, subset
from bench.throughput import synthetic_teacher_logits

VALIDATION_METRIC = {"minilm_l6": 0.80, "minilm_l3": 0.78, "tfidf_lr": 0.74}


def strategies(teachers: list[str], distill) -> tuple[list[str], dict[str, str]]:
    """(the registry's single-teacher baseline + every fusion strategy valid for ``teachers``, skipped → why)."""
    from mtkd.errors import MtkdError
    from mtkd.fusion import get_strategy, strategy_names

    names = strategy_names(teachers)
    single = next(n for n in names if get_strategy(n, teachers).kind == "single")  # single_<first teacher>
    keep, skipped = [single], {}
    for name in names:
        strategy = get_strategy(name, teachers)
        if strategy.kind != "multi":
            continue
        try:
            strategy.check(teachers)
            strategy.check_settings(distill, teachers)
        except MtkdError as exc:
            skipped[name] = str(exc)
            continue
        keep.append(name)
    return keep, skipped


def run(setup, opts) -> dict:
    from mtkd.fusion import TeacherLogits, fusion_context, get_strategy
    from mtkd.params import validate_params

    raw = default_params()
    params = validate_params(raw, "params.yaml")
    runtime = params.runtime
    names, skipped = strategies(TEACHERS, params.distill)
    warm = opts.warmup
    steps = opts.steps if opts.steps_explicit or not opts.quick else 15
    rounds = 2 if opts.quick else 3
    enc = subset(setup.encoded["train"], (warm + steps) * 32, seed=5)
    val = setup.encoded["validation"]
    labels = {"train": enc.labels, "validation": val.labels}
    z = {"train": synthetic_teacher_logits(len(enc), seed=1).float().numpy(),
         "validation": synthetic_teacher_logits(len(val), seed=2).float().numpy()}
    teachers = TeacherLogits(TEACHERS, z, {t: VALIDATION_METRIC.get(t, 0.75) for t in TEACHERS})

    t0 = time.perf_counter()
    fusion_context(teachers, labels["train"], labels["validation"])  # what every distiller builds first
    t_ctx = time.perf_counter() - t0
    built, distillers, one_off = {}, {}, {}
    for name in names:
        strategy = get_strategy(name, TEACHERS)
        t0 = time.perf_counter()
        distillers[name] = strategy.distiller(teachers, labels, strategy.settings(params.distill))
        one_off[name] = time.perf_counter() - t0
        built[name] = strategy

    args = train_args({**raw["student"], "model_name_or_path": setup.model_path}, num_train_epochs=1)
    model = setup.build_student(seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    hidden_size = model.config.dim if hasattr(model.config, "dim") else model.config.hidden_size

    def one(name: str) -> StepClock:
        model.load_state_dict(init)
        distiller = distillers[name]
        modules = distiller.start(0, hidden_size)
        clock = StepClock(warm, opts.device)
        library_train(setup, model, enc, args, seed=0, bucketing=runtime.length_bucketing, bf16=runtime.bf16,
                      objective=distiller.loss, clock=clock, needs_hidden=distiller.needs_hidden,
                      extra_modules=modules or None, extra_lr=distiller.modules_learning_rate,
                      compact_vocabulary=runtime.compact_vocabulary)
        return clock

    per_step = {s: [] for s in names}
    obj = {s: [] for s in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]  # rotate: no strategy always first
        for s in order:
            clock = guarded(f"fusion {s} round {r + 1}", lambda: one(s))
            per_step[s].append(clock.timed_durations())
            obj[s].append(clock.timed_objective())
        print(f"  fusion round {r + 1}/{rounds} done", flush=True)
    best = {s: np.min(np.stack(v), axis=0) for s, v in per_step.items()}
    obj_best = {s: np.min(np.stack(v), axis=0) for s, v in obj.items()}
    base = names[0]
    out = {"baseline": base, "rounds": rounds, "steps_per_round": int(len(best[base])), "fusion_context_s": round(t_ctx, 4),
           "runtime": {"bf16": runtime.bf16, "length_bucketing": runtime.length_bucketing,
                       "compact_vocabulary": runtime.compact_vocabulary},
           "strategies": {}}
    if skipped:
        out["skipped"] = skipped
    for s in names:
        ratio = best[s] / best[base]
        out["strategies"][s] = {
            "step_ms_median": round(1e3 * float(np.median(best[s])), 3),
            "overhead_vs_single": round(float(np.median(ratio)) - 1.0, 4),
            "objective_ms_median": round(1e3 * float(np.median(obj_best[s])), 4),
            "objective_overhead_vs_single_step": round(float((np.median(obj_best[s]) - np.median(obj_best[base]))
                                                              / np.median(best[base])), 4),
            "one_off_fuse_s": round(one_off[s], 4),
            "kind": built[s].kind, "fixed": bool(built[s].fixed), "learned": bool(built[s].learned),
        }
        print(f"  {s}: step {out['strategies'][s]['step_ms_median']} ms, overhead {out['strategies'][s]['overhead_vs_single']:+.3f}",
              flush=True)
    return out
