import math

import numpy as np

import pytest
import torch

from mtkd.fusion import (STRATEGIES, FusionContext, GatingFusion, fit_temperature, fuse, strategy_names,
                         teacher_weights)

NAMES = ["a", "b"]
ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]


def ctx(**kw):
    return FusionContext(kw.pop("names", NAMES), **kw)


def sig(x):
    return 1 / (1 + math.exp(-x))


def z_of(*teachers):
    return torch.tensor([teachers], dtype=torch.float64).transpose(0, 1)  # [K, n=1, C]


def test_average_hand_value():
    z = z_of([2.0, 0.0], [0.0, 1.0])  # mean = [1, 0.5]
    p = fuse("average", z, 2.0, ctx())
    assert p[0, 0].item() == pytest.approx(sig(0.5 / 2.0))


def test_weighted_hand_value_and_weights_sum_to_one():
    c = ctx(validation_metric={"a": 0.9, "b": 0.3})
    w = teacher_weights(c)
    assert w.tolist() == pytest.approx([0.75, 0.25])
    assert w.sum().item() == pytest.approx(1.0)
    z = z_of([2.0, 0.0], [0.0, 2.0])  # 0.75·[2,0] + 0.25·[0,2] = [1.5, 0.5]
    assert fuse("weighted", z, 1.0, c)[0, 0].item() == pytest.approx(sig(1.0))


def test_weighted_rejects_all_zero_metrics():
    with pytest.raises(ValueError):
        teacher_weights(ctx(validation_metric={"a": 0.0, "b": 0.0}))


def test_best_per_sample_picks_lowest_entropy_teacher_per_example():
    z = torch.tensor([[[3.0, 0.0], [0.0, 0.1]],     # teacher a: confident, then unsure
                      [[0.0, 1.0], [0.0, 4.0]]], dtype=torch.float64)  # teacher b: unsure, then confident
    p = fuse("best_per_sample", z, 2.0, ctx())
    assert p[0, 0].item() == pytest.approx(sig(3.0 / 2))  # example 0 from a
    assert p[1, 1].item() == pytest.approx(sig(4.0 / 2))  # example 1 from b


def test_prob_average_hand_value():
    z = z_of([2.0, 0.0], [0.0, 2.0])
    p = fuse("prob_average", z, 1.0, ctx())
    assert p[0, 0].item() == pytest.approx((sig(2.0) + sig(-2.0)) / 2) == pytest.approx(0.5)


def test_likelihood_weighted_weights_by_exp_minus_ce():
    z = z_of([2.0, 0.0], [0.0, 2.0])
    c = ctx(labels=torch.tensor([0]))
    ce_a, ce_b = -math.log(sig(2.0)), -math.log(sig(-2.0))
    wa = math.exp(-ce_a) / (math.exp(-ce_a) + math.exp(-ce_b))  # = σ(2)
    fused0 = wa * 2.0 - (1 - wa) * 0.0, (1 - wa) * 2.0
    expected = sig(fused0[0] - fused0[1])
    assert fuse("likelihood_weighted", z, 1.0, c)[0, 0].item() == pytest.approx(expected)


def test_calibrated_average_divides_by_fitted_temperatures():
    z = z_of([4.0, 0.0], [0.0, 1.0])
    c = ctx(temperatures={"a": 2.0, "b": 1.0})  # [2,0] and [0,1] → mean [1, 0.5]
    assert fuse("calibrated_average", z, 1.0, c)[0, 0].item() == pytest.approx(sig(0.5))


def test_single_equals_that_teacher():
    z = torch.randn(3, 5, 4, dtype=torch.float64)
    c = ctx(names=["x", "y", "w"])
    for k, name in enumerate(c.teacher_names):
        assert torch.allclose(fuse(f"single_{name}", z, 3.0, c), torch.softmax(z[k] / 3.0, -1))


FIXED = [s for s, e in STRATEGIES.items() if e.fixed]
SYMMETRIC = [s for s in FIXED if STRATEGIES[s].symmetric]


def test_symmetric_fusions_are_the_seed_and_literature_averages():
    assert {"average", "prob_average", "best_per_sample", "calibrated_average", "likelihood_weighted", "weighted",
            "ca_mkd"} <= set(SYMMETRIC)


@pytest.mark.parametrize("strategy", SYMMETRIC)
def test_permuting_teachers_changes_nothing(strategy):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(3, 20, 3, generator=g, dtype=torch.float64) * 3
    names = ["x", "y", "w"]
    extra = dict(validation_metric={"x": 0.8, "y": 0.7, "w": 0.6}, labels=torch.randint(0, 3, (20,), generator=g),
                 temperatures={"x": 1.5, "y": 0.7, "w": 2.0})
    perm = [2, 0, 1]
    p = fuse(strategy, z, 2.0, FusionContext(names, **extra))
    q = fuse(strategy, z[perm], 2.0, FusionContext([names[i] for i in perm], **extra))
    assert torch.allclose(p, q)


@pytest.mark.parametrize("strategy", FIXED + ["single_x"])
def test_rows_are_distributions_and_temperature_limits(strategy):
    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 10, 4, generator=g, dtype=torch.float64)
    c = FusionContext(["x", "y", "w"], {"x": 0.8, "y": 0.7, "w": 0.6}, torch.randint(0, 4, (10,), generator=g),
                      {"x": 1.0, "y": 1.0, "w": 1.0})
    p = fuse(strategy, z, 2.0, c)
    assert torch.allclose(p.sum(-1), torch.ones(10, dtype=torch.float64))
    assert (p >= 0).all()
    hot = fuse(strategy, z, 1e6, c)  # T → ∞: uniform
    assert torch.allclose(hot, torch.full_like(hot, 0.25), atol=1e-5)


def test_strategy_names():
    assert strategy_names(["a", "b"])[:3] == ["none", "single_a", "single_b"]
    assert {"average", "weighted", "best_per_sample", "gating"} <= set(strategy_names(["a"]))


def test_gating_weights_sum_to_one_and_zero_gate_is_average():
    torch.manual_seed(0)
    gate = GatingFusion(8, 3, hidden_size=4)
    h, z = torch.randn(5, 8), torch.randn(3, 5, 2)
    p, w = gate(h, z, 2.0)
    assert torch.allclose(w.sum(-1), torch.ones(5))
    torch.nn.init.zeros_(gate.g[-1].weight)
    torch.nn.init.zeros_(gate.g[-1].bias)
    p, w = gate(h, z, 2.0)
    assert torch.allclose(p, torch.softmax(z.mean(0) / 2.0, -1), atol=1e-6)


def test_gating_detach_controls_gradient_to_student_hidden():
    gate = GatingFusion(4, 2, detach_hidden=True)
    h = torch.randn(3, 4, requires_grad=True)
    p, _ = gate(h, torch.randn(2, 3, 2), 1.0)
    p[:, 0].sum().backward()
    assert h.grad is None
    gate = GatingFusion(4, 2, detach_hidden=False)
    p, _ = gate(h, torch.randn(2, 3, 2), 1.0)
    p[:, 0].sum().backward()
    assert h.grad is not None and h.grad.abs().sum() > 0


def test_fit_temperature_recovers_scaling():
    g = torch.Generator().manual_seed(0)
    true_logits = torch.randn(4000, 3, generator=g) * 2
    y = torch.multinomial(torch.softmax(true_logits, -1), 1, generator=g).squeeze(1)
    T = fit_temperature(true_logits * 3.0, y)  # over-confident by 3×
    assert T == pytest.approx(3.0, rel=0.1)


def test_every_registered_strategy_alike():
    """Kind, settings, and one training step of its teacher term on synthetic logits, for every strategy."""
    from mtkd.fusion import TeacherLogits, get_strategy
    from mtkd.params import load_params

    params = load_params(ROOT / "params.yaml")
    distill = params.distill.model_copy(update={"T": 6.0})  # one T for teachers x, y, w (the default's map names its own)
    names = ["x", "y", "w"]
    g = torch.Generator().manual_seed(0)
    n, C, H = 12, 3, 8
    teachers = TeacherLogits(names, {s: (torch.randn(3, n, C, generator=g) * 2).numpy() for s in ("train", "validation", "test")},
                             {"x": 0.8, "y": 0.7, "w": 0.6})
    labels = {s: torch.randint(0, C, (n,), generator=g).numpy() for s in ("train", "validation", "test")}
    for name in strategy_names(names):
        entry = get_strategy(name, names)
        assert entry.name == name and entry.kind in ("baseline", "single", "multi")
        settings = entry.settings(distill)
        assert (settings == {}) == (not entry.uses_teachers), name
        if entry.uses_teachers:
            assert {"T", "alpha", "alpha_schedule"} <= set(settings), name
        assert (entry.own_params in settings) if entry.own_params else (set(settings) <= {"T", "alpha", "alpha_schedule"})
        assert (entry.Params is not None) == (entry.own_params is not None), name
        d = entry.distiller(teachers if entry.uses_teachers else None, labels, settings)
        modules = d.start(seed=0, hidden_size=H)
        assert bool(modules) == entry.learned, name
        assert not (entry.fixed and entry.learned) and (entry.uses_teachers or not entry.fixed), name
        logits = torch.randn(4, C, requires_grad=True)
        hidden = torch.randn(4, H) if d.needs_hidden else None
        loss = d.loss(logits, hidden, torch.arange(4).numpy(), torch.from_numpy(labels["train"][:4]), 0.0)
        loss.backward()
        assert torch.isfinite(loss) and logits.grad is not None, name
        fused, record = d.fused_test("test", torch.randn(n, C).numpy(), torch.randn(n, H).numpy() if d.needs_hidden else None)
        if entry.uses_teachers:
            assert fused.shape == (n, C) and abs(fused.sum(1) - 1).max() < 1e-5, name
        else:
            assert fused is None, name
        assert isinstance(record, dict) and isinstance(d.seed_record(), dict)


def test_unknown_strategy_names_the_known_ones():
    from mtkd.errors import MtkdError
    from mtkd.fusion import get_strategy

    with pytest.raises(MtkdError, match=r"unknown strategy 'averag' \(known: none, single_a, average"):
        get_strategy("averag", ["a"])
    with pytest.raises(MtkdError, match=r"unknown strategy 'single_b': no teacher 'b'"):
        get_strategy("single_b", ["a"])


def test_ca_mkd_hand_value_is_the_published_weighting():
    # y = 0; teacher a puts σ(2) on it, teacher b σ(−2): CE_a = −log σ(2), CE_b = −log σ(−2).
    z = z_of([2.0, 0.0], [0.0, 2.0])
    c = ctx(labels=torch.tensor([0]))
    ce = torch.tensor([[-math.log(sig(2.0))], [-math.log(sig(-2.0))]], dtype=torch.float64)
    from mtkd.fusion import ca_mkd_weights

    w = ca_mkd_weights(ce)[:, 0]
    # softmax over teachers of CE = [σ(−2), σ(2)]; w = (1 − that) / (K − 1) = [σ(2), σ(−2)]
    assert w.tolist() == pytest.approx([sig(2.0), sig(-2.0)])
    p = fuse("ca_mkd", z, 1.0, c)  # Σ_k w_k softmax(z_k): the mixture the weighted KL terms pull towards
    assert p[0, 0].item() == pytest.approx(sig(2.0) ** 2 + sig(-2.0) ** 2)
    g = torch.Generator().manual_seed(3)
    ce3 = torch.rand(3, 50, generator=g, dtype=torch.float64) * 4
    w3 = ca_mkd_weights(ce3)
    assert torch.allclose(w3.sum(0), torch.ones(50, dtype=torch.float64)) and (w3 >= 0).all() and (w3 <= 0.5).all()
    assert (w3.argmax(0) == ce3.argmin(0)).all()  # the teacher closest to the gold label weighs most


def test_ca_mkd_target_has_the_gradient_of_the_weighted_kl_terms():
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 6, 4, generator=g, dtype=torch.float64) * 2
    y = torch.randint(0, 4, (6,), generator=g)
    T = 3.0
    s = torch.randn(6, 4, dtype=torch.float64, requires_grad=True)
    from mtkd.fusion import ca_mkd_weights, teacher_cross_entropy

    w = ca_mkd_weights(teacher_cross_entropy(z, y, "ca_mkd"))
    log_q = torch.log_softmax(s / T, -1)
    per_teacher = (torch.softmax(z / T, -1) * (torch.log_softmax(z / T, -1) - log_q[None])).sum(-1)  # KL_k per example
    (w * per_teacher).sum().backward()
    want = s.grad.clone()
    s.grad = None
    p = fuse("ca_mkd", z, T, ctx(names=["x", "y", "w"], labels=y))
    (p * (torch.log(p) - torch.log_softmax(s / T, -1))).sum().backward()
    assert torch.allclose(s.grad, want, atol=1e-12)


def test_ae_kd_weights_hand_values_and_tolerance():
    from mtkd.fusion import ae_kd_weights

    s = torch.zeros(1, 2, dtype=torch.float64)  # q = [0.5, 0.5]
    p = torch.tensor([[[0.9, 0.1]], [[0.3, 0.7]]], dtype=torch.float64)  # g_1 = [−.4, .4] = −2 g_2
    assert ae_kd_weights(s, p, 1.0, 1.0).tolist() == pytest.approx([1 / 3, 2 / 3], abs=1e-4)  # Σ w g = 0
    assert ae_kd_weights(s, p, 1.0, 0.6).tolist() == pytest.approx([0.4, 0.6], abs=1e-4)  # w ≤ C
    assert ae_kd_weights(s, p, 1.0, 0.5).tolist() == pytest.approx([0.5, 0.5], abs=1e-4)  # C = 1/K: average
    with pytest.raises(ValueError, match=r"tolerance must lie in \[1/K, 1\]"):
        ae_kd_weights(s, p, 1.0, 0.4)


def test_ae_kd_weights_are_the_constrained_min_norm_point():
    from scipy.optimize import minimize

    from mtkd.fusion import ae_kd_weights

    g = torch.Generator().manual_seed(5)
    for trial in range(5):
        s = torch.randn(8, 3, generator=g, dtype=torch.float64)
        p = torch.softmax(torch.randn(3, 8, 3, generator=g, dtype=torch.float64) * 2, -1)
        C, T = 0.8, 2.0
        w = ae_kd_weights(s, p, T, C).numpy()
        grads = (T * (torch.softmax(s / T, -1)[None] - p)).mean(1).numpy()
        norm = lambda v: float(np.sum((v @ grads) ** 2))  # noqa: E731
        ref = minimize(norm, np.full(3, 1 / 3), method="SLSQP", bounds=[(0, C)] * 3,
                       constraints=[{"type": "eq", "fun": lambda v: v.sum() - 1}], options={"ftol": 1e-14})
        assert w.sum() == pytest.approx(1.0) and (w >= -1e-9).all() and (w <= C + 1e-6).all()
        assert norm(w) <= ref.fun + 1e-8, trial


def test_label_likelihood_gate_routes_each_half_to_its_right_teacher():
    """Teacher a is right exactly where h says "half A", teacher b on the other half: the gate learns it."""
    from mtkd.fusion import TeacherLogits, get_strategy

    g = torch.Generator().manual_seed(0)
    n = 400
    half_a = torch.arange(n) < n // 2
    h = torch.where(half_a[:, None], torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])) + 0.1 * torch.randn(n, 2, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    right = torch.nn.functional.one_hot(y, 2).double() * 6 - 3   # +3 on the gold class
    wrong = -right
    z = torch.stack([torch.where(half_a[:, None], right, wrong), torch.where(half_a[:, None], wrong, right)])
    teachers = TeacherLogits(["a", "b"], {s: z.numpy() for s in ("train", "validation", "test")}, {"a": 0.5, "b": 0.5})
    labels = {s: y.numpy() for s in ("train", "validation", "test")}
    settings = {"T": 2.0, "alpha": 0.7, "alpha_schedule": "constant",
                "gating": {"hidden_size": 8, "detach_hidden": True, "learning_rate": 0.05, "objective": "label_likelihood"}}
    d = get_strategy("gating").distiller(teachers, labels, settings)
    (gate,) = d.start(seed=0, hidden_size=2)
    opt = torch.optim.Adam(gate.parameters(), lr=0.05)
    student = torch.zeros(n, 2)  # the student does not matter to this objective
    for step in range(200):
        idx = torch.randperm(n, generator=g)[:64].numpy()
        loss = d.loss(student[idx], h[idx], idx, y[idx], 0.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    w = gate.weights(h).detach()
    assert w[half_a, 0].mean() > 0.9 and w[~half_a, 1].mean() > 0.9


def test_fusion_context_takes_read_only_arrays_without_a_warning():
    import warnings

    from mtkd.fusion import TeacherLogits, fusion_context

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 6, 3)).astype(np.float32)
    labels, val_labels = np.array([0, 1, 2, 0, 1, 2]), np.array([2, 1, 0, 0, 1, 2])
    for a in (logits, labels, val_labels):
        a.setflags(write=False)  # as np.load of a memory map, or a precomputed teacher's file, gives them
    teachers = TeacherLogits(["a", "b"], {"train": logits, "validation": logits}, {"a": 0.5, "b": 0.6})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PyTorch warns once per process on a non-writable array
        ctx = fusion_context(teachers, labels, val_labels)
    assert ctx.labels.tolist() == labels.tolist()
