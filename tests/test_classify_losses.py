"""Classification losses against hand computation (plain Python math, not the functions under test)."""

import math

import pytest
import torch
import torch.nn.functional as F

from tailgan.losses.classification import (
    class_balanced_loss,
    class_balanced_weights,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    weighted_cross_entropy,
)

LOGITS = [[2.0, -1.0, 0.5], [0.1, 0.3, -2.0], [-0.5, 1.5, 0.0], [1.0, 1.0, 1.0]]
LABELS = [0, 2, 1, 2]


def _sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


def _ce(row, y):
    return math.log(sum(math.exp(v) for v in row)) - row[y]


def _hand_cb_weights(counts, beta):
    w = [(1 - beta) / (1 - beta**n) for n in counts]
    return [x * len(counts) / sum(w) for x in w]


@pytest.mark.parametrize("beta", [0.9, 0.99, 0.999, 0.9999])
def test_cb_weights_are_normalised_effective_numbers(beta):
    counts = [500, 40, 3]
    w = class_balanced_weights(counts, beta)
    assert w.tolist() == pytest.approx(_hand_cb_weights(counts, beta), rel=1e-6)
    assert float(w.sum()) == pytest.approx(3.0)


def test_cb_weights_limits_and_errors():
    assert class_balanced_weights([500, 40, 3], 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    inv = [1 / 500, 1 / 40, 1 / 3]
    inv = [3 * x / sum(inv) for x in inv]
    assert inverse_frequency_weights([500, 40, 3]).tolist() == pytest.approx(inv, rel=1e-6)
    # beta -> 1 approaches inverse frequency
    assert class_balanced_weights([500, 40, 3], 1 - 1e-9).tolist() == pytest.approx(inv, rel=1e-3)
    with pytest.raises(ValueError, match="beta"):
        class_balanced_weights([5, 5], 1.0)
    with pytest.raises(ValueError, match="no training images"):
        class_balanced_weights([5, 0], 0.9)


def test_softmax_cb_loss_is_the_tf_reduction_not_torch_weighted_mean():
    counts, beta = [60, 10, 2], 0.99
    w_hand = _hand_cb_weights(counts, beta)
    hand = sum(w_hand[y] * _ce(row, y) for row, y in zip(LOGITS, LABELS)) / len(LABELS)
    z, y = torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS)
    w = class_balanced_weights(counts, beta)
    got = class_balanced_loss(z, y, w, "softmax")
    assert float(got) == pytest.approx(hand, rel=1e-6)
    assert float(weighted_cross_entropy(z, y, w)) == pytest.approx(hand, rel=1e-6)
    # PyTorch's weighted mean divides by sum_i w[y_i] instead: a different number here
    torch_mean = float(F.cross_entropy(z, y, weight=w.double()))
    assert abs(torch_mean - hand) > 1e-3


def test_sigmoid_cb_loss_matches_hand_computation():
    counts, beta = [60, 10, 2], 0.999
    w = _hand_cb_weights(counts, beta)
    total = 0.0
    for row, y in zip(LOGITS, LABELS):
        for j, z in enumerate(row):
            t = 1.0 if j == y else 0.0
            p = _sigmoid(z)
            total += w[y] * -(t * math.log(p) + (1 - t) * math.log(1 - p))
    hand = total / len(LABELS)  # divided by the number of positive labels
    got = class_balanced_loss(
        torch.tensor(LOGITS), torch.tensor(LABELS), class_balanced_weights(counts, beta), "sigmoid"
    )
    assert float(got) == pytest.approx(hand, rel=1e-5)


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_focal_cb_loss_matches_hand_computation(gamma):
    counts, beta = [60, 10, 2], 0.9999
    w = _hand_cb_weights(counts, beta)
    total = 0.0
    for row, y in zip(LOGITS, LABELS):
        for j, z in enumerate(row):
            t = 1.0 if j == y else 0.0
            p = _sigmoid(z)
            p_t = p if t else 1 - p
            total += w[y] * (1 - p_t) ** gamma * -math.log(p_t)
    hand = total / len(LABELS)
    got = class_balanced_loss(
        torch.tensor(LOGITS), torch.tensor(LABELS), class_balanced_weights(counts, beta), "focal", gamma
    )
    assert float(got) == pytest.approx(hand, rel=1e-5)


def test_focal_cb_loss_is_finite_for_extreme_logits():
    z = torch.tensor([[200.0, -200.0], [-200.0, 200.0]], requires_grad=True)
    loss = class_balanced_loss(z, torch.tensor([0, 0]), torch.ones(2), "focal", 2.0)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()
    # sample 0 is right with certainty (no loss), sample 1 wrong on both logits: 2 * 200 BCE, modulator 1
    assert loss.item() == pytest.approx(2 * 200.0 / 2, rel=1e-4)


def test_softmax_focal_loss():
    z, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    for gamma in (0.0, 1.0, 2.0):
        hand = 0.0
        for row, t in zip(LOGITS, LABELS):
            ce = _ce(row, t)
            hand += (1 - math.exp(-ce)) ** gamma * ce
        assert float(focal_loss(z, y, gamma)) == pytest.approx(hand / len(LABELS), rel=1e-5)
    assert float(focal_loss(z, y, 0.0)) == pytest.approx(float(F.cross_entropy(z, y)), rel=1e-6)


def test_ldam_margins_loss_and_drw():
    counts = [625, 16, 1]
    m = ldam_margins(counts, 0.5)
    # n^(-1/4) = 1/5, 1/2, 1, scaled so the largest is 0.5
    assert m.tolist() == pytest.approx([0.1, 0.25, 0.5])
    s = 30.0
    cos = [[0.9, -0.2, 0.1], [0.3, 0.2, -0.5], [0.0, 0.4, 0.1], [0.2, 0.2, 0.2]]
    hand = 0.0
    for row, y in zip(cos, LABELS):
        adj = [s * (v - (m[y].item() if j == y else 0.0)) for j, v in enumerate(row)]
        hand += _ce(adj, y)
    got = ldam_loss(torch.tensor(cos), torch.tensor(LABELS), m, s)
    assert float(got) == pytest.approx(hand / len(LABELS), rel=1e-5)
    # DRW: uniform weights before the switch, CB(0.9999) after
    assert drw_weights(counts, 0.5, start=0.8).tolist() == pytest.approx([1.0, 1.0, 1.0])
    assert drw_weights(counts, 0.8, start=0.8).tolist() == pytest.approx(_hand_cb_weights(counts, 0.9999), rel=1e-5)
