"""Classifier heads of decoupled learning (tailgan.nets.heads) against closed forms."""

import torch
from torch import nn

from tailgan.nets.heads import ScaledHead, tau_normalized


def test_tau_norm_divides_each_class_vector_by_its_norm_to_the_tau():
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 2.0]]))  # norms 5 and 2
        lin.bias.copy_(torch.tensor([0.5, -0.5]))
    for tau, norms in ((0.0, (1, 1)), (1.0, (5, 2)), (0.5, (5**0.5, 2**0.5))):
        out = tau_normalized(lin, tau)
        expected = lin.weight / torch.tensor(norms, dtype=torch.float)[:, None]
        assert torch.allclose(out.weight, expected) and torch.equal(out.bias, lin.bias)
    assert torch.allclose(tau_normalized(lin, 1.0).weight.norm(dim=1), torch.ones(2))
    assert torch.equal(lin.weight[0], torch.tensor([3.0, 4.0, 0.0]))  # the original is untouched


def test_lws_trains_only_the_scales():
    lin = nn.Linear(4, 3)
    head = ScaledHead(lin)
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["scales"]
    x = torch.randn(5, 4)
    assert torch.allclose(head(x), lin(x))  # scales start at 1
    with torch.no_grad():
        head.scales.copy_(torch.tensor([1.0, 2.0, 0.5]))
    assert torch.allclose(head(x), lin(x) * torch.tensor([1.0, 2.0, 0.5]))
