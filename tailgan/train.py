"""``tailgan train``: the one training loop every GAN recipe runs in.

Read top to bottom: config -> data -> method (networks + optimizers) -> resume -> loop of
``method.train_step`` with logging, sample grids, evaluation and atomic checkpoints. Under ``torchrun``
each process trains on its own batches, gradients are averaged over processes, and only rank 0 writes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist

from tailgan.config import apply_overrides, from_dict, load_yaml, merge, save_yaml, to_dict
from tailgan.data import BatchStream, DataConfig, load_data, resolve_data_config, save_manifest, to_float
from tailgan.errors import TailganError
from tailgan.methods import get_method, resolve_preset
from tailgan.runs import TrainedGenerator, checkpoint_path, load_checkpoint, save_checkpoint

DEFAULT_RESOLUTION = 32


@dataclass
class ModelConfig:
    arch: Literal["dcgan", "biggan"] = "biggan"
    z_dim: int | None = None  # None: the architecture's default (dcgan 128, biggan 80)
    conv_dim: int | None = None  # width; None: the architecture's default (biggan 96 full, 24 = "div4")
    shared_dim: int = 128  # biggan: shared class embedding (32 for div4)
    embed_dim: int = 512  # proxy / embedding head
    attention: bool = True  # biggan: self-attention at 16x16


@dataclass
class LossConfig:
    adv: Literal["bce", "hinge", "wasserstein"] = "hinge"
    gp_weight: float = 0.0  # gradient penalty weight (0: off)
    gp_alpha: Literal["uniform", "normal"] = "uniform"  # interpolation factor; "normal" is ECOGAN's code
    cond_lambda: float = 1.0  # weight of the conditional (contrastive / classification) loss
    temperature: float = 1.0
    m_p: float = 0.98  # D2D-CE positive margin (m_n = 1 - m_p)
    max_shift: bool = True  # the original code's detached max shifts in ECO / D2D-CE
    gather: bool = True  # under DDP, contrastive losses see every rank's batch


@dataclass
class OptimConfig:
    batch_size: int = 64  # per process
    g_lr: float = 2e-4
    d_lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    eps: float = 1e-6
    d_steps: int = 5  # D updates per G update


@dataclass
class TrainConfig:
    method: str = "ecogan"
    preset: str | None = None
    data: DataConfig = field(default_factory=lambda: resolve_data_config("digits_lt"))
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    options: dict[str, Any] = field(default_factory=dict)  # method-specific options (validated by the method)
    steps: int = 2000  # generator updates
    seed: int = 0
    sampling: Literal["uniform", "balanced"] = "uniform"  # real data: as it is, or class-balanced resampling
    d_fake_labels: Literal["real", "uniform"] = "uniform"  # labels of the D-step fakes
    flip: bool = False  # random horizontal flips of real images
    ema: bool = False
    ema_decay: float = 0.9999
    ema_start: int = 1000
    amp: bool = False  # bf16 autocast
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every: int = 50
    sample_every: int = 500
    sample_classes: int = 50  # rows in the sample grid (at most this many classes)
    ckpt_every: int = 500
    keep_checkpoints: bool = False  # also keep checkpoints/step_N.pt
    eval_every: int = 0  # 0: no evaluation during training
    eval_metrics: list[str] = field(default_factory=lambda: ["fid", "kid"])
    eval_ref: Literal["train-lt", "test"] = "train-lt"
    eval_n: int | None = None
    eval_feature: str = "evaluator"
    best_metric: str = "fid"  # lower is better; "is"/"labelacc" higher


class TrainingDiverged(TailganError):
    """A loss became NaN or Inf; the last good checkpoint is kept."""


def make_config(
    method: str | None = None,
    config_file: str | None = None,
    data: str | None = None,
    root: str | None = None,
    overrides: list[str] | None = None,
    **fields: Any,
) -> TrainConfig:
    """Defaults <- method preset <- config file <- --data/--root and other flags <- key=value overrides."""
    d: dict[str, Any] = {}
    file_cfg = load_yaml(config_file) if config_file else {}
    name = method or file_cfg.get("preset") or file_cfg.get("method") or "ecogan"
    d = merge(d, resolve_preset(name))
    d = merge(d, file_cfg)
    if method:  # --method on the command line wins over the file
        d = merge(d, resolve_preset(method))
    data_dict = to_dict(resolve_data_config(data if data else d.get("data", "digits_lt")))
    if isinstance(d.get("data"), dict) and not data:
        data_dict = merge(data_dict, d["data"])
    root = root or (os.environ.get("TAILGAN_DATA") if not data_dict.get("root") else None)
    if root:
        data_dict["root"] = root
    d["data"] = data_dict
    d = merge(d, {k: v for k, v in fields.items() if v is not None})
    d = apply_overrides(d, overrides or [])
    cfg = from_dict(TrainConfig, d)
    if cfg.data.resolution is None:
        cfg.data.resolution = DEFAULT_RESOLUTION
    get_method(cfg.method)  # unknown method -> error now, not after loading data
    return cfg


def load_run_config(run_dir: str | Path) -> TrainConfig:
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TailganError(
            f"{run_dir} is not a tailgan run (no config.yaml); give the folder `tailgan train --out` wrote"
        )
    return from_dict(TrainConfig, load_yaml(path))


def build_method(
    cfg: TrainConfig,
    num_classes: int,
    img_channels: int,
    img_size: int,
    device: torch.device,
    rank: int = 0,
    world_size: int = 1,
):
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    return get_method(cfg.method)(cfg, num_classes, img_channels, img_size, device, rank, world_size)


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TailganError(f"device={name} but CUDA is not available here; use device=cpu")
    return torch.device(name)


def init_distributed(cfg: TrainConfig) -> tuple[int, int, torch.device]:
    """(rank, world_size, device); starts the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, pick_device(cfg.device)
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(cfg.device, local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return dist.get_rank(), world, device


class RunLog:
    """log.jsonl + TensorBoard + console lines (rank 0 only)."""

    def __init__(self, out: Path, active: bool, total: int, start: int) -> None:
        self.active, self.out = active, out
        self.file = open(out / "log.jsonl", "a") if active else None  # noqa: SIM115 - lives as long as the run
        self.tb = None
        self.bar = None
        if active:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tb"))
            if sys.stderr.isatty():
                from tqdm import tqdm

                self.bar = tqdm(total=total, initial=start, desc="train", dynamic_ncols=True)

    def write(self, record: dict) -> None:
        if not self.active:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        step = record.get("step", 0)
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                self.tb.add_scalar(k, v, step)
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items())
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def close(self) -> None:
        if self.active:
            self.file.close()
            self.tb.close()
            if self.bar is not None:
                self.bar.close()


def save_sample_grid(method, path: Path, num_classes: int, max_classes: int, seed: int, per_class: int = 8) -> None:
    """One row per class, the same z in every row and at every step, so grids are comparable over training."""
    from torchvision.utils import save_image

    k = min(num_classes, max_classes)
    labels = torch.arange(k).repeat_interleave(per_class)
    gen = torch.Generator(device=method.device).manual_seed(seed + 12345)
    z_dim = method.generator_for_sampling().z_dim
    z = torch.randn(per_class, z_dim, generator=gen, device=method.device).repeat(k, 1)
    g = method.generator_for_sampling()
    was = g.training
    g.eval()
    with torch.no_grad():
        images = g(z, labels.to(method.device)).float().cpu()
    g.train(was)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    save_image(images, tmp, nrow=per_class, normalize=True, value_range=(-1, 1))
    os.replace(tmp, path)


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``cfg`` into run folder ``out`` (or continue it); returns the last logged record."""
    out = Path(out)
    rank, world, device = init_distributed(cfg)
    is_main = rank == 0
    ckpts = out / "checkpoints"
    held = [p for p in ckpts.iterdir() if p.name != "pretrain.pt"] if ckpts.exists() else []
    if not resume and is_main and held:  # a pre-training checkpoint alone is reused, not a run
        raise TailganError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")

    data = load_data(cfg.data)
    real = to_float(data.train.images).to(device)
    real_labels = data.train.labels.to(device)
    num_classes, channels, size = data.num_classes, real.shape[1], real.shape[-1]
    method = build_method(cfg, num_classes, channels, size, device, rank, world)
    method.run_dir = out  # pre-training phases keep their own checkpoint here
    stream = BatchStream(
        data.train.labels,
        cfg.optim.batch_size,
        balanced=cfg.sampling == "balanced",
        seed=cfg.seed,
        rank=rank,
        world_size=world,
    )

    start, best = 0, None
    if resume:
        state = load_checkpoint(checkpoint_path(out, "last"), device)
        method.load_state_dict(state["method"])
        stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["torch_rng"])
        start, best = int(state["step"]), state.get("best")
        if start >= cfg.steps:
            raise TailganError(
                f"{out} is already at step {start} >= steps={cfg.steps}; pass a larger --steps to continue"
            )
    elif is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
        save_manifest(data.manifest, out / "data_manifest.json")

    log = RunLog(out, is_main, cfg.steps, start)
    if not resume:
        method.pretrain(data, log.write)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = stream.next().to(device)
        x = real[idx]
        if cfg.flip:
            flip = torch.rand(len(idx), generator=method.gen, device=device) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, real_labels[idx]

    def checkpoint(step: int, names: list[str]) -> None:
        if not is_main:
            return
        state = {
            "step": step,
            "method": method.state_dict(),
            "stream": stream.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "best": best,
            "meta": {"num_classes": num_classes, "img_channels": channels, "img_size": size, "method": cfg.method},
        }
        for name in names:
            save_checkpoint(state, out / "checkpoints" / name)

    record: dict = {}
    sums: dict[str, torch.Tensor] = {}
    count, t0 = 0, time.perf_counter()
    for step in range(start + 1, cfg.steps + 1):
        losses = method.train_step(next_batch, step)
        method.sync_buffers()
        if method.ema:
            method.update_ema(step)
        bad = ~torch.stack([v.float() for v in losses.values()]).isfinite()
        flag = bad.any().float()
        if world > 1:
            dist.all_reduce(flag)
        if flag.item():
            name = list(losses)[int(bad.nonzero()[0])] if bad.any() else "(another rank)"
            log.close()
            raise TrainingDiverged(
                f"loss {name} became {losses[name].item() if bad.any() else 'NaN/Inf'} at step {step}; "
                f"training stopped, the last good checkpoint is kept in {out / 'checkpoints'}. "
                f"Try a lower learning rate (optim.g_lr / optim.d_lr) or a gradient penalty."
            )
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        log.advance()

        last = step == cfg.steps
        if step % cfg.log_every == 0 or last:
            elapsed = time.perf_counter() - t0
            record = {
                "step": step,
                **{k: float(v) / count for k, v in sums.items()},
                "steps_per_s": count / max(elapsed, 1e-9),
            }
            sums, count, t0 = {}, 0, time.perf_counter()
        else:
            record = {}
        if is_main and cfg.sample_every and (step % cfg.sample_every == 0 or last):
            save_sample_grid(
                method, out / "samples" / f"step_{step:07d}.png", num_classes, cfg.sample_classes, cfg.seed
            )
        if cfg.eval_every and (step % cfg.eval_every == 0 or last):
            scores = evaluate_during_training(method, data, cfg, out, step)
            if is_main and scores:
                record = {"step": step, **record, **scores}
                value = scores.get(cfg.best_metric)
                higher = cfg.best_metric in ("is", "labelacc", "precision", "recall", "density", "coverage")
                if value is not None and (best is None or (value > best["value"] if higher else value < best["value"])):
                    best = {"metric": cfg.best_metric, "value": value, "step": step}
                    checkpoint(step, ["best.pt"])
        at_checkpoint = step % cfg.ckpt_every == 0 or last
        if world > 1 and at_checkpoint:
            record = {"step": step, **record, "ddp_in_sync": ranks_in_sync(method), "world_size": world}
        if record:
            log.write(record)
        if at_checkpoint:
            names = ["last.pt"] + ([f"step_{step:07d}.pt"] if cfg.keep_checkpoints else [])
            checkpoint(step, names)
    log.close()
    return record


def ranks_in_sync(method) -> bool:
    """True when every rank holds the same weights (a float64 checksum of each network, compared)."""
    sums = torch.stack(
        [torch.stack([p.detach().double().sum() for p in net.parameters()]).sum() for net in method.nets.values()]
    ).cpu()
    gathered = [torch.zeros_like(sums) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, sums)
    return all(torch.equal(g, gathered[0]) for g in gathered)


def evaluate_during_training(method, data, cfg: TrainConfig, out: Path, step: int) -> dict:
    """Overall figures of ``cfg.eval_metrics`` for the current generator (rank 0 computes, others skip)."""
    if method.rank != 0:
        return {}
    from tailgan.metrics import evaluate
    from tailgan.metrics.evaluator import get_evaluator

    extractor = cfg.eval_feature
    if extractor == "evaluator":  # trained and cached on first use, so evaluation never stops a run
        if getattr(method, "_evaluator", None) is None:
            method._evaluator = get_evaluator(data.config, device=method.device, log=None)
        extractor = method._evaluator
    gen = TrainedGenerator(method, out, step, cfg.data)
    result = evaluate(
        gen,
        data,
        metrics=cfg.eval_metrics,
        ref=cfg.eval_ref,
        n=cfg.eval_n,
        extractor=extractor,
        device=method.device,
    )
    return {k: v for k, v in result.get("overall", {}).items() if isinstance(v, (int, float))}


def finish_distributed() -> None:
    """gloo workers may abort at exit after finishing: barrier, tear down, flush, leave at once."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def cmd_train(args: argparse.Namespace) -> int:
    if args.resume:
        cfg = load_run_config(args.resume)
        if args.steps:
            cfg.steps = args.steps
        if args.overrides:
            cfg = from_dict(TrainConfig, apply_overrides(to_dict(cfg), args.overrides))
        out = args.resume
    else:
        if not args.out:
            raise TailganError("give --out RUN (the run folder to write) or --resume RUN")
        cfg = make_config(args.method, args.config, args.data, args.root, args.overrides, steps=args.steps)
        out = args.out
    try:
        train(cfg, out, resume=bool(args.resume))
    except BaseException:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        raise
    print(f"run written to {out}")
    finish_distributed()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a GAN recipe on a long-tailed dataset")
    p.add_argument(
        "--method", help="method (ecogan, contragan, reacgan, cgan, acgan, ...) or preset (ecogan-dcgan, ...)"
    )
    p.add_argument("--data", help="dataset preset or source (default: digits_lt)")
    p.add_argument("--root", help="data folder (default: $TAILGAN_DATA)")
    p.add_argument("--steps", type=int, help="generator updates")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    p.add_argument(
        "overrides", nargs="*", help="key=value config overrides, e.g. optim.batch_size=32 sampling=balanced"
    )
    p.set_defaults(func=cmd_train)
