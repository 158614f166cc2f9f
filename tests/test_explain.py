"""tailgan explain: Grad-CAM and RISE heat maps, t-SNE of classifier features, classifier checkpoints."""

import argparse

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from tailgan.data.images import to_uint8
from tailgan.errors import TailganError
from tailgan.explain.cli import register, select_test_images
from tailgan.explain.heatmaps import default_target_layer, explain_heatmaps, gradcam_maps, rise_maps, rise_masks
from tailgan.explain.tsne import penultimate_features, plot_tsne
from tailgan.nets.classifier_io import load_classifier, save_classifier
from tailgan.nets.classifiers import LeNet5, build_classifier


def _lenet(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return build_classifier("lenet5", 10, 1)


def _digits(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Digits-sized images (8 x 8, one channel) in [-1, 1]."""
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def _is_png(path) -> bool:
    with Image.open(path) as im:
        return im.format == "PNG" and im.size[0] > 0


class _PixelModel(nn.Module):
    """A classifier whose feature map is relu(x) and whose class-1 logit is 2 x its mean (class 0: -mean)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.act = nn.ReLU()
        self.fc = nn.Linear(1, 2)
        with torch.no_grad():
            self.conv.weight.fill_(1.0)
            self.conv.bias.zero_()
            self.fc.weight.copy_(torch.tensor([[-1.0], [2.0]]))
            self.fc.bias.zero_()

    def forward(self, x):
        return self.fc(self.act(self.conv(x)).mean((2, 3)))


def test_gradcam_matches_the_closed_form_of_a_linear_model():
    # Grad-CAM weights = mean gradient of the class-1 logit = 2 / HW > 0, so the map is relu(x) min-max scaled
    x = _digits(2)
    model = _PixelModel()
    maps = gradcam_maps(model, x, targets=[1, 1], target_layer=model.act)
    r = x.clamp(min=0)[:, 0]
    lo, hi = r.amin((1, 2), keepdim=True), r.amax((1, 2), keepdim=True)
    assert torch.allclose(maps, (r - lo) / (hi - lo), atol=1e-4)
    # class 0's weight is negative: every activation counts against it, so its map is all zeros
    assert gradcam_maps(model, x, targets=[0, 0], target_layer=model.act).abs().max() == 0


def test_gradcam_on_lenet_has_the_input_shape_and_keeps_train_mode():
    model = _lenet(0).train()
    assert default_target_layer(model) is model.features[4]
    for size in (8, 28):
        x = torch.rand(3, 1, size, size) * 2 - 1
        maps = gradcam_maps(model, x)
        assert maps.shape == (3, size, size)
        assert torch.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1 + 1e-6
    assert model.training  # given back as it came


def test_rise_masks_shape_and_keep_rate():
    m = rise_masks(400, (8, 8), grid=4, p=0.5, generator=torch.Generator().manual_seed(0))
    assert m.shape == (400, 8, 8) and m.min() >= 0 and m.max() <= 1
    assert abs(m.mean().item() - 0.5) < 0.05  # a cell is kept with probability p
    again = rise_masks(400, (8, 8), grid=4, p=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(m, again)


def test_rise_of_a_constant_classifier_is_its_probability_times_mean_mask():
    class Constant(nn.Module):
        def forward(self, x):
            return torch.tensor([[0.0, 1.0]]).expand(x.shape[0], 2)

    q = torch.softmax(torch.tensor([0.0, 1.0]), 0)[1].item()
    x = _digits(1)
    got = rise_maps(Constant(), x, [1], n_masks=64, grid=3, p=0.5, seed=3, batch_size=16)
    masks = rise_masks(64, (8, 8), 3, 0.5, torch.Generator().manual_seed(3))
    assert torch.allclose(got[0], q * masks.mean(0) / 0.5, atol=1e-6)


def test_rise_finds_the_pixels_a_classifier_reads():
    class LeftHalf(nn.Module):
        """Class-1 logit = 4 x mean of the left half: only those pixels matter."""

        def forward(self, x):
            s = 4 * x[:, :, :, :4].mean((1, 2, 3))
            return torch.stack([torch.zeros_like(s), s], 1)

    x = torch.ones(1, 1, 8, 8)
    sal = rise_maps(LeftHalf(), x, [1], n_masks=500, grid=4, seed=0)[0]
    assert sal.shape == (8, 8) and torch.isfinite(sal).all()
    assert sal[:, :3].mean() > sal[:, 5:].mean() + 0.05


def test_rise_on_lenet_is_seeded_and_has_the_input_shape():
    model, x = _lenet(0), _digits(2)
    a = rise_maps(model, x, n_masks=60, grid=4, seed=1)
    b = rise_maps(model, x, n_masks=60, grid=4, seed=1)
    assert a.shape == (2, 8, 8) and torch.isfinite(a).all() and torch.equal(a, b)
    assert not torch.equal(a, rise_maps(model, x, n_masks=60, grid=4, seed=2))


def test_explain_heatmaps_writes_classifiers_side_by_side(tmp_path):
    x = _digits(3)
    path = tmp_path / "fig" / "heat.png"
    maps = explain_heatmaps(
        {"vanilla": _lenet(0), "alt": _lenet(1)}, x, path, targets=[0, 1, 2], row_titles=["a", "b", "c"], n_masks=40
    )
    assert list(maps) == ["vanilla Grad-CAM", "vanilla RISE", "alt Grad-CAM", "alt RISE"]
    for m in maps.values():
        assert m.shape == (3, 8, 8) and torch.isfinite(m).all()
    assert _is_png(path)
    assert not any(p.name.startswith(".") for p in path.parent.iterdir())  # no temp file left behind
    with pytest.raises(ValueError, match="unknown heat-map method"):
        explain_heatmaps({"v": _lenet(0)}, x, path, methods=["lime"])


def test_penultimate_features_are_the_input_of_fc():
    model, x = _lenet(0), _digits(5)
    feats = penultimate_features(model, x, batch_size=2)
    with torch.no_grad():
        want = model.head(model.features(F.interpolate(x, size=(32, 32), mode="bilinear", align_corners=False)))
    assert feats.shape == (5, 84) and torch.allclose(feats, want)


def test_tsne_plot_of_real_and_generated_points(tmp_path):
    model = _lenet(0)
    real, fake = _digits(30, seed=1), _digits(10, seed=2)
    real_labels, fake_labels = torch.arange(30) % 3, torch.arange(10) % 3
    path = tmp_path / "tsne.png"
    emb = plot_tsne(model, real, real_labels, path, fake, fake_labels, classes=["a", "b", "c"], seed=0)
    assert emb.shape == (40, 2) and np.isfinite(emb).all()
    assert _is_png(path)
    again = plot_tsne(model, real, real_labels, tmp_path / "again.png", fake, fake_labels, seed=0)
    assert np.allclose(emb, again)  # seeded


def test_classifier_checkpoint_round_trip(tmp_path):
    model, x = _lenet(3), _digits(2)
    classes = list("0123456789")
    path = save_classifier(model, tmp_path / "c.pt", arch="lenet5", num_classes=10, in_channels=1, classes=classes)
    loaded, meta = load_classifier(path)
    assert isinstance(loaded, LeNet5) and meta["classes"] == classes and not loaded.training
    with torch.no_grad():
        assert torch.equal(model.eval()(x), loaded(x))
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(TailganError, match="not a tailgan classifier"):
        load_classifier(tmp_path / "other.pt")


def _cli(argv):
    parser = argparse.ArgumentParser(prog="tailgan")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_heatmaps_and_tsne_on_digits(tmp_path):
    classes = [str(c) for c in range(10)]
    for seed in (0, 1):
        save_classifier(_lenet(seed), tmp_path / f"m{seed}" / "classifier.pt", arch="lenet5", num_classes=10,
                        in_channels=1, classes=classes)
    heat = tmp_path / "heat.png"
    argv = ["explain", "heatmaps", "--data", "digits_lt", "--classifier", f"vanilla={tmp_path / 'm0'}",
            "--classifier", str(tmp_path / "m1" / "classifier.pt"), "--index", "0", "7", "--rise-masks", "30",
            "--rise-grid", "4", "--out", str(heat)]
    assert _cli(argv) == 0 and _is_png(heat)

    fake = tmp_path / "fake"
    for c in ("3", "5"):
        (fake / c).mkdir(parents=True)
        for i in range(3):
            img = to_uint8(_digits(1, seed=10 * int(c) + i))[0, 0].numpy()
            Image.fromarray(img).save(fake / c / f"{i}.png")
    tsne = tmp_path / "tsne.png"
    argv = ["explain", "tsne", "--data", "digits_lt", "--classifier", str(tmp_path / "m0"), "--per-class", "4",
            "--fake", str(fake), "--out", str(tsne)]
    assert _cli(argv) == 0 and _is_png(tsne)

    with pytest.raises(TailganError, match="does not keep model weights"):
        _cli(["explain", "tsne", "--data", "digits_lt", "--classifier", str(fake), "--out", str(tsne)])
    save_classifier(build_classifier("lenet5", 2, 1), tmp_path / "two.pt", arch="lenet5", num_classes=2, in_channels=1)
    with pytest.raises(TailganError, match="classifies 2 classes"):
        _cli(["explain", "heatmaps", "--data", "digits_lt", "--classifier", str(tmp_path / "two.pt"),
              "--out", str(heat)])


def test_select_test_images():
    from tailgan.data.images import ImageSet

    test = ImageSet(torch.zeros(6, 1, 2, 2, dtype=torch.uint8), torch.tensor([1, 0, 1, 0, 2, 2]), ["a", "b", "c"])
    assert select_test_images(test, None, 1).tolist() == [1, 0, 4]
    assert select_test_images(test, None, 2).tolist() == [1, 3, 0, 2, 4, 5]
    assert select_test_images(test, [5, 0], 1).tolist() == [5, 0]
    with pytest.raises(TailganError, match="outside the test split"):
        select_test_images(test, [6], 1)


def test_classify_keeps_its_classifiers_for_explain_and_bench_writes_a_report(tmp_path):
    from tailgan.cli import main as cli

    cls = tmp_path / "cls"
    common = ["--data", "digits_lt", "--steps", "4", "--seeds", "1"]
    assert cli(["classify", "--strategy", "la", *common, "--out", str(cls)]) == 0
    ckpt = cls / "seed0" / "classifier.pt"
    assert ckpt.is_file()
    fig = tmp_path / "heat.png"
    assert cli(["explain", "heatmaps", "--classifier", f"la={ckpt}", "--data", "digits_lt", "--per-class", "1",
                "--methods", "gradcam", "--out", str(fig)]) == 0  # fmt: skip
    assert fig.is_file() and fig.stat().st_size > 1000
    bench = tmp_path / "bench"
    assert cli(["bench", "classify", "--strategies", "vanilla,ts", *common, "--out", str(bench)]) == 0
    page = (bench / "report.html").read_text()
    assert "<html" in page and "vanilla" in page and "ts" in page
