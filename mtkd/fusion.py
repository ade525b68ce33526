"""Fusion strategies: K teachers' logits → one target distribution per example (SPEC §7).

Every strategy is a named entry in :data:`STRATEGIES`; adding one touches this file and
its test. Functions are pure: ``z`` is a float tensor ``[K, n, C]`` of teacher logits in a
fixed teacher order, ``T`` the temperature, ``ctx`` what some strategies need besides the
logits (validation metrics, labels, fitted temperatures). They return ``p_T``, ``[n, C]``.
``gating`` is the one learned strategy: :class:`GatingFusion` is trained with the student.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn


@dataclass
class FusionContext:
    teacher_names: list[str]
    validation_metric: dict[str, float] = field(default_factory=dict)  # teacher → primary metric
    labels: torch.Tensor | None = None  # [n] gold labels of the examples being fused (train only)
    temperatures: dict[str, float] = field(default_factory=dict)  # teacher → fitted calibration T


@dataclass(frozen=True)
class Strategy:
    name: str
    fuse: Callable[[torch.Tensor, float, FusionContext], torch.Tensor] | None
    learned: bool = False
    multi: bool = True


STRATEGIES: dict[str, Strategy] = {}


def register(name: str, *, learned: bool = False):
    def wrap(fn):
        STRATEGIES[name] = Strategy(name, fn, learned=learned)
        return fn

    return wrap


def teacher_weights(ctx: FusionContext) -> torch.Tensor:
    """``weighted``: w_k ∝ teacher k's primary validation metric, normalised to sum 1."""
    m = torch.tensor([float(ctx.validation_metric[t]) for t in ctx.teacher_names], dtype=torch.float64)
    if (m < 0).any() or m.sum() <= 0:
        raise ValueError(f"weighted fusion needs non-negative validation metrics with a positive sum, got {m.tolist()}")
    return m / m.sum()


@register("average")
def average(z, T, ctx):
    return torch.softmax(z.mean(0) / T, dim=-1)


@register("weighted")
def weighted(z, T, ctx):
    w = teacher_weights(ctx).to(z.dtype)
    return torch.softmax(torch.einsum("k,knc->nc", w, z) / T, dim=-1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)


@register("best_per_sample")
def best_per_sample(z, T, ctx):
    # Confidence is judged at T=1 (SPEC §7); ties go to the first teacher in order.
    k_star = entropy(torch.softmax(z, dim=-1)).argmin(0)  # [n]
    chosen = z[k_star, torch.arange(z.shape[1])]
    return torch.softmax(chosen / T, dim=-1)


@register("prob_average")
def prob_average(z, T, ctx):
    return torch.softmax(z / T, dim=-1).mean(0)


@register("confidence_aware")
def confidence_aware(z, T, ctx):
    if ctx.labels is None:
        raise ValueError("confidence_aware fusion needs the gold labels of the fused examples")
    ce = -torch.log_softmax(z, dim=-1)[:, torch.arange(z.shape[1]), ctx.labels]  # [K, n]
    w = torch.softmax(-ce, dim=0)  # w_k ∝ exp(−CE_k)
    return torch.softmax(torch.einsum("kn,knc->nc", w, z) / T, dim=-1)


@register("calibrated_average")
def calibrated_average(z, T, ctx):
    temps = torch.tensor([ctx.temperatures[t] for t in ctx.teacher_names], dtype=z.dtype)
    return torch.softmax((z / temps[:, None, None]).mean(0) / T, dim=-1)


STRATEGIES["gating"] = Strategy("gating", None, learned=True)


def strategy_names(teachers: list[str]) -> list[str]:
    return ["none"] + [f"single_{t}" for t in teachers] + list(STRATEGIES)


def is_single(strategy: str) -> bool:
    return strategy.startswith("single_")


def fuse(strategy: str, z: torch.Tensor, T: float, ctx: FusionContext) -> torch.Tensor:
    """Fixed (non-learned) fusion of ``z`` [K, n, C] into p_T [n, C]."""
    if is_single(strategy):
        k = ctx.teacher_names.index(strategy.removeprefix("single_"))
        return torch.softmax(z[k] / T, dim=-1)
    entry = STRATEGIES[strategy]
    if entry.learned or entry.fuse is None:
        raise ValueError(f"'{strategy}' is learned: use GatingFusion")
    return entry.fuse(z, T, ctx)


class GatingFusion(nn.Module):
    """``gating``: w(x) = softmax(g(h(x))), g = Linear → tanh → Linear to K, trained with the student."""

    def __init__(self, in_features: int, num_teachers: int, hidden_size: int = 64, detach_hidden: bool = True):
        super().__init__()
        self.detach_hidden = detach_hidden
        self.g = nn.Sequential(nn.Linear(in_features, hidden_size), nn.Tanh(), nn.Linear(hidden_size, num_teachers))

    def weights(self, h: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.g(h.detach() if self.detach_hidden else h), dim=-1)  # [n, K]

    def forward(self, h: torch.Tensor, z: torch.Tensor, T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` [n, H] student first-token states, ``z`` [K, n, C] → (p_T [n, C], w [n, K])."""
        w = self.weights(h)
        fused = torch.einsum("nk,knc->nc", w.to(z.dtype), z)
        return torch.softmax(fused / T, dim=-1), w


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, max_iter: int = 200) -> float:
    """Temperature minimising validation NLL (Guo et al. 2017), for ``calibrated_average``."""
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    z, y = logits.double(), labels.long()
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(z / log_t.exp(), y)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def strategy_kind(strategy: str) -> str:
    """baseline (``none``) | single (``single_<teacher>``) | multi (every fusion strategy)."""
    if strategy == "none":
        return "baseline"
    return "single" if is_single(strategy) else "multi"
