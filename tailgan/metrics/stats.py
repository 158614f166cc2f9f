"""Sample-quality statistics on features, logits and images.

Every function here takes tensors that were already extracted (see ``tailgan.metrics.features``), so
the same code serves the evaluator and Inception features, the whole set and one class.

Where torchmetrics computes a figure, it does so here too, through its public metric classes: FID and KID
(``FrechetInceptionDistance`` / ``KernelInceptionDistance`` with a pass-through "feature extractor", so
they take features extracted once for every figure), the Inception Score and MS-SSIM. Written here: feature moments,
KID's seeded subset sampling, precision/recall/density/coverage (no maintained library has them)
and label accuracy.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import Tensor, nn
from torchmetrics.functional.image import multiscale_structural_similarity_index_measure
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

# Wang et al.'s five MS-SSIM scale weights (torchmetrics' default betas)
MSSSIM_BETAS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def feature_stats(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean (d,) and unbiased covariance (d, d) of (N, d) features, in float64."""
    x = torch.as_tensor(features).double()
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"feature_stats needs (N, d) features with N >= 2, got shape {tuple(x.shape)}")
    mu = x.mean(dim=0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


class PrecomputedFeatures(nn.Module):
    """torchmetrics' FID/KID run a "feature extractor" on what ``update`` gets; this one passes features
    extracted beforehand through (``num_features`` tells torchmetrics their dimension)."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, x: Tensor) -> Tensor:
        return x


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Frechet distance of two Gaussians, with the
    trace of the square root from the eigenvalues of S1 S2 (as torchmetrics computes it)."""
    mu1, sigma1, mu2, sigma2 = mu1.double(), sigma1.double(), mu2.double(), sigma2.double()
    tr_sqrt = torch.linalg.eigvals(sigma1 @ sigma2).sqrt().real.sum()
    return float((mu1 - mu2).square().sum() + sigma1.trace() + sigma2.trace() - 2 * tr_sqrt)


def fid(real: Tensor, fake: Tensor) -> float:
    """Frechet distance between Gaussians fitted to (N, d) real and (M, d) fake features (torchmetrics' FID)."""
    real, fake = torch.as_tensor(real).double(), torch.as_tensor(fake).double()
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), normalize=True).double()
    metric.update(real, real=True)
    metric.update(fake, real=False)
    return float(metric.compute())


def kid(
    real: Tensor,
    fake: Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float | None]:
    """Kernel Inception Distance: unbiased MMD^2 with the kernel (x.y / d + 1)^degree, mean and std over subsets.

    Each subset draws ``min(subset_size, N, M)`` real and fake features without replacement (a seeded
    generator, so the figure is reproducible). The estimator is unbiased, so it is usable on small
    classes: it can come out slightly negative when the two sets match. The std is None when every subset
    is the whole of both sets (a small class): the subsets are then all the same and their spread says nothing.
    """
    # kept in the features' dtype, as torchmetrics does: float32 kernels are accurate to ~1e-7 relative,
    # far below the subset noise, and twice as fast as float64
    real, fake = torch.as_tensor(real), torch.as_tensor(fake)
    if not real.is_floating_point() or real.dtype != fake.dtype:
        real, fake = real.double(), fake.double()
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise ValueError(f"KID needs at least 2 real and 2 fake features, got {len(real)} and {len(fake)}")
    with warnings.catch_warnings():  # "will save all extracted features": they are in memory already
        warnings.filterwarnings("ignore", message=".*save all extracted features.*")
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size, degree=degree, normalize=True
        )
    metric.update(real, real=True)
    metric.update(fake, real=False)
    with torch.random.fork_rng(devices=[]):  # its subsets come from the global generator: seed it, then restore
        torch.manual_seed(seed)
        mean, std = metric.compute()  # std over subsets is the population std
    if size == len(real) == len(fake):
        return float(mean), None
    return float(mean), float(std)


def inception_score(logits: Tensor, splits: int = 10, seed: int = 0) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) from (N, K) logits: mean and std over ``splits`` shuffled splits (torchmetrics).

    ECOGAN uses 10 splits, StudioGAN 1. The shuffle is seeded; the global RNG is left as it was.
    """
    logits = torch.as_tensor(logits).double()
    if len(logits) < splits:
        raise ValueError(f"Inception Score with {splits} splits needs at least {splits} images, got {len(logits)}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = InceptionScore(feature=torch.nn.Identity(), splits=splits)
    metric.update(logits)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*degrees of freedom.*")  # the std of a single split
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std) if splits > 1 else 0.0


def _kth_neighbour_radii(x: Tensor, k: int, chunk: int) -> Tensor:
    """Distance from each row of x to its k-th nearest other row (clovaai: k+1-th smallest incl. itself)."""
    radii = []
    for i in range(0, len(x), chunk):
        d = torch.cdist(x[i : i + chunk], x)
        radii.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(radii)


def prdc(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 2048) -> dict[str, float]:
    """Precision, recall (Kynkaanniemi et al. 2019), density and coverage (Naeem et al. 2020), as clovaai/prdc.

    Each real point has a ball reaching its k-th nearest real neighbour, each fake point one reaching its
    k-th nearest fake neighbour. precision: share of fakes inside some real ball; recall: share of reals
    inside some fake ball; density: mean over fakes of (number of real balls holding it) / k; coverage:
    share of real balls holding at least one fake. "Inside" is strict (<), as in clovaai's code.
    """
    real, fake = torch.as_tensor(real).float(), torch.as_tensor(fake).float()
    if len(real) <= k or len(fake) <= k:
        raise ValueError(f"PRDC with k={k} needs more than {k} real and fake points, got {len(real)} and {len(fake)}")
    real_radii = _kth_neighbour_radii(real, k, chunk)
    fake_radii = _kth_neighbour_radii(fake, k, chunk)
    fake_in_real_balls = torch.zeros(len(fake), dtype=torch.long)
    real_in_fake_ball = torch.zeros(len(real), dtype=torch.bool)
    real_ball_covered = torch.zeros(len(real), dtype=torch.bool)
    for i in range(0, len(real), chunk):
        d = torch.cdist(real[i : i + chunk], fake)  # (reals in chunk, fakes)
        inside_real = d < real_radii[i : i + chunk, None]
        fake_in_real_balls += inside_real.sum(dim=0)
        real_in_fake_ball[i : i + chunk] = (d < fake_radii[None, :]).any(dim=1)
        real_ball_covered[i : i + chunk] = inside_real.any(dim=1)
    return {
        "precision": float((fake_in_real_balls > 0).double().mean()),
        "recall": float(real_in_fake_ball.double().mean()),
        "density": float(fake_in_real_balls.double().mean() / k),
        "coverage": float(real_ball_covered.double().mean()),
    }


def label_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Share of images whose arg-max class is the class they were generated (or labelled) for."""
    logits, labels = torch.as_tensor(logits), torch.as_tensor(labels)
    if len(logits) != len(labels) or len(labels) == 0:
        raise ValueError(f"label_accuracy needs one label per row of logits, got {len(logits)} and {len(labels)}")
    return float((logits.argmax(dim=1) == labels).double().mean())


def msssim_settings(size: int) -> tuple[float, int, tuple[float, ...]]:
    """(Gaussian sigma, window size, betas) for MS-SSIM on ``size``-px images.

    The standard setting (sigma 1.5, an 11-px window, Wang et al.'s five scales) needs images of 176+ px.
    For smaller images this keeps sigma 1.5 and uses as many scales as torchmetrics accepts for an 11-px
    window (12-43 px, e.g. 28 and 32 px: 2 scales; 44-98 px, e.g. 64 px: 3; 99-175 px: 4), the kept
    betas renormalised to sum to 1. Below 11 px the window shrinks (sigma 1.0: 9 px, then 0.5: 5 px);
    8-px digits get sigma 0.5 and 2 scales.
    """
    for sigma in (1.5, 1.0, 0.5):
        window = int(3.5 * sigma + 0.5) * 2 + 1  # torchmetrics' Gaussian window for this sigma
        for scales in range(5, 0, -1):
            div = max(1, scales - 1) ** 2  # torchmetrics' size rule
            coarsest = size // 2 ** (scales - 1)  # its reflection padding must be smaller than it
            if size >= 2**scales and size // div > window - 1 and coarsest > window // 2:
                betas = MSSSIM_BETAS[:scales]
                total = sum(betas)
                return sigma, window, tuple(b / total for b in betas)
    raise ValueError(f"MS-SSIM needs images of at least 4 px, got {size} px")


def ms_ssim(a: Tensor, b: Tensor) -> Tensor:
    """MS-SSIM of each pair (a[i], b[i]) of uint8 (N, C, H, W) images, scales reduced for small images."""
    if a.shape != b.shape or a.ndim != 4:
        raise ValueError(f"ms_ssim needs two (N, C, H, W) batches of one shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    sigma, window, betas = msssim_settings(min(a.shape[-2:]))
    return multiscale_structural_similarity_index_measure(
        a.double() / 255.0,
        b.double() / 255.0,
        kernel_size=window,
        sigma=sigma,
        betas=betas,
        data_range=1.0,
        reduction="none",
    )


def mean_msssim(images: Tensor, pairs: int = 100, seed: int = 0) -> float:
    """Mean MS-SSIM over random disjoint pairs of images (diversity: lower is more diverse; BAGAN, AC-GAN).

    Uses ``min(pairs, N // 2)`` pairs from a seeded permutation of the N uint8 images; NaN for N < 2.
    """
    n_pairs = min(pairs, len(images) // 2)
    if n_pairs == 0:
        return math.nan
    perm = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: 2 * n_pairs]
    return float(ms_ssim(images[perm[0::2]], images[perm[1::2]]).mean())
