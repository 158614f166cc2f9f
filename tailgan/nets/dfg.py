"""DFG's networks (spec 5.2-5.3): source backbones cut into extractor + classifier, feature generator, critic.

DFG (Suh et al., "Discriminative Feature Generation for Classification of Imbalanced Data") works in
*feature space*: a source network is cut after its first block into a feature **extractor** and the
**classifier** (the rest), and a conditional WGAN-GP generator makes extractor-shaped feature maps.

=========  ===========  ===================================  =====================================
backbone   input        extractor -> features                classifier
=========  ===========  ===================================  =====================================
lenet5     1 x 32 x 32  conv1 6@5x5, ReLU, maxpool -> 6x14x14  conv2 16@5x5, ReLU, maxpool, FC 400-1024-128-C
vgg16      3 x 32 x 32  ``features[:5]`` -> 64 x 16 x 16       ``features[5:]``, avgpool 7x7, FC 25088-4096-512-C
resnet50   3 x 224^2    conv1..layer1 -> 256 x 56 x 56         layer2..layer4, avgpool 1x1, FC 2048-C
=========  ===========  ===================================  =====================================

Feature size rule (``feature_shape``): LeNet-5 (H - 4) / 2 (it needs 32 x 32 for its 400-wide FC),
VGG-16 H / 2, ResNet-50 ceil(ceil(H / 2) / 2) (so 224 -> 56, 32 -> 8); VGG and ResNet run at any size.

The VGG-16 and ResNet-50 bodies are torchvision's (no weights are downloaded); ``weights_path`` loads a
local file in torchvision's layout (or, for LeNet-5, this module's ``DFGLeNet5`` layout).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn

from tailgan.errors import TailganError
from tailgan.io import load_checkpoint

BACKBONES = ("lenet5", "vgg16", "resnet50")
OUT_ACTS = ("relu", "tanh_bn", "tanh", "none")

# native input side, feature channels and default noise width of each backbone (spec 5.2, 5.3)
NATIVE_SIZE = {"lenet5": 32, "vgg16": 32, "resnet50": 224}
FEATURE_CHANNELS = {"lenet5": 6, "vgg16": 64, "resnet50": 256}
NOISE_DIM = {"lenet5": 100, "vgg16": 100, "resnet50": 4900}


def _check_backbone(backbone: str) -> None:
    if backbone not in BACKBONES:
        raise TailganError(f"unknown DFG backbone {backbone!r}; choose one of {', '.join(BACKBONES)}")


def feature_shape(backbone: str, image_size: int | None = None) -> tuple[int, int, int]:
    """(C, H, W) of the extractor output for square inputs of side ``image_size`` (default: native)."""
    _check_backbone(backbone)
    s = NATIVE_SIZE[backbone] if image_size is None else image_size
    if backbone == "lenet5":
        side = (s - 4) // 2  # conv 5x5 without padding, then maxpool 2
    elif backbone == "vgg16":
        side = s // 2  # two padded 3x3 convs, then maxpool 2
    else:
        side = math.ceil(math.ceil(s / 2) / 2)  # conv1 7x7 s2 p3, then maxpool 3x3 s2 p1; layer1 keeps it
    return (FEATURE_CHANNELS[backbone], side, side)


# -- the source networks --------------------------------------------------------------------------------


class DFGLeNet5(nn.Module):
    """DFG's LeNet-5: conv 6@5x5, ReLU, maxpool 2, conv 16@5x5, ReLU, maxpool 2, FC 400-1024-128-C.

    Wider than the classic 120-84 head (``tailgan.nets.classifiers.LeNet5``); takes 32 x 32 inputs.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2, 2),
        )
        self.classifier = nn.Sequential(
            nn.Linear(16 * 5 * 5, 1024),
            nn.ReLU(inplace=True),
            nn.Linear(1024, 128),
            nn.ReLU(inplace=True),
            nn.Linear(128, num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.features(x), 1))


class DFGVGG16(nn.Module):
    """DFG's VGG-16: torchvision's 13-conv body, a 7 x 7 average pool and DFG's head FC 25088-4096-512-C.

    Parameter names follow torchvision's ``VGG`` (``features.*``, ``classifier.*``), so a torchvision
    weights file loads its body. ``head`` sets the two hidden widths (DFG: 4096, 512).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, head: tuple[int, int] = (4096, 512)) -> None:
        super().__init__()
        self.features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs["D"])
        if in_channels != 3:
            self.features[0] = nn.Conv2d(in_channels, 64, kernel_size=3, padding=1)
        for m in self.features.modules():  # torchvision's VGG initialisation of the body
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        # DFG replaces torchvision's head after construction, so it keeps PyTorch's default init
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, head[0]),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(head[0], head[1]),
            nn.ReLU(inplace=True),
            nn.Dropout(),
            nn.Linear(head[1], num_classes),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def _resnet50(num_classes: int, in_channels: int) -> nn.Module:
    net = torchvision.models.resnet50(weights=None, num_classes=num_classes)
    if in_channels != 3:
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
    return net


class FeatureClassifier(nn.Module):
    """The part of a source network after the split: ``head(flatten(pool(features(f))))``."""

    def __init__(self, features: nn.Module, pool: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.features = features
        self.pool = pool
        self.head = head

    def forward(self, f: Tensor) -> Tensor:
        return self.head(torch.flatten(self.pool(self.features(f)), 1))


@dataclass
class SplitNet:
    """A source network and its two halves (which share its parameters).

    ``extractor_layer`` is the extractor conv whose filters channel evaluation ablates (its output channels
    are the feature channels); ``classifier_layers`` are the classifier layers hooked by Omega_1 and
    weighted by the classifier channel evaluation; ``fc_layer`` is the last linear layer (Omega_2). All are
    module names inside ``extractor`` / ``classifier``. ``fresh_keys`` lists the parameters of ``network``
    that ``weights_path`` did not provide (a head sized for other classes), which keep their initialisation.
    """

    backbone: str
    network: nn.Module
    extractor: nn.Module
    classifier: FeatureClassifier
    extractor_layer: str
    classifier_layers: tuple[str, ...]
    fc_layer: str
    fresh_keys: tuple[str, ...] = field(default=())

    @property
    def feature_channels(self) -> int:
        return FEATURE_CHANNELS[self.backbone]

    def copy(self, frozen: bool = False) -> SplitNet:
        """A deep copy (its halves still share the copy's parameters); ``frozen``: eval mode, no gradients."""
        out = copy.deepcopy(self)
        if frozen:
            out.network.eval().requires_grad_(False)
        return out

    def fc(self) -> nn.Module:
        """The classifier's last linear layer (the one Omega_2 penalises)."""
        return self.classifier.get_submodule(self.fc_layer)


def split_network(backbone: str, network: nn.Module) -> SplitNet:
    """Cut ``network`` (a ``DFGLeNet5``, ``DFGVGG16`` or torchvision ResNet-50) at DFG's split point."""
    _check_backbone(backbone)
    if backbone == "lenet5":
        extractor = nn.Sequential(*network.features[:3])
        classifier = FeatureClassifier(nn.Sequential(*network.features[3:]), nn.Identity(), network.classifier)
        return SplitNet(backbone, network, extractor, classifier, "0", ("features.0",), "head.4")
    if backbone == "vgg16":
        extractor = nn.Sequential(*network.features[:5])
        # features[5:][23] is conv5_3, the layer DFG hooks (its 'feature.23')
        classifier = FeatureClassifier(nn.Sequential(*network.features[5:]), network.avgpool, network.classifier)
        return SplitNet(backbone, network, extractor, classifier, "2", ("features.23",), "head.6")
    n = network
    extractor = nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool, n.layer1)
    classifier = FeatureClassifier(nn.Sequential(n.layer2, n.layer3, n.layer4), n.avgpool, n.fc)
    # the last conv3 of layer1 (extractor) and of layer2..layer4 (classifier), as DFG and DELTA hook them
    hooks = ("features.0.3.conv3", "features.1.5.conv3", "features.2.2.conv3")
    return SplitNet(backbone, network, extractor, classifier, "4.2.conv3", hooks, "head")


_HEAD_PREFIX = {"lenet5": "classifier.", "vgg16": "classifier.", "resnet50": "fc."}


def load_source_weights(network: nn.Module, path: str | Path, head_prefix: str) -> tuple[str, ...]:
    """Load a local weights file into ``network``; return the head keys left at their initialisation.

    The file holds a state dict (or ``{"state_dict": ...}``) in the network's layout; it is read with
    ``weights_only=True``. Body parameters must all be present with the right shapes. Head parameters
    (names starting with ``head_prefix``) load when their shapes match and otherwise stay new, as DFG
    does with an ImageNet source: a 1000-class head cannot serve 10 classes.
    """
    state = load_checkpoint(path)
    if isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    own = network.state_dict()
    body_extra = [k for k in state if k not in own and not k.startswith(head_prefix)]
    if body_extra:
        raise TailganError(
            f"weights file {path} has parameter {body_extra[0]!r}, which this network does not; "
            f"is it a file for another backbone?"
        )
    load, fresh = {}, []
    for key, value in own.items():
        theirs = state.get(key)
        if theirs is not None and tuple(theirs.shape) == tuple(value.shape):
            load[key] = theirs
        elif key.startswith(head_prefix):
            fresh.append(key)
        elif theirs is None:
            raise TailganError(f"weights file {path} has no parameter {key!r}; is it a file for this backbone?")
        else:
            raise TailganError(
                f"weights file {path}: {key!r} has shape {tuple(theirs.shape)}, the network needs "
                f"{tuple(value.shape)}; check in_channels (a torchvision file needs in_channels=3)"
            )
    network.load_state_dict(load, strict=False)
    return tuple(fresh)


def build_source(
    backbone: str,
    num_classes: int = 10,
    in_channels: int | None = None,
    weights_path: str | Path | None = None,
    vgg_head: tuple[int, int] = (4096, 512),
) -> SplitNet:
    """A DFG source network, split into extractor and classifier (spec 5.2).

    Args:
        backbone: ``lenet5``, ``vgg16`` or ``resnet50``.
        num_classes: width of the last layer.
        in_channels: image channels (default 1 for LeNet-5, 3 otherwise).
        weights_path: optional local weights file (torchvision layout for VGG/ResNet); see
            ``load_source_weights``. Nothing is downloaded.
        vgg_head: the two hidden widths of DFG's VGG head.
    """
    _check_backbone(backbone)
    if in_channels is None:
        in_channels = 1 if backbone == "lenet5" else 3
    if backbone == "lenet5":
        net: nn.Module = DFGLeNet5(num_classes, in_channels)
    elif backbone == "vgg16":
        net = DFGVGG16(num_classes, in_channels, vgg_head)
    else:
        net = _resnet50(num_classes, in_channels)
    fresh: tuple[str, ...] = ()
    if weights_path is not None:
        fresh = load_source_weights(net, weights_path, _HEAD_PREFIX[backbone])
    split = split_network(backbone, net)
    split.fresh_keys = fresh
    return split


# -- generator and critic on feature maps ---------------------------------------------------------------

# (in, out, kernel, stride, padding) of every ConvTranspose2d, the last one closing the stack (spec 5.3)
_G_LAYERS = {
    "lenet5": (128, [(128, 48, 3, 2, 0), (48, 12, 3, 1, 0), (12, 6, 4, 1, 0)]),
    "vgg16": (128, [(128, 128, 4, 2, 1), (128, 128, 4, 2, 1), (128, 64, 4, 1, 1), (64, 64, 4, 1, 2)]),
    "resnet50": (512, [(512, 512, 4, 2, 1), (512, 256, 4, 2, 1), (256, 256, 2, 2, 1), (256, 256, 2, 2, 2)]),
}


class FeatureGenerator(nn.Module):
    """DFG's conditional generator of extractor-shaped feature maps, gated per class (spec 5.3).

    Input: noise u ~ U(-1, 1)^noise_dim concatenated with the one-hot label. Dense + BatchNorm1d to a
    4 x 4 map, transposed convs (bias-free) with BatchNorm2d + LeakyReLU between them, then the output
    activation; finally channel c of a sample of class y is multiplied by ``attention[y, c]``.

    The attention (classes x feature channels) is a buffer, so it is saved in checkpoints with the weights;
    it starts at all ones (no gating) and the recipe sets it with ``set_attention``.

    Options for the original's quirks (spec 5.10):
        act_slope: negative slope of the LeakyReLUs. DFG writes ``nn.LeakyReLU(True)``, i.e. slope 1.0, an
            identity, which leaves G linear apart from its norms and output; 1.0 reproduces that, the
            default 0.2 is the usual LeakyReLU.
        out_act: ``tanh_bn`` is DFG's Tanh followed by BatchNorm2d (so outputs are not bounded after all);
            the default ``relu`` matches the support of the real features, which all three extractors end
            with a ReLU (and max pool) and are therefore >= 0; ``tanh`` and ``none`` are also offered.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        noise_dim: int | None = None,
        act_slope: float = 0.2,
        out_act: Literal["relu", "tanh_bn", "tanh", "none"] = "relu",
    ) -> None:
        super().__init__()
        _check_backbone(backbone)
        if out_act not in OUT_ACTS:
            raise TailganError(f"unknown generator output {out_act!r}; choose one of {', '.join(OUT_ACTS)}")
        self.backbone = backbone
        self.num_classes = num_classes
        self.noise_dim = NOISE_DIM[backbone] if noise_dim is None else noise_dim
        base, layers = _G_LAYERS[backbone]
        self.base = base
        self.dense = nn.Sequential(
            nn.Linear(self.noise_dim + num_classes, base * 4 * 4), nn.BatchNorm1d(base * 4 * 4)
        )
        body: list[nn.Module] = []
        for c_in, c_out, k, s, p in layers[:-1]:
            body += [
                nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, bias=False),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(act_slope),
            ]
        c_in, c_out, k, s, p = layers[-1]
        body.append(nn.ConvTranspose2d(c_in, c_out, k, stride=s, padding=p, bias=False))
        if out_act == "tanh_bn":
            body += [nn.Tanh(), nn.BatchNorm2d(c_out)]
        elif out_act == "tanh":
            body.append(nn.Tanh())
        elif out_act == "relu":
            body.append(nn.ReLU())
        self.body = nn.Sequential(*body)
        self.register_buffer("attention", torch.ones(num_classes, c_out))

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        return feature_shape(self.backbone)

    def set_attention(self, attention: Tensor) -> None:
        """Replace the class x channel gate (shape (num_classes, feature channels))."""
        if tuple(attention.shape) != tuple(self.attention.shape):
            raise ValueError(f"attention must have shape {tuple(self.attention.shape)}, got {tuple(attention.shape)}")
        self.attention.copy_(attention.detach())

    def sample_latent(
        self, batch: int, generator: torch.Generator | None = None, device: torch.device | str | None = None
    ) -> tuple[Tensor, Tensor]:
        """DFG's ``z_sampler``: noise u ~ U(-1, 1)^(batch, noise_dim) and labels uniform over the classes."""
        device = self.attention.device if device is None else device
        z = torch.rand(batch, self.noise_dim, generator=generator, device=device) * 2 - 1
        y = torch.randint(0, self.num_classes, (batch,), generator=generator, device=device)
        return z, y

    def forward(self, z: Tensor, labels: Tensor, attention: Tensor | None = None) -> Tensor:
        """Feature maps (B, C, H, W) for noise ``z`` (B, noise_dim) and ``labels`` (B,), gated by ``attention``
        (default: the stored buffer)."""
        x = torch.cat([z, F.one_hot(labels, self.num_classes).to(z.dtype)], dim=1)
        h = self.dense(x).view(z.shape[0], self.base, 4, 4)
        gate = (self.attention if attention is None else attention)[labels]
        return self.body(h) * gate[:, :, None, None]


class FeatureCritic(nn.Module):
    """DFG's WGAN-GP critic on feature maps (spec 5.3): three bias-free 5x5 stride-2 convs (32, 64, 128),
    LeakyReLU, no normalisation, then Linear -> one score per sample, shape (B,).

    The Linear width follows from ``feature_shape`` (each conv maps a side s to ceil(s / 2): 14 -> 2 for
    LeNet-5, 16 -> 2 for VGG-16, 56 -> 7 for ResNet-50, as in DFG). ``act_slope``: see ``FeatureGenerator``
    (1.0 reproduces DFG's ``LeakyReLU(True)``, which makes the critic affine).
    """

    def __init__(self, feature_shape: tuple[int, int, int], act_slope: float = 0.2) -> None:
        super().__init__()
        c, h, w = feature_shape
        layers: list[nn.Module] = []
        for c_out in (32, 64, 128):
            layers += [nn.Conv2d(c, c_out, 5, stride=2, padding=2, bias=False), nn.LeakyReLU(act_slope)]
            c, h, w = c_out, math.ceil(h / 2), math.ceil(w / 2)
        self.conv = nn.Sequential(*layers)
        self.dense = nn.Linear(c * h * w, 1)

    def forward(self, f: Tensor) -> Tensor:
        return self.dense(torch.flatten(self.conv(f), 1)).squeeze(1)
