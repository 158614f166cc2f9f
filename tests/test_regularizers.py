"""DiffAugment, LeCam and group spectral regularisation (tailgan/losses/regularizers.py).

Every expected value is computed independently: by hand, by closed forms, or with numpy's SVD.
"""

import io
import itertools

import numpy as np
import pytest
import torch
from torch import nn

from tailgan.errors import TailganError
from tailgan.losses.regularizers import (
    LeCam,
    check_policy,
    conditional_bn_params,
    default_groups,
    diff_augment,
    group_spectral_norms,
    group_spectral_penalty,
)
from tailgan.nets.biggan import BigGANGenerator


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    x = torch.rand(n, c, size, size, generator=_gen(seed)) * 2 - 1
    x[0] = 1.0  # the extremes of the range must survive too
    x[1] = -1.0
    return x


def _distinct_positive(n: int, c: int, size: int) -> torch.Tensor:
    """Images whose pixels are all different and non-zero, so shifts and zeroed pixels can be identified."""
    return (torch.arange(n * c * size * size, dtype=torch.float32) + 1).reshape(n, c, size, size) / (
        n * c * size * size
    )


# --------------------------------------------------------------------------------------------- DiffAugment


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("policy", ["color,translation,cutout", "color", "brightness", "translation", "cutout"])
def test_diff_augment_keeps_shape_dtype_and_range(channels, policy):
    x = _images(16, channels, 8)
    out = diff_augment(x, policy, generator=_gen(1))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= -1.0 and out.max() <= 1.0


def test_official_unclamped_colour_leaves_the_range_but_geometry_does_not():
    ones = torch.ones(64, 1, 8, 8)
    # Brightness shifts by U(-0.5, 0.5); contrast keeps a constant image constant: max is 1 + max shift.
    out = diff_augment(ones, "color", generator=_gen(0), clamp=False)
    assert out.max() > 1.3
    geometric = diff_augment(_images(32, 3, 8), "translation,cutout", generator=_gen(0), clamp=False)
    assert geometric.min() >= -1.0 and geometric.max() <= 1.0


def test_diff_augment_is_deterministic_under_a_generator():
    x = _images(8, 3, 8)
    a = diff_augment(x, generator=_gen(5))
    b = diff_augment(x, generator=_gen(5))
    assert torch.equal(a, b)
    assert not torch.equal(a, diff_augment(x, generator=_gen(6)))
    g = _gen(5)
    first, second = diff_augment(x, generator=g), diff_augment(x, generator=g)
    assert torch.equal(first, a) and not torch.equal(first, second)  # the generator advances


def test_diff_augment_gradient_flows_and_is_finite():
    x = _images(8, 3, 8).requires_grad_(True)
    weights = torch.randn(8, 3, 8, 8, generator=_gen(2))
    (diff_augment(x, generator=_gen(3)) * weights).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_translation_gradient_routes_each_kept_pixel_once():
    x = torch.zeros(4, 1, 8, 8).requires_grad_(True)
    diff_augment(x, "translation", generator=_gen(0)).sum().backward()
    # Each output pixel reads one input pixel or padding, and no input pixel is read twice.
    assert set(x.grad.unique().tolist()) <= {0.0, 1.0}


def test_diff_augment_supports_double_backward_for_the_gradient_penalty():
    conv = nn.Conv2d(3, 1, 3)
    x = _images(4, 3, 8).requires_grad_(True)
    score = conv(diff_augment(x, generator=_gen(0), clamp=False)).sum()
    (grad,) = torch.autograd.grad(score, x, create_graph=True)
    penalty = grad.pow(2).sum()
    penalty.backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert conv.weight.grad.abs().sum() > 0


def test_brightness_adds_one_shift_per_image_in_half_unit_range():
    x = _images(256, 3, 8) * 0.25  # away from the clamp
    delta = diff_augment(x, "brightness", generator=_gen(0)) - x
    per_image = delta.flatten(1)
    assert torch.allclose(per_image, per_image[:, :1].expand_as(per_image), atol=1e-6)
    shift = per_image[:, 0]
    assert shift.min() >= -0.5 and shift.max() <= 0.5
    assert shift.min() < -0.45 and shift.max() > 0.45  # it spans U(-0.5, 0.5)


def _per_image_factor(out_dev: torch.Tensor, in_dev: torch.Tensor) -> torch.Tensor:
    """The f with out_dev = f * in_dev per image (least squares), after checking the relation is exact."""
    f = (out_dev * in_dev).flatten(1).sum(1) / in_dev.pow(2).flatten(1).sum(1)
    assert torch.allclose(out_dev, f[:, None, None, None] * in_dev, atol=1e-5)
    return f


def test_saturation_scales_deviation_from_channel_mean():
    x = torch.rand(128, 3, 8, 8, generator=_gen(1)) * 0.6 - 0.3  # away from the clamp
    out = diff_augment(x, "saturation", generator=_gen(0))
    mean = x.mean(dim=1, keepdim=True)
    assert torch.allclose(out.mean(dim=1, keepdim=True), mean, atol=1e-6)
    factor = _per_image_factor(out - mean, x - mean)
    assert factor.min() >= 0 and factor.max() <= 2 and factor.max() > 1.8


def test_saturation_is_skipped_on_one_channel_without_drawing_numbers():
    x = _images(8, 1, 8)
    g = _gen(0)
    assert torch.equal(diff_augment(x, "saturation", generator=g), x)
    assert torch.equal(g.get_state(), _gen(0).get_state())


def test_contrast_scales_deviation_from_image_mean():
    x = torch.rand(128, 3, 8, 8, generator=_gen(1)) * 0.6 - 0.3
    out = diff_augment(x, "contrast", generator=_gen(0))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    assert torch.allclose(out.mean(dim=(1, 2, 3), keepdim=True), mean, atol=1e-6)
    factor = _per_image_factor(out - mean, x - mean)
    assert factor.min() >= 0.5 and factor.max() <= 1.5 and factor.min() < 0.55 and factor.max() > 1.45


def _shifted(image: torch.Tensor, dy: int, dx: int) -> torch.Tensor:
    """out[i, j] = image[i + dy, j + dx], zero outside, written with slices."""
    _, h, w = image.shape
    out = torch.zeros_like(image)
    out[:, max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)] = image[
        :, max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)
    ]
    return out


@pytest.mark.parametrize("size, max_shift", [(8, 1), (16, 2)])
def test_translation_is_an_integer_shift_up_to_an_eighth_with_zero_fill(size, max_shift):
    x = _distinct_positive(64, 2, size)
    out = diff_augment(x, "translation", generator=_gen(0))
    seen = set()
    for image, result in zip(x, out):
        matches = [
            (dy, dx)
            for dy, dx in itertools.product(range(-max_shift, max_shift + 1), repeat=2)
            if torch.equal(result, _shifted(image, dy, dx))
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    if size == 8:
        assert len(seen) == 9  # all shifts in [-1, 1]^2 occur


def test_cutout_zeroes_a_clipped_half_side_square():
    size, side = 8, 4
    x = _distinct_positive(200, 3, size)
    out = diff_augment(x, "cutout", generator=_gen(0))
    full_squares = 0
    for image, result in zip(x, out):
        zeroed = result == 0
        assert torch.equal(zeroed[0], zeroed[1]) and torch.equal(zeroed[0], zeroed[2])  # all channels
        assert torch.equal(result[~zeroed], image[~zeroed])  # the rest untouched
        rows, cols = zeroed[0].any(dim=1).nonzero().flatten(), zeroed[0].any(dim=0).nonzero().flatten()
        assert len(rows) >= 1 and len(cols) >= 1  # some pixel is always cut (the centre is inside)
        top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
        assert zeroed[0, top : bottom + 1, left : right + 1].all()  # a solid rectangle ...
        assert zeroed[0].sum() == (bottom - top + 1) * (right - left + 1)  # ... and nothing else
        height, width = int(bottom - top + 1), int(right - left + 1)
        assert height <= side and width <= side
        if top > 0 and bottom < size - 1:
            assert height == side  # not clipped vertically
        if left > 0 and right < size - 1:
            assert width == side
        full_squares += height == side and width == side
    assert 0 < full_squares < 200  # both unclipped and clipped squares occur


def test_policy_parsing_and_errors():
    assert check_policy("color, cutout") == ("brightness", "saturation", "contrast", "cutout")
    assert check_policy("") == ()
    x = _images(2, 3, 8)
    assert diff_augment(x, "", generator=_gen(0)) is x
    with pytest.raises(TailganError, match="'colour'"):
        diff_augment(x, "colour,translation")
    with pytest.raises(TailganError, match="N, C, H, W"):
        diff_augment(torch.zeros(3, 8, 8))


# ----------------------------------------------------------------------------------------------------- LeCam


def test_lecam_against_hand_computed_values():
    lecam = LeCam(decay=0.9)
    lecam.update(torch.tensor([1.0, 3.0]), torch.tensor([-1.0, -3.0]))
    assert (lecam.ema_real, lecam.ema_fake) == (2.0, -2.0)  # the first update copies the means
    lecam.update(torch.tensor([4.0, 4.0]), torch.tensor([0.0, 0.0]))
    assert lecam.ema_real == pytest.approx(0.9 * 2 + 0.1 * 4)  # 2.2
    assert lecam.ema_fake == pytest.approx(0.9 * -2 + 0.1 * 0)  # -1.8
    d_real = torch.tensor([4.0, -3.0])
    d_fake = torch.tensor([0.0, 3.0])
    # real: relu(4 + 1.8)^2 = 33.64, relu(-3 + 1.8)^2 = 0 -> 16.82; fake: relu(2.2 - 0)^2 = 4.84, 0 -> 2.42
    assert lecam.loss(d_real, d_fake).item() == pytest.approx(16.82 + 2.42, rel=1e-5)


def test_lecam_sign_penalises_real_above_fake_ema_and_fake_below_real_ema():
    lecam = LeCam()
    lecam.update(torch.tensor([1.0]), torch.tensor([-1.0]))  # ema_real 1, ema_fake -1
    # A D whose real output is far above the fake EMA is penalised; one below it is not.
    assert lecam.loss(torch.tensor([9.0]), torch.tensor([5.0])).item() == pytest.approx(100.0)
    assert lecam.loss(torch.tensor([-2.0]), torch.tensor([5.0])).item() == 0.0
    # A fake output far below the real EMA is penalised; one above it is not.
    assert lecam.loss(torch.tensor([-2.0]), torch.tensor([-4.0])).item() == pytest.approx(25.0)
    d_real = torch.tensor([9.0, -2.0], requires_grad=True)
    d_fake = torch.tensor([-4.0, 5.0], requires_grad=True)
    lecam.loss(d_real, d_fake).backward()
    # d/dr mean relu(r + 1)^2 = 2 relu(r + 1) / 2; d/df mean relu(1 - f)^2 = -2 relu(1 - f) / 2
    assert d_real.grad.tolist() == pytest.approx([10.0, 0.0])
    assert d_fake.grad.tolist() == pytest.approx([-5.0, 0.0])


def test_lecam_emas_are_constants_for_autograd():
    p = torch.tensor(2.0, requires_grad=True)
    d_real = p * torch.tensor([1.0, 3.0])  # mean 2p = 4
    d_fake = -p * torch.tensor([1.0, 1.0])  # -2
    lecam = LeCam()
    lecam.update(d_real, d_fake)  # emas copy: real 4, fake -2 (they depend on p if not detached)
    assert isinstance(lecam.ema_real, float) and isinstance(lecam.ema_fake, float)
    loss = lecam.loss(d_real, d_fake)
    loss.backward()
    # With constant EMAs: real term mean((a_i p + 2)^2) -> d/dp = mean(2 (a_i p + 2) a_i) = (2*4*1 + 2*8*3)/2 = 28;
    # fake term mean((4 + p)^2) -> d/dp = 2 (4 + 2) = 12.
    assert loss.item() == pytest.approx((16 + 64) / 2 + 36)
    assert p.grad.item() == pytest.approx(28.0 + 12.0)


def test_lecam_start_steps_follow_the_official_schedule():
    lecam = LeCam(decay=0.5, start_steps=3)
    d = torch.tensor([1.0], requires_grad=True)
    for step, (real, fake) in enumerate([(1.0, -1.0), (5.0, -5.0), (7.0, -3.0), (1.0, 1.0)], start=1):
        lecam.update(torch.tensor([real]), torch.tensor([fake]))
        if step < 3:
            assert (lecam.ema_real, lecam.ema_fake) == (real, fake)  # decay 0 before the start
            loss = lecam.loss(d, d)
            assert not lecam.active and loss.item() == 0.0
            loss.backward()  # a zero in the graph, safe to add unconditionally
    # update 3 decays from (5, -5): (6, -4); not yet active; update 4: (3.5, -1.5), active
    assert (lecam.ema_real, lecam.ema_fake) == (3.5, -1.5)
    assert lecam.active and lecam.num_updates == 4


def test_lecam_state_round_trips_through_a_weights_only_checkpoint():
    a = LeCam(start_steps=1)
    for i in range(3):
        a.update(torch.tensor([float(i)]), torch.tensor([-float(i)]))
    buffer = io.BytesIO()
    torch.save({"lecam": a.state_dict()}, buffer)
    buffer.seek(0)
    b = LeCam(start_steps=1)
    b.load_state_dict(torch.load(buffer, weights_only=True)["lecam"])
    for lecam in (a, b):
        lecam.update(torch.tensor([2.5]), torch.tensor([0.5]))
    assert a.state_dict() == b.state_dict()
    x = torch.tensor([3.0, -1.0])
    assert torch.equal(a.loss(x, -x), b.loss(x, -x))
    with pytest.raises(TailganError, match="decay"):
        LeCam(decay=0.9).load_state_dict(a.state_dict())
    with pytest.raises(TailganError, match="missing"):
        b.load_state_dict({"ema_real": 0.0})


def test_lecam_rejects_bad_settings_and_keeps_non_finite_outputs_out_of_checkpoints():
    with pytest.raises(TailganError):
        LeCam(decay=1.0)
    with pytest.raises(TailganError):
        LeCam(start_steps=-1)
    lecam = LeCam()
    lecam.update(torch.tensor([float("nan")]), torch.tensor([0.0]))  # no host sync: no check here ...
    lecam.update(torch.tensor([1.0]), torch.tensor([0.0]))
    assert torch.isnan(lecam.loss(torch.tensor([1.0]), torch.tensor([0.0])))  # ... the guard sees a NaN loss
    with pytest.raises(TailganError, match="not finite"):
        lecam.state_dict()  # and no checkpoint gets the poisoned averages


# ------------------------------------------------------------------------------------------------------- gSR


def test_default_groups_follow_gsrgan():
    assert [default_groups(c) for c in (256, 384, 96, 8, 12, 7)] == [16, 16, 8, 2, 3, 1]


def test_group_spectral_norms_on_matrices_with_known_singular_values():
    vectors = torch.tensor(
        [
            [3.0, 0.0, 0.0, 4.0],  # [[3, 0], [0, 4]]: sigma_max 4
            [1.0, 2.0, 2.0, 4.0],  # [[1, 2], [2, 4]] = [1, 2]^T [1, 2]: sigma_max 5
            [1.0, 1.0, 1.0, 1.0],  # [[1, 1], [1, 1]]: sigma_max 2
        ],
        requires_grad=True,
    )
    sigma = group_spectral_norms(vectors, 2)
    assert sigma.tolist() == pytest.approx([4.0, 5.0, 2.0])
    # One group (a row vector) or one channel per group (a column): the Euclidean norm.
    assert group_spectral_norms(vectors, 1).tolist() == pytest.approx([5.0, 5.0, 2.0])
    assert group_spectral_norms(vectors, 4).tolist() == pytest.approx([5.0, 5.0, 2.0])
    # d sigma_max / dM = u v^T: for diag(3, 4) that is e_2 e_2^T.
    sigma[0].backward()
    assert vectors.grad[0].tolist() == pytest.approx([0.0, 0.0, 0.0, 1.0])
    with pytest.raises(TailganError, match="does not divide"):
        group_spectral_norms(vectors, 3)


class _FakeCBN(nn.Module):
    def __init__(self, gain: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.gain = nn.Linear(gain.shape[1], gain.shape[0], bias=False)
        self.bias = nn.Linear(bias.shape[1], bias.shape[0], bias=False)
        with torch.no_grad():
            self.gain.weight.copy_(gain)
            self.bias.weight.copy_(bias)


class _FakeGenerator(nn.Module):
    """BigGAN's attribute layout: shared embedding (identity here) + one cBN on concat(shared(y), z_chunk)."""

    def __init__(self) -> None:
        super().__init__()
        self.shared = nn.Embedding(2, 2)
        with torch.no_grad():
            self.shared.weight.copy_(torch.eye(2))
        # Columns: class 0's vector, class 1's vector, the latent chunk's column (must be ignored).
        gain = torch.tensor([[3.0, 1.0, 100.0], [0.0, 1.0, -50.0], [0.0, 1.0, 7.0], [4.0, 1.0, 9.0]])
        bias = torch.tensor([[1.0, 0.0, 30.0], [2.0, 6.0, 1.0], [2.0, 0.0, -8.0], [4.0, 0.0, 2.0]])
        self.block = _FakeCBN(gain, bias)


def _cui_weights(counts, beta):
    raw = [(1 - beta) / (1 - beta**n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def test_gsr_against_hand_computation_on_a_fake_generator():
    g = _FakeGenerator()
    (gamma, beta), = conditional_bn_params(g)
    assert gamma.tolist() == [[3.0, 0.0, 0.0, 4.0], [1.0, 1.0, 1.0, 1.0]]
    assert beta.tolist() == [[1.0, 2.0, 2.0, 4.0], [0.0, 6.0, 0.0, 0.0]]
    # sigma_max: gamma 4 and 2, beta 5 and 6 (2 x 2 groups); weights from effective numbers.
    w0, w1 = _cui_weights([100, 10], 0.9)
    assert w1 > w0  # the tail class weighs more
    expected = (w0 * (4**2 + 5**2) + w1 * (2**2 + 6**2)) / (1 * 2)
    penalty = group_spectral_penalty(g, [100, 10], beta=0.9, n_groups=2)
    assert penalty.item() == pytest.approx(expected, rel=1e-5)
    unsquared = group_spectral_penalty(g, [100, 10], beta=0.9, n_groups=2, squared=False)
    assert unsquared.item() == pytest.approx((w0 * (4 + 5) + w1 * (2 + 6)) / 2, rel=1e-5)
    equal = group_spectral_penalty(g, [100, 10], beta=0.0, n_groups=2)
    assert equal.item() == pytest.approx((41 + 40) / 2, rel=1e-6)
    tail_only = group_spectral_penalty(g, [100, 10], beta=0.9, n_groups=2, classes=torch.tensor([1]))
    assert tail_only.item() == pytest.approx(w1 * 40, rel=1e-5)
    # default_groups(4) = 2 gives the same matrices.
    assert group_spectral_penalty(g, [100, 10], beta=0.9).item() == pytest.approx(expected, rel=1e-5)


def test_gsr_on_a_tiny_biggan_generator_matches_numpy():
    torch.manual_seed(0)
    g = BigGANGenerator(num_classes=3, img_channels=1, z_dim=4, conv_dim=2, shared_dim=3, attention=False)
    g.eval()  # freeze the spectral-norm power iteration so the weights read here are the ones used
    counts = [50, 20, 5]
    embedding = g.shared.weight.detach().numpy().astype(np.float64)
    layers = [bn for block in g.blocks for bn in (block.bn1, block.bn2)]
    weights = np.array(_cui_weights(counts, 0.99))
    total = 0.0
    for layer in layers:
        for linear in (layer.gain, layer.bias):
            w = linear.weight.detach().numpy().astype(np.float64)[:, :3]  # the embedding's columns
            vectors = embedding @ w.T  # (classes, 8 channels)
            sigma = [np.linalg.svd(v.reshape(2, 4), compute_uv=False).max() for v in vectors]
            total += float((weights * np.square(sigma)).sum())
    expected = total / (len(layers) * 3)
    penalty = group_spectral_penalty(g, counts)
    assert len(conditional_bn_params(g)) == 6
    assert penalty.item() == pytest.approx(expected, rel=1e-4)
    penalty.backward()
    for param in (g.shared.weight, g.blocks[0].bn1.gain.parametrizations.weight.original):
        assert param.grad is not None and torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0


def test_gsr_in_training_mode_beside_a_generator_forward():
    torch.manual_seed(0)
    g = BigGANGenerator(num_classes=3, img_channels=1, z_dim=4, conv_dim=2, shared_dim=3, attention=False)
    images = g(torch.randn(4, 4), torch.tensor([0, 1, 2, 0]))
    # The extra spectral-norm power iteration must not invalidate the forward pass's graph.
    (images.mean() + 0.5 * group_spectral_penalty(g, [50, 20, 5])).backward()
    assert torch.isfinite(g.shared.weight.grad).all() and g.shared.weight.grad.abs().sum() > 0


def test_gsr_gradient_step_shrinks_the_penalty():
    g = _FakeGenerator()
    before = group_spectral_penalty(g, [100, 10], beta=0.9)
    before.backward()
    with torch.no_grad():
        for param in g.parameters():
            param -= 0.01 * param.grad
    assert group_spectral_penalty(g, [100, 10], beta=0.9).item() < before.item()


def test_gsr_errors_name_the_problem():
    with pytest.raises(TailganError, match="class-conditional batch norm"):
        group_spectral_penalty(nn.Sequential(nn.Linear(2, 2)), [3, 4])
    with pytest.raises(TailganError, match="one count per class"):
        group_spectral_penalty(_FakeGenerator(), [3, 4, 5])
    with pytest.raises(TailganError, match="does not divide"):
        group_spectral_penalty(_FakeGenerator(), [3, 4], n_groups=3)
    with pytest.raises(TailganError, match="beta"):
        group_spectral_penalty(_FakeGenerator(), [3, 4], beta=1.0)


# -- the switches in the recipes ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "preset, extra",
    [
        ("ecogan-dcgan", ["loss.diffaug=color,translation,cutout", "loss.lecam_weight=0.3"]),
        ("ecogan-biggan", ["loss.diffaug=translation", "loss.gsr_weight=0.5", "ema_start=1"]),
        ("bagan-gp", ["loss.diffaug=color,translation,cutout", "loss.lecam_weight=0.1", "options.pretrain=false"]),
    ],
)
def test_regularisers_train_log_and_resume_bit_exact(preset, extra, tmp_path):
    from helpers import flatten_state, read_log

    from tailgan.cli import main as cli
    from tailgan.io import load_checkpoint

    tiny = ["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8", "model.embed_dim=16", "model.shared_dim=8",
            "log_every=1", "sample_every=0", "ckpt_every=2", "precision=fp32", *extra]  # fmt: skip
    a, b = tmp_path / "a", tmp_path / "b"
    assert cli(["train", "--method", preset, "--steps", "4", "--out", str(a), *tiny]) == 0
    assert cli(["train", "--method", preset, "--steps", "2", "--out", str(b), *tiny]) == 0
    assert cli(["train", "--resume", str(b), "--steps", "4"]) == 0
    sa = flatten_state(load_checkpoint(a / "checkpoints" / "last.pt")["method"])
    sb = flatten_state(load_checkpoint(b / "checkpoints" / "last.pt")["method"])
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    records = read_log(a)
    if any("lecam" in e for e in extra):
        assert all("d_lecam" in r for r in records) and load_checkpoint(a / "checkpoints" / "last.pt")["method"][
            "extra"
        ]["lecam"]
    if any("gsr" in e for e in extra):
        assert all(r["g_gsr"] > 0 for r in records)


def test_gsr_needs_a_conditional_bn_generator():
    from tailgan.engine import DataShape, RunContext, build_method, make_config

    cfg = make_config("ecogan-dcgan", overrides=["loss.gsr_weight=0.5"])
    with pytest.raises(TailganError, match="model.arch=biggan"):
        build_method(cfg, DataShape(10, 1, 32, (10,) * 10), RunContext())


def test_diffaug_reaches_every_image_d_sees_including_the_penalty_interpolates(monkeypatch):
    from tailgan.data import load_data
    from tailgan.engine import DataShape, RunContext, Trainer, build_method, make_config
    from tailgan.methods import regularized

    seen = []
    real_augment = regularized.diff_augment

    def spy(x, policy, generator=None):
        seen.append(x.requires_grad)  # the interpolates of the penalty require grad, real/fake batches not
        return real_augment(x, policy, generator=generator)

    monkeypatch.setattr(regularized, "diff_augment", spy)
    cfg = make_config("ecogan-dcgan", overrides=["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8",
                                                 "loss.diffaug=translation,cutout", "precision=fp32"])  # fmt: skip
    data = load_data(cfg.data)
    m = build_method(cfg, DataShape(10, 1, 32, tuple(data.train.counts())), RunContext())
    Trainer(m, data).step()
    assert len(seen) == 4 and seen.count(True) == 2  # D step: real, fake, interpolates; G step: fake (grad)
