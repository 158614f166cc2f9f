"""What every GAN recipe shares: its networks, optimizers, EMA, gradient sync and sampling.

A method owns any number of networks (``self.nets``) and optimizers (``self.optimizers``) and defines
``train_step``: one generator update with the discriminator updates that precede it. The training loop
(``tailgan.train``) only calls ``train_step``, ``sample`` and the checkpoint hooks, so a recipe with two
networks (a GAN) or four (a CycleGAN trained with a classifier) runs in the same loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from tailgan.config import from_dict

Batch = tuple[torch.Tensor, torch.Tensor]  # real images in [-1, 1] and their labels


class Method:
    """Base class of GAN recipes. Subclasses set ``nets``/``optimizers`` in ``build`` and define ``train_step``."""

    name = "method"
    Options: type | None = None  # a dataclass of method-specific options (the config's ``options`` section)

    def __init__(
        self,
        cfg: Any,
        num_classes: int,
        img_channels: int,
        img_size: int,
        device: torch.device,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        self.cfg = cfg
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.device, self.rank, self.world_size = torch.device(device), rank, world_size
        self.options = from_dict(self.Options, cfg.options, prefix="options.") if self.Options else None
        # noise, labels and GP factors come from this generator, so a resumed run draws the same numbers;
        # each rank gets its own stream
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed * 1000 + 17 + rank)
        self.run_dir = None  # set by the training loop; None when only sampling
        self.nets: dict[str, nn.Module] = {}
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.ema: dict[str, nn.Module] = {}
        self.build()
        for net in self.nets.values():
            net.to(self.device)
        for net in self.ema.values():
            net.to(self.device).eval().requires_grad_(False)

    # -- to be defined by recipes -------------------------------------------------------------------------
    def build(self) -> None:
        raise NotImplementedError

    def train_step(self, next_batch: Callable[[], Batch], step: int) -> dict[str, torch.Tensor]:
        """One generator update (and the discriminator updates before it); returns detached losses."""
        raise NotImplementedError

    def generator_for_sampling(self) -> nn.Module:
        """The network that makes images: the EMA copy of G when there is one."""
        return self.ema.get("G", self.nets["G"])

    @torch.no_grad()
    def sample(self, labels: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Images in [-1, 1] for ``labels`` (no gradient)."""
        g = self.generator_for_sampling()
        was_training = g.training
        g.eval()
        z = torch.randn(len(labels), g.z_dim, generator=generator or self.gen, device=self.device)
        x = g(z, labels.to(self.device))
        g.train(was_training)
        return x.float()

    def pretrain(self, data: Any, log: Callable[[dict], None]) -> None:  # noqa: B027 - optional hook
        """An optional phase before GAN training (autoencoder, VAE); recipes that need one override it."""

    # -- shared machinery -----------------------------------------------------------------------------------
    def make_adam(self, params, lr: float, betas: tuple[float, float], eps: float = 1e-8) -> torch.optim.Adam:
        return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps)

    def autocast(self):
        """bf16 autocast where asked for and supported; otherwise nothing."""
        if getattr(self.cfg, "amp", False):
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def uniform_labels(self, n: int) -> torch.Tensor:
        """Labels drawn uniformly over every class (the original hard-coded 10 classes; this does not)."""
        return torch.randint(0, self.num_classes, (n,), generator=self.gen, device=self.device)

    def noise(self, n: int, z_dim: int) -> torch.Tensor:
        return torch.randn(n, z_dim, generator=self.gen, device=self.device)

    def update(self, opt_name: str, loss: torch.Tensor, nets: list[str]) -> None:
        """zero_grad, backward, average gradients over ranks, optimizer step."""
        opt = self.optimizers[opt_name]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            self._all_reduce_grads([p for n in nets for p in self.nets[n].parameters() if p.requires_grad])
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
