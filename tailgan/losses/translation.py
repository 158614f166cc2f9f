"""Losses of the joint CycleGAN + classifier method (spec section 6.3) and of its K-class StarGAN variant.

Notation of the seed: A is the majority domain, B the minority one; G_AB: A -> B, G_BA: B -> A;
discriminators D_A, D_B; z(x) is the classifier's probability that x belongs to the minority class B.

* Adversarial: LSGAN, D = 1/2 [E (D(real) - 1)^2 + E D(fake)^2] (halved as in the CycleGAN code), G =
  E (D(G(x)) - 1)^2. The seed's "JA + CS" variant uses the non-saturating form instead: G maximises
  E log D(G(x)), i.e. minimises E softplus(-D(G(x))) on logits; its D loss is the halved BCE.
* Cycle: L_cyc(A) = E_a |G_BA(G_AB(a)) - a|_1, L_cyc(B) likewise, each weighted beta (10).
* Identity: L_ide = E_b |G_AB(b) - b|_1 + E_a |G_BA(a) - a|_1 weighted alpha (5 = 0.5 x 10, CycleGAN);
  "JA + CS" keeps only the second term (``one_sided=True``).
* Classifier: L_cls^B = -E_b log z(b) - E_a log z(G_AB(a)), L_cls^A = -E_a log(1 - z(a)) -
  E_b log(1 - z(G_BA(b))), L_cls = L_cls^B + (1/gamma) L_cls^A, gamma the cost-sensitive (CS) weight:
  the majority term is divided by gamma. tailgan's gamma is CS's inverse-frequency ratio n_A / n_B
  (:func:`cost_sensitive_gamma`; ``tailgan classify --strategy cs`` weighs the classes the same way);
  gamma = 1 switches the weighting off.

L1 terms are means over all elements (``nn.L1Loss``), as in the CycleGAN code. The classifier terms are
computed from logits with log-softmax / log-sigmoid, so they stay finite when z saturates. A classifier
may give 2 logits (tailgan's classifiers: z = softmax[:, minority]) or one (z = sigmoid).

For K classes (StarGAN-style, one translator G(x, c)): the discriminator's class head is trained with
CE on real images and the translator with CE of the target class on G(x, c) (:func:`stargan_d_loss`,
:func:`stargan_g_loss`, cycle back to the source class); the K-way classifier's joint loss
:func:`multiclass_cls_loss` generalises L_cls: per-class means over real images of class c and images
translated into c, weighted w_c (w = (1/gamma, 1) gives back the binary L_cls).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

GanMode = Literal["lsgan", "nonsaturating"]
GAN_MODES = ("lsgan", "nonsaturating")


def _check_mode(mode: str) -> None:
    if mode not in GAN_MODES:
        raise ValueError(f"unknown GAN loss mode {mode!r}; use one of {', '.join(GAN_MODES)}")


def gan_d_loss(real_out: Tensor, fake_out: Tensor, mode: GanMode = "lsgan") -> Tensor:
    """Discriminator loss on raw outputs (any shape, e.g. patch maps), halved as in CycleGAN.

    ``lsgan``: 1/2 [mean (real - 1)^2 + mean fake^2]; ``nonsaturating``: 1/2 [mean softplus(-real) +
    mean softplus(fake)] (BCE with targets 1 and 0).
    """
    _check_mode(mode)
    if mode == "lsgan":
        return 0.5 * ((real_out - 1).pow(2).mean() + fake_out.pow(2).mean())
    return 0.5 * (F.softplus(-real_out).mean() + F.softplus(fake_out).mean())


def gan_g_loss(fake_out: Tensor, mode: GanMode = "lsgan") -> Tensor:
    """Generator loss on D's raw outputs for translated images: ``lsgan`` mean (D - 1)^2;
    ``nonsaturating`` ("JA + CS") -mean log sigmoid(D) = mean softplus(-D)."""
    _check_mode(mode)
    if mode == "lsgan":
        return (fake_out - 1).pow(2).mean()
    return F.softplus(-fake_out).mean()


def cycle_loss(reconstructed: Tensor, original: Tensor) -> Tensor:
    """L_cyc = mean |G_back(G_forth(x)) - x| (unweighted; the objective multiplies it by beta)."""
    return (reconstructed - original).abs().mean()


def identity_loss(
    g_ab_of_b: Tensor | None, b: Tensor | None, g_ba_of_a: Tensor, a: Tensor, one_sided: bool = False
) -> Tensor:
    """L_ide = mean |G_AB(b) - b| + mean |G_BA(a) - a| (unweighted). ``one_sided`` ("JA + CS") keeps only
    the majority term mean |G_BA(a) - a|, and then ``g_ab_of_b`` and ``b`` may be None."""
    loss = (g_ba_of_a - a).abs().mean()
    if not one_sided:
        if g_ab_of_b is None or b is None:
            raise ValueError("the two-sided identity loss needs G_AB(b) and b")
        loss = loss + (g_ab_of_b - b).abs().mean()
    return loss


def log_z(logits: Tensor, minority: int = 1) -> tuple[Tensor, Tensor]:
    """(log z(x), log(1 - z(x))) per sample from classifier logits, computed stably.

    ``logits`` (N,) or (N, 1): z = sigmoid(logit); (N, 2): z = softmax(logits)[:, minority].
    """
    if logits.ndim == 1 or (logits.ndim == 2 and logits.shape[1] == 1):
        l = logits.reshape(-1)  # noqa: E741
        return F.logsigmoid(l), F.logsigmoid(-l)
    if logits.ndim == 2 and logits.shape[1] == 2:
        lp = F.log_softmax(logits, dim=1)
        return lp[:, minority], lp[:, 1 - minority]
    raise ValueError(f"binary classifier logits must be (N,), (N, 1) or (N, 2), got {tuple(logits.shape)}")


def cls_loss_b(real_b_logits: Tensor | None, fake_b_logits: Tensor | None, minority: int = 1) -> Tensor:
    """L_cls^B = -mean log z(b) - mean log z(G_AB(a)): real minority images and majority images translated
    to the minority, both labelled minority. Either input may be None to drop its term."""
    terms = [-log_z(x, minority)[0].mean() for x in (real_b_logits, fake_b_logits) if x is not None]
    if not terms:
        raise ValueError("cls_loss_b needs at least one of real_b_logits, fake_b_logits")
    return torch.stack(terms).sum()


def cls_loss_a(real_a_logits: Tensor | None, fake_a_logits: Tensor | None, minority: int = 1) -> Tensor:
    """L_cls^A = -mean log(1 - z(a)) - mean log(1 - z(G_BA(b))): real majority images and minority images
    translated to the majority, both labelled majority. Either input may be None to drop its term."""
    terms = [-log_z(x, minority)[1].mean() for x in (real_a_logits, fake_a_logits) if x is not None]
    if not terms:
        raise ValueError("cls_loss_a needs at least one of real_a_logits, fake_a_logits")
    return torch.stack(terms).sum()


def cost_sensitive_gamma(n_majority: int, n_minority: int) -> float:
    """CS weight gamma = n_A / n_B: the majority term of L_cls is divided by the imbalance ratio, so each
    majority sample weighs what inverse-frequency class weights give it relative to a minority one."""
    if n_majority < 1 or n_minority < 1:
        raise ValueError(f"class counts must be positive, got n_majority={n_majority}, n_minority={n_minority}")
    return n_majority / n_minority


def joint_cls_loss(
    real_a_logits: Tensor | None,
    real_b_logits: Tensor | None,
    fake_a_logits: Tensor | None,
    fake_b_logits: Tensor | None,
    gamma: float = 1.0,
    minority: int = 1,
) -> dict[str, Tensor]:
    """L_cls = L_cls^B + (1/gamma) L_cls^A. ``fake_b_logits`` are z's logits on G_AB(a), ``fake_a_logits``
    on G_BA(b). Returns ``{"cls_b", "cls_a", "cls"}`` (the unweighted terms and the weighted sum).

    Whether the generators receive this loss's gradient is decided by the caller: pass logits of
    undetached translations in ``alt`` mode, of detached ones (or none) when only the classifier learns.
    """
    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    lb = cls_loss_b(real_b_logits, fake_b_logits, minority)
    la = cls_loss_a(real_a_logits, fake_a_logits, minority)
    return {"cls_b": lb, "cls_a": la, "cls": lb + la / gamma}


def classifier_objective(cls: Tensor, gamma: float = 1.0, reduction: str = "mean") -> Tensor:
    """What the classifier's own update minimises: the seed's L_cls as written (``sum``: four group means added,
    up to 4x the scale of one cross-entropy), or its weighted mean over the four image groups (``mean``:
    L_cls / (2 (1 + 1/gamma)), the scale of one cross-entropy, so a learning rate means what it means for
    every other strategy; at the seed's sum and lr 0.05, LeNet-5 collapsed to a constant output)."""
    if reduction == "sum":
        return cls
    if reduction != "mean":
        raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    return cls / (2.0 * (1.0 + 1.0 / gamma))


def cyclegan_g_losses(
    d_b_fake: Tensor,
    d_a_fake: Tensor,
    a: Tensor,
    b: Tensor,
    rec_a: Tensor,
    rec_b: Tensor,
    idt_a: Tensor | None = None,
    idt_b: Tensor | None = None,
    *,
    beta: float = 10.0,
    alpha: float = 5.0,
    mode: GanMode = "lsgan",
    one_sided_identity: bool = False,
) -> dict[str, Tensor]:
    """The generators' CycleGAN objective of the seed, without the classifier terms.

    ``d_b_fake`` = D_B(G_AB(a)), ``d_a_fake`` = D_A(G_BA(b)), ``rec_a`` = G_BA(G_AB(a)), ``rec_b`` =
    G_AB(G_BA(b)), ``idt_a`` = G_BA(a), ``idt_b`` = G_AB(b) (identity terms skipped when ``alpha`` is 0).
    Returns the terms ``gan_ab``, ``gan_ba``, ``cyc_a``, ``cyc_b``, ``ide`` (unweighted) and ``total`` =
    gan_ab + beta cyc_a + gan_ba + beta cyc_b + alpha ide. Add the classifier's L_cls for the full L.
    """
    out = {
        "gan_ab": gan_g_loss(d_b_fake, mode),
        "gan_ba": gan_g_loss(d_a_fake, mode),
        "cyc_a": cycle_loss(rec_a, a),
        "cyc_b": cycle_loss(rec_b, b),
    }
    total = out["gan_ab"] + out["gan_ba"] + beta * (out["cyc_a"] + out["cyc_b"])
    if alpha:
        if idt_a is None:
            raise ValueError("alpha > 0 needs idt_a = G_BA(a) (and idt_b = G_AB(b) unless one-sided)")
        out["ide"] = identity_loss(idt_b, b, idt_a, a, one_sided_identity)
        total = total + alpha * out["ide"]
    out["total"] = total
    return out


def cyclegan_d_losses(
    d_a_real: Tensor, d_a_fake: Tensor, d_b_real: Tensor, d_b_fake: Tensor, mode: GanMode = "lsgan"
) -> dict[str, Tensor]:
    """Both discriminators' halved losses: ``d_a`` on real a vs (pooled, detached) G_BA(b), ``d_b`` on real
    b vs G_AB(a), and ``total`` = d_a + d_b (CycleGAN steps both with one optimizer)."""
    out = {"d_a": gan_d_loss(d_a_real, d_a_fake, mode), "d_b": gan_d_loss(d_b_real, d_b_fake, mode)}
    out["total"] = out["d_a"] + out["d_b"]
    return out


# --- K classes: StarGAN-style translator and the K-way classifier -------------------------------------


def stargan_d_loss(
    real_adv: Tensor,
    real_cls_logits: Tensor,
    real_labels: Tensor,
    fake_adv: Tensor,
    *,
    lambda_cls: float = 1.0,
    mode: GanMode = "lsgan",
) -> dict[str, Tensor]:
    """Conditional discriminator: halved adversarial loss + lambda_cls CE(class head on real, true label).

    The class head learns only on real images (StarGAN), so translations cannot teach it wrong labels.
    """
    out = {"adv": gan_d_loss(real_adv, fake_adv, mode), "cls": F.cross_entropy(real_cls_logits, real_labels)}
    out["total"] = out["adv"] + lambda_cls * out["cls"]
    return out


def stargan_g_loss(
    fake_adv: Tensor,
    fake_cls_logits: Tensor,
    target: Tensor,
    x: Tensor,
    x_rec: Tensor,
    x_idt: Tensor | None = None,
    *,
    lambda_cls: float = 1.0,
    lambda_rec: float = 10.0,
    alpha: float = 0.0,
    mode: GanMode = "lsgan",
) -> dict[str, Tensor]:
    """Conditional translator: adversarial + lambda_cls CE(D's class head on G(x, c), c) + lambda_rec
    |G(G(x, c), c_source) - x|_1 (the cycle back to the source class) + alpha |G(x, c_source) - x|_1
    (identity, optional: ``x_idt`` = G(x, c_source))."""
    out = {
        "adv": gan_g_loss(fake_adv, mode),
        "cls": F.cross_entropy(fake_cls_logits, target),
        "rec": cycle_loss(x_rec, x),
    }
    total = out["adv"] + lambda_cls * out["cls"] + lambda_rec * out["rec"]
    if alpha:
        if x_idt is None:
            raise ValueError("alpha > 0 needs x_idt = G(x, source class)")
        out["ide"] = cycle_loss(x_idt, x)
        total = total + alpha * out["ide"]
    out["total"] = total
    return out


def multiclass_cls_loss(
    real_logits: Tensor,
    real_labels: Tensor,
    fake_logits: Tensor | None = None,
    fake_targets: Tensor | None = None,
    class_weights: Tensor | None = None,
) -> Tensor:
    """K-way L_cls: sum over classes c of w_c [mean CE over real images of class c + mean CE over images
    translated into c], a class absent from the batch contributing nothing.

    With two classes, w = (1/gamma, 1) and the minority as class 1 this equals the binary L_cls^B +
    (1/gamma) L_cls^A. ``class_weights`` default to 1 (K-class CS: inverse-frequency weights).
    """
    k = real_logits.shape[1]
    w = real_logits.new_ones(k) if class_weights is None else class_weights.to(real_logits)
    if w.shape != (k,):
        raise ValueError(f"class_weights must have one weight per class ({k},), got {tuple(w.shape)}")
    groups = [(real_logits, real_labels)]
    if fake_logits is not None:
        if fake_targets is None:
            raise ValueError("fake_logits need fake_targets (the class each image was translated into)")
        groups.append((fake_logits, fake_targets))
    loss = real_logits.new_zeros(())
    for logits, labels in groups:
        ce = F.cross_entropy(logits, labels, reduction="none")
        counts = torch.bincount(labels, minlength=k).to(ce)
        sums = torch.zeros(k, dtype=ce.dtype, device=ce.device).index_add_(0, labels, ce)
        present = counts > 0
        loss = loss + (w[present] * sums[present] / counts[present]).sum()
    return loss


# --- checks for the training modes -------------------------------------------------------------------


def grad_norms(loss: Tensor, modules: Mapping[str, nn.Module]) -> dict[str, float]:
    """L2 norm of d loss / d parameters of each module, without touching any ``.grad``.

    0.0 means the loss does not reach that module (no path, or only through detached tensors): in
    ``alt`` mode the classifier loss on G_AB(a) must reach G_AB; in ``aug`` mode it must not.
    """
    names, params = [], []
    for name, m in modules.items():
        for p in m.parameters():
            if p.requires_grad:
                names.append(name)
                params.append(p)
    reachable = params and loss.requires_grad  # a loss built from detached tensors only reaches nothing
    grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True) if reachable else []
    sq = {name: 0.0 for name in modules}
    for name, g in zip(names, grads):
        if g is not None:
            sq[name] += float(g.detach().pow(2).sum())
    return {name: s**0.5 for name, s in sq.items()}
