"""Building blocks shared by the GAN architectures: discriminator heads, conditional batch norm,
self-attention, and the orthogonal-init / spectral-norm helpers of the BigGAN family."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import spectral_norm

HEADS = ("uncond", "projection", "acgan", "proxy")


class DiscriminatorHead(nn.Module):
    """The output layers of a discriminator, on top of pooled trunk features h (B, F).

    ``forward(h, labels)`` returns a dict with ``"adv"`` (B,), the raw adversarial logit
    ``linear(h)``, plus, depending on ``head``:

    * ``"uncond"``: nothing else; the label is not used.
    * ``"projection"``: the projection-discriminator (cGAN) term <emb(y), h> is added into ``"adv"``.
    * ``"acgan"``: ``"cls_logits"`` (B, num_cls_outputs) from a linear classifier on h; use
      ``num_cls_outputs = K + 1`` for BAGAN-style heads whose last class means "fake".
    * ``"proxy"``: ``"embed"`` = normalize(Linear(h -> embed_dim)) and ``"proxy"`` =
      normalize(Embedding(K, embed_dim)[y]), the inputs of the 2C / D2D-CE / ECO losses. The label
      never enters ``"adv"`` (ECOGAN's and StudioGAN's 2C discriminators).

    Layers use PyTorch's default initialisation; architectures that want another one (BigGAN:
    orthogonal + spectral norm) apply it to the whole discriminator.
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        head: str = "proxy",
        embed_dim: int = 512,
        num_cls_outputs: int | None = None,
    ) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if num_cls_outputs is not None and head != "acgan":
            raise ValueError(f"num_cls_outputs is only used by the 'acgan' head, not by head={head!r}")
        self.head = head
        self.num_classes = num_classes
        self.linear_adv = nn.Linear(in_features, 1)
        if head == "projection":
            self.class_embedding = nn.Embedding(num_classes, in_features)
        elif head == "acgan":
            num_cls_outputs = num_classes if num_cls_outputs is None else num_cls_outputs
            if num_cls_outputs < 1:
                raise ValueError(f"num_cls_outputs must be >= 1, got {num_cls_outputs}")
            self.num_cls_outputs = num_cls_outputs
            self.linear_cls = nn.Linear(in_features, num_cls_outputs)
        elif head == "proxy":
            if embed_dim < 1:
                raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
            self.linear_embed = nn.Linear(in_features, embed_dim)
            self.proxy_embedding = nn.Embedding(num_classes, embed_dim)

    def forward(self, h: Tensor, labels: Tensor | None = None) -> dict[str, Tensor]:
        out = {"adv": self.linear_adv(h).squeeze(1)}
        if self.head in ("projection", "proxy") and labels is None:
            raise ValueError(f"the {self.head!r} head needs labels; pass the class labels (B,)")
        if self.head == "projection":
            out["adv"] = out["adv"] + (self.class_embedding(labels) * h).sum(dim=1)
        elif self.head == "acgan":
            out["cls_logits"] = self.linear_cls(h)
        elif self.head == "proxy":
            out["embed"] = F.normalize(self.linear_embed(h), dim=1)
            out["proxy"] = F.normalize(self.proxy_embedding(labels), dim=1)
        return out


class ConditionalBatchNorm2d(nn.Module):
    """BigGAN's conditional batch norm: BN(x) * (1 + W_g c) + W_b c.

    BN has no affine parameters (eps 1e-4, momentum 0.1 as in StudioGAN); the per-sample gain and bias
    come from two bias-free linear maps of the conditioning vector c (shared class embedding
    concatenated with a latent chunk).
    """

    def __init__(self, num_features: int, cond_dim: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_features, eps=1e-4, momentum=0.1, affine=False)
        self.gain = nn.Linear(cond_dim, num_features, bias=False)
        self.bias = nn.Linear(cond_dim, num_features, bias=False)

    def forward(self, x: Tensor, cond: Tensor) -> Tensor:
        gain = 1.0 + self.gain(cond)
        bias = self.bias(cond)
        return self.bn(x) * gain[:, :, None, None] + bias[:, :, None, None]


class SelfAttention(nn.Module):
    """SAGAN self-attention as in BigGAN/StudioGAN: x + sigma * attention(x), sigma starting at 0.

    Keys and values are max-pooled 2x (so H and W must be even); query/key width C/8, value width C/2.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        if channels % 8 != 0:
            raise ValueError(
                f"self-attention needs channels divisible by 8, got {channels}; change the width"
            )
        self.theta = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.phi = nn.Conv2d(channels, channels // 8, 1, bias=False)
        self.g = nn.Conv2d(channels, channels // 2, 1, bias=False)
        self.out = nn.Conv2d(channels // 2, channels, 1, bias=False)
        self.sigma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        theta = self.theta(x).view(b, c // 8, h * w)
        phi = F.max_pool2d(self.phi(x), 2).view(b, c // 8, h * w // 4)
        attn = torch.softmax(theta.transpose(1, 2) @ phi, dim=-1)  # (b, hw, hw/4)
        g = F.max_pool2d(self.g(x), 2).view(b, c // 2, h * w // 4)
        attn_g = (g @ attn.transpose(1, 2)).view(b, c // 2, h, w)
        return x + self.sigma * self.out(attn_g)


def orthogonal_init_(model: nn.Module) -> None:
    """Orthogonal weights and zero biases for every conv, linear and embedding layer (StudioGAN "ortho").

    Call it before :func:`spectral_norm_` so the spectral-norm power iteration starts from the final
    weights.
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.orthogonal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


def spectral_norm_(model: nn.Module, layer_types: tuple[type[nn.Module], ...], eps: float = 1e-6) -> None:
    """Put spectral normalisation (one power iteration per training forward) on every layer of the types.

    Uses ``torch.nn.utils.parametrizations.spectral_norm``: deterministic given the seed, safe under
    ``copy.deepcopy`` (EMA copies) and a plain ``state_dict`` round trip. eps 1e-6 as in StudioGAN.
    """
    for m in list(model.modules()):
        if isinstance(m, layer_types):
            spectral_norm(m, eps=eps)
