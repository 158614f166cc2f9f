"""Small helpers shared by test files."""

import json

import torch


def flatten_state(d, prefix=""):
    """Every tensor of a nested checkpoint dict, keyed by its dotted path (to compare two states)."""
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten_state(v, f"{prefix}{k}."))
        elif isinstance(v, list):
            out.update(flatten_state(dict(enumerate(v)), f"{prefix}{k}."))
        elif isinstance(v, torch.Tensor):
            out[prefix + str(k)] = v
    return out


def read_log(run):
    """The step records of a run's log.jsonl (the start/resume event records left out)."""
    from pathlib import Path

    records = [json.loads(line) for line in (Path(run) / "log.jsonl").read_text().splitlines()]
    return [r for r in records if "event" not in r]


def run_state(run):
    """Every tensor of a run's last checkpoint (networks, EMA, optimizers, random states), flattened."""
    from pathlib import Path

    from tailgan.io import load_checkpoint

    return flatten_state(load_checkpoint(Path(run) / "checkpoints" / "last.pt")["method"])


def assert_same(a, b):
    """Two flattened states are equal bit for bit."""
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def noise_gan_recipes():
    """Every method and preset of the noise-driven image GANs (the translators and DFG, whose outputs and
    losses differ, have their own tests: test_cyclegan.py, test_dfg.py)."""
    from tailgan.methods import all_presets, method_names, resolve_preset

    others = {"cyclegan-cls", "stargan-cls", "dfg"}
    names = method_names() + sorted(set(all_presets()) - set(method_names()))
    return [n for n in names if resolve_preset(n)["method"] not in others]
