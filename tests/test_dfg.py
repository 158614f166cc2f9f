"""DFG on the engine: source networks and their cache, the recipe's updates, CLI training, resume, refusal to
sample images, and the transfer strategies (original, finetune, delta, dfg) on tiny digits settings."""

import json

import pytest
import torch
from helpers import flatten_state, read_log

from tailgan.baselines.transfer import (
    SourceConfig,
    TransferConfig,
    carve,
    resolve_source,
    source_meta,
    source_network,
    train_and_score_transfer,
    train_dfg,
)
from tailgan.cli import main as cli
from tailgan.data import load_data, to_float
from tailgan.engine import DataShape, RunContext, build_method, make_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.methods.dfg import classifier_scores
from tailgan.nets.dfg import build_source
from tailgan.nets.precision import bf16_supported, resolve_precision

# digits at LeNet-5's 32 px, cut to DFG's recipe: 8 minority classes at 1/4 of a 60-image cap
DATA = ["data.resolution=32", "data.recipe=minority", "data.imbalance_factor=4", "data.n_max=60", "data.n_minority=8"]
FAST = ["optim.batch_size=8", "options.n_critic=2", "options.step_for_5=2", "options.per_class=3",
        "options.max_batches=2", "precision=fp32", "ckpt_every=3"]  # fmt: skip


def tiny_data():
    return load_data("digits", resolution=32, recipe="minority", imbalance_factor=4, n_max=60, n_minority=8)


@pytest.fixture(scope="module")
def source_file(tmp_path_factory):
    """A LeNet-5 source pre-trained (briefly) on the full digits set."""
    cache = tmp_path_factory.mktemp("cache")
    return source_network("digits", cfg=SourceConfig(epochs=2), cache=cache, log=lambda s: None, fit="resize")


# -- 1. source networks ----------------------------------------------------------------------------------------------
def test_source_network_is_cached_with_its_test_accuracy(source_file, tmp_path):
    meta = source_meta(source_file)
    assert meta["backbone"] == "lenet5" and meta["source"] == "digits" and meta["image_size"] == 32
    # the recorded accuracy is the network's accuracy on the source test split, computed again here
    data = load_data("digits", resolution=32, fit="resize")
    net = build_source("lenet5", 10, 1, source_file).network.eval()
    with torch.no_grad():
        acc = float((net(to_float(data.test.images)).argmax(1) == data.test.labels).double().mean())
    assert meta["test_accuracy"] == pytest.approx(acc, abs=1e-9)
    assert acc > 0.5  # two epochs on digits learn something (chance: 0.1)
    # a second call reuses the file; other settings are another cache entry
    messages = []
    cache = source_file.parents[1]
    again = source_network("digits", cfg=SourceConfig(epochs=2), cache=cache, log=messages.append, fit="resize")
    assert again == source_file and "reused" in messages[0]
    other = source_network("digits", cfg=SourceConfig(epochs=1), cache=cache, log=lambda s: None, fit="resize")
    assert other != source_file and other.parent == source_file.parent


def test_resolve_source_takes_a_file_or_a_dataset(source_file):
    assert resolve_source(str(source_file)) == source_file
    with pytest.raises(TailganError, match="no such file"):
        resolve_source("missing_source.pt")
    with pytest.raises(TailganError, match="unknown dataset"):
        resolve_source("no_such_dataset", cache=source_file.parents[1])


# -- 2. the recipe ----------------------------------------------------------------------------------------------------
def build_recipe(tmp_path, source, extra=()):
    cfg = make_config("dfg", data="digits", overrides=[*DATA, *FAST, f"options.source={source}", *extra], steps=4)
    data = load_data(cfg.data)
    shape = DataShape(10, 1, 32, tuple(data.train.counts()))
    return build_method(cfg, shape, RunContext(run_dir=tmp_path)), data


def params(method, name):
    return [p.detach().clone() for p in method.nets[name].parameters()]


def moved(method, before):
    now = {n: list(method.nets[n].parameters()) for n in before}
    return {n for n, ps in before.items() if any(not torch.equal(a, b) for a, b in zip(ps, now[n]))}


def test_each_update_moves_only_its_networks(tmp_path, source_file):
    method, data = build_recipe(tmp_path, source_file)
    method.evaluate_channels(data)
    x, y = to_float(data.train.images[:8]), data.train.labels[:8]
    updates = {
        "critic": (lambda: method.critic_update(x), {"D"}),
        "generator_adv": (lambda: method.generator_adv_update(8), {"G"}),
        "generator_cls": (lambda: method.generator_cls_update(x, y), {"G"}),
        "extractor_classifier": (lambda: method.extractor_classifier_update(x, y), {"E", "Cl"}),
        "classifier_fake": (lambda: method.classifier_fake_update(x, y), {"Cl"}),
    }
    for name, (update, expected) in updates.items():
        before = {n: params(method, n) for n in method.nets}
        update()
        assert moved(method, before) == expected, name
    assert not any(p.requires_grad for n in ("E_src", "Cl_src") for p in method.nets[n].parameters())


def test_channel_evaluation_sets_attention_and_weights(tmp_path, source_file):
    method, data = build_recipe(tmp_path, source_file)
    method.evaluate_channels(data)
    raw = torch.tensor(method.channels["attention"][0]["raw"])
    # the thresholding rule by hand: keep a[c, j] where 6 * a[c, j] >= 0.9
    expected = torch.where(raw * 6 >= 0.9, raw, torch.zeros(()))
    assert torch.allclose(method.nets["G"].attention, expected)
    assert torch.allclose(raw.sum(1), torch.ones(10))  # each row: a mean of softmaxes
    assert method.w_e.sum().item() == pytest.approx(1.0) and len(method.w_c) == 1 and method.w_c[0].shape == (16,)
    assert (tmp_path / "dfg" / "attention_step_0000000.png").stat().st_size > 1000
    saved = json.loads((tmp_path / "dfg" / "channels.json").read_text())
    assert saved["extractor_weights"] == pytest.approx(method.w_e.tolist())


@pytest.mark.skipif(not bf16_supported(torch.device("cpu")), reason="this CPU has no native bf16 (AVX512-BF16/AMX)")
def test_fast_mode_runs_the_updates_in_bf16_close_to_fp32(tmp_path, source_file):
    losses, dtypes = {}, {}
    for name in ("fp32", "auto"):
        cfg = make_config("dfg", data="digits", overrides=[*DATA, *FAST, f"options.source={source_file}"], steps=4)
        data = load_data(cfg.data)
        prec, _ = resolve_precision(name, torch.device("cpu"))
        shape = DataShape(10, 1, 32, tuple(data.train.counts()))
        method = build_method(cfg, shape, RunContext(run_dir=tmp_path / name, precision=prec))
        method.evaluate_channels(data)  # fp32 in both modes: same attention and weights
        seen = []
        first = next(m for m in method.nets["G"].modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d)))
        first.register_forward_hook(lambda mod, inp, out, seen=seen: seen.append(out.dtype))
        x, y = method.precision.tensor(to_float(data.train.images[:8])), data.train.labels[:8]
        critic = method.critic_update(x)
        ec = method.extractor_classifier_update(x, y)
        cf = method.classifier_fake_update(x, y)
        losses[name] = {"wasserstein": critic["wasserstein"], "gp": critic["gp"], "ce": ec["ce"], "cf": cf["loss"]}
        dtypes[name] = set(seen)
        assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in losses[name].values())
    assert dtypes == {"fp32": {torch.float32}, "auto": {torch.bfloat16}}  # autocast really on, and really off
    for k, exact in losses["fp32"].items():  # same weights and batch: bf16 forward passes move them little
        assert float(losses["auto"][k]) == pytest.approx(float(exact), rel=0.05, abs=0.02), k


def test_dfg_needs_a_source(tmp_path):
    with pytest.raises(TailganError, match="options.source"):
        build_recipe(tmp_path, "", extra=["options.source=null"])
    with pytest.raises(TailganError, match="is not a file"):
        build_recipe(tmp_path, tmp_path / "nothing.pt")


def test_classifier_scores_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 1, 1])  # right, wrong, wrong, wrong
    s = classifier_scores(logits, labels, 2)
    assert s == {"accuracy": 0.25, "acsa": 0.25}
    s = classifier_scores(logits, torch.tensor([0, 1, 0, 0]), 2)  # recalls 3/3 and 1/1
    assert s == {"accuracy": 1.0, "acsa": 1.0}


def test_cli_trains_resumes_bit_exact_and_refuses_to_sample(tmp_path, source_file, capsys):
    over = [*DATA, *FAST, f"options.source={source_file}", "options.eval_every=2", "options.step_for_6=2",
            "options.e_loss_gate=100", "options.select_on=test"]  # fmt: skip
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert cli(["train", "--method", "dfg", "--data", "digits", "--steps", "6", "--out", str(straight), *over]) == 0
    assert cli(["train", "--method", "dfg", "--data", "digits", "--steps", "3", "--out", str(split), *over]) == 0
    assert cli(["train", "--resume", str(split), "--steps", "6"]) == 0
    a = load_checkpoint(straight / "checkpoints" / "last.pt")
    b = load_checkpoint(split / "checkpoints" / "last.pt")
    fa, fb = flatten_state(a["method"]), flatten_state(b["method"])
    assert fa.keys() == fb.keys(), set(fa) ^ set(fb)
    qa, qb = a["method"]["extra"]["queue"], b["method"]["extra"]["queue"]
    assert len(qa) == len(qb) == 2 and all(torch.equal(u, v) for p, q in zip(qa, qb) for u, v in zip(p, q))
    for k in fa:
        assert torch.equal(fa[k], fb[k]), f"{k} differs after resume"
    assert a["method"]["extra"]["channels"] == b["method"]["extra"]["channels"]
    assert a["meta"]["output"] == {"kind": "feature", "shape": [6, 14, 14]}
    records = read_log(split)
    assert [r["step"] for r in records] == [2, 3, 4, 6]  # 3: the first call's last step
    assert [r["step"] for r in records if "test_acsa" in r] == [2, 4, 6]  # selection every eval_every steps
    assert len(a["method"]["extra"]["channels"]["attention"]) == 4  # start + steps 2, 4, 6
    assert sorted(p.name for p in (split / "dfg").glob("*.png"))[-1] == "attention_step_0000006.png"
    capsys.readouterr()
    assert cli(["sample", str(straight), "--class", "1", "--n", "2", "--out", str(tmp_path / "gen")]) != 0
    err = capsys.readouterr().err
    assert "makes feature maps (6x14x14)" in err and "tailgan classify" in err
    assert not (tmp_path / "gen").exists()


# -- 3. the transfer strategies ---------------------------------------------------------------------------------------
def test_transfer_strategies_score_on_the_test_set(tmp_path, source_file):
    data = tiny_data()
    cfg = TransferConfig(steps=6, eval_every=3, batch_size=8, max_batches=2)
    results = {}
    for s in ("original", "finetune", "delta"):
        r = train_and_score_transfer(data, s, 0, cfg, source=source_file, log=lambda m: None)
        assert 0 <= r["accuracy"] <= 1 and len(r["recall_per_class"]) == 10 and r["selected_step"] in (3, 6)
        assert sum(r["train_counts"]) + sum(r["valid_counts"]) == len(data.train)
        results[s] = r
    # fine-tuning starts from the source; the source already classifies digits, from-scratch does not
    assert results["finetune"]["accuracy"] > results["original"]["accuracy"]
    with pytest.raises(TailganError, match="needs a source"):
        train_and_score_transfer(data, "finetune", 0, cfg, log=lambda m: None)


def test_dfg_strategy_resumes_bit_exact(tmp_path, source_file):
    data, cfg = tiny_data(), TransferConfig(steps=4, eval_every=2, batch_size=8, ckpt_every=2,
                                            dfg_options={"n_critic": 2, "per_class": 3, "max_batches": 2})  # fmt: skip
    carved, _ = carve(data, cfg, 0)
    whole, _ = train_dfg(carved, source_file, cfg, 0, tmp_path / "whole")
    train_dfg(carved, source_file, cfg, 0, tmp_path / "parts", steps=2)
    parts, _ = train_dfg(carved, source_file, cfg, 0, tmp_path / "parts")
    fa, fb = flatten_state(whole.state_dict()), flatten_state(parts.state_dict())
    for k in fa:
        assert torch.equal(fa[k], fb[k]), k
    assert whole.best is not None and whole.best["split"] == "valid"
    r = train_and_score_transfer(data, "dfg", 0, cfg, source=source_file, out=tmp_path / "whole", log=lambda m: None)
    assert r["selected_step"] == whole.best["step"] and 0 <= r["acsa"] <= 1


@pytest.mark.parametrize("strategy", ["original", "finetune", "delta", "dfg"])
def test_transfer_strategies_run_from_the_classify_cli(strategy, tmp_path, monkeypatch):
    import json

    from tailgan.cli import main as cli

    monkeypatch.setenv("TAILGAN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / strategy
    source = [] if strategy == "original" else ["--source", "digits"]
    args = ["classify", "--strategy", strategy, *source, "--data", "digits", "recipe=minority", "imbalance_factor=5",
            "n_minority=4", "resolution=32", "fit=pad", "--steps", "4", "--seeds", "1", "--out", str(out)]  # fmt: skip
    assert cli(args) == 0
    result = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= result["summary"]["acsa"]["mean"] <= 1.0
    if strategy == "dfg":  # its run folder, with the attention figure, next to the results
        assert list((out / "transfer_runs" / "dfg_seed0" / "dfg").glob("attention_step_*.png"))


def test_transfer_strategy_without_a_source_is_a_one_line_error(tmp_path, capsys):
    from tailgan.cli import main as cli

    assert cli(["classify", "--strategy", "finetune", "--data", "digits_lt", "--out", str(tmp_path / "x")]) == 2
    assert "--source" in capsys.readouterr().err


def test_delta_regulariser_keeps_the_features_near_the_source(source_file):
    """DELTA's feature-map term (alpha): with beta 0 and alpha 0 DELTA is plain fine-tuning step for step; with
    alpha > 0 the hooked extractor conv moves less from the source than under fine-tuning (a weight of 0 in the
    loop would make the two equal)."""
    from tailgan.baselines.transfer import train_transfer

    data, _ = carve(tiny_data(), TransferConfig(), 0)
    cfg = dict(steps=8, eval_every=8, batch_size=8, max_batches=2, lr=3e-3, beta=0.0)
    source = build_source("lenet5", 10, 1, source_file).network.state_dict()

    def moved(strategy: str, alpha: float) -> tuple[float, dict]:
        net, _ = train_transfer(data, strategy, source_file, TransferConfig(alpha=alpha, **cfg), seed=0)
        state = net.state_dict()
        return float((state["features.0.weight"] - source["features.0.weight"]).norm()), state

    finetune, ft_state = moved("finetune", 0.0)
    same, same_state = moved("delta", 0.0)
    held, _ = moved("delta", 50.0)
    assert all(torch.equal(ft_state[k], same_state[k]) for k in ft_state) and same == finetune
    assert finetune > 0 and held < 0.8 * finetune
