"""The data layer: recipes, presets, manifests, samplers, folders, export, bad input."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from tailgan.cli import main as cli
from tailgan.config import apply_overrides, from_dict
from tailgan.data import (
    PRESETS,
    BatchStream,
    DataConfig,
    ImageSet,
    fit_images,
    load_data,
    load_from_manifest,
    long_tail_counts,
    save_manifest,
    select_indices,
    to_float,
    to_uint8,
)
from tailgan.errors import TailganError

CIFAR_IF100 = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]


def preset_counts(name, available):
    p = {
        k: v
        for k, v in PRESETS[name].items()
        if k in ("recipe", "imbalance_factor", "n_max", "minority_fraction", "ecogan_unit", "counts")
    }
    recipe = p.pop("recipe")
    return long_tail_counts(recipe, available, **p)


# --- recipes and presets: exact counts -------------------------------------------------------------


def test_exp_recipe_cifar10_if100():
    assert long_tail_counts("exp", [5000] * 10, imbalance_factor=100) == CIFAR_IF100
    assert preset_counts("cifar10_lt_if100", [5000] * 10) == CIFAR_IF100


def test_ecogan_presets():
    assert preset_counts("fashion_mnist_lt", [6000] * 10) == [6000] + [100 * c for c in range(1, 10)]
    assert preset_counts("cifar10_lt", [5000] * 10) == [5000] + [100 * c for c in range(1, 10)]
    mnist_train = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert preset_counts("mnist_lt", mnist_train) == [5923] + [100 * c for c in range(1, 10)]


def test_step_counts_drop_one():
    assert long_tail_counts("step", [500] * 10, imbalance_factor=10) == [500] * 5 + [50] * 5
    assert long_tail_counts("step", [500] * 4, imbalance_factor=100, minority_fraction=0.25) == [500] * 3 + [5]
    assert long_tail_counts("counts", [10, 10, 10], counts=[10, 5, 1]) == [10, 5, 1]
    # BAGAN: class 2 keeps ceil(0.05 * largest other class)
    assert long_tail_counts("drop_one", [100, 90, 80], drop_class=2, drop_fraction=0.05) == [100, 90, 5]
    assert long_tail_counts("none", [3, 4]) == [3, 4]


def test_digits_lt_preset():
    data = load_data("digits_lt")
    assert data.train.counts() == [120, 92, 71, 55, 43, 33, 25, 20, 15, 12]
    assert data.test.counts() == [50] * 10  # balanced, untouched
    assert data.train.images.dtype == torch.uint8 and data.train.images.shape[1:] == (1, 8, 8)


def test_fashion_mnist_lt_real(fmnist_root):
    data = load_data("fashion_mnist_lt", root=fmnist_root)
    assert data.train.counts() == [6000, 100, 200, 300, 400, 500, 600, 700, 800, 900]
    assert data.test.counts() == [1000] * 10
    # "first" selection: class 1 keeps its first 100 images in dataset order
    from torchvision.datasets import FashionMNIST

    full = FashionMNIST(fmnist_root, train=True, download=False)
    first = np.flatnonzero(full.targets.numpy() == 1)[:100]
    assert set(first) <= set(data.manifest["kept_indices"])


def test_cli_info_fashion_mnist(fmnist_root, capsys):
    assert cli(["data", "info", "fashion_mnist_lt", "--root", fmnist_root]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.strip()[:1].isdigit()]
    assert [int(r[-2]) for r in rows] == [6000, 100, 200, 300, 400, 500, 600, 700, 800, 900]


# --- determinism and manifests ---------------------------------------------------------------------


def test_selection_determinism():
    labels = np.repeat(np.arange(4), 50)
    a = select_indices(labels, [50, 20, 10, 5], "shuffle", seed=3)
    b = select_indices(labels, [50, 20, 10, 5], "shuffle", seed=3)
    c = select_indices(labels, [50, 20, 10, 5], "shuffle", seed=4)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.bincount(labels[a]).tolist() == [50, 20, 10, 5]
    first = select_indices(labels, [50, 20, 10, 5], "first")
    assert first[50:70].tolist() == list(range(50, 70))


def test_shuffle_matches_ldam_recipe():
    # LDAM-DRW: np.random.seed(0); per class shuffle the class's indices, keep the first n
    labels = np.random.RandomState(1).randint(0, 3, 300)
    np.random.seed(0)
    expect = []
    for c, n in enumerate([40, 20, 5]):
        idx = np.where(labels == c)[0]
        np.random.shuffle(idx)
        expect.append(idx[:n])
    assert np.array_equal(select_indices(labels, [40, 20, 5], "shuffle", 0), np.sort(np.concatenate(expect)))


def test_manifest_round_trip(tmp_path):
    data = load_data("digits_lt", seed=5)
    save_manifest(data.manifest, tmp_path / "m.json")
    again = load_from_manifest(tmp_path / "m.json")
    assert torch.equal(again.train.images, data.train.images) and torch.equal(again.train.labels, data.train.labels)
    assert again.manifest["fingerprint"] == data.manifest["fingerprint"]
    assert load_data("digits_lt", seed=6).manifest["fingerprint"] != data.manifest["fingerprint"]
    tampered = dict(data.manifest, kept_indices=data.manifest["kept_indices"][1:])
    with pytest.raises(TailganError, match="manifest"):
        load_from_manifest(tampered)


# --- samplers ---------------------------------------------------------------------------------------


def test_balanced_stream_draws_every_class_at_one_over_k():
    # the stream the engine trains on: each class drawn with probability 1/K, whatever its count
    labels = torch.tensor([0] * 1000 + [1] * 10 + [2] * 100)
    s = BatchStream(labels, 64, balanced=True, seed=0)
    n = 64 * 500
    drawn = torch.cat([s.next() for _ in range(500)])
    freq = torch.bincount(labels[drawn], minlength=3).double() / n
    tol = 4 * (1 / 3 * 2 / 3 / n) ** 0.5  # 4 binomial standard deviations
    assert torch.allclose(freq, torch.full((3,), 1 / 3, dtype=torch.double), atol=tol), freq
    # the epoch stream draws classes at their frequencies instead
    plain = torch.cat([BatchStream(labels, 64, seed=0).next() for _ in range(1)])
    assert (labels[plain] == 0).float().mean() > 0.6


def test_balanced_stream_ranks_differ_and_repeat():
    labels = torch.arange(100) % 4
    r0 = BatchStream(labels, 50, balanced=True, seed=1, rank=0, world_size=2).next()
    r1 = BatchStream(labels, 50, balanced=True, seed=1, rank=1, world_size=2).next()
    assert not torch.equal(r0, r1)
    assert torch.equal(r0, BatchStream(labels, 50, balanced=True, seed=1, rank=0, world_size=2).next())


def test_batch_stream_drop_last_keeps_batches_inside_epochs():
    labels = torch.arange(10) % 2
    s = BatchStream(labels, 4, seed=0, drop_last=True)
    batches = [s.next() for _ in range(4)]  # 2 full batches per epoch of 10; 2 left over are skipped
    assert all(len(b) == 4 for b in batches)
    assert len(set(torch.cat(batches[:2]).tolist())) == 8 and len(set(torch.cat(batches[2:]).tolist())) == 8
    with pytest.raises(TailganError, match="larger than"):
        BatchStream(labels, 11, seed=0, drop_last=True).next()


@pytest.mark.parametrize("balanced", [False, True])
def test_batch_stream_resumes_exactly(balanced):
    labels = torch.arange(37) % 3
    a = BatchStream(labels, 8, balanced=balanced, seed=2)
    for _ in range(6):
        a.next()
    state = a.state_dict()
    expect = [a.next() for _ in range(5)]
    b = BatchStream(labels, 8, balanced=balanced, seed=2)
    b.load_state_dict(state)
    assert all(torch.equal(x, y) for x, y in zip(expect, [b.next() for _ in range(5)]))


def test_batch_stream_shards_epochs():
    labels = torch.zeros(20, dtype=torch.long)
    r0 = BatchStream(labels, 10, seed=0, rank=0, world_size=2).next()
    r1 = BatchStream(labels, 10, seed=0, rank=1, world_size=2).next()
    assert sorted(torch.cat([r0, r1]).tolist()) == list(range(20))


# --- transforms ---------------------------------------------------------------------------------------


def test_transforms():
    x = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    padded = fit_images(x, 32, 3, "pad")
    assert padded.shape == (2, 3, 32, 32) and torch.equal(padded[:, 0, 2:30, 2:30], x[:, 0])
    assert padded[:, :, :2].sum() == 0
    assert fit_images(x, 32, 1, "resize").shape == (2, 1, 32, 32)
    f = to_float(x)
    assert f.min() >= -1 and f.max() <= 1 and torch.equal(to_uint8(f), x)
    assert to_float(torch.tensor([0, 255], dtype=torch.uint8)).tolist() == [-1.0, 1.0]


# --- folders and export ---------------------------------------------------------------------------------


def test_export_then_folder_round_trip(tmp_path):
    data = load_data("digits_lt")
    out = tmp_path / "exported"
    assert cli(["data", "export", "digits_lt", str(out)]) == 0
    assert (out / "train" / "cls0" / "train0.png").is_file() and (out / "valid" / "cls9").is_dir()
    back = load_data("folder", root=str(out))
    # the folder is read class by class; put the original in the same order
    order = torch.argsort(data.train.labels, stable=True)
    assert torch.equal(back.train.labels, data.train.labels[order])
    assert torch.equal(back.train.images, data.train.images[order])
    assert back.test.counts() == [50] * 10 and back.classes == data.classes
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == data.train.counts()


def test_export_refuses_non_empty(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces only an earlier export, never a folder of the user's
        assert cli(["data", "export", "digits_lt", str(out), *extra]) == 2
        assert "files that tailgan did not write (precious.txt)" in capsys.readouterr().err
        assert (out / "precious.txt").read_text() == "keep me"
    export = tmp_path / "export"
    assert cli(["data", "export", "digits_lt", str(export)]) == 0
    assert cli(["data", "export", "digits_lt", str(export)]) == 2
    assert "already holds a dataset export" in capsys.readouterr().err
    assert cli(["data", "export", "digits_lt", str(export), "--overwrite"]) == 0 and (export / "train").is_dir()


def _write_mixed_folder(root):
    (root / "train" / "cats").mkdir(parents=True)
    (root / "train" / "dogs").mkdir(parents=True)
    Image.new("L", (20, 10), 100).save(root / "train" / "cats" / "a.png")
    Image.new("RGB", (7, 9), (255, 0, 0)).save(root / "train" / "cats" / "b.jpg")
    Image.new("RGBA", (16, 16), (0, 255, 0, 0)).save(root / "train" / "dogs" / "c.png")  # fully transparent
    pal = Image.new("P", (12, 12), 1)
    pal.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    pal.save(root / "train" / "dogs" / "d.gif")
    Image.fromarray(np.full((16, 16), 65535, dtype=np.uint16)).save(root / "train" / "dogs" / "e.png")
    (root / "train" / "dogs" / "notes.txt").write_text("not an image")


def test_mixed_mode_odd_size_folder(tmp_path):
    _write_mixed_folder(tmp_path)
    data = load_data("folder", root=str(tmp_path), resolution=16, channels=3, fit="resize")
    assert data.train.images.shape == (5, 3, 16, 16) and data.classes == ["cats", "dogs"]
    assert data.train.counts() == [2, 3]
    imgs = data.train.images
    assert imgs[0].float().std() == 0 and imgs[0, 0, 0, 0] == 100  # L replicated
    assert imgs[2].sum() == 0  # transparent -> black
    assert imgs[3, 2].min() == 255 and imgs[3, :2].max() == 0  # palette blue
    assert imgs[4].min() == 255  # 16-bit white -> 255
    gray = load_data("folder", root=str(tmp_path), resolution=8, channels=1, fit="crop")
    assert gray.train.images.shape == (5, 1, 8, 8)
    with pytest.raises(TailganError, match="resolution"):
        load_data("folder", root=str(tmp_path))  # different sizes, no resolution


def test_flat_folder_and_natural_class_order(tmp_path):
    for name in ["cls10", "cls2", "cls1"]:
        (tmp_path / name).mkdir()
        Image.new("L", (4, 4), int(name[3:])).save(tmp_path / name / "x.png")
    data = load_data("folder", root=str(tmp_path))
    assert data.classes == ["cls1", "cls2", "cls10"] and len(data.test) == 0
    assert data.train.images[:, 0, 0, 0].tolist() == [1, 2, 10]


def test_corrupt_image(tmp_path):
    (tmp_path / "a").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "a" / "ok.png")
    (tmp_path / "a" / "bad.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(TailganError, match="bad.png"):
        load_data("folder", root=str(tmp_path))
    with pytest.warns(UserWarning, match="skipped 1"):
        data = load_data("folder", root=str(tmp_path), skip_bad=True)
    assert len(data.train) == 1


# --- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "fashion_mnist_lt", "--root", "/nonexistent/x"], "/nonexistent/x"),
        (["data", "info", "no_such_set"], "unknown dataset 'no_such_set'"),
        (["data", "info", "digits_lt", "imbalance_factor=0.5"], "IF=0.5"),
        (["data", "info", "digits", "recipe=counts", "counts=[1,2,3]"], "3 values but the dataset has 10"),
        (["data", "info", "digits_lt", "n_max=1000"], "asks for 1000 images of class 0"),
        (["data", "info", "digits_lt", "colour=3"], "unknown config key 'data.colour'"),
        (["data", "info", "digits_lt", "resolution=big"], "data.resolution"),
    ],
)
def test_bad_input_is_one_line_error(args, message, capsys):
    assert cli(args) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and "Traceback" not in err


def test_empty_class_folder_and_missing_root(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    Image.new("L", (4, 4)).save(tmp_path / "a" / "x.png")
    with pytest.raises(TailganError, match="holds no images"):
        load_data("folder", root=str(tmp_path))
    with pytest.raises(TailganError, match="does not exist"):
        load_data("folder", root=str(tmp_path / "nope"))


def test_fashion_mnist_missing_names_folder_and_flag(tmp_path):
    with pytest.raises(TailganError) as e:
        load_data("fashion_mnist_lt", root=str(tmp_path))
    assert "FashionMNIST/raw" in str(e.value) and "--download" in str(e.value)


def test_config_types_and_overrides():
    d = apply_overrides({"source": "digits"}, ["resolution=32", "imbalance_factor=1e2", "counts=[1,2]"])
    cfg = from_dict(DataConfig, d)
    assert cfg.resolution == 32 and cfg.imbalance_factor == 100.0 and cfg.counts == [1, 2]
    with pytest.raises(TailganError, match="data.seed"):
        from_dict(DataConfig, {"seed": "x"}, prefix="data.")


def test_data_info_plot(tmp_path):
    assert (
        cli(
            [
                "data",
                "info",
                "digits_lt",
                "--plot",
                str(tmp_path / "h.png"),
                "--log",
                "--manifest",
                str(tmp_path / "m.json"),
            ]
        )
        == 0
    )
    assert Image.open(tmp_path / "h.png").size[0] > 100
    assert json.loads((tmp_path / "m.json").read_text())["counts"][0] == 120


def test_imageset_validates():
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2), ["a"])


def test_places_lt_lists(tmp_path):
    # a miniature Places-LT: OLTR list files with "relative/path label" lines
    lines = {"train": [], "test": []}
    for split, per_class in (("train", [5, 2, 1]), ("test", [2, 2, 2])):
        for y, (name, n) in enumerate(zip(["abbey", "bakery", "canyon"], per_class)):
            folder = tmp_path / "data_256" / name[0] / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                Image.new("RGB", (24, 20), (10 * y, 0, 0)).save(folder / f"{split}{i}.jpg")
                lines[split].append(f"/data_256/{name[0]}/{name}/{split}{i}.jpg {y}")
    (tmp_path / "Places_LT_train.txt").write_text("\n".join(lines["train"]) + "\n")
    (tmp_path / "Places_LT_test.txt").write_text("\n".join(lines["test"]) + "\n")
    data = load_data("places_lt", root=str(tmp_path), resolution=16)
    assert data.train.counts() == [5, 2, 1] and data.test.counts() == [2, 2, 2]
    assert data.classes == ["abbey", "bakery", "canyon"] and data.train.images.shape[1:] == (3, 16, 16)
    (tmp_path / "Places_LT_test.txt").write_text("data_256/missing.jpg 0\n")
    with pytest.raises(TailganError, match="missing.jpg"):
        load_data("places_lt", root=str(tmp_path), resolution=16)
