"""``evaluate``: a class-conditional generator against real images, overall and per class.

Protocols (``ref``):

* ``"test"``: the reference is the balanced test split; the generator makes the same number of images
  for every class (``n // C`` each; by default as many as the test split has, e.g. 1,000 per
  Fashion-MNIST class).
* ``"train-lt"``: ECOGAN's protocol. The reference is the long-tailed training split and the fakes
  carry its labels, one per training image (``n`` draws that many of its labels, seeded).

Fakes are drawn in chunks of ``GEN_CHUNK`` labels, chunk j with ``generator.sample(labels, seed=seed + j)``,
and quantised to uint8 like the real images before any feature is extracted. Reference features are
cached under ``$TAILGAN_CACHE/refs/`` keyed by the dataset fingerprint, the split and the extractor's key.

Figures (``metrics``): ``fid``; ``kid`` (+ ``kid_std``); ``is`` (+ ``is_std``; 10 splits overall, one
per class); ``prdc`` (``precision``, ``recall``, ``density``, ``coverage``, k = 5); ``ifid`` (the mean of
the per-class FIDs); ``msssim`` (mean MS-SSIM of random pairs of fakes of one class, with
``msssim_real`` for real pairs; overall = mean over classes); ``labelacc`` (share of fakes that the
evaluator classifies as the class they were generated for, with ``labelacc_real`` on the reference).
Each figure is given overall and per class. A class with fewer images than the feature dimension
gets its FID with a warning in ``result["warnings"]``: KID is the recommended per-class figure.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import Tensor

from tailgan.data import DataConfig, ImageSet, LongTailedData, to_uint8
from tailgan.errors import TailganError
from tailgan.metrics import stats
from tailgan.metrics.evaluator import cache_root, load_evaluator
from tailgan.metrics.features import FeatureExtractor, InceptionExtractor, extract
from tailgan.progress import progress
from tailgan.registry import Registry
from tailgan.version import __version__

METRICS = ("fid", "kid", "is", "prdc", "ifid", "msssim", "labelacc")
REFS = ("test", "train-lt")
GEN_CHUNK = 1000  # labels per generator call; chunk j uses seed + j


def parse_metrics(metrics: str | Sequence[str]) -> list[str]:
    """``"fid,kid"`` or a sequence of names -> a validated list (``"all"`` = every metric)."""
    names = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [m.strip().lower() for m in names if m.strip()]
    if names == ["all"]:
        return list(METRICS)
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise TailganError(f"unknown metric {unknown[0] if unknown else '(none)'!r}; choose from {', '.join(METRICS)}")
    return names


def build_extractor(
    feature: str | FeatureExtractor,
    data_config: DataConfig | None = None,
    device: str | torch.device = "cpu",
    inception_weights: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> FeatureExtractor:
    """``"evaluator"`` (the cached evaluator of ``data_config``'s source), ``"inception"``, or an extractor as is."""
    if isinstance(feature, FeatureExtractor):
        return feature.to(device).eval()
    if feature == "inception":
        return InceptionExtractor(inception_weights).to(device)
    if feature == "evaluator":
        if data_config is None:
            raise TailganError("--feature evaluator needs the dataset the evaluator was trained on (--data SOURCE)")
        return load_evaluator(data_config, device=device, cache_dir=cache_dir)
    raise TailganError(f"unknown feature extractor {feature!r}; use 'evaluator' or 'inception'")


def extractor_and_classifier(
    metrics: list[str],
    extractor: str | FeatureExtractor,
    data_config: DataConfig | None,
    device: str | torch.device,
    inception_weights: str | os.PathLike | None,
    cache_dir: str | os.PathLike | None,
    classifier: FeatureExtractor | None,
) -> tuple[FeatureExtractor, FeatureExtractor | None]:
    """The feature extractor, and the classifier behind label accuracy (``classifier``, else the evaluator)."""
    ext = build_extractor(extractor, data_config, device, inception_weights, cache_dir)
    if "labelacc" not in metrics:
        return ext, None
    clf = classifier or (
        ext if ext.name == "evaluator" else build_extractor("evaluator", data_config, device, cache_dir=cache_dir)
    )
    return ext, clf.to(device).eval()


def result_document(
    metrics: list[str], ext: FeatureExtractor, clf: FeatureExtractor | None, real: Any, fake: Any, seed: int,
    settings: dict, body: dict, t0: float, **fields: Any,
) -> dict[str, Any]:  # fmt: skip
    """The JSON document of an evaluation: what was measured with what, the figures, versions and time."""
    doc = {
        **fields,
        "metrics": metrics,
        "extractor": ext.name,
        "extractor_info": ext.info,
        "classifier": clf.info if clf is not None else None,
        "num_real": len(real),
        "num_fake": len(fake),
        "seed": seed,
        "settings": settings,
        **body,
        "versions": versions(),
        "seconds": time.perf_counter() - t0,
    }
    if any(x is not None and x.info.get("train_balanced") is False for x in (ext, clf)):
        doc["warnings"] = [*doc.get("warnings", []), (
            "the evaluator was trained on this data's long-tailed training images (no balanced training split): "
            "its recognition of the rare classes (labelacc_real per class) bounds their label accuracy"
        )]  # fmt: skip
    return doc


@dataclass
class ImageFeatures:
    """What the metrics need of one image set: extractor features and logits, labels, evaluator logits
    (for label accuracy) and a few uint8 images per class (for MS-SSIM)."""

    features: Tensor
    logits: Tensor
    labels: Tensor
    class_logits: Tensor | None = None
    msssim_images: dict[int, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def of_class(self, c: int) -> ImageFeatures:
        m = self.labels == c
        cl = self.class_logits[m] if self.class_logits is not None else None
        return ImageFeatures(self.features[m], self.logits[m], self.labels[m], cl)


def reference_features(
    extractor: FeatureExtractor,
    images: ImageSet,
    cache_tag: str | None = None,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Tensor, Tensor]:
    """(features, logits) of real images, cached under ``refs/`` when ``cache_tag`` names the image set."""
    if cache_tag is None:
        return extract(extractor, images.images, batch_size, device)
    digest = hashlib.sha256(f"{cache_tag}|{extractor.key}".encode()).hexdigest()[:24]
    path = cache_root(cache_dir) / "refs" / f"{digest}.pt"
    if path.is_file():
        try:
            cached = torch.load(path, map_location="cpu", weights_only=True)
            if torch.equal(cached["labels"], images.labels):
                return cached["features"], cached["logits"]
        except Exception:  # a damaged cache entry is recomputed and replaced
            pass
    features, logits = extract(extractor, images.images, batch_size, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(
            {
                "features": features,
                "logits": logits,
                "labels": images.labels.clone(),
                "tag": cache_tag,
                "extractor": extractor.key,
            },
            tmp,
        )
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return features, logits


def fake_labels_for(ref: str, reference: ImageSet, num_classes: int, n: int | None = None, seed: int = 0) -> Tensor:
    """The labels the generator is asked for under protocol ``ref`` (see the module docstring)."""
    if ref == "test":
        per_class = (len(reference) if n is None else n) // num_classes
        if per_class < 1:
            raise TailganError(f"n={n} gives no image per class; use n >= {num_classes} (one per class)")
        return torch.arange(num_classes).repeat_interleave(per_class)
    labels = reference.labels
    if n is None or n == len(labels):
        return labels.clone()
    if n < 1:
        raise TailganError(f"n={n} must be a positive number of images")
    gen = torch.Generator().manual_seed(seed)
    if n < len(labels):
        return labels[torch.randperm(len(labels), generator=gen)[:n]]
    return labels[torch.randint(len(labels), (n,), generator=gen)]  # more than the set: draw with replacement


def _msssim_picks(labels: Tensor, per_class: int, seed: int) -> dict[int, Tensor]:
    """For each class, ``per_class`` random indices of its images (seeded)."""
    gen = torch.Generator().manual_seed(seed)
    picks = {}
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().flatten()
        picks[c] = idx[torch.randperm(len(idx), generator=gen)[:per_class]]
    return picks


def _fake_features(
    generator: Any,
    labels: Tensor,
    extractor: FeatureExtractor,
    classifier: FeatureExtractor | None,
    image_shape: tuple[int, ...],
    seed: int,
    device: str | torch.device,
    batch_size: int,
    msssim_per_class: int,
    show_progress: bool = False,
) -> ImageFeatures:
    feats, logits, class_logits = [], [], []
    bar = progress(len(labels), "eval: generate and extract", unit="img") if show_progress else None
    # the first images of each class are as random as any (they are i.i.d. given the label)
    keep = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        keep[(labels == c).nonzero().flatten()[:msssim_per_class]] = True
    kept: list[Tensor] = []
    for j, start in enumerate(range(0, len(labels), GEN_CHUNK)):
        y = labels[start : start + GEN_CHUNK]
        images = to_uint8(generator.sample(y, seed=seed + j, batch_size=batch_size)).cpu()
        if tuple(images.shape[1:]) != tuple(image_shape):
            raise TailganError(
                f"the generator makes {tuple(images.shape[1:])} images but the reference images are "
                f"{tuple(image_shape)}; load the data with the run's data config (generator.data_config)"
            )
        f, lg = extract(extractor, images, batch_size, device)
        feats.append(f)
        logits.append(lg)
        if classifier is not None:
            class_logits.append(lg if classifier is extractor else extract(classifier, images, batch_size, device)[1])
        kept.append(images[keep[start : start + len(y)]])
        if bar is not None:
            bar.update(len(y))
    if bar is not None:
        bar.close()
    kept_labels = labels[keep]
    kept_images = torch.cat(kept)
    return ImageFeatures(
        torch.cat(feats),
        torch.cat(logits),
        labels.clone(),
        torch.cat(class_logits) if class_logits else None,
        {c: kept_images[kept_labels == c] for c in kept_labels.unique().tolist()},
    )


def _clean(v: Any) -> Any:
    """JSON-safe numbers: NaN / inf -> None."""
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


# the figures of one real set against one fake set, one function per metric (tailgan.registry's one style);
# ifid and msssim are computed per class / on images by ``score``
FIGURES: Registry = Registry("metric")


@FIGURES.register("fid")
def _fid(real: ImageFeatures, fake: ImageFeatures, o: Any) -> dict[str, Any]:
    return {"fid": stats.fid(real.features, fake.features) if min(len(real), len(fake)) >= 2 else None}


@FIGURES.register("kid")
def _kid(real: ImageFeatures, fake: ImageFeatures, o: Any) -> dict[str, Any]:
    if min(len(real), len(fake)) < 2:
        return {"kid": None, "kid_std": None}
    kid, std = stats.kid(real.features, fake.features, o.kid_subsets, o.kid_subset_size, seed=o.seed)
    return {"kid": kid, "kid_std": std}


@FIGURES.register("is")
def _is(real: ImageFeatures, fake: ImageFeatures, o: Any) -> dict[str, Any]:
    if len(fake) < o.is_splits:
        return {"is": None, "is_std": None}
    value, std = stats.inception_score(fake.logits, splits=o.is_splits, seed=o.seed)
    return {"is": value, "is_std": std}


@FIGURES.register("prdc")
def _prdc(real: ImageFeatures, fake: ImageFeatures, o: Any) -> dict[str, Any]:
    if min(len(real), len(fake)) > o.prdc_k:
        return stats.prdc(real.features, fake.features, k=o.prdc_k)
    return dict.fromkeys(("precision", "recall", "density", "coverage"))  # too few points for k neighbours


@FIGURES.register("labelacc")
def _labelacc(real: ImageFeatures, fake: ImageFeatures, o: Any) -> dict[str, Any]:
    return {"labelacc": stats.label_accuracy(fake.class_logits, fake.labels) if len(fake) else None,
            "labelacc_real": stats.label_accuracy(real.class_logits, real.labels) if len(real) else None}  # fmt: skip


def _figures(
    real: ImageFeatures,
    fake: ImageFeatures,
    metrics: list[str],
    is_splits: int,
    kid_subsets: int,
    kid_subset_size: int,
    prdc_k: int,
    seed: int,
) -> dict[str, Any]:
    """Every requested figure for one real set and one fake set (the whole data or one class)."""
    o = SimpleNamespace(is_splits=is_splits, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size,
                        prdc_k=prdc_k, seed=seed)  # fmt: skip
    wanted = set(metrics) | ({"fid"} if "ifid" in metrics else set())
    out: dict[str, Any] = {}
    for name in FIGURES:
        if name in wanted:
            out.update(FIGURES.get(name)(real, fake, o))
    return out


def score(
    real: ImageFeatures,
    fake: ImageFeatures,
    metrics: Sequence[str],
    classes: Sequence[str],
    *,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = 5,
    msssim_pairs: int = 100,
    seed: int = 0,
) -> dict[str, Any]:
    """``{"overall": {...}, "per_class": [...], "warnings": [...]}`` for extracted real and fake sets."""
    metrics = parse_metrics(metrics)
    opts = dict(kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, prdc_k=prdc_k, seed=seed)
    overall = {"num_real": len(real), "num_fake": len(fake)}
    overall.update(_figures(real, fake, metrics, is_splits=is_splits, **opts))
    per_class = []
    for c, name in enumerate(classes):
        r, f = real.of_class(c), fake.of_class(c)
        row: dict[str, Any] = {"class": c, "name": name, "num_real": len(r), "num_fake": len(f)}
        row.update(_figures(r, f, metrics, is_splits=1, **opts))
        if "msssim" in metrics:
            row["msssim"] = stats.mean_msssim(fake.msssim_images.get(c, fake.features[:0]), msssim_pairs, seed)
            row["msssim_real"] = stats.mean_msssim(real.msssim_images.get(c, real.features[:0]), msssim_pairs, seed)
        per_class.append({k: _clean(v) for k, v in row.items()})
    if "ifid" in metrics:
        values = [row["fid"] for row in per_class if row.get("fid") is not None]
        overall["ifid"] = sum(values) / len(values) if values else None
    if "msssim" in metrics:
        for key in ("msssim", "msssim_real"):
            values = [row[key] for row in per_class if row.get(key) is not None]
            overall[key] = sum(values) / len(values) if values else None
    if "fid" not in metrics:  # fid was computed only as the per-class part of ifid
        overall.pop("fid", None)
    return {
        "overall": {k: _clean(v) for k, v in overall.items()},
        "per_class": per_class,
        "warnings": _warnings(overall, per_class, metrics, real.features.shape[1], prdc_k),
    }


def _warnings(overall: dict, per_class: list[dict], metrics: list[str], dim: int, prdc_k: int) -> list[str]:
    """Figures computed from too few images, one line per kind of problem."""
    out = []
    rows = [("overall", overall)] + [(f"{r['class']} ({r['name']})", r) for r in per_class]
    few = [
        f"{where}: {r['num_real']}/{r['num_fake']}"
        for where, r in rows
        if r.get("fid") is not None and min(r["num_real"], r["num_fake"]) < dim
    ]
    if few:
        out.append(
            f"FID from fewer real/fake images than the {dim} feature dimensions (singular covariance, "
            f"strongly biased; KID is the better figure there): {', '.join(few)}"
        )
    if "prdc" in metrics:
        none = [f"{where}: {r['num_real']}/{r['num_fake']}" for where, r in rows if r.get("precision") is None]
        if none:
            out.append(
                f"precision/recall/density/coverage need more than k={prdc_k} real and fake images: {', '.join(none)}"
            )
    return out


def versions() -> dict[str, str]:
    """Versions of the packages that shape the figures."""
    out = {}
    for pkg in ("tailgan", "torch", "torchvision", "torchmetrics", "torch-fidelity"):
        try:
            out[pkg] = importlib.metadata.version(pkg)
        except importlib.metadata.PackageNotFoundError:
            if pkg == "tailgan":
                out[pkg] = __version__
    return out


def evaluate(
    generator: Any,
    data: LongTailedData,
    metrics: str | Sequence[str] = METRICS,
    ref: str = "test",
    n: int | None = None,
    extractor: str | FeatureExtractor = "evaluator",
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    inception_weights: str | os.PathLike | None = None,
    classifier: FeatureExtractor | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = 5,
    msssim_pairs: int = 100,
    show_progress: bool = False,
) -> dict[str, Any]:
    """Evaluate a generator (anything with ``.sample(labels, seed=, batch_size=)`` -> images in [-1, 1]).

    ``data`` is the run's dataset (``load_data(generator.data_config)``); ``extractor`` is "evaluator",
    "inception" or a ``FeatureExtractor``; label accuracy uses ``classifier``, else the evaluator.
    Returns a JSON-able dict: ``overall`` and ``per_class`` figures, ``warnings``, sample counts, the
    extractor, the reference protocol, settings and package versions. ``show_progress``: a bar (off a terminal,
    a line every 30 s) over the generated images (``tailgan eval`` shows it).
    """
    t0 = time.perf_counter()
    metrics = parse_metrics(metrics)
    if hasattr(generator, "require_images"):
        generator.require_images("evaluation")
    if ref not in REFS:
        raise TailganError(f"unknown reference {ref!r}; use 'test' (balanced test split) or 'train-lt'")
    num_classes = getattr(generator, "num_classes", data.num_classes)
    if num_classes != data.num_classes:
        raise TailganError(f"the generator has {num_classes} classes but the data has {data.num_classes}")
    reference = data.test if ref == "test" else data.train
    if len(reference) == 0:
        raise TailganError(
            f"{data.config.source} has no {'test' if ref == 'test' else 'training'} images; use the other --ref"
        )
    ext, clf = extractor_and_classifier(
        metrics, extractor, data.config, device, inception_weights, cache_dir, classifier
    )
    settings = dict(
        is_splits=is_splits, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, prdc_k=prdc_k,
        msssim_pairs=msssim_pairs,
    )  # fmt: skip
    tag = f"{data.manifest['fingerprint']}/{'test' if ref == 'test' else 'train'}"
    features, logits = reference_features(ext, reference, tag, device, batch_size, cache_dir)
    real = ImageFeatures(features, logits, reference.labels)
    if clf is not None:
        real.class_logits = (
            logits if clf is ext else reference_features(clf, reference, tag, device, batch_size, cache_dir)[1]
        )
    msssim_per_class = 2 * msssim_pairs if "msssim" in metrics else 0
    real.msssim_images = {
        c: reference.images[i] for c, i in _msssim_picks(reference.labels, msssim_per_class, seed).items()
    }
    labels = fake_labels_for(ref, reference, data.num_classes, n, seed)
    fake = _fake_features(
        generator, labels, ext, clf, tuple(reference.images.shape[1:]), seed, device, batch_size, msssim_per_class,
        show_progress,
    )
    body = score(real, fake, metrics, data.classes, seed=seed, **settings)
    return result_document(
        metrics, ext, clf, real, fake, seed, {**settings, "gen_chunk": GEN_CHUNK}, body, t0,
        dataset=data.config.preset or data.config.source, fingerprint=data.manifest["fingerprint"], ref=ref, n=n,
    )  # fmt: skip


def compare_images(
    real: ImageSet,
    fake: ImageSet,
    metrics: str | Sequence[str] = ("fid", "kid", "prdc"),
    extractor: str | FeatureExtractor = "inception",
    seed: int = 0,
    device: str | torch.device = "cpu",
    *,
    data_config: DataConfig | None = None,
    inception_weights: str | os.PathLike | None = None,
    classifier: FeatureExtractor | None = None,
    batch_size: int = 256,
    cache_dir: str | os.PathLike | None = None,
    is_splits: int = 10,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    prdc_k: int = 5,
    msssim_pairs: int = 100,
) -> dict[str, Any]:
    """Two labelled image sets (e.g. two image folders) compared with the same figures as ``evaluate``.

    ``fake.labels`` must use ``real.classes``' numbering. ``data_config`` names the dataset whose
    evaluator to use for ``extractor="evaluator"`` or label accuracy (class i = the evaluator's class i).
    """
    t0 = time.perf_counter()
    metrics = parse_metrics(metrics)
    if real.images.shape[1:] != fake.images.shape[1:]:
        raise TailganError(
            f"real images are {tuple(real.images.shape[1:])} but fake ones "
            f"{tuple(fake.images.shape[1:])}; bring them to one size"
        )
    ext, clf = extractor_and_classifier(
        metrics, extractor, data_config, device, inception_weights, cache_dir, classifier
    )
    settings = dict(
        is_splits=is_splits, kid_subsets=kid_subsets, kid_subset_size=kid_subset_size, prdc_k=prdc_k,
        msssim_pairs=msssim_pairs,
    )  # fmt: skip
    sets = []
    msssim_per_class = 2 * msssim_pairs if "msssim" in metrics else 0
    for s in (real, fake):
        features, logits = extract(ext, s.images, batch_size, device)
        x = ImageFeatures(features, logits, s.labels)
        if clf is not None:
            x.class_logits = logits if clf is ext else extract(clf, s.images, batch_size, device)[1]
            if x.class_logits.shape[1] != len(real.classes):
                raise TailganError(
                    f"the evaluator has {x.class_logits.shape[1]} classes but the folders have "
                    f"{len(real.classes)}; label accuracy needs the same classes in the same order"
                )
        x.msssim_images = {c: s.images[i] for c, i in _msssim_picks(s.labels, msssim_per_class, seed).items()}
        sets.append(x)
    body = score(sets[0], sets[1], metrics, real.classes, seed=seed, **settings)
    return result_document(metrics, ext, clf, real, fake, seed, settings, body, t0)


COLUMNS = (
    "num_real",
    "num_fake",
    "fid",
    "kid",
    "is",
    "precision",
    "recall",
    "density",
    "coverage",
    "msssim",
    "msssim_real",
    "labelacc",
    "labelacc_real",
)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def format_table(result: dict[str, Any]) -> str:
    """A plain-text table of a result: one row per class, then the overall row, then the warnings."""
    rows = result["per_class"] + [{"name": "all", **result["overall"]}]
    cols = [c for c in COLUMNS if any(c in row for row in rows)]
    names = [f"{row['class']} {row['name']}" if "class" in row else row["name"] for row in rows]
    width = min(max(len(n) for n in names), 24)
    widths = [max(len(c), 9) for c in cols]
    head = f"{'class':<{width}}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths))
    lines = []
    info = result.get("extractor_info", {})
    acc = f", test accuracy {info['test_accuracy']:.4f}" if "test_accuracy" in info else ""
    ref = f"ref {result['ref']}, " if "ref" in result else ""
    lines.append(
        f"{ref}{result['num_real']} real / {result['num_fake']} fake images; features: {result['extractor']}{acc}"
    )
    lines += [head, "-" * len(head)]
    for name, row in zip(names, rows):
        if name == "all":
            lines.append("-" * len(head))
        lines.append(f"{name[:width]:<{width}}  " + "  ".join(f"{_fmt(row.get(c)):>{w}}" for c, w in zip(cols, widths)))
    extra = [f"{k} {_fmt(result['overall'][k])}" for k in ("ifid", "kid_std", "is_std") if k in result["overall"]]
    if extra:
        lines.append("  ".join(extra))
    lines += [f"warning: {w}" for w in result.get("warnings", [])]
    return "\n".join(lines)
