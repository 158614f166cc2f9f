"""Regularisers for GANs on limited or long-tailed data: DiffAugment, LeCam and group spectral regularisation.

* :func:`diff_augment`: Differentiable Augmentation (Zhao et al., NeurIPS 2020, official
  ``DiffAugment_pytorch.py``). Apply it to every batch the discriminator sees: real images, generated
  images (in the D and the G step) and the gradient-penalty interpolates, e.g.
  ``gradient_penalty(lambda x: D(diff_augment(x, policy, generator=g), y)["adv"], real, fake)``.
  Each call draws fresh, independent transforms per sample from the given ``torch.Generator``.
* :class:`LeCam`: LeCam regularisation (Tseng et al., CVPR 2021, official ``lecam-gan`` code), a D-step
  penalty anchoring D's outputs to moving averages of its own past outputs.
* :func:`group_spectral_penalty`: group spectral regularisation, gSR (Rangwani et al., "Improving GANs for
  Long-Tailed Data through Group Spectral Regularization", ECCV 2022, official ``val-iisc/gSRGAN`` code),
  a G-step penalty on the largest singular values of the grouped class-conditional BN gains and biases.

The weights lambda are applied by the caller (the method recipe); the published values are listed in
each docstring.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from tailgan.errors import TailganError
from tailgan.losses.classification import class_balanced_weights

# ---------------------------------------------------------------------------------------------------------
# DiffAugment
# ---------------------------------------------------------------------------------------------------------

#: Policy tokens and the operations they stand for, in the order they are applied within a token.
DIFFAUGMENT_OPS: dict[str, tuple[str, ...]] = {
    "color": ("brightness", "saturation", "contrast"),
    "brightness": ("brightness",),
    "saturation": ("saturation",),
    "contrast": ("contrast",),
    "translation": ("translation",),
    "cutout": ("cutout",),
}

TRANSLATION_RATIO = 0.125  # shift of up to 1/8 of the side, as in the official code
CUTOUT_RATIO = 0.5  # a square of half the side


def check_policy(policy: str) -> tuple[str, ...]:
    """The operations of a DiffAugment policy string ("color,translation,cutout"), in order.

    Tokens are comma-separated names from :data:`DIFFAUGMENT_OPS`; an empty string means no augmentation.
    Raises :class:`~tailgan.errors.TailganError` naming an unknown token.
    """
    ops: list[str] = []
    for token in (t.strip() for t in policy.split(",")):
        if not token:
            continue
        if token not in DIFFAUGMENT_OPS:
            raise TailganError(
                f"unknown DiffAugment policy token {token!r} in {policy!r}; use a comma-separated list of "
                f"{', '.join(DIFFAUGMENT_OPS)} (e.g. 'color,translation,cutout')"
            )
        ops.extend(DIFFAUGMENT_OPS[token])
    return tuple(ops)


def _uniform(x: Tensor, generator: torch.Generator | None) -> Tensor:
    """One U(0, 1) number per sample, shaped (N, 1, 1, 1) to broadcast over an image."""
    return torch.rand(x.shape[0], 1, 1, 1, generator=generator, device=x.device, dtype=x.dtype)


def _randint(low: int, high: int, n: int, x: Tensor, generator: torch.Generator | None) -> Tensor:
    """n integers uniform in [low, high)."""
    return torch.randint(low, high, (n,), generator=generator, device=x.device)


def _brightness(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # x + b, b ~ U(-0.5, 0.5) per sample.
    return x + (_uniform(x, generator) - 0.5)


def _saturation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Scale each pixel's deviation from its channel mean by s ~ U(0, 2).
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (_uniform(x, generator) * 2.0) + mean


def _contrast(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Scale the deviation from the image mean (over C, H, W) by c ~ U(0.5, 1.5).
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (_uniform(x, generator) + 0.5) + mean


def _translation(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # out[i, j] = x[i + dy, j + dx] (zero outside the image), dy, dx integers uniform in [-s, s].
    n, _, h, w = x.shape
    sh, sw = int(h * TRANSLATION_RATIO + 0.5), int(w * TRANSLATION_RATIO + 0.5)
    dy = _randint(-sh, sh + 1, n, x, generator)
    dx = _randint(-sw, sw + 1, n, x, generator)
    padded = F.pad(x, (sw, sw, sh, sh))  # zeros, i.e. mid-grey in [-1, 1], as in the official code
    rows = torch.arange(h, device=x.device)[None, :] + (dy + sh)[:, None]  # (N, H) into the padded image
    cols = torch.arange(w, device=x.device)[None, :] + (dx + sw)[:, None]  # (N, W)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # Advanced indexing gathers (N, H, W, C); it is differentiable (also twice, for the gradient penalty).
    return padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)


def _cutout(x: Tensor, generator: torch.Generator | None) -> Tensor:
    # Zero a (H/2 x W/2) square whose centre is uniform over the image; the square is clipped at the borders.
    n, _, h, w = x.shape
    ch, cw = int(h * CUTOUT_RATIO + 0.5), int(w * CUTOUT_RATIO + 0.5)
    # The official offset ranges: [0, H - ch % 2], so an odd square can reach either border equally.
    top = _randint(0, h + (1 - ch % 2), n, x, generator) - ch // 2
    left = _randint(0, w + (1 - cw % 2), n, x, generator) - cw // 2
    r = torch.arange(h, device=x.device)[None, :]
    c = torch.arange(w, device=x.device)[None, :]
    in_rows = (r >= top[:, None]) & (r < top[:, None] + ch)  # (N, H)
    in_cols = (c >= left[:, None]) & (c < left[:, None] + cw)  # (N, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


_OPS = {
    "brightness": _brightness,
    "saturation": _saturation,
    "contrast": _contrast,
    "translation": _translation,
    "cutout": _cutout,
}


def diff_augment(
    x: Tensor,
    policy: str = "color,translation,cutout",
    generator: torch.Generator | None = None,
    clamp: bool = True,
) -> Tensor:
    """DiffAugment (Zhao et al. 2020) of a batch of images in [-1, 1], (N, C, H, W) -> (N, C, H, W).

    Every operation is differentiable in x (so G gets gradients through the augmented fakes) and draws
    its parameters independently per sample, as the official ``DiffAugment_pytorch.py`` does:

    * ``brightness``: x + b, b ~ U(-0.5, 0.5).
    * ``saturation``: (x - mean_C) * s + mean_C, s ~ U(0, 2), mean over the channels; only for C = 3
      (on one channel it would be the identity), so "color" on grayscale images is brightness + contrast.
    * ``contrast``: (x - mean_CHW) * c + mean_CHW, c ~ U(0.5, 1.5).
    * ``translation``: an integer shift (dy, dx), each uniform in [-s, s] with s = int(side / 8 + 0.5),
      vacated pixels set to 0 (the official code's zero padding; 0 is mid-grey in [-1, 1]).
    * ``cutout``: a square of int(side / 2 + 0.5) pixels per side, centre uniform over the image (clipped
      at the borders), set to 0.

    "color" is brightness, saturation, contrast in this order. The official code's images are in [-1, 1]
    too, so the ranges above are the published ones.

    Value range: translation and cutout fill with 0 and so stay in [-1, 1]; the colour operations do not
    (brightness alone moves a pixel at 1 up to 1.5). With ``clamp=True`` (default) the output is clamped
    to [-1, 1], so D sees only values real images can take; clamped pixels pass no gradient.
    ``clamp=False`` is the official behaviour (no clamp).

    Args:
        x: images (N, C, H, W), floating point.
        policy: comma-separated tokens of :data:`DIFFAUGMENT_OPS`; "" returns x unchanged.
        generator: the ``torch.Generator`` for every random number (on x's device), so training is
            reproducible and resumable; None uses the global generator. Per call it draws N numbers per
            colour operation, then 2N integers per geometric one, in policy order.
        clamp: clamp the result to [-1, 1].
    """
    ops = check_policy(policy)
    if x.dim() != 4 or not x.is_floating_point():
        raise TailganError(
            f"diff_augment needs a float batch of images (N, C, H, W), got {x.dtype} of shape "
            f"{tuple(x.shape)}"
        )
    if generator is not None and generator.device.type != x.device.type:
        raise TailganError(
            f"the DiffAugment generator is on {generator.device} but the images are on {x.device}; "
            "create it with torch.Generator(device=images.device)"
        )
    if not ops:
        return x
    for op in ops:
        if op == "saturation" and x.shape[1] != 3:
            continue
        x = _OPS[op](x, generator)
    return x.clamp(-1.0, 1.0) if clamp else x


# ---------------------------------------------------------------------------------------------------------
# LeCam
# ---------------------------------------------------------------------------------------------------------


class LeCam:
    """LeCam regularisation (Tseng et al. 2021) with its moving averages of D's outputs.

    R_LC = mean(relu(D(x_real) - ema_fake)^2) + mean(relu(ema_real - D(G(z)))^2)

    where ema_real and ema_fake are exponential moving averages of the batch means of D's raw outputs
    (logits) on real and generated images. The EMAs are constants for autograd, so the penalty pulls D's
    real outputs down towards the fake average and its fake outputs up towards the real average (never the
    other way round: it is D's outputs that are regularised, not the anchors). Add ``lambda * R_LC`` to the
    discriminator loss only. They live on the device as one fp32 tensor, so an update never waits for the
    device (no host sync per D step); ``ema_real`` / ``ema_fake`` read them back as floats.

    Order per D step, as in the official code (``loss_hinge_dis`` updates the EMAs, then ``lecam_reg``
    reads them)::

        lecam.update(d_real, d_fake)
        d_loss = d_adv + lam * lecam.loss(d_real, d_fake)

    Official settings (``google/lecam-gan``): decay 0.99; EMAs that copy the current means for the first
    1000 iterations and a penalty that starts after them (``ema_losses(start_itr=1000)``); lambda 0.3 for
    BigGAN on CIFAR-10/100 (0.1 in gSRGAN's BigGAN CIFAR-10-LT config, 0.3 for its other 32 px configs).
    Here steps count :meth:`update` calls, i.e. D steps (the official ``itr`` counts G iterations of
    ``num_D_steps`` D steps each). With ``start_steps=0`` the first update sets the EMAs to the first means
    (the official init of 1000 only matters with ``start_itr=0``, where it is a large bias; not copied).

    Non-finite D outputs make the EMAs and so the penalty non-finite: the run's divergence guard stops the
    run at its next check, and :meth:`state_dict` refuses to write such EMAs into a checkpoint.

    Under ``torch.distributed`` the batch means are averaged over all processes before the EMA update, so
    every rank holds the same EMAs (and a checkpoint written by rank 0 resumes every rank).

    Args:
        decay: EMA decay.
        start_steps: updates 1 ... start_steps - 1 set the EMAs to the latest means (decay 0), later
            ones decay; :meth:`loss` is 0 until more than ``start_steps`` updates have been made
            (the official ``itr < start_itr`` and ``itr > start_itr`` tests).
    """

    def __init__(self, decay: float = 0.99, start_steps: int = 0) -> None:
        if not 0.0 <= decay < 1.0:
            raise TailganError(f"LeCam decay={decay} is outside [0, 1); the official value is 0.99")
        if start_steps < 0:
            raise TailganError(f"LeCam start_steps={start_steps} must be >= 0 (official: 1000)")
        self.decay = float(decay)
        self.start_steps = int(start_steps)
        self.emas = torch.zeros(2)  # (ema_real, ema_fake), moved to D's device by the first update
        self.num_updates = 0

    @property
    def ema_real(self) -> float:
        return float(self.emas[0])

    @property
    def ema_fake(self) -> float:
        return float(self.emas[1])

    @property
    def active(self) -> bool:
        """Whether :meth:`loss` is applied (more than ``start_steps`` updates made)."""
        return self.num_updates > self.start_steps

    def update(self, d_real: Tensor, d_fake: Tensor) -> None:
        """Fold the batch means of D's outputs on real and generated images into the EMAs (no gradient)."""
        with torch.no_grad():
            means = torch.stack([d_real.detach().float().mean(), d_fake.detach().float().mean()])
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                dist.all_reduce(means)
                means /= dist.get_world_size()
            self.num_updates += 1
            # The official schedule: decay 0 (copy) before start_steps; the first update always copies.
            decay = 0.0 if self.num_updates < self.start_steps or self.num_updates == 1 else self.decay
            self.emas = means if decay == 0.0 else decay * self.emas.to(means.device) + (1.0 - decay) * means

    def loss(self, d_real: Tensor, d_fake: Tensor) -> Tensor:
        """R_LC for this batch (0 before the start), differentiable in ``d_real`` and ``d_fake`` only."""
        if not self.active:
            # A zero that still belongs to the graph, so callers can add and backprop it unconditionally.
            return 0.0 * (d_real.sum() + d_fake.sum())
        ema_real, ema_fake = self.emas.to(d_real.device)
        return F.relu(d_real - ema_fake).pow(2).mean() + F.relu(ema_real - d_fake).pow(2).mean()

    def state_dict(self) -> dict[str, Any]:
        """Plain floats and ints: checkpoints with ``torch.load(weights_only=True)``."""
        real, fake = self.emas.tolist()
        if not (math.isfinite(real) and math.isfinite(fake)):
            raise TailganError(
                f"LeCam's moving averages of the discriminator's outputs are not finite (real {real}, fake "
                f"{fake}) after {self.num_updates} updates: the discriminator diverged; lower the learning rate"
            )
        return {
            "ema_real": real,
            "ema_fake": fake,
            "num_updates": self.num_updates,
            "decay": self.decay,
            "start_steps": self.start_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`; decay and start_steps must match this instance's config."""
        missing = {"ema_real", "ema_fake", "num_updates"} - set(state)
        if missing:
            raise TailganError(
                f"LeCam state is missing {sorted(missing)}; it must come from LeCam.state_dict()"
            )
        for key in ("decay", "start_steps"):
            if key in state and state[key] != getattr(self, key):
                raise TailganError(
                    f"the checkpoint's LeCam {key}={state[key]} differs from the configured "
                    f"{getattr(self, key)}; resume with the run's config"
                )
        self.emas = torch.tensor([float(state["ema_real"]), float(state["ema_fake"])], dtype=torch.float32)
        self.num_updates = int(state["num_updates"])


# ---------------------------------------------------------------------------------------------------------
# Group spectral regularisation (gSR)
# ---------------------------------------------------------------------------------------------------------


def default_groups(num_features: int) -> int:
    """gSRGAN's grouping of C channels: the largest divisor a <= sqrt(C), giving an (a, C / a) matrix.

    E.g. 256 -> 16 (16 x 16), 384 -> 16 (16 x 24), 96 -> 8 (8 x 12).
    """
    if num_features < 1:
        raise TailganError(f"num_features must be >= 1, got {num_features}")
    return max(a for a in range(1, math.isqrt(num_features) + 1) if num_features % a == 0)


def group_spectral_norms(vectors: Tensor, n_groups: int) -> Tensor:
    """sigma_max of each row of ``vectors`` (K, C) reshaped row-major into an (n_groups, C / n_groups) matrix.

    Group g holds channels g * C/n_groups ... (g + 1) * C/n_groups - 1 (gSRGAN's ``reshape(-1, a, b)``).
    Exact and differentiable (``torch.linalg.matrix_norm(ord=2)``, an SVD); returns (K,).
    """
    if vectors.dim() != 2:
        raise TailganError(f"vectors must be (classes, channels), got shape {tuple(vectors.shape)}")
    k, c = vectors.shape
    if n_groups < 1 or c % n_groups != 0:
        raise TailganError(
            f"n_groups={n_groups} does not divide the {c} channels of the conditional BN; pick a divisor "
            f"of {c} (gSRGAN's default for {c} is {default_groups(c)})"
        )
    return torch.linalg.matrix_norm(vectors.reshape(k, n_groups, c // n_groups), ord=2)


def _conditional_bn_layers(generator: nn.Module) -> list[nn.Module]:
    # Conditional BN as in tailgan.nets.layers.ConditionalBatchNorm2d: bias-free linears `gain` and `bias`
    # of the conditioning vector. Matched by layout, not class, so tailgan.losses needs no tailgan.nets import.
    layers = []
    for module in generator.modules():
        gain, bias = getattr(module, "gain", None), getattr(module, "bias", None)
        if isinstance(gain, nn.Linear) and isinstance(bias, nn.Linear):
            layers.append(module)
    return layers


def conditional_bn_params(generator: nn.Module, classes: Tensor | None = None) -> list[tuple[Tensor, Tensor]]:
    """The class-specific gain and bias vectors (gamma_y, beta_y) of every conditional BN layer of G.

    For a BigGAN generator (``tailgan.nets.biggan.BigGANGenerator``) layer l computes
    BN(x) * (1 + W_g c) + W_b c with c = concat(shared(y), z_chunk). As in gSRGAN's ``gen_sn``, the
    class-specific part is taken with the latent chunk set to zero: gamma_y = W_g [shared(y); 0] and
    beta_y = W_b [shared(y); 0] (the gain without its constant 1). Spectrally normalised linears are used
    as they are (in training mode that runs one more power iteration, as gSRGAN's code does).

    Args:
        generator: a module with a class embedding ``shared`` (nn.Embedding) and conditional BN layers
            (submodules with bias-free nn.Linear ``gain`` and ``bias``).
        classes: class indices (K',) to evaluate; None means every class 0 ... K-1.

    Returns:
        one (gamma, beta) pair of (K', C_l) tensors per layer, in module order.
    """
    shared = getattr(generator, "shared", None)
    layers = _conditional_bn_layers(generator)
    if not isinstance(shared, nn.Embedding) or not layers:
        raise TailganError(
            f"group spectral regularisation needs a generator with a shared class embedding and "
            f"class-conditional batch norm (BigGAN), got {type(generator).__name__}; use a BigGAN preset "
            "(e.g. model=biggan) or turn gSR off"
        )
    weight = shared.weight
    if classes is None:
        classes = torch.arange(shared.num_embeddings, device=weight.device)
    embedded = shared(classes.to(weight.device))
    params = []
    for layer in layers:
        in_features = layer.gain.in_features
        if in_features < embedded.shape[1]:
            raise TailganError(
                f"a conditional BN layer takes {in_features} conditioning features, fewer than the "
                f"{embedded.shape[1]} of the class embedding; this generator does not have BigGAN's layout"
            )
        cond = F.pad(embedded, (0, in_features - embedded.shape[1]))  # zero latent chunk
        params.append((layer.gain(cond), layer.bias(cond)))
    return params


def group_spectral_penalty(
    generator: nn.Module,
    class_counts: Sequence[int] | Tensor,
    beta: float = 0.99,
    n_groups: int | None = None,
    classes: Tensor | None = None,
    squared: bool = True,
) -> Tensor:
    """gSR (Rangwani et al., ECCV 2022): class-weighted largest singular values of the grouped cBN params.

    R_gSR = 1 / (L K) * sum_l sum_y w_y (sigma_max(Gamma_{l,y})^2 + sigma_max(B_{l,y})^2)

    with Gamma_{l,y}, B_{l,y} the gain and bias vectors of class y in conditional BN layer l
    (:func:`conditional_bn_params`) reshaped into (n_groups, C / n_groups) matrices
    (:func:`group_spectral_norms`), L the number of layers, K the number of classes evaluated, and
    w_y = (1 - beta) / (1 - beta^n_y), the inverse effective number of samples (Cui et al. 2019),
    normalised to sum to the number of classes, so tail classes are regularised most. This is what
    ``val-iisc/gSRGAN`` computes (``worker.py``: ``lam = K * sn_reg_weight / En``, squared norms, mean over
    layers and classes, every class at every G step). Add ``lambda * R_gSR`` to the generator loss.

    Official defaults (gSRGAN configs): lambda (``sn_reg_weight``) 0.5 for CIFAR-10-LT and LSUN-LT at 32 px
    (0.01 for BigGAN on LSUN 128 px and iNaturalist-19); beta 0.99 for BigGAN, 0.999 for SNGAN; groups by
    :func:`default_groups` (16 x 16 for 256 channels). Differences: sigma_max here is exact (an SVD)
    where the configs use 4 power iterations per step (whose beta update also reuses the gamma vector v0);
    ``squared=False`` penalises sigma_max itself rather than its square.

    Args:
        generator: see :func:`conditional_bn_params`.
        class_counts: training images per class n_y, one per class of the generator.
        beta: effective-number beta in [0, 1) (0 gives equal weights).
        n_groups: rows of the reshaped matrices; None uses :func:`default_groups` per layer.
        classes: the classes to evaluate (default: all, as the official code does); their weights are
            the entries of the all-class weights, and the mean runs over the classes given.
        squared: penalise sigma_max^2 (official) or sigma_max.

    Returns:
        a scalar, differentiable in the class embedding and the cBN linears.
    """
    if not 0.0 <= beta < 1.0:
        raise TailganError(f"gSR beta={beta} is outside [0, 1); the official values are 0.99 and 0.999")
    counts = torch.as_tensor(class_counts)
    num_classes = getattr(getattr(generator, "shared", None), "num_embeddings", None)
    if counts.dim() != 1 or (num_classes is not None and counts.numel() != num_classes):
        raise TailganError(
            f"class_counts must hold one count per class ({num_classes}), got shape {tuple(counts.shape)}; "
            "pass the training set's per-class counts"
        )
    if (counts < 1).any():
        raise TailganError(f"class_counts must be >= 1 for every class, got {counts.tolist()}")
    params = conditional_bn_params(generator, classes)
    device = params[0][0].device
    weights = class_balanced_weights(counts, beta).to(device)
    if classes is not None:
        weights = weights[classes.to(device)]
    total = torch.zeros((), device=device, dtype=params[0][0].dtype)
    for gamma, bias in params:
        groups = default_groups(gamma.shape[1]) if n_groups is None else n_groups
        for sigma in (group_spectral_norms(gamma, groups), group_spectral_norms(bias, groups)):
            total = total + (weights.to(sigma.dtype) * (sigma.pow(2) if squared else sigma)).sum()
    return total / (len(params) * weights.numel())
