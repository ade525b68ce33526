"""Where a student step's time goes: collate / forward (+loss) / backward / clip / optimizer.

The library's own loop, :func:`mtkd.training.train`, timed phase by phase through its
``timer`` hook (``batch`` → collate, ``forward``, ``backward``, ``clip`` → clip_grad,
``optimizer``; a device sync before each stamp on CUDA). Variants that point at a fix: the
word-embedding matrix frozen (``student.freeze_word_embeddings``: its dense gradient,
clipping and AdamW update over 30522×384 entries disappear), and an operator table from
``torch.profiler`` over the steps after the first.
"""

from __future__ import annotations

import torch

from bench.common import StepClock, default_params, guarded, train_args
from bench.loop import library_train, subset
from bench.mfu import shape, utilisation
from bench.throughput import ALPHA, T, single_targets, synthetic_teacher_logits


def run(setup, opts, peaks) -> dict:
    from mtkd.losses import kd_loss

    dev = opts.device
    warm = opts.warmup
    steps = opts.steps if opts.steps_explicit or not opts.quick else 30
    enc = subset(setup.encoded["train"], (warm + steps) * 32, seed=6)
    targets = single_targets(synthetic_teacher_logits(len(enc))).to(dev)
    args = train_args({**default_params()["student"], "model_name_or_path": setup.model_path}, num_train_epochs=1)

    def objective(logits, hidden, idx, y, progress):
        return kd_loss(logits, targets[torch.as_tensor(idx, device=dev)], y, T, ALPHA)

    model = setup.build_student(seed=0)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    sh = shape(model)
    out = {"steps": steps, "variants": {}}

    def fresh():
        model.load_state_dict(init)
        for p in model.parameters():
            p.requires_grad_(True)

    def variant(name, *, phases: bool, freeze: bool | None = None, amp="bf16"):
        run_args = args if freeze is None else args.model_copy(update={"freeze_word_embeddings": freeze})

        def go():
            fresh()
            clock = StepClock(warm, dev, phases={} if phases else None)
            library_train(setup, model, enc, run_args, seed=0, bucketing=True, bf16=(amp == "bf16"), objective=objective,
                          clock=clock)
            return clock
        clock = guarded(f"profile {name}", go)
        row = {**clock.summary(), **utilisation(sh, clock, peaks, "bf16")}
        if clock.phases is not None:
            ph = clock.phases
            total = sum(ph.values())
            row["phases_ms_per_step"] = {k: round(1e3 * v / row["steps_timed"], 2) for k, v in ph.items()}
            row["phases_share"] = {k: round(v / total, 3) for k, v in ph.items()}
        out["variants"][name] = row
        print(f"  profile {name}: {row['examples_per_s']} ex/s", flush=True)

    variant("ours (bucketing + bf16), per-phase clock", phases=True)
    variant("ours (bucketing + bf16), no phase clock", phases=False)
    variant("word embeddings frozen", phases=True, freeze=True)

    # Operator table (self time) over the steps of a short run after its first (the profiler
    # starts and stops between steps, so the final validation and checkpoint copy stay out).
    try:
        from torch.profiler import ProfilerActivity, profile

        fresh()
        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.startswith("cuda") else [])
        small = subset(enc, 12 * 32, seed=7)
        n_steps = -(-len(small) // args.per_device_train_batch_size)
        prof = profile(activities=acts)
        state = {"done": 0, "on": False}

        def between_steps(phase, idx):
            if phase != "optimizer":
                return
            state["done"] += 1
            if state["done"] == 1 and n_steps > 1:
                prof.start()
                state["on"] = True
            elif state["done"] == n_steps and state["on"]:
                prof.stop()
                state["on"] = False
        try:
            library_train(setup, model, small, args, seed=0, bucketing=True, bf16=True, objective=objective,
                          clock=StepClock(1, dev), also=between_steps)
        finally:
            if state["on"]:
                prof.stop()
        key = "self_cpu_time_total" if dev == "cpu" else "self_device_time_total"
        events = prof.key_averages()
        total = sum(getattr(e, key, 0) for e in events) or 1
        top = sorted(events, key=lambda e: getattr(e, key, 0), reverse=True)[:15]
        out["top_ops"] = [{"op": e.key, "self_ms": round(getattr(e, key, 0) / 1e3, 2), "share": round(getattr(e, key, 0) / total, 3),
                           "calls": e.count} for e in top]
        out["top_ops_sort"] = key
        out["top_ops_steps"] = n_steps - 1
    except Exception as exc:  # the profiler is a view, not a measurement we depend on
        out["top_ops_error"] = f"{type(exc).__name__}: {exc}"
    fresh()
    emb = model.get_input_embeddings().weight
    out["word_embedding_entries"] = int(emb.numel())
    out["non_embedding_entries"] = int(sh["params_total"] - emb.numel())
    return out
