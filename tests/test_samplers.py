"""tailgan.samplers.GenerativeOverSampler: imbalanced-learn's sampler contract with a tiny GAN behind it."""

import json
from collections import Counter
from unittest import SkipTest

import numpy as np
import pytest
import torch
from imblearn.datasets import make_imbalance
from imblearn.over_sampling import SMOTE, RandomOverSampler
from imblearn.pipeline import make_pipeline
from imblearn.utils.estimator_checks import _check_name, check_param_validation, estimator_checks_generator
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.utils.estimator_checks import (
    check_get_params_invariance,
    check_no_attributes_set_in_init,
    check_parameters_default_constructible,
    check_set_params,
)

from tailgan.data import DataConfig, load_data
from tailgan.data.arrays import in_memory_data
from tailgan.data.images import ImageSet, fit_images
from tailgan.engine import load_run_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint, save_checkpoint
from tailgan.samplers import (
    GenerativeOverSampler,
    ImageLayout,
    crop_or_resize,
    from_pixels,
    read_layout,
    to_pixels,
)

TINY = ["model.conv_dim=8", "optim.batch_size=16", "options.pretrain=false"]


def tiny(**kw) -> GenerativeOverSampler:
    """Two generator steps of bagan-gp at width 8: seconds per fit, enough to exercise the whole path."""
    return GenerativeOverSampler(**{"steps": 2, "random_state": 0, "overrides": list(TINY), **kw})


def small_images(n_per_class=(12, 5, 3), shape=(8, 8), seed=0, dtype=np.uint8):
    rng = np.random.RandomState(seed)
    y = np.repeat(np.arange(len(n_per_class)), n_per_class)
    X = rng.randint(0, 256, size=(len(y), *shape)).astype(dtype)
    return X, y


# -- reading images ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "shape, image_shape, layout, expected",
    [
        ((5, 64), None, "auto", ImageLayout("flat", 8, 8, 1)),
        ((5, 20), (4, 5), "auto", ImageLayout("flat", 4, 5, 1)),
        ((5, 192), (8, 8, 3), "auto", ImageLayout("flat", 8, 8, 3, "hwc")),
        ((5, 192), (3, 8, 8), "auto", ImageLayout("flat", 8, 8, 3, "chw")),
        ((5, 28, 28), None, "auto", ImageLayout("hw", 28, 28, 1)),
        ((5, 28, 28, 1), None, "auto", ImageLayout("hwc", 28, 28, 1)),
        ((5, 3, 32, 32), None, "auto", ImageLayout("chw", 32, 32, 3)),
        ((5, 3, 3, 3), None, "channels_first", ImageLayout("chw", 3, 3, 3)),
        ((5, 3, 3, 3), None, "channels_last", ImageLayout("hwc", 3, 3, 3)),
    ],
)
def test_read_layout(shape, image_shape, layout, expected):
    assert read_layout(shape, image_shape, layout) == expected


@pytest.mark.parametrize(
    "shape, image_shape, match",
    [
        ((5, 20), None, "not a square grayscale image"),
        ((5, 20), (4, 4), "holds 16 values but X has 20"),
        ((5, 20), (20,), "must be"),
        ((5, 8, 8), (8, 8), "only for flattened"),
        ((5, 3, 3, 3), None, "cannot tell"),
        ((5, 8, 8, 4), None, "4 channels"),
        ((5,), None, "give images as"),
        ((5, 1, 3, 8, 8), None, "give images as"),
    ],
)
def test_read_layout_errors(shape, image_shape, match):
    with pytest.raises(TailganError, match=match):
        read_layout(shape, image_shape)


@pytest.mark.parametrize(
    "shape, image_shape",
    [((2, 48), (4, 4, 3)), ((2, 48), (3, 4, 4)), ((2, 4, 4), None), ((2, 4, 4, 3), None), ((2, 3, 4, 4), None)],
)
def test_layout_round_trip_and_pixel_positions(shape, image_shape):
    X = np.arange(np.prod(shape)).reshape(shape)
    layout = read_layout(shape, image_shape)
    nchw = layout.to_nchw(X)
    assert nchw.shape == (2, layout.channels, 4, 4)
    np.testing.assert_array_equal(layout.from_nchw(nchw), X)
    # pixel (row 1, col 2, channel c) of image 1, read from the array as the user holds it
    for c in range(layout.channels):
        if len(shape) == 2 and image_shape[-1] == 3:
            want = X[1].reshape(4, 4, 3)[1, 2, c]
        elif len(shape) == 2:
            want = X[1].reshape(3, 4, 4)[c, 1, 2]
        elif len(shape) == 3:
            want = X[1, 1, 2]
        elif shape[-1] == 3:
            want = X[1, 1, 2, c]
        else:
            want = X[1, c, 1, 2]
        assert nchw[1, c, 1, 2] == want


@pytest.mark.parametrize("hw", [(8, 8), (28, 28), (1, 2), (5, 7), (32, 32), (33, 20)])
def test_crop_inverts_the_data_layers_padding(hw):
    images = torch.randint(0, 256, (3, 1, *hw), dtype=torch.uint8)
    side = 32 if max(hw) <= 32 else 64
    padded = fit_images(images, side, None, "pad")
    assert padded.shape[-2:] == (side, side)
    torch.testing.assert_close(crop_or_resize(padded, *hw, "pad"), images)


def test_pixel_scaling_by_hand():
    # digits: 0..16; 8 -> 127.5 rounds (half to even) to 128, 16 -> 255, values outside are clipped
    np.testing.assert_array_equal(to_pixels(np.array([0.0, 8.0, 16.0, -3.0, 20.0]), 0.0, 16.0), [0, 128, 255, 0, 255])
    out = from_pixels(np.array([-1.0, 0.0, 1.0, 0.5]), 0.0, 16.0, np.float32)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, [0.0, 8.0, 16.0, 12.0])
    np.testing.assert_array_equal(from_pixels(np.array([-1.0, -0.001, 1.0]), 0.0, 255.0, np.uint8), [0, 127, 255])


# -- imbalanced-learn's and scikit-learn's estimator checks ---------------------------------------------------
# the checks feed made-up 2-D data: 2 features (target/one-label/fit), 3 (feature names, blobs with 3-D centres)
# or 20 (make_classification); an image sampler needs to know each row's image shape, so each check gets one
CHECK_IMAGE_SHAPES = {
    "check_target_type": (1, 2),
    "check_samplers_one_label": (1, 2),
    "check_samplers_fit": (1, 2),
    "check_sampler_get_feature_names_out": (1, 3),
    "check_sampler_get_feature_names_out_pandas": (1, 3),
}
# checks of imbalanced-learn's list that do not run for this sampler, and why:
# - check_samplers_sparse / check_samplers_pandas_sparse: not yielded (sparse tag False): images are dense
# - check_samplers_string / check_samplers_nan: not yielded (tags False): pixels are numbers and finite
# - check_samplers_pandas*: run, but skip themselves while pandas is not installed (it is not a dependency)
IMBLEARN_CHECKS = {_check_name(check): check for _, check in estimator_checks_generator(tiny())}


def test_the_expected_imblearn_checks_are_generated():
    assert {
        "check_target_type",
        "check_samplers_one_label",
        "check_samplers_fit",
        "check_samplers_fit_resample",
        "check_samplers_sampling_strategy_fit_resample",
        "check_samplers_list",
        "check_samplers_multiclass_ova",
        "check_samplers_preserve_dtype",
        "check_samplers_sample_indices",
        "check_samplers_2d_target",
        "check_sampler_get_feature_names_out",
    } <= set(IMBLEARN_CHECKS)
    assert not {"check_samplers_sparse", "check_samplers_string", "check_samplers_nan"} & set(IMBLEARN_CHECKS)


@pytest.mark.parametrize("name", sorted(IMBLEARN_CHECKS))
def test_imblearn_sampler_checks(name):
    sampler = tiny(image_shape=CHECK_IMAGE_SHAPES.get(name, (4, 5)))
    try:
        IMBLEARN_CHECKS[name](sampler)
    except SkipTest as e:
        pytest.skip(str(e))


@pytest.mark.parametrize(
    "check",
    [
        check_param_validation,
        check_no_attributes_set_in_init,
        check_parameters_default_constructible,
        check_get_params_invariance,
        check_set_params,
    ],
)
def test_sklearn_api_checks(check):
    check("GenerativeOverSampler", tiny())


# -- what fit_resample returns ---------------------------------------------------------------------------------
@pytest.mark.parametrize("strategy", ["auto", "minority", "not minority", "not majority", "all", {"dog": 9, "emu": 7}])
def test_counts_follow_imblearn_semantics(strategy):
    X, y = small_images()
    labels = np.array(["cat", "dog", "emu"])[y]  # string labels come back as strings
    X_res, y_res = tiny(sampling_strategy=strategy).fit_resample(X.reshape(len(X), -1), labels)
    strategy = {"dog": 9, "emu": 7} if isinstance(strategy, dict) else strategy
    _, y_ref = RandomOverSampler(sampling_strategy=strategy).fit_resample(X.reshape(len(X), -1), labels)
    assert Counter(y_res) == Counter(y_ref)
    assert y_res.dtype == labels.dtype


def test_float_ratio_on_two_classes():
    X, y = small_images((12, 4))
    s = tiny(sampling_strategy=0.5)
    X_res, y_res = s.fit_resample(X, y)
    assert Counter(y_res.tolist()) == {0: 12, 1: 6}
    assert s.synthetic_mask_.tolist() == [False] * 16 + [True] * 2


@pytest.mark.parametrize("form", ["hw", "hwc", "chw", "flat_hwc"])
def test_layouts_give_the_same_images(form):
    """Real rows come back untouched and first; generated ones are the same images whatever the layout."""
    rng = np.random.RandomState(1)
    y = np.repeat([0, 1], [10, 4])
    nchw = rng.randint(0, 256, size=(len(y), 3, 6, 5)).astype(np.uint8)
    if form == "hw":
        nchw = nchw[:, :1]
        X = nchw[:, 0]
    elif form == "hwc":
        X = nchw.transpose(0, 2, 3, 1)
    elif form == "chw":
        X = nchw
    else:
        X = nchw.transpose(0, 2, 3, 1).reshape(len(y), -1)
    s = tiny(image_shape=(6, 5, 3) if form == "flat_hwc" else None)
    X_res, y_res = s.fit_resample(X, y)
    assert X_res.shape == (20, *X.shape[1:]) and X_res.dtype == np.uint8
    np.testing.assert_array_equal(X_res[:14], X)
    assert y_res[14:].tolist() == [1] * 6 and s.synthetic_mask_.tolist() == [False] * 14 + [True] * 6
    # the reference: the same data given channels-first, same seed
    ref = tiny().fit_resample(nchw, y)[0][14:]
    got = s.image_layout_.to_nchw(X_res[14:])
    np.testing.assert_array_equal(got, ref)


def test_float_images_keep_their_range_and_dtype():
    X, y = small_images()
    X = (X / 255.0 * 16.0).astype(np.float32)  # like scikit-learn's digits, 0..16
    s = tiny()
    X_res, _ = s.fit_resample(X, y)
    assert X_res.dtype == np.float32
    assert s.value_range_ == (float(X.min()), float(X.max()))
    new = X_res[s.synthetic_mask_]
    assert new.min() >= X.min() and new.max() <= X.max()


def test_nothing_to_generate_trains_nothing(tmp_path):
    X, y = small_images((5, 5))
    s = tiny(save_run=str(tmp_path / "run"))
    X_res, y_res = s.fit_resample(X, y)
    np.testing.assert_array_equal(X_res, X)
    assert not s.synthetic_mask_.any()
    assert not (tmp_path / "run").exists()


# -- errors -----------------------------------------------------------------------------------------------------
def test_class_too_small_is_an_error_naming_it():
    X, y = small_images((12, 1))
    with pytest.raises(TailganError, match=r"class 1 has 1 image\(s\), fewer than min_class_samples=2"):
        tiny().fit_resample(X, y)
    X_res, _ = tiny(min_class_samples=1).fit_resample(X, y)  # allowed when asked
    assert len(X_res) == 24


def test_unreadable_shape_is_an_error():
    X, y = small_images((6, 3), shape=(20,))
    with pytest.raises(TailganError, match="image_shape"):
        tiny().fit_resample(X, y)


def test_bad_parameter_values_are_rejected_before_training():
    X, y = small_images()
    with pytest.raises(ValueError, match="'steps' parameter"):
        tiny(steps=0).fit_resample(X, y)
    with pytest.raises(ValueError, match="'method' parameter"):
        tiny(method="no-such-gan").fit_resample(X, y)


def _poison(state):
    """Every float tensor of a checkpoint set to NaN (whatever the engine's state layout)."""
    if isinstance(state, dict):
        return {k: _poison(v) for k, v in state.items()}
    if isinstance(state, list):
        return [_poison(v) for v in state]
    if isinstance(state, torch.Tensor) and state.is_floating_point():
        return torch.full_like(state, float("nan"))
    return state


def test_pretrained_run_is_reused_and_a_diverged_one_refused(tmp_path):
    X, y = small_images()
    run = tmp_path / "run"
    first = tiny(save_run=str(run))
    X_first, _ = first.fit_resample(X, y)
    assert first.run_ == str(run) and (run / "checkpoints" / "last.pt").is_file()
    # the saved run gives the same images without training again (same seed)
    reuse = GenerativeOverSampler(run=str(run), random_state=0)
    X_again, y_again = reuse.fit_resample(X, y)
    np.testing.assert_array_equal(X_again, X_first)
    assert reuse.run_ == str(run)
    # labels the run does not know
    with pytest.raises(TailganError, match="not a class of the run"):
        GenerativeOverSampler(run=str(run), random_state=0).fit_resample(X, np.array(["a", "b", "c"])[y])
    # a generator whose outputs are not finite
    path = run / "checkpoints" / "last.pt"
    save_checkpoint(_poison(load_checkpoint(path)), path)
    with pytest.raises(TailganError, match="NaN/Inf outputs"):
        GenerativeOverSampler(run=str(run), random_state=0).fit_resample(X, y)


def test_training_reads_the_arrays_in_memory_and_writes_no_copy_of_them(tmp_path):
    """The run trains on X as it is in memory (source ``arrays``, not a folder of exported images): its manifest
    records X's counts and pixels fitted as every source is (8 px padded to 32), and the saved run says plainly
    that its data cannot be loaded again."""
    X, y = small_images()
    run = tmp_path / "run"
    tiny(save_run=str(run)).fit_resample(X, y)
    assert not list(run.rglob("*.png"))
    manifest = json.loads((run / "data_manifest.json").read_text())
    assert manifest["source"] == "arrays" and manifest["counts"] == [12, 5, 3] and manifest["resolution"] == 32
    images = ImageSet(torch.from_numpy(X[:, None]), torch.from_numpy(y), ["0", "1", "2"])
    data = in_memory_data(images, DataConfig(resolution=32, channels=1, fit="pad"))
    assert data.train.images.shape == (20, 1, 32, 32) and len(data.test) == 0
    assert torch.equal(crop_or_resize(data.train.images, 8, 8, "pad"), torch.from_numpy(X[:, None]))
    assert manifest["content"]["train"] == data.manifest["content"]["train"]
    with pytest.raises(TailganError, match="trained on arrays in memory"):
        load_data(load_run_config(run).data)
    # a long-tail cut asked of X is refused, not silently ignored
    with pytest.raises(TailganError, match=r"data.recipe='exp'.* does not apply to images given in memory"):
        tiny(overrides=[*TINY, "data.recipe=exp"]).fit_resample(X, y)


# -- the confidence filter --------------------------------------------------------------------------------------
STEPS_SEVENS = 25  # enough generator steps for some images the pixel classifier calls a 7


def test_confidence_filter_keeps_only_confident_images():
    X, y = load_digits(return_X_y=True)
    keep = np.r_[np.flatnonzero(y == 0)[:30], np.flatnonzero(y == 1)[:30], np.flatnonzero(y == 7)[:8]]
    X, y = X[keep], y[keep]
    # an independently fitted classifier on the same real pixels scores the images (digits are 0..16)
    ref = LogisticRegression(max_iter=1000).fit(to_pixels(X, 0, 16) / 255.0, y)
    p_seven = lambda images: ref.predict_proba(images / 16.0)[:, 2]  # noqa: E731 - classes 0, 1, 7
    s = tiny(filter="confidence", filter_threshold=0.0, steps=STEPS_SEVENS)
    X_all, _ = s.fit_resample(X, y)
    # threshold 0 still asks what `tailgan classify --filter` asks: the image's top class is its own
    assert (ref.predict(X_all[s.synthetic_mask_] / 16.0) == 7).all()
    assert 0 < s.filter_acceptance_[7] < 1
    threshold = float(np.median(p_seven(X_all[s.synthetic_mask_])))  # about half the images pass it
    s = tiny(filter="confidence", filter_threshold=threshold, steps=STEPS_SEVENS)
    X_res, y_res = s.fit_resample(X, y)
    assert (p_seven(X_res[s.synthetic_mask_]) >= threshold - 1e-9).all()
    assert 0 < s.filter_acceptance_[7] < 1
    with pytest.raises(TailganError, match="passed the confidence filter"):
        tiny(filter="confidence", filter_threshold=1.0).fit_resample(X, y)


# -- in a pipeline, cross-validated, against SMOTE ---------------------------------------------------------------
def digits_long_tail():
    """scikit-learn's digits cut to a long tail (120 .. 12 per class, exp IF 10 like digits_lt), flattened 8x8."""
    X, y = load_digits(return_X_y=True)
    counts = [120, 92, 71, 55, 43, 33, 25, 20, 15, 12]
    return make_imbalance(X, y, sampling_strategy=dict(enumerate(counts)), random_state=0)


def compare_with_smote(sampler: GenerativeOverSampler, folds: int) -> tuple[np.ndarray, np.ndarray]:
    X, y = digits_long_tail()
    cv = StratifiedKFold(folds, shuffle=True, random_state=0)
    scores = {}
    for name, over in (("gan", sampler), ("smote", SMOTE(random_state=0))):
        pipe = make_pipeline(over, LogisticRegression(max_iter=2000))
        scores[name] = cross_val_score(pipe, X, y, cv=cv, scoring="balanced_accuracy")
    return scores["gan"], scores["smote"]


def test_pipeline_cross_validation_against_smote_fast():
    gan, smote = compare_with_smote(tiny(), folds=2)
    assert gan.shape == smote.shape == (2,)
    # two generator steps make noise images, yet the pipeline runs, scores per fold, and the classifier still
    # learns the real digits; SMOTE on digits is a strong baseline
    assert smote.mean() > 0.85
    assert gan.mean() > 0.5


@pytest.mark.slow
def test_pipeline_cross_validation_against_smote():
    """About 17 min on one busy CPU thread. Measured: balanced accuracy GAN 0.798 +- 0.058, SMOTE 0.904 +- 0.032
    (LogisticRegression alone 0.907 +- 0.038): 300 BAGAN-GP steps do not make digits good enough to help yet."""
    sampler = GenerativeOverSampler(
        steps=300,
        random_state=0,
        overrides=["model.conv_dim=16", "optim.batch_size=32", "options.pretrain_epochs=10"],
    )
    gan, smote = compare_with_smote(sampler, folds=5)
    print(f"balanced accuracy, 5 folds: GAN {gan.mean():.3f} +- {gan.std():.3f}, ", end="")
    print(f"SMOTE {smote.mean():.3f} +- {smote.std():.3f}")
    assert smote.mean() > 0.85
    assert gan.mean() > 0.75  # a regression guard at the measured level, not a claim that it beats SMOTE


def test_clone_keeps_parameters():
    s = tiny(image_shape=(8, 8), filter="confidence")
    c = clone(s)
    assert c.get_params() == s.get_params()


# -- image-shaped X in a pipeline (issue 28) --------------------------------------------------------------------
def test_image_shaped_x_runs_through_a_pipeline_with_the_flatten_step():
    """A sampler acts only in fit; the FunctionTransformer(flatten_images) step flattens in fit and predict alike,
    so (n, C, H, W) images reach LogisticRegression as (n, C*H*W) rows on both sides."""
    from sklearn.preprocessing import FunctionTransformer

    from tailgan.samplers import flatten_images

    X, y = small_images(n_per_class=(12, 6, 6))
    X = X[:, None]  # (n, 1, 8, 8)
    pipe = make_pipeline(tiny(), FunctionTransformer(flatten_images), LogisticRegression(max_iter=200))
    pipe.fit(X, y)
    assert pipe[-1].n_features_in_ == 64 and pipe.predict(X).shape == (len(y),)
    assert pipe[0].synthetic_mask_.sum() == 2 * (12 - 6)  # classes 1 and 2 topped up to 12
    assert flatten_images(X).shape == (24, 64) and np.array_equal(flatten_images(X)[3], X[3].ravel())
    with pytest.raises(ValueError, match="dim 4"):  # without the step, the estimator refuses images
        make_pipeline(tiny(), LogisticRegression()).fit(X, y)
