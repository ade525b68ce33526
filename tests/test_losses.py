import math

import pytest
import torch

from mtkd.losses import kd_loss


def _softmax(xs):
    e = [math.exp(x) for x in xs]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_hand_computation():
    # s = [1, 0], y = 0, T = 2, α = 0.5, fused teacher p_T = [0.8, 0.2]
    q = _softmax([0.5, 0.0])  # student at T=2
    kl = 0.8 * math.log(0.8 / q[0]) + 0.2 * math.log(0.2 / q[1])  # KL(teacher ‖ student)
    ce = -math.log(_softmax([1.0, 0.0])[0])
    expected = 0.5 * 2**2 * kl + 0.5 * ce
    got = kd_loss(torch.tensor([[1.0, 0.0]]), torch.tensor([[0.8, 0.2]]), torch.tensor([0]), T=2.0, alpha=0.5)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(0.303980, abs=1e-5)  # 0.5·4·0.073675 + 0.5·0.313262, by hand


def test_kl_direction_is_teacher_first():
    s, p, y = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([[0.2, 0.5, 0.3]]), torch.tensor([1])
    q = torch.softmax(s, -1)
    forward = (p * (p / q).log()).sum()  # KL(p ‖ q)
    reverse = (q * (q / p).log()).sum()
    got = kd_loss(s, p, y, T=1.0, alpha=1.0)
    assert got.item() == pytest.approx(forward.item(), rel=1e-6)
    assert got.item() != pytest.approx(reverse.item(), rel=1e-3)


@pytest.mark.parametrize("T", [1.0, 3.0, 9.0])
def test_t_squared_factor(T):
    s, y = torch.tensor([[0.3, -0.2], [1.0, 2.0]]), torch.tensor([0, 1])
    p = torch.tensor([[0.6, 0.4], [0.1, 0.9]])
    q = torch.softmax(s / T, -1)
    kl_batchmean = (p * (p / q).log()).sum() / 2
    assert kd_loss(s, p, y, T, alpha=1.0).item() == pytest.approx(T * T * kl_batchmean.item(), rel=1e-6)


def test_alpha_zero_is_cross_entropy_and_ignores_teacher():
    s, y = torch.tensor([[0.3, -0.2], [1.0, 2.0]]), torch.tensor([0, 1])
    ce = torch.nn.functional.cross_entropy(s, y)
    assert kd_loss(s, torch.tensor([[1.0, 0.0], [1.0, 0.0]]), y, 6.0, 0.0).item() == pytest.approx(ce.item())
    assert kd_loss(s, None, y, 6.0, 0.7).item() == pytest.approx(ce.item())


def test_kd_term_is_zero_when_student_matches_teacher():
    s = torch.tensor([[1.0, 3.0, -1.0]])
    T = 4.0
    p = torch.softmax(s / T, -1)
    assert kd_loss(s, p, torch.tensor([1]), T, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_labels_only_the_labelled_examples():
    """Transfer examples (label NO_LABEL) get the soft term only: CE is the mean over the labelled ones."""
    import math

    from mtkd.losses import NO_LABEL

    s = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    p = torch.tensor([[0.7, 0.3], [0.4, 0.6], [0.5, 0.5]])
    y = torch.tensor([0, NO_LABEL, 1])
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))  # example 0, gold 0
    ce2 = math.log(2)                                 # example 2: uniform logits
    q = [[math.exp(2) / (math.exp(2) + 1), 1 / (math.exp(2) + 1)], [1 / (1 + math.e), math.e / (1 + math.e)], [0.5, 0.5]]
    kl = sum(pi * math.log(pi / qi) for prow, qrow in zip(p.tolist(), q) for pi, qi in zip(prow, qrow)) / 3  # all three
    assert kd_loss(s, p, y, T=1.0, alpha=0.0).item() == pytest.approx((ce0 + ce2) / 2, rel=1e-6)
    assert kd_loss(s, p, y, T=1.0, alpha=0.25).item() == pytest.approx(0.25 * kl + 0.75 * (ce0 + ce2) / 2, rel=1e-6)
    none = torch.full((3,), NO_LABEL)
    assert kd_loss(s, p, none, T=1.0, alpha=0.25).item() == pytest.approx(0.25 * kl, rel=1e-6)  # no label: CE is 0
    labelled = torch.tensor([0, 1, 1])  # every example labelled: the plain mean, as before
    assert torch.equal(kd_loss(s, p, labelled, T=2.0, alpha=0.3),
                       0.3 * 4 * torch.nn.functional.kl_div(torch.log_softmax(s / 2, -1), p, reduction="batchmean")
                       + 0.7 * torch.nn.functional.cross_entropy(s, labelled))
