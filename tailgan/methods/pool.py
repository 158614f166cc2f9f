"""CycleGAN's history of generated images for the discriminator updates (Shrivastava et al. 2017).

The discriminator sees a mix of the newest translations and older ones, which damps oscillation. For
each image of a batch, :meth:`ImagePool.query`:

* while the pool holds fewer than ``pool_size`` images: stores it and returns it;
* once full: with probability 1/2 returns a uniformly chosen stored image and puts the new one in its
  place, otherwise returns the new image and leaves the pool unchanged.

This is the CycleGAN code's rule, with its Python ``random`` calls replaced by draws from a
``torch.Generator`` (one uniform per image once full, then one index when it swaps), so a seed fixes
the sequence. :meth:`state_dict` holds the stored images and the generator's state as plain tensors;
loading it (also from a ``weights_only=True`` checkpoint) makes the next queries identical to those
of the uninterrupted run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from tailgan.errors import TailganError


class ImagePool:
    """A buffer of up to ``pool_size`` generated images (``pool_size=0``: every query returns its input).

    ``generator`` drives the random choices; by default a new CPU generator seeded with ``seed``.
    """

    def __init__(self, pool_size: int = 50, generator: torch.Generator | None = None, seed: int = 0) -> None:
        if pool_size < 0:
            raise ValueError(f"pool_size must be >= 0, got {pool_size}")
        self.pool_size = pool_size
        if generator is None:
            generator = torch.Generator().manual_seed(seed)
        self.generator = generator
        self.images: Tensor | None = None  # (pool_size, C, H, W) once the first image arrives
        self.num_images = 0

    def __len__(self) -> int:
        return self.num_images

    def _uniform(self) -> float:
        return float(torch.rand((), generator=self.generator, device=self.generator.device))

    def _index(self) -> int:
        return int(torch.randint(self.pool_size, (), generator=self.generator, device=self.generator.device))

    @torch.no_grad()
    def query(self, images: Tensor) -> Tensor:
        """Return a batch of the same shape as ``images``: each one either the new image or a stored one."""
        if self.pool_size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = images.new_empty((self.pool_size, *images.shape[1:]))
        elif self.images.shape[1:] != images.shape[1:]:
            raise ValueError(f"the pool holds {tuple(self.images.shape[1:])} images, got {tuple(images.shape[1:])}")
        out = []
        for image in images:
            if self.num_images < self.pool_size:
                self.images[self.num_images] = image
                self.num_images += 1
                out.append(image.clone())
            elif self._uniform() > 0.5:
                i = self._index()
                out.append(self.images[i].clone())
                self.images[i] = image
            else:
                out.append(image.clone())
        return torch.stack(out)

    def state_dict(self) -> dict[str, Tensor]:
        """Plain tensors: ``images`` (the stored ones, n x C x H x W), ``pool_size`` and ``rng_state``."""
        stored = self.images[: self.num_images].clone() if self.images is not None else torch.zeros(0)
        return {
            "images": stored,
            "pool_size": torch.tensor(self.pool_size),
            "rng_state": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore the stored images and the random state (the generator passed in is set to it)."""
        missing = {"images", "pool_size", "rng_state"} - set(state)
        if missing:
            raise TailganError(f"image pool state lacks {', '.join(sorted(missing))}: not an ImagePool state_dict")
        if int(state["pool_size"]) != self.pool_size:
            raise TailganError(
                f"the checkpoint's image pool holds up to {int(state['pool_size'])} images but this run's pool "
                f"{self.pool_size}; resume with the same pool size"
            )
        stored = state["images"]
        self.num_images = int(stored.shape[0]) if stored.ndim > 1 else 0
        if self.num_images:
            self.images = stored.new_empty((self.pool_size, *stored.shape[1:]))
            self.images[: self.num_images] = stored
        else:
            self.images = None
        self.generator.set_state(state["rng_state"])
