"""Model FLOPs utilisation: FLOPs the model needs, per second, over the machine's measured matmul peak.

Training FLOPs of one example with ``S`` real (non-pad) tokens::

    F_train(S) = 6 · N_layers · S  +  12 · L · S² · H  +  6 · N_head

``N_layers`` = parameters of the transformer blocks (no embeddings, no head), ``L`` layers of
width ``H``; 6 = 2 (multiply-add) × 3 (forward + backward's two matmuls); the attention
scores and their weighted sum cost ``4·S²·H`` per layer forward, ×3 for training; the
classification head sees one token per example. Inference is a third of it:
``2·N_layers·S + 4·L·S²·H + 2·N_head``. Using the real ``S`` (not the padded width) makes it
*model* FLOPs: work spent on padding counts as waste, which is the point of the comparison.
The padded-width version (what the hardware executes) is reported beside it.
Peak: the best of a few timed loops of 2048×2048 matmuls (8192 on CUDA), in fp32 and bf16.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import StepClock, sync

FORMULA = "F_train(S) = 6*N_layers*S + 12*L*S^2*H + 6*N_head; F_infer = F_train/3; S = real (non-pad) tokens per example"


HEAD_MODULES = ("pooler", "pre_classifier", "classifier")  # the classification head's modules, not the blocks'


def shape(model) -> dict:
    """Parameter counts that enter the formula."""
    emb = head = 0
    for name, p in model.named_parameters():
        if "embeddings" in name:
            emb += p.numel()
        elif any(k in name for k in HEAD_MODULES):
            head += p.numel()
    total = sum(p.numel() for p in model.parameters())
    cfg = model.config
    L = getattr(cfg, "n_layers", None) or cfg.num_hidden_layers
    H = getattr(cfg, "dim", None) or cfg.hidden_size
    return {"params_total": total, "params_embeddings": emb, "params_head": head, "N_layers": total - emb - head,
            "L": int(L), "H": int(H)}


def train_flops(sh: dict, tokens: float, tokens_sq: float, examples: float) -> float:
    return 6 * sh["N_layers"] * tokens + 12 * sh["L"] * tokens_sq * sh["H"] + 6 * sh["params_head"] * examples


def clock_flops(sh: dict, clock: StepClock, *, padded: bool = False, inference: bool = False) -> float:
    sl, _ = clock.window()
    n = np.asarray(clock.n[sl], dtype=np.float64)
    if padded:
        w = np.asarray(clock.width[sl], dtype=np.float64)
        f = train_flops(sh, float((n * w).sum()), float((n * w * w).sum()), float(n.sum()))
    else:
        f = train_flops(sh, float(sum(clock.tok[sl])), float(sum(clock.tok2[sl])), float(n.sum()))
    return f / 3 if inference else f


def utilisation(sh: dict, clock: StepClock, peaks: dict, dtype: str) -> dict:
    seconds = clock.seconds()
    model = clock_flops(sh, clock) / seconds
    padded = clock_flops(sh, clock, padded=True) / seconds
    return {"model_tflops": round(model / 1e12, 4), "padded_tflops": round(padded / 1e12, 4),
            "mfu_vs_" + dtype: round(model / peaks[dtype], 4), "hfu_padded_vs_" + dtype: round(padded / peaks[dtype], 4),
            "gflop_per_example": round(clock_flops(sh, clock) / sum(clock.n[clock.window()[0]]) / 1e9, 4)}


def matmul_peak(device: str, dtype: torch.dtype, n: int | None = None, seconds: float = 1.5, repeats: int = 3) -> float:
    """FLOP/s of back-to-back ``n×n @ n×n`` products (best of ``repeats`` timed loops)."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    b = torch.randn(n, n, generator=g).to(device=device, dtype=dtype)
    for _ in range(3):
        torch.mm(a, b)
    sync(device)
    t0 = time.perf_counter()
    torch.mm(a, b)
    sync(device)
    per = max(time.perf_counter() - t0, 1e-6)
    iters = max(3, int(seconds / per))
    best = 0.0
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.mm(a, b)
        sync(device)
        best = max(best, 2 * n ** 3 * iters / (time.perf_counter() - t0))
    return best


def block_linear_shapes(model) -> list[tuple[int, int]]:
    """``(in, out)`` of every linear layer inside the transformer blocks (not the head), in module order."""
    return [(m.in_features, m.out_features) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Linear) and not any(k in name.split(".") for k in HEAD_MODULES)]


def block_matmul_flops(shapes: list[tuple[int, int]], tokens: int, backward: bool = True) -> int:
    """FLOPs of the linear-layer products over ``tokens`` rows: 2·tokens·in·out a product; a training
    step has 3 of them a layer (forward, and backward's two), inference 1."""
    return (6 if backward else 2) * tokens * sum(i * o for i, o in shapes)


def matmul_only_rate(shapes: list[tuple[int, int]], tokens: int, examples: int, device: str = "cpu",
                     dtype: torch.dtype = torch.bfloat16, seconds: float = 1.5, repeats: int = 3,
                     backward: bool = True) -> dict:
    """Examples/s of a step that did nothing but its transformer blocks' linear-layer products.

    Per linear layer of a step with ``tokens`` rows: the forward ``X @ W``, and (``backward``, a
    training step) backward's ``dY @ Wᵀ`` and ``Xᵀ @ dY``: the shapes the model's own step
    multiplies, in ``dtype``, as autocast runs them. With ``backward=False`` it is an inference batch. Attention's batched products, every element-wise op, the embeddings,
    the loss, clipping and the optimizer cost nothing here: no loop that trains this model
    on these batches can beat this rate. Best of ``repeats`` timed loops.
    """
    g = torch.Generator(device="cpu").manual_seed(0)
    mats = [tuple(torch.randn(*s, generator=g).to(device=device, dtype=dtype) for s in ((tokens, i), (i, o), (tokens, o)))
            for i, o in shapes]

    def step():
        for x, w, dy in mats:
            torch.mm(x, w)
            if backward:
                torch.mm(dy, w.T)
                torch.mm(x.T, dy)

    for _ in range(3):
        step()
    sync(device)
    t0 = time.perf_counter()
    step()
    sync(device)
    iters = max(3, int(seconds / max(time.perf_counter() - t0, 1e-6)))
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        for _ in range(iters):
            step()
        sync(device)
        best = min(best, (time.perf_counter() - t0) / iters)
    flops = block_matmul_flops(shapes, tokens, backward)
    return {"tokens_per_step": tokens, "examples_per_step": examples, "step_ms": round(best * 1e3, 3),
            "examples_per_s": round(examples / best, 1), "tflops": round(flops / best / 1e12, 4)}


def peaks(device: str, quick: bool) -> dict:
    s = 0.7 if quick else 1.5
    out = {"fp32": matmul_peak(device, torch.float32, seconds=s), "bf16": matmul_peak(device, torch.bfloat16, seconds=s)}
    if device.startswith("cuda"):
        out["fp16"] = matmul_peak(device, torch.float16, seconds=s)
    return out
