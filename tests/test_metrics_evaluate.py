"""evaluate() end to end with tiny extractors and generators; the Inception path; the evaluator cache; the CLI."""

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

from tailgan.cli import main as cli
from tailgan.data import DataConfig, ImageSet, load_data, to_float
from tailgan.errors import TailganError
from tailgan.metrics import (
    EvaluatorConfig,
    FeatureExtractor,
    InceptionExtractor,
    compare_images,
    evaluate,
    evaluator_folder,
    extract,
    format_table,
    get_evaluator,
    inception_weights_path,
    load_evaluator,
    stats,
    train_evaluator,
)
from tailgan.metrics import evaluator as evaluator_module


class PooledPixels(FeatureExtractor):
    """Tiny extractor: 4x4 average-pooled pixels (16-d); logits = -squared distance to each class mean."""

    def __init__(self, class_means):
        super().__init__("pooled-pixels", "pooled-pixels-test", 16)
        self.register_buffer("means", class_means)
        self.images_seen = 0

    @staticmethod
    def pool(images):
        return F.adaptive_avg_pool2d(images.float() / 255.0, 4).flatten(1)

    def forward(self, images):
        self.images_seen += len(images)
        f = self.pool(images)
        return f, -(torch.cdist(f, self.means) ** 2)


class ReplayGenerator:
    """Returns real images of the asked classes, so a perfect generator; ``swap`` draws class a as class b."""

    def __init__(self, images, swap=None, noise=False):
        self.images, self.swap, self.noise = images, swap or {}, noise
        self.num_classes = images.num_classes
        self.by_class = [(images.labels == c).nonzero().flatten() for c in range(images.num_classes)]
        self.calls = 0

    def sample(self, labels, seed=None, batch_size=256):
        self.calls += 1
        g = torch.Generator().manual_seed(seed)
        idx = [self.by_class[self.swap.get(y, y)] for y in labels.tolist()]
        picks = torch.stack([i[torch.randint(len(i), (1,), generator=g)][0] for i in idx])
        x = to_float(self.images.images[picks])
        return torch.rand(x.shape, generator=g) * 2 - 1 if self.noise else x


@pytest.fixture(scope="module")
def digits():
    return load_data("digits_lt")


@pytest.fixture
def pooled(digits):
    f = PooledPixels.pool(digits.train.images)
    means = torch.stack([f[digits.train.labels == c].mean(0) for c in range(digits.num_classes)])
    return PooledPixels(means)


def test_evaluate_train_lt_protocol_end_to_end(digits, pooled, tmp_path):
    result = evaluate(
        ReplayGenerator(digits.train),
        digits,
        metrics="all",
        ref="train-lt",
        extractor=pooled,
        classifier=pooled,
        cache_dir=tmp_path,
        msssim_pairs=5,
    )
    json.dumps(result, allow_nan=False)  # every figure is JSON-safe
    assert result["ref"] == "train-lt" and result["extractor"] == "pooled-pixels"
    assert result["num_real"] == result["num_fake"] == len(digits.train) == 486
    counts = digits.train.counts()
    assert [r["num_fake"] for r in result["per_class"]] == counts == [r["num_real"] for r in result["per_class"]]
    overall = result["overall"]
    for key in (
        "fid",
        "kid",
        "is",
        "is_std",
        "precision",
        "recall",
        "density",
        "coverage",
        "ifid",
        "msssim",
        "msssim_real",
        "labelacc",
        "labelacc_real",
    ):
        assert overall[key] is not None, key
    # fewer images than a KID subset: every subset is the whole set, so there is no spread to report
    assert overall["kid_std"] is None
    fids = [r["fid"] for r in result["per_class"]]
    assert overall["ifid"] == pytest.approx(sum(fids) / len(fids))
    # replayed training images: the label accuracy is the classifier's own accuracy on those classes
    assert overall["labelacc"] == pytest.approx(overall["labelacc_real"], abs=0.08) and overall["labelacc"] > 0.7
    # classes 7-9 have 20, 15 and 12 images, fewer than the 16 feature dimensions: their FID is flagged
    (fid_warning,) = [w for w in result["warnings"] if w.startswith("FID from fewer")]
    assert "9 (9): 12/12" in fid_warning and "7 (7): 20/20" not in fid_warning and "0 (0)" not in fid_warning
    table = format_table(result)
    assert "9 9" in table and "all" in table and "ifid" in table


def test_evaluate_test_protocol_ranks_generators_and_finds_a_wrong_class(digits, pooled, tmp_path):
    kw = dict(
        metrics="fid,kid,prdc,labelacc", ref="test", n=300, extractor=pooled, classifier=pooled, cache_dir=tmp_path
    )
    good = evaluate(ReplayGenerator(digits.train), digits, **kw)
    noise = evaluate(ReplayGenerator(digits.train, noise=True), digits, **kw)
    swapped = evaluate(ReplayGenerator(digits.train, swap={3: 5}), digits, **kw)
    assert [r["num_fake"] for r in good["per_class"]] == [30] * 10 and good["num_real"] == 500
    assert good["overall"]["fid"] < noise["overall"]["fid"] and good["overall"]["kid"] < noise["overall"]["kid"]
    assert good["overall"]["precision"] > 0.8 and noise["overall"]["precision"] < 0.1
    bad_row, good_row = swapped["per_class"][3], good["per_class"][3]
    assert bad_row["labelacc"] < 0.2 < 0.8 < good_row["labelacc"]
    assert bad_row["kid"] > 5 * good_row["kid"] and bad_row["fid"] > good_row["fid"]
    # class 5 is still drawn as class 5
    assert swapped["per_class"][5]["labelacc"] == pytest.approx(good["per_class"][5]["labelacc"], abs=0.15)


def test_reference_features_are_cached_and_results_reproducible(digits, pooled, tmp_path):
    gen = ReplayGenerator(digits.train)
    first = evaluate(gen, digits, metrics="fid,kid", ref="test", n=100, extractor=pooled, cache_dir=tmp_path)
    assert pooled.images_seen == 500 + 100
    assert len(list((tmp_path / "refs").glob("*.pt"))) == 1
    second = evaluate(gen, digits, metrics="fid,kid", ref="test", n=100, extractor=pooled, cache_dir=tmp_path)
    assert pooled.images_seen == 600 + 100  # only the fakes this time
    assert first["overall"] == second["overall"]
    other_seed = evaluate(gen, digits, metrics="fid", ref="test", n=100, extractor=pooled, cache_dir=tmp_path, seed=1)
    assert other_seed["overall"]["fid"] != first["overall"]["fid"]


def test_evaluate_rejects_bad_input_before_generating(digits, pooled, tmp_path):
    gen = ReplayGenerator(digits.train)
    kw = dict(extractor=pooled, cache_dir=tmp_path)
    with pytest.raises(TailganError, match="unknown metric 'fdi'"):
        evaluate(gen, digits, metrics="fid,fdi", **kw)
    with pytest.raises(TailganError, match="unknown reference"):
        evaluate(gen, digits, ref="train", **kw)
    with pytest.raises(TailganError, match="n >= 10"):
        evaluate(gen, digits, metrics="fid", n=5, **kw)
    gen.num_classes = 7
    with pytest.raises(TailganError, match="7 classes"):
        evaluate(gen, digits, metrics="fid", **kw)
    assert gen.calls == 0
    big = load_data("digits_lt", resolution=16)
    with pytest.raises(TailganError, match="generator makes"):
        evaluate(ReplayGenerator(digits.train), big, metrics="fid", extractor=pooled, cache_dir=tmp_path)


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory):
    """A randomly initialised FID-Inception state dict (torchvision's Inception3 with 1008 classes has its keys)."""
    torch.manual_seed(0)
    net = torchvision.models.inception_v3(weights=None, aux_logits=False, num_classes=1008, init_weights=False)
    path = tmp_path_factory.mktemp("inception") / "inception.pth"
    torch.save(net.state_dict(), path)
    return path


def test_inception_from_a_local_state_dict(inception_file):
    ext = InceptionExtractor(inception_file)
    assert ext.name == "inception" and ext.feature_dim == 2048 and ext.key.startswith("inception-")
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    feats, logits = extract(ext, gray)
    assert feats.shape == (2, 2048) and logits.shape == (2, 1008) and torch.isfinite(feats).all()
    # grayscale is the same image replicated to RGB
    rgb_feats, _ = extract(ext, gray.repeat(1, 3, 1, 1))
    assert torch.allclose(feats, rgb_feats)
    # the same figures as with the evaluator, from Inception features (three images a side keep it quick)
    real = ImageSet(torch.cat([gray, gray[:1]]), torch.zeros(3, dtype=torch.long), ["a"])
    fake = ImageSet(255 - real.images, torch.zeros(3, dtype=torch.long), ["a"])
    result = compare_images(real, fake, metrics="fid,kid,is", extractor=ext, is_splits=1)
    assert result["extractor"] == "inception" and result["extractor_info"]["weights"] == str(inception_file)
    expected_fid = stats.fid(extract(ext, real.images)[0], extract(ext, fake.images)[0])
    assert result["overall"]["fid"] == pytest.approx(expected_fid, abs=1e-9) and result["overall"]["is"] >= 0.999
    assert "2048 feature dimensions" in result["warnings"][0]


def test_missing_inception_weights_name_the_file_and_the_flag(digits, monkeypatch, tmp_path, inception_file):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "weights-inception-2015-12-05-6726825d.pth"
    with pytest.raises(TailganError, match="--inception-weights") as err:
        inception_weights_path()
    assert str(expected) in str(err.value)
    with pytest.raises(TailganError, match="nowhere.pth do not exist"):
        inception_weights_path(tmp_path / "nowhere.pth")
    gen = ReplayGenerator(digits.train)
    with pytest.raises(TailganError, match="weights-inception-2015-12-05-6726825d.pth"):
        evaluate(gen, digits, metrics="fid", extractor="inception", cache_dir=tmp_path)
    assert gen.calls == 0  # no work before the error
    # pytorch-fid's name for the same weights in the hub cache is found too
    expected.parent.mkdir(parents=True)
    (expected.parent / "pt_inception-2015-12-05-6726825d.pth").symlink_to(inception_file)
    assert inception_weights_path().name == "pt_inception-2015-12-05-6726825d.pth"


def test_a_foreign_state_dict_is_not_taken_for_inception(tmp_path):
    path = tmp_path / "small.pth"
    torch.save(torch.nn.Linear(2, 2).state_dict(), path)
    with pytest.raises(TailganError, match="not the FID Inception-v3 state dict"):
        InceptionExtractor(path)


def test_evaluator_trains_caches_and_reloads(tmp_path, monkeypatch):
    data = load_data(DataConfig(source="digits", recipe="none"))
    cfg = EvaluatorConfig(epochs=4, width=8, feature_dim=16, batch_size=32)
    ev = train_evaluator(data, cfg, cache_dir=tmp_path, log=None)
    folder = evaluator_folder(data.config, cfg, cache_dir=tmp_path)
    meta = json.loads((folder / "evaluator.json").read_text())
    assert ev.info["test_accuracy"] == meta["test_accuracy"] > 0.6
    assert meta["test_images"] == 500 and len(meta["test_accuracy_per_class"]) == 10
    assert sorted(p.name for p in folder.iterdir()) == ["evaluator.json", "model.pt"]  # no temp files left
    # any recipe of the same source finds it; it computes what the trained one computed
    loaded = load_evaluator(DataConfig(source="digits", recipe="exp", imbalance_factor=10.0), cfg, cache_dir=tmp_path)
    images = data.test.images[:20]
    assert all(torch.allclose(a, b) for a, b in zip(extract(ev, images), extract(loaded, images)))
    monkeypatch.setattr(evaluator_module, "train_evaluator", lambda *a, **k: pytest.fail("retrained"))
    assert get_evaluator(data.config, cfg, cache_dir=tmp_path).key == ev.key
    with pytest.raises(TailganError, match="tailgan evaluator train digits --resolution 16"):
        load_evaluator(DataConfig(source="digits", resolution=16), cfg, cache_dir=tmp_path)
    with pytest.raises(TailganError, match="full, balanced split"):
        train_evaluator(load_data("digits_lt"), cfg, cache_dir=tmp_path, log=None)


def _write_folder(root, image_set, per_class):
    for c in range(image_set.num_classes):
        (root / f"cls{c}").mkdir(parents=True)
        for i, img in enumerate(image_set.images[image_set.labels == c][:per_class]):
            Image.fromarray(img[0].numpy()).save(root / f"cls{c}" / f"{i}.png")


def test_cli_trains_the_evaluator_and_evaluates_a_run_and_two_folders(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TAILGAN_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    tiny = [
        "optim.batch_size=8",
        "optim.d_steps=1",
        "model.conv_dim=8",
        "model.embed_dim=16",
        "model.shared_dim=8",
        "sample_every=0",
        "log_every=1",
    ]
    assert (
        cli(["train", "--method", "ecogan-dcgan", "--data", "digits_lt", "--steps", "1", "--out", str(run), *tiny]) == 0
    )
    capsys.readouterr()
    # a short training (the default is 10 epochs) for the run's pixels, asked for by the run itself
    assert cli(["evaluator", "train", "--for", str(run), "--epochs", "2"]) == 0
    out = capsys.readouterr().out
    folder = evaluator_folder(DataConfig(source="digits", resolution=32), EvaluatorConfig(epochs=2))
    assert "test accuracy" in out and f"--evaluator {folder}" in out
    # `tailgan eval RUN` finds it although it is not the default training ...
    assert cli(["eval", str(run), "--metrics", "fid", "--n", "100"]) == 0
    assert f"using the evaluator in {folder}" in capsys.readouterr().out
    # ... and code asking for the default one is told the exact flag
    with pytest.raises(TailganError, match=f"--evaluator {folder}"):
        load_evaluator(DataConfig(source="digits", resolution=32))
    for ref in ("test", "train-lt"):
        assert (
            cli(
                [
                    "eval",
                    str(run),
                    "--evaluator",
                    str(folder),
                    "--metrics",
                    "fid,kid,labelacc",
                    "--ref",
                    ref,
                    "--n",
                    "200",
                ]
            )
            == 0
        )
        out = capsys.readouterr().out
        assert f"ref {ref}" in out and "labelacc" in out
    doc = json.loads((run / "eval" / "1.json").read_text())
    assert doc["step"] == 1 and sorted(doc["results"]) == ["test/evaluator", "train-lt/evaluator"]
    test_result = doc["results"]["test/evaluator"]
    assert test_result["num_fake"] == 200 and len(test_result["per_class"]) == 10
    assert test_result["extractor_info"]["path"] == str(folder) and "torch" in test_result["versions"]

    data = load_data("digits")
    _write_folder(tmp_path / "real", data.test, 20)
    _write_folder(tmp_path / "fake", data.train, 20)
    assert (
        cli(
            [
                "eval",
                "--real",
                str(tmp_path / "real"),
                "--fake",
                str(tmp_path / "fake"),
                "--evaluator",
                str(folder),
                "--resolution",
                "32",
                "--metrics",
                "kid,labelacc",
                "--out",
                str(tmp_path / "f.json"),
            ]
        )
        == 0
    )
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["num_real"] == result["num_fake"] == 200 and result["overall"]["labelacc"] is not None
    assert result["per_class"][0]["num_fake"] == 20
    assert cli(["eval", "--real", str(tmp_path / "real")]) == 2


def test_eval_of_a_run_trains_the_evaluator_at_its_pixels_on_first_use(tmp_path, monkeypatch, capsys):
    # a newcomer's order: train a 32 px run, then `tailgan eval RUN` with nothing cached
    monkeypatch.setenv("TAILGAN_CACHE", str(tmp_path / "cache"))
    run = tmp_path / "run"
    tiny = ["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8", "model.embed_dim=16", "sample_every=0"]
    assert cli(["train", "--method", "ecogan-dcgan", "--steps", "1", "--out", str(run), *tiny]) == 0
    assert cli(["eval", str(run), "--metrics", "fid,labelacc", "--n", "100"]) == 0
    out = capsys.readouterr().out
    assert "training it once" in out and "labelacc" in out
    folder = evaluator_folder(DataConfig(source="digits", resolution=32))
    assert (folder / "evaluator.json").is_file()


def test_an_evaluator_trained_on_long_tailed_images_says_so_once_and_in_every_result(tmp_path):
    """A folder without a balanced training split: the evaluator learns from its long-tailed images (issue 28)."""
    from tailgan.data import export_image_sets
    from tailgan.metrics.evaluate import result_document

    digits = load_data("digits_lt")  # 120 down to 12 training images per class, a balanced test split
    root = export_image_sets({"train": digits.train, "test": digits.test}, tmp_path / "folder", {"source": "t"})
    data = load_data(DataConfig(source="folder", root=str(root), recipe="none"))
    lines = []
    cfg = EvaluatorConfig(epochs=1, width=8, feature_dim=16, batch_size=32)
    ev = train_evaluator(data, cfg, cache_dir=tmp_path / "cache", log=lines.append)
    notes = [line for line in lines if "not balanced" in line]
    assert len(notes) == 1 and "(120 down to 12 per class)" in notes[0]
    assert ev.info["train_balanced"] is False
    doc = result_document(["fid"], ev, None, [0] * 5, [0] * 5, 0, {}, {"warnings": []}, 0.0)
    assert any("long-tailed training images" in w for w in doc["warnings"])
    balanced = train_evaluator(
        load_data(DataConfig(source="digits", recipe="none")), cfg, cache_dir=tmp_path / "cache", log=lines.append
    )
    assert balanced.info["train_balanced"] is True and sum("not balanced" in line for line in lines) == 1
    assert result_document(["fid"], balanced, None, [0], [0], 0, {}, {"warnings": []}, 0.0)["warnings"] == []
