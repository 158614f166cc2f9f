"""A generative over-sampler in imbalanced-learn's API: ``fit_resample`` with a tailgan generator behind it.

:class:`GenerativeOverSampler` is a drop-in replacement for ``SMOTE`` in an ``imblearn.pipeline.Pipeline``:

    from imblearn.pipeline import make_pipeline
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import FunctionTransformer
    from tailgan.samplers import GenerativeOverSampler, flatten_images

    sampler = GenerativeOverSampler(method="bagan-gp", steps=300, random_state=0)
    pipe = make_pipeline(sampler, FunctionTransformer(flatten_images), LogisticRegression())
    cross_val_score(pipe, X, y)  # X: (n, H, W), (n, H, W, C), (n, C, H, W) or flattened (n, H*W*C)

The sampler returns images in X's layout and a pipeline applies it only in ``fit``; the ``flatten_images`` step
gives an estimator that needs flat rows (n, H*W*C) in ``fit`` and ``predict`` alike.

Each ``fit_resample(X, y)`` trains the chosen recipe on (X, y) in a temporary run folder (or samples a
pre-trained run, ``run=``), then returns the real rows followed by generated rows for the classes
``sampling_strategy`` selects, in the layout, dtype and value range X came in.

The images are trained on in memory (``tailgan.data.arrays.in_memory_data``): nothing of X is written to disk
but the run folder itself (temporary unless ``save_run``). The conversions between X and tailgan's images live
in ``tailgan.data.arrays``.
"""

from __future__ import annotations

import json
import numbers
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from imblearn.over_sampling.base import BaseOverSampler
from imblearn.utils import Substitution, check_target_type
from sklearn.linear_model import LogisticRegression
from sklearn.utils import check_random_state
from sklearn.utils._param_validation import Interval, Options, StrOptions
from sklearn.utils.validation import validate_data

from tailgan.data.arrays import (
    ARRAYS_SOURCE,
    ImageLayout,
    crop_or_resize,
    flatten_images,
    from_pixels,
    in_memory_data,
    pick_resolution,
    read_layout,
    to_pixels,
)
from tailgan.data.images import ImageSet, convert_channels
from tailgan.engine import load_generator
from tailgan.errors import TailganError
from tailgan.io import atomic_write_json
from tailgan.methods import all_presets, method_names
from tailgan.synthesis.images import filter_synthetic
from tailgan.train import make_config, train
from tailgan.version import __version__

# the array conversions users import from here (they live in tailgan.data.arrays)
__all__ = ["GenerativeOverSampler", "ImageLayout", "crop_or_resize", "flatten_images", "from_pixels", "read_layout",
           "to_pixels"]  # fmt: skip
SAMPLER_FILE = "sampler.json"  # written into save_run folders: the value range and classes of the fit
LAYOUTS = ("auto", "channels_last", "channels_first")
_MAX_FILTER_ROUNDS = 20


def _label(label) -> str:
    """A class label as users wrote it: ``'dog'`` or ``7``, not ``np.str_('dog')``."""
    return repr(label.item() if isinstance(label, np.generic) else label)


@Substitution(sampling_strategy=BaseOverSampler._sampling_strategy_docstring, max_rounds=_MAX_FILTER_ROUNDS)
class GenerativeOverSampler(BaseOverSampler):
    """Over-sample image classes with a class-conditional GAN trained (or pre-trained) by tailgan.

    ``fit_resample(X, y)`` trains ``method`` for ``steps`` generator updates on all of (X, y) in a temporary
    run folder (deleted afterwards unless ``save_run``), or uses the pre-trained run folder ``run``, then
    returns the real rows followed by generated rows for the classes ``sampling_strategy`` selects: each
    selected class is topped up to its target count, the same targets as SMOTE's.
    ``synthetic_mask_[i]`` is True for the generated rows (build ``sample_weight`` from it to weight them).

    Parameters
    ----------
    {sampling_strategy}

    random_state : int, RandomState instance or None, default=None
        Seeds the training (``seed``) and the sampling. ``None`` draws the seed from numpy's global RNG.

    method : str, default="bagan-gp"
        A tailgan method or preset (``tailgan train --method``).

    steps : int, default=1000
        Generator updates of the training. Unused with ``run``.

    overrides : list of str or None, default=None
        ``key=value`` config overrides, as on the command line (``model.conv_dim=16``,
        ``optim.batch_size=32``, ``options.pretrain_epochs=5``). Unused with ``run``.

    image_shape : tuple or None, default=None
        For flattened X (n, F): the shape of one image, (H, W) or (H, W, C) (or (C, H, W), see ``layout``).
        ``None`` reads F features as a square grayscale image (64 -> 8 x 8) and is an error otherwise.

    layout : {{"auto", "channels_last", "channels_first"}}, default="auto"
        Where the channels are in (n, H, W, C) / (n, C, H, W) arrays and 3-entry ``image_shape``; "auto"
        decides by which end has 1 or 3 entries and asks when both do.

    value_range : tuple (low, high) or None, default=None
        The pixel values black and white stand for. ``None``: (0, 255) for uint8 X, otherwise the minimum and
        maximum of the X being fitted (so 8x8 digits in 0..16 keep 0..16), or, with a ``run`` saved by
        ``save_run``, the range of the data it was trained on. Values outside are clipped for training;
        generated values always lie within the range.

    resolution : {{32, 64}} or None, default=None
        Network resolution (the DCGAN-style recipes train at 32 or 64 px). ``None``: 32 for images up to
        32 px, else 64. Smaller images are padded onto the black canvas (8x8 digits, 28 px MNIST), larger ones
        resized; generated images are brought back to X's size by cutting the padded rectangle out again
        (exact) or by resizing back (bilinear, antialiased).

    run : str, path or None, default=None
        A run folder written by ``tailgan train`` (or by ``save_run``) to sample instead of training.
        Classes are matched by name: a label ``l`` of y is the run's class named ``str(l)``; an integer label
        that is no class name is taken as a class index.

        .. warning:: A pre-trained run leaks in cross-validation when it was trained on images of a fold's
           held-out part: its samples then carry information about the very images that fold is scored on,
           and the scores are optimistic. Use ``run`` only with a generator trained on data disjoint from
           every test fold (a separate training split, or a split made before the cross-validation); for
           a cross-validation over all the data, leave ``run=None`` so that each fold trains its own
           generator on its own training part (what ``Pipeline`` does: the sampler only sees the fold's
           training rows).

    save_run : str, path or None, default=None
        Keep the trained run in this (new or empty) folder, for reuse with ``run=``, instead of deleting it.

    device : str, default="cpu"
        Torch device for training and sampling.

    min_class_samples : int, default=2
        The fewest real images a class may have to be over-sampled; fewer is an error naming the class
        (a generator conditioned on one image can only repeat it). Not checked with ``run``.

    filter : {{"confidence"}} or None, default=None
        ``"confidence"``: a logistic regression fitted on the real (X, y) scores every generated image, and
        only those it puts in their own class (its top class) with probability >= ``filter_threshold`` are
        kept, the rule of ``tailgan classify --filter`` (more are
        generated until the target is met; an error when too few pass after {max_rounds} rounds).

    filter_threshold : float, default=0.5
        The confidence a generated image needs to pass the filter.

    verbose : int, default=0
        0 prints nothing; 1 shows the training's progress (a bar per phase on a terminal, else a line at least
        every 30 s) and its log lines.

    Attributes
    ----------
    sampling_strategy_ : dict
        Class label -> number of images generated for it.

    synthetic_mask_ : ndarray of bool, shape (n_samples_new,)
        True for the generated rows of the last ``fit_resample`` output (they follow the real rows).

    image_layout_ : ImageLayout
        How the rows of X were read as images.

    value_range_ : tuple of float
        The (low, high) pixel range used.

    run_ : str or None
        The run folder the images came from (``run`` or ``save_run``; ``None`` for a deleted temporary run).

    filter_acceptance_ : dict or None
        With ``filter``: class label -> the share of generated images that passed.

    n_features_in_ : int
        Number of values per sample (H * W * C).

    feature_names_in_ : ndarray of shape (`n_features_in_`,)
        Feature names of a DataFrame X (flattened images only).
    """

    _parameter_constraints: dict = {
        **BaseOverSampler._parameter_constraints,
        "method": [StrOptions(set(method_names()) | set(all_presets()))],
        "steps": [Interval(numbers.Integral, 1, None, closed="left")],
        "overrides": [list, None],
        "image_shape": [tuple, list, None],
        "layout": [StrOptions(set(LAYOUTS))],
        "value_range": [tuple, list, None],
        "resolution": [Options(numbers.Integral, {32, 64}), None],
        "run": [str, os.PathLike, None],
        "save_run": [str, os.PathLike, None],
        "device": [str],
        "min_class_samples": [Interval(numbers.Integral, 1, None, closed="left")],
        "filter": [StrOptions({"confidence"}), None],
        "filter_threshold": [Interval(numbers.Real, 0, 1, closed="both")],
        "verbose": ["verbose"],
    }

    def __init__(
        self,
        *,
        sampling_strategy="auto",
        random_state=None,
        method="bagan-gp",
        steps=1000,
        overrides=None,
        image_shape=None,
        layout="auto",
        value_range=None,
        resolution=None,
        run=None,
        save_run=None,
        device="cpu",
        min_class_samples=2,
        filter=None,
        filter_threshold=0.5,
        verbose=0,
    ):
        super().__init__(sampling_strategy=sampling_strategy)
        self.random_state = random_state
        self.method = method
        self.steps = steps
        self.overrides = overrides
        self.image_shape = image_shape
        self.layout = layout
        self.value_range = value_range
        self.resolution = resolution
        self.run = run
        self.save_run = save_run
        self.device = device
        self.min_class_samples = min_class_samples
        self.filter = filter
        self.filter_threshold = filter_threshold
        self.verbose = verbose

    # -- imbalanced-learn hooks --------------------------------------------------------------------------------
    def _check_X_y(self, X, y):
        y, binarize_y = check_target_type(y, indicate_one_vs_all=True)
        # images may be 3-D or 4-D: allow_nd; sparse input has no image meaning
        X, y = validate_data(self, X=X, y=y, reset=True, accept_sparse=False, allow_nd=True)
        if X.ndim > 2:
            self.n_features_in_ = int(np.prod(X.shape[1:]))  # sklearn counts only axis 1
        return X, y, binarize_y

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        tags.input_tags.three_d_array = True
        return tags

    def _fit_resample(self, X, y):
        layout = read_layout(X.shape, self.image_shape, self.layout)
        self.image_layout_ = layout
        lo, hi = self._value_range(X)
        self.value_range_ = (lo, hi)
        self.run_ = None if self.run is None else str(self.run)
        self.filter_acceptance_ = None
        targets = {label: int(n) for label, n in self.sampling_strategy_.items() if n > 0}
        if not targets:  # nothing to generate: no training at all
            self.synthetic_mask_ = np.zeros(len(y), dtype=bool)
            return X, y

        classes, y_index = np.unique(y, return_inverse=True)
        counts = np.bincount(y_index, minlength=len(classes))
        for label in targets if self.run is None else ():  # a pre-trained run learned its classes elsewhere
            n_real = int(counts[np.searchsorted(classes, label)])
            if n_real < self.min_class_samples:
                raise TailganError(
                    f"class {_label(label)} has {n_real} image(s), fewer than "
                    f"min_class_samples={self.min_class_samples} that a generator needs to learn it; collect more "
                    "images of it, leave it out of sampling_strategy (a dict of the classes to over-sample), "
                    "or lower min_class_samples"
                )
        pixels = to_pixels(layout.to_nchw(X), lo, hi)  # uint8 (n, C, H, W)
        seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))

        with tempfile.TemporaryDirectory(prefix="tailgan-sampler-") as tmp:
            if self.run is None:
                run_dir = self._train(pixels, y_index, classes, layout, (lo, hi), seed, Path(tmp))
                self.run_ = None if self.save_run is None else str(run_dir)
            else:
                run_dir = Path(self.run)
            generator = load_generator(run_dir, device=self.device)
            fit = getattr(generator.data_config, "fit", "resize")
            class_index = map_classes(list(targets), run_classes(run_dir, generator.num_classes), str(run_dir))
            clf = self._fit_filter(pixels, y_index) if self.filter == "confidence" else None
            new_x, new_y, acceptance = [], [], {}
            for i, (label, n) in enumerate(targets.items()):
                images, rate = self._generate(
                    generator, class_index[label], np.searchsorted(classes, label), n, seed + 1 + i, layout, fit,
                    clf, label, run_dir,
                )
                new_x.append(images)
                new_y.append(np.full(n, label, dtype=y.dtype))
                acceptance[label] = rate
        if clf is not None:
            self.filter_acceptance_ = acceptance
        synthetic = from_pixels(np.concatenate(new_x), lo, hi, X.dtype)
        X_res = np.concatenate([X, layout.from_nchw(synthetic).astype(X.dtype, copy=False)])
        y_res = np.concatenate([y, *new_y])
        self.synthetic_mask_ = np.r_[np.zeros(len(y), dtype=bool), np.ones(len(y_res) - len(y), dtype=bool)]
        return X_res, y_res

    # -- steps of fit_resample -------------------------------------------------------------------------------
    def _value_range(self, X: np.ndarray) -> tuple[float, float]:
        if self.value_range is not None:
            if len(self.value_range) != 2 or not float(self.value_range[1]) > float(self.value_range[0]):
                raise TailganError(f"value_range={tuple(self.value_range)!r} must be (low, high) with high > low")
            return float(self.value_range[0]), float(self.value_range[1])
        if X.dtype == np.uint8:
            return 0.0, 255.0
        stored = Path(self.run) / SAMPLER_FILE if self.run is not None else None
        if stored is not None and stored.is_file():  # a run saved by this sampler: its black and white
            lo, hi = json.loads(stored.read_text())["value_range"]
            return float(lo), float(hi)
        lo, hi = float(X.min()), float(X.max())
        return (lo, hi) if hi > lo else (lo, lo + 1.0)  # a constant X still needs a non-empty range

    def _train(
        self,
        pixels: np.ndarray,
        y_index: np.ndarray,
        classes: np.ndarray,
        layout: ImageLayout,
        value_range: tuple[float, float],
        seed: int,
        tmp: Path,
    ) -> Path:
        """Train ``method`` on the images in memory (no copy of them is written); returns the run folder."""
        names = [str(c) for c in classes]
        if len(set(names)) != len(names):
            raise TailganError(f"the class labels {list(classes)!r} are not distinct as text; relabel y")
        images = ImageSet(torch.from_numpy(pixels), torch.from_numpy(y_index.astype(np.int64)), names)
        resolution, fit = pick_resolution(layout.height, layout.width, self.resolution)
        overrides = [
            f"data.resolution={resolution}",
            f"data.fit={fit}",
            f"data.channels={layout.channels}",
            f"device={self.device}",
            f"log_every={self.steps}",  # one log line per fit; the user's overrides below may change it
            "sample_every=0",
            f"ckpt_every={self.steps}",
            *(self.overrides or []),
        ]
        cfg = make_config(
            self.method, data={"source": ARRAYS_SOURCE}, overrides=overrides, steps=self.steps, seed=seed
        )
        data = in_memory_data(images, cfg.data)
        run_dir = Path(self.save_run) if self.save_run is not None else tmp / "run"
        train(cfg, run_dir, console=bool(self.verbose), data=data)
        atomic_write_json(
            run_dir / SAMPLER_FILE,
            {
                "tailgan_version": __version__,
                "classes": names,
                "value_range": list(value_range),
                "image_shape": [layout.height, layout.width, layout.channels],
            },
        )
        return run_dir

    def _fit_filter(self, pixels: np.ndarray, y_index: np.ndarray) -> LogisticRegression:
        # fitted on this fit's real rows only, so inside a cross-validation it never sees a held-out fold
        clf = LogisticRegression(max_iter=1000)
        clf.fit(pixels.reshape(len(pixels), -1) / 255.0, y_index)
        return clf

    def _generate(
        self,
        generator,
        class_index: int,
        y_position: int,
        n: int,
        seed: int,
        layout: ImageLayout,
        fit: str,
        clf: LogisticRegression | None,
        label,
        run_dir: Path,
    ) -> tuple[np.ndarray, float]:
        """``n`` images of one class in X's geometry, float in [-1, 1]; with a filter, the share that passed."""
        kept, made, have = [], 0, 0
        for round_ in range(_MAX_FILTER_ROUNDS if clf is not None else 1):
            want = n - have if clf is None else max(2 * (n - have), 16)
            raw = generator.sample(torch.full((want,), class_index, dtype=torch.long), seed=seed + 100_003 * round_)
            bad = int((~torch.isfinite(raw)).sum())
            if bad:
                raise TailganError(
                    f"the generator of {run_dir} produced {bad} NaN/Inf values for class {_label(label)}: its weights "
                    "have diverged. Retrain it (a lower learning rate, fewer steps) or use another checkpoint"
                )
            images = convert_channels(raw.clamp(-1, 1), layout.channels)
            images = crop_or_resize(images, layout.height, layout.width, fit).numpy()
            made += want
            if clf is not None:  # the rule of `tailgan classify --filter` (its own class, with p >= threshold)
                labels = torch.full((want,), y_position, dtype=torch.long)
                keep, _ = filter_synthetic(torch.from_numpy(images), labels, _logits_of(clf), self.filter_threshold)
                images = images[keep.numpy()]
            kept.append(images[: n - have])
            have += len(kept[-1])
            if have >= n:
                break
        if have < n:
            raise TailganError(
                f"only {have} of {n} generated images of class {_label(label)} passed the confidence filter "
                f"(threshold {self.filter_threshold}, {made} generated); lower filter_threshold or train longer"
            )
        return np.concatenate(kept), n / made


def _logits_of(clf: LogisticRegression):
    """The fitted pixel classifier as a logits function of float images in [-1, 1] (what
    :func:`tailgan.synthesis.images.filter_synthetic` takes); classes it never saw get probability 0."""
    width = int(clf.classes_.max()) + 1

    def logits(x: torch.Tensor) -> torch.Tensor:
        out = np.full((len(x), width), -np.inf)
        out[:, clf.classes_] = clf.predict_log_proba((x.reshape(len(x), -1).numpy() + 1.0) / 2.0)
        return torch.from_numpy(out)

    return logits


def run_classes(run_dir: Path, num_classes: int) -> list[str]:
    """The class names of a run folder (its data manifest), or ``0..K-1`` when it has none."""
    for name in (SAMPLER_FILE, "data_manifest.json"):
        path = Path(run_dir) / name
        if path.is_file():
            classes = json.loads(path.read_text()).get("classes")
            if isinstance(classes, list) and len(classes) == num_classes:
                return [str(c) for c in classes]
    return [str(i) for i in range(num_classes)]


def map_classes(labels: list, names: list[str], run: str) -> dict:
    """Label of y -> class index of the run: by name (``str(label)``), else an integer label as the index."""
    out = {}
    for label in labels:
        if str(label) in names:
            out[label] = names.index(str(label))
        elif isinstance(label, numbers.Integral) and 0 <= int(label) < len(names):
            out[label] = int(label)
        else:
            raise TailganError(
                f"class {_label(label)} of y is not a class of the run {run} (its classes: {', '.join(names)}); "
                "train a run on these labels or relabel y"
            )
    return out
