"""Fusion overhead per student step, each strategy vs ``single_*``.

Every strategy trains the same student init on the same batches (same seed), with the
library's own objective as ``mtkd.distill.distill_task`` builds it: static strategies fuse
once per run (``fusion_context`` + ``fused_targets``: a one-off cost, reported apart) and
gather ``targets[idx]`` per step; ``gating`` runs :class:`mtkd.fusion.GatingFusion` on the
student's first-token states every step and trains it (an extra parameter group).
Three K=3 teachers' logits are seeded random numbers: values do not change the cost.

Overhead = median over steps of (step time of the strategy / step time of single) − 1,
each step's time being the minimum over interleaved rounds (rounds filter out noise from
other processes; pairing by step removes the batch-length variation). The time spent
inside the objective itself (fusion + loss) is reported too: it is the low-noise view.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import NUM_CLASSES, TEACHERS, StepClock, default_params, guarded, train_args
from bench.loop import library_train, step_loop, subset
from bench.throughput import synthetic_teacher_logits

STRATEGIES = [f"single_{TEACHERS[0]}", "average", "weighted", "best_per_sample", "prob_average", "confidence_aware",
              "calibrated_average", "gating"]


def run(setup, opts) -> dict:
    from mtkd.distill import TeacherLogits, fused_targets, fusion_context
    from mtkd.fusion import GatingFusion
    from mtkd.losses import kd_loss

    params = default_params()
    T, alpha, gcfg = float(params["distill"]["T"]), float(params["distill"]["alpha"]), params["distill"]["gating"]
    warm, steps = opts.warmup, (opts.steps if not opts.quick else 15)
    rounds = 2 if opts.quick else 3
    enc = subset(setup.encoded["train"], (warm + steps) * 32, seed=5)
    val = setup.encoded["validation"]
    labels = {"train": enc.labels, "validation": val.labels}
    z = {"train": synthetic_teacher_logits(len(enc), seed=1).float().numpy(),
         "validation": synthetic_teacher_logits(len(val), seed=2).float().numpy()}
    teachers = TeacherLogits(TEACHERS, z, {"minilm_l6": 0.80, "minilm_l3": 0.78, "tfidf_lr": 0.74})
    dev = opts.device

    t0 = time.perf_counter()
    ctx = fusion_context(teachers, labels["train"], labels["validation"])
    t_ctx = time.perf_counter() - t0
    one_off, targets = {}, {}
    for s in STRATEGIES:
        if s == "gating":
            continue
        t0 = time.perf_counter()
        targets[s] = fused_targets(s, teachers, "train", T, labels["train"], ctx).to(dev)
        one_off[s] = time.perf_counter() - t0
    z_train = torch.from_numpy(z["train"]).float().to(dev)

    args = train_args({**params["student"], "model_name_or_path": setup.model_path}, num_train_epochs=1)
    model = setup.build_student(seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    hidden_size = model.config.dim

    def one(strategy: str) -> StepClock:
        model.load_state_dict(init)
        gate = None
        if strategy == "gating":
            torch.manual_seed(0)
            gate = GatingFusion(hidden_size, len(TEACHERS), gcfg["hidden_size"], gcfg["detach_hidden"]).to(dev)
            gate_log = []

            def objective(logits, hidden, idx, y):
                p_T, w = gate(hidden, z_train[:, torch.as_tensor(idx, device=dev)], T)
                gate_log.append(w.detach().mean(0))
                return kd_loss(logits, p_T, y, T, alpha)
        else:
            tg = targets[strategy]

            def objective(logits, hidden, idx, y):
                return kd_loss(logits, tg[torch.as_tensor(idx, device=dev)], y, T, alpha)
        kw = dict(needs_hidden=gate is not None, extra_modules=[gate] if gate is not None else None,
                  extra_lr=gcfg["learning_rate"])
        if dev == "cpu":
            clock = StepClock(warm)
            library_train(setup, model, enc, args, seed=0, bucketing=True, bf16=True, objective=objective, clock=clock, **kw)
        else:
            clock = StepClock(warm + 1, dev)
            step_loop(setup, model, enc, device=dev, amp="bf16", bucketing=True, lr=args.learning_rate, seed=0,
                      objective=objective, clock=clock, **kw)
        return clock

    per_step = {s: [] for s in STRATEGIES}
    obj = {s: [] for s in STRATEGIES}
    for r in range(rounds):
        order = STRATEGIES[r % len(STRATEGIES):] + STRATEGIES[:r % len(STRATEGIES)]  # rotate: no strategy always first
        for s in order:
            clock = guarded(f"fusion {s} round {r + 1}", lambda: one(s))
            d = clock.durations()[warm:]
            per_step[s].append(d)
            obj[s].append(np.asarray(clock.obj[warm:]))
        print(f"  fusion round {r + 1}/{rounds} done", flush=True)
    best = {s: np.min(np.stack(v), axis=0) for s, v in per_step.items()}
    obj_best = {s: np.min(np.stack(v), axis=0) for s, v in obj.items()}
    base = STRATEGIES[0]
    out = {"baseline": base, "rounds": rounds, "steps_per_round": int(len(best[base])), "fusion_context_s": round(t_ctx, 4),
           "strategies": {}}
    for s in STRATEGIES:
        ratio = best[s] / best[base]
        out["strategies"][s] = {
            "step_ms_median": round(1e3 * float(np.median(best[s])), 3),
            "overhead_vs_single": round(float(np.median(ratio)) - 1.0, 4),
            "objective_ms_median": round(1e3 * float(np.median(obj_best[s])), 4),
            "objective_overhead_vs_single_step": round(float((np.median(obj_best[s]) - np.median(obj_best[base]))
                                                              / np.median(best[base])), 4),
            "one_off_fuse_s": round(one_off.get(s, 0.0), 4),
        }
        print(f"  {s}: step {out['strategies'][s]['step_ms_median']} ms, overhead {out['strategies'][s]['overhead_vs_single']:+.3f}",
              flush=True)
    return out
