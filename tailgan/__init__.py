"""tailgan: learning from class-imbalanced (long-tailed) image data with generative models."""

from tailgan.version import __version__ as __version__


def load_generator(run_dir, checkpoint="last", device="cpu"):
    """Load the (EMA, when there is one) generator of a training run; see ``tailgan.engine``."""
    from tailgan.engine import load_generator as _load  # lazy: ``import tailgan`` stays light

    return _load(run_dir, checkpoint=checkpoint, device=device)


def load_data(spec="digits_lt", root=None, **overrides):
    """Load a long-tailed dataset; see ``tailgan.data.load_data``."""
    from tailgan.data import load_data as _load  # lazy: ``import tailgan`` stays light

    return _load(spec, root=root, **overrides)
