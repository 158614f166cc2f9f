"""``compile``: when the classifier is torch.compiled, and that a compiled run trains the same network."""

import shutil

import pytest
import torch

from tailgan.classify.config import ClassifyConfig, validated
from tailgan.classify.strategies import parse_strategy
from tailgan.classify.train import resolve_compile, train_classifier
from tailgan.data import ImageSet
from tailgan.errors import TailganError
from tailgan.nets.precision import COMPILE_MIN_STEPS

CPU = torch.device("cpu")


def test_auto_compiles_only_the_measured_network_on_long_cpu_runs(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/" + name)
    assert resolve_compile("auto", "resnet32", COMPILE_MIN_STEPS, CPU)[0] is True
    assert resolve_compile("auto", "resnet32", COMPILE_MIN_STEPS - 1, CPU) == (False, None)
    assert resolve_compile("auto", "lenet5", 10**6, CPU) == (False, None)  # measured slower compiled
    assert resolve_compile("auto", "resnet32", 10**6, torch.device("cuda")) == (False, None)  # not measured
    assert resolve_compile("on", "lenet5", 1, CPU) == (True, None)
    assert resolve_compile("off", "resnet32", 10**6, CPU) == (False, None)


def test_without_a_cpp_compiler_auto_stays_eager_and_on_says_how_to_fix_it(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert resolve_compile("auto", "resnet32", 10**6, CPU) == (False, None)
    with pytest.raises(TailganError, match="C\\+\\+ compiler.*compile=off"):
        resolve_compile("on", "lenet5", 1, CPU)


def test_an_unknown_compile_setting_is_refused():
    with pytest.raises(TailganError, match="'compile': 'yes' is not one of 'auto', 'on', 'off'"):
        validated(ClassifyConfig(compile="yes"))


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("g++") is None, reason="torch.compile on the CPU needs a C++ compiler")
def test_a_compiled_run_trains_the_same_network_as_an_eager_one():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (48, 1, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.arange(48) % 3
    valid = ImageSet(x[:12], y[:12], ["a", "b", "c"])
    strat = parse_strategy("vanilla")
    runs = {}
    for mode in ("off", "on"):
        cfg = ClassifyConfig(arch="lenet5", batch_size=16, evals=1, precision="fp32", compile=mode)
        model, _, record = train_classifier(x, y, valid, strat, cfg, 3, 4, seed=0)
        runs[mode] = (model.state_dict(), record)
    assert runs["on"][1]["compiled"] and not runs["off"][1]["compiled"]
    assert runs["on"][0].keys() == runs["off"][0].keys()  # plain keys: loads into an eager network
    assert runs["on"][1]["first_loss"] == pytest.approx(runs["off"][1]["first_loss"], rel=1e-5)
    for k, v in runs["off"][0].items():
        torch.testing.assert_close(runs["on"][0][k], v, rtol=1e-4, atol=1e-5)
