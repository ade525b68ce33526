"""Strategies: what a student is distilled from (SPEC §6–7), each a registered object.

Every strategy — ``none``, ``single_<teacher>``, each fixed fusion and each learned one —
is a :class:`Strategy` in :data:`STRATEGIES`, found by :func:`get_strategy`. A strategy
declares its kind (baseline | single | multi), what it reads from ``params.yaml``
(:meth:`Strategy.settings`: the ``configure`` stage writes it to
``configs/distill/<strategy>.yaml``, so a student re-trains only when its own settings
change) and its hooks: the teacher term of one student run (:class:`Distiller`).
No caller compares strategy names.

- A **fixed fusion** is one pure function ``(z [K, n, C], T, ctx) -> p_T [n, C]``
  registered with ``@fusion("name")``. Adding one = that function + its hand-valued test.
- A **learned strategy** is one :class:`Strategy` subclass registered with
  ``@strategy("name")``; its :class:`Distiller` overrides only what differs (TextBrewer's
  multi-teacher distiller): its modules, its loss, its fused distribution on test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np
import torch
from torch import nn

from pydantic import Field

from mtkd.errors import MtkdError
from mtkd.losses import kd_loss
from mtkd.schema import Strict

SINGLE_PREFIX = "single_"


@dataclass
class FusionContext:
    teacher_names: list[str]
    validation_metric: dict[str, float] = field(default_factory=dict)  # teacher → primary metric
    labels: torch.Tensor | None = None  # [n] gold labels of the examples being fused (train only)
    temperatures: dict[str, float] = field(default_factory=dict)  # teacher → fitted calibration T


@dataclass
class TeacherLogits:
    """Logits of the K teachers, in params order, per split: ``{split: [K, n, C]}``."""

    names: list[str]
    splits: dict[str, np.ndarray]
    validation_metric: dict[str, float]


# ---------------------------------------------------------------------------------------------
# The registry


class Strategy:
    """A fixed fusion of the teachers' logits (the base case; subclasses override what differs)."""

    name: str = ""
    kind: ClassVar[str] = "multi"  # baseline | single | multi
    uses_teachers: ClassVar[bool] = True
    learned: ClassVar[bool] = False
    # Permuting the teachers (with their names) leaves the targets unchanged.
    symmetric: ClassVar[bool] = True
    # A block of its own under `distill` (e.g. `gating`), read by this strategy only, and its
    # params model (mtkd.params adds it to the `distill` schema).
    own_params: ClassVar[str | None] = None
    Params: ClassVar[type[Strict] | None] = None

    def __init__(self, name: str | None = None, fn: Callable | None = None, symmetric: bool | None = None):
        if name is not None:
            self.name = name
        self._fn = fn
        if symmetric is not None:
            self.symmetric = symmetric

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def settings(self, distill) -> dict:
        """The ``distill`` params this strategy reads, resolved (its T from a map, its own block)."""
        if not self.uses_teachers:
            return {}
        out = {"T": distill.temperature(self.name), "alpha": distill.alpha, "alpha_schedule": distill.alpha_schedule}
        if self.own_params:
            out[self.own_params] = getattr(distill, self.own_params).model_dump(mode="json")
        return out

    def check(self, teachers: list[str]) -> None:
        """Refuse (MtkdError) a strategy that cannot run with these teachers."""

    def fuse(self, z: torch.Tensor, T: float, ctx: FusionContext) -> torch.Tensor:
        """``z`` [K, n, C] teacher logits → ``p_T`` [n, C] (fixed strategies only)."""
        if self._fn is None:
            raise ValueError(f"'{self.name}' has no fixed fusion (it is {'learned' if self.learned else 'teacher-free'})")
        return self._fn(z, T, ctx)

    def distiller(self, teachers: TeacherLogits | None, labels: dict[str, np.ndarray], settings: dict) -> "Distiller":
        """The teacher term of this strategy's students on one task (built once, then per seed)."""
        return Distiller(self, teachers, labels, settings)


STRATEGIES: dict[str, Strategy] = {}


def _register(entry: Strategy) -> Strategy:
    if entry.name in STRATEGIES or entry.name.startswith(SINGLE_PREFIX):
        raise ValueError(f"strategy '{entry.name}' is registered twice or clashes with {SINGLE_PREFIX}<teacher>")
    STRATEGIES[entry.name] = entry
    return entry


def fusion(name: str, *, symmetric: bool = True):
    """Decorator: register a fixed fusion function ``(z, T, ctx) -> p_T`` as strategy ``name``."""

    def wrap(fn):
        _register(Strategy(name, fn, symmetric))
        return fn

    return wrap


def strategy(name: str):
    """Class decorator: register a :class:`Strategy` subclass (a learned strategy) under ``name``."""

    def wrap(cls):
        cls.name = name
        _register(cls())
        return cls

    return wrap


class SingleTeacher(Strategy):
    """``single_<teacher>``: that one teacher's distribution, ``softmax(z_k / T)``."""

    kind = "single"
    symmetric = False

    def __init__(self, teacher: str):
        super().__init__(SINGLE_PREFIX + teacher)
        self.teacher = teacher

    def check(self, teachers):
        if self.teacher not in teachers:
            raise MtkdError(f"unknown strategy '{self.name}': no teacher '{self.teacher}'"
                            f" (known: {', '.join(strategy_names(teachers))})")

    def fuse(self, z, T, ctx):
        return torch.softmax(z[ctx.teacher_names.index(self.teacher)] / T, dim=-1)


def get_strategy(name: str, teachers: list[str] | None = None) -> Strategy:
    """The strategy called ``name``; ``single_<t>`` for any teacher ``t`` (checked against ``teachers`` if given)."""
    if name in STRATEGIES:
        return STRATEGIES[name]
    if name.startswith(SINGLE_PREFIX) and len(name) > len(SINGLE_PREFIX):
        entry = SingleTeacher(name.removeprefix(SINGLE_PREFIX))
        if teachers is not None:
            entry.check(list(teachers))
        return entry
    known = strategy_names(list(teachers)) if teachers is not None else [*STRATEGIES, f"{SINGLE_PREFIX}<teacher>"]
    raise MtkdError(f"unknown strategy '{name}' (known: {', '.join(known)})")


def strategy_names(teachers: list[str]) -> list[str]:
    """Every strategy that can run with these teachers: baselines, one single per teacher, then fusions."""
    names = [SINGLE_PREFIX + t for t in teachers] + list(STRATEGIES)
    return sorted(names, key=lambda n: ("baseline", "single", "multi").index(get_strategy(n).kind))


def strategy_kind(name: str) -> str:
    """baseline (``none``) | single (``single_<teacher>``) | multi (every fusion strategy)."""
    return get_strategy(name).kind


def fuse(name: str, z: torch.Tensor, T: float, ctx: FusionContext) -> torch.Tensor:
    """Fixed fusion of ``z`` [K, n, C] into p_T [n, C] by the strategy called ``name``."""
    return get_strategy(name, ctx.teacher_names).fuse(z, T, ctx)


# ---------------------------------------------------------------------------------------------
# The teacher term of one student run


def alpha_at(alpha: float, schedule: str, progress: float) -> float:
    """α at ``progress`` ∈ [0, 1) of training: constant, or teacher annealing (linear decay to 0)."""
    if schedule == "linear":
        return alpha * (1.0 - progress)
    return alpha


def fusion_context(teachers: TeacherLogits, labels: np.ndarray, validation_labels: np.ndarray) -> FusionContext:
    temps = {name: fit_temperature(torch.from_numpy(teachers.splits["validation"][k]), torch.from_numpy(validation_labels))
             for k, name in enumerate(teachers.names)}
    return FusionContext(teachers.names, teachers.validation_metric, torch.from_numpy(labels), temps)


class Distiller:
    """One strategy on one task: fixed targets on train, the SPEC §6 loss, the fused test distribution.

    Built once per task; :meth:`start` is called once per seed and returns the modules that
    train with the student (none here). Learned strategies subclass it.
    """

    needs_hidden = False

    def __init__(self, strategy: Strategy, teachers: TeacherLogits | None, labels: dict[str, np.ndarray], settings: dict):
        teachers = teachers if strategy.uses_teachers else None
        self.strategy, self.teachers, self.labels = strategy, teachers, labels
        self.T = float(settings.get("T", 1.0))
        self.alpha = float(settings.get("alpha", 0.0))
        self.schedule = settings.get("alpha_schedule", "constant") if self.alpha else "constant"
        self.settings = settings
        self.ctx = fusion_context(teachers, labels["train"], labels["validation"]) if teachers is not None else None
        self.targets = self._fixed_targets("train", self.T) if teachers is not None and not strategy.learned else None

    def _fixed_targets(self, split: str, T: float) -> torch.Tensor:
        z = torch.from_numpy(self.teachers.splits[split]).double()
        ctx = FusionContext(self.ctx.teacher_names, self.ctx.validation_metric, torch.from_numpy(self.labels[split]),
                            self.ctx.temperatures)
        return self.strategy.fuse(z, T, ctx).float()

    def start(self, seed: int, hidden_size: int) -> list[nn.Module]:
        return []

    @property
    def modules_learning_rate(self) -> float | None:
        """Learning rate of the modules :meth:`start` returns (None: the student's)."""
        return None

    def loss(self, logits: torch.Tensor, hidden: torch.Tensor | None, idx: np.ndarray, y: torch.Tensor,
             progress: float) -> torch.Tensor:
        target = None if self.targets is None else self.targets[idx].to(logits.device)
        return kd_loss(logits, target, y, self.T, alpha_at(self.alpha, self.schedule, progress))

    def fused_test(self, split: str, hidden: np.ndarray | None) -> tuple[np.ndarray | None, dict]:
        """The fused teacher distribution at T = 1 on ``split`` (fidelity's reference), and extra per-seed records."""
        if self.teachers is None:
            return None, {}
        return self._fixed_targets(split, 1.0).numpy(), {}

    def seed_record(self) -> dict:
        """Per-seed records gathered during training (learned strategies: mean gate weights)."""
        return {}


# ---------------------------------------------------------------------------------------------
# Baseline, fixed fusions


@strategy("none")
class NoTeacher(Strategy):
    """``none``: no teacher at all, cross-entropy on the gold labels (α = 0)."""

    kind = "baseline"
    uses_teachers = False


def teacher_weights(ctx: FusionContext) -> torch.Tensor:
    """``weighted``: w_k ∝ teacher k's primary validation metric, normalised to sum 1."""
    m = torch.tensor([float(ctx.validation_metric[t]) for t in ctx.teacher_names], dtype=torch.float64)
    if (m < 0).any() or m.sum() <= 0:
        raise ValueError(f"weighted fusion needs non-negative validation metrics with a positive sum, got {m.tolist()}")
    return m / m.sum()


@fusion("average")
def average(z, T, ctx):
    return torch.softmax(z.mean(0) / T, dim=-1)


@fusion("weighted")
def weighted(z, T, ctx):
    w = teacher_weights(ctx).to(z.dtype)
    return torch.softmax(torch.einsum("k,knc->nc", w, z) / T, dim=-1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)


@fusion("best_per_sample")
def best_per_sample(z, T, ctx):
    # Confidence is judged at T=1 (SPEC §7); ties go to the first teacher in order.
    k_star = entropy(torch.softmax(z, dim=-1)).argmin(0)  # [n]
    chosen = z[k_star, torch.arange(z.shape[1])]
    return torch.softmax(chosen / T, dim=-1)


@fusion("prob_average")
def prob_average(z, T, ctx):
    return torch.softmax(z / T, dim=-1).mean(0)


@fusion("confidence_aware")
def confidence_aware(z, T, ctx):
    if ctx.labels is None:
        raise ValueError("confidence_aware fusion needs the gold labels of the fused examples")
    ce = -torch.log_softmax(z, dim=-1)[:, torch.arange(z.shape[1]), ctx.labels]  # [K, n]
    w = torch.softmax(-ce, dim=0)  # w_k ∝ exp(−CE_k)
    return torch.softmax(torch.einsum("kn,knc->nc", w, z) / T, dim=-1)


@fusion("calibrated_average")
def calibrated_average(z, T, ctx):
    temps = torch.tensor([ctx.temperatures[t] for t in ctx.teacher_names], dtype=z.dtype)
    return torch.softmax((z / temps[:, None, None]).mean(0) / T, dim=-1)


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


# ---------------------------------------------------------------------------------------------
# Learned: gating


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


class GatingParams(Strict):
    hidden_size: int = Field(64, ge=1)
    detach_hidden: bool = True
    learning_rate: float = Field(1e-3, gt=0, lt=1)


@strategy("gating")
class Gating(Strategy):
    """Per-example teacher weights from an MLP on the student's first-token state, trained jointly."""

    learned = True
    own_params = "gating"
    Params = GatingParams

    def distiller(self, teachers, labels, settings):
        return GatingDistiller(self, teachers, labels, settings)


class GatingDistiller(Distiller):
    needs_hidden = True

    def start(self, seed, hidden_size):
        cfg = self.settings["gating"]
        torch.manual_seed(seed)
        self.gate = GatingFusion(hidden_size, len(self.teachers.names), cfg["hidden_size"], cfg["detach_hidden"])
        self.z_train = torch.from_numpy(self.teachers.splits["train"]).float()
        self.gate_log: list[torch.Tensor] = []
        return [self.gate]

    @property
    def modules_learning_rate(self):
        return self.settings["gating"]["learning_rate"]

    def loss(self, logits, hidden, idx, y, progress):
        p_T, w = self.gate(hidden, self.z_train[:, idx].to(logits.device), self.T)
        self.gate_log.append(w.detach().mean(0).cpu())
        return kd_loss(logits, p_T, y, self.T, alpha_at(self.alpha, self.schedule, progress))

    def fused_test(self, split, hidden):
        with torch.no_grad():
            p1, w = self.gate.eval().cpu()(torch.from_numpy(hidden), torch.from_numpy(self.teachers.splits[split]).float(), 1.0)
        weights = dict(zip(self.teachers.names, np.round(w.mean(0).numpy().astype(float), 6).tolist()))
        return p1.numpy(), {"gate_weights_test": weights}

    def seed_record(self):
        mean = torch.stack(self.gate_log).mean(0).numpy().astype(float)
        return {"gate_weights_train": dict(zip(self.teachers.names, np.round(mean, 6).tolist()))}
