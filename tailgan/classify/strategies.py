"""Rebalancing strategies for classifiers on long-tailed data, each a small unit.

A strategy is a combination of three independent parts:
- what the classifier trains on: the real data, resampled (imbalanced-learn's random over- and
  under-samplers on indices, or SMOTE on flattened images) and/or extended with synthetic images;
- which loss it minimises: cross-entropy, inverse-frequency weighted ("CS"), class-balanced, focal,
  LDAM or cross-entropy with deferred re-weighting, logit-adjusted, Balanced Softmax;
- how posteriors become predictions: as they are, divided by the training priors ("TS"), or divided
  by the priors to a power tau chosen on the validation split (post-hoc logit adjustment).

Names (``parse_strategy``): vanilla, ts, cs, us, os, us+cs, os+cs, smote, cbl, cbl-sigmoid,
cbl-focal (``cbl:0.99`` sets beta), focal, ldam-drw, la, la-posthoc, balanced-softmax, ce-drw. Modifiers
joined by ``+`` before any loss or prediction strategy S, at most one of each kind (alone: on ``vanilla``):
- synthetic images: ``gan+S`` / ``folder+S`` (``gan+la``, ``gan+cbl:0.99``; ``gan`` is ``gan+vanilla``), ``m2m+S``
  (head images translated into tail classes by the reference classifier's gradient, Kim et al. 2020);
- batch mixing: ``mixup+S``, ``cutmix+S``, ``cmo+S`` (``cmo+balanced-softmax``);
- a second stage on the trained backbone's features (``tailgan.classify.decoupled``): ``crt+S``,
  ``tau-norm+S``, ``lws+S`` (Kang et al.), ``feat-calibrate+S``, ``feat-diffusion+S`` (the head re-trained on
  real + generated features); with ``gan+``/``folder+`` the synthetic images feed the head, not the backbone.

``cyclegan-aug`` and ``cyclegan-alt`` (binary tasks) train the classifier jointly with a CycleGAN between the two
classes, ``stargan-aug`` / ``stargan-alt`` (K classes) with one translator into the tail classes
(``tailgan.baselines.joint``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tailgan.classify.parts import (  # noqa: F401  (re-exported: the strategies' building blocks)
    Parts,
    classical_parts,
    prior_adjust,
    resample_indices,
    smote_images,
    threshold_shift,
)
from tailgan.errors import TailganError

# the classical strategies (tailgan.classify.parts: CLASSICAL and every registered loss); "all" means these
CLASSICAL_STRATEGIES = tuple(classical_parts())
SYNTHETIC_STRATEGIES = ("gan", "folder", "m2m")
# a classifier trained with a translator: a CycleGAN between two classes (binary tasks) or a StarGAN-style
# translator into the tail classes (K classes)
JOINT_STRATEGIES = ("cyclegan-aug", "cyclegan-alt", "stargan-aug", "stargan-alt")
# transfer from a network pre-trained on a source set (DFG's rows; tailgan.baselines.transfer)
TRANSFER_STRATEGIES = ("original", "finetune", "delta", "dfg")
# what synthetic images can be combined with: losses and prediction rules, not resamplers (the synthetic
# images already rebalance the classes, and a resampler would duplicate or drop them blindly)
COMBINABLE = tuple(name for name, parts in classical_parts().items() if parts.sampler == "none")
# batch mixing (tailgan.data.transforms): mixup and cutmix within a batch, CMO with a minority-sampled second batch
MIXES = ("mixup", "cutmix", "cmo")
# a second stage on the trained backbone's features (tailgan.classify.decoupled): the linear head re-trained on
# class-balanced batches (crt), its weights normalised (tau-norm) or scaled per class (lws), or re-trained on real
# + generated features (feat-calibrate, feat-diffusion)
DECOUPLED = ("crt", "tau-norm", "lws")
FEATURE_GENERATORS = ("feat-calibrate", "feat-diffusion")
# modifiers a strategy name puts before its loss or prediction strategy, one of each kind at most
MODIFIERS = {"synthetic": SYNTHETIC_STRATEGIES, "mix": MIXES, "stage": DECOUPLED + FEATURE_GENERATORS}
STRATEGIES = (CLASSICAL_STRATEGIES + SYNTHETIC_STRATEGIES + MIXES + DECOUPLED + FEATURE_GENERATORS + JOINT_STRATEGIES
              + TRANSFER_STRATEGIES)  # fmt: skip


def _combinable() -> tuple[str, ...]:  # as COMBINABLE, with losses registered after import
    return tuple(name for name, parts in classical_parts().items() if parts.sampler == "none")


def _known() -> tuple[str, ...]:  # as STRATEGIES without modifiers, with losses registered after import
    return tuple(classical_parts()) + JOINT_STRATEGIES + TRANSFER_STRATEGIES


@dataclass(frozen=True)
class Strategy:
    """A parsed strategy name.

    sampler: "none", "us", "os" (full balance), "us-half", "os-half" (half-way, for the +cs
    combinations) or "smote"; loss: "ce", "cs", "cbl", "focal", "ldam-drw", "la", "balanced-softmax"
    or "ce-drw"; cb_loss_type: the class-balanced form (softmax, sigmoid, focal); adjust: how
    posteriors become predictions ("none", "ts": divided by the priors, "la-posthoc": divided by the
    priors to the power tau chosen on validation); synthetic: None, "gan" or "folder"; joint: None, or the
    joint strategy (``cyclegan-aug``, ...: the classifier trained with a translator, the seed's L_cls).
    """

    name: str
    sampler: str = "none"
    loss: str = "ce"
    cb_loss_type: str = "softmax"
    beta: float = 0.9999
    adjust: str = "none"
    synthetic: str | None = None
    joint: str | None = None
    transfer: bool = False  # original / finetune / delta / dfg (tailgan.baselines.transfer)
    mix: str = "none"  # batch mixing: none, mixup, cutmix, cmo
    stage: str = "none"  # second stage on the backbone's features: none, crt, tau-norm, lws, feat-*

    @property
    def backbone(self) -> Strategy:
        """The strategy that trains the network a second stage starts from: real images only (synthetic ones
        feed the second stage), the name without the stage and the source."""
        name = "+".join(t for t in self.name.split("+") if t not in (self.stage, self.synthetic)) or "vanilla"
        return Strategy(name, self.sampler, self.loss, self.cb_loss_type, self.beta, self.adjust,
                        None, mix=self.mix)  # fmt: skip

    @property
    def generative(self) -> bool:
        """Whether generated images (synthetic or translated) take part: the table's generative rows."""
        return self.synthetic is not None or self.joint is not None or self.stage in FEATURE_GENERATORS

    @property
    def threshold_shift(self) -> bool:
        """Whether posteriors are divided by the training priors at prediction (TS)."""
        return self.adjust == "ts"

    @property
    def output(self) -> str:
        """How logits become probabilities: "sigmoid" for the one-vs-all CB losses, else "softmax"."""
        return "sigmoid" if self.loss == "cbl" and self.cb_loss_type != "softmax" else "softmax"


def _modifiers(name: str, tokens: list[str]) -> dict[str, str]:
    """The modifier prefixes of a strategy name (at most one of each kind) -> {kind: name}."""
    found: dict[str, str] = {}
    for token in tokens:
        kind = next((k for k, names in MODIFIERS.items() if token in names), None)
        if kind is None or kind in found:
            raise TailganError(
                f"strategy {name!r}: {token!r} is not a modifier or appears twice; a name is modifiers "
                f"({', '.join(n for names in MODIFIERS.values() for n in names)}) joined by '+' before one "
                f"loss or prediction strategy ({', '.join(_combinable())}), e.g. gan+la, cmo+balanced-softmax, crt"
            )
        found[kind] = token
    return found


def parse_strategy(name: str, beta: float | None = None) -> Strategy:
    """Parse a strategy name (see the module docstring); ``beta`` is the CB beta unless the name gives one."""
    full = name.strip().lower()
    if full in JOINT_STRATEGIES:
        return Strategy(name=full, joint=full)
    if full in TRANSFER_STRATEGIES:
        return Strategy(name=full, transfer=True)
    tokens = [full] if full in classical_parts() else full.split("+")  # us+cs, os+cs: names of their own
    modifier_names = {n for names in MODIFIERS.values() for n in names}
    # the last token is the base strategy unless it is a modifier itself (``gan``, ``crt``: on vanilla)
    rest = "vanilla" if tokens[-1].partition(":")[0] in modifier_names else tokens.pop()
    mods = _modifiers(name, tokens)
    base, _, suffix = rest.partition(":")
    if base not in _known() or (mods and base not in _combinable()):
        raise TailganError(
            f"unknown strategy {name!r}; use one of {', '.join(_known())}, or modifiers joined by '+' before a "
            f"loss or prediction strategy ({', '.join(_combinable())}), e.g. gan+la, cmo+la, crt+balanced-softmax"
        )
    if suffix:
        if classical_parts().get(base, Parts()).loss != "cbl":
            raise TailganError(f"strategy {name!r}: only cbl, cbl-sigmoid and cbl-focal take ':beta'")
        try:
            beta = float(suffix)
        except ValueError:
            raise TailganError(f"strategy {name!r}: {suffix!r} is not a number (e.g. cbl:0.999)") from None
    beta = 0.9999 if beta is None else beta
    if not 0.0 <= beta < 1.0:
        raise TailganError(f"strategy {name!r}: beta={beta} must be in [0, 1) (the paper uses 0.9 ... 0.9999)")
    p = classical_parts().get(base, Parts())
    return Strategy(full, p.sampler, p.loss, p.cb_loss_type, beta, p.adjust, mods.get("synthetic"),
                    mix=mods.get("mix", "none"), stage=mods.get("stage", "none"))  # fmt: skip


def expand_strategies(spec: str) -> list[str]:
    """ "all" -> the classical strategies; otherwise a comma-separated list, each name checked."""
    names = list(classical_parts()) if spec.strip() == "all" else [s for s in spec.split(",") if s.strip()]
    if not names:
        raise TailganError(f"--strategies {spec!r} names no strategy; use 'all' or e.g. vanilla,cs,smote")
    for s in names:
        parse_strategy(s)
    return [s.strip().lower() for s in names]


def parse_synthetic(spec: str, num_classes: int | None = None) -> tuple[str, list[float]]:
    """The amount of synthetic images, as (kind, values).

    - ``fill``: every class up to the largest real class (= ``ratio:1``);
    - ``ratio:R``: every class up to R x the largest real class;
    - ``target:N``: every class up to N images; ``target:N0,N1,...``: class c up to N_c;
    - ``add:N``: N synthetic images for every class (``add:N0,N1,...`` per class), whatever its count
      (the amount sweep).
    """
    kind, _, value = spec.strip().lower().partition(":")
    if kind == "fill" and not value:
        return "ratio", [1.0]
    try:
        values = [float(v) for v in value.split(",")] if value else []
    except ValueError:
        values = []
    ok = {
        "ratio": len(values) == 1 and values[0] > 0,
        "target": bool(values) and all(v >= 0 and v == int(v) for v in values),
        "add": bool(values) and all(v >= 0 and v == int(v) for v in values),
    }.get(kind, False)
    if ok and kind != "ratio" and len(values) not in (1, num_classes or len(values)):
        ok = False
    if not ok:
        raise TailganError(
            f"--synthetic {spec!r} is not understood; use 'fill', 'ratio:R' with R > 0 (e.g. ratio:0.5), "
            f"'target:N', 'add:N' or a per-class list 'target:N0,N1,...' with one count per class"
        )
    return kind, values


def synthetic_classes(counts: Sequence[int], spec: str = "all") -> list[int]:
    """The classes that get synthetic images: ``all``, ``below:N`` (real count < N) or a list ``2,5,7``."""
    spec = spec.strip().lower()
    if spec == "all":
        return list(range(len(counts)))
    if spec.startswith("below:"):
        try:
            limit = float(spec.removeprefix("below:"))
        except ValueError:
            limit = None
        if limit is not None:
            return [c for c, n in enumerate(counts) if n < limit]
    else:
        try:
            chosen = sorted({int(c) for c in spec.split(",")})
        except ValueError:
            chosen = None
        if chosen is not None and all(0 <= c < len(counts) for c in chosen):
            return chosen
    raise TailganError(
        f"--synthetic-classes {spec!r} is not understood; use 'all', 'below:N' (classes with fewer than N "
        f"real images) or class indices in 0..{len(counts) - 1} such as '5,7,9'"
    )


def synthetic_counts(counts: Sequence[int], spec: str, classes: str = "all") -> list[int]:
    """How many synthetic images each class gets: the amount ``spec`` (see :func:`parse_synthetic`) for
    the classes chosen by ``classes`` (see :func:`synthetic_classes`), 0 for the others."""
    kind, values = parse_synthetic(spec, len(counts))
    chosen = set(synthetic_classes(counts, classes))
    per_class = values * len(counts) if len(values) == 1 else values
    out = []
    for c, n in enumerate(counts):
        if kind == "ratio":
            add = math.ceil(values[0] * max(counts)) - int(n)
        elif kind == "target":
            add = int(per_class[c]) - int(n)
        else:
            add = int(per_class[c])
        out.append(max(0, add) if c in chosen else 0)
    return out
