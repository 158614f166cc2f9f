"""Class-conditional generators of classifier features, and the filter their outputs pass (issue 27).

A backbone trained on the long-tailed data gives penultimate features of the real training part; a generator
fitted on those makes features of the tail classes; the linear head is re-trained on real + generated features.
Generators work in a *dense* space, where the post-ReLU zeros are not a wall the samples must hit:

- :class:`PowerSpace`: Tukey's power transform ``x ** lam`` (lam 0.5) of non-negative features, standardised
  per dimension; mapped back with ``max(y, 0) ** (1 / lam)``, so the sparsity comes back by the clamp.
- :func:`calibrated_features` (``feat-calibrate``, Yang et al. ICLR 2021): each real tail feature shifts a
  Gaussian whose mean and covariance are borrowed from its ``k`` nearest larger classes; no training.
- :class:`FeatureDiffusion` (``feat-diffusion``): a denoising diffusion model on feature vectors, an MLP
  denoiser with timestep and class embeddings, classifier-free guidance (a null class, label dropout), the
  noise schedule and samplers of ``diffusers`` (DDPM for training, DDIM / DPM-Solver for 10-50 steps), and
  CBDM's class-balancing regulariser as an option (:func:`cbdm_regularizer`).
- :func:`prototype_filter` (DiffuLT's rule): a generated feature is kept in full within its class's real
  diameter of its prototype, with a lower weight up to twice that, and dropped beyond.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from tailgan.nets.inference import predict


def penultimate_features(model: nn.Module, images: torch.Tensor, device: str | torch.device = "cpu") -> torch.Tensor:
    """The input of ``model.fc`` (the classifiers' linear head) for ``images``, through the one inference helper."""
    body = copy.deepcopy(model)
    body.fc = nn.Identity()
    return predict(body, images, device)


# -- the dense space -----------------------------------------------------------------------------------------------
class PowerSpace:
    """Tukey's power transform ``x ** lam`` of non-negative features, then standardised per dimension."""

    def __init__(self, features: torch.Tensor, lam: float = 0.5) -> None:
        self.lam = lam
        y = features.clamp_min(0).pow(lam)
        self.mean, self.std = y.mean(0), y.std(0).clamp_min(1e-6)

    def to_dense(self, x: torch.Tensor) -> torch.Tensor:
        return (x.clamp_min(0).pow(self.lam) - self.mean) / self.std

    def from_dense(self, z: torch.Tensor) -> torch.Tensor:
        return (z * self.std + self.mean).clamp_min(0).pow(1.0 / self.lam)


# -- distribution calibration ----------------------------------------------------------------------------------------
def class_statistics(z: torch.Tensor, y: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class means (C, D) and covariances (C, D, D) of ``z`` (a class with one sample: zero covariance)."""
    d = z.shape[1]
    means, covs = torch.zeros(num_classes, d, dtype=z.dtype), torch.zeros(num_classes, d, d, dtype=z.dtype)
    for c in range(num_classes):
        zc = z[y == c]
        if len(zc):
            means[c] = zc.mean(0)
        if len(zc) > 1:
            covs[c] = torch.cov(zc.T)
    return means, covs


def calibrated_features(
    z: torch.Tensor, y: torch.Tensor, add: list[int], k: int = 2, alpha: float = 0.21,
    generator: torch.Generator | None = None, shift: float | None = None, own_cov: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    """``add[c]`` features of each class c in the dense space: for each real feature x of c, a Gaussian with mean
    ``(sum of the k nearest larger classes' means + x) / (k + 1)`` and covariance ``mean of their covariances +
    alpha`` (Yang et al.); the samples are spread evenly over the class's real features.

    ``shift``: the share of the donors' mean in each centre, ``(1 - shift) x + shift * mean of the donors' means``
    (None: the paper's k / (k + 1)); ``own_cov``: the share of the class's own covariance blended into the
    borrowed one. In few-shot learning the donors are other (base) classes; in a long-tailed set they are the
    classes the tail competes with, so a centre pulled towards them makes features of their region."""
    num_classes = len(add)
    counts = torch.bincount(y, minlength=num_classes)
    means, covs = class_statistics(z, y, num_classes)
    out_z, out_y = [], []
    for c, n in enumerate(add):
        own = z[y == c]
        if n <= 0 or not len(own):
            continue
        donors = [j for j in range(num_classes) if counts[j] > counts[c] and counts[j] > 1] or [c]
        dist = torch.stack([(means[j] - means[c]).norm() for j in donors])
        near = [donors[i] for i in dist.argsort()[:k].tolist()]
        eye = torch.eye(z.shape[1], dtype=z.dtype)  # + 1e-6: dimensions no real feature uses have zero variance
        cov = (1 - own_cov) * covs[near].mean(0) + own_cov * covs[c] + (alpha + 1e-6) * eye
        per = torch.full((len(own),), n // len(own), dtype=torch.long)
        per[: n % len(own)] += 1
        s = len(near) / (len(near) + 1) if shift is None else shift
        centres = (1 - s) * own + s * means[near].mean(0)
        noise = torch.randn(n, z.shape[1], generator=generator, dtype=z.dtype) @ torch.linalg.cholesky(cov).T
        out_z.append(centres.repeat_interleave(per, 0) + noise)
        out_y.append(torch.full((n,), c, dtype=torch.long))
    if not out_z:
        return z[:0], y[:0]
    return torch.cat(out_z), torch.cat(out_y)


# -- the prototype filter ----------------------------------------------------------------------------------------------
def prototype_filter(
    real: torch.Tensor, real_y: torch.Tensor, fake: torch.Tensor, fake_y: torch.Tensor, aid_weight: float = 0.5
) -> tuple[torch.Tensor, dict]:
    """DiffuLT's rule: per generated feature, weight 1 (in-distribution: distance to its class prototype <= d_f,
    the largest distance between two real features of the class), ``aid_weight`` (d_f < d <= 2 d_f) or 0
    (dropped); returns the weights and per-class counts {c: (kept in full, kept with less weight, dropped)}."""
    weights = torch.zeros(len(fake), dtype=real.dtype)
    report = {}
    for c in fake_y.unique().tolist():
        own, mask = real[real_y == c], fake_y == c
        proto = own.mean(0)
        d_f = torch.cdist(own, own).max() if len(own) > 1 else torch.tensor(0.0, dtype=real.dtype)
        d = (fake[mask] - proto).norm(dim=1)
        w = torch.where(d <= d_f, 1.0, torch.where(d <= 2 * d_f, aid_weight, 0.0)).to(real.dtype)
        weights[mask] = w
        report[int(c)] = (int((w == 1).sum()), int(((w > 0) & (w < 1)).sum()), int((w == 0).sum()))
    return weights, report


# -- the feature diffusion -------------------------------------------------------------------------------------------
def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The transformer's sinusoidal embedding of integer timesteps (N,) -> (N, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class Denoiser(nn.Module):
    """An MLP that predicts the noise of a feature vector at timestep t for class y (index C: no class)."""

    def __init__(self, dim: int, num_classes: int, hidden: int = 256, depth: int = 3) -> None:
        super().__init__()
        self.hidden = hidden
        self.inp = nn.Linear(dim, hidden)
        self.time = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.label = nn.Embedding(num_classes + 1, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden)) for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        h = self.inp(x) + self.time(timestep_embedding(t, self.hidden)) + self.label(y)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def cbdm_regularizer(eps_y: torch.Tensor, eps_y2: torch.Tensor, t: torch.Tensor, num_steps: int, tau: float = 1.0,
                     gamma: float = 0.25) -> torch.Tensor:  # fmt: skip
    """CBDM (qym7/CBDM-pytorch): ``(t/T) tau (||eps(x_t,y) - sg eps(x_t,y')||^2 + gamma ||sg eps(x_t,y) -
    eps(x_t,y')||^2)``, the squared norms summed over dimensions and averaged over the batch."""
    weight = t.float() / num_steps * tau
    pull = (eps_y - eps_y2.detach()).pow(2).sum(1)
    commit = (eps_y.detach() - eps_y2).pow(2).sum(1)
    return (weight * (pull + gamma * commit)).mean()


@dataclass
class DiffusionConfig:
    hidden: int = 256
    depth: int = 3
    steps: int = 5000  # training updates
    batch_size: int = 256
    lr: float = 1e-3
    timesteps: int = 1000
    schedule: str = "squaredcos_cap_v2"
    label_dropout: float = 0.1  # classifier-free guidance: the null class this often
    guidance: float = 1.0  # (1 + w) eps(x, y) - w eps(x, null)
    sampler: str = "ddim"  # ddim | dpm
    sample_steps: int = 50
    cbdm_tau: float = 0.0  # CBDM's regulariser weight (0: off)


class FeatureDiffusion:
    """``fit(z, y)`` then ``sample(labels)``: a class-conditional diffusion model on dense feature vectors."""

    def __init__(self, dim: int, num_classes: int, cfg: DiffusionConfig | None = None, seed: int = 0,
                 device: str | torch.device = "cpu") -> None:  # fmt: skip
        from diffusers import DDPMScheduler

        self.cfg, self.num_classes, self.device = cfg or DiffusionConfig(), num_classes, torch.device(device)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = Denoiser(dim, num_classes, self.cfg.hidden, self.cfg.depth).to(self.device)
        # no clipping of the predicted x_0 to [-1, 1]: that is for images, features are standardised, not bounded
        self.scheduler = DDPMScheduler(num_train_timesteps=self.cfg.timesteps, beta_schedule=self.cfg.schedule,
                                       clip_sample=False)  # fmt: skip
        self.generator = torch.Generator().manual_seed(seed)

    def loss(self, x0: torch.Tensor, y: torch.Tensor, label_freq: torch.Tensor) -> torch.Tensor:
        """The denoising loss of one batch (+ CBDM's regulariser when ``cbdm_tau`` > 0)."""
        g, cfg, n = self.generator, self.cfg, len(x0)
        noise = torch.randn(x0.shape, generator=g).to(self.device)
        t = torch.randint(0, cfg.timesteps, (n,), generator=g).to(self.device)
        drop = torch.rand(n, generator=g).to(self.device) < cfg.label_dropout
        y_in = torch.where(drop, torch.full_like(y, self.num_classes), y)
        x_t = self.scheduler.add_noise(x0, noise, t)
        eps = self.net(x_t, t, y_in)
        loss = F.mse_loss(eps, noise)
        if cfg.cbdm_tau > 0:
            y2 = torch.multinomial(label_freq, n, replacement=True, generator=g).to(self.device)
            loss = loss + cbdm_regularizer(eps, self.net(x_t, t, y2), t, cfg.timesteps, cfg.cbdm_tau)
        return loss

    def fit(self, z: torch.Tensor, y: torch.Tensor, log=None) -> list[float]:
        """Train on dense features ``z`` (N, D) of labels ``y``; returns the loss every 100 steps."""
        opt = torch.optim.AdamW(self.net.parameters(), lr=self.cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, self.cfg.steps)
        z, y = z.to(self.device), y.to(self.device)
        freq = torch.bincount(y.cpu(), minlength=self.num_classes).double()
        history = []
        self.net.train()
        for step in range(1, self.cfg.steps + 1):
            idx = torch.randint(0, len(z), (min(self.cfg.batch_size, len(z)),), generator=self.generator)
            loss = self.loss(z[idx.to(self.device)], y[idx.to(self.device)], freq / freq.sum())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if step % 100 == 0 or step == self.cfg.steps:
                history.append(float(loss.detach()))
                if log is not None:
                    log(f"feat-diffusion step {step}/{self.cfg.steps}: loss {float(loss):.4f}")
        return history

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
        """Dense features of ``labels`` by the configured sampler with classifier-free guidance."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        kind = DDIMScheduler if self.cfg.sampler == "ddim" else DPMSolverMultistepScheduler
        self.net.eval()
        out = []
        for chunk in labels.split(batch_size):
            sched = kind.from_config(self.scheduler.config)
            sched.set_timesteps(self.cfg.sample_steps)
            y = chunk.to(self.device)
            x = torch.randn(len(y), self.net.inp.in_features, generator=self.generator).to(self.device)
            null = torch.full_like(y, self.num_classes)
            w = self.cfg.guidance
            for t in sched.timesteps:
                tt = torch.full((len(y),), int(t), device=self.device)
                eps = self.net(x, tt, y)
                if w:
                    eps = (1 + w) * eps - w * self.net(x, tt, null)
                x = sched.step(eps, t, x).prev_sample
            out.append(x.cpu())
        return torch.cat(out) if out else torch.zeros(0, self.net.inp.in_features)
