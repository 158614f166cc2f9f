"""Benchmark: tailgan's GAN training step against a minimal hand-written PyTorch loop doing the same maths.

Two configurations (issue 3, "Performance"), both 32 px, batch 64, 5 D updates per G update:

* ``ecogan-dcgan``: DCGAN-like nets, non-saturating BCE + gradient penalty 10 + ECO (real in the D step,
  fake in the G step), Adam 2e-4 (0.5, 0.9), fakes of the D step with the real batch's labels.
* ``ecogan-biggan`` at width 24 (``model.conv_dim=24 model.shared_dim=32``): BigGAN ResNet with spectral
  norm and self-attention, hinge + ECO, Adam 2e-4 (0.5, 0.999), random flips, EMA of G every step.

What is timed, per generator step (= 5 D updates + 1 G update):

* **tailgan**: ``Trainer.step`` of the engine's ``Trainer`` for the recipe ``tailgan.engine.build_method``
  builds from the preset, with the divergence guard that ``tailgan train`` adds (see ``TailganLoop``): the
  recipe's step over its named streams of the in-memory dataset, ``sync_buffers``, the EMA update, the
  per-step NaN/Inf check and the running loss sums. The periodic log lines, sample grids and checkpoints
  are left out (every 50/500 steps by default). A real ``train()`` run in a fresh process is used for the
  peak memory and as a cross-check: its first-step losses must equal the replica's (same seeds), and its
  steps/s are reported.
* **hand**: ``HandLoop`` below, the same networks built from ``tailgan.nets`` with the same seed, and the
  losses (BCE / hinge, gradient penalty, ECO written from spec section 2, EMA) written inline.

Both loops run in one process, one generator step at a time in the order T H H T T H ... (ABBA), so load
changes on a shared machine hit both alike. The ratio is the median over the adjacent (tailgan, hand)
pairs of the per-step time ratio; wall-clock and process CPU time are both reported. Before timing, both
loops train ``warmup`` steps in lock-step from the same weights, data and random numbers, and their losses
must agree (a check that the hand loop really does the same maths).

Peak memory: for each (configuration, loop) a fresh process records its RSS after the imports, then loads
the data, builds the nets and trains a few steps (tailgan: the real ``train()``); the figures are the RSS
high-water mark (``getrusage``) and its rise over the post-import RSS.

    python benchmarks/train_speed.py                  # both configurations, ~10 min on 1 thread
    python benchmarks/train_speed.py --configs ecogan-dcgan --dcgan-steps 6 --out /tmp/speed

Writes benchmarks/results/train_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import itertools
import json
import math
import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from _harness import (
    GAN_CONFIGS,
    GAN_SEED,
    RESULTS,
    command,
    data_root,
    gan_config,
    loadavg,
    machine,
    now,
    peak_rss_mb,
    pick_data,
    rss_mb,
    run_worker,
    time_alternately,
    write_results,
)

STEM = "train_speed"
TARGET_RATIO = 1.05  # tailgan's step time may be at most 5 % above the hand loop's
SEED = GAN_SEED  # the seed of both loops' weights and random numbers

# The hand loop's settings, written out rather than read from tailgan's config, so that the lock-step
# loss check also tests that tailgan's presets mean what the issue says they mean.
HAND_SETTINGS: dict[str, dict[str, Any]] = {
    "dcgan": {
        "adv": "bce", "gp_weight": 10.0, "betas": (0.5, 0.9), "eps": 1e-8,
        "fake_labels": "real", "flip": False, "ema": False, "z_dim": 128,
    },
    "biggan": {
        "adv": "hinge", "gp_weight": 0.0, "betas": (0.5, 0.999), "eps": 1e-6,
        "fake_labels": "uniform", "flip": True, "ema": True, "z_dim": 80,
    },
}  # fmt: skip
LR, D_STEPS, BATCH, EMA_DECAY, EMA_START = 2e-4, 5, 64, 0.9999, 1000


# ---------------------------------------------------------------------------------------------------------
# The hand-written loop
# ---------------------------------------------------------------------------------------------------------


def eco_inline(embed: torch.Tensor, proxy: torch.Tensor, y: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """ECO loss as spec section 2 writes it: -mean_i log(num_i / den_i) with detached per-block row maxima."""
    f, p = F.normalize(embed, dim=1), F.normalize(proxy, dim=1)
    sim, sim_proxy = f @ f.T, f @ p.T
    eye = torch.eye(len(y), dtype=torch.bool, device=y.device)
    same = (y[:, None] == y[None, :]).float()
    m = sim.detach().masked_fill(eye, float("-inf")).amax(dim=1, keepdim=True)
    m_proxy = sim_proxy.detach().amax(dim=1, keepdim=True)
    a = torch.exp((sim - m) / tau).masked_fill(eye, 0.0)
    e = torch.exp((sim_proxy - m_proxy) / tau)
    num = (a * same).sum(1) + (e * same).sum(1)
    den = a.sum(1) + e.sum(1)
    return -(num / den).log().mean()


class HandLoop:
    """A plain PyTorch ECOGAN loop: tailgan's networks, everything else written out by hand.

    Draws its random numbers in the order tailgan's method does (flip, fake labels, noise, GP factor) from
    a generator seeded like the method's, and walks the same shuffled epoch, so that from the same
    weights both loops compute the same losses. ``tailgan_losses=True`` swaps in tailgan's loss functions
    (for ``--check``: the trajectory must then be bit-identical to tailgan's).
    """

    def __init__(
        self,
        arch: str,
        num_classes: int,
        real: torch.Tensor,
        labels: torch.Tensor,
        device: torch.device,
        tailgan_losses: bool = False,
        fast: bool = False,
    ) -> None:
        from tailgan.nets import BigGANDiscriminator, BigGANGenerator, DCGANDiscriminator, DCGANGenerator

        self.s = s = HAND_SETTINGS[arch]
        self.real, self.labels, self.k, self.device = real, labels, num_classes, device
        channels, size = real.shape[1], real.shape[-1]
        torch.manual_seed(SEED)  # the same initial weights as tailgan's build_method
        if arch == "dcgan":
            self.G = DCGANGenerator(num_classes, channels, size, z_dim=s["z_dim"], conv_dim=64)
            self.D = DCGANDiscriminator(num_classes, channels, size, conv_dim=64, head="proxy", embed_dim=512)
        else:
            self.G = BigGANGenerator(num_classes, channels, size, z_dim=s["z_dim"], conv_dim=24, shared_dim=32)
            self.D = BigGANDiscriminator(num_classes, channels, size, conv_dim=24, head="proxy", embed_dim=512)
        self.G.to(device)
        self.D.to(device)
        # the fast mode, written out: bf16 autocast for the forward passes, channels-last nets and data,
        # the gradient penalty and the loss reductions in fp32 (as tailgan's precision policy does)
        self.fast = fast
        if fast:
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
            self.real = real.contiguous(memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=LR, betas=s["betas"], eps=s["eps"])
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=LR, betas=s["betas"], eps=s["eps"])
        self.ema = copy.deepcopy(self.G).eval().requires_grad_(False) if s["ema"] else None
        self.gen = torch.Generator(device=device).manual_seed(SEED * 1000 + 17)  # as tailgan's Method.gen
        self.index_gen = torch.Generator().manual_seed(SEED)  # BatchStream's first stream for seed 0
        self.batches = self._index_batches()
        self.eco = eco_inline
        if tailgan_losses:  # only for --check: leaves the loss formulas as the one difference to tailgan
            from tailgan.losses import ADV_LOSSES, eco_loss

            self.eco = eco_loss
            self.adv_d, self.adv_g = ADV_LOSSES[s["adv"]]
        self.ones = torch.ones(BATCH, device=device)
        self.zeros = torch.zeros(BATCH, device=device)

    def _index_batches(self):
        while True:  # shuffled epochs, last partial batch dropped
            perm = torch.randperm(len(self.labels), generator=self.index_gen)
            for i in range(0, len(perm) - BATCH + 1, BATCH):
                yield perm[i : i + BATCH].to(self.device)

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = next(self.batches)
        x = self.real[idx]
        if self.s["flip"]:
            flip = torch.rand(BATCH, generator=self.gen, device=self.device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, self.labels[idx]

    def adv_d(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.s["adv"] == "bce":
            return F.binary_cross_entropy_with_logits(real_logits, self.ones) + F.binary_cross_entropy_with_logits(
                fake_logits, self.zeros
            )
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()

    def adv_g(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.s["adv"] == "bce":
            return F.binary_cross_entropy_with_logits(fake_logits, self.ones)
        return -fake_logits.mean()

    def autocast(self):
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.fast)

    def step(self, step: int) -> dict[str, torch.Tensor]:
        """One generator step: 5 D updates (each on a fresh real batch), 1 G update, EMA, finite check."""
        G, D, s, gen, dev = self.G, self.D, self.s, self.gen, self.device
        for _ in range(D_STEPS):
            x_r, y_r = self.batch()
            y_f = y_r if s["fake_labels"] == "real" else torch.randint(0, self.k, (BATCH,), generator=gen, device=dev)
            with torch.no_grad(), self.autocast():
                x_f = G(torch.randn(BATCH, G.z_dim, generator=gen, device=dev), y_f).float()
            with self.autocast():
                out_r, out_f = D(x_r, y_r), D(x_f, y_f)
            out_r, out_f = ({k: v.float() for k, v in o.items()} for o in (out_r, out_f))
            d_loss = self.adv_d(out_r["adv"], out_f["adv"]) + self.eco(out_r["embed"], out_r["proxy"], y_r)
            if s["gp_weight"] > 0:
                a = torch.rand(BATCH, 1, 1, 1, generator=gen, device=dev)
                x_hat = (x_r + a * (x_f - x_r)).requires_grad_(True)
                (grad,) = torch.autograd.grad(D(x_hat, y_r)["adv"].sum(), x_hat, create_graph=True)
                d_loss = d_loss + s["gp_weight"] * ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            self.opt_d.step()

        D.requires_grad_(False)  # no weight gradients for D in the G update
        y = torch.randint(0, self.k, (BATCH,), generator=gen, device=dev)
        with self.autocast():
            out = D(G(torch.randn(BATCH, G.z_dim, generator=gen, device=dev), y), y)
        out = {k: v.float() for k, v in out.items()}
        g_loss = self.adv_g(out["adv"]) + self.eco(out["embed"], out["proxy"], y)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        D.requires_grad_(True)

        if self.ema is not None:
            decay = EMA_DECAY if step >= EMA_START else 0.0
            with torch.no_grad():
                for p_ema, p in zip(self.ema.parameters(), G.parameters()):
                    p_ema.lerp_(p, 1.0 - decay)
                for b_ema, b in zip(self.ema.buffers(), G.buffers()):
                    if b.is_floating_point():
                        b_ema.lerp_(b, 1.0 - decay)
                    else:
                        b_ema.copy_(b)
        if not (math.isfinite(d_loss.item()) and math.isfinite(g_loss.item())):
            raise FloatingPointError(f"loss became NaN/Inf at step {step}")
        return {"d_loss": d_loss.detach(), "g_loss": g_loss.detach()}


# ---------------------------------------------------------------------------------------------------------
# tailgan, driven as tailgan.train.train drives it
# ---------------------------------------------------------------------------------------------------------


class TailganLoop:
    """tailgan's ``Trainer`` for the preset, stepped one generator step at a time (single process).

    The trainer does everything ``tailgan train``'s loop does per step (the recipe's step over its named
    streams, ``sync_buffers``, the EMA update, the loss sums of the log records) with the divergence guard
    as its callback; the periodic log lines, sample grids and checkpoints are left out (every 50/500 steps
    by default).
    """

    def __init__(self, cfg, data, device: torch.device, precision: str = "fp32") -> None:
        from tailgan.engine import build_trainer

        self.trainer = build_trainer(dataclasses.replace(cfg, precision=precision), data, device=device)
        self.method = self.trainer.method

    def step(self, step: int) -> dict[str, torch.Tensor]:
        return self.trainer.step()


# ---------------------------------------------------------------------------------------------------------
# Workers (each runs in its own process)
# ---------------------------------------------------------------------------------------------------------


def summary(values: list[float]) -> dict[str, float]:
    v = np.asarray(values, dtype=float)
    q25, q50, q75 = np.percentile(v, [25, 50, 75])
    return {
        "median": float(q50), "q25": float(q25), "q75": float(q75),
        "min": float(v.min()), "max": float(v.max()), "n": int(len(v)),
    }  # fmt: skip


def rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return max(abs(float(a[k]) - float(b[k])) / max(1.0, abs(float(b[k]))) for k in ("d_loss", "g_loss"))


def profile_steps(loop, first_step: int, n: int, top: int = 15) -> list[dict]:
    """Top operators by self CPU time over ``n`` generator steps (torch.profiler)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for s in range(first_step, first_step + n):
            loop.step(s)
    rows = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)[:top]
    return [
        {
            "op": e.key,
            "calls": e.count,
            "self_cpu_ms": e.self_cpu_time_total / 1e3 / n,
            "cpu_ms": e.cpu_time_total / 1e3 / n,
        }
        for e in rows
    ]


def worker_time(name: str, data: str, root: str, device: str, timed: int, warmup: int, profile: bool) -> dict:
    """Lock-step warm-up (loss check), then ABBA-interleaved timing of single generator steps."""
    from tailgan.data import load_data, to_float

    dev = torch.device(device)
    cfg = gan_config(name, data, root, device)
    ds = load_data(cfg.data)
    real, labels = to_float(ds.train.images).to(dev), ds.train.labels.to(dev)
    loops = {
        "tailgan": TailganLoop(cfg, ds, dev),
        "hand": HandLoop(GAN_CONFIGS[name]["arch"], ds.num_classes, real, labels, dev),
    }
    method = loops["tailgan"].method

    diffs, first_losses = [], {}
    for step in range(1, warmup + 1):
        out = {impl: loop.step(step) for impl, loop in loops.items()}
        diffs.append(rel_diff(out["hand"], out["tailgan"]))
        if step == 1:
            first_losses = {k: float(v) for k, v in out["tailgan"].items()}

    wall: dict[str, list[float]] = {"tailgan": [], "hand": []}
    cpu: dict[str, list[float]] = {"tailgan": [], "hand": []}
    later_diffs = []
    for i in range(timed):
        step = warmup + 1 + i
        out = {}
        for impl in ("tailgan", "hand") if i % 2 == 0 else ("hand", "tailgan"):
            t0, c0 = time.perf_counter(), time.process_time()
            out[impl] = loops[impl].step(step)
            wall[impl].append(time.perf_counter() - t0)
            cpu[impl].append(time.process_time() - c0)
        later_diffs.append(rel_diff(out["hand"], out["tailgan"]))

    result = {
        "tailgan_params": {k: sum(p.numel() for p in v.parameters()) for k, v in method.nets.items()},
        "hand_params": {k: sum(p.numel() for p in getattr(loops["hand"], k).parameters()) for k in ("G", "D")},
        "num_classes": ds.num_classes, "n_train": len(labels), "img_shape": list(real.shape[1:]),
        "cfg": {
            "adv": cfg.loss.adv, "gp_weight": cfg.loss.gp_weight, "cond_lambda": cfg.loss.cond_lambda,
            "temperature": cfg.loss.temperature, "batch_size": cfg.optim.batch_size, "d_steps": cfg.optim.d_steps,
            "betas": list(cfg.optim.betas), "eps": cfg.optim.eps, "lr": [cfg.optim.g_lr, cfg.optim.d_lr],
            "ema": cfg.ema, "flip": cfg.flip, "d_fake_labels": cfg.d_fake_labels,
        },
        "wall": wall, "cpu": cpu,
        "lockstep_max_rel_diff_warmup": max(diffs) if diffs else None,
        "lockstep_max_rel_diff_timed": max(later_diffs) if later_diffs else None,
        "replica_step1_losses": first_losses,
        "warmup": warmup,
    }  # fmt: skip
    ratio = float(np.median(np.array(wall["tailgan"]) / np.array(wall["hand"])))
    if profile or ratio > TARGET_RATIO:
        step = warmup + timed + 1
        result["profile"] = {impl: profile_steps(loop, step, 1) for impl, loop in loops.items()}
    return result


def next_step(loop, steps: Iterator[int]) -> dict[str, torch.Tensor]:
    return loop.step(next(steps))


def worker_fast(name: str, data: str, root: str, device: str, timed: int, warmup: int) -> dict:
    """fp32 and the fast mode (bf16 autocast + channels-last), tailgan and the hand loop, interleaved."""
    from tailgan.data import load_data, to_float

    dev = torch.device(device)
    cfg = gan_config(name, data, root, device)
    ds = load_data(cfg.data)
    real, labels = to_float(ds.train.images).to(dev), ds.train.labels.to(dev)
    loops = {
        "tailgan_fp32": TailganLoop(cfg, ds, dev, "fp32"),
        "tailgan_fast": TailganLoop(cfg, ds, dev, "auto"),
        "hand_fp32": HandLoop(GAN_CONFIGS[name]["arch"], ds.num_classes, real, labels, dev),
        "hand_fast": HandLoop(GAN_CONFIGS[name]["arch"], ds.num_classes, real, labels, dev, fast=True),
    }
    first = {}
    for step in range(1, warmup + 1):
        for impl, loop in loops.items():
            out = loop.step(step)
            if step == 1:
                first[impl] = {k: float(v) for k, v in out.items() if k in ("d_loss", "g_loss")}
    # each loop's k-th timed call makes G step warmup + k (the hand loop's EMA starts at a step number)
    calls = {impl: partial(next_step, loop, itertools.count(warmup + 1)) for impl, loop in loops.items()}
    wall = time_alternately(calls, timed)
    policy = loops["tailgan_fast"].method.precision
    return {"wall": wall, "first_step_losses": first, "fast_policy": {"name": policy.name,
            "channels_last": policy.channels_last, "gp_autocast": cfg.loss.gp_autocast}}  # fmt: skip


def classifier_fast(arch: str, steps: int, warmup: int, device: str) -> dict:
    """Optimizer steps of a classifier (LeNet-5 / ResNet-32, batch 128, 32 px, SGD) in fp32 and fast mode:
    tailgan's network under tailgan's precision policy, and the same step written by hand with autocast."""
    from tailgan.nets.classifiers import build_classifier
    from tailgan.nets.precision import resolve_precision

    dev = torch.device(device)
    channels = 1 if arch == "lenet5" else 3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, channels, 32, 32, generator=gen).to(dev)
    y = torch.randint(0, 10, (128,), generator=gen).to(dev)

    def make(policy_name: str, by_hand: bool):
        torch.manual_seed(0)
        net = build_classifier(arch, 10, channels).to(dev)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        if by_hand:
            fast = policy_name == "auto"
            if fast:
                net.to(memory_format=torch.channels_last)
            xb = x.contiguous(memory_format=torch.channels_last) if fast else x

            def step() -> None:
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=fast):
                    logits = net(xb)
                loss = F.cross_entropy(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        else:
            policy, _ = resolve_precision(policy_name, dev)
            policy.module(net)
            xb = policy.tensor(x)

            def step() -> None:
                with policy.autocast():
                    logits = net(xb)
                loss = F.cross_entropy(logits.float(), y)  # reductions in fp32
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

        return step

    loops = {f"{impl}_{mode}": make("auto" if mode == "fast" else "fp32", impl == "hand")
             for impl in ("tailgan", "hand") for mode in ("fp32", "fast")}  # fmt: skip
    for _ in range(warmup):
        for f in loops.values():
            f()
    return {"wall": time_alternately(loops, steps)}


def fast_summary(wall: dict[str, list[float]], bar: float) -> dict:
    med = {k: float(np.median(v)) for k, v in wall.items()}
    return {
        "steps_per_s": {k: 1.0 / v for k, v in med.items()},
        "speedup_tailgan": med["tailgan_fp32"] / med["tailgan_fast"],
        "speedup_hand": med["hand_fp32"] / med["hand_fast"],
        "tailgan_over_hand_time_fp32": med["tailgan_fp32"] / med["hand_fp32"],
        "tailgan_over_hand_time_fast": med["tailgan_fast"] / med["hand_fast"],
        "bar_speedup": bar,
        "meets_speedup_bar": med["tailgan_fp32"] / med["tailgan_fast"] >= bar,
        "within_5pct_of_hand": max(med["tailgan_fp32"] / med["hand_fp32"], med["tailgan_fast"] / med["hand_fast"])
        <= TARGET_RATIO,
        "n": len(next(iter(wall.values()))),
    }


def worker_memory(name: str, impl: str, data: str, root: str, device: str, steps: int) -> dict:
    """Peak RSS of loading the data, building the nets and training ``steps`` generator steps."""
    from tailgan.data import load_data, to_float
    from tailgan.train import train

    base = rss_mb()
    dev = torch.device(device)
    result: dict[str, Any] = {"rss_after_imports_mb": base}
    if impl == "tailgan":
        with tempfile.TemporaryDirectory() as tmp:
            cfg = gan_config(
                name, data, root, device, steps=steps, log_every=1, sample_every=0, ckpt_every=10**9, eval_every=0
            )
            t0 = time.perf_counter()
            train(cfg, Path(tmp) / "run")
            result["train_wall_s"] = time.perf_counter() - t0
            lines = (Path(tmp) / "run" / "log.jsonl").read_text().splitlines()
            records = [r for r in map(json.loads, lines) if "event" not in r]  # the step records
        result["train_steps_per_s"] = [r["steps_per_s"] for r in records if "steps_per_s" in r]
        result["train_step1_losses"] = {
            k: v for k, v in records[0].items() if k not in ("step", "steps_per_s", "phase")
        }
    else:
        cfg = gan_config(name, data, root, device)  # only for the data spec
        ds = load_data(cfg.data)
        real, labels = to_float(ds.train.images).to(dev), ds.train.labels.to(dev)
        loop = HandLoop(GAN_CONFIGS[name]["arch"], ds.num_classes, real, labels, dev)
        times = []
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            loop.step(step)
            times.append(time.perf_counter() - t0)
        result["hand_step_s"] = times
    result["peak_rss_mb"] = peak_rss_mb()
    result["peak_rss_rise_mb"] = result["peak_rss_mb"] - base
    return result


def exactness_check(names: list[str], data: str, root: str, device: str, steps: int) -> dict:
    """Are the two loops the same maths? Answers the question in two exact parts.

    1. The inline losses against tailgan's, in float64 on random inputs: values and gradients.
    2. The hand loop with tailgan's loss functions swapped in, in lock-step with tailgan for ``steps`` G
       steps: weights (and EMA) must be bit-identical. Then the only difference left is the loss formulas,
       whose float32 rounding differs slightly; GAN training amplifies that over the steps, which is why
       the lock-step losses of the timing run drift apart after the warm-up.
    """
    from tailgan.data import load_data, to_float
    from tailgan.losses import ADV_LOSSES, eco_loss

    gen = torch.Generator().manual_seed(1)
    e = torch.randn(BATCH, 512, dtype=torch.float64, generator=gen, requires_grad=True)
    p = torch.randn(BATCH, 512, dtype=torch.float64, generator=gen, requires_grad=True)
    y = torch.randint(0, 10, (BATCH,), generator=gen)
    mine, theirs = eco_inline(e, p, y), eco_loss(e, p, y)
    grads = zip(torch.autograd.grad(mine, (e, p)), torch.autograd.grad(theirs, (e, p)))
    out: dict[str, Any] = {
        "eco_float64_value_diff": abs(float(mine.detach() - theirs.detach())),
        "eco_float64_grad_max_diff": max(float((a - b).abs().max()) for a, b in grads),
    }
    r, f = (
        torch.randn(BATCH, dtype=torch.float64, generator=gen),
        torch.randn(BATCH, dtype=torch.float64, generator=gen),
    )
    one, zero = torch.ones_like(r), torch.zeros_like(r)
    bce_d = F.binary_cross_entropy_with_logits(r, one) + F.binary_cross_entropy_with_logits(f, zero)
    out["bce_float64_value_diff"] = max(
        abs(float(bce_d - ADV_LOSSES["bce"][0](r, f))),
        abs(float(F.binary_cross_entropy_with_logits(f, one) - ADV_LOSSES["bce"][1](f))),
    )
    dev = torch.device(device)
    for name in names:
        cfg = gan_config(name, data, root, device)
        ds = load_data(cfg.data)
        real, labels = to_float(ds.train.images).to(dev), ds.train.labels.to(dev)
        tg = TailganLoop(cfg, ds, dev)
        hand = HandLoop(GAN_CONFIGS[name]["arch"], ds.num_classes, real, labels, dev, tailgan_losses=True)
        for step in range(1, steps + 1):
            tg.step(step)
            hand.step(step)
        pairs = [(tg.method.nets["G"], hand.G), (tg.method.nets["D"], hand.D)]
        if hand.ema is not None:
            pairs.append((tg.method.ema["G"], hand.ema))
        diff = max(
            float((a.double() - b.double()).abs().max())
            for x, z in pairs
            for a, b in zip(x.state_dict().values(), z.state_dict().values())
        )
        out[name] = {"g_steps": steps, "max_abs_diff_weights_buffers_ema": diff}
    return out


# ---------------------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------------------


def loop_figures(wall: np.ndarray, cpu: np.ndarray, mem: dict) -> dict:
    """One loop's step times (wall and CPU), G steps/s and peak memory."""
    return {
        "step_s": summary(list(wall)),
        "g_steps_per_s": 1.0 / float(np.median(wall)),
        "cpu_step_s": summary(list(cpu)),
        "peak_rss_mb": mem["peak_rss_mb"],
        "peak_rss_rise_mb": mem["peak_rss_rise_mb"],
    }


def summarise(name: str, timing: dict, mem: dict[str, dict]) -> dict:
    wall_t, wall_h = np.array(timing["wall"]["tailgan"]), np.array(timing["wall"]["hand"])
    cpu_t, cpu_h = np.array(timing["cpu"]["tailgan"]), np.array(timing["cpu"]["hand"])
    ratio_wall, ratio_cpu = summary(list(wall_t / wall_h)), summary(list(cpu_t / cpu_h))
    train_rates = mem["tailgan"]["train_steps_per_s"][1:]  # step 1 pays the warm-up
    replica, real_train = timing["replica_step1_losses"], mem["tailgan"]["train_step1_losses"]
    return {
        "tailgan_overrides": GAN_CONFIGS[name]["overrides"],
        "settings": timing["cfg"],
        "params": timing["tailgan_params"],
        "same_params_as_hand": timing["tailgan_params"] == timing["hand_params"],
        "dataset": {"n_train": timing["n_train"], "num_classes": timing["num_classes"], "img": timing["img_shape"]},
        "warmup_steps": timing["warmup"],
        "timed_steps_per_loop": len(wall_t),
        "tailgan": loop_figures(wall_t, cpu_t, mem["tailgan"]),
        "hand": loop_figures(wall_h, cpu_h, mem["hand"]),
        "ratio_wall": ratio_wall,
        "ratio_cpu": ratio_cpu,
        "ratio_of_median_wall": float(np.median(wall_t) / np.median(wall_h)),
        "within_target": ratio_wall["median"] <= TARGET_RATIO,
        "lockstep_max_rel_diff_warmup": timing["lockstep_max_rel_diff_warmup"],
        "lockstep_max_rel_diff_timed": timing["lockstep_max_rel_diff_timed"],
        "real_train": {
            "mem_steps": len(mem["tailgan"]["train_steps_per_s"]),
            "steps_per_s_after_first": train_rates,
            "step1_losses_equal_replica": all(
                math.isclose(real_train[k], replica[k], rel_tol=1e-6, abs_tol=1e-7) for k in replica
            ),
            "step1_losses": real_train,
        },
        **({"profile": timing["profile"]} if "profile" in timing else {}),
    }


def markdown(report: dict) -> str:
    m = report["machine"]
    cpu = m.get("cpu") or m.get("cpu_model")  # a report written before benchmarks/_harness.py: cpu_model
    lines = [
        "# train_speed: tailgan's GAN step vs a hand-written PyTorch loop",
        "",
        f"{m['date']}, {cpu}, {m['nproc']} cores, torch {m['torch']}, "
        f"`torch.set_num_threads({m['torch_threads']})`, load average at start {m['loadavg_start']} "
        f"(end {m['loadavg_end']}): other processes were using the CPU. Data: {report['data']['preset']}"
        f"{' (' + report['data']['note'] + ')' if report['data']['note'] else ''}.",
        "",
        "One G step = 5 D updates + 1 G update, batch 64, 32 px. Times are medians over single G steps "
        "run alternately (T H H T ...); ratio = median over adjacent pairs of tailgan / hand "
        "(interquartile range in brackets). Peak RSS: fresh process per row, data + nets + a few steps.",
        "",
        "| configuration | tailgan G steps/s | hand G steps/s | ratio wall [IQR] | ratio CPU time | "
        "within 5 % | peak RSS tailgan / hand (MB) | RSS rise tailgan / hand (MB) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in report["configs"].items():
        t, h, rw, rc = r["tailgan"], r["hand"], r["ratio_wall"], r["ratio_cpu"]
        lines.append(
            f"| {name} | {t['g_steps_per_s']:.3f} ({t['step_s']['median']:.2f} s) | "
            f"{h['g_steps_per_s']:.3f} ({h['step_s']['median']:.2f} s) | "
            f"{rw['median']:.3f} [{rw['q25']:.3f}, {rw['q75']:.3f}] | {rc['median']:.3f} | "
            f"{'yes' if r['within_target'] else 'NO'} | {t['peak_rss_mb']:.0f} / {h['peak_rss_mb']:.0f} | "
            f"{t['peak_rss_rise_mb']:.0f} / {h['peak_rss_rise_mb']:.0f} |"
        )
    lines += ["", "Checks:", ""]
    for name, r in report["configs"].items():
        rt = r["real_train"]
        rates = ", ".join(f"{x:.3f}" for x in rt["steps_per_s_after_first"])
        lines.append(
            f"- {name}: hand and tailgan losses in lock-step agree to {r['lockstep_max_rel_diff_warmup']:.1e} "
            f"(relative) during warm-up; a real `train()` run gives the replica's step-1 losses: "
            f"{rt['step1_losses_equal_replica']}; its steps/s after step 1 (not interleaved): {rates}."
        )
    check = report.get("exactness_check")
    if check:
        names = [n for n in report["configs"] if n in check]
        lines.append(
            f"- Same maths (`--check`): inline ECO vs `tailgan.losses.eco_loss` in float64 differ by "
            f"{check['eco_float64_value_diff']:.1e} (value) and {check['eco_float64_grad_max_diff']:.1e} "
            f"(gradient), BCE by {check['bce_float64_value_diff']:.1e}; with tailgan's loss functions swapped "
            f"into the hand loop, the weights, buffers and EMA after "
            + ", ".join(
                f"{check[n]['g_steps']} G steps of {n} differ by {check[n]['max_abs_diff_weights_buffers_ema']:g}"
                for n in names
            )
            + ". The lock-step losses drift apart later in the timing run only through float32 rounding of "
            "the two (equal) loss formulas, which GAN training amplifies."
        )
    lines += fast_mode_lines(report)
    return "\n".join(lines) + "\n"


def fast_mode_lines(report: dict) -> list[str]:
    """The fp32-vs-fast table (issue 10's bar: >= 1.7x for ecogan-dcgan, >= 1.5x for the others, and
    within 5 % of the hand loop in the same mode)."""
    if not report.get("fast_mode"):
        return []
    lines = ["", "## Fast mode (bf16 autocast + channels-last) vs fp32", "",
             "Steps per second (G steps for the GANs, optimizer steps for the classifiers), interleaved in one "
             "process per configuration; median of the timed steps.", "",
             "| configuration | tailgan fp32 | tailgan fast | speed-up | bar | hand fp32 | hand fast | hand speed-up "
             "| tailgan/hand time fp32 | fast |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, f in report["fast_mode"].items():
        r = f["steps_per_s"]
        lines.append(
            f"| {name} | {r['tailgan_fp32']:.3f} | {r['tailgan_fast']:.3f} | {f['speedup_tailgan']:.2f}x | "
            f"{f['bar_speedup']}x {'met' if f['meets_speedup_bar'] else 'missed'} | {r['hand_fp32']:.3f} | "
            f"{r['hand_fast']:.3f} | {f['speedup_hand']:.2f}x | {f['tailgan_over_hand_time_fp32']:.3f} | "
            f"{f['tailgan_over_hand_time_fast']:.3f} |"
        )
    for name, f in report["fast_mode"].items():
        again, policy = f.get("remeasured"), f.get("fast_policy") or {}
        if again:
            penalty = {True: "under autocast", False: "in fp32"}.get(policy.get("gp_autocast"), "not recorded")
            lines.append(f"\n{name}: measured again on {again['date'][:10]} on {again.get('cpu', 'this machine')} "
                         f"(`{again['command']}`, load average {again['loadavg_start']} at the start, "
                         f"{again['loadavg_end']} at the end); tailgan's fast row has its gradient penalty {penalty}, "
                         "the hand loop's fast mode keeps its penalty in fp32 (the 'fast' time ratio compares "
                         "different work).")  # fmt: skip
    return lines


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/raw")
    p.add_argument("--configs", default=",".join(GAN_CONFIGS), help="comma list of " + ", ".join(GAN_CONFIGS))
    p.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier on a shared machine)")
    p.add_argument("--device", default="cpu", help="torch device (peak RSS only covers host memory)")
    p.add_argument("--dcgan-steps", type=int, default=GAN_CONFIGS["ecogan-dcgan"]["timed_steps"])
    p.add_argument("--biggan-steps", type=int, default=GAN_CONFIGS["ecogan-biggan"]["timed_steps"])
    p.add_argument("--warmup", type=int, help="lock-step warm-up G steps (default: per configuration)")
    p.add_argument("--mem-steps", type=int, help="G steps in the memory runs (default: per configuration)")
    p.add_argument("--profile", action="store_true", help="always profile one step of each loop")
    p.add_argument("--fast-steps", type=int, default=8, help="timed steps per loop of the fp32-vs-fast runs (0: skip)")
    p.add_argument(
        "--check",
        action="store_true",
        help="only the exactness check (inline vs tailgan losses; bit-identical weights with tailgan's losses); "
        "adds it to an existing train_speed.json in --out",
    )
    p.add_argument(
        "--fast-only",
        action="store_true",
        help="only the fp32-vs-fast rows of --configs, measured again into the existing train_speed.json in --out "
        "(the other rows and sections are kept; each re-measured row records its date and machine load)",
    )
    p.add_argument("--out", default=str(RESULTS))
    # internal: run one measurement in this (fresh) process and write its JSON to --result
    p.add_argument("--worker", choices=list(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--impl", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--steps", type=int, help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    return p


# --worker NAME: the measurement a fresh process makes (run_worker starts it)
WORKERS = {
    "time": lambda a: worker_time(a.config, a.data, a.root, a.device, a.steps, a.warmup, a.profile),
    "memory": lambda a: worker_memory(a.config, a.impl, a.data, a.root, a.device, a.steps),
    "fast": lambda a: worker_fast(a.config, a.data, a.root, a.device, a.steps, a.warmup),
    "classifier": lambda a: classifier_fast(a.config, a.steps, a.warmup, a.device),
}


class Progress:
    """Progress lines with the seconds since the benchmark started."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        print(f"[{time.perf_counter() - self.t0:6.0f} s] {message}", flush=True)


def measure_config(name: str, data: str, args: argparse.Namespace, log: Progress) -> dict:
    """The two memory runs (a fresh process per loop) and the interleaved timing of one configuration."""
    spec = GAN_CONFIGS[name]
    timed = args.dcgan_steps if spec["arch"] == "dcgan" else args.biggan_steps
    warmup = args.warmup if args.warmup is not None else spec["warmup"]
    mem_steps = args.mem_steps if args.mem_steps is not None else spec["mem_steps"]
    common = ["--config", name, "--data", data, "--root", args.root, "--device", args.device]
    mem = {}
    for impl in ("tailgan", "hand"):
        log(f"{name}: memory run ({impl}, {mem_steps} steps)")
        mem[impl] = run_worker(__file__, ["--worker", "memory", "--impl", impl, "--steps", str(mem_steps), *common],
                               args.threads)  # fmt: skip
    log(f"{name}: timing ({warmup} + {timed} steps each)")
    timing = run_worker(__file__, ["--worker", "time", "--steps", str(timed), "--warmup", str(warmup), *common]
                        + (["--profile"] if args.profile else []), args.threads)  # fmt: skip
    r = summarise(name, timing, mem)
    log(f"{name}: tailgan {r['tailgan']['step_s']['median']:.3f} s/step, hand {r['hand']['step_s']['median']:.3f} "
        f"s/step, ratio {r['ratio_wall']['median']:.3f} (cpu {r['ratio_cpu']['median']:.3f})")  # fmt: skip
    return r


def measure_fast(name: str, data: str, args: argparse.Namespace, log: Progress) -> dict:
    """fp32 against the fast mode: a GAN configuration (tailgan and the hand loop) or a classifier (``name`` an
    architecture)."""
    log(f"{name}: fp32 vs fast mode" if name in GAN_CONFIGS else f"classifier {name}: fp32 vs fast mode")
    if name in GAN_CONFIGS:
        res = run_worker(__file__, ["--worker", "fast", "--steps", str(args.fast_steps), "--warmup", "1", "--config",
                                    name, "--data", data, "--root", args.root, "--device", args.device],
                         args.threads)  # fmt: skip
        bar = 1.7 if name == "ecogan-dcgan" else 1.5
    else:
        res = run_worker(__file__, ["--worker", "classifier", "--config", name, "--steps", str(4 * args.fast_steps),
                                    "--warmup", "2", "--device", args.device], args.threads)  # fmt: skip
        bar = 1.5
    f = {**fast_summary(res["wall"], bar), **res}
    print(f"    speed-up tailgan {f['speedup_tailgan']:.2f}x, hand {f['speedup_hand']:.2f}x", flush=True)
    return f


def add_exactness_check(names: list[str], data: str, args: argparse.Namespace) -> int:
    """``--check``: the exactness check, printed and added to the report in ``--out`` when there is one."""
    check = exactness_check(names, data, args.root, args.device, steps=2)
    print(json.dumps(check, indent=2))
    path = Path(args.out) / f"{STEM}.json"
    if path.is_file():
        report = json.loads(path.read_text())
        report["exactness_check"] = check
        write_results(args.out, STEM, report, markdown(report))
    return 0


def remeasure_fast(names: list[str], data: str, args: argparse.Namespace) -> int:
    """``--fast-only``: the fp32-vs-fast rows of ``names`` measured again and put into the report in ``--out``."""
    path = Path(args.out) / f"{STEM}.json"
    if not path.is_file():
        raise SystemExit(f"{path} does not exist; run the whole benchmark first (without --fast-only)")
    report = json.loads(path.read_text())
    log = Progress()
    for name in names:
        start = loadavg()
        row = measure_fast(name, data, args, log)
        row["remeasured"] = {"date": now(), "command": command(__file__), "cpu": machine()["cpu"],
                             "loadavg_start": start, "loadavg_end": loadavg(), "threads": args.threads}  # fmt: skip
        report.setdefault("fast_mode", {})[name] = row
    path = write_results(args.out, STEM, report, markdown(report))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        Path(args.result).write_text(json.dumps(WORKERS[args.worker](args)))
        return 0
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in GAN_CONFIGS]
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; choose from {', '.join(GAN_CONFIGS)}")
    data, note = pick_data(args.root)
    if args.check:
        return add_exactness_check(names, data, args)
    if args.fast_only:
        return remeasure_fast(names, data, args)
    report: dict[str, Any] = {
        "benchmark": STEM,
        "machine": machine(date=now()),
        "data": {"preset": data, "root": args.root if data == "fashion_mnist_lt" else None, "note": note},
        "target_ratio": TARGET_RATIO,
        "method": (
            "per G step (5 D + 1 G updates); tailgan = method.train_step driven as tailgan.train.train's loop "
            "does (BatchStream batches, sync_buffers, EMA, finite check, loss sums); hand = plain PyTorch loop on "
            "the same tailgan.nets networks and seeds; steps alternate T H H T ...; ratio = median of per-pair "
            "tailgan/hand step-time ratios; peak RSS from getrusage in a fresh process per (config, loop)"
        ),
        "configs": {},
    }
    print(f"machine: {report['machine']}", flush=True)
    log = Progress()
    for name in names:
        report["configs"][name] = measure_config(name, data, args, log)
        if args.fast_steps:
            report.setdefault("fast_mode", {})[name] = measure_fast(name, data, args, log)
    for arch in ("lenet5", "resnet32") if args.fast_steps else ():
        report.setdefault("fast_mode", {})[arch] = measure_fast(arch, data, args, log)
    report["machine"]["loadavg_end"] = loadavg()
    report["total_wall_s"] = time.perf_counter() - log.t0
    path = write_results(args.out, STEM, report, markdown(report))
    print(f"wrote {path} and {path.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
