"""DFG's procedures and losses (spec 5.4-5.6): channel evaluation, attention, DELTA regularisers, GAN losses.

Notation: E^t, Cl^t the target extractor / classifier (trained), E^s, Cl^s the frozen source copies,
f = E^t(x) real features, f~ = G(u, y) * a[y] generated features, C_f the number of feature channels.

Channel evaluation (spec 5.4) ablates one conv filter at a time -- its weight is zeroed, its bias kept, as
in DFG and DELTA -- and measures the cross-entropy: per sample for the extractor conv (scores and class
attention), per batch over 4 batches for the hooked classifier layers (DELTA's channel weights).

The importance sign: DELTA scores a channel by the loss *increase* when it is removed, L^(-j) - L (the
default, ``sign="delta"``); DFG's extractor evaluation computes L - L^(-j) (``sign="dfg"``, faithful), which
favours the channels whose removal *lowers* the loss, both in the regulariser weights and in the attention.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tailgan.errors import TailganError
from tailgan.losses.adversarial import d_wasserstein, g_wasserstein, gradient_penalty

# -- channel evaluation (spec 5.4) -----------------------------------------------------------------------


@contextmanager
def _evaluating(modules: Iterable[nn.Module], eval_mode: bool) -> Iterator[None]:
    """Run in eval mode (if asked) and restore every submodule's train/eval flag afterwards."""
    modules = list(modules)
    flags = [[m.training for m in mod.modules()] for mod in modules]
    if eval_mode:
        for mod in modules:
            mod.eval()
    try:
        yield
    finally:
        for mod, fl in zip(modules, flags):
            for m, training in zip(mod.modules(), fl):
                m.training = training


@contextmanager
def _filter_zeroed(layer: nn.Module, j: int) -> Iterator[None]:
    """Zero output filter j of ``layer``'s weight (bias kept, as DFG/DELTA do), restoring it exactly after."""
    weight = layer.weight
    saved = weight[j].detach().clone()
    with torch.no_grad():
        weight[j] = 0
    try:
        yield
    finally:
        with torch.no_grad():
            weight[j] = saved


def _conv(module: nn.Module, name: str) -> nn.Module:
    try:
        layer = module.get_submodule(name)
    except AttributeError:
        raise ValueError(f"{type(module).__name__} has no layer {name!r}") from None
    if not isinstance(getattr(layer, "weight", None), Tensor):
        raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no weight to ablate")
    return layer


def first_per_class(labels: Tensor, num_classes: int, per_class: int = 10) -> Tensor:
    """Indices of the first ``per_class`` samples of every class in ``labels``' order (DFG: ``label_min=10``).

    DFG takes them in the order of its shuffled training loader; pass a permuted ``labels`` (and map the
    indices back) for the same effect. A class with fewer samples contributes all it has.
    """
    labels = torch.as_tensor(labels)
    picks = [torch.nonzero(labels == c).flatten()[:per_class] for c in range(num_classes)]
    return torch.sort(torch.cat(picks)).values


@torch.no_grad()
def ablation_losses(
    extractor: nn.Module,
    classifier: nn.Module,
    images: Tensor,
    labels: Tensor,
    layer: str,
    batch_size: int = 64,
    eval_mode: bool = True,
) -> tuple[Tensor, Tensor]:
    """Per-sample cross-entropy of ``classifier(extractor(x))``, intact and with each filter of ``layer`` zeroed.

    Args:
        layer: name of the extractor conv whose output filters are ablated (``SplitNet.extractor_layer``).
        eval_mode: run both networks in eval mode (restored afterwards). DFG's periodic re-evaluation runs the
            target networks in train mode (batch-norm statistics, dropout); ``False`` reproduces that.

    Returns:
        ``base`` (N,) and ``ablated`` (N, C_f), ``ablated[i, j]`` the loss of sample i with filter j zeroed.
    """
    conv = _conv(extractor, layer)

    def losses() -> Tensor:
        out = []
        for i in range(0, len(images), batch_size):
            logits = classifier(extractor(images[i : i + batch_size]))
            out.append(F.cross_entropy(logits, labels[i : i + batch_size], reduction="none"))
        return torch.cat(out)

    with _evaluating((extractor, classifier), eval_mode):
        base = losses()
        ablated = []
        for j in range(conv.weight.shape[0]):
            with _filter_zeroed(conv, j):
                ablated.append(losses())
    return base, torch.stack(ablated, dim=1)


def channel_scores(base: Tensor, ablated: Tensor, sign: Literal["delta", "dfg"] = "delta") -> Tensor:
    """Per-sample channel importance s_ij: ``delta`` L_i^(-j) - L_i (default), ``dfg`` L_i - L_i^(-j) (faithful)."""
    if sign == "delta":
        return ablated - base[:, None]
    if sign == "dfg":
        return base[:, None] - ablated
    raise ValueError(f"sign must be 'delta' or 'dfg', got {sign!r}")


def class_attention(scores: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """A[c, j] = mean over the samples i of class c of softmax_j(s_ij): the per-class channel attention."""
    p = torch.softmax(scores, dim=1)
    attention = torch.zeros(num_classes, scores.shape[1], dtype=p.dtype, device=p.device)
    for c in range(num_classes):
        rows = p[labels == c]
        if len(rows) == 0:
            raise TailganError(f"class {c} has no sample for channel evaluation; every class needs at least one image")
        attention[c] = rows.mean(0)
    return attention


@dataclass
class ChannelEvaluation:
    """Result of the extractor channel evaluation.

    ``extractor_scores`` (C_f,): mean score per channel (DFG's ``transpose_wj_extractor``, the input of the
    extractor regulariser weights); ``attention`` (K, C_f): the class attention before thresholding
    (DFG's ``generator_attention``); ``sample_scores`` (N, C_f) and ``labels`` (N,): the raw scores.
    """

    extractor_scores: Tensor
    attention: Tensor
    sample_scores: Tensor
    labels: Tensor


def evaluate_extractor_channels(
    extractor: nn.Module,
    classifier: nn.Module,
    images: Tensor,
    labels: Tensor,
    layer: str,
    num_classes: int,
    sign: Literal["delta", "dfg"] = "delta",
    eval_mode: bool = True,
) -> ChannelEvaluation:
    """Spec 5.4 step 2 on the given samples (DFG: ``first_per_class(labels, K, 10)`` of the training set)."""
    base, ablated = ablation_losses(extractor, classifier, images, labels, layer, eval_mode=eval_mode)
    scores = channel_scores(base, ablated, sign)
    return ChannelEvaluation(scores.mean(0), class_attention(scores, labels, num_classes), scores, labels)


@torch.no_grad()
def classifier_channel_weights(
    extractor: nn.Module,
    classifier: nn.Module,
    batches: Iterable[tuple[Tensor, Tensor]],
    layers: Iterable[str],
    max_batches: int = 4,
    eval_mode: bool = True,
) -> list[Tensor]:
    """DELTA's channel scores of the hooked classifier layers (spec 5.4 step 3).

    For each of the first ``max_batches`` batches (x, y) and each output filter j of each layer in ``layers``
    (names inside ``classifier``): CE(batch, filter j zeroed) - CE(batch), both batch means, averaged over
    the batches. Returns one (channels,) tensor per layer, in the order of ``layers``.
    """
    layers = list(layers)
    convs = [_conv(classifier, name) for name in layers]
    sums = [torch.zeros(conv.weight.shape[0], dtype=torch.float64) for conv in convs]
    n = 0
    with _evaluating((extractor, classifier), eval_mode):
        for x, y in batches:
            if n >= max_batches:
                break
            base = F.cross_entropy(classifier(extractor(x)), y)
            for conv, acc in zip(convs, sums):
                for j in range(conv.weight.shape[0]):
                    with _filter_zeroed(conv, j):
                        acc[j] += (F.cross_entropy(classifier(extractor(x)), y) - base).item()
            n += 1
    if n == 0:
        raise ValueError("classifier_channel_weights got no batch")
    return [(acc / n).float() for acc in sums]


def threshold_attention(attention: Tensor, threshold: float) -> Tensor:
    """Sparsify the class attention: keep a[c, j] where C_f * a[c, j] >= threshold (i.e. at least ``threshold``
    times the uniform level 1 / C_f), zero elsewhere. DFG: 0.9 at the start, 0.95 at every update."""
    keep = attention * attention.shape[1] >= threshold
    return torch.where(keep, attention, torch.zeros_like(attention))


def updated_attention(current: Tensor, new: Tensor, threshold: float = 0.95, rho: float | None = None) -> Tensor:
    """The attention after a periodic re-evaluation (spec 5.4, step 6 of 5.7).

    ``rho=None`` (DFG's code): the new attention, thresholded, replaces the current one. DFG also computes
    ``rho * current + (1 - rho) * new`` (rho 0.75) but only logs it; a float ``rho`` uses that blend instead.
    """
    return threshold_attention(new if rho is None else rho * current + (1 - rho) * new, threshold)


# -- regularisers against the source networks (spec 5.5) --------------------------------------------------


def regularizer_weights(scores: Tensor, temperature: float = 5.0) -> Tensor:
    """Channel weights w = softmax(zscore(scores) / temperature) (DFG and DELTA); population std.

    Equal scores (std 0) give uniform weights instead of a division by zero.
    """
    scores = scores.double()
    std = scores.std(correction=0)
    z = (scores - scores.mean()) / std if std > 0 else torch.zeros_like(scores)
    return torch.softmax(z / temperature, dim=0).float()


def attentive_fm_distance(target: Tensor, source: Tensor, weights: Tensor) -> Tensor:
    """Omega_1 on one map: 1/2 sum_b sum_j w_j * C * ||F^t_bj - F^s_bj||^2 / (H W), summed (not averaged)
    over the batch; ``source`` is detached. Maps are (B, C, *spatial)."""
    if target.shape != source.shape:
        raise ValueError(f"target and source maps differ in shape: {tuple(target.shape)} vs {tuple(source.shape)}")
    b, c = target.shape[:2]
    diff = (target.float() - source.detach().float()).reshape(b, c, -1)  # fp32 sums (bf16 maps on the fast path)
    sq = diff.pow(2).sum(2)  # (B, C): squared L2 norm per channel
    return 0.5 * (c * weights.to(sq.dtype) * sq / diff.shape[2]).sum()


@contextmanager
def capture_outputs(module: nn.Module, names: Iterable[str]) -> Iterator[dict[str, Tensor]]:
    """Forward hooks on the named submodules; yields a dict name -> output of the latest forward.

    The stored tensor is the layer's output object itself, so an in-place ReLU right after the layer (DFG's
    LeNet-5, torchvision's VGG) leaves it holding the rectified map -- what DFG and DELTA regularise.
    The hooks are removed on exit.
    """
    outputs: dict[str, Tensor] = {}
    handles = []
    for name in names:
        layer = module.get_submodule(name)
        handles.append(layer.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out)))
    try:
        yield outputs
    finally:
        for h in handles:
            h.remove()


def classify_with_omega1(
    target_classifier: nn.Module,
    source_classifier: nn.Module,
    target_features: Tensor,
    source_features: Tensor,
    layers: Iterable[str],
    weights: Iterable[Tensor],
) -> tuple[Tensor, Tensor]:
    """Target logits ``Cl^t(f_t)`` and Omega_1^C = sum over hooked layers of ``attentive_fm_distance`` between
    the layer's map in ``Cl^t(f_t)`` and in ``Cl^s(f_s)`` (DFG feeds the source classifier the source
    extractor's features); the source pass runs without gradients."""
    layers, weights = list(layers), list(weights)
    if len(layers) != len(weights):
        raise ValueError(f"{len(layers)} hooked layers but {len(weights)} weight vectors")
    with capture_outputs(target_classifier, layers) as t_maps:
        logits = target_classifier(target_features)
    with torch.no_grad(), capture_outputs(source_classifier, layers) as s_maps:
        source_classifier(source_features)
    omega = sum((attentive_fm_distance(t_maps[n], s_maps[n], w) for n, w in zip(layers, weights)), logits.new_zeros(()))
    return logits, omega


def head_l2(layer: nn.Module) -> Tensor:
    """Omega_2 = 1/2 ||W||^2 + 1/2 ||b||^2 of the last classifier layer (plain L2, as DELTA, not L2-SP)."""
    return 0.5 * sum(p.pow(2).sum() for p in layer.parameters())


# -- losses (spec 5.6) -------------------------------------------------------------------------------------


def critic_loss(
    critic: nn.Module,
    real: Tensor,
    fake: Tensor,
    lambda_gp: float = 10.0,
    generator: torch.Generator | None = None,
    autocast: Callable[[], AbstractContextManager] = nullcontext,
) -> dict[str, Tensor]:
    """WGAN-GP critic loss on feature maps: mean D(f~) - mean D(f) + lambda_gp * GP, GP at f^ = a f + (1 - a) f~,
    a ~ U(0, 1) per sample. Returns ``loss``, ``wasserstein`` and ``gp``.

    ``autocast`` is the context of the two scoring passes (the fast path's bf16); the penalty always runs
    outside it, on fp32 maps (its double backward differentiates a norm near 1: ``tailgan.nets.precision``)."""
    with autocast():
        real_scores, fake_scores = critic(real.detach()), critic(fake.detach())
    wasserstein = d_wasserstein(real_scores.float(), fake_scores.float())
    gp = gradient_penalty(critic, real.float(), fake.float(), alpha="uniform", generator=generator)
    return {"loss": wasserstein + lambda_gp * gp, "wasserstein": wasserstein, "gp": gp}


def generator_adv_loss(fake_scores: Tensor) -> Tensor:
    """L_G^adv = -mean D(f~)."""
    return g_wasserstein(fake_scores.float())


def merged_batch(
    fake_features: Tensor, fake_labels: Tensor, real_features: Tensor, real_labels: Tensor
) -> tuple[Tensor, Tensor]:
    """[f~; f] and [y_fake; y] (fakes first, as DFG concatenates them)."""
    return torch.cat([fake_features, real_features]), torch.cat([fake_labels, real_labels])


def generator_cls_loss(merged_logits: Tensor, merged_labels: Tensor) -> Tensor:
    """L_G^cls = CE(Cl^t([f~; f]), [y_fake; y]); DFG steps only G with it."""
    return F.cross_entropy(merged_logits.float(), merged_labels)


def extractor_classifier_loss(
    logits: Tensor,
    labels: Tensor,
    omega1_e: Tensor | None = None,
    omega1_c: Tensor | None = None,
    omega2: Tensor | None = None,
    alpha_e: float = 0.01,
    alpha_c: float = 0.01,
    beta_c: float = 0.01,
) -> dict[str, Tensor]:
    """L_EC on real data (steps E^t and Cl^t).

    With the regularisers (all three given): ``e_loss`` = CE + alpha_e Omega_1^E, ``c_loss`` = CE +
    alpha_c Omega_1^C + beta_c Omega_2 and ``loss`` = e_loss + c_loss, so CE counts twice, as in DFG.
    Without them (DFG without ``--with_regularization``): loss = e_loss = c_loss = CE.
    """
    ce = F.cross_entropy(logits.float(), labels)
    given = [o is not None for o in (omega1_e, omega1_c, omega2)]
    if any(given) and not all(given):
        raise ValueError("pass all three regularisers (omega1_e, omega1_c, omega2) or none")
    if not all(given):
        return {"loss": ce, "e_loss": ce, "c_loss": ce, "ce": ce}
    e_loss = ce + alpha_e * omega1_e
    c_loss = ce + alpha_c * omega1_c + beta_c * omega2
    return {"loss": e_loss + c_loss, "e_loss": e_loss, "c_loss": c_loss, "ce": ce}


def classifier_fake_loss(
    real_logits: Tensor,
    real_labels: Tensor,
    fake_logits: Tensor,
    fake_labels: Tensor,
    merged_logits: Tensor,
    merged_labels: Tensor,
    omega1_c: Tensor | None = None,
    omega2: Tensor | None = None,
    alpha_c: float = 0.01,
    beta_c: float = 0.01,
) -> dict[str, Tensor]:
    """L_C (steps only Cl^t): 1/3 [CE(real) + alpha_c Omega_1^C + beta_c Omega_2] + 1/3 CE(fake) + 1/3 CE(merged).

    ``merged_logits`` is a separate forward of ``merged_batch`` (it differs from the two halves when the
    classifier has batch norm). Without the regularisers the first term is CE(real) alone.
    """
    if (omega1_c is None) != (omega2 is None):
        raise ValueError("pass both classifier regularisers (omega1_c, omega2) or neither")
    real = F.cross_entropy(real_logits.float(), real_labels)
    if omega1_c is not None:
        real = real + alpha_c * omega1_c + beta_c * omega2
    fake = F.cross_entropy(fake_logits.float(), fake_labels)
    merged = F.cross_entropy(merged_logits.float(), merged_labels)
    return {"loss": (real + fake + merged) / 3.0, "real": real, "fake": fake, "merged": merged}
