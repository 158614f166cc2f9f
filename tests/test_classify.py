"""Strategies, metrics, classifiers, the training protocol and the CLI of tailgan.classify, and tailgan augment."""

import argparse
import json
import math
import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    recall_score,
    roc_auc_score,
)

from tailgan import augment as augment_command
from tailgan import classify_cli
from tailgan.augment import augment_folder
from tailgan.classify.strategies import (
    CLASSICAL_STRATEGIES,
    parse_strategy,
    resample_indices,
    smote_images,
    synthetic_counts,
    threshold_shift,
)
from tailgan.classify.train import ClassifyConfig, split_validation, tail_classes, train_and_score
from tailgan.cli import build_parser, parse_args
from tailgan.data import load_data
from tailgan.data.folder import read_augment_manifest, read_images
from tailgan.errors import TailganError
from tailgan.nets.classifiers import NormedLinear, build_classifier, init_prior_bias
from tailgan.scores import classification_metrics


class FakeGenerator:
    """A stand-in that follows the ``tailgan.load_generator`` contract: class c -> an image of grey level c."""

    def __init__(self, num_classes=10, img_channels=1, img_size=8):
        self.num_classes, self.img_channels, self.img_size = num_classes, img_channels, img_size
        self.run_dir, self.step, self.data_config = "fake-run", 7, None
        self.calls = []

    def level(self, c):
        return c / (self.num_classes - 1) * 2 - 1  # in [-1, 1]

    def sample(self, labels, seed=None, batch_size=256):
        self.calls.append((len(labels), seed))
        base = (labels.float() / (self.num_classes - 1) * 2 - 1).view(-1, 1, 1, 1)
        return base.expand(-1, self.img_channels, self.img_size, self.img_size).clone()


@pytest.fixture(scope="module")
def digits():
    return load_data("digits_lt")


# --- strategies -------------------------------------------------------------------------------------------


def _labels(counts):
    return np.repeat(np.arange(len(counts)), counts)


def test_random_samplers_give_the_stated_counts():
    counts = [50, 20, 5]
    y = _labels(counts)
    idx = resample_indices(y, "os", random_state=0)
    assert np.bincount(y[idx]).tolist() == [50, 50, 50]
    assert set(range(len(y))) <= set(idx.tolist())  # over-sampling keeps every original
    idx = resample_indices(y, "us", random_state=0)
    assert np.bincount(y[idx]).tolist() == [5, 5, 5]
    assert len(set(idx.tolist())) == len(idx)  # under-sampling draws without replacement
    # half-way targets: geometric mean of n_c and the balanced count
    idx = resample_indices(y, "os-half", random_state=0)
    assert np.bincount(y[idx]).tolist() == [50, round(math.sqrt(20 * 50)), round(math.sqrt(5 * 50))]
    idx = resample_indices(y, "us-half", random_state=0)
    assert np.bincount(y[idx]).tolist() == [round(math.sqrt(50 * 5)), round(math.sqrt(20 * 5)), 5]
    # seeded
    assert (resample_indices(y, "os", 3) == resample_indices(y, "os", 3)).all()
    assert not (resample_indices(y, "os", 3) == resample_indices(y, "os", 4)).all()


def test_smote_balances_uint8_images_by_interpolation():
    g = torch.Generator().manual_seed(0)
    counts = [30, 10, 6]
    y = torch.from_numpy(_labels(counts))
    images = torch.randint(0, 256, (len(y), 1, 4, 4), generator=g, dtype=torch.uint8)
    out, out_y = smote_images(images, y, k_neighbors=5, random_state=0)
    assert out.dtype == torch.uint8 and out.shape[1:] == (1, 4, 4)
    assert torch.bincount(out_y).tolist() == [30, 30, 30]
    assert torch.equal(out[: len(y)], images) and torch.equal(out_y[: len(y)], y)
    # a SMOTE sample lies between two images of its class: inside the class's pixel-wise range
    for c in (1, 2):
        real = images[y == c].int()
        new = out[len(y) :][out_y[len(y) :] == c].int()
        assert (new >= real.min(0).values).all() and (new <= real.max(0).values).all()


def test_smote_lowers_k_for_small_classes_and_rejects_singletons():
    y = torch.from_numpy(_labels([20, 3]))
    images = torch.randint(0, 256, (len(y), 1, 2, 2), dtype=torch.uint8)
    with pytest.warns(UserWarning, match="k_neighbors=2"):
        _, out_y = smote_images(images, y, k_neighbors=5)
    assert torch.bincount(out_y).tolist() == [20, 20]
    y = torch.from_numpy(_labels([20, 1]))
    with pytest.raises(TailganError, match="class 1: it has 1 image"):
        smote_images(torch.zeros(21, 1, 2, 2, dtype=torch.uint8), y)


def test_threshold_shift_follows_the_priors():
    probs = torch.tensor([[0.6, 0.4], [0.95, 0.05]])
    priors = torch.tensor([0.9, 0.1])
    shifted = threshold_shift(probs, priors)
    # 0.6/0.9 vs 0.4/0.1 -> class 1;  0.95/0.9 vs 0.05/0.1 -> still class 0
    a = torch.tensor([0.6 / 0.9, 0.4 / 0.1])
    b = torch.tensor([0.95 / 0.9, 0.05 / 0.1])
    assert torch.allclose(shifted, torch.stack([a / a.sum(), b / b.sum()]))
    assert shifted.argmax(1).tolist() == [1, 0] and probs.argmax(1).tolist() == [0, 0]
    assert torch.allclose(threshold_shift(probs, torch.tensor([0.5, 0.5])), probs)


def test_parse_strategy_and_synthetic_counts():
    s = parse_strategy("cbl-focal:0.99")
    assert (s.loss, s.cb_loss_type, s.beta, s.output) == ("cbl", "focal", 0.99, "sigmoid")
    assert parse_strategy("cbl", beta=0.9).beta == 0.9
    assert parse_strategy("us+cs").sampler == "us-half" and parse_strategy("us+cs").loss == "cs"
    assert parse_strategy("ts").threshold_shift and parse_strategy("gan").synthetic == "gan"
    with pytest.raises(TailganError, match="unknown strategy"):
        parse_strategy("bagan")
    with pytest.raises(TailganError, match="beta"):
        parse_strategy("cbl:1.5")
    assert synthetic_counts([100, 30, 5], "fill") == [0, 70, 95]
    assert synthetic_counts([100, 30, 5], "ratio:0.5") == [0, 20, 45]
    with pytest.raises(TailganError, match="ratio"):
        synthetic_counts([100, 5], "ratio:x")


# --- metrics ----------------------------------------------------------------------------------------------


def test_metrics_equal_scikit_learn_and_acsa_by_hand():
    y_true = [0, 0, 0, 0, 1, 1, 2, 2, 2, 2]
    y_pred = [0, 0, 1, 0, 1, 0, 2, 2, 1, 0]
    rng = np.random.default_rng(0)
    probs = rng.random((10, 3))
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(torch.tensor(y_true), torch.tensor(y_pred), torch.from_numpy(probs), 3)
    # ACSA by hand: class 0 3/4, class 1 1/2, class 2 2/4
    assert m["acsa"] == pytest.approx((3 / 4 + 1 / 2 + 2 / 4) / 3)
    assert m["acsa"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert m["accuracy"] == pytest.approx(accuracy_score(y_true, y_pred))
    assert m["macro_f1"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert m["f1_per_class"] == pytest.approx(f1_score(y_true, y_pred, average=None).tolist())
    assert m["recall_per_class"] == pytest.approx(recall_score(y_true, y_pred, average=None).tolist())
    assert m["auc_ovr_macro"] == pytest.approx(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
    assert m["confusion_matrix"] == confusion_matrix(y_true, y_pred).tolist()
    assert "minority_f1" not in m
    json.dumps(m)


def test_binary_metrics_report_minority_f1():
    y_true = [0, 0, 0, 0, 0, 1, 1, 1]
    y_pred = [0, 0, 0, 1, 0, 1, 0, 1]
    p1 = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.9, 0.45, 0.7])
    probs = np.stack([1 - p1, p1], 1)
    m = classification_metrics(y_true, y_pred, probs, 2, minority_class=1)
    assert m["minority_f1"] == pytest.approx(f1_score(y_true, y_pred, pos_label=1))
    assert m["minority_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1 + 1))  # tp 2, fp 1, fn 1
    assert m["auc_ovr_macro"] == pytest.approx(roc_auc_score(y_true, p1))
    # a class missing from y_true leaves the AUC undefined, not an exception
    assert classification_metrics([0, 0], [0, 1], np.array([[0.7, 0.3], [0.4, 0.6]]), 2, 1)["auc_ovr_macro"] is None


# --- classifiers ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["lenet5", "resnet32", "resnet18"])
@pytest.mark.parametrize("channels,size", [(1, 8), (3, 32)])
def test_classifiers_shapes(arch, channels, size):
    model = build_classifier(arch, 7, channels).eval()
    with torch.no_grad():
        assert model(torch.zeros(2, channels, size, size)).shape == (2, 7)


def test_resnet32_size_and_heads():
    n = sum(p.numel() for p in build_classifier("resnet32", 10, 3).parameters())
    assert 0.45e6 < n < 0.48e6  # the 0.46 M of He et al.
    model = build_classifier("lenet5", 10, 1, cosine_head=True)
    assert isinstance(model.fc, NormedLinear)
    with torch.no_grad():
        assert model(torch.randn(4, 1, 28, 28)).abs().max() <= 1.0 + 1e-6
    model = build_classifier("lenet5", 10, 1)
    init_prior_bias(model.fc, 10)
    assert torch.allclose(model.fc.bias, torch.full((10,), -math.log(9)))
    with pytest.raises(ValueError, match="in_channels"):
        build_classifier("lenet5", 10, 2)


# --- protocol ---------------------------------------------------------------------------------------------


def test_validation_split_is_stratified_disjoint_and_seeded():
    y = torch.from_numpy(_labels([100, 20, 3, 1]))
    tr, va = split_validation(y, 0.1, seed=0)
    assert np.bincount(y[va].numpy(), minlength=4).tolist() == [10, 2, 1, 0]
    assert set(tr) | set(va) == set(range(len(y))) and not set(tr) & set(va)
    assert (split_validation(y, 0.1, 0)[1] == va).all()
    assert not (split_validation(y, 0.1, 1)[1] == va).all()
    assert tail_classes([100, 20, 3, 20]) == [2, 1, 3]


@pytest.mark.parametrize("strategy", CLASSICAL_STRATEGIES)
def test_each_strategy_trains_end_to_end(digits, strategy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # SMOTE lowering k on the 12-image class
        r = train_and_score(digits, strategy, seed=0, steps=3, batch_size=32, evals=1)
    assert 0.0 <= r["acsa"] <= 1.0 and len(r["recall_per_class"]) == 10
    assert r["steps"] == 3 and r["selected_step"] == 3
    real = digits.train.counts()
    assert [a + b for a, b in zip(r["real_counts"], r["valid_counts"])] == real
    assert min(r["valid_counts"]) >= 1
    assert sum(sum(row) for row in r["confusion_matrix"]) == len(digits.test)
    expect = {"os": max(r["real_counts"]), "smote": max(r["real_counts"]), "us": min(r["real_counts"])}
    if strategy in expect:
        assert r["train_counts"] == [expect[strategy]] * 10
    elif strategy in ("us+cs", "os+cs"):
        assert r["train_counts"] != r["real_counts"]
    else:
        assert r["train_counts"] == r["real_counts"]
    json.dumps(r)


def test_training_is_seeded(digits):
    a = train_and_score(digits, "vanilla", seed=1, steps=4, batch_size=32, evals=2)
    b = train_and_score(digits, "vanilla", seed=1, steps=4, batch_size=32, evals=2)
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["history"] == b["history"]


def test_gan_strategy_fills_classes_with_generated_images(digits):
    gen = FakeGenerator()
    r = train_and_score(digits, "gan", seed=2, steps=2, batch_size=32, evals=1, generator=gen, guard=False)
    top = max(r["real_counts"])
    assert r["synthetic_counts"] == [top - n for n in r["real_counts"]]
    assert r["train_counts"] == [top] * 10
    assert gen.calls == [(sum(r["synthetic_counts"]), 2)]
    r = train_and_score(
        digits, "gan", seed=0, steps=2, batch_size=32, evals=1, generator=gen, synthetic="ratio:0.5", guard=False
    )
    assert r["train_counts"] == [max(n, math.ceil(0.5 * top)) for n in r["real_counts"]]
    with pytest.raises(TailganError, match="generator has 3 classes"):
        train_and_score(digits, "gan", steps=1, generator=FakeGenerator(num_classes=3))
    with pytest.raises(TailganError, match="--generator"):
        train_and_score(digits, "gan", steps=1)


def test_augment_writes_a_balanced_folder_and_folder_strategy_reads_only_synthetic(digits, tmp_path):
    gen = FakeGenerator()
    out = tmp_path / "aug"
    manifest = augment_folder(gen, digits, out, seed=0)
    real = digits.train.counts()
    assert manifest["synthetic_counts"] == [max(real) - n for n in real]
    syn = [f for f in manifest["files"] if f["synthetic"]]
    assert len(syn) == sum(manifest["synthetic_counts"])
    assert all(f["path"].startswith("train/") and "/syn" in f["path"] for f in syn)
    assert read_augment_manifest(out)["tool"] == "tailgan augment"
    # read back through the folder data source: balanced training split, real test split, class names kept
    back = load_data("folder", root=str(out))
    assert back.train.counts() == [max(real)] * 10 and back.test.counts() == digits.test.counts()
    assert back.classes == digits.classes
    # refuses a non-empty folder, replaces it with overwrite, never writes into a protected folder
    with pytest.raises(TailganError, match="already holds"):
        augment_folder(gen, digits, out)
    augment_folder(gen, digits, out, synthetic="ratio:0.5", overwrite=True)
    assert read_augment_manifest(out)["synthetic"] == "ratio:0.5"
    with pytest.raises(TailganError, match="overlaps"):
        augment_folder(gen, digits, tmp_path / "run" / "aug", protected=[tmp_path / "run"])
    # folder strategy: only the synthetic files are added (the real ones would leak validation images)
    r = train_and_score(digits, "folder", seed=0, steps=2, batch_size=32, evals=1, synthetic_dir=out, guard=False)
    ratio = read_augment_manifest(out)["synthetic_counts"]
    assert r["synthetic_counts"] == ratio
    assert [a - b for a, b in zip(r["train_counts"], r["real_counts"])] == ratio


def test_folder_strategy_reads_a_plain_class_folder(digits, tmp_path):
    from PIL import Image

    for name, value in (("3", 30), ("9", 90)):
        (tmp_path / name).mkdir()
        for i in range(4):
            Image.fromarray(np.full((8, 8), value, dtype=np.uint8)).save(tmp_path / name / f"{i}.png")
    r = train_and_score(digits, "folder", steps=1, batch_size=32, evals=1, synthetic_dir=tmp_path, guard=False)
    assert r["synthetic_counts"] == [0, 0, 0, 4, 0, 0, 0, 0, 0, 4]
    (tmp_path / "cat").mkdir()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "cat" / "0.png")
    with pytest.raises(TailganError, match="'cat'"):
        train_and_score(digits, "folder", steps=1, synthetic_dir=tmp_path, guard=False)


# --- command line -----------------------------------------------------------------------------------------


def _run(argv):
    parser = argparse.ArgumentParser()
    classify_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def _augment(argv):
    """``tailgan augment ARGV`` (its arguments are defined in tailgan.cli), TailganError raised, not printed."""
    args = parse_args(build_parser("augment"), ["augment", *argv])
    return args.func(args)


def test_cli_classify_and_bench(tmp_path, capsys):
    out = tmp_path / "one"
    common = ["--data", "digits_lt", "--seeds", "2", "--steps", "2", "--batch-size", "32"]
    assert _run(["classify", "--strategy", "cs", *common, "--out", str(out)]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [0, 1]
    accs = [r["acsa"] for r in doc["runs"]]
    assert doc["summary"]["acsa"]["mean"] == pytest.approx(np.mean(accs))
    assert doc["summary"]["acsa"]["std"] == pytest.approx(np.std(accs, ddof=1))
    assert (out / "confusion.png").stat().st_size > 1000
    with pytest.raises(TailganError, match="already holds"):
        _run(["classify", "--strategy", "cs", *common, "--out", str(out)])

    bench = tmp_path / "bench"
    assert _run(["bench", "classify", "--strategies", "vanilla,cbl:0.99", *common, "--out", str(bench)]) == 0
    table = (bench / "bench.md").read_text()
    assert "| vanilla |" in table and "| cbl:0.99 |" in table and " ± " in table and "Best ACSA" in table
    doc = json.loads((bench / "bench.json").read_text())
    assert [r["strategy"] for r in doc["results"]] == ["vanilla", "cbl:0.99"]
    assert doc["machine"]["nproc"] >= 1 and (bench / "bench_recall.png").is_file()
    with pytest.raises(TailganError, match="unknown strategy"):
        _run(["bench", "classify", "--strategies", "vanilla,nope", *common, "--out", str(tmp_path / "x")])


def test_train_and_score_rejects_unknown_settings(digits):
    with pytest.raises(TailganError, match="unknown classifier setting 'epoch'"):
        train_and_score(digits, "vanilla", epoch=3)
    assert ClassifyConfig().select == "valid"


def test_cli_gan_rows_and_augment_with_a_stand_in_generator(tmp_path, monkeypatch):
    monkeypatch.setattr(classify_cli, "_load_generator", lambda run, checkpoint, device: FakeGenerator())
    monkeypatch.setattr(augment_command, "load_generator", lambda run, checkpoint, device: FakeGenerator())
    common = ["--data", "digits_lt", "--seeds", "1", "--steps", "1", "--batch-size", "32", "--no-guard"]
    bench = tmp_path / "bench"
    argv = ["bench", "classify", "--strategies", "vanilla", "--generator", f"fake={tmp_path / 'run'}"]
    assert _run([*argv, *common, "--out", str(bench)]) == 0
    doc = json.loads((bench / "bench.json").read_text())
    assert [(r["strategy"], r["generative"]) for r in doc["results"]] == [("vanilla", False), ("fake", True)]
    assert "Generative augmentation: the best generative row (fake)" in doc["winners"]
    out = tmp_path / "aug"
    assert _augment([str(tmp_path / "run"), "--data", "digits_lt", "--out", str(out)]) == 0
    manifest = read_augment_manifest(out)
    assert manifest["run"] == "fake-run" and manifest["generator_step"] == 7
    # a synthetic PNG holds the generator's image: class c is grey level c / 9 * 255
    f = next(f for f in manifest["files"] if f["synthetic"] and f["label"] == 9)
    assert read_images([out / f["path"]], 8, 1).float().mean().item() == pytest.approx(255.0)
    with pytest.raises(TailganError, match="overlaps"):
        _augment([str(tmp_path / "run"), "--data", "digits_lt", "--out", str(tmp_path / "run" / "x")])


def test_winners_sentence():
    def row(name, acsa, tail, generative=False):
        return {
            "strategy": name,
            "generative": generative,
            "summary": {"acsa": {"mean": acsa, "std": 0.0}, "tail_recall": {"mean": tail, "std": 0.0}},
        }

    from tailgan.report.classify_tables import winners

    text = winners([row("cs", 0.80, 0.70), row("os", 0.82, 0.60), row("gan:x", 0.81, 0.75, True)], list("abc"), [2])
    assert text.startswith("Best ACSA: os (0.8200 ± 0.0000), +0.0100 over the next, gan:x.")
    assert "rarest 1 classes (c): gan:x (0.7500 ± 0.0000), +0.0500 over the next, cs." in text
    assert "(gan:x) is -0.0100 ACSA against the best classical one (os)" in text
    assert "generative row (gan:x) is +0.0500 against cs." in text


def test_bench_merges_rows_into_an_earlier_report(digits, tmp_path):
    from tailgan.classify.bench import run_bench

    cfg = ClassifyConfig(steps=1, batch_size=32, evals=1, guard=False)
    first = run_bench(digits, ["vanilla", "cs"], [0], cfg, tmp_path, log=lambda s: None)
    previous = json.loads((tmp_path / "bench.json").read_text())

    def add_gan(config, label="gan:fake", onto=previous):
        run_bench(digits, [], [0], config, tmp_path, generators={label: FakeGenerator()}, previous=onto,
                  log=lambda s: None)  # fmt: skip
        return json.loads((tmp_path / "bench.json").read_text())

    # generator rows with their own synthetic-data protocol join a table of real-data rows
    doc = add_gan(replace(cfg, synthetic_weight=0.5, filter=0.5))
    assert doc["results"][-1]["runs"][0]["config"]["synthetic_weight"] == 0.5
    # the report's header gives the generator rows' protocol, not the last run's config, as theirs
    md = (tmp_path / "bench.md").read_text().splitlines()
    (config_line,) = [line for line in md if line.startswith("- config: ")]
    keys = {item.partition("=")[0] for item in config_line.removeprefix("- config: ").split(", ")}
    assert "arch" in keys and "synthetic_weight" not in keys and "filter" not in keys  # feat_filter is no protocol key
    (protocol,) = [line for line in md if line.startswith("- synthetic-data protocol")]
    assert protocol.startswith("- synthetic-data protocol of gan:fake: synthetic=fill, ")
    assert "synthetic_weight=0.5, filter=0.5, " in protocol
    with pytest.raises(TailganError, match="config differs"):  # but not beside generator rows of another one
        add_gan(cfg, "gan:other", onto=doc)
    add_gan(cfg)
    doc = json.loads((tmp_path / "bench.json").read_text())
    assert [r["strategy"] for r in doc["results"]] == ["vanilla", "cs", "gan:fake"]
    assert doc["results"][0]["summary"] == json.loads(json.dumps(first[0]["summary"]))
    with pytest.raises(TailganError, match="seeds differs"):
        run_bench(digits, ["ts"], [0, 1], cfg, tmp_path, previous=doc, log=lambda s: None)
    with pytest.raises(TailganError, match="config differs"):
        run_bench(digits, ["ts"], [0], ClassifyConfig(steps=2), tmp_path, previous=doc, log=lambda s: None)
    # a setting only the joint strategies read differs: no difference while neither table has one
    joint = replace(cfg, joint_cls_batch="translator")
    run_bench(digits, ["ts"], [0], joint, tmp_path, previous=doc, log=lambda s: None)
    doc = json.loads((tmp_path / "bench.json").read_text())
    with pytest.raises(TailganError, match="config differs"):
        run_bench(digits, ["cyclegan-aug"], [0], cfg, tmp_path, previous=doc, log=lambda s: None)


def test_an_earlier_report_accepts_new_settings_only_at_their_defaults():
    from dataclasses import asdict

    from tailgan.classify.bench import config_differences

    old = json.loads(json.dumps(asdict(ClassifyConfig(epochs=20.0))))
    del old["compile"]  # a report written before ClassifyConfig had this field
    assert config_differences(old, ClassifyConfig(epochs=20.0)) == []  # compile=auto: as the earlier runs
    assert config_differences(old, ClassifyConfig(epochs=20.0, compile="off")) == ["compile"]
    assert config_differences(old, ClassifyConfig(epochs=30.0)) == ["epochs"]
    assert config_differences(None, ClassifyConfig()) == ["config"]
    # a field whose default differs from what the earlier runs did (tailgan.classify.train.BEFORE_FIELD)
    del old["joint_cls_batch"]
    assert config_differences(old, ClassifyConfig(epochs=20.0, joint_cls_batch="translator")) == []
    assert config_differences(old, ClassifyConfig(epochs=20.0)) == ["joint_cls_batch"]
