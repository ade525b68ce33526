"""Where a student step's time goes: collate / forward (+loss) / backward / clip / optimizer.

:func:`bench.loop.step_loop` is ``train()``'s step with a clock (and a device sync on CUDA)
between phases. Variants that point at a fix: the word-embedding matrix frozen (its dense
gradient, clipping and AdamW update over 30522×384 entries disappear), and an operator
table from ``torch.profiler``.
"""

from __future__ import annotations

import numpy as np
import torch

from bench.common import StepClock, default_params, guarded
from bench.loop import step_loop, subset
from bench.mfu import shape, utilisation
from bench.throughput import ALPHA, T, single_targets, synthetic_teacher_logits


def run(setup, opts, peaks) -> dict:
    from mtkd.losses import kd_loss

    dev = opts.device
    warm, steps = opts.warmup, (30 if opts.quick else opts.steps)
    enc = subset(setup.encoded["train"], (warm + steps) * 32, seed=6)
    targets = single_targets(synthetic_teacher_logits(len(enc))).to(dev)
    lr = float(default_params()["student"]["learning_rate"])

    def objective(logits, hidden, idx, y):
        return kd_loss(logits, targets[torch.as_tensor(idx, device=dev)], y, T, ALPHA)

    model = setup.build_student(seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    sh = shape(model)
    out = {"steps": steps, "variants": {}}

    def variant(name, *, phases: bool, freeze=(), amp="bf16"):
        def go():
            model.load_state_dict(init)
            for p in model.parameters():
                p.requires_grad_(True)
            ph = {} if phases else None
            clock = StepClock(warm + 1, dev)
            step_loop(setup, model, enc, device=dev, amp=amp, bucketing=True, lr=lr, seed=0, objective=objective,
                      clock=clock, phases=ph, freeze=freeze)
            return clock, ph
        clock, ph = guarded(f"profile {name}", go)
        row = {**clock.summary(), **utilisation(sh, clock, peaks, "bf16")}
        if ph is not None:
            total = sum(ph.values())
            row["phases_ms_per_step"] = {k: round(1e3 * v / len(clock.n[1:]), 2) for k, v in ph.items()}
            row["phases_share"] = {k: round(v / total, 3) for k, v in ph.items()}
        out["variants"][name] = row
        print(f"  profile {name}: {row['examples_per_s']} ex/s", flush=True)

    variant("ours (bucketing + bf16), per-phase clock", phases=True)
    variant("ours (bucketing + bf16), no phase clock", phases=False)
    variant("word embeddings frozen", phases=True, freeze=("word_embeddings",))

    # Operator table (self time) over a few steps.
    try:
        from torch.profiler import ProfilerActivity, profile

        model.load_state_dict(init)
        for p in model.parameters():
            p.requires_grad_(True)
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
        small = subset(enc, 12 * 32, seed=7)
        with profile(activities=acts) as prof:
            step_loop(setup, model, small, device=dev, amp="bf16", bucketing=True, lr=lr, seed=0, clock=StepClock(1, dev))
        key = "self_cpu_time_total" if dev == "cpu" else "self_device_time_total"
        events = prof.key_averages()
        total = sum(getattr(e, key, 0) for e in events) or 1
        top = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:15]
        out["top_ops"] = [{"op": e.key, "self_ms": round(getattr(e, key, 0) / 1e3, 2), "share": round(getattr(e, key, 0) / total, 3),
                           "calls": e.count} for e in top]
        out["top_ops_sort"] = key
        out["top_ops_steps"] = len(small) // 32
    except Exception as exc:  # the profiler is a view, not a measurement we depend on
        out["top_ops_error"] = f"{type(exc).__name__}: {exc}"
    emb = model.get_input_embeddings().weight
    out["word_embedding_entries"] = int(emb.numel())
    out["non_embedding_entries"] = int(sh["params_total"] - emb.numel())
    return out
