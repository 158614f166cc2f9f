"""``tailgan data info|export``: look at a long-tailed dataset, or write it out as an image folder."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from tailgan.config import apply_overrides, from_dict, to_dict

if TYPE_CHECKING:  # the commands import torch when they run, not `tailgan data --help`
    from tailgan.data.dataset import DataConfig, LongTailedData


def add_data_arguments(p: argparse.ArgumentParser, positional: bool = True) -> None:
    """The arguments every command that reads a dataset takes."""
    if positional:
        p.add_argument("spec", help="preset (fashion_mnist_lt, digits_lt, ...) or source (fashion_mnist, folder, ...)")
    p.add_argument("--root", help="folder holding the data (default: $TAILGAN_DATA)")
    p.add_argument("--download", action="store_true", help="let torchvision download the source (needs a network)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images (and report how many)")


def data_config_from_args(spec: str, args: argparse.Namespace, overrides: list[str] | None = None) -> DataConfig:
    from tailgan.data.dataset import DataConfig, resolve_data_config

    cfg = resolve_data_config(spec)
    d = to_dict(cfg)
    root = getattr(args, "root", None) or (os.environ.get("TAILGAN_DATA") if cfg.root is None else None)
    if root:
        d["root"] = root
    if getattr(args, "download", False):
        d["download"] = True
    if getattr(args, "skip_bad", False):
        d["skip_bad"] = True
    d = apply_overrides(d, [o.removeprefix("data.") for o in (overrides or [])])
    return from_dict(DataConfig, d, prefix="data.")


def plot_counts(data: LongTailedData, path: str | Path, log: bool = False) -> None:
    """Bar chart of the training split's per-class counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = data.train.counts()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(counts) + 1.5), 3.2))
    ax.bar(range(len(counts)), counts, color="#3b6ea8")
    ax.set_xticks(range(len(counts)))
    ax.set_xticklabels(data.classes, rotation=45 if len(counts) <= 30 else 90, ha="right", fontsize=8)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("training images" + (" (log)" if log else ""))
    ax.set_title(f"{data.config.preset or data.config.source}: imbalance ratio {data.manifest['imbalance_ratio']:.1f}")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cmd_info(args: argparse.Namespace) -> int:
    from tailgan.data.dataset import load_data, save_manifest

    data = load_data(data_config_from_args(args.spec, args, args.overrides))
    print(data.summary())
    m = data.manifest
    print(
        f"recipe: {m['recipe']['recipe']} (selection {m['selection']}, seed {m['seed']}); "
        f"fingerprint {m['fingerprint']}"
    )
    if args.manifest:
        save_manifest(m, args.manifest)
        print(f"manifest written to {args.manifest}")
    if args.plot:
        plot_counts(data, args.plot, log=args.log)
        print(f"class histogram written to {args.plot}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from tailgan.data.dataset import load_data
    from tailgan.data.folder import export_image_sets

    data = load_data(data_config_from_args(args.spec, args, args.overrides))
    splits = {"train": data.train}
    if len(data.test):
        splits["valid"] = data.test  # ECOGAN's layout calls the held-out split "valid"
    out = export_image_sets(splits, args.out, data.manifest, overwrite=args.overwrite, protected=[data.config.root])
    print(f"wrote {len(data.train)} train and {len(data.test)} valid images to {out} (lossless PNG)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect or export long-tailed datasets")
    dsub = p.add_subparsers(dest="data_command", required=True)

    info = dsub.add_parser("info", help="per-class counts, imbalance ratio and manifest summary")
    add_data_arguments(info)
    info.add_argument("overrides", nargs="*", help="data config overrides, e.g. recipe=exp imbalance_factor=50")
    info.add_argument("--plot", metavar="FILE.png", help="draw the class histogram")
    info.add_argument("--log", action="store_true", help="log-scale histogram")
    info.add_argument("--manifest", metavar="FILE.json", help="write the dataset manifest")
    info.set_defaults(func=cmd_info)

    export = dsub.add_parser("export", help="write the dataset as OUT/train/cls<c>/train<i>.png (+ OUT/valid/)")
    add_data_arguments(export)
    export.add_argument("out", help="output folder (must be empty or absent)")
    export.add_argument("overrides", nargs="*", help="data config overrides")
    export.add_argument("--overwrite", action="store_true", help="replace a non-empty OUT")
    export.set_defaults(func=cmd_export)
