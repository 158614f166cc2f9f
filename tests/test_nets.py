"""GAN networks: shapes, heads, initialisation, parameter counts, round trips, deepcopy."""

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from tailgan.nets import (
    BigGANDiscriminator,
    BigGANGenerator,
    DCGANDiscriminator,
    DCGANGenerator,
)
from tailgan.nets.biggan import DiscBlock
from tailgan.nets.layers import ConditionalBatchNorm2d, SelfAttention

K = 4


def tiny_dcgan(img_channels=3, img_size=32, head="proxy", **kw):
    torch.manual_seed(0)
    g = DCGANGenerator(K, img_channels, img_size, z_dim=8, conv_dim=4)
    d = DCGANDiscriminator(K, img_channels, img_size, conv_dim=4, head=head, embed_dim=16, **kw)
    return g, d


def tiny_biggan(img_channels=3, head="proxy", **kw):
    torch.manual_seed(0)
    g = BigGANGenerator(K, img_channels, 32, z_dim=8, conv_dim=4, shared_dim=4)
    d = BigGANDiscriminator(K, img_channels, 32, conv_dim=4, head=head, embed_dim=16, **kw)
    return g, d


def inputs(g, batch=3):
    gen = torch.Generator().manual_seed(1)
    return torch.randn(batch, g.z_dim, generator=gen), torch.randint(0, K, (batch,), generator=gen)


BUILDS = [
    ("dcgan", 1, 32),
    ("dcgan", 3, 32),
    ("dcgan", 1, 64),
    ("dcgan", 3, 64),
    ("biggan", 1, 32),
    ("biggan", 3, 32),
]


def build(arch, channels, size, head="proxy", **kw):
    return tiny_dcgan(channels, size, head, **kw) if arch == "dcgan" else tiny_biggan(channels, head, **kw)


@pytest.mark.parametrize("arch,channels,size", BUILDS)
def test_shapes_range_and_unit_embeddings(arch, channels, size):
    g, d = build(arch, channels, size)
    assert (g.num_classes, g.img_channels, g.img_size) == (K, channels, size)
    z, y = inputs(g)
    x = g(z * 50, y)  # large latents push tanh to its limits
    assert x.shape == (3, channels, size, size)
    assert x.min() >= -1 and x.max() <= 1
    out = d(x, y)
    assert set(out) == {"adv", "embed", "proxy"}
    assert out["adv"].shape == (3,)
    assert out["embed"].shape == out["proxy"].shape == (3, 16)
    torch.testing.assert_close(out["embed"].norm(dim=1), torch.ones(3))
    torch.testing.assert_close(out["proxy"].norm(dim=1), torch.ones(3))
    # the proxy depends on the label only
    y2 = torch.tensor([1, 1, 2])
    p = d(x, y2)["proxy"]
    torch.testing.assert_close(p[0], p[1])
    assert not torch.allclose(p[1], p[2])
    out["adv"].sum().backward()  # the graph is intact


@pytest.mark.parametrize("arch,channels,size", [("dcgan", 3, 64), ("biggan", 3, 32)])
def test_features_and_other_heads(arch, channels, size):
    g, d_uncond = build(arch, channels, size, head="uncond")
    z, y = inputs(g, batch=2)
    x = g(z, y).detach()
    width = 16 if arch == "dcgan" else 8  # 4c and 2c with c = 4
    assert d_uncond.features(x).shape == (2, width)
    assert set(d_uncond(x)) == {"adv"}  # no labels needed
    _, d_ac = build(arch, channels, size, head="acgan", num_cls_outputs=K + 1)
    out = d_ac(x)
    assert out["cls_logits"].shape == (2, K + 1) and out["adv"].shape == (2,)
    _, d_proxy = build(arch, channels, size)
    with pytest.raises(ValueError, match="labels"):
        d_proxy(x)
    # a batch of one keeps its batch dimension
    assert d_uncond(x[:1])["adv"].shape == (1,)


@pytest.mark.parametrize("arch,channels,size", [("dcgan", 1, 64), ("biggan", 3, 32)])
def test_projection_head_by_hand(arch, channels, size):
    g, d = build(arch, channels, size, head="projection")
    d.eval()  # spectral norm: use the stored estimate, no power iteration
    z, y = inputs(g)
    x = g(z, y).detach()
    with torch.no_grad():
        h = d.features(x)
        w, b = d.head.linear_adv.weight, d.head.linear_adv.bias
        emb = d.head.class_embedding.weight
        expect = h @ w[0] + b[0] + (emb[y] * h).sum(dim=1)
        torch.testing.assert_close(d(x, y)["adv"], expect)
        # changing only the label moves the logit by <emb(y') - emb(y), h>
        y2 = (y + 1) % K
        torch.testing.assert_close(d(x, y2)["adv"] - d(x, y)["adv"], ((emb[y2] - emb[y]) * h).sum(dim=1))


@pytest.mark.parametrize("arch,channels,size", BUILDS[::2])
def test_state_dict_round_trip(arch, channels, size):
    g, d = build(arch, channels, size)
    torch.manual_seed(99)  # different weights to overwrite
    g2 = type(g)(K, channels, size, z_dim=8, conv_dim=4, **({"shared_dim": 4} if arch == "biggan" else {}))
    d2 = type(d)(K, channels, size, conv_dim=4, embed_dim=16)
    buf = io.BytesIO()
    torch.save({"g": g.state_dict(), "d": d.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf)
    g2.load_state_dict(state["g"])
    d2.load_state_dict(state["d"])
    for m in (g, d, g2, d2):
        m.eval()
    z, y = inputs(g)
    with torch.no_grad():
        x = g(z, y)
        assert torch.equal(x, g2(z, y))
        for key, value in d(x, y).items():
            assert torch.equal(value, d2(x, y)[key])


@pytest.mark.parametrize("arch,channels,size", BUILDS[::2])
def test_deepcopy_for_ema(arch, channels, size):
    g, _ = build(arch, channels, size)
    z, y = inputs(g)
    g.train()
    g(z, y)  # one training forward: batch-norm statistics and spectral-norm vectors move
    ema = copy.deepcopy(g)
    g.eval()
    ema.eval()
    with torch.no_grad():
        assert torch.equal(g(z, y), ema(z, y))
        # an EMA update on the copy leaves the original alone
        for p_ema, p in zip(ema.parameters(), g.parameters()):
            p_ema.copy_(p + 0.5 * (p_ema - p) + 0.1)
        assert not torch.equal(g(z, y), ema(z, y))
    assert all(a is not b for a, b in zip(ema.parameters(), g.parameters()))


def test_dcgan_parameter_count_at_64px():
    """Count from the spec's layer list (section 7.1) with ECOGAN's widths, K = 10, C = 3."""
    k, c_img, z = 10, 3, 128

    def conv(cin, cout, kernel=4):
        return cin * cout * kernel * kernel + cout

    def bn(ch):
        return 2 * ch

    g_layers = [
        k * z,  # Embedding(K, 128)
        z * 4096 + 4096,  # Linear(128 -> 256*4*4)
        conv(256, 128) + bn(128),
        conv(128, 128) + bn(128),
        conv(128, 64) + bn(64),
        conv(64, c_img),
    ]
    d_layers = [
        conv(c_img, 64),
        conv(64, 128),
        conv(128, 128),
        conv(128, 256),
        256 + 1,  # adv Linear(256 -> 1)
        256 * 512 + 512,  # embed Linear(256 -> 512)
        k * 512,  # proxy Embedding(K, 512)
    ]
    g = DCGANGenerator(k, c_img, 64)
    d = DCGANDiscriminator(k, c_img, 64)
    assert sum(p.numel() for p in g.parameters()) == sum(g_layers)
    assert sum(p.numel() for p in d.parameters()) == sum(d_layers)
    assert g.z_dim == 128
    # no batch norm and no spectral norm in the discriminator
    assert not any(isinstance(m, nn.BatchNorm2d) or parametrize.is_parametrized(m) for m in d.modules())


def test_dcgan_initialisation():
    torch.manual_seed(0)
    g = DCGANGenerator(10, 3, 64)
    linear = g.decoder.linear[0]
    assert linear.weight.std().item() == pytest.approx(0.02, rel=0.02)
    assert g.embedding.weight.std().item() == pytest.approx(1.0, rel=0.1)  # nn.Embedding's N(0, 1)


def test_biggan_orthogonal_init_and_spectral_norm():
    g, d = tiny_biggan()
    # the shared class table is a plain orthogonal embedding (K = 4 rows of width 4)
    assert not parametrize.is_parametrized(g.shared)
    torch.testing.assert_close(g.shared.weight @ g.shared.weight.T, torch.eye(K))
    for net, types in ((g, (nn.Conv2d, nn.Linear)), (d, (nn.Conv2d, nn.Linear, nn.Embedding))):
        layers = [m for m in net.modules() if isinstance(m, types) and m is not getattr(net, "shared", None)]
        assert layers and all(parametrize.is_parametrized(m, "weight") for m in layers)
        for m in layers:
            assert m.parametrizations.weight[0].eps == 1e-6
            if getattr(m, "bias", None) is not None:
                assert torch.count_nonzero(m.bias) == 0
    # after a few training forwards the effective weights have spectral norm ~1
    torch.nn.init.normal_(d.head.linear_embed.parametrizations.weight.original, std=3.0)
    z, y = inputs(g)
    x = g(z, y).detach()
    for _ in range(30):
        d(x, y)
    w = d.head.linear_embed.weight.detach()
    assert torch.linalg.matrix_norm(w, ord=2).item() == pytest.approx(1.0, abs=1e-3)


def test_studiogan_inplace_relu_shortcut():
    """shortcut_after_relu=True equals StudioGAN's DiscBlock, whose in-place ReLU rewrites the shortcut."""
    torch.manual_seed(0)
    block = DiscBlock(8, 8, downsample=True, shortcut_after_relu=True)
    x = torch.randn(2, 8, 8, 8)

    def studiogan_forward(x):  # StudioGAN's DiscBlock.forward with nn.ReLU(inplace=True)
        act = nn.ReLU(inplace=True)
        x0 = x
        x = act(x)
        x = block.conv1(x)
        x = act(x)
        x = block.conv2(x)
        x = F.avg_pool2d(x, 2)
        x0 = F.avg_pool2d(block.conv_skip(x0), 2)
        return x + x0

    with torch.no_grad():
        torch.testing.assert_close(block(x), studiogan_forward(x.clone()))
        block.shortcut_after_relu = False
        sound = block(x)
        assert not torch.allclose(sound, studiogan_forward(x.clone()))
        expect = F.avg_pool2d(block.conv2(F.relu(block.conv1(F.relu(x)))), 2) + F.avg_pool2d(
            block.conv_skip(x), 2
        )
        torch.testing.assert_close(sound, expect)


def test_conditional_batch_norm_by_hand():
    torch.manual_seed(0)
    cbn = ConditionalBatchNorm2d(3, 5)
    x, c = torch.randn(4, 3, 2, 2), torch.randn(4, 5)
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = x.var(dim=(0, 2, 3), unbiased=False, keepdim=True)
    normed = (x - mean) / torch.sqrt(var + 1e-4)
    gain = 1 + c @ cbn.gain.weight.T
    bias = c @ cbn.bias.weight.T
    torch.testing.assert_close(cbn(x, c), normed * gain[:, :, None, None] + bias[:, :, None, None])


def test_self_attention_by_hand():
    torch.manual_seed(0)
    sa = SelfAttention(8)
    x = torch.randn(2, 8, 4, 4)
    torch.testing.assert_close(sa(x), x)  # sigma starts at 0
    with torch.no_grad():
        sa.sigma.fill_(0.7)
        q = sa.theta(x).flatten(2)  # (b, 1, 16)
        k = F.max_pool2d(sa.phi(x), 2).flatten(2)  # (b, 1, 4)
        v = F.max_pool2d(sa.g(x), 2).flatten(2)  # (b, 4, 4)
        weights = torch.softmax(torch.einsum("bcq,bck->bqk", q, k), dim=-1)
        attended = torch.einsum("bck,bqk->bcq", v, weights).view(2, 4, 4, 4)
        torch.testing.assert_close(sa(x), x + 0.7 * sa.out(attended))


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="img_size"):
        DCGANGenerator(K, 3, 128)
    with pytest.raises(ValueError, match="img_channels"):
        DCGANDiscriminator(K, 2, 64)
    with pytest.raises(ValueError, match="head"):
        DCGANDiscriminator(K, 3, 64, head="multi")
    with pytest.raises(ValueError, match="num_cls_outputs"):
        BigGANDiscriminator(K, conv_dim=4, head="proxy", num_cls_outputs=5)
    with pytest.raises(ValueError, match="img_size"):
        BigGANGenerator(K, 3, 64)
    with pytest.raises(ValueError, match="z_dim"):
        BigGANGenerator(K, z_dim=81, conv_dim=4)
    with pytest.raises(ValueError, match="conv_dim"):
        BigGANDiscriminator(K, conv_dim=6)
    g, d = tiny_dcgan()
    with pytest.raises(ValueError, match="z must be"):
        g(torch.randn(2, 9), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="x must be"):
        d(torch.randn(2, 3, 64, 64), torch.zeros(2, dtype=torch.long))
