"""Batch augmentation and mixing (tailgan.data.transforms) against hand-computed cases."""

import pytest
import torch

from tailgan.data.transforms import (
    BatchAugment,
    cmo,
    crop_padding,
    cutmix,
    flips_by_default,
    mixed_loss,
    mixup,
    paste_box,
    random_box,
    random_crop,
)


def batch(n=16, c=1, size=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, c, size, size, generator=g) * 2 - 1


@pytest.mark.parametrize("policy", ["none", "standard", "randaugment", "trivialaugment"])
def test_augmentation_keeps_shape_dtype_range_and_is_seeded(policy):
    x = batch(c=3, size=16)
    a = BatchAugment(policy, seed=3)(x)
    assert a.shape == x.shape and a.dtype == x.dtype and a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, BatchAugment(policy, seed=3)(x))  # same seed, same batch
    if policy != "none":
        assert not torch.equal(a, BatchAugment(policy, seed=4)(x))
    else:
        assert a is x


def test_crop_shifts_each_image_by_its_own_offset_within_the_pad():
    x = torch.arange(2 * 36, dtype=torch.float).reshape(2, 1, 6, 6) / 100
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 2, g, fill=-1.0)
    g = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 5, (2,), generator=g), torch.randint(0, 5, (2,), generator=g)
    for i in range(2):  # the crop of the padded image at (dy, dx), by hand
        padded = torch.full((10, 10), -1.0)
        padded[2:8, 2:8] = x[i, 0]
        assert torch.equal(out[i, 0], padded[dy[i] : dy[i] + 6, dx[i] : dx[i] + 6])
    assert crop_padding(32) == 4 and crop_padding(28) == 3 and crop_padding(8) == 1


def test_flip_false_data_is_never_flipped():
    # an image whose left-right mirror differs everywhere; no crop offset can turn it into its mirror
    x = torch.linspace(-1, 1, 8).expand(64, 1, 8, 8).clone()
    out = BatchAugment("standard", flip=False, seed=0)(x)
    rows = out[:, 0, 4]  # a middle row: increasing (or the pad's -1) when not flipped
    inner = rows[:, 1:-1]
    assert (inner[:, 1:] >= inner[:, :-1]).all()
    flipped = BatchAugment("standard", flip=True, seed=0)(x)[:, 0, 4, 1:-1]
    assert (flipped[:, 1:] < flipped[:, :-1]).any()  # with flips some rows decrease
    assert not flips_by_default("digits") and not flips_by_default("mnist") and flips_by_default("fashion_mnist")


def test_cutmix_box_and_lambda_by_hand():
    bg, fg = torch.zeros(1, 1, 10, 10), torch.ones(1, 1, 10, 10)
    out, lam = paste_box(bg, fg, (2, 6, 1, 4))  # a 4 x 3 box
    assert out.sum() == 12 and out[0, 0, 2:6, 1:4].eq(1).all() and lam == pytest.approx(1 - 12 / 100)
    g = torch.Generator().manual_seed(0)
    y0, y1, x0, x1 = random_box(10, 10, 0.75, g)
    assert 0 <= y0 <= y1 <= 10 and 0 <= x0 <= x1 <= 10 and (y1 - y0) <= 5 and (x1 - x0) <= 5


def test_cmo_pastes_the_minority_box_and_weighs_the_labels_by_area():
    x, xm = torch.zeros(4, 1, 8, 8), torch.ones(4, 1, 8, 8)
    y, ym = torch.tensor([0, 0, 0, 0]), torch.tensor([3, 2, 3, 1])
    mixed = []
    for seed in range(20):
        out, ya, yb, lam = cmo(x, y, xm, ym, torch.Generator().manual_seed(seed), prob=0.5)
        if lam < 1:
            area = out[0, 0].sum().item()  # the pasted box's pixels are the minority image's ones
            assert lam == pytest.approx(1 - area / 64) and torch.equal(yb, ym) and torch.equal(ya, y)
            mixed.append(seed)
        else:
            assert torch.equal(out, x) and torch.equal(yb, y)
    assert 3 < len(mixed) < 17  # about half of the batches are mixed


def test_mixup_blends_with_a_permuted_partner_and_the_label_weights_sum_to_one():
    x, y = batch(8), torch.arange(8)
    out, ya, yb, lam = mixup(x, y, 1.0, torch.Generator().manual_seed(1))
    perm = yb  # labels are the indices, so y_b is the permutation
    assert torch.allclose(out, lam * x + (1 - lam) * x[perm]) and 0 <= lam <= 1 and torch.equal(ya, y)
    out, ya, yb, lam = cutmix(x, y, 1.0, torch.Generator().manual_seed(1))
    assert 0 <= lam <= 1 and sorted(yb.tolist()) == list(range(8))
    # the mixed loss is the lambda-weighted sum of the two (a loss linear in the label: cross-entropy)
    logits = torch.randn(8, 8)
    ce = torch.nn.functional.cross_entropy
    soft = lam * torch.eye(8)[ya] + (1 - lam) * torch.eye(8)[yb]
    assert soft.sum(1).allclose(torch.ones(8))
    assert mixed_loss(lambda t: ce(logits, t), ya, yb, lam) == pytest.approx(float(ce(logits, soft)), rel=1e-5)


def test_classify_augments_training_batches_only_and_never_flips_digits(monkeypatch):
    import dataclasses

    import tailgan.classify.train as classify_train
    from tailgan.classify import train_and_score
    from tailgan.data import load_data

    made, seen = [], []

    class Recording(BatchAugment):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            made.append((self.policy, self.flip))

        def __call__(self, x):
            seen.append(len(x))
            return super().__call__(x)

    monkeypatch.setattr(classify_train, "BatchAugment", Recording)
    digits = load_data("digits_lt")
    r = train_and_score(digits, "vanilla", seed=0, steps=3, batch_size=16, augment="standard", log=lambda m: None)
    assert made == [("standard", False)] and seen == [16, 16, 16]  # three training batches, nothing else
    assert r["config"]["augment"] == "standard" and r["config"]["flip"] == "auto"
    fashion_like = dataclasses.replace(digits, config=dataclasses.replace(digits.config, source="fashion_mnist"))
    made.clear()
    train_and_score(fashion_like, "vanilla", seed=0, steps=1, batch_size=16, augment="standard", log=lambda m: None)
    assert made == [("standard", True)]
