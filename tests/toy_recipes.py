"""Toy recipes that exercise the engine's contract: many networks, class-restricted streams, phases,
per-network optimizers, image translation and feature outputs. Registered by the tests that use them."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from tailgan.methods.base import Method, OptimizerConfig, make_optimizer
from tailgan.methods.spec import OutputSpec, Phase, StreamSpec

CRASH_AT: dict[str, int] = {}  # phase -> step at which a step raises (a simulated kill)


def _crash(phase: str, step: int) -> None:
    if CRASH_AT.get(phase) == step:
        raise KeyboardInterrupt(f"simulated crash at {phase} step {step}")


class TinyTranslator(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, c, 3, padding=1), nn.Tanh())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class TinyCritic(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, 4, 4, stride=4), nn.LeakyReLU(0.2), nn.Flatten(), nn.LazyLinear(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).squeeze(1)


@dataclass
class ToyTranslateOptions:
    class_a: int = 0
    class_b: int = 1
    translate_steps: int = 3
    g_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 1e-3, (0.5, 0.999)))
    d_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 1e-3, (0.5, 0.999)))
    cls_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("sgd", 0.05, momentum=0.9))


class ToyTranslate(Method):
    """G_AB, G_BA, D_A, D_B translate class a <-> class b (phase ``translate``), then a classifier C trains on
    real and translated images (phase ``classifier``, the main one: ``--steps`` sets its length)."""

    name = "toy-translate"
    Options = ToyTranslateOptions

    def build(self) -> None:
        c, o = self.img_channels, self.options
        for name in ("G_AB", "G_BA"):
            self.nets[name] = TinyTranslator(c)
        for name in ("D_A", "D_B"):
            self.nets[name] = TinyCritic(c)
            self.nets[name](torch.zeros(1, c, self.img_size, self.img_size))  # materialise the lazy layer
        self.nets["C"] = nn.Sequential(nn.Flatten(), nn.Linear(c * self.img_size**2, 2))
        gen_params = [*self.nets["G_AB"].parameters(), *self.nets["G_BA"].parameters()]
        self.optimizers["G"] = make_optimizer(gen_params, o.g_optim)
        critic_params = [*self.nets["D_A"].parameters(), *self.nets["D_B"].parameters()]
        self.optimizers["D"] = make_optimizer(critic_params, o.d_optim)
        self.optimizers["C"] = make_optimizer(self.nets["C"].parameters(), o.cls_optim)

    def streams(self) -> dict[str, StreamSpec]:
        o = self.options
        return {
            "domain_a": StreamSpec(classes=(o.class_a,)),
            "domain_b": StreamSpec(classes=(o.class_b,), balanced=True, seed_offset=1),
        }

    def phases(self) -> list[Phase]:
        return [
            Phase("translate", self.options.translate_steps, self.translate_step),
            Phase("classifier", self.cfg.steps, self.classifier_step, main=True),
        ]

    @property
    def output(self) -> OutputSpec:
        return OutputSpec("image", (self.img_channels, self.img_size, self.img_size), translates=True)

    def translate_step(self, batches, step: int) -> dict[str, torch.Tensor]:
        _crash("translate", step)
        (a, _), (b, _) = batches.next("domain_a"), batches.next("domain_b")
        n = self.nets
        fake_b, fake_a = n["G_AB"](a), n["G_BA"](b)
        d_loss = (
            (n["D_B"](b) - 1).pow(2).mean() + n["D_B"](fake_b.detach()).pow(2).mean()
            + (n["D_A"](a) - 1).pow(2).mean() + n["D_A"](fake_a.detach()).pow(2).mean()
        ) / 2  # fmt: skip
        self.update("D", d_loss, ["D_A", "D_B"])
        g_loss = (n["D_B"](fake_b) - 1).pow(2).mean() + (n["D_A"](fake_a) - 1).pow(2).mean()
        g_loss = g_loss + 10 * (F.l1_loss(n["G_BA"](fake_b), a) + F.l1_loss(n["G_AB"](fake_a), b))
        self.update("G", g_loss, ["G_AB", "G_BA"])
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}

    def classifier_step(self, batches, step: int) -> dict[str, torch.Tensor]:
        _crash("classifier", step)
        (a, _), (b, _) = batches.next("domain_a"), batches.next("domain_b")
        with torch.no_grad():
            x = torch.cat([a, b, self.nets["G_AB"](a), self.nets["G_BA"](b)])
        y = torch.cat([torch.zeros(len(a)), torch.ones(len(b)), torch.ones(len(a)), torch.zeros(len(b))]).long()
        loss = F.cross_entropy(self.nets["C"](x), y.to(self.device))
        self.update("C", loss, ["C"])
        return {"cls_loss": loss.detach()}

    @torch.no_grad()
    def sample(self, labels, generator=None, source=None) -> torch.Tensor:
        """``source`` images translated to class ``labels`` (b: through G_AB, a: through G_BA)."""
        to_b = (labels.to(self.device) == self.options.class_b)[:, None, None, None]
        return torch.where(to_b, self.nets["G_AB"](source), self.nets["G_BA"](source)).float()

    @torch.no_grad()
    def sample_grid(self, num_classes: int, per_class: int, seed: int):
        return None


class FeatureGenerator(nn.Module):
    def __init__(self, num_classes: int, z_dim: int = 8) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.embed = nn.Embedding(num_classes, z_dim)
        self.fc = nn.Linear(z_dim, 6 * 14 * 14)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(z * self.embed(y))).view(-1, 6, 14, 14)


class ToyFeature(Method):
    """A generator of 6x14x14 feature maps (the shape of LeNet-5's conv1 output) against a critic on the
    features a fixed extractor computes from real images."""

    name = "toy-feature"

    def build(self) -> None:
        self.extractor = nn.Sequential(nn.Conv2d(self.img_channels, 6, 5), nn.ReLU(), nn.MaxPool2d(2)).to(self.device)
        self.extractor.requires_grad_(False)
        self.nets["G"] = FeatureGenerator(self.num_classes)
        self.nets["D"] = nn.Sequential(nn.Flatten(), nn.Linear(6 * 14 * 14, 1))
        self.optimizers["G"] = self.make_adam(self.nets["G"].parameters(), 1e-3, (0.5, 0.9))
        self.optimizers["D"] = self.make_adam(self.nets["D"].parameters(), 1e-3, (0.5, 0.9))

    @property
    def output(self) -> OutputSpec:
        return OutputSpec("feature", (6, 14, 14))

    def train_step(self, batches, step: int) -> dict[str, torch.Tensor]:
        x, y = batches.next("real")
        G, D = self.nets["G"], self.nets["D"]
        real = self.extractor(x)
        fake = G(self.noise(len(y), G.z_dim), y)
        d_loss = F.softplus(-D(real)).mean() + F.softplus(D(fake.detach())).mean()
        self.update("D", d_loss, ["D"])
        g_loss = F.softplus(-D(fake)).mean()
        self.update("G", g_loss, ["G"])
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}
