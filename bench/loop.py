"""Timed runs of our training loop and our inference.

On the CPU the numbers come from the library itself: :func:`mtkd.training.train` with an
objective that stamps the clock once per step, and :func:`mtkd.training.predict`.
``mtkd.training`` is CPU-only (its batches stay on the CPU, autocast is ``"cpu"``), so for
CUDA — and for the per-phase profile, which needs a clock between forward, backward and
optimizer step — :func:`step_loop` mirrors ``train()``'s step line for line (same
``make_batches``, ``collate``, parameter groups, fused AdamW, linear warm-up schedule,
gradient clipping) with the batch moved to the device.
"""

from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch

from bench.common import NUM_CLASSES, StepClock, sync

AMP = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def subset(enc, n: int | None, seed: int = 0):
    """The first ``n`` examples of a random permutation (or all), as an Encoded split."""
    from mtkd.training import Encoded

    if n is None or n >= len(enc):
        return enc
    idx = np.sort(np.random.default_rng(seed).choice(len(enc), n, replace=False))
    return Encoded([enc.ids[i] for i in idx], [enc.input_ids[i] for i in idx],
                   None if enc.token_type_ids is None else [enc.token_type_ids[i] for i in idx], enc.labels[idx])


def library_train(setup, model, enc, args, *, seed: int, bucketing: bool, bf16: bool, objective, clock: StepClock,
                  needs_hidden: bool = False, extra_modules=None, extra_lr=None, val_enc=None):
    """``mtkd.training.train`` for one epoch over ``enc``; ``clock`` ticks once per step."""
    from mtkd.training import train

    lengths = enc.lengths

    def timed(logits, hidden, idx, y, progress=0.0):
        clock.tick(lengths[idx])
        t0 = time.perf_counter()
        loss = objective(logits, hidden, idx, y)
        clock.obj.append(time.perf_counter() - t0)
        return loss

    val = val_enc if val_enc is not None else subset(setup.encoded["validation"], 64)
    return train(model, enc, val, args, seed=seed, pad_id=setup.pad_id, num_classes=NUM_CLASSES, primary_metric="accuracy",
                 bf16=bf16, bucketing=bucketing, objective=timed, needs_hidden=needs_hidden, extra_modules=extra_modules,
                 extra_lr=extra_lr, desc="bench")


def _autocast(device: str, amp: str):
    if AMP[amp] is None:
        return nullcontext()
    return torch.autocast("cuda" if device.startswith("cuda") else "cpu", dtype=AMP[amp])


def step_loop(setup, model, enc, *, device: str, amp: str, bucketing: bool, lr: float, weight_decay: float = 0.01,
              warmup_ratio: float = 0.1, batch_size: int = 32, seed: int = 0, objective=None, clock: StepClock,
              needs_hidden: bool = False, extra_modules=None, extra_lr=None, phases: dict | None = None,
              max_steps: int | None = None, freeze=()):
    """One epoch of ``train()``'s step on ``device``; with ``phases``, per-phase seconds are added to it."""
    from mtkd.models import forward_kwargs
    from mtkd.training import collate, make_batches
    from transformers import get_linear_schedule_with_warmup

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model.to(device).train()
    for name, p in model.named_parameters():
        if any(f in name for f in freeze):
            p.requires_grad_(False)
    keys = forward_kwargs(model)
    batches = make_batches(enc.lengths, batch_size, rng, bucketing)
    if max_steps:
        batches = batches[:max_steps]
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    is_nd = lambda n: n.endswith("bias") or "LayerNorm" in n or "layer_norm" in n  # noqa: E731
    groups = [{"params": [p for n, p in named if not is_nd(n)], "weight_decay": weight_decay},
              {"params": [p for n, p in named if is_nd(n)], "weight_decay": 0.0}]
    for module in extra_modules or []:
        module.to(device).train()
        groups.append({"params": list(module.parameters()), "weight_decay": 0.0, "lr": extra_lr or lr})
    optimizer = torch.optim.AdamW(groups, lr=lr, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(warmup_ratio * len(batches)), len(batches))
    scaler = torch.amp.GradScaler("cuda") if amp == "fp16" else None
    labels_all = torch.tensor(enc.labels)
    lengths = enc.lengths
    objective = objective or (lambda logits, hidden, idx, y: torch.nn.functional.cross_entropy(logits.float(), y))
    params = [p for p in model.parameters() if p.requires_grad]

    def mark(name, t0):
        if phases is None:
            return t0
        sync(device)
        t1 = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + t1 - t0
        return t1

    clock.tick([])  # t[0]: the loop starts; then one tick at the end of each step, with that step's batch
    for step, idx in enumerate(batches):
        t = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(enc, idx, setup.pad_id, keys).items()}
        y = labels_all[idx].to(device, non_blocking=True)
        t = mark("collate", t)
        with _autocast(device, amp):
            out = model(**batch, output_hidden_states=needs_hidden)
        hidden = out.hidden_states[-1][:, 0].float() if needs_hidden else None
        t0 = time.perf_counter()
        loss = objective(out.logits.float(), hidden, idx, y)
        clock.obj.append(time.perf_counter() - t0)
        t = mark("forward", t)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            t = mark("backward", t)
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            t = mark("clip_grad", t)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            t = mark("backward", t)
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            t = mark("clip_grad", t)
            optimizer.step()
        scheduler.step()
        float(loss.detach())  # the library logs the loss every step (a device sync on CUDA)
        t = mark("optimizer", t)
        clock.tick(lengths[idx])
    return clock


@torch.inference_mode()
def device_predict(model, enc, pad_id: int, *, device: str, amp: str, batch_size: int = 128) -> np.ndarray:
    """``mtkd.training.predict`` (longest-first batches, dynamic padding, autocast) on ``device``."""
    from mtkd.models import forward_kwargs
    from mtkd.training import collate

    model.to(device).eval()
    keys = forward_kwargs(model)
    order = np.argsort(-enc.lengths, kind="stable")
    out = np.empty((len(enc), model.config.num_labels), dtype=np.float32)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = {k: v.to(device, non_blocking=True) for k, v in collate(enc, idx, pad_id, keys).items()}
        with _autocast(device, amp):
            logits = model(**batch).logits
        out[idx] = logits.float().cpu().numpy()
    return out
