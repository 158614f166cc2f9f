"""The classify config (issue 25): key=value for every field, --config files, config.yaml in every output, the
reproduce command generated from it, --resume, two-stage selection and shared validation splits."""

import argparse
import json
import shlex

import pytest
import torch

from tailgan import classify_cli
from tailgan.classify.bench import run_bench
from tailgan.classify.config import ClassifyConfig
from tailgan.classify.runconfig import make_classify_config, read_config, reproduce_command
from tailgan.classify.strategies import parse_strategy
from tailgan.classify.train import train_classifier
from tailgan.cli import main as cli
from tailgan.data import load_data
from tailgan.data.splits import split_fingerprint, split_validation
from tailgan.errors import TailganError


@pytest.fixture(scope="module")
def digits():
    return load_data("digits_lt")


def _run(argv, seen=None):
    parser = argparse.ArgumentParser()
    classify_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.overrides = args.overrides or []
    if seen is not None:
        seen.append(args)
    return args.func(args)


def _interrupted(argv):
    """Run until the KeyboardInterrupt, then release the output's lock as the killed process's death would."""
    seen = []
    with pytest.raises(KeyboardInterrupt):
        _run(argv, seen)
    seen[0].out_lock.release()


def test_every_field_is_a_key_and_flags_map_onto_fields(tmp_path):
    cfg = make_classify_config("classify", data="digits_lt", overrides=["focal_gamma=2", "optimizer=adam",
                               "data.resolution=16", "imbalance_factor=5", "tau_grid=[0.5,1]"], lr=0.01)  # fmt: skip
    assert (cfg.focal_gamma, cfg.optimizer, cfg.lr, cfg.tau_grid) == (2.0, "adam", 0.01, (0.5, 1.0))
    assert (cfg.data.resolution, cfg.data.imbalance_factor, cfg.data.preset) == (16, 5.0, "digits_lt")
    # a config file is the base; flags and overrides win over it
    (tmp_path / "c.yaml").write_text("strategy: la\nepochs: 7\nldam_scale: 12\ndata: digits_lt\n")
    cfg = make_classify_config("classify", str(tmp_path / "c.yaml"), overrides=["epochs=3"], seeds=2)
    assert (cfg.strategy, cfg.epochs, cfg.ldam_scale, cfg.seeds, cfg.data.preset) == ("la", 3.0, 12.0, 2, "digits_lt")


def test_bad_keys_and_values_are_one_line_errors_naming_the_choices():
    with pytest.raises(TailganError, match="unknown config key 'focal_gama'; valid keys: .*focal_gamma") as e:
        make_classify_config("classify", data="digits_lt", overrides=["focal_gama=2"])
    assert "\n" not in str(e.value) and "data keys as data.KEY" in str(e.value)
    with pytest.raises(TailganError, match="'lr': -1.0 is out of range"):
        make_classify_config("classify", data="digits_lt", overrides=["lr=-1"])
    with pytest.raises(TailganError, match="'finetune': 'some' is not one of 'none', 'all', 'head'"):
        make_classify_config("classify", data="digits_lt", overrides=["finetune=some"])
    with pytest.raises(TailganError, match="unknown config key 'data.resolutio'"):
        make_classify_config("classify", data="digits_lt", overrides=["data.resolutio=16"])
    with pytest.raises(TailganError, match="no data"):
        make_classify_config("classify")


def test_cli_override_reaches_the_run_and_its_config_yaml(tmp_path, capsys):
    out = tmp_path / "f"
    argv = ["classify", "--data", "digits_lt", "--strategy", "focal", "focal_gamma=2", "--seeds", "1",
            "--steps", "2", "optimizer=adam", "--out", str(out), "batch_size=16"]  # fmt: skip
    assert cli(argv) == 0
    cfg = read_config(out)
    assert (cfg.focal_gamma, cfg.optimizer, cfg.batch_size, cfg.steps, cfg.strategy) == (2.0, "adam", 16, 2, "focal")
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["runs"][0]["config"]["focal_gamma"] == 2.0 and doc["complete"] is True
    assert "focal_gamma=2.0" in doc["reproduce"] and "optimizer=adam" in doc["reproduce"]
    assert f"reproduce: {doc['reproduce']}" in capsys.readouterr().out
    bad = ["classify", "--data", "digits_lt", "--strategy", "la", "focal_gama=2", "--out", str(tmp_path / "x")]
    assert cli(bad) == 2
    assert "unknown config key 'focal_gama'" in capsys.readouterr().err


def test_the_printed_reproduce_command_gives_the_same_figures(tmp_path, capsys):
    first = tmp_path / "first"
    argv = ["classify", "--data", "digits_lt", "--strategy", "la", "--seeds", "1", "--steps", "3",
            "data.resolution=16", "evals=1", "--out", str(first)]  # fmt: skip
    assert cli(argv) == 0
    command = json.loads((first / "metrics.json").read_text())["reproduce"]
    assert "data.resolution=16" in command and command.endswith("--out NEW_OUT")
    from tailgan.report.build import build_report

    html = build_report([first], tmp_path / "report.html", title="t").read_text()
    assert command in html  # the report prints the command generated from the output's config
    again = tmp_path / "again"
    words = shlex.split(command.replace("NEW_OUT", str(again)))
    assert words[:2] == ["tailgan", "classify"]
    assert cli(words[1:]) == 0
    a, b = (json.loads((p / "metrics.json").read_text())["runs"][0] for p in (first, again))
    assert a["acsa"] == b["acsa"] and a["confusion_matrix"] == b["confusion_matrix"]
    assert read_config(again).data == read_config(first).data
    # the config file alone runs it again, too
    assert cli(["classify", "--config", str(first / "config.yaml"), "--out", str(tmp_path / "c")]) == 0
    assert json.loads((tmp_path / "c" / "metrics.json").read_text())["runs"][0]["acsa"] == a["acsa"]


def test_reproduce_command_round_trips_every_changed_field():
    changed = ["strategy=vanilla,gan+la", "filter=0.9", "synthetic=ratio:0.5", "finetune=head", "tau_grid=[1,2]",
               "data.resolution=16", "joint_options=[options.ngf=8]", "guard_refuse=null"]  # fmt: skip
    cfg = make_classify_config("bench classify", data="digits_lt", overrides=changed, generator=["g=runs/x"])
    words = shlex.split(reproduce_command(cfg, "O"))
    assert words[:7] == ["tailgan", "bench", "classify", "--data", "digits_lt", "--strategies", "vanilla,gan+la"]
    overrides = [w for w in words if "=" in w and not w.startswith("-") and w != "g=runs/x"]
    again = make_classify_config("bench classify", data="digits_lt", overrides=overrides, seeds=3,
                                 generator=["g=runs/x"], strategy="vanilla,gan+la")  # fmt: skip
    assert again == cfg


def test_resume_keeps_finished_seeds(tmp_path, monkeypatch):
    import tailgan.classify.bench as bench

    calls = []
    real = bench.train_and_score

    def stop_at_seed_1(data, strategy, seed, *a, **kw):
        calls.append(seed)
        if seed == 1 and len(calls) == 2:
            raise KeyboardInterrupt  # the process is stopped while seed 1 trains
        return real(data, strategy, seed, *a, **kw)

    monkeypatch.setattr(bench, "train_and_score", stop_at_seed_1)
    out = tmp_path / "r"
    argv = ["classify", "--data", "digits_lt", "--strategy", "cs", "--seeds", "3", "--steps", "2", "--out", str(out)]
    _interrupted(argv)
    doc = json.loads((out / "metrics.json").read_text())
    assert [r["seed"] for r in doc["runs"]] == [0] and doc["complete"] is False
    with pytest.raises(TailganError, match="already holds"):
        _run(argv)
    with pytest.raises(TailganError, match="steps differ"):
        _run([*argv[:-4], "--steps", "3", "--out", str(out), "--resume"])
    assert _run([*argv, "--resume"]) == 0
    assert calls == [0, 1, 1, 2]  # seed 0 was not trained again
    done = json.loads((out / "metrics.json").read_text())
    assert [r["seed"] for r in done["runs"]] == [0, 1, 2] and done["complete"] is True
    assert done["runs"][0] == doc["runs"][0]


def test_bench_resume_keeps_finished_rows(tmp_path, monkeypatch):
    import tailgan.classify.bench as bench

    real, calls = bench.train_and_score, []

    def stop(data, strategy, seed, *a, **kw):
        calls.append((strategy.name, seed))  # the row's strategy, parsed once by run_bench
        if strategy.name == "ts" and len(calls) == 3:
            raise KeyboardInterrupt
        return real(data, strategy, seed, *a, **kw)

    monkeypatch.setattr(bench, "train_and_score", stop)
    out = tmp_path / "b"
    argv = ["bench", "classify", "--data", "digits_lt", "--strategies", "vanilla,ts", "--seeds", "2", "--steps", "2",
            "--out", str(out)]  # fmt: skip
    _interrupted(argv)
    assert _run([*argv, "--resume"]) == 0
    assert calls == [("vanilla", 0), ("vanilla", 1), ("ts", 0), ("ts", 0), ("ts", 1)]
    doc = json.loads((out / "bench.json").read_text())
    assert [len(r["runs"]) for r in doc["results"]] == [2, 2] and doc["complete"] is True
    assert doc["reproduce"].startswith("tailgan bench classify --data digits_lt --strategies vanilla,ts --seeds 2")


def test_fine_tuning_keeps_stage_one_unless_stage_two_beats_it_on_validation(digits):
    strat = parse_strategy("vanilla")
    cfg = ClassifyConfig(steps=30, batch_size=32, evals=2)
    valid = digits.train
    stage1, loss, rec1 = train_classifier(valid.images, valid.labels, valid, strat, cfg, 10, 30, 0)
    # stage 2 on wrong labels: no stage-2 checkpoint beats the incoming network on validation
    wrong = (valid.labels + 1) % 10
    worse, _, rec2 = train_classifier(valid.images, wrong, valid, strat, cfg, 10, 4, 1, model=stage1, lr=0.5)
    assert rec2["selected_step"] == 0 and rec2["valid_acsa"] == pytest.approx(rec1["valid_acsa"])
    for name, p in worse.state_dict().items():
        assert torch.equal(p, stage1.state_dict()[name]), name
    assert rec2["history"][0]["step"] == 0 and all(h["valid_acsa"] <= rec2["valid_acsa"] for h in rec2["history"])


class SplitGenerator:
    """A generator stand-in whose run held out seed 5's validation split."""

    def __init__(self, labels):
        _, valid_idx = split_validation(labels, 0.1, 5)
        self.valid_split = {"fraction": 0.1, "seed": 5, "fingerprint": split_fingerprint(valid_idx)}
        self.num_classes, self.run_dir, self.step, self.data_config = 10, "split-run", 1, None

    def sample(self, labels, seed=None, batch_size=256):
        return (labels.float() / 9 * 2 - 1).view(-1, 1, 1, 1).expand(-1, 1, 8, 8).clone()


def test_every_row_of_a_table_selects_on_the_same_split_per_seed(digits, tmp_path):
    gen = SplitGenerator(digits.train.labels)
    cfg = ClassifyConfig(steps=1, batch_size=32, evals=1, guard=False)
    rows = run_bench(digits, ["vanilla"], [0, 1], cfg, tmp_path, generators={"g": gen}, log=lambda s: None)
    splits = {(r["strategy"], run["seed"]): run["valid_split"]["fingerprint"] for r in rows for run in r["runs"]}
    assert len(set(splits.values())) == 1 and next(iter(splits.values())) == gen.valid_split["fingerprint"]
    md = (tmp_path / "bench.md").read_text()
    assert "generators' held-out validation split (fraction 0.1, seed 5)" in md
    # without a held-out split, seed s's split for every row of seed s
    rows = run_bench(digits, ["vanilla", "ts"], [0, 1], cfg, tmp_path, log=lambda s: None)
    for seed in (0, 1):
        assert rows[0]["runs"][seed]["valid_split"] == rows[1]["runs"][seed]["valid_split"]
    assert rows[0]["runs"][0]["valid_split"] != rows[0]["runs"][1]["valid_split"]
    assert "seed s's validation split" in (tmp_path / "bench.md").read_text()


def test_min_steps_gives_small_presets_a_budget(digits):
    from tailgan.classify.train import resolve_steps

    assert resolve_steps(ClassifyConfig(), 200) == 300  # 20 epochs x 200 / 128 = 32 steps: the floor
    assert resolve_steps(ClassifyConfig(), 9450) == 1477  # Fashion-MNIST-LT: unchanged
    assert resolve_steps(ClassifyConfig(steps=7), 9450) == 7


def test_a_registered_loss_is_a_strategy_of_its_own_name(digits):
    import torch.nn.functional as F

    from tailgan.classify.parts import LOSSES, classical_parts
    from tailgan.classify.train import StrategyLoss, train_and_score

    @LOSSES.register("brier")
    def _brier(counts, cfg, strategy):  # the Brier score: squared distance of the probabilities to the one-hot label
        return lambda z, y, progress, w: ((z.softmax(1) - F.one_hot(y, z.shape[1])) ** 2).sum(1).mean()

    try:
        assert classical_parts()["brier"].loss == "brier" and parse_strategy("gan+brier").synthetic == "gan"
        z, y = torch.tensor([[2.0, 0.0], [0.0, 0.0]]), torch.tensor([0, 1])
        p = 1 / (1 + torch.exp(torch.tensor(-2.0)))  # softmax of (2, 0)
        by_hand = (2 * (1 - p) ** 2 + 0.25 + 0.25) / 2  # row 1: (1 - p)^2 twice; row 2: 0.5^2 twice
        assert StrategyLoss(parse_strategy("brier"), [1, 1], ClassifyConfig())(z, y, 0.0) == pytest.approx(by_hand)
        r = train_and_score(digits, "brier", steps=2, batch_size=32, evals=1, log=lambda s: None)
        assert r["strategy"] == "brier" and 0 < r["first_loss"] < 2
    finally:
        LOSSES._entries.pop("brier")
    with pytest.raises(TailganError, match="unknown strategy 'brier'"):
        parse_strategy("brier")


def test_progress_lines_say_which_stage():
    from tailgan.classify.bench import _progress

    assert _progress({"selected_step": 79, "steps": 493}) == "step 79/493"
    two = {"selected_step": 79, "steps": 493, "finetune_steps": 99, "stage": 2, "stage1": {}}
    assert _progress(two) == "stage 2 step 79/99"
    kept = {**two, "selected_step": 0, "stage": 1, "stage1": {"selected_step": 300, "steps": 394}}
    assert _progress(kept) == "stage 1 kept, step 300/394"


def test_one_acsa_and_one_direction_for_every_layer():
    from sklearn.metrics import balanced_accuracy_score

    from tailgan.methods.dfg import classifier_scores
    from tailgan.scores import balanced_accuracy, higher_is_better

    y, p = [0, 0, 0, 1, 2, 2], [0, 1, 1, 1, 2, 0]  # recalls 1/3, 1, 1/2 (class 3 absent: not averaged)
    assert balanced_accuracy(y, p) == pytest.approx((1 / 3 + 1 + 1 / 2) / 3) == balanced_accuracy_score(y, p)
    logits = torch.nn.functional.one_hot(torch.tensor(p), 4).float()
    assert classifier_scores(logits, torch.tensor(y), 4)["acsa"] == pytest.approx(balanced_accuracy(y, p))
    assert higher_is_better("acsa") and higher_is_better("labelacc") and not higher_is_better("fid")


def test_registries_name_their_entries_in_one_line_errors():
    from tailgan.classify.parts import LOSSES
    from tailgan.nets.classifiers import ARCHITECTURES, CLASSIFIERS

    assert CLASSIFIERS == ("lenet5", "resnet32", "resnet18") == ARCHITECTURES.names()
    with pytest.raises(TailganError, match="unknown loss 'hinge'; use one of ce, cs, cbl, focal"):
        LOSSES.get("hinge")
