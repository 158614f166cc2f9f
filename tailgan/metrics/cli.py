"""``tailgan eval`` (a run, or two image folders) and ``tailgan evaluator train``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tailgan.errors import TailganError
from tailgan.io import atomic_write_text
from tailgan.outputs import check_output_file

# the commands import torch, the data, the engine and the evaluator when they run, not `tailgan eval --help`


def _load_folder(directory: str, resolution: int | None, channels: int | None, classes: list[str] | None = None):
    """``DIR/<class>/*`` (or ``DIR/train/<class>/*``, the layout ``tailgan sample`` writes) as an ImageSet."""
    from tailgan.data import load_image_folder

    path = Path(directory)
    if not path.is_dir():
        raise TailganError(f"image folder {path} does not exist")
    if (path / "train").is_dir():
        path = path / "train"
    return load_image_folder(path, resolution, channels, fit="resize", classes=classes)


def write_eval(run: Path, step: int, checkpoint: str, result: dict) -> Path:
    """Merge ``result`` into ``RUN/eval/<step>.json`` under ``results["<ref>/<extractor>"]``."""
    path = run / "eval" / f"{step}.json"
    doc = {"run": str(run), "step": step, "checkpoint": checkpoint, "results": {}}
    if path.is_file():
        try:
            old = json.loads(path.read_text())
            if isinstance(old.get("results"), dict):
                doc["results"] = old["results"]
        except json.JSONDecodeError:
            pass  # a damaged file is replaced
    doc["results"][f"{result['ref']}/{result['extractor']}"] = result
    atomic_write_text(path, json.dumps(doc, indent=1))
    return path


def _is_eval_json(path: Path) -> bool:
    """A result this command wrote (its keys), which ``--out`` may replace."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and ("overall" in doc or "metrics" in doc)


def cmd_eval(args: argparse.Namespace) -> int:
    from tailgan.data import load_data, resolve_data_config
    from tailgan.engine import load_generator
    from tailgan.metrics.evaluate import compare_images, evaluate, format_table
    from tailgan.metrics.evaluator import get_evaluator, load_evaluator_from

    folders = args.real is not None or args.fake is not None
    if folders and (args.real is None or args.fake is None):
        raise TailganError("compare two folders with both --real DIR and --fake DIR")
    if folders == (args.run is not None):
        raise TailganError("give either a run folder (tailgan eval RUN) or --real DIR --fake DIR")
    if args.out:  # before any work: never over a file of an input, another file only with --overwrite
        check_output_file(args.out, args.overwrite, _is_eval_json, [args.run, args.real, args.fake])
    common = dict(
        seed=args.seed, device=args.device, inception_weights=args.inception_weights, batch_size=args.batch_size
    )
    feature = args.feature
    if args.evaluator:
        if feature == "inception":
            raise TailganError("--evaluator gives the evaluator features; drop --feature inception")
        feature = load_evaluator_from(args.evaluator, args.device)
    if folders:
        real = _load_folder(args.real, args.resolution, None)
        fake = _load_folder(args.fake, real.images.shape[-1], real.images.shape[1], classes=real.classes)
        # the evaluator for images of this size: trained on the source fitted the same way
        data_config = (
            resolve_data_config(args.data, args.root, resolution=real.images.shape[-1], channels=real.images.shape[1])
            if args.data
            else None
        )
        result = compare_images(
            real,
            fake,
            metrics=args.metrics or "fid,kid,prdc",
            extractor=feature or "inception",
            data_config=data_config,
            **common,
        )
        result.update(real=str(args.real), fake=str(args.fake))
        print(format_table(result))
    else:
        run = Path(args.run)
        g = load_generator(run, checkpoint=args.checkpoint, device=args.device)
        g.require_images("tailgan eval")
        data = load_data(g.data_config, root=args.root) if args.root else load_data(g.data_config)
        if (feature or "evaluator") == "evaluator":  # the evaluator at the run's pixels, trained on first use
            feature = get_evaluator(data.config, device=args.device)
        result = evaluate(
            g, data, metrics=args.metrics or "all", ref=args.ref, n=args.n, extractor=feature or "evaluator",
            show_progress=True, **common,
        )  # fmt: skip
        result.update(run=str(run), checkpoint=args.checkpoint, step=g.step)
        print(format_table(result))
        print(f"written to {write_eval(run, g.step, args.checkpoint, result)}")
    if args.out:
        atomic_write_text(args.out, json.dumps(result, indent=1))
    return 0


def cmd_evaluator_train(args: argparse.Namespace) -> int:
    from tailgan.data import load_data, resolve_data_config
    from tailgan.engine import load_run_config
    from tailgan.metrics.evaluator import (
        EvaluatorConfig,
        evaluator_data_config,
        evaluator_dir,
        load_evaluator_from,
        train_evaluator,
    )

    overrides = {k: v for k, v in (("resolution", args.resolution), ("channels", args.channels)) if v is not None}
    if args.for_run:  # the source and pixels of a training run
        if args.data:
            raise TailganError("give either a dataset or --for RUN, not both")
        run_data = load_run_config(args.for_run).data
        root = args.root or run_data.root
        config = evaluator_data_config(run_data.replace(root=root, **overrides))
    elif args.data:
        config = evaluator_data_config(resolve_data_config(args.data, args.root, **overrides))
    else:
        raise TailganError("say which evaluator to train: a dataset (e.g. tailgan evaluator train mnist) or --for RUN")
    data = load_data(config)
    cfg = EvaluatorConfig(epochs=args.epochs, seed=args.seed)
    folder = evaluator_dir(data, cfg, args.cache_dir)
    if (folder / "evaluator.json").is_file() and not args.force:
        ev = load_evaluator_from(folder)
        print(
            f"evaluator for {config.source} already trained: test accuracy {ev.info['test_accuracy']:.4f} "
            f"({folder}); --force trains it again"
        )
        return 0
    print(data.summary())
    train_evaluator(data, cfg, device=args.device, cache_dir=args.cache_dir)
    if args.epochs != EvaluatorConfig.epochs or args.seed != EvaluatorConfig.seed:
        print(f"not the default training: pass --evaluator {folder} to tailgan eval to use it")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a run's generator (FID, KID, IS, PRDC, intra-class FID, MS-SSIM, label accuracy) "
        "or compare two image folders",
        description="Evaluate a run (writes RUN/eval/<step>.json, results keyed '<ref>/<feature>') or compare "
        "--real DIR with --fake DIR. Figures are given overall and per class.",
    )
    p.add_argument("run", nargs="?", help="run folder written by tailgan train")
    p.add_argument("--checkpoint", default="last", help="last | best | step number | file (default: last)")
    p.add_argument("--real", help="folder of real images (<class>/*), compared with --fake")
    p.add_argument("--fake", help="folder of generated images, same class folder names as --real")
    p.add_argument(
        "--metrics",
        help="comma-separated: fid,kid,is,prdc,ifid,msssim,labelacc or all "
        "(default: all for a run, fid,kid,prdc for folders)",
    )
    p.add_argument(
        "--ref",
        choices=("test", "train-lt"),
        default="test",
        help="test: balanced test split, equal fakes per class; train-lt: the long-tailed training "
        "set, fakes with its labels (ECOGAN)",
    )
    p.add_argument("--n", type=int, help="number of fake images (default: as many as the reference)")
    p.add_argument(
        "--feature",
        choices=("evaluator", "inception"),
        help="feature extractor (default: evaluator for a run, inception for folders)",
    )
    p.add_argument(
        "--inception-weights",
        help="FID Inception weights file "
        "(default: $TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth)",
    )
    p.add_argument("--data", help="folders with --feature evaluator or labelacc: the dataset whose evaluator to use")
    p.add_argument(
        "--evaluator",
        help="use this evaluator folder (tailgan evaluator train prints it) instead of the cached one for the data",
    )
    p.add_argument("--root", help="data root (overrides the run's)")
    p.add_argument("--resolution", type=int, help="folders: resize the real images to this size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--out", help="also write the result as JSON to this file")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out that is not an eval result")
    p.set_defaults(func=cmd_eval)

    e = sub.add_parser("evaluator", help="the classifier behind --feature evaluator")
    esub = e.add_subparsers(dest="evaluator_command", required=True)
    t = esub.add_parser("train", help="train (and cache) the evaluator on a dataset's full, balanced training split")
    t.add_argument(
        "data", nargs="?", help="source or preset: fashion_mnist, mnist, cifar10, cifar100, digits, folder, ..."
    )
    t.add_argument("--for", dest="for_run", metavar="RUN", help="the evaluator at the pixels of this training run")
    t.add_argument("--root", help="folder holding the dataset")
    t.add_argument("--resolution", type=int, help="the run's data.resolution (default: native size)")
    t.add_argument("--channels", type=int, choices=(1, 3), help="the run's data.channels (default: native)")
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--cache-dir", help="cache folder (default: $TAILGAN_CACHE or ~/.cache/tailgan)")
    t.add_argument("--force", action="store_true", help="train again even when a cached evaluator exists")
    t.set_defaults(func=cmd_evaluator_train)
