"""``tailgan train``: a run folder, a recipe and the engine's trainer, composed.

Read top to bottom: config -> run folder -> data -> recipe (networks + optimizers) -> resume ->
``Trainer`` with its callbacks (divergence guard, sample grids, evaluation, sync check, log, checkpoints).
Under ``torchrun`` each process trains on its own batches, gradients are averaged over processes, and
only rank 0 writes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from tailgan.config import apply_overrides, from_dict, save_yaml, to_dict
from tailgan.data import load_data, save_manifest
from tailgan.engine import (
    Checkpoints,
    DataShape,
    DivergenceGuard,
    Evaluation,
    LastRecord,
    RunContext,
    RunLog,
    SampleGrid,
    SyncCheck,
    TrainConfig,
    TrainedGenerator,
    Trainer,
    TrainingDiverged,
    build_method,
    checkpoint_path,
    init_distributed,
    load_run_config,
    make_config,
)
from tailgan.engine.distributed import abort_distributed, finish_distributed
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.metrics import evaluate
from tailgan.metrics.evaluate import higher_is_better
from tailgan.metrics.evaluator import cache_root, get_evaluator

__all__ = ["TrainConfig", "TrainingDiverged", "build_method", "make_config", "load_run_config", "train"]


def evaluation_during_training(cfg: TrainConfig, out: Path):
    """``evaluate(trainer)``: overall figures of ``cfg.eval_metrics`` for the current generator (rank 0)."""

    def run(trainer: Trainer) -> dict:
        ctx, method = trainer.ctx, trainer.method
        if not ctx.is_main:
            return {}
        extractor = ctx.evaluator() if cfg.eval_feature == "evaluator" else cfg.eval_feature
        gen = TrainedGenerator(method, out, trainer.phase_step, cfg.data)
        result = evaluate(
            gen, trainer.data, metrics=cfg.eval_metrics, ref=cfg.eval_ref, n=cfg.eval_n, extractor=extractor,
            device=ctx.device,
        )  # fmt: skip
        return {k: v for k, v in result.get("overall", {}).items() if isinstance(v, (int, float))}

    return run


def lazy_evaluator(data_config, device: torch.device):
    """The run's evaluator, trained and cached on first use, so evaluation never stops a run."""
    held: dict = {}

    def get():
        if "ev" not in held:
            held["ev"] = get_evaluator(data_config, device=device, log=None)
        return held["ev"]

    return get


def train(cfg: TrainConfig, out: str | Path, resume: bool = False) -> dict:
    """Train ``cfg`` into run folder ``out`` (or continue it); returns the last logged record."""
    out = Path(out)
    rank, world, device = init_distributed(cfg.device)
    is_main = rank == 0
    ckpts = out / "checkpoints"
    held = [p for p in ckpts.iterdir() if p.name != "pretrain.pt"] if ckpts.exists() else []
    if not resume and is_main and held:  # a pre-training checkpoint alone is reused, not a run
        raise TailganError(f"{out} already holds a run; continue it with --resume {out} or choose another --out")

    data = load_data(cfg.data)
    images = data.train.images
    shape = DataShape(data.num_classes, images.shape[1], images.shape[-1], tuple(data.train.counts()))
    ctx = RunContext(
        device=device, rank=rank, world_size=world, run_dir=out, cache_dir=cache_root(),
        evaluator=lazy_evaluator(data.config, device),
    )  # fmt: skip
    method = build_method(cfg, shape, ctx)
    if not resume and is_main:
        out.mkdir(parents=True, exist_ok=True)
        save_yaml(cfg, out / "config.yaml")
        save_manifest(data.manifest, out / "data_manifest.json")

    log = RunLog(out, is_main, cfg.steps)
    ctx.log = log.write
    last = LastRecord()
    callbacks = [
        DivergenceGuard(),
        SampleGrid(out, cfg.sample_every, cfg.sample_classes, cfg.seed),
        Evaluation(evaluation_during_training(cfg, out), cfg.eval_every, cfg.best_metric,
                   higher_is_better(cfg.best_metric), out),
        SyncCheck(cfg.ckpt_every),
        log,
        last,
        Checkpoints(out, cfg.ckpt_every, cfg.keep_checkpoints),
    ]  # fmt: skip
    trainer = Trainer(method, data, ctx, callbacks)
    if resume:
        trainer.load_state_dict(load_checkpoint(checkpoint_path(out, "last"), device))
        if trainer.remaining_steps() <= 0:
            raise TailganError(
                f"{out} is already at step {trainer.phase_step} >= steps={cfg.steps}; pass a larger --steps to continue"
            )
    try:
        trainer.run()
    finally:
        log.close()
    return last.record


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
        abort_distributed()
        raise
    print(f"run written to {out}")
    finish_distributed()
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a recipe (GAN, ...) on a long-tailed dataset")
    p.add_argument(
        "--method", help="method (ecogan, contragan, reacgan, cgan, acgan, ...) or preset (ecogan-dcgan, ...)"
    )
    p.add_argument("--data", help="dataset preset or source (default: digits_lt)")
    p.add_argument("--root", help="data folder (default: $TAILGAN_DATA)")
    p.add_argument("--steps", type=int, help="steps of the recipe's main phase (generator updates for a GAN)")
    p.add_argument("--out", help="run folder to create")
    p.add_argument("--config", help="YAML config file")
    p.add_argument("--resume", metavar="RUN", help="continue the run in RUN from its last checkpoint")
    p.add_argument(
        "overrides", nargs="*", help="key=value config overrides, e.g. optim.batch_size=32 sampling=balanced"
    )
    p.set_defaults(func=cmd_train)
