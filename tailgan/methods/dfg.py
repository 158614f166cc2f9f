"""DFG: discriminative feature generation for imbalanced classification (spec 5), as one recipe.

A source network (pre-trained elsewhere: ``tailgan.baselines.transfer.source_network`` trains and caches
one, or give any weights file in the network's layout) is cut into a feature extractor and a classifier.
The recipe trains four networks -- the target extractor ``E`` and classifier ``Cl`` (fine-tuned from the
source, regularised towards it), a conditional WGAN-GP generator ``G`` of extractor-shaped feature maps
gated per class by a channel attention, and its critic ``D`` -- next to the frozen source copies
``E_src`` / ``Cl_src`` (saved with the run, never trained).

Schedule (spec 5.7; ``s`` = step - 1, DFG counts from 0):

1. before the first step, channel evaluation with the source networks: per-sample filter ablation on the
   first ``per_class`` images of each class (in a seeded shuffle of the training data), the class
   attention thresholded at ``threshold_init``, the regulariser weights of the extractor channels and of
   the hooked classifier layers (DELTA's ablation over ``max_batches`` batches);
2. each step: one critic update per queued real batch (a queue of ``n_critic`` batches), one adversarial
   G update; every ``step_for_3_4`` steps one classification update of G and one update of E and Cl on
   queue[0]; every ``step_for_5`` steps (s > 0) one update of Cl with generated features; then queue[0]
   is dropped and a new batch pushed;
3. every ``step_for_6`` steps, if the last extractor loss is below ``e_loss_gate``, the attention is
   re-evaluated on the target networks and thresholded at ``threshold_update``;
4. every ``eval_every`` steps E -> Cl is scored on the validation split (model selection, the best
   networks are kept in the checkpoint).

Steps 3 and 4 need the dataset, so they run in the phase's ``record`` hook, which the engine calls with
the data at the phase's log steps; the recipe sets that cadence to gcd(eval_every, step_for_6). The
re-evaluation therefore runs after step ``k * step_for_6`` (DFG: after step ``k * step_for_6 + 1``).

Selection uses ``data.valid``: the split ``tailgan.baselines.transfer`` carves from the long-tailed training
data (or the dataset's own); without one the last networks are kept. DFG selected on the test set
(``select_on=test``, faithful, flatters the result).

Original behaviour kept as options (``faithful=true`` sets them all; spec 5.10):

=================================================  ==================  =======================
original code                                      default             faithful option
=================================================  ==================  =======================
``nn.LeakyReLU(True)``: slope 1.0 (identity)        0.2                 ``act_slope=1.0``
Tanh then BatchNorm2d at G's output                 ReLU (features>=0)  ``out_act=tanh_bn``
importance score L - L^(-j) (DELTA: L^(-j) - L)     DELTA's sign        ``sign=dfg``
attention re-evaluated in train mode                eval mode           ``eval_mode_attention=false``
best step chosen on the test set, top-1             validation, ACSA    ``select_on=test select_metric=accuracy``
unseeded choice of the minority classes             seeded (data.seed)  --
rho blend of old/new attention computed, unused     unused              ``rho=0.75`` uses it
=================================================  ==================  =======================

Precision: the fast path (``precision=auto``) runs every forward pass of the updates under the run's
autocast with channels-last networks; the critic's gradient penalty, the channel evaluation, model
selection and every loss reduction stay in fp32 (``tailgan.nets.precision``). ``precision=fp32`` is exact.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor

from tailgan.config import bounded
from tailgan.data import LongTailedData, to_float, to_uint8
from tailgan.errors import TailganError
from tailgan.io import atomic_write, atomic_write_text
from tailgan.losses.dfg import (
    attentive_fm_distance,
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
from tailgan.methods.base import Method, OptimizerConfig, make_optimizer
from tailgan.methods.spec import OutputSpec, Phase, due
from tailgan.nets.dfg import NATIVE_SIZE, FeatureCritic, FeatureGenerator, SplitNet, build_source, feature_shape
from tailgan.nets.inference import predict
from tailgan.scores import balanced_accuracy


def _adam_1e4() -> OptimizerConfig:
    return OptimizerConfig("adam", 1e-4, (0.5, 0.9))


@dataclass
class DFGOptions:
    """Every hyper-parameter of spec 5.8 (defaults: DFG's argparse defaults, LeNet-5)."""

    backbone: Literal["lenet5", "vgg16", "resnet50"] = "lenet5"
    source: str | None = None  # the source weights file; "random": a randomly initialised source (DFG's LeNet)
    vgg_head: tuple[int, int] = (4096, 512)
    noise_dim: int | None = bounded(None, ge=1)  # None: 100 (LeNet-5, VGG-16), 4900 (ResNet-50)
    act_slope: float = bounded(0.2, ge=0)  # G and D LeakyReLU slope; 1.0 is DFG's LeakyReLU(True)
    out_act: Literal["relu", "tanh_bn", "tanh", "none"] = "relu"  # G's output; tanh_bn is DFG's
    lambda_gp: float = bounded(10.0, ge=0)
    regularize: bool = True  # DFG's --with_regularization: the Omega terms against the source
    alpha_e: float = bounded(0.01, ge=0)  # Omega_1 on the extractor output
    alpha_c: float = bounded(0.01, ge=0)  # Omega_1 on the hooked classifier layers
    beta_c: float = bounded(0.01, ge=0)  # Omega_2 (L2 of the last layer)
    n_critic: int = bounded(5, ge=1)  # queue length = critic updates per step
    step_for_3_4: int = bounded(1, ge=1)  # G classification update and E+Cl update every N steps
    step_for_5: int = bounded(5, ge=1)  # Cl update with generated features every N steps
    step_for_6: int = bounded(2000, ge=0)  # attention re-evaluation every N steps (0: never)
    e_loss_gate: float = 0.05  # ... only when the last extractor loss is below this
    threshold_init: float = bounded(0.9, ge=0)  # keep channel j of class c if C_f * A[c, j] >= this
    threshold_update: float = bounded(0.95, ge=0)
    rho: float | None = bounded(None, ge=0, le=1)  # None: DFG's code (blend unused); a float blends
    sign: Literal["delta", "dfg"] = "delta"  # importance L^(-j) - L (DELTA) or L - L^(-j) (DFG)
    per_class: int = bounded(10, ge=1)  # images per class in the extractor channel evaluation
    max_batches: int = bounded(4, ge=1)  # batches in the classifier channel weights
    temperature: float = bounded(5.0, gt=0)  # of the regulariser weights' softmax
    eval_mode_attention: bool = True  # re-evaluate the attention in eval mode (DFG: train mode)
    eval_every: int = bounded(100, ge=0)  # model selection cadence (0: keep the last networks)
    select_on: Literal["valid", "test"] = "valid"
    select_metric: Literal["acsa", "accuracy"] = "acsa"
    eval_batch_size: int = bounded(500, ge=1)
    g_optim: OptimizerConfig = field(default_factory=_adam_1e4)
    d_optim: OptimizerConfig = field(default_factory=_adam_1e4)
    e_optim: OptimizerConfig = field(default_factory=_adam_1e4)  # ResNet-50 in DFG: sgd, lr 1e-4
    cl_optim: OptimizerConfig = field(default_factory=_adam_1e4)
    lr_step: int | None = bounded(None, ge=1)  # StepLR of E and Cl every N steps (DFG ResNet: steps / 2 + 1)
    lr_gamma: float = bounded(0.1, gt=0)


PRESETS = {
    "dfg": {"method": "dfg", "steps": 40000, "optim": {"batch_size": 64}},
    "dfg-resnet50": {
        "method": "dfg",
        "steps": 40000,
        "optim": {"batch_size": 64},
        "options": {
            "backbone": "resnet50",
            "e_optim": {"name": "sgd", "lr": 1e-4, "momentum": 0.9},
            "cl_optim": {"name": "sgd", "lr": 1e-4, "momentum": 0.9},
            "lr_step": 20001,
        },
    },
}
DEFAULT_PRESET = "dfg"
_ORIGINAL = {
    "act_slope": 1.0,
    "out_act": "tanh_bn",
    "sign": "dfg",
    "eval_mode_attention": False,
    "select_on": "test",
    "select_metric": "accuracy",
}
FAITHFUL = {"dfg": {"options": dict(_ORIGINAL)}, "dfg-resnet50": {"options": dict(_ORIGINAL)}}


def classifier_scores(logits: Tensor, labels: Tensor, num_classes: int) -> dict[str, float]:
    """Top-1 accuracy and ACSA (mean recall over the classes present in ``labels``)."""
    pred = logits.argmax(1)
    return {"accuracy": float((pred == labels).double().mean()), "acsa": balanced_accuracy(labels, pred)}


class DFG(Method):
    """DFG's target extractor/classifier, feature generator and critic, trained against a frozen source."""

    name = "dfg"
    Options = DFGOptions

    # -- networks -----------------------------------------------------------------------------------------
    def build(self) -> None:
        o = self.options
        if self.scaler is not None:
            raise TailganError("method dfg has no gradient scaler for fp16; use precision=auto, bf16 or fp32")
        if o.backbone == "lenet5" and self.img_size != NATIVE_SIZE["lenet5"]:
            raise TailganError(
                f"DFG's LeNet-5 needs 32 x 32 images, the data has {self.img_size} x {self.img_size}: set "
                "data.resolution=32 (and data.fit=pad for 28 px sources such as Fashion-MNIST)"
            )
        weights = self._source_file()
        self.target: SplitNet = build_source(
            o.backbone, self.num_classes, self.img_channels, weights, vgg_head=tuple(o.vgg_head)
        )
        self.source: SplitNet = self.target.copy(frozen=True)  # identical start, never trained
        fshape = feature_shape(o.backbone, self.img_size)
        self.nets["E"], self.nets["Cl"] = self.target.extractor, self.target.classifier
        self.nets["E_src"], self.nets["Cl_src"] = self.source.extractor, self.source.classifier
        self.nets["G"] = FeatureGenerator(o.backbone, self.num_classes, o.noise_dim, o.act_slope, o.out_act)
        if tuple(self.nets["G"].feature_shape) != tuple(fshape):
            raise TailganError(
                f"DFG's {o.backbone} generator makes {self.nets['G'].feature_shape} maps; images of side "
                f"{self.img_size} give {fshape}: use data.resolution={NATIVE_SIZE[o.backbone]}"
            )
        self.nets["D"] = FeatureCritic(fshape, o.act_slope)
        self.optimizers["G"] = make_optimizer(self.nets["G"].parameters(), o.g_optim)
        self.optimizers["D"] = make_optimizer(self.nets["D"].parameters(), o.d_optim)
        self.optimizers["E"] = make_optimizer(self.nets["E"].parameters(), o.e_optim)
        self.optimizers["Cl"] = make_optimizer(self.nets["Cl"].parameters(), o.cl_optim)
        self.schedulers = {}
        if o.lr_step is not None:
            for name in ("E", "Cl"):
                self.schedulers[name] = torch.optim.lr_scheduler.StepLR(self.optimizers[name], o.lr_step, o.lr_gamma)
        c_f = fshape[0]
        self.w_e = torch.full((c_f,), 1.0 / c_f)  # replaced by the channel evaluation
        self.w_c: list[Tensor] = []
        self.channels: dict = {}  # the evaluation results and every attention used, saved with the run
        self.queue: list[tuple[Tensor, Tensor]] = []
        self.held: dict[str, Tensor] = {}  # losses of updates that do not run every step: their last value
        self.last_e_loss: float | None = None
        self.best: dict | None = None

    def _source_file(self) -> str | None:
        o = self.options
        if self.ctx.run_dir is None:
            return None  # loaded back for sampling: every weight comes from the checkpoint
        if o.source is None:
            raise TailganError(
                "method dfg needs a source network: options.source=FILE (a weights file in the network's layout, "
                "e.g. the one `tailgan classify --strategy dfg --source mnist` caches) or options.source=random "
                "(a randomly initialised source, as DFG's LeNet-5 without a checkpoint)"
            )
        if o.source == "random":
            return None
        if not Path(o.source).is_file():
            raise TailganError(f"options.source={o.source!r} is not a file; give the source network's weights file")
        return o.source

    def phases(self) -> list[Phase]:
        o = self.options
        cadences = [n for n in (o.eval_every, o.step_for_6) if n]
        every = math.gcd(*cadences) if cadences else None
        return [Phase("dfg", self.cfg.steps, self.train_step, begin=self.evaluate_channels, log_every=every,
                      record=self.periodic, main=True)]  # fmt: skip

    @property
    def output(self) -> OutputSpec:
        return OutputSpec("feature", tuple(self.nets["G"].feature_shape))

    def latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """DFG's noise: u ~ U(-1, 1)^noise_dim."""
        g = self.nets["G"]
        return torch.rand(n, g.noise_dim, generator=generator or self.gen, device=self.device) * 2 - 1

    # -- channel evaluation ----------------------------------------------------------------------------------
    def _eval_samples(self, data: LongTailedData) -> tuple[Tensor, Tensor, Tensor]:
        """The first ``per_class`` images of each class in a seeded shuffle (DFG's shuffled loader), and the
        permutation (its first batches feed the classifier channel weights)."""
        labels = data.train.labels
        perm = torch.randperm(len(labels), generator=torch.Generator().manual_seed(self.cfg.seed + 4242))
        picks = perm[first_per_class(labels[perm], self.num_classes, self.options.per_class)]
        return self._images(data.train.images[picks]), labels[picks].to(self.device), perm

    def _images(self, uint8: Tensor) -> Tensor:
        return self.precision.tensor(to_float(uint8).to(self.device))

    def evaluate_channels(self, data: LongTailedData) -> bool:
        """Spec 5.4 with the source networks: attention (thresholded), regulariser weights. The phase's begin."""
        o, src = self.options, self.source
        x, y, perm = self._eval_samples(data)
        ev = evaluate_extractor_channels(
            src.extractor, src.classifier, x, y, src.extractor_layer, self.num_classes, o.sign, eval_mode=True
        )
        b = self.cfg.optim.batch_size
        chunks = [perm[i * b : (i + 1) * b] for i in range(o.max_batches) if i * b < len(perm)]
        batches = [(self._images(data.train.images[c]), data.train.labels[c].to(self.device)) for c in chunks]
        weights = classifier_channel_weights(
            src.extractor, src.classifier, batches, src.classifier_layers, o.max_batches, eval_mode=True
        )
        self.w_e = regularizer_weights(ev.extractor_scores, o.temperature).to(self.device)
        self.w_c = [regularizer_weights(w, o.temperature).to(self.device) for w in weights]
        attention = threshold_attention(ev.attention, o.threshold_init)
        self.nets["G"].set_attention(attention)
        self.channels = {
            "extractor_scores": ev.extractor_scores.tolist(),
            "classifier_scores": [w.tolist() for w in weights],
            "extractor_weights": self.w_e.tolist(),
            "classifier_weights": [w.tolist() for w in self.w_c],
            "attention": [{"step": 0, "raw": ev.attention.tolist(), "thresholded": attention.tolist()}],
        }
        self._write_channels(0)
        return False

    def update_attention(self, data: LongTailedData, step: int) -> None:
        """Spec 5.7 step 6: the attention of the current target networks replaces (or blends into) the old."""
        o, tgt = self.options, self.target
        x, y, _ = self._eval_samples(data)
        ev = evaluate_extractor_channels(
            tgt.extractor, tgt.classifier, x, y, tgt.extractor_layer, self.num_classes, o.sign, o.eval_mode_attention
        )
        G = self.nets["G"]
        attention = updated_attention(G.attention, ev.attention.to(G.attention.dtype), o.threshold_update, o.rho)
        G.set_attention(attention)
        record = {"step": step, "raw": ev.attention.tolist(), "thresholded": attention.tolist()}
        self.channels["attention"].append(record)
        self._write_channels(step)

    def _write_channels(self, step: int) -> None:
        """``dfg/channels.json`` (scores, weights, every attention) and ``dfg/attention_step_N.png``."""
        if self.ctx.run_dir is None or not self.ctx.is_main:
            return
        folder = Path(self.ctx.run_dir) / "dfg"
        atomic_write_text(folder / "channels.json", json.dumps(self.channels, indent=1))
        attention = torch.tensor(self.channels["attention"][-1]["thresholded"])
        atomic_write(folder / f"attention_step_{step:07d}.png", lambda tmp: attention_figure(attention, tmp, step))

    # -- the updates (each moves only its own networks) ----------------------------------------------------------
    def _fakes(self, n: int) -> tuple[Tensor, Tensor]:
        G = self.nets["G"]
        z, y = G.sample_latent(n, generator=self.gen, device=self.device)
        with self.autocast():
            return G(z, y), y

    def _step(self, names: list[str], loss: Tensor) -> None:
        """zero_grad, backward, gradients averaged over ranks, step: the optimizers ``names`` (= networks)."""
        opts = [self.optimizers[n] for n in names]
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        if self.world_size > 1:
            self._all_reduce_grads([p for n in names for p in self.nets[n].parameters() if p.requires_grad])
        for opt in opts:
            opt.step()

    def _regularized(self, x: Tensor, f_t: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None, Tensor | None]:
        """Cl^t logits of ``f_t`` and, with ``regularize``, Omega_1^E, Omega_1^C and Omega_2 against the source."""
        tgt, src = self.target, self.source
        with self.autocast():
            if not self.options.regularize:
                return tgt.classifier(f_t), None, None, None
            with torch.no_grad():
                f_s = src.extractor(x)
            omega_e = attentive_fm_distance(f_t, f_s, self.w_e)
            logits, omega_c = classify_with_omega1(
                tgt.classifier, src.classifier, f_t, f_s, tgt.classifier_layers, self.w_c
            )
        return logits, omega_e, omega_c, head_l2(tgt.fc())

    def critic_update(self, x: Tensor) -> dict[str, Tensor]:
        """One WGAN-GP update of D: real features E^t(x) against fresh generated ones."""
        with torch.no_grad(), self.autocast():
            real = self.nets["E"](x)
            fake, _ = self._fakes(len(x))
        out = critic_loss(self.nets["D"], real, fake, self.options.lambda_gp, generator=self.gen,
                          autocast=self.autocast)  # fmt: skip
        self._step(["D"], out["loss"])
        return out

    def generator_adv_update(self, n: int) -> Tensor:
        """One L_G^adv update of G."""
        fake, _ = self._fakes(n)
        with self.autocast():
            loss = generator_adv_loss(self.nets["D"](fake))
        self._step(["G"], loss)
        return loss

    def generator_cls_update(self, x: Tensor, y: Tensor) -> Tensor:
        """One L_G^cls update of G on [fakes; real features] (only G is stepped)."""
        fake, y_fake = self._fakes(len(x))
        with torch.no_grad(), self.autocast():
            real = self.nets["E"](x)
        feats, labels = merged_batch(fake, y_fake, real, y)
        with self.autocast():
            loss = generator_cls_loss(self.nets["Cl"](feats), labels)
        self._step(["G"], loss)
        return loss

    def extractor_classifier_update(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """One L_EC update of E^t and Cl^t on real images."""
        with self.autocast():
            f_t = self.nets["E"](x)
        logits, omega_e, omega_c, omega2 = self._regularized(x, f_t)
        o = self.options
        out = extractor_classifier_loss(logits, y, omega_e, omega_c, omega2, o.alpha_e, o.alpha_c, o.beta_c)
        self._step(["E", "Cl"], out["loss"])
        return out

    def classifier_fake_update(self, x: Tensor, y: Tensor) -> dict[str, Tensor]:
        """One L_C update of Cl^t on real features, generated features and both merged (only Cl is stepped)."""
        tgt, o = self.target, self.options
        with torch.no_grad(), self.autocast():
            f_t = tgt.extractor(x)
            fake, y_fake = self._fakes(len(x))
        real_logits, _, omega_c, omega2 = self._regularized(x, f_t)
        feats, labels = merged_batch(fake, y_fake, f_t, y)
        with self.autocast():
            fake_logits, merged_logits = tgt.classifier(fake), tgt.classifier(feats)
        out = classifier_fake_loss(
            real_logits, y, fake_logits, y_fake, merged_logits, labels, omega_c, omega2, o.alpha_c, o.beta_c
        )
        self._step(["Cl"], out["loss"])
        return out

    def train_step(self, batches, step: int) -> dict[str, Tensor]:
        """One DFG step (spec 5.7 steps 1-5, 7); ``step`` counts from 1, DFG's ``s`` from 0."""
        o, s = self.options, step - 1
        while len(self.queue) < o.n_critic:  # a fresh run, or a larger n_critic: fill the queue
            self.queue.append(batches.next("real"))
        d = [self.critic_update(x) for x, _ in self.queue]
        losses = {
            "d_loss": torch.stack([r["loss"] for r in d]).mean().detach(),
            "wasserstein": torch.stack([r["wasserstein"] for r in d]).mean().detach(),
            "gp": torch.stack([r["gp"] for r in d]).mean().detach(),
        }
        x0, y0 = self.queue[0]
        losses["g_adv"] = self.generator_adv_update(len(x0)).detach()
        if due(s, o.step_for_3_4):
            self.held["g_cls"] = self.generator_cls_update(x0, y0).detach()
            ec = self.extractor_classifier_update(x0, y0)
            self.held.update({"ec_loss": ec["loss"].detach(), "e_loss": ec["e_loss"].detach(), "ce": ec["ce"].detach()})
            self.last_e_loss = float(ec["e_loss"].detach())
        if due(s, o.step_for_5) and s > 0:
            self.held["c_fake_loss"] = self.classifier_fake_update(x0, y0)["loss"].detach()
        self.queue = self.queue[1:] + [batches.next("real")]
        for sched in self.schedulers.values():
            sched.step()
        return {**losses, **self.held}  # held losses: their latest value, so every step logs the same keys

    # -- evaluation and model selection ----------------------------------------------------------------------
    @torch.no_grad()
    def classify(self, images: Tensor, best: bool = False) -> Tensor:
        """Logits of E^t -> Cl^t (the selected networks with ``best``) for uint8 images, in eval mode."""
        tgt = self.selected() if best else self.target
        was = tgt.network.training
        tgt.network.eval()
        out = predict(lambda x: tgt.classifier(tgt.extractor(x)), images, batch_size=self.options.eval_batch_size,
                      transform=self._images)  # fmt: skip
        tgt.network.train(was)
        return out if len(out) else torch.zeros(0, self.num_classes)

    def selected(self) -> SplitNet:
        """The target networks with the weights model selection kept (the current ones if none was kept)."""
        if self.best is None:
            return self.target
        net = self.target.copy()
        net.extractor.load_state_dict(self.best["E"])
        net.classifier.load_state_dict(self.best["Cl"])
        return net

    def periodic(self, data: LongTailedData, record: dict) -> dict:
        """The phase's record hook (it has the data): attention re-evaluation and model selection."""
        o, step, out = self.options, int(record["step"]), {}
        gate = self.last_e_loss is not None and self.last_e_loss < o.e_loss_gate
        if due(step, o.step_for_6) and gate:
            self.update_attention(data, step)
            out["attention_updated"] = 1
        if not due(step, o.eval_every):
            return out  # only at multiples of eval_every, so a run split by a resume selects the same step
        split = data.test if o.select_on == "test" else data.valid
        if split is None or len(split) == 0:
            return out  # no validation split: the last networks are kept
        scores = classifier_scores(self.classify(split.images), split.labels, self.num_classes)
        out.update({f"{o.select_on}_{k}": v for k, v in scores.items()})
        value = scores[o.select_metric]
        if self.best is None or value > self.best["value"]:
            self.best = {
                "step": step,
                "split": o.select_on,
                "metric": o.select_metric,
                "value": value,
                "E": {k: v.detach().clone() for k, v in self.nets["E"].state_dict().items()},
                "Cl": {k: v.detach().clone() for k, v in self.nets["Cl"].state_dict().items()},
            }
        out["selected_step"] = self.best["step"]
        return out

    # -- checkpoints ------------------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        # the queue as uint8 (exact: every batch is to_float of uint8 images, flips included)
        return {
            "queue": [(to_uint8(x).cpu(), y.cpu()) for x, y in self.queue],
            "w_e": self.w_e.cpu(),
            "w_c": [w.cpu() for w in self.w_c],
            "channels": self.channels,
            "held": {k: v.cpu() for k, v in self.held.items()},
            "last_e_loss": self.last_e_loss,
            "best": self.best,
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }

    def load_extra_state(self, state: dict) -> None:
        self.queue = [(self._images(x), y.to(self.device)) for x, y in state.get("queue", [])]
        self.w_e = state["w_e"].to(self.device)
        self.w_c = [w.to(self.device) for w in state["w_c"]]
        self.channels = state["channels"]
        self.held = {k: v.to(self.device) for k, v in state["held"].items()}
        self.last_e_loss, self.best = state["last_e_loss"], state["best"]
        for k, s in self.schedulers.items():
            s.load_state_dict(state["schedulers"][k])


def attention_figure(attention: Tensor, path: str | Path, step: int = 0, classes: list[str] | None = None) -> None:
    """A classes x channels heat map of the (thresholded) attention, as a PNG at ``path``."""
    from matplotlib.figure import Figure  # the figure writer, loaded only where a figure is written

    a = attention.detach().float().cpu().numpy()
    k, c = a.shape
    fig = Figure(figsize=(max(3.0, 0.35 * c + 1.5), max(2.5, 0.3 * k + 1.0)))
    ax = fig.add_subplot()
    im = ax.imshow(a, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xlabel("feature channel")
    ax.set_ylabel("class")
    ax.set_yticks(range(k), classes if classes is not None else [str(i) for i in range(k)])
    if c <= 32:
        ax.set_xticks(range(c))
    ax.set_title(f"DFG attention, step {step}\n(0 = channel gated off)", fontsize=9)  # fits 6 channels
    fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
