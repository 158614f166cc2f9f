"""What every recipe shares: its networks, optimizers, EMA, gradient sync, sampling and checkpoints.

A method owns any number of networks (``self.nets``) and optimizers (``self.optimizers``), declares its
streams, phases and output (``tailgan.methods.spec``) and defines the step of each phase; for a GAN the
one phase ``gan`` runs ``train_step``: one generator update with the discriminator updates before it, the
skeleton of :class:`AdversarialMethod`, whose recipes supply only their D and G losses.
The engine (``tailgan.engine.Trainer``) only calls the declared step functions, ``sample`` and the
checkpoint hooks, so a recipe with two networks (a GAN) or four (a CycleGAN trained with a classifier)
runs in the same loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
import torch.distributed as dist
from torch import nn

from tailgan.config import from_dict
from tailgan.errors import TailganError
from tailgan.losses import gradient_penalty
from tailgan.methods.spec import DataShape, OutputSpec, Phase, RunContext, StreamSpec, due
from tailgan.nets.precision import COMPILE_MIN_STEPS, compile_decision

Batch = tuple[torch.Tensor, torch.Tensor]  # real images in [-1, 1] and their labels


class Batches(Protocol):
    """The named streams a step receives: ``batches.next("real") -> (images, labels)``."""

    def next(self, name: str = "real") -> Batch: ...


@dataclass
class OptimizerConfig:
    """One optimizer's settings, a typed section of a recipe's options (e.g. a classifier's SGD beside Adam)."""

    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-8
    momentum: float = 0.9  # sgd
    nesterov: bool = False  # sgd
    weight_decay: float = 0.0


def make_optimizer(params, cfg: OptimizerConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg`` names over ``params``."""
    if not cfg.lr > 0:
        raise TailganError(f"optimizer lr must be > 0, got {cfg.lr}")
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov, weight_decay=cfg.weight_decay
        )
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps, weight_decay=cfg.weight_decay)


class Method:
    """Base class of recipes. Subclasses set ``nets``/``optimizers`` in ``build`` and define ``train_step``
    (or declare other ``phases``)."""

    name = "method"
    Options: type | None = None  # a dataclass of method-specific options (the config's ``options`` section)

    def __init__(self, cfg: Any, shape: DataShape, ctx: RunContext | None = None) -> None:
        self.cfg, self.shape = cfg, shape
        self.ctx = ctx or RunContext()
        self.num_classes, self.img_channels, self.img_size = shape.num_classes, shape.img_channels, shape.img_size
        self.device, self.rank, self.world_size = torch.device(self.ctx.device), self.ctx.rank, self.ctx.world_size
        self.options = from_dict(self.Options, cfg.options, prefix="options.") if self.Options else None
        # noise, labels and GP factors come from this generator, so a resumed run draws the same numbers;
        # each rank gets its own stream
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 17 + self.rank)
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.ema: dict[str, nn.Module] = {}
        self.precision = self.ctx.precision
        self.scaler = torch.amp.GradScaler(self.device.type) if self.precision.needs_scaler else None
        self.build()
        for net in self.nets.values():
            self.precision.module(net.to(self.device))
        for net in self.ema.values():
            self.precision.module(net.to(self.device)).eval().requires_grad_(False)
        self.compiled, self.compile_note = False, None
        setting = getattr(cfg, "compile", "off")
        if self.ctx.run_dir is not None and self.compiled_nets:  # training only: sampling stays eager
            self.compiled, self.compile_note = compile_decision(
                setting, self.compile_pays, self.compile_steps(), self.device,
                f"{self.name}'s {', '.join(self.compiled_nets)}", self.compile_min_steps,
            )  # fmt: skip
            for name in self.compiled_nets if self.compiled else ():
                self.nets[name].compile()  # in place: state_dict keys and checkpoints are unchanged
        elif self.ctx.run_dir is not None and setting == "on":
            self.compile_note = (
                f"compile=on: {self.name} has no network torch.compile can take (a gradient penalty's double "
                "backward, or not measured); training eagerly"
            )

    # -- declared by recipes --------------------------------------------------------------------------------
    # Networks ``torch.compile`` may wrap (``compile=on``; no double backward may run through them, which
    # aot_autograd refuses) and whether ``compile=auto`` does it (measured to pay on the CPU).
    compiled_nets: tuple[str, ...] = ()
    compile_pays: bool = False
    compile_min_steps: int = COMPILE_MIN_STEPS  # ``compile=auto``: runs shorter than this stay eager

    def compile_steps(self) -> int:
        """Updates the compiled networks take part in over the run (``compile=auto`` needs enough of them)."""
        return self.cfg.steps

    def build(self) -> None:
        raise NotImplementedError

    def streams(self) -> dict[str, StreamSpec]:
        """The real-data streams the steps draw from; a GAN has one, ``real``."""
        return {"real": StreamSpec(balanced=self.cfg.sampling == "balanced", flip=self.cfg.flip)}

    def phases(self) -> list[Phase]:
        """The ordered training phases; a GAN has one, ``gan``, of ``steps`` generator updates."""
        return [Phase("gan", self.cfg.steps, self.train_step, main=True)]

    @property
    def output(self) -> OutputSpec:
        """What ``sample`` makes: images of the data's shape, unless a recipe says otherwise."""
        return OutputSpec("image", (self.img_channels, self.img_size, self.img_size))

    def train_step(self, batches: Batches, step: int) -> dict[str, torch.Tensor]:
        """One generator update (and the discriminator updates before it); returns detached losses."""
        raise NotImplementedError

    # -- sampling -----------------------------------------------------------------------------------------------
    def generator_for_sampling(self) -> nn.Module:
        """The network that makes images: the EMA copy of G when there is one."""
        return self.ema.get("G", self.nets["G"])

    def latent(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Noise for ``n`` samples (a noise-driven generator's input)."""
        g = self.generator_for_sampling()
        return torch.randn(n, g.z_dim, generator=generator or self.gen, device=self.device)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, labels: torch.Tensor, source: torch.Tensor | None = None) -> torch.Tensor:
        """Outputs for noise ``z`` and ``labels`` with the sampling network in eval mode (float32)."""
        g = self.generator_for_sampling()
        was_training = g.training
        g.eval()
        x = g(z, labels.to(self.device))
        g.train(was_training)
        return x.float()

    @torch.no_grad()
    def sample(
        self, labels: torch.Tensor, generator: torch.Generator | None = None, source: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Outputs for ``labels`` (images in [-1, 1] for image recipes), no gradient. ``source``: a batch of
        images to translate, for recipes whose output ``translates``."""
        return self.generate(self.latent(len(labels), generator), labels, source)

    @torch.no_grad()
    def sample_grid(self, num_classes: int, per_class: int, seed: int) -> tuple[torch.Tensor, int] | None:
        """(images, images per row) for a progress grid: one row per class, the same noise in every row and
        at every step, so grids are comparable over training. None: the recipe has no image grid."""
        if self.output.kind != "image":
            return None
        gen = torch.Generator(device=self.device).manual_seed(seed + 12345)
        labels = torch.arange(num_classes, device=self.device).repeat_interleave(per_class)
        z = self.latent(per_class, gen)
        z = z.repeat(num_classes, *[1] * (z.dim() - 1))
        return self.generate(z, labels).cpu(), per_class

    # -- shared machinery -----------------------------------------------------------------------------------
    def set_learning_rates(self, changed: dict[str, float]) -> None:
        """Apply ``optim.g_lr`` / ``optim.d_lr`` changed on resume to the G / D optimizers (their loaded
        state holds the old rates)."""
        for key, name in (("optim.g_lr", "G"), ("optim.d_lr", "D")):
            if key in changed and name in self.optimizers:
                for group in self.optimizers[name].param_groups:
                    group["lr"] = changed[key]

    def extra_state(self) -> dict:
        """State beyond networks/optimizers/generator that a resumed run needs (pools, EMAs of losses)."""
        return {}

    def load_extra_state(self, state: dict) -> None:  # noqa: B027 - optional hook
        """Restore what ``extra_state`` saved."""

    def make_adam(self, params, lr: float, betas: tuple[float, float], eps: float = 1e-8) -> torch.optim.Adam:
        # foreach: one multi-tensor kernel per step instead of a Python loop over parameters
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, foreach=True)

    def autocast(self):
        """The run's autocast (bf16 / fp16 forward passes on the fast path; nothing in fp32)."""
        return self.precision.autocast()

    def uniform_labels(self, n: int) -> torch.Tensor:
        """Labels drawn uniformly over every class (the original hard-coded 10 classes; this does not)."""
        return torch.randint(0, self.num_classes, (n,), generator=self.gen, device=self.device)

    def noise(self, n: int, z_dim: int) -> torch.Tensor:
        return torch.randn(n, z_dim, generator=self.gen, device=self.device)

    def update(self, opt_name: str, loss: torch.Tensor, nets: list[str]) -> None:
        """zero_grad, backward, average gradients over ranks, optimizer step."""
        params = [p for n in nets for p in self.nets[n].parameters() if p.requires_grad] if self.world_size > 1 else []
        self.optimizer_step(self.optimizers[opt_name], loss, params)

    def optimizer_step(self, opt: torch.optim.Optimizer, loss: torch.Tensor, sync: list[nn.Parameter] = ()) -> None:
        """zero_grad, backward, average the gradients of ``sync`` over ranks, step (scaled under fp16)."""
        opt.zero_grad(set_to_none=True)
        if self.scaler is not None:  # fp16 on CUDA: scale the loss so small gradients do not underflow
            loss = self.scaler.scale(loss)
        loss.backward()
        if sync:
            self._all_reduce_grads(list(sync))
        if self.scaler is not None:
            self.scaler.step(opt)
            self.scaler.update()
        else:
            opt.step()

    def _all_reduce_grads(self, params: list[nn.Parameter]) -> None:
        # one flat all-reduce: works with any number of forward passes and with double backward (GP),
        # which DistributedDataParallel's hooks do not handle well
        for p in params:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        flat = torch.cat([p.grad.reshape(-1) for p in params])
        dist.all_reduce(flat)
        flat /= self.world_size
        offset = 0
        for p in params:
            n = p.numel()
            p.grad.copy_(flat[offset : offset + n].view_as(p))
            offset += n

    def sync_buffers(self) -> None:
        """Give every rank rank 0's BN statistics (what DDP's broadcast_buffers does)."""
        if self.world_size > 1:
            for net in self.nets.values():
                for b in net.buffers():
                    dist.broadcast(b, 0)

    def add_ema(self, name: str = "G") -> None:
        self.ema[name] = copy.deepcopy(self.nets[name])

    @torch.no_grad()
    def update_ema(self, step: int) -> None:
        """p_ema <- p + decay (p_ema - p); decay 0 (a copy) before ``ema_start`` (StudioGAN's rule)."""
        decay = self.cfg.ema_decay if step >= self.cfg.ema_start else 0.0
        for name, ema in self.ema.items():
            net = self.nets[name]
            for p_ema, p in zip(ema.parameters(), net.parameters()):
                p_ema.copy_(p.detach().lerp(p_ema, decay))
            for (bname, b_ema), b in zip(ema.named_buffers(), net.buffers()):
                if bname.endswith("num_batches_tracked") or not b.dtype.is_floating_point:
                    b_ema.copy_(b)
                else:
                    b_ema.copy_(b.lerp(b_ema, decay))

    # -- checkpoints -------------------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {
            "nets": {k: v.state_dict() for k, v in self.nets.items()},
            "ema": {k: v.state_dict() for k, v in self.ema.items()},
            "optimizers": {k: v.state_dict() for k, v in self.optimizers.items()},
            "gen": self.gen.get_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict, weights_only: bool = False) -> None:
        for k, v in state["nets"].items():
            self.nets[k].load_state_dict(v)
        for k, v in state.get("ema", {}).items():
            self.ema[k].load_state_dict(v)
        if not weights_only:
            for k, v in state["optimizers"].items():
                self.optimizers[k].load_state_dict(v)
            self.gen.set_state(state["gen"])
            self.load_extra_state(state.get("extra", {}))


@dataclass
class DLoss:
    """A recipe's discriminator loss on one D step: the loss (before the skeleton's LeCam and penalty terms), its
    log entries, and D's adversarial outputs on the real and fake batches, LeCam's inputs."""

    loss: torch.Tensor
    logs: dict[str, torch.Tensor]
    real_adv: torch.Tensor | None = None
    fake_adv: torch.Tensor | None = None


class AdversarialMethod(Method):
    """A GAN recipe: one step skeleton, ``optim.d_steps`` D updates and then one G update (StyleGAN2-ADA's
    ``Loss.accumulate_gradients``, one phase after the other).

    The skeleton owns the alternation, autocast, the gradient penalty (``loss.gp_weight``, lazy with
    ``loss.gp_every``, fp32 unless ``loss.gp_autocast``), LeCam and gSR (``lecam_term`` / ``gsr_term``, off
    unless :class:`tailgan.methods.regularized.Regularized` provides them), D's requires_grad toggle, the
    optimizer steps and the ``d_loss`` / ``g_loss`` / ``d_gp`` / ``d_lecam`` / ``g_gsr`` log entries. A recipe
    supplies ``d_loss`` and ``g_loss`` and, where it differs from a conditional GAN's, the real batches
    (``d_batches``), the labels of the fakes (``d_labels``, ``g_labels``) and the penalty's critic.
    Every random draw comes in the order the recipes always made it, so their numbers are unchanged.
    """

    def add_gan_optimizers(self) -> None:
        """Adam for G and D with ``optim``'s rates, betas and eps, and G's EMA copy where ``ema`` is on."""
        o = self.cfg.optim
        self.optimizers["G"] = self.make_adam(self.nets["G"].parameters(), o.g_lr, o.betas, o.eps)
        self.optimizers["D"] = self.make_adam(self.nets["D"].parameters(), o.d_lr, o.betas, o.eps)
        if self.cfg.ema:
            self.add_ema("G")

    # -- supplied by recipes --------------------------------------------------------------------------------
    def d_batches(self, batches: Batches) -> Iterator[Batch]:
        """The real batch of each D step, drawn as the step starts: a fresh one each time."""
        for _ in range(self.cfg.optim.d_steps):
            yield batches.next("real")

    def d_labels(self, real_labels: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The labels a D step draws before its fakes: first the fakes' own (the real batch's with
        ``d_fake_labels: real``, else uniform), then any more the recipe's ``d_loss`` takes."""
        real = self.cfg.d_fake_labels == "real"
        return (real_labels if real else self.uniform_labels(len(real_labels)),)

    def d_loss(self, x_r: torch.Tensor, y_r: torch.Tensor, x_f: torch.Tensor, *labels: torch.Tensor) -> DLoss:
        """D's loss on the real batch and the fakes ``x_f`` made for ``labels[0]`` (under autocast)."""
        raise NotImplementedError

    def g_labels(self) -> torch.Tensor:
        """The labels of the G step's fakes: ``optim.batch_size`` of them, uniform over the classes."""
        return self.uniform_labels(self.cfg.optim.batch_size)

    def g_loss(self, x_f: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """G's loss on its fakes ``x_f`` (with gradient, under autocast) and its log entries."""
        raise NotImplementedError

    def penalty_critic(self, real_labels: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """The gradient penalty's critic on interpolates (None: the recipe has no penalty)."""
        return None

    def lecam_term(self, d_real: torch.Tensor | None, d_fake: torch.Tensor | None) -> torch.Tensor | None:
        return None  # LeCam off (Regularized switches it on)

    def gsr_term(self) -> torch.Tensor | None:
        return None  # gSR off (Regularized switches it on)

    # -- the skeleton -------------------------------------------------------------------------------------------
    def train_step(self, batches: Batches, step: int) -> dict[str, torch.Tensor]:
        logs: dict[str, torch.Tensor] = {}  # the penalty's and LeCam's entries, from the last D step with them
        for d_step, (x_r, y_r) in enumerate(self.d_batches(batches)):
            d = self.d_update(x_r, y_r, step, d_step, logs)
        logs.update(d.logs)  # the recipe's entries and the full loss: the last D step's
        logs["d_loss"] = d.loss.detach()
        return {**logs, **self.g_update()}

    def d_update(self, x_r: torch.Tensor, y_r: torch.Tensor, step: int, d_step: int, logs: dict) -> DLoss:
        """D step ``d_step`` of G step ``step``; returns the recipe's terms with ``loss`` the full loss stepped."""
        G = self.nets["G"]
        labels = self.d_labels(y_r)
        with torch.no_grad(), self.autocast():
            x_f = G(self.noise(len(labels[0]), G.z_dim), labels[0]).float()
        with self.autocast():
            d = self.d_loss(x_r, y_r, x_f, *labels)
        lecam = self.lecam_term(d.real_adv, d.fake_adv)
        if lecam is not None:
            d.loss = d.loss + lecam
            logs["d_lecam"] = lecam.detach()
        weight = self.penalty_weight(step, d_step)
        critic = self.penalty_critic(y_r) if weight > 0 else None
        if critic is not None:
            with self.penalty_autocast():
                gp = gradient_penalty(critic, x_r, x_f, alpha=self.cfg.loss.gp_alpha, generator=self.gen)
            d.loss = d.loss + weight * gp
            logs["d_gp"] = gp.detach()
        self.update("D", d.loss, ["D"])
        return d

    def g_update(self) -> dict[str, torch.Tensor]:
        """The G step (D frozen): the recipe's loss on fresh fakes, plus gSR; returns its log entries."""
        G, D = self.nets["G"], self.nets["D"]
        logs: dict[str, torch.Tensor] = {}
        D.requires_grad_(False)  # no gradients for D's weights
        y = self.g_labels()
        with self.autocast():
            loss, recipe_logs = self.g_loss(G(self.noise(len(y), G.z_dim), y), y)
        gsr = self.gsr_term()
        if gsr is not None:
            loss = loss + gsr
            logs["g_gsr"] = gsr.detach()
        self.update("G", loss, ["G"])
        D.requires_grad_(True)
        return {**logs, **recipe_logs, "g_loss": loss.detach()}

    def penalty_autocast(self):
        """The gradient penalty's context: fp32 (see ``tailgan.nets.precision``) unless ``loss.gp_autocast``."""
        return self.autocast() if getattr(self.cfg.loss, "gp_autocast", False) else nullcontext()

    def penalty_weight(self, step: int, d_step: int) -> float:
        """The gradient penalty's weight in D step ``d_step`` (0-based) of G step ``step`` (1-based).

        ``loss.gp_weight`` every D step, or with ``loss.gp_every=k`` lazy regularisation as in StyleGAN2:
        k x ``gp_weight`` every k-th D step (counted over the whole run, the first one included) and 0 in the
        others, so the penalty's average weight stays the same at 1/k of its cost.
        """
        k = getattr(self.cfg.loss, "gp_every", 1)
        index = (step - 1) * self.cfg.optim.d_steps + d_step
        return self.cfg.loss.gp_weight * k if due(index, k) else 0.0
