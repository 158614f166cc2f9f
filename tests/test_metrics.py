"""Sample-quality statistics against closed forms, hand-computed values and torchmetrics' own metric classes."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from tailgan.metrics import stats


class _Identity(nn.Module):
    """Lets torchmetrics' metric classes take features we computed (they call ``feature(imgs)``)."""

    def __init__(self, d):
        super().__init__()
        self.num_features = d

    def forward(self, x):
        return x


def _rotation(d, seed):
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q


def test_frechet_distance_of_commuting_gaussians_is_the_closed_form():
    # S1 = R diag(a) R^T and S2 = R diag(b) R^T commute: Tr(S1 + S2 - 2 (S1 S2)^1/2) = sum (sqrt a - sqrt b)^2
    r = _rotation(4, 0)
    a = torch.tensor([1.0, 2.0, 0.5, 4.0], dtype=torch.float64)
    b = torch.tensor([3.0, 1.0, 0.5, 1.0], dtype=torch.float64)
    mu1, mu2 = torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([1.0, 1.0, 0.0, 3.0])
    # ||mu1 - mu2||^2 = 1 + 4; sqrt terms: (1 - sqrt 3)^2 + (sqrt 2 - 1)^2 + 0 + (2 - 1)^2
    expected = 5 + (1 - math.sqrt(3)) ** 2 + (math.sqrt(2) - 1) ** 2 + 1
    got = stats.frechet_distance(mu1, r @ torch.diag(a) @ r.T, mu2, r @ torch.diag(b) @ r.T)
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_of_general_gaussians_matches_scipy_sqrtm():
    g = torch.Generator().manual_seed(1)
    m1, m2 = torch.randn(5, 5, generator=g, dtype=torch.float64), torch.randn(5, 5, generator=g, dtype=torch.float64)
    s1, s2 = m1 @ m1.T + 0.1 * torch.eye(5, dtype=torch.float64), m2 @ m2.T + 0.1 * torch.eye(5, dtype=torch.float64)
    mu1, mu2 = torch.randn(5, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    covmean = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real
    expected = float(((mu1 - mu2) ** 2).sum()) + np.trace(s1.numpy() + s2.numpy() - 2 * covmean)
    assert stats.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fid_of_samples_approaches_the_closed_form_and_is_zero_on_itself():
    g = torch.Generator().manual_seed(2)
    x = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    y = torch.randn(200_000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.0]) + torch.tensor([1.0, 0.0])
    assert stats.fid(x, y) == pytest.approx(1.0 + (2 - 1) ** 2, abs=0.03)  # mean 1, stds (1,1) vs (2,1)
    feats = torch.randn(300, 8, generator=g)
    assert abs(stats.fid(feats, feats)) < 1e-6


def test_feature_stats_are_the_unbiased_moments():
    x = torch.tensor([[1.0, 2.0], [3.0, 0.0], [5.0, 4.0]])
    mu, sigma = stats.feature_stats(x)
    assert torch.allclose(mu, torch.tensor([3.0, 2.0], dtype=torch.float64))
    assert torch.allclose(sigma, torch.from_numpy(np.cov(x.numpy().T)))
    with pytest.raises(ValueError, match="N >= 2"):
        stats.feature_stats(x[:1])


def test_our_fid_equals_torchmetrics_on_the_same_features():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(400, 16, generator=g, dtype=torch.float64)
    fake = torch.randn(300, 16, generator=g, dtype=torch.float64) * 1.3 + 0.2
    metric = FrechetInceptionDistance(feature=_Identity(16))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    assert stats.fid(real, fake) == pytest.approx(float(metric.compute()), rel=1e-6)


def test_our_kid_equals_torchmetrics_when_a_subset_is_the_whole_set():
    g = torch.Generator().manual_seed(4)
    real = torch.randn(120, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(120, 8, generator=g, dtype=torch.float64) + 0.5
    with pytest.warns(UserWarning, match="save all extracted features"):
        metric = KernelInceptionDistance(feature=_Identity(8), subsets=1, subset_size=120)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ref_mean, _ = metric.compute()
    mean, std = stats.kid(real, fake, subsets=1, subset_size=120)
    # every subset is the whole of both sets: no spread to report (a 0 or 1e-7 "std" would mislead)
    assert mean == pytest.approx(float(ref_mean), rel=1e-9) and std is None
    _, std_of_subsets = stats.kid(real, fake, subsets=5, subset_size=60)
    assert std_of_subsets > 0


def test_kid_is_near_zero_for_one_distribution_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(600, 8, generator=g), torch.randn(600, 8, generator=g)
    same_mean, same_std = stats.kid(x, y, subsets=20, subset_size=300, seed=0)
    shifted_mean, shifted_std = stats.kid(x, y + 1.0, subsets=20, subset_size=300, seed=0)
    assert abs(same_mean) < 0.02
    # shifting every coordinate by 1: MMD^2 grows far beyond the subset noise
    assert shifted_mean > 5 * shifted_std and shifted_mean > 50 * (abs(same_mean) + same_std)
    assert stats.kid(x, y, subsets=5, subset_size=100, seed=1) == stats.kid(x, y, subsets=5, subset_size=100, seed=1)
    # subsets shrink to the smaller set, so a 30-image class still gets a figure
    small_mean, _ = stats.kid(x[:30], y[:30] + 1.0, subsets=10, subset_size=1000)
    assert small_mean > 0.3


def test_inception_score_is_c_for_confident_balanced_predictions_and_1_for_constant_ones():
    c = 10
    confident = 50.0 * torch.eye(c).repeat(20, 1)  # 200 images, 20 per class, all certain
    mean, std = stats.inception_score(confident, splits=1)
    assert mean == pytest.approx(c, rel=1e-6) and std == 0.0
    constant = torch.randn(1, c).repeat(200, 1)  # every image gets the same p(y|x) = p(y)
    mean, std = stats.inception_score(constant, splits=10)
    assert mean == pytest.approx(1.0, abs=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_of_a_hand_computed_case():
    p = torch.tensor([[0.9, 0.1], [0.2, 0.8]], dtype=torch.float64)
    py = p.mean(0)  # (0.55, 0.45)
    kl1 = 0.9 * math.log(0.9 / 0.55) + 0.1 * math.log(0.1 / 0.45)
    kl2 = 0.2 * math.log(0.2 / 0.55) + 0.8 * math.log(0.8 / 0.45)
    assert torch.allclose(py, torch.tensor([0.55, 0.45], dtype=torch.float64))
    mean, _ = stats.inception_score(p.log(), splits=1)
    assert mean == pytest.approx(math.exp((kl1 + kl2) / 2), rel=1e-12)


def test_prdc_on_a_hand_made_point_set():
    # 1-D points, k = 1. Real radii (distance to the nearest other real): 0->1, 1->1, 3->2, 30->1, 31->1.
    # Fake radii: 0.5->2.4, 2.9->2.4, 10->0.5, 10.5->0.5.
    real = torch.tensor([[0.0], [1.0], [3.0], [30.0], [31.0]])
    fake = torch.tensor([[0.5], [2.9], [10.0], [10.5]])
    got = stats.prdc(real, fake, k=1)
    # precision: 0.5 (in the balls of 0 and 1) and 2.9 (ball of 3) are inside, 10 and 10.5 are not -> 2/4
    # recall: reals 0, 1 (fake ball of 0.5) and 3 (ball of 2.9) are inside, 30 and 31 are not -> 3/5
    # density: 0.5 lies in 2 real balls, 2.9 in 1, the others in none -> (2 + 1) / 4 / k
    # coverage: real balls of 0, 1, 3 hold a fake, those of 30 and 31 do not -> 3/5
    assert got == pytest.approx({"precision": 0.5, "recall": 0.6, "density": 0.75, "coverage": 0.6})


def test_prdc_k2_and_a_set_against_itself():
    # k = 2: real radii 0->2 (2nd neighbour 2), 1->1, 2->2; fake radii 0.9->2.1 (3.0), 1.1->1.9 (3.0), 3.0->2.1
    real = torch.tensor([[0.0], [1.0], [2.0]])
    fake = torch.tensor([[0.9], [1.1], [3.0]])
    got = stats.prdc(real, fake, k=2)
    # precision: 0.9 and 1.1 lie in the ball of 0 (r=2), 3.0 in the ball of 2 (d 1 < 2) -> 1
    # density: 0.9 lies in the balls of 0 (0.9<2), 1 (0.1<1) and 2 (1.1<2) = 3; 1.1 also in 3; 3.0 only in
    # the ball of 2 = 1 -> (3 + 3 + 1) / 3 fakes / k
    assert got["precision"] == 1.0 and got["density"] == pytest.approx(7 / 6)
    # recall: real 0 is within 2.1 of 0.9, 1 and 2 too -> 1; coverage: every real ball holds a fake -> 1
    assert got["recall"] == 1.0 and got["coverage"] == 1.0
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(6))
    same = stats.prdc(x, x, k=5)
    # every ball holds its own centre and its k-1 nearest neighbours: density is exactly 1
    assert same == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    with pytest.raises(ValueError, match="more than 5"):
        stats.prdc(x[:5], x, k=5)


def test_prdc_equals_clovaai_prdc_when_installed():
    prdc_package = pytest.importorskip("prdc")
    g = torch.Generator().manual_seed(9)
    real, fake = torch.randn(400, 8, generator=g), torch.randn(300, 8, generator=g) * 1.2 + 0.2
    expected = prdc_package.compute_prdc(real.numpy(), fake.numpy(), nearest_k=5)
    assert stats.prdc(real, fake, k=5) == pytest.approx({k: float(v) for k, v in expected.items()}, abs=1e-12)


def test_prdc_chunking_does_not_change_the_result():
    g = torch.Generator().manual_seed(7)
    real, fake = torch.randn(300, 4, generator=g), torch.randn(250, 4, generator=g) + 0.3
    assert stats.prdc(real, fake, chunk=64) == stats.prdc(real, fake, chunk=4096)


def test_msssim_of_identical_images_is_one_and_lower_for_different_ones():
    g = torch.Generator().manual_seed(8)
    for size, scales in ((28, 2), (32, 2), (64, 3)):
        a = torch.randint(0, 256, (4, 1, size, size), generator=g, dtype=torch.uint8)
        b = torch.randint(0, 256, (4, 1, size, size), generator=g, dtype=torch.uint8)
        assert len(stats.msssim_settings(size)[2]) == scales
        assert torch.allclose(stats.ms_ssim(a, a), torch.ones(4, dtype=torch.float64))
        assert (stats.ms_ssim(a, b) < 0.5).all()
    assert sum(stats.msssim_settings(28)[2]) == pytest.approx(1.0)
    same = torch.randint(0, 256, (1, 3, 28, 28), generator=g, dtype=torch.uint8).repeat(10, 1, 1, 1)
    assert stats.mean_msssim(same, pairs=5) == pytest.approx(1.0)
    assert math.isnan(stats.mean_msssim(same[:1]))


def test_label_accuracy_on_a_hand_built_case():
    logits = torch.tensor([[2.0, 0.1, 0.0], [0.0, 3.0, 1.0], [0.5, 0.2, 0.1], [0.0, 0.0, 1.0]])
    assert stats.label_accuracy(logits, torch.tensor([0, 1, 2, 2])) == 0.75  # row 2 picks class 0, not 2
    with pytest.raises(ValueError, match="one label per row"):
        stats.label_accuracy(logits, torch.tensor([0]))
