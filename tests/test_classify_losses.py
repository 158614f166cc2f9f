"""Classification losses against hand computation (plain Python math, not the functions under test)."""

import math

import pytest
import torch
import torch.nn.functional as F

from tailgan.losses.classification import (
    balanced_softmax_loss,
    class_balanced_loss,
    class_balanced_weights,
    cross_entropy,
    drw_cross_entropy,
    drw_weights,
    focal_loss,
    inverse_frequency_weights,
    ldam_loss,
    ldam_margins,
    log_priors,
    logit_adjusted_loss,
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


# --- logit adjustment, Balanced Softmax, CE-DRW (closed forms) ---------------------------------------------


def test_logit_adjusted_loss_closed_form():
    counts = [6, 3, 1]  # priors 0.6, 0.3, 0.1
    for tau in (0.0, 1.0, 1.5):
        hand = 0.0
        for row, y in zip(LOGITS, LABELS):
            adj = [z + tau * math.log(n / 10) for z, n in zip(row, counts)]
            hand += _ce(adj, y)
        got = logit_adjusted_loss(torch.tensor(LOGITS), torch.tensor(LABELS), counts, tau)
        assert float(got) == pytest.approx(hand / len(LABELS), rel=1e-6)
    # two classes, zero logits, tau 1: CE = -log(pi_y), here -log(0.25) for the rare class
    z = torch.zeros(1, 2)
    assert float(logit_adjusted_loss(z, torch.tensor([1]), [3, 1])) == pytest.approx(math.log(4), rel=1e-6)
    assert log_priors([3, 1]).tolist() == pytest.approx([math.log(0.75), math.log(0.25)])
    with pytest.raises(ValueError, match="tau"):
        logit_adjusted_loss(z, torch.tensor([1]), [3, 1], tau=-1)


def test_balanced_softmax_closed_form_and_equivalence_to_tau_1():
    counts = [60, 10, 2]
    hand = 0.0
    for row, y in zip(LOGITS, LABELS):
        # -log(n_y e^{z_y} / sum_j n_j e^{z_j})
        num = counts[y] * math.exp(row[y])
        hand += -math.log(num / sum(n * math.exp(z) for n, z in zip(counts, row)))
    z, y = torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS)
    got = balanced_softmax_loss(z, y, counts)
    assert float(got) == pytest.approx(hand / len(LABELS), rel=1e-9)
    assert float(got) == pytest.approx(float(logit_adjusted_loss(z, y, counts, 1.0)), rel=1e-6)
    assert abs(float(got) - float(F.cross_entropy(z, y))) > 1e-2  # not plain CE


def test_ce_drw_switches_to_class_balanced_weights():
    counts = [625, 16, 1]
    z, y = torch.tensor(LOGITS), torch.tensor(LABELS)
    # before the switch: plain cross-entropy
    assert float(drw_cross_entropy(z, y, counts, 0.5, start=0.8)) == pytest.approx(float(F.cross_entropy(z, y)))
    # after: sum_i w[y_i] CE_i / sum_i w[y_i] with CB(0.9999) weights
    w = _hand_cb_weights(counts, 0.9999)
    num = sum(w[t] * _ce(row, t) for row, t in zip(LOGITS, LABELS))
    den = sum(w[t] for t in LABELS)
    assert float(drw_cross_entropy(z, y, counts, 0.8, start=0.8)) == pytest.approx(num / den, rel=1e-5)


# --- per-sample weights (synthetic images): a sample of weight s counts as s copies ---------------------------


def _all_losses(z, y, s=None):
    counts = [60, 10, 2]
    w = class_balanced_weights(counts, 0.99)
    m = ldam_margins(counts)
    return {
        "ce": cross_entropy(z, y, s),
        "cs": weighted_cross_entropy(z, y, w, s),
        "cb-sigmoid": class_balanced_loss(z, y, w, "sigmoid", sample_weight=s),
        "cb-focal": class_balanced_loss(z, y, w, "focal", 2.0, sample_weight=s),
        "focal": focal_loss(z, y, 2.0, sample_weight=s),
        "ldam-drw": ldam_loss(z.tanh(), y, m, 30.0, w, s),
        "ce-drw": drw_cross_entropy(z, y, counts, 0.9, sample_weight=s),
        "la": logit_adjusted_loss(z, y, counts, 1.0, s),
        "balanced-softmax": balanced_softmax_loss(z, y, counts, s),
    }


def test_sample_weight_two_equals_a_duplicated_sample():
    z, y = torch.tensor(LOGITS, dtype=torch.float64), torch.tensor(LABELS)
    s = torch.tensor([1.0, 2.0, 1.0, 1.0], dtype=torch.float64)
    dup = [0, 1, 1, 2, 3]  # sample 1 twice
    weighted, duplicated = _all_losses(z, y, s), _all_losses(z[dup], y[dup])
    unweighted, ones = _all_losses(z, y), _all_losses(z, y, torch.ones(4, dtype=torch.float64))
    for name in weighted:
        assert float(weighted[name]) == pytest.approx(float(duplicated[name]), rel=1e-9), name
        assert float(ones[name]) == pytest.approx(float(unweighted[name]), rel=1e-9), name
        assert abs(float(weighted[name]) - float(unweighted[name])) > 1e-6, name


def test_sample_weight_enters_the_mean_as_stated():
    # plain CE with weights s: sum_i s_i CE_i / sum_i s_i (hand numbers)
    s = [1.0, 0.25, 1.0, 0.25]
    hand = sum(si * _ce(row, t) for si, row, t in zip(s, LOGITS, LABELS)) / sum(s)
    got = cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor(s))
    assert float(got) == pytest.approx(hand, rel=1e-6)
    # weight 0: the sample drops out entirely
    zero = cross_entropy(torch.tensor(LOGITS), torch.tensor(LABELS), torch.tensor([1.0, 0.0, 1.0, 1.0]))
    keep = [0, 2, 3]
    assert float(zero) == pytest.approx(sum(_ce(LOGITS[i], LABELS[i]) for i in keep) / 3, rel=1e-6)
