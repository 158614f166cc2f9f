"""BAGAN, BAGAN-GP / EBGAN and IDA-GAN: pre-training, per-class Gaussians, losses, training, resume, sampling."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import flatten_state, read_log

from tailgan import load_generator
from tailgan.cli import main as cli
from tailgan.data import load_data, to_float
from tailgan.engine import Callback, DataShape, RunContext, Trainer
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.methods.autoencoder import (
    AutoencoderPretraining,
    evaluate_reconstruction,
    fit_class_gaussians,
    gaussian_factors,
    reconstruction_loss,
    vae_kl,
)
from tailgan.methods.bagan import bagan_d_loss, bagan_g_loss, rebalance_ratios
from tailgan.methods.bagan_gp import bagan_gp_d_loss, bagan_gp_g_loss
from tailgan.methods.idagan import idagan_d_loss, idagan_g_loss
from tailgan.nets.autoencoder import ClassGaussianGenerator
from tailgan.train import build_method, make_config

NETS = ["model.conv_dim=8", "model.z_dim=16", "model.embed_dim=16"]
TINY = NETS + [
    "optim.batch_size=8",
    "optim.d_steps=2",
    "log_every=1",
    "sample_every=2",
    "ckpt_every=2",
    "options.pretrain_epochs=1",
]
PRESETS = ["bagan", "bagan-gp", "ebgan", "idagan"]


@pytest.fixture(scope="module")
def digits():
    return load_data(make_config("bagan").data)  # digits_lt at 32 px


DIGITS_LT = (120, 92, 71, 55, 43, 33, 25, 20, 15, 12)


def make(preset, *overrides, run_dir=None):
    cfg = make_config(preset, overrides=NETS + list(overrides))
    return build_method(cfg, DataShape(10, 1, 32, DIGITS_LT), RunContext(run_dir=run_dir))


class Records(Callback):
    def __init__(self, log):
        self.log = log

    def after_step(self, trainer, event):
        if event.record:
            self.log(event.record)


def pretrain(method, data, log):
    """Run the method's pretrain phase through the engine (its end hook included); records go to ``log``."""
    method.ctx.log = log
    Trainer(method, data, callbacks=[Records(log)]).run(phase="pretrain")


def ae_modules(method):
    G = method.nets["G"]
    mods = {"encoder": method.encoder, "decoder": G.decoder}
    if hasattr(G, "embedding"):
        mods["embedding"] = G.embedding
    return mods


def state_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# -- pre-training ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("preset", ["bagan", "bagan-gp", "idagan"])  # plain AE, supervised AE, VAE
def test_pretraining_lowers_reconstruction_error(preset, digits):
    m = make(preset, "options.pretrain_epochs=4", "options.pretrain_batch_size=16", "options.pretrain_lr=1e-3")
    x, y = to_float(digits.train.images), digits.train.labels
    before = evaluate_reconstruction(ae_modules(m), m.ae_loss, x, y)
    records = []
    pretrain(m, digits, records.append)
    after = evaluate_reconstruction(ae_modules(m), m.ae_loss, x, y)
    assert after < 0.7 * before, (before, after)
    assert [r["epoch"] for r in records] == [1, 2, 3, 4] and all(r["phase"] == "pretrain" for r in records)
    assert records[-1]["pretrain/recon"] < records[0]["pretrain/recon"]


def test_pretrain_checkpoint_is_reused_not_retrained(digits, tmp_path, monkeypatch):
    run = tmp_path / "run"
    first, log1 = make("ebgan", "options.pretrain_epochs=2", run_dir=run), []
    pretrain(first, digits, log1.append)
    assert (run / "checkpoints" / "pretrain.pt").is_file() and len(log1) == 2

    def no_training(*args, **kwargs):
        raise AssertionError("the saved pre-training should have been reused")

    monkeypatch.setattr(AutoencoderPretraining, "pretrain_step", no_training)
    second, log2 = make("ebgan", "options.pretrain_epochs=2", run_dir=run), []
    pretrain(second, digits, log2.append)
    assert len(log2) == 1 and log2[0]["reused"].endswith("pretrain.pt") and log2[0]["epochs"] == 2
    for name, module in ae_modules(first).items():
        assert state_equal(module, ae_modules(second)[name]), name
    # ebgan: D's image trunk starts from the encoder
    assert state_equal(second.nets["D"].trunk, second.encoder.trunk)

    # another run can point at it; the file is copied into that run
    other = make(
        "ebgan",
        "options.pretrain_epochs=2",
        f"options.pretrain_checkpoint={run}/checkpoints/pretrain.pt",
        run_dir=tmp_path / "other",
    )
    pretrain(other, digits, lambda r: None)
    assert state_equal(other.nets["G"], second.nets["G"])
    assert (tmp_path / "other" / "checkpoints" / "pretrain.pt").is_file()

    # other settings: refused, naming what differs
    with pytest.raises(TailganError, match="pretrain_epochs|epochs: 2 there, 3 here"):
        pretrain(make("ebgan", "options.pretrain_epochs=3", run_dir=run), digits, lambda r: None)


def test_pretrain_false_skips_the_phase(digits, tmp_path):
    m = make("bagan", "options.pretrain=false", run_dir=tmp_path)
    records = []
    with pytest.warns(UserWarning, match="covariance is singular"):
        pretrain(m, digits, records.append)
    assert records == [] and not (tmp_path / "checkpoints").exists()
    assert not state_equal(m.nets["D"].trunk, m.encoder.trunk)
    # the class Gaussians are still fitted (on the untrained encoder's codes)
    assert m.nets["G"].class_counts.tolist() == digits.train.counts()


def test_bagan_gp_preset_keeps_d_fresh_and_bagan_trains_the_encoder(digits):
    gp = make("bagan-gp", "options.pretrain_epochs=1")
    pretrain(gp, digits, lambda r: None)
    assert not state_equal(gp.nets["D"].trunk, gp.encoder.trunk)  # authors' code: D not from the encoder

    bagan = make("bagan", "options.pretrain_epochs=1")
    encoder0 = {k: v.clone() for k, v in bagan.encoder.state_dict().items()}
    with pytest.warns(UserWarning):
        pretrain(bagan, digits, lambda r: None)
    assert any(not torch.equal(v, bagan.encoder.state_dict()[k]) for k, v in encoder0.items())
    assert state_equal(bagan.nets["D"].trunk, bagan.encoder.trunk)

    faithful = make("bagan", "options.pretrain_epochs=1", "options.pretrain_decoder_only=true")
    with pytest.warns(UserWarning):
        pretrain(faithful, digits, lambda r: None)
    assert all(torch.equal(v, faithful.encoder.state_dict()[k]) for k, v in encoder0.items())


# -- per-class Gaussians ----------------------------------------------------------------------------------------
def test_class_gaussian_fit_equals_numpy():
    rng = np.random.default_rng(0)
    counts = [40, 7, 1, 12]
    codes = np.concatenate([rng.normal(c, 1 + c, size=(n, 5)) @ rng.normal(size=(5, 5)) for c, n in enumerate(counts)])
    labels = np.repeat(np.arange(4), counts)
    mean, cov, n = fit_class_gaussians(torch.tensor(codes), torch.tensor(labels), 4)
    assert n.tolist() == counts and mean.dtype == torch.float64
    for c in range(4):
        np.testing.assert_allclose(mean[c].numpy(), codes[labels == c].mean(axis=0), rtol=1e-12)
        expected = np.cov(codes[labels == c], rowvar=False) if counts[c] > 1 else np.zeros((5, 5))
        np.testing.assert_allclose(cov[c].numpy(), expected, rtol=1e-10, atol=1e-12)

    with pytest.raises(TailganError, match=r"classes \[4\] have no training images"):
        fit_class_gaussians(torch.tensor(codes), torch.tensor(labels), 5)

    # factors: A A^T = Sigma; classes with n_c <= d (here 1 image) get jitter x mean variance, with a warning
    with pytest.warns(UserWarning, match="classes c2 have no more images"):
        a = gaussian_factors(cov, n, jitter=0.01, names=["c0", "c1", "c2", "c3"])
    ref = cov[[0, 1, 3]].diagonal(dim1=-2, dim2=-1).mean()
    for c in range(4):
        target = cov[c] + (0.01 * ref * torch.eye(5, dtype=torch.float64) if c == 2 else 0)
        torch.testing.assert_close(a[c] @ a[c].T, target, rtol=1e-9, atol=1e-10)


def test_class_gaussian_generator_samples_the_fitted_gaussian():
    mean = torch.tensor([[1.0, -2.0], [0.0, 5.0]])
    cov1 = torch.tensor([[4.0, 1.2], [1.2, 1.0]])
    scale = torch.stack([torch.eye(2) * 0.5, torch.linalg.cholesky(cov1)])
    g = ClassGaussianGenerator(torch.nn.Identity(), num_classes=2, z_dim=2, img_channels=1, img_size=1)
    g.set_class_gaussians(mean, scale, torch.tensor([3, 4]))
    z = torch.tensor([[1.0, 2.0]])
    torch.testing.assert_close(g(z, torch.tensor([0])), torch.tensor([[1.5, -1.0]]))  # mu_0 + 0.5 z
    samples = g(torch.randn(40000, 2, generator=torch.Generator().manual_seed(0)), torch.ones(40000, dtype=torch.long))
    torch.testing.assert_close(samples.mean(0), mean[1], atol=0.05, rtol=0)
    torch.testing.assert_close(torch.cov(samples.T), cov1, atol=0.08, rtol=0)
    assert {k for k, _ in g.named_buffers()} == {"class_mean", "class_scale", "class_counts"}  # checkpointed


# -- losses against hand-computed values --------------------------------------------------------------------------
def _ce(logits, target):
    return -logits[target] + math.log(sum(math.exp(v) for v in logits))


def test_bagan_losses_by_hand():
    real = torch.tensor([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])  # K = 2 classes + "fake"
    fake = torch.tensor([[0.0, 0.0, 1.0]])
    y = torch.tensor([0, 1])
    expected = (_ce([1, 0, 0], 0) + _ce([0, 2, 0], 1) + _ce([0, 0, 1], 2)) / 3
    assert bagan_d_loss(real, y, fake).item() == pytest.approx(expected, rel=1e-6)
    assert bagan_g_loss(fake, torch.tensor([1])).item() == pytest.approx(_ce([0, 0, 1], 1), rel=1e-6)
    torch.testing.assert_close(rebalance_ratios(torch.tensor([8, 1, 1])), torch.tensor([0.0, 0.5, 0.5]))
    torch.testing.assert_close(rebalance_ratios(torch.tensor([5, 3, 2])), torch.tensor([1 / 6, 11 / 30, 14 / 30]))


def test_idagan_losses_by_hand():
    ra, fa = torch.tensor([[2.0, 0.0, 1.0]]), torch.tensor([[0.0, 1.0, 3.0]])  # head A: (c0, c1, fake)
    rb, fb = torch.tensor([[0.0, 0.5, 2.0]]), torch.tensor([[1.0, 0.0, -1.0]])  # head B: (c0, c1, real)
    yr, yf = torch.tensor([1]), torch.tensor([0])
    expected = (_ce([2, 0, 1], 1) + _ce([0, 1, 3], 2)) / 2 + (_ce([0, 0.5, 2], 2) + _ce([1, 0, -1], 0)) / 2
    assert idagan_d_loss(ra, fa, rb, fb, yr, yf).item() == pytest.approx(expected, rel=1e-6)
    assert idagan_g_loss(fa, fb, yf).item() == pytest.approx(_ce([0, 1, 3], 0) + _ce([1, 0, -1], 2), rel=1e-6)
    assert idagan_g_loss(fa, fb, yf, "none", "class").item() == pytest.approx(_ce([1, 0, -1], 0), rel=1e-6)
    with pytest.raises(ValueError, match="at least one head"):
        idagan_g_loss(fa, fb, yf, "none", "none")


def test_bagan_gp_losses_by_hand():
    def softplus(v):
        return math.log1p(math.exp(v))

    real, fake, wrong = torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.0]), torch.tensor([3.0, -1.0])
    expected = (softplus(-1) + softplus(2)) / 2 + (softplus(0.5) + softplus(0)) / 2 + (softplus(3) + softplus(-1)) / 2
    assert bagan_gp_d_loss(real, fake, wrong).item() == pytest.approx(expected, rel=1e-6)
    assert bagan_gp_g_loss(fake).item() == pytest.approx((softplus(-0.5) + softplus(0)) / 2, rel=1e-6)


def test_autoencoder_losses_by_hand():
    mean, logvar = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, math.log(4.0)]])
    # 0.5 * sum(sigma^2 + mu^2 - 1 - log sigma^2)
    assert vae_kl(mean, logvar).item() == pytest.approx(0.5 * ((1 + 1 - 1 - 0) + (4 + 0 - 1 - math.log(4))), rel=1e-6)
    x_hat, x = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.0, 1.0]])
    assert reconstruction_loss(x_hat, x, "mse").item() == pytest.approx((0.25 + 4) / 2)
    assert reconstruction_loss(x_hat, x, "l1").item() == pytest.approx((0.5 + 2) / 2)


def test_bagan_gp_wrong_labels_and_fakes_scored_with_their_labels(digits):
    m = make("ebgan", "options.pretrain=false", "optim.batch_size=8", "optim.d_steps=1")
    y = torch.arange(10).repeat(50)
    w = m.wrong_labels(y)
    assert (w != y).all() and all(set(w[y == c].tolist()) == set(range(10)) - {c} for c in range(10))

    # ECOGAN's port scored the D-step fakes with other labels than they were made for: not here
    made, scored = {}, []
    G, D = m.nets["G"], m.nets["D"]
    g_forward, d_forward = G.forward, D.forward

    def g_spy(z, labels):
        out = g_forward(z, labels)
        made[id(out)] = labels.clone()
        return out

    def d_spy(x, labels):
        scored.append((id(x), labels.clone()))
        return d_forward(x, labels)

    G.forward, D.forward = g_spy, d_spy
    x_r, y_r = to_float(digits.train.images[:8]), digits.train.labels[:8]
    class OneBatch:
        def next(self, name="real"):
            return x_r, y_r

    m.train_step(OneBatch(), 1)
    fake_scores = [(made[i], labels) for i, labels in scored if i in made]
    assert len(fake_scores) == 2  # the D step's fakes and the G step's
    assert all(torch.equal(a, b) for a, b in fake_scores)
    assert torch.equal(fake_scores[0][0], y_r)  # ebgan: the D-step fakes are made for the real labels


# -- the methods on the engine ------------------------------------------------------------------------------------
def run_cli(args):
    assert cli(args) == 0


@pytest.mark.parametrize(
    "preset, extra",
    [
        ("bagan", []),
        ("bagan-gp", []),
        ("ebgan", ["sampling=balanced", "loss.gp_alpha=normal"]),
        ("idagan", ["options.class_ratios_d=rebalance", "options.class_ratios_g=rebalance"]),
    ],
)
def test_trains_checkpoints_resumes_and_samples_every_class(preset, extra, tmp_path):
    over = TINY + extra + ["precision=fp32"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    run_cli(["train", "--method", preset, "--data", "digits_lt", "--steps", "4", "--out", str(straight), *over])
    run_cli(["train", "--method", preset, "--data", "digits_lt", "--steps", "2", "--out", str(split), *over])
    run_cli(["train", "--resume", str(split), "--steps", "4"])
    a = flatten_state(load_checkpoint(straight / "checkpoints" / "last.pt")["method"])
    b = flatten_state(load_checkpoint(split / "checkpoints" / "last.pt")["method"])
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"

    records = read_log(split)
    assert [r["epoch"] for r in records if r.get("phase") == "pretrain"] == [1]
    assert [r["step"] for r in records if r.get("phase") == "gan"] == [1, 2, 3, 4]
    assert all("d_loss" in r and "g_loss" in r for r in records if r.get("phase") == "gan")
    assert (split / "checkpoints" / "pretrain.pt").is_file()

    g = load_generator(split)
    x = g.sample(torch.arange(10), seed=0)
    assert x.shape == (10, 1, 32, 32) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, g.sample(torch.arange(10), seed=0))
    run_cli(["sample", str(split), "--balance-to", "max", "--out", str(tmp_path / "b")])
    counts = json.loads((tmp_path / "b" / "manifest.json").read_text())["counts"]
    for c, n in enumerate(counts):
        assert len(list(Path(tmp_path / "b" / "train" / f"cls{c}").glob("*.png"))) == n


def test_bad_options_are_named(tmp_path):
    with pytest.raises(TailganError, match="model.arch"):
        make("bagan", "model.arch=biggan")
    with pytest.raises(TailganError, match="loss.adv=bce"):
        make("bagan-gp", "loss.adv=hinge")
    with pytest.raises(TailganError, match="g_head_a and options.g_head_b"):
        make("idagan", "options.g_head_a=none", "options.g_head_b=none")
    with pytest.raises(TailganError, match="options.pretrain_epochs"):
        make("bagan", "options.pretrain_epochs=0")
    with pytest.raises(TailganError, match="options.fake_batch"):
        make("bagan", "options.fake_batch=half")
