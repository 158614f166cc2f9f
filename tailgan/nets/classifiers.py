"""Image classifiers for the long-tailed benchmarks: LeNet-5, CIFAR ResNet-32 and a small-image ResNet-18.

Every network takes float images in [-1, 1] of shape (N, C, H, W) with C = 1 or 3 and returns logits
(N, num_classes). Each one names its last linear layer ``fc`` so a loss can re-initialise its bias
(class-balanced sigmoid/focal losses start it at -log(C - 1)) or swap it for a cosine layer (LDAM).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from tailgan.registry import Registry

# classifier architectures: name -> builder(num_classes, in_channels) (tailgan.registry's one style)
ARCHITECTURES: Registry = Registry("classifier")


@ARCHITECTURES.register("lenet5")
class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al. 1998) with ReLU and max pooling, for 32 x 32 inputs.

    LeNet-5 is defined on 32 x 32 images (the paper pads 28 x 28 digits to 32 x 32); inputs of any
    other size are resized to 32 x 32 bilinearly inside ``forward`` so the same network serves
    28 x 28 Fashion-MNIST and 8 x 8 scikit-learn digits.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),  # 32 -> 28
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # -> 14
            nn.Conv2d(6, 16, kernel_size=5),  # -> 10
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),  # -> 5
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 5 * 5, 120),
            nn.ReLU(inplace=True),
            nn.Linear(120, 84),
            nn.ReLU(inplace=True),
        )
        self.fc = nn.Linear(84, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (32, 32):
            x = F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)
        return self.fc(self.head(self.features(x)))


class _CifarBlock(nn.Module):
    """Basic residual block of the CIFAR ResNets (He et al. 2016, section 4.2).

    The shortcut of a down-sampling block is "option A": take every second pixel and zero-pad the
    new channels, so the shortcut has no parameters (as in the paper's CIFAR experiments).
    """

    def __init__(self, in_planes: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.pad = planes - in_planes

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1 and self.pad == 0:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, self.pad // 2, self.pad - self.pad // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: 3 stages of n blocks with 16, 32, 64 channels (He et al. 2016).

    ``depth=32`` is the ResNet-32 used by the class-balanced loss and LDAM-DRW papers on CIFAR-LT.
    Global average pooling makes it work for any input size >= 8 x 8.
    """

    def __init__(self, depth: int = 32, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 44, 56, 110), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        layers, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(n):
                layers.append(_CifarBlock(in_planes, planes, stride if i == 0 else 1))
                in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


@ARCHITECTURES.register("resnet32")
def resnet32(num_classes: int = 10, in_channels: int = 3) -> CifarResNet:
    """The CIFAR ResNet-32 (0.46 M parameters)."""
    return CifarResNet(32, num_classes, in_channels)


@ARCHITECTURES.register("resnet18")
def resnet18(num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """torchvision's ResNet-18 adapted to small images (the usual CIFAR adaptation).

    The 7 x 7 stride-2 stem and the max pool would shrink a 32 x 32 image to 8 x 8 before the first
    block; they are replaced by a 3 x 3 stride-1 convolution and no pooling.
    """
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    model.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


class NormedLinear(nn.Module):
    """Cosine classifier: logits are cosines between the normalised feature and normalised class weights.

    Used with the LDAM loss (Cao et al. 2019), whose margins are defined on normalised logits; the
    loss multiplies them by a scale s (30 in the paper).
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        nn.init.uniform_(self.weight, -1.0, 1.0)
        # LDAM's initialisation: unit-norm columns
        with torch.no_grad():
            self.weight.div_(self.weight.norm(dim=0, keepdim=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)


def build_classifier(
    name: str, num_classes: int, in_channels: int, *, cosine_head: bool = False
) -> nn.Module:
    """Build classifier ``name`` (one of CLASSIFIERS) for ``in_channels``-channel images.

    ``cosine_head=True`` replaces the final linear layer with a NormedLinear (for LDAM).
    """
    if in_channels not in (1, 3):
        raise ValueError(f"in_channels={in_channels} is not supported; use 1 (grayscale) or 3 (RGB)")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes}: a classifier needs at least 2 classes")
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown classifier {name!r}; use one of {', '.join(CLASSIFIERS)}")
    model: nn.Module = ARCHITECTURES.get(name)(num_classes, in_channels)
    if cosine_head:
        model.fc = NormedLinear(model.fc.in_features, num_classes)
    return model


def init_prior_bias(fc: nn.Linear, num_classes: int) -> None:
    """Start the output bias at -log(C - 1), i.e. every sigmoid output at the prior 1/C.

    The class-balanced paper does this for its sigmoid and focal losses, so that the C - 1 negative
    logits do not dominate the first steps.
    """
    if not isinstance(fc, nn.Linear) or fc.bias is None:
        raise ValueError("init_prior_bias needs an nn.Linear with a bias")
    with torch.no_grad():
        fc.bias.fill_(-math.log(num_classes - 1))


CLASSIFIERS = ARCHITECTURES.names()
