"""Limited-data GAN regularisers as switches of any adversarial recipe (``loss.`` config section).

- ``loss.diffaug=color,translation,cutout``: DiffAugment on every image D sees (real, generated, and the
  gradient penalty's interpolates), drawn from the recipe's generator so a resumed run is bit-exact;
- ``loss.lecam_weight``: LeCam's ``relu(D(x) - ema_fake)^2 + relu(ema_real - D(G(z)))^2`` in the D step,
  with EMAs of D's outputs (``loss.lecam_decay``) kept in the checkpoint;
- ``loss.gsr_weight``: group spectral regularisation of a conditional-BN generator's per-class gains and
  biases in the G step, weighted by effective class counts (``loss.gsr_beta``, ``loss.gsr_groups``).

All are off by default, so a recipe's published behaviour is unchanged unless asked for.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from tailgan.errors import TailganError
from tailgan.losses.regularizers import LeCam, check_policy, diff_augment, group_spectral_penalty


class Regularized:
    """Mixin for :class:`tailgan.methods.base.AdversarialMethod` recipes whose D returns an ``adv`` output: the
    terms its step skeleton adds and the penalty's critic. Call ``setup_regularizers()`` at the end of ``build``."""

    def setup_regularizers(self) -> None:
        loss = self.cfg.loss
        self.diffaug_policy = loss.diffaug
        if loss.diffaug:
            check_policy(loss.diffaug)
        self.lecam = LeCam(loss.lecam_decay) if loss.lecam_weight > 0 else None
        if loss.gsr_weight > 0 and self.cfg.model.arch != "biggan":
            raise TailganError(
                f"loss.gsr_weight needs a generator with conditional batch norm (model.arch=biggan), "
                f"not {self.cfg.model.arch}"
            )

    def augment(self, x: Tensor) -> Tensor:
        """``x`` as D sees it: DiffAugment'ed when ``loss.diffaug`` is set."""
        return diff_augment(x, self.diffaug_policy, generator=self.gen) if self.diffaug_policy else x

    def penalty_critic(self, real_labels: Tensor) -> Callable[[Tensor], Tensor]:
        """The gradient penalty's critic: D's adversarial output on the (augmented) interpolates, scored with the
        real batch's labels."""
        D = self.nets["D"]
        return lambda x: D(self.augment(x), real_labels)["adv"]

    def lecam_term(self, d_real: Tensor, d_fake: Tensor) -> Tensor | None:
        """``lecam_weight`` x LeCam on this D step's outputs (the EMAs updated first), or None when off."""
        if self.lecam is None:
            return None
        self.lecam.update(d_real, d_fake)
        return self.cfg.loss.lecam_weight * self.lecam.loss(d_real.float(), d_fake.float())

    def gsr_term(self) -> Tensor | None:
        """``gsr_weight`` x gSR of G (in fp32), or None when off."""
        if self.cfg.loss.gsr_weight <= 0:
            return None
        loss = self.cfg.loss
        counts = torch.tensor(self.shape.class_counts or [1] * self.num_classes)
        return loss.gsr_weight * group_spectral_penalty(self.nets["G"], counts, loss.gsr_beta, loss.gsr_groups)

    def extra_state(self) -> dict:
        state = super().extra_state()
        if self.lecam is not None:
            state["lecam"] = self.lecam.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        if self.lecam is not None and "lecam" in state:
            self.lecam.load_state_dict(state["lecam"])
