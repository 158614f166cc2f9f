"""Feature generators for the classifier head (tailgan.classify.feature_gen) against closed forms and toys."""

import numpy as np
import pytest
import torch

from tailgan.synthesis.features import (
    DiffusionConfig,
    FeatureDiffusion,
    PowerSpace,
    calibrated_features,
    cbdm_regularizer,
    class_statistics,
    prototype_filter,
)


def test_feature_diffusion_learns_two_gaussians():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[2.0, 0.0], [-2.0, 1.0]])
    y = torch.tensor([0] * 600 + [1] * 60)  # imbalanced, as the tail is
    z = centres[y] + 0.3 * torch.randn(len(y), 2, generator=g)
    cfg = DiffusionConfig(hidden=64, depth=2, steps=1500, batch_size=128, lr=2e-3, sample_steps=25, guidance=0.5)
    model = FeatureDiffusion(2, 2, cfg, seed=0)
    history = model.fit(z, y)
    assert history[-1] < history[0]
    out = model.sample(torch.tensor([0] * 400 + [1] * 400))
    for c in (0, 1):
        s = out[c * 400 : (c + 1) * 400]
        assert (s.mean(0) - centres[c]).norm() < 0.3, (c, s.mean(0))  # the stated distance: 0.3 (1 std)
        assert 0.15 < s.std(0).mean() < 0.6


def test_cbdm_regularizer_by_hand():
    eps_y = torch.tensor([[1.0, 0.0], [0.0, 2.0]], requires_grad=True)
    eps_y2 = torch.tensor([[0.0, 0.0], [0.0, 1.0]], requires_grad=True)
    t = torch.tensor([500, 1000])
    value = cbdm_regularizer(eps_y, eps_y2, t, 1000, tau=1.0, gamma=0.25)
    # sample 0: weight 0.5, ||d||^2 = 1 -> 0.5 * (1 + 0.25); sample 1: weight 1, ||d||^2 = 1 -> 1.25; mean
    assert float(value) == pytest.approx((0.5 * 1.25 + 1.25) / 2)
    value.backward()
    # the pull term moves eps(x, y) only (the other side is stopped), the commitment term eps(x, y') only
    assert torch.allclose(eps_y.grad, torch.tensor([[0.5, 0.0], [0.0, 1.0]]) * 2 / 2)
    assert torch.allclose(eps_y2.grad, -0.25 * torch.tensor([[0.5, 0.0], [0.0, 1.0]]) * 2 / 2)


def test_calibration_borrows_the_nearest_larger_classes_statistics():
    rng = np.random.default_rng(0)
    means = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 5.0], [3.0, 1.0]])
    counts = [400, 300, 200, 3]
    z = np.concatenate([m + rng.normal(size=(n, 2)) * (1 + c) for c, (m, n) in enumerate(zip(means, counts))])
    y = np.repeat(np.arange(4), counts)
    zt, yt = torch.tensor(z), torch.tensor(y)
    mu, cov = class_statistics(zt, yt, 4)
    for c in range(4):
        assert np.allclose(mu[c], z[y == c].mean(0)) and np.allclose(cov[c], np.cov(z[y == c].T))
    g = torch.Generator().manual_seed(1)
    fake, fake_y = calibrated_features(zt, yt, [0, 0, 0, 30000], k=2, alpha=0.21, generator=g)
    assert fake_y.eq(3).all() and len(fake) == 30000
    own = z[y == 3]
    near = np.argsort([np.linalg.norm(means_c - z[y == 3].mean(0)) for means_c in mu[:3].numpy()])[:2]
    centre = (mu[near].numpy().sum(0) + own.mean(0)) / 3
    expected_cov = cov[near].numpy().mean(0) + 0.21 * np.eye(2)
    spread = np.cov(((own - own.mean(0)) / 3).T, bias=True)  # the centres' own spread around their mean
    assert np.allclose(fake.mean(0).numpy(), centre, atol=0.06)
    assert np.allclose(np.cov(fake.numpy().T), expected_cov + spread, atol=0.15)


def test_prototype_filter_keeps_and_drops_the_right_vectors():
    real = torch.tensor([[0.0, 0.0], [2.0, 0.0], [10.0, 10.0]])
    real_y = torch.tensor([0, 0, 1])
    # class 0: prototype (1, 0), d_f = 2
    fake = torch.tensor([[1.0, 1.5], [1.0, 3.5], [1.0, 5.5], [10.0, 10.0]])
    fake_y = torch.tensor([0, 0, 0, 1])
    w, report = prototype_filter(real, real_y, fake, fake_y, aid_weight=0.5)
    assert w.tolist() == [1.0, 0.5, 0.0, 1.0]
    assert report == {0: (1, 1, 1), 1: (1, 0, 0)}


def test_power_space_round_trip_restores_zeros():
    x = torch.relu(torch.randn(200, 5))
    space = PowerSpace(x)
    z = space.to_dense(x)
    assert torch.allclose(space.from_dense(z), x, atol=1e-5)
    assert z.mean(0).abs().max() < 1e-5 and (space.from_dense(torch.full((1, 5), -10.0)) == 0).all()


def test_calibration_without_shift_centres_on_the_tail_features_with_the_donors_covariance():
    g = torch.Generator().manual_seed(1)
    z = torch.cat([torch.randn(400, 2, generator=g) * torch.tensor([3.0, 0.5]), torch.tensor([[5.0, 5.0]])])
    y = torch.cat([torch.zeros(400, dtype=torch.long), torch.ones(1, dtype=torch.long)])
    new_z, new_y = calibrated_features(z.double(), y, [0, 20000], k=1, alpha=0.0, generator=g, shift=0.0)
    assert (new_y == 1).all()
    assert np.allclose(new_z.mean(0).numpy(), [5.0, 5.0], atol=0.06)  # centred on the tail's own feature
    assert np.allclose(np.cov(new_z.numpy().T), np.cov(z[:400].double().numpy().T), atol=0.15)  # borrowed spread
