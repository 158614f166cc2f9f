"""The command line: key=value overrides in any position, for every subcommand that takes them."""


import pytest
from helpers import read_log

from tailgan.cli import build_parser, parse_args
from tailgan.cli import main as cli


def parsed(*argv):
    return parse_args(build_parser(), list(argv))


@pytest.mark.parametrize(
    "argv",
    [
        ["data", "info", "digits", "--root", "R", "recipe=exp", "imbalance_factor=50"],
        ["data", "info", "digits", "recipe=exp", "--root", "R", "imbalance_factor=50"],
        ["data", "export", "digits", "OUT", "--overwrite", "recipe=exp", "imbalance_factor=50"],
        ["train", "--method", "cgan", "--root", "R", "recipe=x", "--out", "O", "imbalance_factor=50"],
        ["classify", "--strategy", "ts", "--data", "digits", "recipe=exp", "--out", "O", "imbalance_factor=50"],
        ["bench", "classify", "--data", "digits", "--root", "R", "recipe=exp", "--out", "O", "imbalance_factor=50"],
        ["augment", "RUN", "--data", "digits", "--root", "R", "recipe=exp", "--out", "O", "imbalance_factor=50"],
    ],
    ids=["data-info", "data-info-between", "data-export", "train", "classify", "bench-classify", "augment"],
)
def test_overrides_parse_in_any_position(argv):
    args = parsed(*argv)
    assert args.overrides[-1] == "imbalance_factor=50" and any(o.startswith("recipe=") for o in args.overrides)


def test_readme_data_info_example_runs(capsys):
    # the README's example, with the always-available digits source
    assert cli(["data", "info", "digits", "--root", "unused", "recipe=exp", "imbalance_factor=5", "n_max=100"]) == 0
    out = capsys.readouterr().out
    assert "imbalance ratio" in out.lower() or "5" in out


def test_unknown_options_are_still_errors(capsys):
    with pytest.raises(SystemExit):
        parsed("data", "info", "digits", "--nope")
    with pytest.raises(SystemExit):
        parsed("sample", "RUN", "--out", "O", "key=value")  # sample takes no overrides


def test_overrides_after_options_reach_the_run_config(tmp_path):
    out = tmp_path / "r"
    argv = ["train", "--method", "cgan", "--steps", "1", "--out", str(out), "optim.batch_size=4",
            "--data", "digits_lt", "model.conv_dim=8", "sample_every=0"]  # fmt: skip
    assert cli(argv) == 0
    assert "conv_dim: 8" in (out / "config.yaml").read_text()
    assert read_log(out)[-1]["step"] == 1
