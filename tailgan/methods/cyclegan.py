"""Joint CycleGAN + classifier (Sahoo et al., "Mitigating Dataset Imbalance via Joint Generation and
Classification", ECCV-W 2020): spec ``bagan-ebgan-idagan-dfg-cyclegan-cbl.md`` section 6.

Two classes of any dataset are the two domains: A = ``options.class_a`` (the majority) and B =
``options.class_b`` (the minority), each a stream of real images. Networks: generators G_AB: A -> B and
G_BA: B -> A (CycleGAN's ResNet generator), discriminators D_A, D_B (PatchGAN), and a binary classifier C
(one of ``tailgan.nets.classifiers``, two logits, z(x) = softmax(C(x))[1] = P(x is B)).

One CycleGAN update (the CycleGAN code's order: both generators, then both discriminators)::

    L_G = L_GAN(G_AB, D_B) + L_GAN(G_BA, D_A) + beta (L_cyc(A) + L_cyc(B)) + alpha L_ide   [+ lambda_cls L_cls]
    L_D = 1/2 [(D_B(b) - 1)^2 + D_B(pool_B(G_AB(a)))^2] + the same for D_A        (LSGAN, halved)

with beta = 10, alpha = 5 (CycleGAN's lambda_idt 0.5 x lambda_cyc), 50-image pools of earlier translations
for the D updates, Adam 2e-4 (0.5, 0.999), and the learning rates of G and D decayed linearly towards 0
over the second half of all CycleGAN updates (CycleGAN's rule: factor 1 - (t - T/2) / (T/2 + 1)). The
classifier loss is the seed's

    L_cls = L_cls^B + (1 / gamma) L_cls^A,
    L_cls^B = -E_b log z(b) - E_a log z(G_AB(a)),   L_cls^A = -E_a log(1 - z(a)) - E_b log(1 - z(G_BA(b))).

Modes (``options.mode``):

- ``aug``: phase ``cyclegan`` (``options.cyclegan_steps`` CycleGAN updates, no classifier), then phase
  ``classifier`` (``--steps``, the main phase): C alone minimises L_cls on real a, real b, G_AB(a) labelled
  B and G_BA(b) labelled A; the translators are fixed (no gradient reaches them).
- ``alt``: phase ``gan_warmup`` (``options.gan_warmup`` CycleGAN updates without L_cls), phase
  ``cls_warmup`` (``options.cls_warmup`` classifier updates as in ``aug``), then phase ``joint``
  (``--steps``): every step is one CycleGAN update whose generator loss includes lambda_cls L_cls on the
  undetached translations (C is the teacher: frozen in that update, its gradient flows into G_AB and
  G_BA), and every ``options.alt_period``-th step also one classifier update on the same real batch and
  the (detached) translations of that step. The seed gives no period; 1 (one classifier update per
  CycleGAN update) is tailgan's default.

Choices the seed leaves open, and tailgan's (spec 6.3 "INFERRED"): the pools are used (CycleGAN's code);
beta and alpha are CycleGAN's; the expectations E_a, E_b are means over the batches of the two streams,
which have the same size (``optim.batch_size``; B is drawn with replacement), so the batch is already
balanced and gamma defaults to 1 (``options.gamma=cs`` uses the cost-sensitive ratio n_A / n_B of
``tailgan.losses.translation.cost_sensitive_gamma``, the default of the ``ja+cs`` variant; a number sets
it). ``options.variant=ja+cs`` is the seed's "JA + CS" row: non-saturating generator loss, one-sided
identity (only |G_BA(a) - a|), cost-sensitive gamma. ``options.lr_decay`` ties the G/D schedule to the
run's total length, so extending a finished ``alt`` run with a larger ``--steps`` changes it (a killed run
resumed with the same ``--steps`` is bit-exact; ``aug``'s CycleGAN phase has its own fixed length).

Output: an image translator (``sample(labels, source=...)``: images of class B through G_AB, of class A
through G_BA); sample grids show, for fixed real images of each domain, the source row, the translated row
and the cycled-back row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from tailgan.config import bounded
from tailgan.errors import TailganError
from tailgan.losses.translation import (
    classifier_objective,
    cost_sensitive_gamma,
    cyclegan_d_losses,
    cyclegan_g_losses,
    joint_cls_loss,
)
from tailgan.methods.base import Batches, Method, OptimizerConfig, make_optimizer
from tailgan.methods.pool import ImagePool
from tailgan.methods.spec import OutputSpec, Phase, StreamSpec, due
from tailgan.nets.classifiers import CLASSIFIERS, build_classifier
from tailgan.nets.cyclegan import PatchDiscriminator, ResnetGenerator, _patch_map_side, patchgan_strides

GRID_IMAGES = 8  # real images per domain kept for the sample grids

# CycleGAN used batch 1; 8 images per domain keeps a CPU step short while instance norm still sees one image
PRESETS = {"cyclegan-cls": {"method": "cyclegan-cls", "optim": {"batch_size": 8}}}
DEFAULT_PRESET = "cyclegan-cls"


@dataclass
class CycleGANClsOptions:
    """Typed options of ``cyclegan-cls`` (``options.KEY=VALUE``)."""

    class_a: int = bounded(0, ge=0)  # majority domain A
    class_b: int = bounded(1, ge=0)  # minority domain B
    mode: Literal["aug", "alt"] = "aug"
    variant: Literal["standard", "ja+cs"] = "standard"  # ja+cs: non-saturating G loss, one-sided identity, CS gamma
    cyclegan_steps: int = bounded(2000, ge=0)  # aug: CycleGAN updates before the classifier phase
    gan_warmup: int = bounded(500, ge=0)  # alt: CycleGAN updates without the classifier loss, first
    cls_warmup: int = bounded(200, ge=0)  # alt: classifier updates on real + translated images, next
    alt_period: int = bounded(1, ge=1)  # alt: one classifier update every this many CycleGAN updates
    # real images per domain in a classifier update (None: the translator's batch, optim.batch_size); with a
    # number the classifier draws its own a and b batches and translates them
    cls_batch_size: int | None = bounded(None, ge=1)
    beta: float = bounded(10.0, ge=0)  # cycle-consistency weight
    alpha: float = bounded(5.0, ge=0)  # identity weight (0: no identity terms)
    lambda_cls: float = bounded(1.0, ge=0)  # alt: weight of L_cls in the generators' loss
    # the classifier's update: L_cls as a weighted mean over its four image groups (one cross-entropy's scale),
    # or the seed's sum as written (see tailgan.losses.translation.classifier_objective)
    cls_reduction: Literal["mean", "sum"] = "mean"
    # L_cls = L_cls^B + L_cls^A / gamma; "cs": n_A / n_B; null: the variant's (standard: 1, ja+cs: "cs")
    gamma: float | Literal["cs"] | None = bounded(None, gt=0)
    pool_size: int = bounded(50, ge=0)
    lr_decay: bool = True  # linear decay of the G/D learning rates over the second half of the CycleGAN updates
    ngf: int = bounded(32, ge=1)  # generator width (the paper's 64; 16-32 on a CPU)
    ndf: int = bounded(32, ge=1)  # discriminator width
    n_blocks: int = bounded(6, ge=0)  # residual blocks (6: CycleGAN's choice up to 128 px)
    classifier: str = "lenet5"  # one of tailgan.nets.classifiers.CLASSIFIERS
    g_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 2e-4, (0.5, 0.999)))
    d_optim: OptimizerConfig = field(default_factory=lambda: OptimizerConfig("adam", 2e-4, (0.5, 0.999)))
    cls_optim: OptimizerConfig = field(
        default_factory=lambda: OptimizerConfig("sgd", 0.02, momentum=0.9, nesterov=True, weight_decay=5e-4)
    )


def lr_factor(t: int, total: int) -> float:
    """CycleGAN's linear decay for update ``t`` (1-based) of ``total``: 1 for the first half, then
    1 - (t - h) / (total - h + 1) with h = total // 2 (it reaches 1 / (total - h + 1) at the last update)."""
    h = total // 2
    return 1.0 if t <= h else 1.0 - (t - h) / (total - h + 1)


class JointPhases:
    """The phases and output both joint recipes share (cyclegan-cls, stargan-cls).

    ``aug``: the translator's phase (``translator_phase() -> (name, steps, step)``), then the classifier's
    (main). ``alt``: a translator warm-up, a classifier warm-up, then the joint phase (main).
    """

    def phases(self) -> list[Phase]:
        o = self.options
        name, steps, step = self.translator_phase()
        if o.mode == "aug":
            return [
                Phase(name, steps, step, begin=self.keep_grid_source),
                Phase("classifier", self.cfg.steps, self.classifier_step, begin=self.keep_grid_source, main=True),
            ]
        return [
            Phase("gan_warmup", o.gan_warmup, step, begin=self.keep_grid_source),
            Phase("cls_warmup", o.cls_warmup, self.classifier_step, begin=self.keep_grid_source),
            Phase("joint", self.cfg.steps, self.joint_step, begin=self.keep_grid_source, main=True),
        ]

    @property
    def output(self) -> OutputSpec:
        return OutputSpec("image", (self.img_channels, self.img_size, self.img_size), translates=True)

    def joint_step(self, batches: Any, step: int) -> dict[str, Tensor]:
        """``alt``: a translator update with L_cls in the generators' loss, and every ``alt_period`` steps a
        classifier update on the same real batch and its translations (``joint_batch`` / ``pop_fakes`` say
        what they are for the recipe). ``c_loss*`` are the losses of the latest classifier update."""
        real = self.joint_batch(batches)
        out = self.gan_update(*real, self.options.gan_warmup + step, with_cls=True)
        fakes = self.pop_fakes(out)
        if not due(step, self.options.alt_period):
            out.update(self.last_c)
        elif self.options.cls_batch_size:  # the classifier's own (larger) real batch, translated
            out.update(self.classifier_step(batches, step))
        else:
            out.update(self.classifier_update(*real, *fakes))
        return out

    def total_gan_updates(self) -> int:
        """Translator updates over the run: the lr decay's horizon."""
        o = self.options
        return self.translator_phase()[1] if o.mode == "aug" else o.gan_warmup + self.cfg.steps

    def compile_steps(self) -> int:
        return self.total_gan_updates()  # the compiled translator networks take part in these updates


class CycleGANCls(JointPhases, Method):
    """A CycleGAN between two classes trained with a binary classifier; see the module docstring."""

    name = "cyclegan-cls"
    Options = CycleGANClsOptions
    # LSGAN, no gradient penalty: the four translator networks compile (aot_autograd refuses double
    # backward). Measured (benchmarks/results/fast_path_recipes.md; one thread of a loaded 2-core CPU, bf16,
    # ngf = ndf = 16, batch 8, 32 px): a joint step 1.35x faster after 334 s of compiling (cold cache), won
    # back after ~2,000 steps; ``compile=auto`` waits for twice that.
    compiled_nets = ("G_AB", "G_BA", "D_A", "D_B")
    compile_pays = True
    compile_min_steps = 4000

    # -- construction -----------------------------------------------------------------------------------------
    def build(self) -> None:
        o = self.options
        for key in ("class_a", "class_b"):
            if getattr(o, key) >= self.num_classes:
                raise TailganError(
                    f"options.{key}={getattr(o, key)} is not a class of this dataset (0..{self.num_classes - 1})"
                )
        if o.class_a == o.class_b:
            raise TailganError(f"options.class_a and options.class_b are both {o.class_a}; choose two classes")
        if o.classifier not in CLASSIFIERS:
            raise TailganError(f"options.classifier={o.classifier!r} is unknown; use one of {', '.join(CLASSIFIERS)}")
        if self.img_size % 4 or self.img_size < 8:
            raise TailganError(
                f"the CycleGAN generator needs image sides divisible by 4 and >= 8, got {self.img_size} px; "
                "set data.resolution (e.g. 32) or data.fit=pad"
            )
        c = self.img_channels
        for name in ("G_AB", "G_BA"):
            self.nets[name] = ResnetGenerator(c, c, o.ngf, o.n_blocks)
        strides = patchgan_strides(self.img_size, 3, min(4, _patch_map_side(self.img_size, (1,) * 5)))
        for name in ("D_A", "D_B"):  # 4 x 4 patch maps or more (3 x 3 at 8 px, all strides 1)
            self.nets[name] = PatchDiscriminator(c, o.ndf, strides=strides)
        self.nets["C"] = build_classifier(o.classifier, 2, c)
        self.optimizers["G"] = make_optimizer([*self.nets["G_AB"].parameters(), *self.nets["G_BA"].parameters()],
                                              o.g_optim)  # fmt: skip
        self.optimizers["D"] = make_optimizer([*self.nets["D_A"].parameters(), *self.nets["D_B"].parameters()],
                                              o.d_optim)  # fmt: skip
        self.optimizers["C"] = make_optimizer(self.nets["C"].parameters(), o.cls_optim)
        seed = self.cfg.seed * 1000 + 31 + self.rank
        self.pools = {
            "A": ImagePool(o.pool_size, torch.Generator().manual_seed(seed)),
            "B": ImagePool(o.pool_size, torch.Generator().manual_seed(seed + 500)),
        }
        self.gan_mode = "nonsaturating" if o.variant == "ja+cs" else "lsgan"
        self.one_sided_identity = o.variant == "ja+cs"
        self.gamma = self.resolve_gamma()
        # the latest classifier update's losses, logged on joint steps that make none (alt_period > 1)
        self.last_c = {k: torch.zeros((), device=self.device) for k in ("c_loss", "c_loss_b", "c_loss_a")}
        self.grid_source: Tensor | None = None  # (2 * GRID_IMAGES, C, H, W): real A images, then real B images

    def resolve_gamma(self) -> float:
        """gamma as given, or the CS ratio n_A / n_B of the training counts (``gamma=cs``, and ``ja+cs``'s
        default)."""
        o = self.options
        gamma = o.gamma if o.gamma is not None else ("cs" if o.variant == "ja+cs" else 1.0)
        if gamma != "cs":
            return float(gamma)
        counts = self.shape.class_counts
        if not counts:  # loaded for sampling only: gamma is not used
            return 1.0
        return cost_sensitive_gamma(counts[o.class_a], counts[o.class_b])

    def streams(self) -> dict[str, StreamSpec]:
        o = self.options
        streams = {
            "domain_a": StreamSpec(classes=(o.class_a,), flip=self.cfg.flip),
            # the minority may hold fewer images than a batch: drawn with replacement
            "domain_b": StreamSpec(classes=(o.class_b,), balanced=True, flip=self.cfg.flip, seed_offset=1),
        }
        if o.cls_batch_size:
            n = o.cls_batch_size
            streams["cls_a"] = StreamSpec(classes=(o.class_a,), batch_size=n, flip=self.cfg.flip, seed_offset=2)
            streams["cls_b"] = StreamSpec(classes=(o.class_b,), balanced=True, batch_size=n, flip=self.cfg.flip,
                                          seed_offset=3)  # fmt: skip
        return streams

    def translator_phase(self) -> tuple[str, int, Any]:
        return "cyclegan", self.options.cyclegan_steps, self.cyclegan_step

    # -- losses (graphs kept, so tests can follow the gradients) -------------------------------------------
    def generator_losses(self, a: Tensor, b: Tensor, with_cls: bool) -> dict[str, Tensor]:
        """The generators' objective on real batches ``a``, ``b``: the CycleGAN terms and, ``with_cls``, the
        classifier's L_cls on the undetached translations (``cls``; C in eval mode, as a fixed teacher).
        Also returns the translations ``fake_a`` = G_BA(b), ``fake_b`` = G_AB(a) (with their graphs)."""
        n, o = self.nets, self.options
        with self.autocast():
            fake_b, fake_a = n["G_AB"](a), n["G_BA"](b)
            rec_a, rec_b = n["G_BA"](fake_b), n["G_AB"](fake_a)
            idt_a = n["G_BA"](a) if o.alpha else None
            idt_b = n["G_AB"](b) if o.alpha and not self.one_sided_identity else None
            d_b_fake, d_a_fake = n["D_B"](fake_b), n["D_A"](fake_a)
        f = _float
        out = cyclegan_g_losses(
            f(d_b_fake), f(d_a_fake), a.float(), b.float(), f(rec_a), f(rec_b), f(idt_a), f(idt_b),
            beta=o.beta, alpha=o.alpha, mode=self.gan_mode, one_sided_identity=self.one_sided_identity,
        )  # fmt: skip
        if with_cls:
            c = n["C"]
            was_training = c.training
            c.eval()  # the teacher: no batch-norm statistics updates from translated images
            with self.autocast():
                logits = c(torch.cat([fake_a, fake_b])).float()
            c.train(was_training)
            la, lb = logits.split([len(fake_a), len(fake_b)])
            cls = joint_cls_loss(None, None, la, lb, self.gamma)
            out["cls"] = cls["cls"]
            out["total"] = out["total"] + o.lambda_cls * cls["cls"]
        out["fake_a"], out["fake_b"] = fake_a, fake_b
        return out

    def classifier_loss(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict[str, Tensor]:
        """L_cls on real a (label A), real b (B), G_BA(b) (A) and G_AB(a) (B); pass detached translations so
        only C learns. One forward pass over the four groups."""
        groups = [a, b, fake_a, fake_b]
        with self.autocast():
            logits = self.nets["C"](torch.cat(groups)).float()
        la, lb, lfa, lfb = logits.split([len(g) for g in groups])
        return joint_cls_loss(la, lb, lfa, lfb, self.gamma)

    # -- steps ----------------------------------------------------------------------------------------------
    def set_gan_lr(self, t: int) -> None:
        """Learning rates of G and D for CycleGAN update ``t`` (computed from t, so resuming needs no state)."""
        factor = lr_factor(t, self.total_gan_updates()) if self.options.lr_decay else 1.0
        for name, cfg in (("G", self.options.g_optim), ("D", self.options.d_optim)):
            for group in self.optimizers[name].param_groups:
                group["lr"] = cfg.lr * factor

    def gan_update(self, a: Tensor, b: Tensor, t: int, with_cls: bool) -> dict[str, Tensor]:
        """One CycleGAN update (generators, then discriminators on pooled translations); returns the
        detached losses and the detached translations."""
        self.set_gan_lr(t)
        n = self.nets
        frozen = [n["D_A"], n["D_B"], n["C"]]
        for net in frozen:  # no gradients into D or C from the generators' loss
            net.requires_grad_(False)
        try:
            g = self.generator_losses(a, b, with_cls)
            self.update("G", g["total"], ["G_AB", "G_BA"])
        finally:
            for net in frozen:
                net.requires_grad_(True)
        fake_a, fake_b = g["fake_a"].detach().float(), g["fake_b"].detach().float()
        pooled_a, pooled_b = self.pools["A"].query(fake_a), self.pools["B"].query(fake_b)
        with self.autocast():
            outs = [n["D_A"](a), n["D_A"](pooled_a), n["D_B"](b), n["D_B"](pooled_b)]
        d = cyclegan_d_losses(*[x.float() for x in outs], mode=self.gan_mode)
        self.update("D", d["total"], ["D_A", "D_B"])
        losses = {k: g[k].detach() for k in ("gan_ab", "gan_ba", "cyc_a", "cyc_b", "ide", "cls") if k in g}
        losses.update(g_loss=g["total"].detach(), d_a=d["d_a"].detach(), d_b=d["d_b"].detach())
        return {**losses, "fake_a": fake_a, "fake_b": fake_b}

    def classifier_update(self, a: Tensor, b: Tensor, fake_a: Tensor, fake_b: Tensor) -> dict[str, Tensor]:
        loss = self.classifier_loss(a, b, fake_a, fake_b)
        self.update("C", classifier_objective(loss["cls"], self.gamma, self.options.cls_reduction), ["C"])
        self.last_c = {f"c_loss{k[3:]}": loss[k].detach() for k in ("cls", "cls_b", "cls_a")}
        return dict(self.last_c)

    def cyclegan_step(self, batches: Batches, step: int) -> dict[str, Tensor]:
        """A CycleGAN update without the classifier (``aug``'s first phase, ``alt``'s warm-up)."""
        (a, _), (b, _) = batches.next("domain_a"), batches.next("domain_b")
        out = self.gan_update(a, b, step, with_cls=False)
        return {k: v for k, v in out.items() if not k.startswith("fake")}

    def classifier_step(self, batches: Batches, step: int) -> dict[str, Tensor]:
        """A classifier update on real and translated images; the translators are not trained."""
        own = self.options.cls_batch_size
        (a, _), (b, _) = batches.next("cls_a" if own else "domain_a"), batches.next("cls_b" if own else "domain_b")
        with torch.no_grad(), self.autocast():
            fake_a, fake_b = self.nets["G_BA"](b).float(), self.nets["G_AB"](a).float()
        return self.classifier_update(a, b, fake_a, fake_b)

    def joint_batch(self, batches: Batches) -> tuple[Tensor, Tensor]:
        """The real batch of a joint step: (a, b) from the two domains."""
        (a, _), (b, _) = batches.next("domain_a"), batches.next("domain_b")
        return a, b

    def pop_fakes(self, out: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        return out.pop("fake_a"), out.pop("fake_b")

    # -- sampling -----------------------------------------------------------------------------------------
    def keep_grid_source(self, data: Any) -> bool:
        """Phase begin hook: keep the first ``GRID_IMAGES`` training images of each domain for the grids."""
        if self.grid_source is None:
            o, train = self.options, data.train
            picks = []
            for c in (o.class_a, o.class_b):
                idx = torch.nonzero(train.labels == c, as_tuple=True)[0][:GRID_IMAGES]
                x = train.images[idx].float().div(127.5).sub(1.0)
                if len(idx) < GRID_IMAGES:  # a tiny minority: repeat its images to fill the row
                    x = x[torch.arange(GRID_IMAGES) % len(idx)]
                picks.append(x)
            self.grid_source = torch.cat(picks).to(self.device)
        return False

    def translate(self, source: Tensor, to_b: Tensor) -> Tensor:
        """``source`` images through G_AB where ``to_b`` is true, else through G_BA (float32, no gradient)."""
        with torch.no_grad(), self.autocast():
            src = self.precision.tensor(source.to(self.device).float())
            out = torch.where(to_b.to(self.device)[:, None, None, None], self.nets["G_AB"](src), self.nets["G_BA"](src))
        return out.float()

    @torch.no_grad()
    def sample(
        self, labels: Tensor, generator: torch.Generator | None = None, source: Tensor | None = None
    ) -> Tensor:
        """``source`` images translated into class ``labels`` (each ``class_b`` or ``class_a``)."""
        o = self.options
        if source is None:
            raise TailganError("cyclegan-cls translates images: give the images to translate (source=...)")
        labels = labels.to(self.device)
        bad = labels[(labels != o.class_a) & (labels != o.class_b)]
        if len(bad):
            raise TailganError(
                f"this run translates between classes {o.class_a} and {o.class_b}; class {int(bad[0])} is neither"
            )
        return self.translate(source, labels == o.class_b)

    @torch.no_grad()
    def sample_grid(self, num_classes: int, per_class: int, seed: int) -> tuple[Tensor, int] | None:
        """Six rows: real A, G_AB(A), G_BA(G_AB(A)), real B, G_BA(B), G_AB(G_BA(B)) (fixed images)."""
        if self.grid_source is None:
            return None
        k = min(per_class, GRID_IMAGES)
        a, b = self.grid_source[:k], self.grid_source[GRID_IMAGES : GRID_IMAGES + k]
        yes, no = torch.ones(k, dtype=torch.bool), torch.zeros(k, dtype=torch.bool)
        ab = self.translate(a, yes)
        ba = self.translate(b, no)
        rows = [a, ab, self.translate(ab, no), b, ba, self.translate(ba, yes)]
        return torch.cat([r.float().cpu() for r in rows]), k

    # -- checkpoints --------------------------------------------------------------------------------------------
    def extra_state(self) -> dict:
        state: dict = {f"pool_{k}": p.state_dict() for k, p in self.pools.items()}
        state["last_c"] = {k: v.detach().cpu() for k, v in self.last_c.items()}
        if self.grid_source is not None:
            state["grid_source"] = self.grid_source.cpu()
        return state

    def load_extra_state(self, state: dict) -> None:
        for k, p in self.pools.items():
            if f"pool_{k}" in state:
                p.load_state_dict(state[f"pool_{k}"])
        if "last_c" in state:
            self.last_c = {k: v.to(self.device) for k, v in state["last_c"].items()}
        if "grid_source" in state:
            self.grid_source = state["grid_source"].to(self.device)

    def classifier(self) -> nn.Module:
        """The trained binary classifier C (logits over (A, B))."""
        return self.nets["C"]


def _float(x: Tensor | None) -> Tensor | None:
    return None if x is None else x.float()
