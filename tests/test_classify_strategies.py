"""Each strategy is checked on what makes it that strategy (issue 11 item 16, issue 12).

The first optimizer step's loss (``first_loss``, computed by ``train_and_score`` on the whole training set
in one batch) is compared with the strategy's formula evaluated by hand (float64, from the logits of the
same initial network); prediction rules (``ts``, ``la-posthoc``) are compared with argmax of the adjusted
posteriors of an identically trained plain model.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score, confusion_matrix

from tailgan.classify.strategies import parse_strategy, resample_indices, smote_images
from tailgan.classify.train import (
    ClassifyConfig,
    build_training_set,
    init_model,
    predict_proba,
    train_and_score,
    train_classifier,
)
from tailgan.data import DataConfig, ImageSet, LongTailedData, load_data, to_float
from tailgan.data.splits import carve_validation

COUNTS = [12, 6, 3]
CLASSES = ["a", "b", "c"]


def _tiny_data(seed=0):
    """3 classes of random 8x8 images with counts 12, 6, 3, and explicit validation and test splits."""
    g = torch.Generator().manual_seed(seed)

    def split(counts):
        y = torch.repeat_interleave(torch.arange(3), torch.tensor(counts))
        x = torch.randint(0, 256, (len(y), 1, 8, 8), generator=g, dtype=torch.uint8)
        return ImageSet(x, y, CLASSES)

    return LongTailedData(split(COUNTS), split([4, 4, 4]), split([2, 2, 2]), DataConfig(source="tiny"), {})


def _cfg(**kw):
    # one batch = the whole training set: the first loss is a mean over every image, whatever the order;
    # exact fp32, so the hand formulas can be compared to 1e-5
    # no augmentation: the first loss is computed by hand on the stored images
    return ClassifyConfig(**{"steps": 1, "batch_size": 1000, "evals": 1, "lr": 0.01, "precision": "fp32",
                             "augment": "none", **kw})  # fmt: skip


def _logits(strategy, cfg, images, seed=0):
    """Float64 logits of the initial network of ``strategy`` on ``images``, and that network."""
    model = init_model(parse_strategy(strategy, beta=cfg.beta), cfg, 3, 1, seed).double()
    with torch.no_grad():
        return model(to_float(images).double()), model


def _ce_terms(z, y):
    """Per-sample cross-entropy by hand: logsumexp minus the true logit."""
    return torch.logsumexp(z, dim=1) - z[torch.arange(len(y)), y]


def _cb_weights(counts, beta):
    w = [(1 - beta) / (1 - beta**n) for n in counts]
    return torch.tensor([x * len(counts) / sum(w) for x in w], dtype=torch.float64)


def _inv_weights(counts):
    w = [1 / n for n in counts]
    return torch.tensor([x * len(counts) / sum(w) for x in w], dtype=torch.float64)


def _first_loss(strategy, cfg, data=None):
    data = data or _tiny_data()
    r = train_and_score(data, strategy, seed=0, config=cfg, log=lambda s: None)
    return r, data


# --- one step's loss against the hand formula -----------------------------------------------------------------


def test_vanilla_cs_and_cbl_losses():
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(beta=0.99)
    z, _ = _logits("vanilla", cfg, x)
    ce = _ce_terms(z, y)
    r, _ = _first_loss("vanilla", cfg, data)
    assert r["first_loss"] == pytest.approx(float(ce.mean()), rel=1e-5)
    # cs: inverse-frequency weights (sum to C), TF reduction: mean of w_y CE
    r, _ = _first_loss("cs", cfg, data)
    assert r["first_loss"] == pytest.approx(float((_inv_weights(COUNTS)[y] * ce).mean()), rel=1e-5)
    # cbl: class-balanced weights of the effective number, the same TF reduction (not divided by sum w)
    r, _ = _first_loss("cbl", cfg, data)
    w = _cb_weights(COUNTS, 0.99)[y]
    assert r["first_loss"] == pytest.approx(float((w * ce).mean()), rel=1e-5)
    assert r["first_loss"] != pytest.approx(float(ce.mean()), rel=1e-3)  # a real difference from plain CE
    assert r["first_loss"] != pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-3)  # and from torch's mean


@pytest.mark.parametrize("strategy", ["cbl-sigmoid", "cbl-focal"])
def test_one_vs_all_cb_losses(strategy):
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(beta=0.999, focal_gamma=2.0)
    z, model = _logits(strategy, cfg, x)
    assert torch.allclose(model.fc.bias, torch.full((3,), -math.log(2), dtype=torch.float64))  # prior 1/C
    t = torch.nn.functional.one_hot(y, 3).double()
    p = torch.sigmoid(z)
    p_t = torch.where(t == 1, p, 1 - p)
    terms = -torch.log(p_t)
    if strategy == "cbl-focal":
        terms = (1 - p_t) ** 2.0 * terms
    hand = (_cb_weights(COUNTS, 0.999)[y].unsqueeze(1) * terms).sum() / len(y)  # / number of positives
    r, _ = _first_loss(strategy, cfg, data)
    assert r["first_loss"] == pytest.approx(float(hand), rel=1e-5)


def test_focal_loss_strategy():
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(focal_gamma=2.0)
    z, _ = _logits("focal", cfg, x)
    ce = _ce_terms(z, y)
    hand = ((1 - torch.exp(-ce)) ** 2.0 * ce).mean()
    r, _ = _first_loss("focal", cfg, data)
    assert r["first_loss"] == pytest.approx(float(hand), rel=1e-5)


@pytest.mark.parametrize("drw_start", [0.0, 1.0])
def test_ldam_drw_margins_and_weights_after_the_switch(drw_start):
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(drw_start=drw_start, ldam_max_margin=0.5, ldam_scale=30.0)
    cos, _ = _logits("ldam-drw", cfg, x)
    assert cos.abs().max() <= 1 + 1e-9  # cosine head
    m = torch.tensor([n**-0.25 for n in COUNTS], dtype=torch.float64)
    m = m * 0.5 / m.max()  # the largest margin (rarest class) is 0.5
    adjusted = 30.0 * (cos - torch.nn.functional.one_hot(y, 3) * m[y].unsqueeze(1))
    ce = _ce_terms(adjusted, y)
    # drw_start 0: step 1 is already after the switch (CB 0.9999 weights, torch's weighted mean);
    # drw_start 1: never switched during training (uniform weights)
    w = _cb_weights(COUNTS, 0.9999)[y] if drw_start == 0.0 else torch.ones(len(y), dtype=torch.float64)
    r, _ = _first_loss("ldam-drw", cfg, data)
    assert r["first_loss"] == pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-5)


@pytest.mark.parametrize("drw_start", [0.0, 1.0])
def test_ce_drw(drw_start):
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(drw_start=drw_start)
    z, _ = _logits("ce-drw", cfg, x)
    ce = _ce_terms(z, y)
    w = _cb_weights(COUNTS, 0.9999)[y] if drw_start == 0.0 else torch.ones(len(y), dtype=torch.float64)
    r, _ = _first_loss("ce-drw", cfg, data)
    assert r["first_loss"] == pytest.approx(float((w * ce).sum() / w.sum()), rel=1e-5)


@pytest.mark.parametrize("tau", [1.0, 2.0])
def test_logit_adjusted_and_balanced_softmax_losses(tau):
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(la_tau=tau)
    z, _ = _logits("la", cfg, x)
    log_pi = torch.log(torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS))
    r, _ = _first_loss("la", cfg, data)
    assert r["first_loss"] == pytest.approx(float(_ce_terms(z + tau * log_pi, y).mean()), rel=1e-5)
    assert r["tau"] is None  # la predicts with its own logits: no post-hoc adjustment
    r, _ = _first_loss("balanced-softmax", cfg, data)
    log_n = torch.log(torch.tensor(COUNTS, dtype=torch.float64))
    assert r["first_loss"] == pytest.approx(float(_ce_terms(z + log_n, y).mean()), rel=1e-5)


# --- resampling ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "strategy,counts",
    [("os", [12, 12, 12]), ("us", [3, 3, 3]), ("os+cs", [12, 8, 6]), ("us+cs", [6, 4, 3]), ("smote", [12, 12, 12])],
)
def test_resampling_strategies_train_on_the_resampled_set(strategy, counts):
    # half-way targets: round(sqrt(n_c * 12)) = 12, 8, 6 and round(sqrt(n_c * 3)) = 6, 4, 3
    data = _tiny_data()
    x, y = data.train.images, data.train.labels
    cfg = _cfg(smote_k=2)
    r, _ = _first_loss(strategy, cfg, data)
    assert r["train_counts"] == counts and r["real_counts"] == COUNTS
    # the loss of step 1 is over the resampled set (the same draw, seeded), with the strategy's weights
    if strategy == "smote":
        xr, yr = smote_images(x, y, k_neighbors=2, random_state=0)
    else:
        idx = resample_indices(y, parse_strategy(strategy).sampler, random_state=0)
        xr, yr = x[idx], y[idx]
        assert set(idx.tolist()) <= set(range(len(y)))
    assert torch.bincount(yr).tolist() == counts
    z, _ = _logits(strategy, cfg, xr)
    ce = _ce_terms(z, yr)
    w = _inv_weights(counts)[yr] if strategy.endswith("+cs") else torch.ones(len(yr), dtype=torch.float64)
    assert r["first_loss"] == pytest.approx(float((w * ce).mean()), rel=1e-5)


def test_smote_points_lie_between_a_point_and_one_of_its_k_nearest_neighbours():
    g = torch.Generator().manual_seed(1)
    y = torch.repeat_interleave(torch.arange(2), torch.tensor([20, 6]))
    x = torch.randint(0, 256, (len(y), 1, 3, 3), generator=g, dtype=torch.uint8)
    k = 3
    out, out_y = smote_images(x, y, k_neighbors=k, random_state=0)
    minority = x[y == 1].reshape(6, -1).double()
    d = torch.cdist(minority, minority)
    d.fill_diagonal_(float("inf"))
    knn = d.argsort(dim=1)[:, :k]
    new = out[len(y) :].reshape(-1, 9).double()
    assert len(new) == 14 and (out_y[len(y) :] == 1).all()
    for p in new:
        # some pair (i, j), j among i's k nearest same-class neighbours, with p = x_i + lam (x_j - x_i) up to
        # the rounding to uint8 (half a level per pixel, one with lam fitted by least squares); any other
        # pair of these random images misses by tens of levels
        found = False
        for i in range(6):
            for j in knn[i].tolist():
                seg = minority[j] - minority[i]
                lam = float(((p - minority[i]) @ seg) / (seg @ seg))
                if 0 <= lam <= 1 and (minority[i] + lam * seg - p).abs().max() <= 1.0:
                    found = True
        assert found


# --- prediction rules ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return load_data("digits_lt")


def _plain_model(data, cfg, seed):
    """The vanilla pipeline by hand: same split, same seed, same steps."""
    real, valid, _ = carve_validation(data, cfg.valid_fraction, seed)
    strat = parse_strategy("vanilla")
    model, loss, _ = train_classifier(real.images, real.labels, valid, strat, cfg, 10, cfg.steps, seed)
    priors = torch.tensor(real.counts(), dtype=torch.float32)
    return model, loss, valid, priors / priors.sum()


def test_ts_predicts_argmax_of_posterior_over_prior(digits):
    cfg = ClassifyConfig(steps=25, batch_size=64, evals=1)
    r = train_and_score(digits, "ts", seed=0, config=cfg)
    model, loss, _, priors = _plain_model(digits, cfg, 0)
    p = predict_proba(model, digits.test.images, loss, None, "cpu")
    expect = (p / priors).argmax(1)
    assert r["confusion_matrix"] == confusion_matrix(digits.test.labels, expect, labels=range(10)).tolist()
    # dividing by the priors changes predictions here, so a ts that forgot them would fail the check above
    assert not torch.equal(expect, p.argmax(1))


def test_la_posthoc_chooses_tau_on_validation_and_predicts_argmax_logits_minus_tau_log_prior(digits):
    grid = (0.0, 0.5, 1.0, 1.5)
    cfg = ClassifyConfig(steps=25, batch_size=64, evals=1, tau_grid=grid)
    r = train_and_score(digits, "la-posthoc", seed=0, config=cfg)
    model, loss, valid, priors = _plain_model(digits, cfg, 0)
    with torch.no_grad():
        z_val = model(to_float(valid.images))
        z_test = model(to_float(digits.test.images))
    log_pi = torch.log(priors)
    val_acsa = [balanced_accuracy_score(valid.labels, (z_val - t * log_pi).argmax(1)) for t in grid]
    best = grid[int(np.argmax(val_acsa))]  # first of the best: ties to the smaller tau
    assert r["tau"] == best and r["valid_acsa"] == pytest.approx(max(val_acsa))
    expect = (z_test - best * log_pi).argmax(1)
    assert r["confusion_matrix"] == confusion_matrix(digits.test.labels, expect, labels=range(10)).tolist()


def test_new_strategies_run_from_names():
    for name in ("la", "la-posthoc", "balanced-softmax", "ce-drw", "gan+la", "gan+cbl:0.99", "folder+ts"):
        s = parse_strategy(name)
        assert s.name == name
    assert parse_strategy("gan+la").synthetic == "gan" and parse_strategy("gan+la").loss == "la"
    assert parse_strategy("gan+ts").threshold_shift and parse_strategy("gan+cbl:0.99").beta == 0.99
    assert parse_strategy("la-posthoc").adjust == "la-posthoc" and parse_strategy("la-posthoc").loss == "ce"


def test_build_training_set_marks_nothing_synthetic_without_synthetic_images():
    data = _tiny_data()
    images, labels, synthetic, info = build_training_set(data.train, parse_strategy("os"), _cfg(), 0)
    assert len(images) == 36 and not synthetic.any() and info["train_counts"] == [12, 12, 12]
