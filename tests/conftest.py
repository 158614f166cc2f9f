import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def shared_data_root() -> Path | None:
    """Real datasets: $TAILGAN_DATA, else ../shared/data beside the repository (CI always has it)."""
    env = os.environ.get("TAILGAN_DATA")
    root = Path(env) if env else REPO.parent / "shared" / "data"
    return root if (root / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").is_file() else None


@pytest.fixture
def fmnist_root() -> str:
    root = shared_data_root()
    if root is None:
        pytest.skip("Fashion-MNIST not found: set TAILGAN_DATA or place it at ../shared/data (CI has it)")
    return str(root)


@pytest.fixture(scope="session", autouse=True)
def _test_cache(tmp_path_factory):
    """One evaluator cache for the whole session (never the user's ~/.cache), so each is trained once."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TAILGAN_CACHE", str(tmp_path_factory.mktemp("tailgan-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True)
def _small_threads():
    torch.set_num_threads(1)
    yield
