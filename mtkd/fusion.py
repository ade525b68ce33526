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

import copy
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Literal

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
    # Its train targets are a function of the teachers' logits alone (computed once per task).
    fixed: ClassVar[bool] = True
    # It trains modules of its own with the student (learned fusion).
    learned: ClassVar[bool] = False
    # Permuting the teachers (with their names) leaves the targets unchanged.
    symmetric: ClassVar[bool] = True
    # Its targets read the gold train labels (so it cannot distil on unlabelled transfer examples).
    needs_train_labels: ClassVar[bool] = False
    # A `<name>+transfer` variant: distilled on train + the transfer set (distill.transfer).
    transfer: ClassVar[bool] = False
    # A block of its own under `distill` (e.g. `gating`), read by this strategy only, and its
    # params model (mtkd.params adds it to the `distill` schema).
    own_params: ClassVar[str | None] = None
    Params: ClassVar[type[Strict] | None] = None

    def __init__(self, name: str | None = None, fn: Callable | None = None, symmetric: bool | None = None,
                 needs_train_labels: bool | None = None):
        if name is not None:
            self.name = name
        self._fn = fn
        if symmetric is not None:
            self.symmetric = symmetric
        if needs_train_labels is not None:
            self.needs_train_labels = needs_train_labels

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def settings(self, distill) -> dict:
        """The ``distill`` params this strategy reads, resolved (its T from a map, its own block)."""
        if not self.uses_teachers:
            return {}
        out = {"T": distill.temperature(self.name), "alpha": distill.alpha, "alpha_schedule": distill.alpha_schedule}
        if self.kind == "multi" and distill.fused_teachers is not None:  # absent: the fusion reads every teacher
            out["teachers"] = list(distill.fused_teachers)
        if self.transfer:
            out["transfer"] = distill.transfer.model_dump(mode="json")
        if self.own_params:
            out[self.own_params] = getattr(distill, self.own_params).model_dump(mode="json")
        return out

    def teacher_names(self, teachers: list[str], settings: dict) -> list[str]:
        """The teachers whose logits this strategy's stage loads (``distill.fused_teachers`` for a fusion)."""
        return [t for t in teachers if t in settings["teachers"]] if "teachers" in settings else list(teachers)

    def check(self, teachers: list[str]) -> None:
        """Refuse (MtkdError) a strategy that cannot run with these teachers."""

    def check_settings(self, distill, teachers: list[str]) -> None:
        """Refuse (MtkdError, naming the key) settings that cannot work with these teachers."""

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


def fusion(name: str, *, symmetric: bool = True, needs_train_labels: bool = False):
    """Decorator: register a fixed fusion function ``(z, T, ctx) -> p_T`` as strategy ``name``
    (``needs_train_labels``: it reads ``ctx.labels``, the gold train labels)."""

    def wrap(fn):
        _register(Strategy(name, fn, symmetric, needs_train_labels))
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
    if (base := transfer_base(name)) is not None:
        entry = copy.copy(get_strategy(base, teachers))
        entry.name, entry.transfer = name, True
        return entry
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


# `<strategy>+transfer` (issue #17): that strategy's student distilled on train + the transfer set.
TRANSFER_SUFFIX = "+transfer"


def transfer_base(name: str) -> str | None:
    """The strategy a ``<strategy>+transfer`` variant distils with (None for any other name)."""
    return name.removesuffix(TRANSFER_SUFFIX) if name.endswith(TRANSFER_SUFFIX) and len(name) > len(TRANSFER_SUFFIX) else None


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
    # torch.tensor copies: a precomputed teacher's arrays, and labels read from a file, may be read-only.
    temps = {name: fit_temperature(torch.tensor(teachers.splits["validation"][k]), torch.tensor(validation_labels))
             for k, name in enumerate(teachers.names)}
    return FusionContext(teachers.names, teachers.validation_metric, torch.tensor(labels), temps)


def loss_settings(settings: dict) -> tuple[float, float, str]:
    """(T, α, α schedule) of a strategy's settings; a strategy without a teacher term: (1, 0, constant)."""
    T, alpha = float(settings.get("T", 1.0)), float(settings.get("alpha", 0.0))
    return T, alpha, (settings.get("alpha_schedule", "constant") if alpha else "constant")


class Distiller:
    """One strategy on one task: fixed targets on train, the SPEC §6 loss, the fused test distribution.

    Built once per task; :meth:`start` is called once per seed and returns the modules that
    train with the student (none here). Learned strategies subclass it.
    """

    needs_hidden = False

    def __init__(self, strategy: Strategy, teachers: TeacherLogits | None, labels: dict[str, np.ndarray], settings: dict):
        teachers = teachers if strategy.uses_teachers else None
        self.strategy, self.teachers, self.labels = strategy, teachers, labels
        self.T, self.alpha, self.schedule = loss_settings(settings)
        self.settings = settings
        self.ctx = fusion_context(teachers, labels["train"], labels["validation"]) if teachers is not None else None
        self.targets = self._fixed_targets("train", self.T) if teachers is not None and strategy.fixed else None

    def _fixed_targets(self, split: str, T: float) -> torch.Tensor:
        z = torch.tensor(self.teachers.splits[split], dtype=torch.float64)  # one copy: the arrays may be read-only
        ctx = FusionContext(self.ctx.teacher_names, self.ctx.validation_metric, torch.tensor(self.labels[split]),
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

    def fused_test(self, split: str, logits: np.ndarray, hidden: np.ndarray | None) -> tuple[np.ndarray | None, dict]:
        """The fused teacher distribution at T = 1 on ``split`` (fidelity's reference), and extra per-seed records.

        ``logits`` and ``hidden`` are the trained student's on ``split`` (for fusions that depend on them).
        """
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
    fixed = False


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


def teacher_cross_entropy(z: torch.Tensor, labels: torch.Tensor | None, strategy: str) -> torch.Tensor:
    """CE_k of every teacher on the gold label of every example, at T = 1: ``[K, n]``."""
    if labels is None:
        raise ValueError(f"{strategy} fusion needs the gold labels of the fused examples")
    return -torch.log_softmax(z, dim=-1)[:, torch.arange(z.shape[1]), labels]


@fusion("likelihood_weighted", needs_train_labels=True)
def likelihood_weighted(z, T, ctx):
    """Per example, w_k ∝ exp(−CE_k) = p_k(y): each teacher weighted by the probability it gives the gold label.

    (Named `confidence_aware` before; it is not CA-MKD, whose weights are ``ca_mkd``'s.)
    """
    w = torch.softmax(-teacher_cross_entropy(z, ctx.labels, "likelihood_weighted"), dim=0)
    return torch.softmax(torch.einsum("kn,knc->nc", w, z) / T, dim=-1)


def ca_mkd_weights(ce: torch.Tensor) -> torch.Tensor:
    """CA-MKD's per-example teacher weights (Zhang et al., ICASSP 2022, Eq. 2): w_k = (1 − softmax_k(CE_k)) / (K − 1)."""
    K = ce.shape[0]
    if K < 2:
        raise ValueError("ca_mkd needs at least two teachers")
    return (1.0 - torch.softmax(ce, dim=0)) / (K - 1)


@fusion("ca_mkd", needs_train_labels=True)
def ca_mkd(z, T, ctx):
    """CA-MKD as published: Σ_k w_k · KL(p_k,T ‖ q_T), w_k from the teachers' cross-entropy on the gold label.

    A convex combination of per-teacher KL terms has the gradient of one KL to the mixture
    Σ_k w_k p_k,T (they differ by the teachers' entropies, a constant), so the target is that
    mixture. The authors' code also divides the sum by K, a constant factor on α; not done here.
    """
    w = ca_mkd_weights(teacher_cross_entropy(z, ctx.labels, "ca_mkd"))  # [K, n], columns sum to 1
    return torch.einsum("kn,knc->nc", w, torch.softmax(z / T, dim=-1))


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
# Adaptive per batch: AE-KD


class AeKdParams(Strict):
    # AE-KD's tolerance C for disagreement among teachers (Du et al., NeurIPS 2020): each teacher's
    # weight is at most C, so C = 1 is the plain min-norm point and C = 1/K the uniform average.
    # The authors' default is 0.6; it must lie in [1/K, 1] (checked against the teachers).
    tolerance: float = Field(0.6, gt=0, le=1)


def min_norm_weights(grads: np.ndarray, tolerance: float) -> np.ndarray:
    """argmin ‖Σ_k w_k g_k‖² over 0 ≤ w_k ≤ tolerance, Σ_k w_k = 1 (``grads`` [K, C]), by SLSQP.

    The authors solve the same problem as a ν-one-class SVM (libsvm); libsvm fails when the
    gradients are collinear, which is every batch of a binary task (softmax gradients sum to 0).
    """
    from scipy.optimize import minimize

    K = grads.shape[0]
    gram = grads @ grads.T
    scale = float(np.trace(gram)) or 1.0
    gram = gram / scale
    start = np.full(K, 1.0 / K)
    result = minimize(lambda w: float(w @ gram @ w), start, jac=lambda w: 2.0 * gram @ w, method="SLSQP",
                      bounds=[(0.0, tolerance)] * K, constraints=[{"type": "eq", "fun": lambda w: w.sum() - 1.0,
                                                                    "jac": lambda w: np.ones_like(w)}],
                      options={"ftol": 1e-15, "maxiter": 200})
    w = np.clip(result.x, 0.0, tolerance)
    return w / w.sum()


def ae_kd_weights(student_logits: torch.Tensor, teacher_probs: torch.Tensor, T: float, tolerance: float) -> torch.Tensor:
    """AE-KD's teacher weights for one batch: the min-norm point of the teachers' KD gradients.

    ``student_logits`` [B, C], ``teacher_probs`` [K, B, C] at temperature T. The gradient of
    T²·KL(p_k ‖ q_T) with respect to the student logits is T·(q_T − p_k) per example; averaged
    over the batch it is g_k [C] (as in the authors' code). The weights solve
    min ‖Σ_k w_k g_k‖² over 0 ≤ w_k ≤ C, Σ w_k = 1, C the tolerance (:func:`min_norm_weights`).
    """
    K = teacher_probs.shape[0]
    if not 1.0 / K - 1e-12 <= tolerance <= 1.0:
        raise ValueError(f"AE-KD tolerance must lie in [1/K, 1] = [{1 / K:.3f}, 1] (got {tolerance})")
    q = torch.softmax(student_logits.detach().double() / T, dim=-1)
    g = (T * (q[None] - teacher_probs.double())).mean(1)  # [K, C]
    return torch.from_numpy(min_norm_weights(g.numpy(), tolerance))


@strategy("ae_kd")
class AeKd(Strategy):
    """AE-KD: per batch, teacher weights from the min-norm point of the teachers' KD gradients."""

    fixed = False
    own_params = "ae_kd"
    Params = AeKdParams

    def check_settings(self, distill, teachers):
        K, tol = len(teachers), distill.ae_kd.tolerance
        if tol < 1.0 / K - 1e-12:
            raise MtkdError(f"distill.ae_kd.tolerance: must lie in [1/K, 1] = [{1 / K:.3g}, 1] for {K} teachers"
                            f" (got {tol}; 1/K is the plain average, 1 the min-norm point)")

    def distiller(self, teachers, labels, settings):
        return AeKdDistiller(self, teachers, labels, settings)


class AeKdDistiller(Distiller):
    def __init__(self, strategy, teachers, labels, settings):
        super().__init__(strategy, teachers, labels, settings)
        self.tolerance = float(settings["ae_kd"]["tolerance"])
        self.p_train = torch.softmax(torch.from_numpy(teachers.splits["train"]).double() / self.T, dim=-1).float()

    def start(self, seed, hidden_size):
        self.weight_log: list[torch.Tensor] = []
        return []

    def loss(self, logits, hidden, idx, y, progress):
        p = self.p_train[:, idx].to(logits.device)  # [K, B, C]
        w = ae_kd_weights(logits.cpu(), p.cpu(), self.T, self.tolerance).to(p.dtype)
        self.weight_log.append(w)
        # Σ_k w_k · KL(p_k ‖ q) has the gradient of KL(Σ_k w_k p_k ‖ q): the mixture is the target.
        target = torch.einsum("k,kbc->bc", w.to(logits.device), p)
        return kd_loss(logits, target, y, self.T, alpha_at(self.alpha, self.schedule, progress))

    def fused_test(self, split, logits, hidden):
        p1 = torch.softmax(torch.from_numpy(self.teachers.splits[split]).double(), dim=-1)
        w = ae_kd_weights(torch.from_numpy(logits), p1, 1.0, self.tolerance)
        weights = dict(zip(self.teachers.names, np.round(w.numpy().astype(float), 6).tolist()))
        return torch.einsum("k,knc->nc", w, p1).numpy(), {"teacher_weights_test": weights}

    def seed_record(self):
        mean = torch.stack(self.weight_log).mean(0).numpy().astype(float)
        return {"teacher_weights_train": dict(zip(self.teachers.names, np.round(mean, 6).tolist()))}


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

    def fused_logits(self, h: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` [n, H] student first-token states, ``z`` [K, n, C] → (Σ_k w_k z_k [n, C], w [n, K])."""
        w = self.weights(h)
        return torch.einsum("nk,knc->nc", w.to(z.dtype), z), w

    def forward(self, h: torch.Tensor, z: torch.Tensor, T: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``h`` [n, H] student first-token states, ``z`` [K, n, C] → (p_T [n, C], w [n, K])."""
        fused, w = self.fused_logits(h, z)
        return torch.softmax(fused / T, dim=-1), w


class GatingParams(Strict):
    hidden_size: int = Field(64, ge=1)
    detach_hidden: bool = True
    learning_rate: float = Field(1e-3, gt=0, lt=1)
    # label_likelihood: the gate maximises the gold label's likelihood under its fused teacher
    # distribution at T = 1, and the student distils from that distribution, detached. kd: the
    # seed's, the gate is trained by the student's own loss (which rewards high-entropy targets
    # and targets the student already matches, not correct teachers).
    objective: Literal["label_likelihood", "kd"] = "label_likelihood"


@strategy("gating")
class Gating(Strategy):
    """Per-example teacher weights from an MLP on the student's first-token state, trained jointly."""

    needs_train_labels = True  # label_likelihood fits the gate to the gold labels
    learned = True
    fixed = False
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
        fused, w = self.gate.fused_logits(hidden, self.z_train[:, idx].to(logits.device))
        self.gate_log.append(w.detach().mean(0).cpu())
        alpha = alpha_at(self.alpha, self.schedule, progress)
        if self.settings["gating"].get("objective", "kd") == "kd":
            return kd_loss(logits, torch.softmax(fused / self.T, dim=-1), y, self.T, alpha)
        # The gate learns which teacher to trust from the gold labels; the student distils from
        # the gate's fusion as from a fixed target (detached), so its own loss cannot steer the gate.
        gate_nll = torch.nn.functional.cross_entropy(fused.float(), y)
        return kd_loss(logits, torch.softmax(fused / self.T, dim=-1).detach(), y, self.T, alpha) + gate_nll

    def fused_test(self, split, logits, hidden):
        with torch.no_grad():
            p1, w = self.gate.eval().cpu()(torch.from_numpy(hidden), torch.from_numpy(self.teachers.splits[split]).float(), 1.0)
        weights = dict(zip(self.teachers.names, np.round(w.mean(0).numpy().astype(float), 6).tolist()))
        return p1.numpy(), {"gate_weights_test": weights}

    def seed_record(self):
        mean = torch.stack(self.gate_log).mean(0).numpy().astype(float)
        return {"gate_weights_train": dict(zip(self.teachers.names, np.round(mean, 6).tolist()))}
