"""GAN losses: spec test vectors, an independent per-anchor reference, gradients, gathering, GP."""

import math
import os
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F

from tailgan.losses import (
    ADV_LOSSES,
    acgan_aux_loss,
    contrastive_2c_loss,
    d2dce_loss,
    d_hinge,
    d_nonsaturating,
    d_wasserstein,
    eco_loss,
    g_hinge,
    g_nonsaturating,
    g_wasserstein,
    gradient_penalty,
)

# ----------------------------------------------------------------------------------------------
# Spec examples (/work/shared/specs/ecogan-2c-d2dce.md, section 2.1)


def example_a(dtype=torch.float64):
    f = torch.tensor([[1.0, 0], [0, 1], [-1, 0], [0, -1]], dtype=dtype)
    y = torch.tensor([0, 0, 1, 2])
    table = torch.tensor([[1.0, 0], [-1, 0], [0, -1]], dtype=dtype)
    return f, table[y], y


def _unit(angles):
    a = torch.tensor(angles, dtype=torch.float64)
    return torch.stack([a.cos(), a.sin()], dim=1)


def example_b():
    y = torch.tensor([0, 0, 1, 1, 0])
    return _unit([0, 0.3, 2.0, 2.4, -1.5]), _unit([0.1, 2.2])[y], y


EXAMPLES = {"A": example_a, "B": example_b}

# (example, loss, kwargs, spec value)
SPEC_VALUES = [
    ("A", eco_loss, dict(temperature=1.0), 1.004611),
    ("A", eco_loss, dict(temperature=0.5), 0.845405),
    ("A", eco_loss, dict(temperature=1.0, max_shift=False), 0.753150),
    ("A", eco_loss, dict(temperature=0.5, max_shift=False), 0.401192),
    ("B", eco_loss, dict(temperature=1.0), 0.294509),
    ("B", eco_loss, dict(temperature=0.5), 0.095765),
    ("B", eco_loss, dict(temperature=0.1), 5.036e-05),
    ("A", contrastive_2c_loss, dict(temperature=1.0), 0.521861),
    ("A", contrastive_2c_loss, dict(temperature=0.5), 0.271057),
    ("B", contrastive_2c_loss, dict(temperature=1.0), 0.246596),
    ("B", contrastive_2c_loss, dict(temperature=0.5), 0.081522),
    ("A", d2dce_loss, dict(temperature=0.5, m_p=0.98), 1.679242),
    ("A", d2dce_loss, dict(temperature=0.5, m_p=0.98, max_shift=False), 1.648102),
    ("A", d2dce_loss, dict(temperature=1.0, m_p=0.98), 1.444162),
    ("A", d2dce_loss, dict(temperature=1.0, m_p=0.5), 1.721377),
    ("B", d2dce_loss, dict(temperature=0.5, m_p=0.98), 0.804426),
]


@pytest.mark.parametrize("example,loss_fn,kwargs,expected", SPEC_VALUES)
def test_spec_values(example, loss_fn, kwargs, expected):
    f, p, y = EXAMPLES[example]()
    # the spec prints 6 decimals (4 significant digits for 5.036e-05)
    tol = 1e-6 if expected > 1e-3 else 5e-9
    assert abs(loss_fn(f, p, y, **kwargs).item() - expected) < tol


# ----------------------------------------------------------------------------------------------
# Independent per-anchor reference: the spec's formulas, one anchor at a time, in numpy.


def _cos(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def eco_reference(f, p, y, tau, shifts=None):
    """Per-anchor (num, den, loss); ``shifts`` = list of (M_i, M'_i), default the spec's row maxima."""
    f, p, y = np.asarray(f), np.asarray(p), np.asarray(y)
    n = len(y)
    out = []
    for i in range(n):
        s = {j: _cos(f[i], f[j]) for j in range(n) if j != i}
        q = [_cos(f[i], p[k]) for k in range(n)]
        if shifts is None:
            m, m2 = (max(s.values()) if s else 0.0), max(q)
        else:
            m, m2 = shifts[i]
        num = sum(math.exp((s[j] - m) / tau) for j in s if y[j] == y[i])
        num += sum(math.exp((q[k] - m2) / tau) for k in range(n) if y[k] == y[i])
        den = sum(math.exp((v - m) / tau) for v in s.values()) + sum(math.exp((v - m2) / tau) for v in q)
        out.append((num, den, -math.log(num / den)))
    return out


def c2_reference(f, p, y, tau):
    f, p, y = np.asarray(f), np.asarray(p), np.asarray(y)
    out = []
    for i in range(len(y)):
        e = math.exp(_cos(f[i], p[i]) / tau)
        others = [(j, math.exp(_cos(f[i], f[j]) / tau)) for j in range(len(y)) if j != i]
        num = e + sum(v for j, v in others if y[j] == y[i])
        den = e + sum(v for _, v in others)
        out.append(-math.log(num / den))
    return out


def d2dce_reference(f, p, y, tau, m_p, shifts=None):
    """Per-anchor (a_i, negsum_i, loss); ``shifts`` = list of M_i, default the spec's pre-ReLU maxima."""
    f, p, y = np.asarray(f), np.asarray(p), np.asarray(y)
    n = len(y)
    out = []
    for i in range(n):
        t = {j: (_cos(f[i], f[j]) - (1 - m_p)) / tau for j in range(n) if j != i}
        if shifts is None:
            m = max(t.values()) if t else 0.0
        else:
            m = shifts[i]
        negsum = sum(math.exp(max(t[j], 0.0) - m) for j in t if y[j] != y[i])
        a = max((m_p - _cos(f[i], p[i])) / tau, 0.0)
        out.append((a, negsum, a + math.log(math.exp(-a) + negsum)))
    return out


def test_reference_reproduces_spec_tables():
    """The per-anchor reference matches the spec's intermediate quantities, so it can judge the loss."""
    f, p, y = example_a()
    ref = eco_reference(f.numpy(), p.numpy(), y.numpy(), 1.0)
    np.testing.assert_allclose([r[0] for r in ref], [3, 3, 1, 1], atol=1e-12)
    np.testing.assert_allclose([r[1] for r in ref], [4.871094, 5.735759, 4.006429, 4.471518], atol=1e-6)
    np.testing.assert_allclose([r[2] for r in ref], [0.484706, 0.648108, 1.387900, 1.497728], atol=1e-6)
    ref = eco_reference(f.numpy(), p.numpy(), y.numpy(), 0.5)
    np.testing.assert_allclose([r[1] for r in ref], [4.288986, 5.270671, 3.307302, 3.541341], atol=1e-6)
    np.testing.assert_allclose([r[2] for r in ref], [0.357438, 0.563545, 1.196133, 1.264506], atol=1e-6)
    np.testing.assert_allclose(
        c2_reference(f.numpy(), p.numpy(), y.numpy(), 1.0),
        [0.313262, 0.521136, 0.626523, 0.626523],
        atol=1e-6,
    )
    np.testing.assert_allclose(
        c2_reference(f.numpy(), p.numpy(), y.numpy(), 0.5),
        [0.126928, 0.449589, 0.253856, 0.253856],
        atol=1e-6,
    )
    ref = d2dce_reference(f.numpy(), p.numpy(), y.numpy(), 0.5, 0.98)
    np.testing.assert_allclose([r[0] for r in ref], [0, 1.96, 0, 0], atol=1e-12)
    np.testing.assert_allclose([r[1] for r in ref], [2.081622, 2.081622, 3.122432, 3.122432], atol=1e-6)
    np.testing.assert_allclose([r[2] for r in ref], [1.125456, 2.758624, 1.416443, 1.416443], atol=1e-6)


def _random_case(seed, n, d, k):
    g = torch.Generator().manual_seed(seed)
    f = torch.randn(n, d, generator=g, dtype=torch.float64)
    table = torch.randn(k, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, k, (n,), generator=g)
    return f, table[y], y


CASES = [(0, 6, 3, 2), (1, 9, 5, 4), (2, 2, 2, 1), (3, 1, 4, 3), (4, 12, 7, 5), (5, 5, 2, 5)]


@pytest.mark.parametrize("seed,n,d,k", CASES)
@pytest.mark.parametrize("tau", [0.1, 0.5, 2.0])
def test_vectorised_losses_match_reference(seed, n, d, k, tau):
    """Random batches, incl. B = 1, a single class, and anchors without negatives or positives."""
    f, p, y = _random_case(seed, n, d, k)
    fn, pn, yn = f.numpy(), p.numpy(), y.numpy()
    expect = np.mean([r[2] for r in eco_reference(fn, pn, yn, tau)])
    assert eco_loss(f, p, y, tau).item() == pytest.approx(expect, abs=1e-10)
    zero = [(0.0, 0.0)] * n
    expect = np.mean([r[2] for r in eco_reference(fn, pn, yn, tau, shifts=zero)])
    assert eco_loss(f, p, y, tau, max_shift=False).item() == pytest.approx(expect, abs=1e-10)
    assert contrastive_2c_loss(f, p, y, tau).item() == pytest.approx(
        np.mean(c2_reference(fn, pn, yn, tau)), abs=1e-10
    )
    for m_p in (0.5, 0.98):
        expect = np.mean([r[2] for r in d2dce_reference(fn, pn, yn, tau, m_p)])
        assert d2dce_loss(f, p, y, tau, m_p).item() == pytest.approx(expect, abs=1e-10)
        expect = np.mean([r[2] for r in d2dce_reference(fn, pn, yn, tau, m_p, shifts=[0.0] * n)])
        assert d2dce_loss(f, p, y, tau, m_p, max_shift=False).item() == pytest.approx(expect, abs=1e-10)


def test_inputs_are_normalised_inside():
    f, p, y = _random_case(7, 8, 4, 3)
    scale = torch.rand(8, 1, dtype=torch.float64) * 5 + 0.1
    for fn in (eco_loss, contrastive_2c_loss, d2dce_loss):
        assert fn(f * scale, p * 3.0, y).item() == pytest.approx(
            fn(F.normalize(f), F.normalize(p), y).item(), abs=1e-12
        )


def test_anchor_without_negatives_gives_zero_d2dce():
    f, p, _ = _random_case(8, 5, 3, 1)
    y = torch.zeros(5, dtype=torch.long)
    # every proxy similarity >= m_p makes a_i = 0 as well: use the embeddings themselves as proxies
    assert d2dce_loss(f, f, y, 0.5, 0.98).item() == pytest.approx(0.0, abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Gradients


def _central_difference(fun, x, eps=1e-6):
    grad = torch.zeros_like(x)
    flat = x.view(-1)
    for idx in range(flat.numel()):
        old = flat[idx].item()
        flat[idx] = old + eps
        up = fun()
        flat[idx] = old - eps
        down = fun()
        flat[idx] = old
        grad.view(-1)[idx] = (up - down) / (2 * eps)
    return grad


def test_eco_gradient_treats_shifts_as_constants():
    f, p, y = _random_case(11, 6, 3, 2)
    tau = 0.5
    f_leaf, p_leaf = f.clone().requires_grad_(True), p.clone().requires_grad_(True)
    eco_loss(f_leaf, p_leaf, y, tau).backward()
    # the shifts at the evaluation point, then frozen while the reference is differentiated numerically
    frozen = [
        (max(_cos(f[i], f[j]) for j in range(6) if j != i), max(_cos(f[i], p[k]) for k in range(6)))
        for i in range(6)
    ]

    def frozen_loss():
        return float(
            np.mean([r[2] for r in eco_reference(f.numpy(), p.numpy(), y.numpy(), tau, shifts=frozen)])
        )

    np.testing.assert_allclose(f_leaf.grad, _central_difference(frozen_loss, f), atol=1e-7)
    np.testing.assert_allclose(p_leaf.grad, _central_difference(frozen_loss, p), atol=1e-7)

    # and it is *not* the derivative of the loss value itself, whose shifts move with the inputs
    def moving_loss():
        return float(np.mean([r[2] for r in eco_reference(f.numpy(), p.numpy(), y.numpy(), tau)]))

    assert (f_leaf.grad - _central_difference(moving_loss, f)).abs().max() > 1e-3


def test_d2dce_gradient_treats_shift_as_constant():
    f, p, y = _random_case(12, 6, 3, 3)
    tau, m_p = 0.5, 0.98
    f_leaf = f.clone().requires_grad_(True)
    d2dce_loss(f_leaf, p, y, tau, m_p).backward()
    frozen = [max((_cos(f[i], f[j]) - (1 - m_p)) / tau for j in range(6) if j != i) for i in range(6)]

    def frozen_loss():
        return float(
            np.mean([r[2] for r in d2dce_reference(f.numpy(), p.numpy(), y.numpy(), tau, m_p, frozen)])
        )

    np.testing.assert_allclose(f_leaf.grad, _central_difference(frozen_loss, f), atol=1e-7)


@pytest.mark.parametrize(
    "fn",
    [
        lambda f, p, y: eco_loss(f, p, y, 0.5, max_shift=False),
        lambda f, p, y: contrastive_2c_loss(f, p, y, 0.5),
        lambda f, p, y: d2dce_loss(f, p, y, 0.5, 0.7, max_shift=False),
    ],
)
def test_unshifted_losses_pass_gradcheck(fn):
    f, p, y = _random_case(13, 5, 3, 2)
    f.requires_grad_(True)
    p.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: fn(a, b, y), (f, p))


@pytest.mark.parametrize("fn", [eco_loss, contrastive_2c_loss, d2dce_loss])
def test_float32_matches_float64(fn):
    f, p, y = _random_case(14, 16, 8, 4)
    f32 = f.float().requires_grad_(True)
    out = fn(f32, p.float(), y)
    out.backward()
    assert out.dtype == torch.float32
    assert out.item() == pytest.approx(fn(f, p, y).item(), abs=1e-5)
    assert torch.isfinite(f32.grad).all()


def test_bad_inputs_raise():
    f, p, y = _random_case(15, 4, 3, 2)
    with pytest.raises(ValueError, match="proxy"):
        eco_loss(f, p[:3], y)
    with pytest.raises(ValueError, match="labels"):
        contrastive_2c_loss(f, p, y[:3])
    with pytest.raises(ValueError, match="integer"):
        d2dce_loss(f, p, y.double())
    with pytest.raises(ValueError, match="temperature"):
        eco_loss(f, p, y, temperature=0.0)
    with pytest.raises(ValueError, match="embed"):
        eco_loss(f[None], p[None], y)
    with pytest.raises(ValueError, match="gather_grad"):
        eco_loss(f, p, y, gather=True, gather_grad="mean")


def test_gather_without_distributed_is_a_no_op():
    f, p, y = _random_case(16, 6, 3, 2)
    for fn in (eco_loss, contrastive_2c_loss, d2dce_loss):
        assert fn(f, p, y, gather=True).item() == fn(f, p, y).item()


# ----------------------------------------------------------------------------------------------
# Gathering across 2 CPU processes (gloo)

GATHER_LOSSES = {
    "eco": lambda e, p, y, **kw: eco_loss(e, p, y, 0.5, **kw),
    "2c": lambda e, p, y, **kw: contrastive_2c_loss(e, p, y, 0.5, **kw),
    "d2dce": lambda e, p, y, **kw: d2dce_loss(e, p, y, 0.5, 0.9, **kw),
}
WORLD, LOCAL_B = 2, 5


def _global_batch():
    e, p, y = _random_case(21, WORLD * LOCAL_B, 4, 3)
    x = torch.randn(WORLD * LOCAL_B, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(22))
    return e, p, y, x


def _projector():
    torch.manual_seed(23)
    return torch.nn.Linear(6, 4, dtype=torch.float64)


def _gather_worker(rank, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        e, p, y, x = _global_batch()
        local = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
        results = {}
        for name, fn in GATHER_LOSSES.items():
            for mode in ("sum", "local"):
                el, pl = e[local].clone().requires_grad_(True), p[local].clone().requires_grad_(True)
                loss = fn(el, pl, y[local], gather=True, gather_grad=mode)
                loss.backward()
                results[name, mode] = (loss.detach(), el.grad, pl.grad)
        # what DDP does with parameter gradients: average them over ranks
        proj = _projector()
        loss = GATHER_LOSSES["eco"](proj(x[local]), p[local], y[local], gather=True)
        loss.backward()
        for param in proj.parameters():
            dist.all_reduce(param.grad)
            param.grad /= WORLD
        results["ddp"] = [param.grad for param in proj.parameters()]
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_gather_over_two_processes(tmp_path):
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    mp.spawn(_gather_worker, args=(_free_port(), str(tmp_path)), nprocs=WORLD, join=True)
    e, p, y, x = _global_batch()
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    for name, fn in GATHER_LOSSES.items():
        eg, pg = e.clone().requires_grad_(True), p.clone().requires_grad_(True)
        full = fn(eg, pg, y)
        full.backward()
        for rank, res in enumerate(ranks):
            local = slice(rank * LOCAL_B, (rank + 1) * LOCAL_B)
            for mode, factor in (("local", 1), ("sum", WORLD)):
                loss, e_grad, p_grad = res[name, mode]
                assert loss.item() == pytest.approx(full.item(), abs=1e-12)
                torch.testing.assert_close(e_grad, factor * eg.grad[local], rtol=0, atol=1e-12)
                torch.testing.assert_close(p_grad, factor * pg.grad[local], rtol=0, atol=1e-12)
    # "sum" + DDP averaging = the single-process gradient of the loss on the concatenated batch
    proj = _projector()
    GATHER_LOSSES["eco"](proj(x), p, y).backward()
    for res in ranks:
        for got, want in zip(res["ddp"], [param.grad for param in proj.parameters()]):
            torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------------------------
# Adversarial losses

REAL = torch.tensor([2.0, 0.5, -1.0], dtype=torch.float64)
FAKE = torch.tensor([-2.0, 0.0, 1.5], dtype=torch.float64)


def test_hinge_by_hand():
    # relu(1 - real) = [0, 0.5, 2], relu(1 + fake) = [0, 1, 2.5]
    assert d_hinge(REAL, FAKE).item() == pytest.approx(2.5 / 3 + 3.5 / 3)
    assert g_hinge(FAKE).item() == pytest.approx(0.5 / 3)


def test_nonsaturating_equals_bce():
    bce = F.binary_cross_entropy_with_logits
    expect_d = bce(REAL, torch.ones(3, dtype=torch.float64)) + bce(FAKE, torch.zeros(3, dtype=torch.float64))
    assert d_nonsaturating(REAL, FAKE).item() == pytest.approx(expect_d.item(), abs=1e-12)
    expect_g = np.mean([math.log1p(math.exp(-v)) for v in FAKE.tolist()])
    assert g_nonsaturating(FAKE).item() == pytest.approx(expect_g, abs=1e-12)
    # (B, 1) logits give the same values
    assert d_nonsaturating(REAL[:, None], FAKE[:, None]).item() == pytest.approx(expect_d.item(), abs=1e-12)


def test_wasserstein_by_hand():
    assert d_wasserstein(REAL, FAKE).item() == pytest.approx(-0.5 / 3 - 1.5 / 3)
    assert g_wasserstein(FAKE).item() == pytest.approx(0.5 / 3)


def test_registry():
    assert {
        "hinge": (d_hinge, g_hinge),
        "bce": (d_nonsaturating, g_nonsaturating),
        "wasserstein": (d_wasserstein, g_wasserstein),
    } == ADV_LOSSES


def test_gradient_penalty_linear_critic_closed_form():
    # D(x) = <w, x> + b has gradient w everywhere: GP = (||w|| - 1)^2 = (3 - 1)^2 = 4 for any alpha
    w = torch.zeros(2, 3, 2, dtype=torch.float64)
    w[0, 0, 0], w[1, 2, 1] = 2.0, math.sqrt(5.0)
    w.requires_grad_(True)

    def critic(x):
        return (x * w).flatten(1).sum(1) + 0.7

    real = torch.randn(5, 2, 3, 2, dtype=torch.float64)
    fake = torch.randn(5, 2, 3, 2, dtype=torch.float64)
    for alpha in ("uniform", "normal"):
        gp = gradient_penalty(critic, real, fake, alpha=alpha)
        assert gp.item() == pytest.approx(4.0, abs=1e-12)
    # the graph reaches the critic's parameters: d/dw (||w|| - 1)^2 = 2 (||w|| - 1) w / ||w||
    gp.backward()
    torch.testing.assert_close(w.grad, 2 * (3 - 1) * w.detach() / 3, rtol=0, atol=1e-12)


@pytest.mark.parametrize("alpha,draw", [("uniform", torch.rand), ("normal", torch.randn)])
def test_gradient_penalty_interpolates_per_sample(alpha, draw):
    # D(x) = ||x||^2 / 2 has gradient x: GP = mean_i (||real_i + a_i (fake_i - real_i)|| - 1)^2
    real = torch.randn(6, 4, dtype=torch.float64)
    fake = torch.randn(6, 4, dtype=torch.float64)
    gp = gradient_penalty(lambda x: 0.5 * (x**2).sum(1), real, fake, alpha, torch.Generator().manual_seed(5))
    a = draw((6, 1), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    expect = ((real + a * (fake - real)).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() == pytest.approx(expect.item(), abs=1e-12)


def test_gradient_penalty_bad_input():
    x = torch.zeros(3, 2)
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(lambda v: v.sum(1), x, torch.zeros(4, 2))
    with pytest.raises(ValueError, match="alpha"):
        gradient_penalty(lambda v: v.sum(1), x, x, alpha="beta")
    with pytest.raises(ValueError, match="critic"):
        gradient_penalty(lambda v: v, x, x)


def test_acgan_aux_loss_by_hand():
    logits = torch.tensor([[0.0, math.log(3.0)], [math.log(4.0), 0.0]], dtype=torch.float64)
    labels = torch.tensor([1, 1])
    # p(1) = 3/4 for the first sample, 1/5 for the second
    assert acgan_aux_loss(logits, labels).item() == pytest.approx(-(math.log(0.75) + math.log(0.2)) / 2)
