"""DFG building blocks: the minority-classes data recipe, the split source networks, G and the critic,
channel evaluation, attention thresholds, the DELTA regularisers and the losses (spec 5.2-5.6)."""

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from tailgan.data.dataset import load_data, load_from_manifest, resolve_data_config
from tailgan.data.longtail import long_tail_counts, minority_classes
from tailgan.errors import TailganError
from tailgan.io import save_checkpoint
from tailgan.losses.dfg import (
    ablation_losses,
    attentive_fm_distance,
    capture_outputs,
    channel_scores,
    class_attention,
    classifier_channel_weights,
    classifier_fake_loss,
    classify_with_omega1,
    critic_loss,
    evaluate_extractor_channels,
    extractor_classifier_loss,
    first_per_class,
    generator_adv_loss,
    generator_cls_loss,
    head_l2,
    merged_batch,
    regularizer_weights,
    threshold_attention,
    updated_attention,
)
from tailgan.nets.dfg import (
    DFGVGG16,
    FeatureCritic,
    FeatureGenerator,
    build_source,
    feature_shape,
)

# -- data recipe ---------------------------------------------------------------------------------------


def test_minority_recipe_fashion_mnist_40_to_1_counts():
    for seed in range(5):
        minor = minority_classes(10, 8, seed)
        counts = long_tail_counts("minority", [6000] * 10, imbalance_factor=40.0, n_max=6000, n_minority=8, seed=seed)
        assert counts == [150 if c in minor else 6000 for c in range(10)]
        assert len(minor) == 8 and counts.count(150) == 8 and counts.count(6000) == 2


def test_minority_recipe_svhn_10_to_1_caps():
    # SVHN's training counts per digit; DFG caps majority classes at 5,000, minority at 500
    svhn = [4948, 13861, 10585, 8497, 7458, 6882, 5727, 5595, 5045, 4659]
    counts = long_tail_counts("minority", svhn, imbalance_factor=10.0, n_max=5000, minority=[2, 5, 7])
    assert counts == [4948, 5000, 500, 5000, 5000, 500, 5000, 500, 5000, 4659]
    # default cap: the largest class (DFG's CINIC-10 / Food-101 loaders)
    assert long_tail_counts("minority", [90, 100, 80], imbalance_factor=10.0, minority=[0]) == [10, 100, 80]


def test_minority_classes_reproducible_from_seed():
    assert minority_classes(10, 8, 3) == minority_classes(10, 8, 3)
    assert minority_classes(10, 8, 3) == sorted(minority_classes(10, 8, 3))
    draws = {tuple(minority_classes(10, 8, s)) for s in range(10)}
    assert len(draws) > 1  # the seed chooses the classes
    assert minority_classes(10, 0, 0) == [] and minority_classes(10, 10, 0) == list(range(10))
    assert minority_classes(10, 8, 0, minority=[9, 1]) == [1, 9]  # an explicit list wins
    for bad in (dict(minority=[1, 1]), dict(minority=[10]), dict(n_minority=11)):
        with pytest.raises(TailganError):
            minority_classes(10, **{"n_minority": 8, **bad})
    with pytest.raises(TailganError, match="IF"):
        long_tail_counts("minority", [10, 10], imbalance_factor=0.5, n_minority=1)


def test_minority_recipe_through_data_config_on_digits():
    full = load_data("digits").train.counts()
    data = load_data("digits", recipe="minority", n_minority=3, imbalance_factor=4.0, seed=1)
    minor = minority_classes(10, 3, 1)
    cap = max(full)
    assert data.train.counts() == [cap // 4 if c in minor else n for c, n in enumerate(full)]
    assert data.manifest["recipe"]["minority_classes"] == minor
    assert load_from_manifest(data.manifest).manifest["fingerprint"] == data.manifest["fingerprint"]
    other = load_data("digits", recipe="minority", n_minority=3, imbalance_factor=4.0, seed=1, minority=[0, 4, 9])
    assert other.manifest["recipe"]["minority_classes"] == [0, 4, 9]
    assert resolve_data_config("digits", recipe="minority", minority=[0, 9]).minority == [0, 9]


def test_existing_recipes_unchanged():
    # fingerprints computed before the minority recipe was added
    assert load_data("digits_lt").manifest["fingerprint"] == "81139f1b7ac23cde"
    step = load_data("digits", recipe="step", imbalance_factor=5.0, n_max=100)
    assert step.manifest["fingerprint"] == "e1b53d46f817cb02"
    assert "minority_classes" not in step.manifest["recipe"]


def test_fashion_mnist_dfg40_preset(fmnist_root):
    data = load_data("fashion_mnist_dfg40", root=fmnist_root)
    minor = minority_classes(10, 8, 0)
    assert data.train.counts() == [150 if c in minor else 6000 for c in range(10)]
    assert data.test.counts() == [1000] * 10  # the test split is never cut
    assert data.manifest["recipe"]["minority_classes"] == minor
    full = load_data("fashion_mnist", root=fmnist_root)
    labels = full.train.labels.numpy()
    kept = np.array(data.manifest["kept_indices"])
    for c in range(10):  # DFG's loader keeps the first images of each class in dataset order
        first = np.flatnonzero(labels == c)[: 150 if c in minor else 6000]
        assert np.array_equal(kept[labels[kept] == c], first)
    # padded by 2 px of black to DFG's 32 x 32
    assert tuple(data.train.images.shape[1:]) == (1, 32, 32)
    i = int(kept[0])
    assert torch.equal(data.train.images[0, :, 2:30, 2:30], full.train.images[i])
    assert int(data.train.images[:, :, :2].max()) == 0 and int(data.train.images[:, :, :, 30:].max()) == 0


# -- source networks -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "backbone, size, kw",
    [("lenet5", 32, {}), ("vgg16", 32, {"vgg_head": (32, 16)}), ("resnet50", 32, {}), ("resnet50", 40, {})],
)
def test_split_shapes_and_layers(backbone, size, kw):
    torch.manual_seed(0)
    split = build_source(backbone, num_classes=7, **kw)
    split.network.eval()
    x = torch.randn(2, 1 if backbone == "lenet5" else 3, size, size)
    f = split.extractor(x)
    assert tuple(f.shape[1:]) == feature_shape(backbone, size)
    logits = split.classifier(f)
    assert tuple(logits.shape) == (2, 7)
    assert torch.allclose(logits, split.network(x))  # the halves compose to the whole network
    conv = split.extractor.get_submodule(split.extractor_layer)
    assert isinstance(conv, nn.Conv2d) and conv.out_channels == split.feature_channels == f.shape[1]
    hooked = [split.classifier.get_submodule(n).out_channels for n in split.classifier_layers]
    assert hooked == {"lenet5": [16], "vgg16": [512], "resnet50": [512, 1024, 2048]}[backbone]
    assert isinstance(split.fc(), nn.Linear) and split.fc().out_features == 7


def test_native_feature_shapes_and_default_widths():
    assert feature_shape("lenet5") == (6, 14, 14)
    assert feature_shape("vgg16") == (64, 16, 16)
    assert feature_shape("resnet50") == (256, 56, 56)
    assert feature_shape("resnet50", 32) == (256, 8, 8) and feature_shape("resnet50", 33) == (256, 9, 9)
    with torch.device("meta"):  # full-size VGG head and ResNet generator without allocating them
        vgg = DFGVGG16(num_classes=10)
        g = FeatureGenerator("resnet50", 257)
        out = g(*g.sample_latent(2))
    widths = [(m.in_features, m.out_features) for m in vgg.classifier if isinstance(m, nn.Linear)]
    assert widths == [(25088, 4096), (4096, 512), (512, 10)]
    assert g.dense[0].in_features == 4900 + 257 and tuple(out.shape) == (2, 256, 56, 56)
    with pytest.raises(TailganError, match="backbone"):
        build_source("alexnet")


def test_split_copy_and_in_channels():
    split = build_source("lenet5", in_channels=3)
    assert split.extractor[0].weight is split.network.features[0].weight
    assert split.extractor[0].in_channels == 3
    frozen = split.copy(frozen=True)
    assert frozen.extractor[0].weight is frozen.network.features[0].weight
    assert frozen.extractor[0].weight is not split.extractor[0].weight
    assert torch.equal(frozen.extractor[0].weight, split.extractor[0].weight)
    assert not any(p.requires_grad for p in frozen.network.parameters()) and not frozen.network.training


def test_weights_path_lenet_round_trip_and_new_head(tmp_path):
    torch.manual_seed(0)
    src = build_source("lenet5", num_classes=10)
    save_checkpoint(src.network.state_dict(), tmp_path / "lenet.pt")
    again = build_source("lenet5", num_classes=10, weights_path=tmp_path / "lenet.pt")
    x = torch.randn(3, 1, 32, 32)
    assert torch.equal(again.network(x), src.network(x)) and again.fresh_keys == ()
    # a source trained on 47 classes (EMNIST-like): the body loads, the 10-class head stays new
    emnist = build_source("lenet5", num_classes=47)
    save_checkpoint({"state_dict": emnist.network.state_dict()}, tmp_path / "emnist.pt")
    target = build_source("lenet5", num_classes=10, weights_path=tmp_path / "emnist.pt")
    assert torch.equal(target.extractor(x), emnist.extractor(x))
    assert target.fresh_keys == ("classifier.4.weight", "classifier.4.bias")
    with pytest.raises(TailganError, match="in_channels"):
        build_source("lenet5", in_channels=3, weights_path=tmp_path / "lenet.pt")
    with pytest.raises(TailganError, match="another backbone"):
        build_source("vgg16", vgg_head=(8, 8), weights_path=tmp_path / "lenet.pt")


def test_weights_path_torchvision_resnet50(tmp_path):
    torch.manual_seed(0)
    tv = torchvision.models.resnet50(weights=None)  # 1000-class ImageNet layout
    save_checkpoint(tv.state_dict(), tmp_path / "resnet50.pth")
    split = build_source("resnet50", num_classes=10, weights_path=tmp_path / "resnet50.pth")
    assert torch.equal(split.extractor[0].weight, tv.conv1.weight)
    assert torch.equal(split.classifier.features[2][2].conv3.weight, tv.layer4[2].conv3.weight)
    assert split.fresh_keys == ("fc.weight", "fc.bias") and split.fc().out_features == 10


# -- generator and critic ------------------------------------------------------------------------------


@pytest.mark.parametrize("backbone", ["lenet5", "vgg16"])
def test_generator_and_critic_shapes(backbone):
    g = FeatureGenerator(backbone, num_classes=5)
    z, y = g.sample_latent(4, generator=torch.Generator().manual_seed(0))
    assert z.shape == (4, g.noise_dim) and g.noise_dim == 100 and z.min() >= -1 and z.max() <= 1
    assert y.min() >= 0 and y.max() < 5
    f = g(z, y)
    assert tuple(f.shape) == (4, *feature_shape(backbone))
    scores = FeatureCritic(feature_shape(backbone))(f)
    assert scores.shape == (4,)


def test_resnet_generator_and_critic_small_noise():
    g = FeatureGenerator("resnet50", num_classes=3, noise_dim=16)
    f = g(*g.sample_latent(2))
    assert tuple(f.shape) == (2, 256, 56, 56)
    critic = FeatureCritic((256, 56, 56))
    assert critic.dense.in_features == 128 * 7 * 7 and critic(f).shape == (2,)


def test_generator_channel_gate():
    torch.manual_seed(0)
    g = FeatureGenerator("lenet5", num_classes=3).eval()  # eval: batch norm does not mix samples
    z, y = torch.rand(6, 100) * 2 - 1, torch.tensor([0, 1, 2, 0, 1, 2])
    ungated = g(z, y)
    a = torch.rand(3, 6)
    a[1, 2] = 0.0
    gated = g(z, y, a)
    assert torch.allclose(gated, ungated * a[y][:, :, None, None])
    assert gated[y == 1][:, 2].abs().max() == 0  # a zero attention switches the channel off
    g.set_attention(a)
    assert torch.equal(g(z, y), gated) and torch.equal(g.state_dict()["attention"], a)
    with pytest.raises(ValueError):
        g.set_attention(torch.ones(3, 5))


def test_quirk_options():
    torch.manual_seed(0)
    x, u = torch.randn(2, 6, 14, 14), torch.randn(2, 6, 14, 14)
    zero = torch.zeros_like(x)
    faithful = FeatureCritic((6, 14, 14), act_slope=1.0)  # DFG's LeakyReLU(True): the critic is affine
    assert torch.allclose(faithful(x + u) - faithful(zero), faithful(x) + faithful(u) - 2 * faithful(zero), atol=1e-5)
    sound = FeatureCritic((6, 14, 14))
    assert not torch.allclose(sound(x + u) - sound(zero), sound(x) + sound(u) - 2 * sound(zero), atol=1e-3)
    g = FeatureGenerator("lenet5", 3)
    assert g(*g.sample_latent(8)).min() >= 0  # default output: ReLU, like the real features
    g = FeatureGenerator("lenet5", 3, act_slope=1.0, out_act="tanh_bn")
    assert all(m.negative_slope == 1.0 for m in g.modules() if isinstance(m, nn.LeakyReLU))
    assert [type(m) for m in g.body[-2:]] == [nn.Tanh, nn.BatchNorm2d]
    f = g(*g.sample_latent(8))  # train-mode BN after the Tanh: every channel has batch mean 0
    assert torch.allclose(f.mean(dim=(0, 2, 3)), torch.zeros(6), atol=1e-5)
    with pytest.raises(TailganError):
        FeatureGenerator("lenet5", 3, out_act="sigmoid")


# -- channel evaluation --------------------------------------------------------------------------------


def _ce(logits, label):
    return math.log(sum(math.exp(v) for v in logits)) - logits[label]


def _tiny_model():
    """extractor: 1x1 conv 1 -> 2 (w = 1, 2; b = 0, 0.5); classifier: logits (f0 - f1, f1)."""
    ext = nn.Sequential(nn.Conv2d(1, 2, 1))
    cls = nn.Sequential(nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        ext[0].weight.copy_(torch.tensor([1.0, 2.0]).view(2, 1, 1, 1))
        ext[0].bias.copy_(torch.tensor([0.0, 0.5]))
        cls[1].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    return ext, cls


def _tiny_losses(v, y):
    """Hand computation: intact, filter 0 zeroed (f0 = bias 0), filter 1 zeroed (f1 = bias 0.5)."""
    out = []
    for f0, f1 in ((v, 2 * v + 0.5), (0.0, 2 * v + 0.5), (v, 0.5)):
        out.append(_ce([f0 - f1, f1], y))
    return out


def test_ablation_scores_and_attention_by_hand():
    ext, cls = _tiny_model()
    values, labels = [1.0, -1.0, 0.5], [0, 1, 1]
    images = torch.tensor(values).view(3, 1, 1, 1)
    y = torch.tensor(labels)
    before = ext[0].weight.clone()
    base, ablated = ablation_losses(ext, cls, images, y, "0", batch_size=2)
    assert torch.equal(ext[0].weight, before)  # every filter is restored
    hand = [_tiny_losses(v, c) for v, c in zip(values, labels)]
    assert torch.allclose(base, torch.tensor([h[0] for h in hand]), atol=1e-6)
    assert torch.allclose(ablated, torch.tensor([h[1:] for h in hand]), atol=1e-6)
    delta = [[h[1] - h[0], h[2] - h[0]] for h in hand]
    assert torch.allclose(channel_scores(base, ablated), torch.tensor(delta), atol=1e-6)
    assert torch.allclose(channel_scores(base, ablated, "dfg"), -torch.tensor(delta), atol=1e-6)

    def softmax(row):
        e = [math.exp(r) for r in row]
        return [v / sum(e) for v in e]

    p = [softmax(r) for r in delta]
    attention_hand = torch.tensor([p[0], [(p[1][j] + p[2][j]) / 2 for j in range(2)]])
    ev = evaluate_extractor_channels(ext, cls, images, y, "0", num_classes=2)
    assert torch.allclose(ev.attention, attention_hand, atol=1e-6)
    assert torch.allclose(ev.extractor_scores, torch.tensor(delta).mean(0), atol=1e-6)
    assert torch.allclose(class_attention(ev.sample_scores, y, 2).sum(1), torch.ones(2))
    with pytest.raises(TailganError, match="class 2"):
        class_attention(ev.sample_scores, y, 3)


def test_ablation_restores_modes_and_first_per_class():
    ext, cls = _tiny_model()
    cls.train()
    ext.eval()
    ablation_losses(ext, cls, torch.ones(2, 1, 1, 1), torch.tensor([0, 1]), "0")
    assert cls.training and cls[1].training and not ext.training
    labels = torch.tensor([2, 0, 0, 1, 0, 2, 1, 1])
    assert first_per_class(labels, 3, per_class=2).tolist() == [0, 1, 2, 3, 5, 6]


def test_classifier_channel_weights_by_hand():
    # extractor: identity-like 1x1 conv 1 -> 2 (f = (v, v)); classifier conv 2 -> 2 hooked, then logits (g0 - g1, g1)
    ext = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False))
    cls = nn.Sequential(nn.Conv2d(2, 2, 1), nn.Flatten(), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        ext[0].weight.copy_(torch.ones(2, 1, 1, 1))
        cls[0].weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]).view(2, 2, 1, 1))
        cls[0].bias.copy_(torch.tensor([0.0, 0.1]))
        cls[2].weight.copy_(torch.tensor([[1.0, -1.0], [0.0, 1.0]]))

    def batch_ce(vs, ys, drop):
        total = 0.0
        for v, c in zip(vs, ys):
            g0 = 0.0 if drop == 0 else v
            g1 = 0.1 if drop == 1 else 2 * v + 0.1
            total += _ce([g0 - g1, g1], c)
        return total / len(vs)

    raw = [([1.0, -2.0], [0, 1]), ([0.5, 3.0], [1, 1]), ([9.0, 9.0], [0, 0])]
    batches = [(torch.tensor(v).view(-1, 1, 1, 1), torch.tensor(c)) for v, c in raw]
    (w,) = classifier_channel_weights(ext, cls, batches, ["0"], max_batches=2)
    hand = [sum(batch_ce(v, c, j) - batch_ce(v, c, None) for v, c in raw[:2]) / 2 for j in range(2)]
    assert torch.allclose(w, torch.tensor(hand), atol=1e-6)


def test_attention_thresholds_on_a_fixed_vector():
    row = torch.tensor([0.125, 0.109375, 0.1171875, 0.1875, 0.0625, 0.125, 0.15625, 0.1171875])  # C_f * row:
    # 1.0, 0.875, 0.9375, 1.5, 0.5, 1.0, 1.25, 0.9375
    a = row[None]
    keep = lambda t: (threshold_attention(a, t)[0] != 0).nonzero().flatten().tolist()  # noqa: E731
    assert keep(0.9) == [0, 2, 3, 5, 6, 7]
    assert keep(0.95) == [0, 3, 5, 6]
    assert keep(0.9375) == [0, 2, 3, 5, 6, 7]  # the bound itself is kept (>=)
    assert torch.equal(threshold_attention(a, 0.9)[0, [0, 2]], row[[0, 2]])  # kept values are unchanged
    uniform = torch.full((1, 8), 0.125)
    assert torch.equal(updated_attention(uniform, a), threshold_attention(a, 0.95))  # DFG: new replaces old
    # blend 0.75 * 1/8 + 0.25 * row: C_f * blend = 0.75 + 0.25 * C_f * row, below 0.95 only at channel 4
    blended = updated_attention(uniform, a, rho=0.75)
    assert (blended[0] != 0).nonzero().flatten().tolist() == [0, 1, 2, 3, 5, 6, 7]
    assert torch.allclose(blended[0, 1], torch.tensor(0.75 / 8 + 0.25 * 0.109375))


# -- regularisers --------------------------------------------------------------------------------------


def test_regularizer_weights_by_hand():
    z = [-math.sqrt(1.5), 0.0, math.sqrt(1.5)]  # (s - 2) / sqrt(2/3) for s = 1, 2, 3 (population std)
    e = [math.exp(v / 5) for v in z]
    assert torch.allclose(regularizer_weights(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([v / sum(e) for v in e]))
    assert torch.allclose(regularizer_weights(torch.tensor([4.0, 4.0])), torch.tensor([0.5, 0.5]))


def test_attentive_fm_distance_by_hand():
    target = torch.tensor([[[[1.0, 2.0]], [[0.0, 0.0]]], [[[1.0, 1.0]], [[3.0, 0.0]]]], requires_grad=True)
    source = torch.zeros(2, 2, 1, 2, requires_grad=True)
    w = torch.tensor([0.25, 0.75])
    # 1/2 [0.25*2*5/2 + 0.25*2*2/2 + 0.75*2*9/2] = 1/2 (1.25 + 0.5 + 6.75)
    d = attentive_fm_distance(target, source, w)
    assert d.item() == pytest.approx(4.25)
    d.backward()
    assert source.grad is None  # the source map is a constant
    assert torch.allclose(target.grad, (w * 2 / 2)[None, :, None, None] * target.detach())


def test_omega1_on_hooked_classifier_layers_by_hand():
    def classifier(scale):
        c = nn.Sequential(nn.Conv2d(2, 2, 1, bias=False), nn.Flatten(), nn.Linear(2, 1, bias=False))
        with torch.no_grad():
            c[0].weight.copy_(scale * torch.eye(2).view(2, 2, 1, 1))
            c[2].weight.fill_(1.0)
        return c

    target, source = classifier(2.0), classifier(1.0)
    f_t = torch.tensor([[1.0, 2.0], [0.0, -1.0]]).view(2, 2, 1, 1)
    f_s = torch.tensor([[1.0, 1.0], [1.0, 1.0]]).view(2, 2, 1, 1)
    w = torch.tensor([0.4, 0.6])
    logits, omega = classify_with_omega1(target, source, f_t, f_s, ["0"], [w])
    # hooked maps: target 2 f_t = [[2, 4], [0, -2]], source f_s = [[1, 1], [1, 1]]; C = 2, H W = 1
    hand = 0.5 * (0.4 * 2 * 1 + 0.6 * 2 * 9 + 0.4 * 2 * 1 + 0.6 * 2 * 9)
    assert omega.item() == pytest.approx(hand)
    assert torch.allclose(logits.flatten(), torch.tensor([6.0, -2.0]))
    assert not target[0]._forward_hooks and not source[0]._forward_hooks  # hooks removed
    with capture_outputs(target, ["0"]) as maps:
        target(f_t)
    assert torch.equal(maps["0"], 2 * f_t)


def test_omega2_by_hand():
    fc = nn.Linear(2, 2)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        fc.bias.copy_(torch.tensor([1.0, -1.0]))
    assert head_l2(fc).item() == pytest.approx(0.5 * 30 + 0.5 * 2)


# -- losses --------------------------------------------------------------------------------------------


class _SumCritic(nn.Module):
    def forward(self, f):
        return f.flatten(1).sum(1)


def test_critic_and_generator_adversarial_losses():
    real = torch.arange(24, dtype=torch.float32).view(3, 2, 2, 2)
    fake = -torch.ones(3, 2, 2, 2)
    out = critic_loss(_SumCritic(), real, fake, lambda_gp=10.0, generator=torch.Generator().manual_seed(0))
    # D(x) = sum x: grad = ones (norm sqrt 8) for any interpolate; mean D(fake) = -8, mean D(real) = 276 / 3
    assert out["wasserstein"].item() == pytest.approx(-8 - 92)
    assert out["gp"].item() == pytest.approx((math.sqrt(8) - 1) ** 2, rel=1e-5)
    assert out["loss"].item() == pytest.approx(-100 + 10 * (math.sqrt(8) - 1) ** 2, rel=1e-5)
    assert generator_adv_loss(torch.tensor([1.0, 2.0, 6.0])).item() == pytest.approx(-3.0)


def test_generator_classification_loss_and_merge():
    fake, real = torch.zeros(2, 3), torch.ones(1, 3)
    feats, labels = merged_batch(fake, torch.tensor([0, 1]), real, torch.tensor([2]))
    assert torch.equal(feats, torch.cat([fake, real])) and labels.tolist() == [0, 1, 2]
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    hand = (_ce([2, 0, 0], 0) + _ce([0, 0, 0], 1) + _ce([0, 1, 3], 2)) / 3
    assert generator_cls_loss(logits, labels).item() == pytest.approx(hand)


def test_extractor_classifier_loss():
    logits, labels = torch.zeros(2, 4), torch.tensor([0, 3])
    ce = math.log(4)
    out = extractor_classifier_loss(logits, labels, torch.tensor(3.0), torch.tensor(5.0), torch.tensor(7.0))
    assert out["e_loss"].item() == pytest.approx(ce + 0.03)
    assert out["c_loss"].item() == pytest.approx(ce + 0.05 + 0.07)
    assert out["loss"].item() == pytest.approx(2 * ce + 0.15)  # CE counts twice, as in DFG
    plain = extractor_classifier_loss(logits, labels)
    assert plain["loss"].item() == pytest.approx(ce)  # without regularisation it counts once
    with pytest.raises(ValueError):
        extractor_classifier_loss(logits, labels, omega1_e=torch.tensor(1.0))


def test_classifier_fake_loss():
    real, fake = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    y_real, y_fake = torch.tensor([0]), torch.tensor([0])
    merged, y_merged = merged_batch(fake, y_fake, real, y_real)
    r, f = _ce([1, 0], 0), _ce([0, 2], 0)
    m = (f + r) / 2
    out = classifier_fake_loss(real, y_real, fake, y_fake, merged, y_merged, torch.tensor(2.0), torch.tensor(4.0))
    assert out["loss"].item() == pytest.approx((r + 0.02 + 0.04 + f + m) / 3)
    plain = classifier_fake_loss(real, y_real, fake, y_fake, merged, y_merged)
    assert plain["loss"].item() == pytest.approx((r + f + m) / 3)


def test_regularisers_on_the_lenet_split():
    torch.manual_seed(0)
    source = build_source("lenet5", num_classes=4).copy(frozen=True)
    target = source.copy()
    target.network.train().requires_grad_(True)
    x, y = torch.randn(5, 1, 32, 32), torch.tensor([0, 1, 2, 3, 0])
    w_e = regularizer_weights(torch.randn(6))
    w_c = [regularizer_weights(torch.randn(16))]
    f_t, f_s = target.extractor(x), source.extractor(x)
    logits, om1_c = classify_with_omega1(target.classifier, source.classifier, f_t, f_s, target.classifier_layers, w_c)
    assert attentive_fm_distance(f_t, f_s, w_e).item() == 0 and om1_c.item() == 0  # target == source
    with torch.no_grad():
        target.classifier.features[0].weight.add_(0.1)  # move conv2 of the target only
    f_t = target.extractor(x)
    logits, om1_c = classify_with_omega1(target.classifier, source.classifier, f_t, f_s, target.classifier_layers, w_c)
    assert om1_c.item() > 0
    loss = extractor_classifier_loss(logits, y, attentive_fm_distance(f_t, f_s, w_e), om1_c, head_l2(target.fc()))
    loss["loss"].backward()
    assert target.classifier.features[0].weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in source.network.parameters())
    # channel evaluation on the split: one attention row per class, each a mean of softmaxes
    ev = evaluate_extractor_channels(source.extractor, source.classifier, x[:4], y[:4], source.extractor_layer, 4)
    assert ev.attention.shape == (4, 6) and torch.allclose(ev.attention.sum(1), torch.ones(4))
