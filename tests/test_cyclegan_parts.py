"""Building blocks of the joint CycleGAN + classifier method: networks, losses, image pool."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tailgan.io import load_checkpoint, save_checkpoint
from tailgan.losses.translation import (
    classifier_objective,
    cls_loss_a,
    cls_loss_b,
    cost_sensitive_gamma,
    cycle_loss,
    cyclegan_d_losses,
    cyclegan_g_losses,
    gan_d_loss,
    gan_g_loss,
    grad_norms,
    identity_loss,
    joint_cls_loss,
    log_z,
    multiclass_cls_loss,
    stargan_d_loss,
    stargan_g_loss,
)
from tailgan.methods.pool import ImagePool
from tailgan.nets.classifiers import build_classifier
from tailgan.nets.cyclegan import (
    ConditionalPatchDiscriminator,
    ConditionalResnetGenerator,
    PatchDiscriminator,
    ResnetGenerator,
    class_maps,
    patchgan_strides,
)

# --- networks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [28, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_resnet_generator_keeps_shape_and_range(size, channels):
    g = ResnetGenerator(channels, ngf=4, n_blocks=6)
    x = torch.rand(2, channels, size, size) * 2 - 1
    y = g(x)
    assert y.shape == x.shape
    assert y.abs().max() <= 1.0  # tanh output
    assert sum(isinstance(m, nn.ReflectionPad2d) for m in g.modules()) == 2 + 2 * 6
    assert sum(isinstance(m, nn.InstanceNorm2d) for m in g.modules()) == 1 + 2 + 2 * 6 + 2


def test_resnet_generator_rejects_sides_not_divisible_by_4():
    with pytest.raises(ValueError, match="divisible by 4"):
        ResnetGenerator(1, ngf=4)(torch.zeros(1, 1, 30, 30))


@pytest.mark.parametrize(("size", "side", "strides"), [(28, 4, (2, 2, 1, 1, 1)), (32, 5, (2, 2, 1, 1, 1)),
                                                        (64, 6, (2, 2, 2, 1, 1)), (256, 30, (2, 2, 2, 1, 1))])
@pytest.mark.parametrize("channels", [1, 3])
def test_patch_discriminator_map(size, side, strides, channels):
    # hand-computed sides: k4 p1 conv gives floor((n - 2) / s) + 1, e.g. 28 -> 14 -> 7 -> 6 -> 5 -> 4
    assert patchgan_strides(size) == strides
    if size > 64:
        return  # geometry only; a 256 px forward is too slow for a unit test
    d = PatchDiscriminator(channels, ndf=4, img_size=size)
    out = d(torch.randn(2, channels, size, size))
    assert out.shape == (2, 1, side, side)


def test_patch_discriminator_original_strides_at_32px_give_2x2():
    # the CycleGAN strides (spec 6.2: a 2 x 2 map at 32 px) are still available explicitly
    d = PatchDiscriminator(1, ndf=4, strides=(2, 2, 2, 1, 1))
    assert d(torch.randn(1, 1, 32, 32)).shape == (1, 1, 2, 2)


def test_init_is_normal_002():
    g = ResnetGenerator(3, ngf=16, n_blocks=2)
    w = torch.cat([m.weight.flatten() for m in g.modules() if isinstance(m, nn.Conv2d)])
    assert abs(w.mean().item()) < 2e-3 and abs(w.std().item() - 0.02) < 2e-3
    assert all(m.bias.abs().max() == 0 for m in g.modules() if isinstance(m, nn.Conv2d))


def test_class_maps_and_conditional_translator():
    maps = class_maps(torch.tensor([2, 0]), 3, 4, 5)
    assert maps.shape == (2, 3, 4, 5)
    assert maps[0, 2].eq(1).all() and maps[0, :2].eq(0).all() and maps[1, 0].eq(1).all()
    for size, channels in [(28, 1), (32, 3)]:
        g = ConditionalResnetGenerator(channels, num_classes=3, ngf=4, n_blocks=2)
        x = torch.rand(2, channels, size, size) * 2 - 1
        assert g(x, torch.tensor([0, 2])).shape == x.shape
        # the target class changes the output: the class maps reach the network
        assert not torch.allclose(g(x, torch.tensor([0, 0])), g(x, torch.tensor([1, 1])))


@pytest.mark.parametrize(("size", "side"), [(28, 3), (32, 2)])
@pytest.mark.parametrize("channels", [1, 3])
def test_conditional_discriminator_heads(size, side, channels):
    d = ConditionalPatchDiscriminator(channels, num_classes=4, img_size=size, ndf=4)
    out = d(torch.randn(2, channels, size, size))
    assert out["adv"].shape == (2, 1, side, side)
    assert out["cls_logits"].shape == (2, 4)


# --- losses ------------------------------------------------------------------------------------------


def test_lsgan_losses_hand_computed():
    real = torch.tensor([[1.0, 0.0], [2.0, 1.0]])  # (D - 1)^2: 0, 1, 1, 0 -> mean 0.5
    fake = torch.tensor([0.5, -1.0])  # D^2: 0.25, 1 -> mean 0.625
    assert gan_d_loss(real, fake).item() == pytest.approx(0.5 * (0.5 + 0.625))
    # (0.5 - 1)^2 = 0.25, (-1 - 1)^2 = 4 -> mean 2.125
    assert gan_g_loss(fake).item() == pytest.approx(2.125)


def test_nonsaturating_losses_hand_computed():
    real, fake = torch.tensor([0.0, 2.0]), torch.tensor([-1.0])
    sp = lambda v: math.log1p(math.exp(v))  # noqa: E731
    assert gan_d_loss(real, fake, "nonsaturating").item() == pytest.approx(
        0.5 * ((sp(0.0) + sp(-2.0)) / 2 + sp(-1.0))
    )
    # -log sigmoid(-1) = log(1 + e)
    assert gan_g_loss(fake, "nonsaturating").item() == pytest.approx(math.log(1 + math.e))
    # stable at saturated logits
    assert torch.isfinite(gan_g_loss(torch.tensor([-200.0]), "nonsaturating"))
    with pytest.raises(ValueError, match="unknown GAN loss"):
        gan_g_loss(fake, "hinge")


def test_cycle_and_identity_l1():
    a = torch.zeros(1, 1, 2, 2)
    rec = torch.tensor([[[[1.0, -1.0], [0.0, 2.0]]]])  # |.|: 1, 1, 0, 2 -> mean 1
    assert cycle_loss(rec, a).item() == pytest.approx(1.0)
    b = torch.ones(1, 1, 2, 2)
    g_ab_b = torch.full((1, 1, 2, 2), 0.5)  # mean |0.5 - 1| = 0.5
    g_ba_a = torch.full((1, 1, 2, 2), -0.25)  # mean 0.25
    assert identity_loss(g_ab_b, b, g_ba_a, a).item() == pytest.approx(0.75)
    assert identity_loss(None, None, g_ba_a, a, one_sided=True).item() == pytest.approx(0.25)


def test_cyclegan_objective_weights():
    a, b = torch.zeros(1, 1, 2, 2), torch.ones(1, 1, 2, 2)
    out = cyclegan_g_losses(
        d_b_fake=torch.tensor([0.0]),  # (0 - 1)^2 = 1
        d_a_fake=torch.tensor([3.0]),  # (3 - 1)^2 = 4
        a=a,
        b=b,
        rec_a=torch.full_like(a, 0.1),  # 0.1
        rec_b=torch.full_like(b, 0.8),  # 0.2
        idt_a=torch.full_like(a, 0.3),  # 0.3
        idt_b=torch.full_like(b, 0.6),  # 0.4
        beta=10.0,
        alpha=5.0,
    )
    assert out["ide"].item() == pytest.approx(0.7)
    assert out["total"].item() == pytest.approx(1 + 4 + 10 * (0.1 + 0.2) + 5 * 0.7)
    one = cyclegan_g_losses(torch.tensor([0.0]), torch.tensor([3.0]), a, b, torch.full_like(a, 0.1),
                            torch.full_like(b, 0.8), torch.full_like(a, 0.3), None, one_sided_identity=True)
    assert one["total"].item() == pytest.approx(1 + 4 + 10 * 0.3 + 5 * 0.3)
    d = cyclegan_d_losses(torch.tensor([1.0]), torch.tensor([1.0]), torch.tensor([0.0]), torch.tensor([0.0]))
    assert d["d_a"].item() == pytest.approx(0.5) and d["d_b"].item() == pytest.approx(0.5)
    assert d["total"].item() == pytest.approx(1.0)


def test_classifier_losses_hand_computed_with_gamma():
    # single-logit classifier: z = sigmoid(l)
    lb_real, lb_fake = torch.tensor([0.0]), torch.tensor([math.log(3.0)])  # z = 1/2, 3/4
    la_real, la_fake = torch.tensor([math.log(1 / 4)]), torch.tensor([0.0])  # 1 - z = 4/5, 1/2
    want_b = -math.log(0.5) - math.log(0.75)
    want_a = -math.log(0.8) - math.log(0.5)
    assert cls_loss_b(lb_real, lb_fake).item() == pytest.approx(want_b)
    assert cls_loss_a(la_real, la_fake).item() == pytest.approx(want_a)
    gamma = cost_sensitive_gamma(6000, 50)
    assert gamma == 120.0
    out = joint_cls_loss(la_real, lb_real, la_fake, lb_fake, gamma=gamma)
    assert out["cls"].item() == pytest.approx(want_b + want_a / 120.0)
    assert joint_cls_loss(la_real, lb_real, la_fake, lb_fake)["cls"].item() == pytest.approx(want_b + want_a)
    # the literal JA + CS slide prints a single L_cls^B term: either input may be dropped
    assert cls_loss_b(None, lb_fake).item() == pytest.approx(-math.log(0.75))


def test_the_classifier_update_minimises_a_weighted_mean_of_the_four_groups_unless_sum_is_asked():
    cls = torch.tensor(6.0)  # L_cls^B + L_cls^A / gamma
    assert classifier_objective(cls, gamma=1.0).item() == pytest.approx(6.0 / 4)  # four equal-weight groups
    assert classifier_objective(cls, gamma=3.0).item() == pytest.approx(6.0 / (2 + 2 / 3))  # weights 1, 1, 1/3, 1/3
    assert classifier_objective(cls, gamma=3.0, reduction="sum").item() == 6.0  # the seed's L_cls as written
    with pytest.raises(ValueError, match="mean.*sum"):
        classifier_objective(cls, reduction="max")


def test_joint_classifier_lr_scales_linearly_with_the_images_of_an_update():
    from tailgan.baselines.joint import joint_classifier_lr
    from tailgan.classify.train import ClassifyConfig

    cfg = ClassifyConfig(lr=0.05, batch_size=128, joint_batch_size=8, joint_cls_batch="translator")
    assert joint_classifier_lr("cyclegan-alt", cfg) == pytest.approx(0.05 * 32 / 128)  # a, b, G_BA(b), G_AB(a)
    assert joint_classifier_lr("stargan-aug", cfg) == pytest.approx(0.05 * 16 / 128)  # x, G(x, t)
    big = ClassifyConfig(lr=0.05, batch_size=128, joint_batch_size=64, joint_cls_batch="translator")
    assert joint_classifier_lr("cyclegan-aug", big) == 0.05  # never above the strategies' rate
    # the default: the classifier's own batch_size real images per update, at the strategies' rate
    assert joint_classifier_lr("cyclegan-alt", ClassifyConfig(lr=0.05, joint_batch_size=8)) == 0.05


def test_joint_classifier_batch_follows_joint_cls_batch():
    from tailgan.baselines.joint import joint_recipe_options
    from tailgan.classify.train import ClassifyConfig

    def cls_batch(strategy, **kw):
        options = joint_recipe_options(strategy, ClassifyConfig(batch_size=128, **kw), [6000, 50], 0, "cpu")
        return [o for o in options if o.startswith("options.cls_batch_size=")]

    assert cls_batch("cyclegan-alt") == ["options.cls_batch_size=64"]  # per domain: 64 a + 64 b = 128 real
    assert cls_batch("stargan-aug") == ["options.cls_batch_size=128"]
    assert cls_batch("cyclegan-aug", joint_cls_batch="translator") == []  # the translator's batch


def test_two_logit_classifier_matches_softmax_probabilities():
    logits = torch.tensor([[0.0, math.log(3.0)], [2.0, 2.0]])  # z = softmax[:, 1] = 3/4, 1/2
    lz, l1z = log_z(logits)
    assert lz.tolist() == pytest.approx([math.log(0.75), math.log(0.5)])
    assert l1z.tolist() == pytest.approx([math.log(0.25), math.log(0.5)])
    # minority as class 0 swaps the roles
    assert log_z(logits, minority=0)[0].tolist() == pytest.approx([math.log(0.25), math.log(0.5)])
    # stable: saturated logits give finite losses
    assert torch.isfinite(cls_loss_b(torch.tensor([[500.0, -500.0]]), None))


def test_multiclass_cls_loss_reduces_to_binary_and_per_class_means():
    torch.manual_seed(0)
    la_real, lb_real, la_fake, lb_fake = (torch.randn(n, 2) for n in (5, 2, 2, 5))
    gamma = 7.0
    binary = joint_cls_loss(la_real, lb_real, la_fake, lb_fake, gamma=gamma)["cls"]
    multi = multiclass_cls_loss(
        torch.cat([la_real, lb_real]),
        torch.tensor([0] * 5 + [1] * 2),
        torch.cat([la_fake, lb_fake]),
        torch.tensor([0] * 2 + [1] * 5),
        class_weights=torch.tensor([1 / gamma, 1.0]),
    )
    assert multi.item() == pytest.approx(binary.item(), rel=1e-6)
    # three classes, class 2 absent: mean CE of class 0 (two images) + CE of class 1 (one image)
    logits = torch.tensor([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])
    labels = torch.tensor([0, 0, 1])
    ce = F.cross_entropy(logits, labels, reduction="none")
    want = 2.0 * (ce[0] + ce[1]) / 2 + 3.0 * ce[2]
    got = multiclass_cls_loss(logits, labels, class_weights=torch.tensor([2.0, 3.0, 5.0]))
    assert got.item() == pytest.approx(want.item())


def test_stargan_losses_hand_computed():
    cls_logits = torch.tensor([[0.0, math.log(3.0)]])  # p(class 1) = 3/4
    d = stargan_d_loss(torch.tensor([1.0]), cls_logits, torch.tensor([1]), torch.tensor([0.0]), lambda_cls=2.0)
    assert d["adv"].item() == pytest.approx(0.0)
    assert d["total"].item() == pytest.approx(-2 * math.log(0.75))
    x = torch.zeros(1, 1, 2, 2)
    g = stargan_g_loss(torch.tensor([0.0]), cls_logits, torch.tensor([0]), x, torch.full_like(x, 0.5),
                       torch.full_like(x, 0.1), lambda_cls=1.0, lambda_rec=10.0, alpha=2.0)
    # adv (0 - 1)^2 = 1, CE to class 0 = -log(1/4), rec 0.5 x 10, identity 0.1 x 2
    assert g["total"].item() == pytest.approx(1 - math.log(0.25) + 5.0 + 0.2)


def _tiny_joint(seed=0):
    torch.manual_seed(seed)
    g_ab, g_ba = ResnetGenerator(1, ngf=2, n_blocks=1), ResnetGenerator(1, ngf=2, n_blocks=1)
    clf = build_classifier("lenet5", 2, 1)
    a, b = torch.rand(3, 1, 8, 8) * 2 - 1, torch.rand(2, 1, 8, 8) * 2 - 1
    return g_ab, g_ba, clf, a, b


def test_alt_mode_classifier_loss_reaches_the_generators():
    g_ab, g_ba, clf, a, b = _tiny_joint()
    loss = joint_cls_loss(clf(a), clf(b), clf(g_ba(b)), clf(g_ab(a)), gamma=4.0)["cls"]
    norms = grad_norms(loss, {"g_ab": g_ab, "g_ba": g_ba, "clf": clf})
    assert norms["g_ab"] > 0 and norms["g_ba"] > 0 and norms["clf"] > 0
    assert all(p.grad is None for p in g_ab.parameters())  # the check itself leaves .grad alone
    # only L_cls^B reads G_AB(a): it reaches G_AB and not G_BA
    only_b = grad_norms(cls_loss_b(clf(b), clf(g_ab(a))), {"g_ab": g_ab, "g_ba": g_ba})
    assert only_b["g_ab"] > 0 and only_b["g_ba"] == 0.0


def test_aug_mode_classifier_loss_does_not_reach_the_generators():
    g_ab, g_ba, clf, a, b = _tiny_joint()
    with torch.no_grad():
        fake_b, fake_a = g_ab(a), g_ba(b)
    loss = joint_cls_loss(clf(a), clf(b), clf(fake_a), clf(fake_b.detach()))["cls"]
    norms = grad_norms(loss, {"g_ab": g_ab, "g_ba": g_ba, "clf": clf})
    assert norms["g_ab"] == 0.0 and norms["g_ba"] == 0.0 and norms["clf"] > 0


# --- image pool --------------------------------------------------------------------------------------


def _batches(n, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(2, 1, 3, 3, generator=gen) for _ in range(n)]


def test_pool_below_capacity_stores_and_returns():
    pool = ImagePool(4, seed=0)
    b1, b2, b3 = _batches(3)
    assert torch.equal(pool.query(b1), b1) and len(pool) == 2
    assert torch.equal(pool.query(b2), b2) and len(pool) == 4
    stored = pool.images.clone()
    assert torch.equal(stored, torch.cat([b1, b2]))
    # full: every returned image is either the new one or one that was stored, which it then replaces
    out = pool.query(b3)
    assert len(pool) == 4
    for i in range(2):
        new_returned = torch.equal(out[i], b3[i])
        from_pool = any(torch.equal(out[i], s) for s in stored)
        assert new_returned != from_pool
        assert any(torch.equal(b3[i], s) for s in pool.images) == from_pool
    assert torch.equal(ImagePool(0).query(b3), b3)


def test_pool_swaps_about_half_the_time():
    pool = ImagePool(1, seed=0)
    pool.query(torch.zeros(1, 1, 1, 1))
    values = torch.arange(1, 2001, dtype=torch.float32).view(-1, 1, 1, 1)
    out = torch.cat([pool.query(v[None]) for v in values])
    swapped = (out.view(-1) != values.view(-1)).float().mean().item()
    assert 0.45 < swapped < 0.55


def test_pool_is_deterministic_under_a_seed():
    runs = []
    for _ in range(2):
        pool = ImagePool(3, generator=torch.Generator().manual_seed(7))
        runs.append(torch.cat([pool.query(b) for b in _batches(10)]))
    assert torch.equal(runs[0], runs[1])
    other = ImagePool(3, seed=8)
    assert not torch.equal(runs[0], torch.cat([other.query(b) for b in _batches(10)]))


def test_pool_state_round_trip_through_a_weights_only_checkpoint(tmp_path):
    batches = _batches(12)
    straight = ImagePool(3, seed=5)
    want = [straight.query(b) for b in batches]

    first = ImagePool(3, seed=5)
    for b in batches[:6]:
        first.query(b)
    save_checkpoint({"pool": first.state_dict()}, tmp_path / "ck.pt")
    resumed = ImagePool(3, seed=123)  # a different seed: the state must override it
    resumed.load_state_dict(load_checkpoint(tmp_path / "ck.pt")["pool"])
    for b, w in zip(batches[6:], want[6:]):
        assert torch.equal(resumed.query(b), w)

    empty = ImagePool(3, seed=0)
    empty.load_state_dict(ImagePool(3, seed=0).state_dict())
    assert len(empty) == 0 and torch.equal(empty.query(batches[0]), batches[0])
    with pytest.raises(ValueError, match="same pool size"):
        ImagePool(4).load_state_dict(first.state_dict())
