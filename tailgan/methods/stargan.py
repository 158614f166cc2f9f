"""The K-class joint translator + classifier (``stargan-cls``): the seed's "future direction" beyond two
classes, with one StarGAN-style translator conditioned on the target class (Choi et al. 2018) in place of
the two CycleGAN generators.

Networks: G(x, c) (``ConditionalResnetGenerator``: the ResNet generator on the image and the one-hot maps of
the target class c), D(x) with an adversarial patch head and a class head (``ConditionalPatchDiscriminator``)
and the K-way classifier C (one of ``tailgan.nets.classifiers``). Every update draws a real batch (x, y) of
the long-tailed data as it is (so mostly head-class images) and a target class t per image, uniformly from
``options.targets`` (``tail``: the classes with fewer training images than the median class; ``all``),
never the image's own class when another target exists. With ``tailgan.losses.translation``::

    L_D = 1/2 [(D_adv(x) - 1)^2 + D_adv(G(x, t))^2] + lambda_cls CE(D_cls(x), y)       (class head: real only)
    L_G = (D_adv(G(x, t)) - 1)^2 + lambda_cls CE(D_cls(G(x, t)), t) + lambda_rec |G(G(x, t), y) - x|_1
          + alpha |G(x, y) - x|_1                                         [+ lambda_joint L_cls, alt]
    L_cls = sum_c w_c [mean CE(C(x), y) over real images of c + mean CE(C(G(x, t)), t) over those made c]

(``multiclass_cls_loss``, divided by K here so its scale is that of one cross-entropy; w = 1, or
inverse-frequency weights normalised to sum K with ``options.cls_weights=cs``). Modes as ``cyclegan-cls``:
``aug`` = phase ``stargan`` (``options.gan_steps``) then ``classifier``
(``--steps``; C alone on real + translated images); ``alt`` = ``gan_warmup``, ``cls_warmup``, then
``joint`` (``--steps``): a translator update with L_cls through the undetached G(x, t) (C a frozen teacher)
and, every ``options.alt_period`` steps, a classifier update. Adam 2e-4 (0.5, 0.999), LSGAN, lambda_rec 10,
lambda_cls 1, alpha 0 (StarGAN has no identity term), the CycleGAN linear decay over the second half of the
translator updates. StarGAN's WGAN-GP is replaced by the LSGAN of the binary recipe (one loss family for
both; a documented choice).

Output: a translator (``sample(labels, source=...)`` = G(source, labels)); grids: a row of fixed real
images of the largest class, then their translations into each target class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from tailgan.config import bounded
from tailgan.errors import TailganError
from tailgan.losses.translation import gan_d_loss, multiclass_cls_loss, stargan_g_loss
from tailgan.methods.base import Batches, Method, OptimizerConfig, make_optimizer
from tailgan.methods.cyclegan import GRID_IMAGES, JointPhases, lr_factor
from tailgan.methods.spec import StreamSpec
from tailgan.nets.classifiers import CLASSIFIERS, build_classifier
from tailgan.nets.cyclegan import ConditionalPatchDiscriminator, ConditionalResnetGenerator

PRESETS = {"stargan-cls": {"method": "stargan-cls", "optim": {"batch_size": 16}}}
DEFAULT_PRESET = "stargan-cls"


@dataclass
class StarGANClsOptions:
    """Typed options of ``stargan-cls`` (``options.KEY=VALUE``)."""

    mode: Literal["aug", "alt"] = "aug"
    targets: Literal["tail", "all"] = "tail"  # classes images are translated into
    gan_steps: int = bounded(2000, ge=0)  # aug: translator updates before the classifier phase
    gan_warmup: int = bounded(500, ge=0)  # alt: translator updates without the classifier loss, first
    cls_warmup: int = bounded(200, ge=0)  # alt: classifier updates, next
    alt_period: int = bounded(1, ge=1)  # alt: one classifier update every this many translator updates
    # real images per classifier update (None: the translator's batch, optim.batch_size); with a number the
    # classifier draws its own batch and translates it, so it can see as many real images as a plain one
    cls_batch_size: int | None = bounded(None, ge=1)
    lambda_rec: float = bounded(10.0, ge=0)
    lambda_cls: float = bounded(1.0, ge=0)  # D's class head, in both G and D losses
    lambda_joint: float = bounded(1.0, ge=0)  # alt: weight of L_cls in the translator's loss
    alpha: float = bounded(0.0, ge=0)  # identity |G(x, y) - x|
    cls_weights: Literal["none", "cs"] = "none"
    lr_decay: bool = True
    ngf: int = bounded(32, ge=1)
    ndf: int = bounded(32, ge=1)
    n_blocks: int = bounded(6, ge=0)
    classifier: str = "lenet5"
    g_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 2e-4, (0.5, 0.999)))
    d_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 2e-4, (0.5, 0.999)))
    cls_optim: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig("sgd", 0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    )


def target_classes(counts: tuple[int, ...], which: str) -> list[int]:
    """``all`` classes, or the ``tail``: those with fewer images than the median class (at least the rarest)."""
    k = len(counts)
    if which == "all" or not counts:
        return list(range(k))
    median = sorted(counts)[k // 2]
    tail = [c for c in range(k) if counts[c] < median]
    return tail or [min(range(k), key=lambda c: counts[c])]


class StarGANCls(JointPhases, Method):
    """One class-conditional translator trained with a K-way classifier; see the module docstring."""

    name = "stargan-cls"
    Options = StarGANClsOptions
    # No gradient penalty here: both translator networks compile. Measured (results/fast_path_recipes.md;
    # one thread of a loaded 2-core CPU, bf16, batch 16, 32 px): a joint step 1.36x faster after 260 s of
    # compiling (cold cache), won back after ~1,800 steps; ``compile=auto`` waits for twice that.
    compiled_nets = ("G", "D")
    compile_pays = True
    compile_min_steps = 4000

    def build(self) -> None:
        o, c, k = self.options, self.img_channels, self.num_classes
        if o.classifier not in CLASSIFIERS:
            raise TailganError(f"options.classifier={o.classifier!r} is unknown; use one of {', '.join(CLASSIFIERS)}")
        if self.img_size % 4 or self.img_size < 8:
            raise TailganError(
                f"the translator needs image sides divisible by 4 and >= 8, got {self.img_size} px; set data.resolution"
            )
        self.nets["G"] = ConditionalResnetGenerator(c, k, o.ngf, o.n_blocks)
        self.nets["D"] = ConditionalPatchDiscriminator(c, k, self.img_size, o.ndf)
        self.nets["C"] = build_classifier(o.classifier, k, c)
        self.optimizers["G"] = make_optimizer(self.nets["G"].parameters(), o.g_optim)
        self.optimizers["D"] = make_optimizer(self.nets["D"].parameters(), o.d_optim)
        self.optimizers["C"] = make_optimizer(self.nets["C"].parameters(), o.cls_optim)
        counts = self.shape.class_counts
        self.targets = torch.tensor(target_classes(counts, o.targets), device=self.device)
        self.class_weights = None
        if o.cls_weights == "cs" and counts:
            inv = 1.0 / torch.tensor(counts, dtype=torch.float32).clamp_min(1)
            self.class_weights = (k * inv / inv.sum()).to(self.device)
        self.last_c = {"c_loss": torch.zeros((), device=self.device)}
        self.grid_source: Tensor | None = None

    def streams(self) -> dict[str, StreamSpec]:
        streams = {"real": StreamSpec(flip=self.cfg.flip)}  # the long tail as it is: mostly head-class sources
        if self.options.cls_batch_size:
            streams["cls_real"] = StreamSpec(batch_size=self.options.cls_batch_size, flip=self.cfg.flip, seed_offset=2)
        return streams

    def translator_phase(self) -> tuple[str, int, Any]:
        return "stargan", self.options.gan_steps, self.gan_step

    def draw_targets(self, y: Tensor) -> Tensor:
        """A target class per image, uniform over the targets, moved to the next target where it equals y."""
        n = len(self.targets)
        i = torch.randint(0, n, (len(y),), generator=self.gen, device=self.device)
        t = self.targets[i]
        if n > 1:
            t = torch.where(t == y, self.targets[(i + 1) % n], t)
        return t

    # -- losses ------------------------------------------------------------------------------------------
    def generator_losses(self, x: Tensor, y: Tensor, t: Tensor, with_cls: bool) -> dict[str, Tensor]:
        """The translator's loss for sources (x, y) and targets t (and L_cls through G(x, t) ``with_cls``)."""
        o, g, d = self.options, self.nets["G"], self.nets["D"]
        with self.autocast():
            fake = g(x, t)
            rec = g(fake, y)
            idt = g(x, y) if o.alpha else None
            out_d = d(fake)
        out = stargan_g_loss(
            out_d["adv"].float(), out_d["cls_logits"].float(), t, x.float(), rec.float(),
            None if idt is None else idt.float(), lambda_cls=o.lambda_cls, lambda_rec=o.lambda_rec, alpha=o.alpha,
        )  # fmt: skip
        if with_cls:
            c = self.nets["C"]
            was_training = c.training
            c.eval()
            with self.autocast():
                logits = c(fake).float()
            c.train(was_training)
            # only the translated images depend on G; real images add a constant
            out["joint_cls"] = multiclass_cls_loss(logits[:0], y[:0], logits, t, self.class_weights) / self.num_classes
            out["total"] = out["total"] + o.lambda_joint * out["joint_cls"]
        out["fake"] = fake
        return out

    def classifier_loss(self, x: Tensor, y: Tensor, fake: Tensor, t: Tensor) -> Tensor:
        with self.autocast():
            logits = self.nets["C"](torch.cat([x, fake])).float()
        loss = multiclass_cls_loss(logits[: len(x)], y, logits[len(x) :], t, self.class_weights)
        return loss / self.num_classes  # a mean over classes: the scale of one cross-entropy

    # -- steps --------------------------------------------------------------------------------------------
    def gan_update(self, x: Tensor, y: Tensor, step_t: int, with_cls: bool) -> dict[str, Tensor]:
        o, n = self.options, self.nets
        factor = lr_factor(step_t, self.total_gan_updates()) if o.lr_decay else 1.0
        for name, cfg in (("G", o.g_optim), ("D", o.d_optim)):
            for group in self.optimizers[name].param_groups:
                group["lr"] = cfg.lr * factor
        t = self.draw_targets(y)
        for net in (n["D"], n["C"]):
            net.requires_grad_(False)
        try:
            g = self.generator_losses(x, y, t, with_cls)
            self.update("G", g["total"], ["G"])
        finally:
            for net in (n["D"], n["C"]):
                net.requires_grad_(True)
        fake = g["fake"].detach().float()
        with self.autocast():
            real_d, fake_d = n["D"](x), n["D"](fake)
        adv = gan_d_loss(real_d["adv"].float(), fake_d["adv"].float())
        d_cls = torch.nn.functional.cross_entropy(real_d["cls_logits"].float(), y)
        d_loss = adv + o.lambda_cls * d_cls
        self.update("D", d_loss, ["D"])
        losses = {f"g_{k}": g[k].detach() for k in ("adv", "cls", "rec", "ide", "joint_cls") if k in g}
        losses.update(g_loss=g["total"].detach(), d_adv=adv.detach(), d_cls=d_cls.detach())
        return {**losses, "fake": fake, "targets": t}

    def classifier_update(self, x: Tensor, y: Tensor, fake: Tensor, t: Tensor) -> dict[str, Tensor]:
        loss = self.classifier_loss(x, y, fake, t)
        self.update("C", loss, ["C"])
        self.last_c = {"c_loss": loss.detach()}
        return dict(self.last_c)

    def gan_step(self, batches: Batches, step: int) -> dict[str, Tensor]:
        x, y = batches.next("real")
        out = self.gan_update(x, y, step, with_cls=False)
        return {k: v for k, v in out.items() if k not in ("fake", "targets")}

    def classifier_step(self, batches: Batches, step: int) -> dict[str, Tensor]:
        x, y = batches.next("cls_real" if self.options.cls_batch_size else "real")
        t = self.draw_targets(y)
        with torch.no_grad(), self.autocast():
            fake = self.nets["G"](x, t).float()
        return self.classifier_update(x, y, fake, t)

    def joint_batch(self, batches: Batches) -> tuple[Tensor, Tensor]:
        """The real batch of a joint step: images and their classes."""
        return batches.next("real")

    def pop_fakes(self, out: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return out.pop("fake"), out.pop("targets")

    # -- sampling -----------------------------------------------------------------------------------------
    def keep_grid_source(self, data: Any) -> bool:
        """Phase begin hook: the first ``GRID_IMAGES`` training images of the largest class, for the grids."""
        if self.grid_source is None:
            head = int(torch.bincount(data.train.labels, minlength=self.num_classes).argmax())
            idx = torch.nonzero(data.train.labels == head, as_tuple=True)[0][:GRID_IMAGES]
            self.grid_source = data.train.images[idx].float().div(127.5).sub(1.0).to(self.device)
        return False

    @torch.no_grad()
    def sample(
        self, labels: Tensor, generator: torch.Generator | None = None, source: Tensor | None = None
    ) -> Tensor:
        """``source`` images translated into classes ``labels``."""
        if source is None:
            raise TailganError("stargan-cls translates images: give the images to translate (source=...)")
        with self.autocast():
            out = self.nets["G"](self.precision.tensor(source.to(self.device).float()), labels.to(self.device))
        return out.float()

    @torch.no_grad()
    def sample_grid(self, num_classes: int, per_class: int, seed: int) -> tuple[Tensor, int] | None:
        """Row 0: real images of the largest class; row 1 + i: them translated into target class i."""
        if self.grid_source is None:
            return None
        x = self.grid_source[:per_class]
        rows = [x] + [self.sample(torch.full((len(x),), int(c)), source=x) for c in self.targets[:num_classes]]
        return torch.cat([r.float().cpu() for r in rows]), len(x)

    # -- checkpoints ------------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        state: dict = {"last_c": {k: v.detach().cpu() for k, v in self.last_c.items()}}
        if self.grid_source is not None:
            state["grid_source"] = self.grid_source.cpu()
        return state

    def load_extra_state(self, state: dict) -> None:
        if "last_c" in state:
            self.last_c = {k: v.to(self.device) for k, v in state["last_c"].items()}
        if "grid_source" in state:
            self.grid_source = state["grid_source"].to(self.device)

    def classifier(self) -> nn.Module:
        return self.nets["C"]
