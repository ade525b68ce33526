import math

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


def test_confidence_aware_weights_by_exp_minus_ce():
    z = z_of([2.0, 0.0], [0.0, 2.0])
    c = ctx(labels=torch.tensor([0]))
    ce_a, ce_b = -math.log(sig(2.0)), -math.log(sig(-2.0))
    wa = math.exp(-ce_a) / (math.exp(-ce_a) + math.exp(-ce_b))  # = σ(2)
    fused0 = wa * 2.0 - (1 - wa) * 0.0, (1 - wa) * 2.0
    expected = sig(fused0[0] - fused0[1])
    assert fuse("confidence_aware", z, 1.0, c)[0, 0].item() == pytest.approx(expected)


def test_calibrated_average_divides_by_fitted_temperatures():
    z = z_of([4.0, 0.0], [0.0, 1.0])
    c = ctx(temperatures={"a": 2.0, "b": 1.0})  # [2,0] and [0,1] → mean [1, 0.5]
    assert fuse("calibrated_average", z, 1.0, c)[0, 0].item() == pytest.approx(sig(0.5))


def test_single_equals_that_teacher():
    z = torch.randn(3, 5, 4, dtype=torch.float64)
    c = ctx(names=["x", "y", "w"])
    for k, name in enumerate(c.teacher_names):
        assert torch.allclose(fuse(f"single_{name}", z, 3.0, c), torch.softmax(z[k] / 3.0, -1))


FIXED = [s for s, e in STRATEGIES.items() if e.uses_teachers and not e.learned]
SYMMETRIC = [s for s in FIXED if STRATEGIES[s].symmetric]


def test_symmetric_fusions_are_the_seed_and_literature_averages():
    assert {"average", "prob_average", "best_per_sample", "calibrated_average", "confidence_aware", "weighted"} <= set(SYMMETRIC)


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
    names = ["x", "y", "w"]
    g = torch.Generator().manual_seed(0)
    n, C, H = 12, 3, 8
    teachers = TeacherLogits(names, {s: (torch.randn(3, n, C, generator=g) * 2).numpy() for s in ("train", "validation", "test")},
                             {"x": 0.8, "y": 0.7, "w": 0.6})
    labels = {s: torch.randint(0, C, (n,), generator=g).numpy() for s in ("train", "validation", "test")}
    for name in strategy_names(names):
        entry = get_strategy(name, names)
        assert entry.name == name and entry.kind in ("baseline", "single", "multi")
        settings = entry.settings(params.distill)
        assert (settings == {}) == (not entry.uses_teachers), name
        if entry.uses_teachers:
            assert {"T", "alpha", "alpha_schedule"} <= set(settings), name
        assert (entry.own_params in settings) if entry.own_params else (set(settings) <= {"T", "alpha", "alpha_schedule"})
        assert (entry.Params is not None) == (entry.own_params is not None), name
        d = entry.distiller(teachers if entry.uses_teachers else None, labels, settings)
        modules = d.start(seed=0, hidden_size=H)
        assert bool(modules) == entry.learned, name
        logits = torch.randn(4, C, requires_grad=True)
        hidden = torch.randn(4, H) if d.needs_hidden else None
        loss = d.loss(logits, hidden, torch.arange(4).numpy(), torch.from_numpy(labels["train"][:4]), 0.0)
        loss.backward()
        assert torch.isfinite(loss) and logits.grad is not None, name
        fused, record = d.fused_test("test", torch.randn(n, H).numpy() if d.needs_hidden else None)
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
