"""``tailgan explain heatmaps|tsne``: what trained classifiers look at, on test images of a dataset.

Classifiers are given as checkpoint files in the format of :mod:`tailgan.nets.classifier_io` (or a
folder holding ``classifier.pt``). The images are the dataset's test split (real images only).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from tailgan.data.cli import add_data_arguments, data_config_from_args
from tailgan.errors import TailganError
from tailgan.outputs import check_output_file, is_explain_figure

if TYPE_CHECKING:  # torch and the data load when a command runs, not for `tailgan explain --help`
    import torch
    from torch import nn

    from tailgan.data.dataset import LongTailedData
    from tailgan.data.images import ImageSet

CHECKPOINT_NAME = "classifier.pt"


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or ``DIR/classifier.pt`` for a folder."""
    path = Path(path)
    if path.is_dir():
        if (path / CHECKPOINT_NAME).is_file():
            return path / CHECKPOINT_NAME
        raise TailganError(
            f"{path} holds no {CHECKPOINT_NAME}: `tailgan classify --out` does not keep model weights; pass a "
            f"checkpoint written by tailgan.nets.classifier_io.save_classifier"
        )
    if not path.is_file():
        raise TailganError(f"classifier checkpoint {path} does not exist")
    return path


def parse_classifiers(items: list[str]) -> dict[str, Path]:
    """``[LABEL=]PATH`` items -> {label: checkpoint}; the label defaults to the file's (or folder's) name."""
    out: dict[str, Path] = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = "", item
        ckpt = resolve_checkpoint(path)
        label = label or (ckpt.parent.name if ckpt.name == CHECKPOINT_NAME else ckpt.stem)
        if label in out:
            raise TailganError(f"two classifiers are labelled {label!r}; name them with LABEL=PATH")
        out[label] = ckpt
    return out


def load_classifiers(items: list[str], data: LongTailedData, device: str) -> dict[str, nn.Module]:
    """Load each classifier and check that it was made for ``data``'s classes and channels."""
    from tailgan.nets.classifier_io import load_classifier

    models = {}
    channels = data.test.images.shape[1]
    for label, ckpt in parse_classifiers(items).items():
        model, meta = load_classifier(ckpt, device)
        if meta["num_classes"] != data.num_classes:
            raise TailganError(f"{ckpt} classifies {meta['num_classes']} classes but the data has {data.num_classes}")
        if meta.get("classes") and list(meta["classes"]) != list(data.classes):
            raise TailganError(f"{ckpt} was trained on classes {meta['classes']}, not {data.classes}")
        if meta["in_channels"] != channels:
            raise TailganError(
                f"{ckpt} takes {meta['in_channels']}-channel images but the data has {channels}; "
                f"add the data override channels={meta['in_channels']}"
            )
        models[label] = model
    return models


def select_test_images(test: ImageSet, indices: list[int] | None, per_class: int) -> torch.Tensor:
    """Indices into the test split: ``indices`` as given, else the first ``per_class`` images of each class."""
    import torch

    n = len(test)
    if indices:
        bad = [i for i in indices if not 0 <= i < n]
        if bad:
            raise TailganError(f"--index {bad[0]} is outside the test split (0 .. {n - 1})")
        return torch.tensor(indices, dtype=torch.long)
    if per_class < 1:
        raise TailganError(f"--per-class {per_class}: give at least 1")
    picked = [torch.nonzero(test.labels == c).flatten()[:per_class] for c in range(test.num_classes)]
    return torch.cat(picked)


def _load_data(args: argparse.Namespace) -> LongTailedData:
    from tailgan.data.dataset import load_data

    data = load_data(data_config_from_args(args.data, args, args.overrides))
    if len(data.test) == 0:
        raise TailganError(f"{args.data} has no test split to explain; use a source with a test split")
    return data


def _inputs(args: argparse.Namespace) -> list[str]:
    """The files and folders this command reads, which its --out must never replace."""
    items = args.classifier if isinstance(args.classifier, list) else [args.classifier]
    return [item.partition("=")[2] or item for item in items] + [args.root]


def cmd_heatmaps(args: argparse.Namespace) -> int:
    from tailgan.data.images import to_float
    from tailgan.explain.heatmaps import METHODS, explain_heatmaps  # grad-cam loads only when used

    check_output_file(args.out, args.overwrite, is_explain_figure, _inputs(args), ours="a figure of tailgan explain")

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise TailganError(f"--methods {args.methods!r}: use a comma-separated subset of {', '.join(METHODS)}")
    data = _load_data(args)
    models = load_classifiers(args.classifier, data, args.device)
    idx = select_test_images(data.test, args.index, args.per_class)
    images = to_float(data.test.images[idx]).to(args.device)
    labels = data.test.labels[idx]
    targets = labels if args.target == "true" else None
    rows = [f"{data.classes[int(y)]} #{int(i)}" for i, y in zip(idx, labels)]
    explain_heatmaps(
        models, images, args.out, methods, targets, rows, n_masks=args.rise_masks, grid=args.rise_grid, seed=args.seed
    )
    print(f"heat maps of {len(idx)} test image(s) x {len(models)} classifier(s) written to {args.out}")
    return 0


def load_fake_folder(folder: str | Path, data: LongTailedData) -> ImageSet:
    """Generated images ``DIR/<class name>/*`` (e.g. ``tailgan sample`` output), fitted to the test images'
    size and channels and labelled with the dataset's class indices."""
    import torch

    from tailgan.data.dataset import DataConfig, load_data
    from tailgan.data.images import ImageSet, fit_images

    folder = Path(folder)
    if not folder.is_dir():
        raise TailganError(f"generated image folder {folder} does not exist")
    like = data.test.images
    fake = load_data(
        DataConfig(source="folder", root=str(folder), resolution=like.shape[-1], channels=like.shape[1])
    ).train
    unknown = [n for n in fake.classes if n not in data.classes]
    if unknown:
        raise TailganError(f"class folder {unknown[0]!r} in {folder} is not a class of the data ({data.classes})")
    labels = torch.tensor([data.classes.index(fake.classes[y]) for y in fake.labels.tolist()], dtype=torch.long)
    return ImageSet(fit_images(fake.images, like.shape[-1], like.shape[1]), labels, list(data.classes))


def cmd_tsne(args: argparse.Namespace) -> int:
    from tailgan.data.images import to_float
    from tailgan.explain.tsne import plot_tsne  # scikit-learn's t-SNE loads only when used

    check_output_file(args.out, args.overwrite, is_explain_figure, _inputs(args), ours="a figure of tailgan explain")

    data = _load_data(args)
    label, model = next(iter(load_classifiers([args.classifier], data, args.device).items()))
    split = data.test if args.split == "test" else data.train
    idx = select_test_images(split, None, args.per_class)
    fake_images = fake_labels = None
    if args.fake:
        fake = load_fake_folder(args.fake, data)
        keep = select_test_images(fake, None, args.per_class)
        fake_images, fake_labels = to_float(fake.images[keep]).to(args.device), fake.labels[keep]
    emb = plot_tsne(
        model,
        to_float(split.images[idx]).to(args.device),
        split.labels[idx],
        args.out,
        fake_images,
        fake_labels,
        data.classes,
        seed=args.seed,
        title=f"t-SNE of {label}'s penultimate features ({args.split} split: o real, x generated)",
    )
    print(f"t-SNE of {len(emb)} points written to {args.out}")
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="preset or source of the test images (as the classifier's)")
    add_data_arguments(p, positional=False)
    p.add_argument("overrides", nargs="*", help="data config overrides, e.g. classes=7,9 channels=1")
    p.add_argument("--out", required=True, metavar="FIG.png", help="the PNG to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``explain heatmaps`` and ``explain tsne`` to the tailgan command line."""
    p = sub.add_parser("explain", help="heat maps and t-SNE of what trained classifiers look at")
    esub = p.add_subparsers(dest="explain_command", required=True)

    h = esub.add_parser("heatmaps", help="Grad-CAM and RISE maps of test images, classifiers side by side")
    h.add_argument(
        "--classifier",
        action="append",
        required=True,
        metavar="[LABEL=]FILE.pt",
        help="a classifier checkpoint (or a folder holding classifier.pt); repeat to compare classifiers",
    )
    _common(h)
    h.add_argument("--index", type=int, nargs="+", help="test-split indices of the images to explain")
    h.add_argument("--per-class", type=int, default=1, help="without --index: the first N test images per class")
    h.add_argument("--methods", default="gradcam,rise", help="comma-separated: gradcam, rise (default both)")
    h.add_argument("--target", default="true", choices=("true", "pred"), help="explain the true or predicted class")
    h.add_argument("--rise-masks", type=int, default=2000, help="RISE: number of random masks")
    h.add_argument("--rise-grid", type=int, default=7, help="RISE: mask grid side s")
    h.set_defaults(func=cmd_heatmaps)

    t = esub.add_parser("tsne", help="t-SNE of a classifier's penultimate features, real vs generated points")
    t.add_argument("--classifier", required=True, metavar="FILE.pt", help="a classifier checkpoint (or its folder)")
    _common(t)
    t.add_argument("--split", default="test", choices=("test", "train"), help="real images from this split")
    t.add_argument("--per-class", type=int, default=100, help="at most N real (and N generated) images per class")
    t.add_argument("--fake", metavar="DIR", help="generated images DIR/<class name>/* to mark beside the real ones")
    t.set_defaults(func=cmd_tsne)
