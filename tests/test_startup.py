"""Start-up: `tailgan --help`, `--version` and `tailgan SUB --help` load no torch and take about as long as
starting Python (measured as a ratio to `python -c pass`, never as an absolute time)."""

import subprocess
import sys
import time

import pytest

from tailgan.cli import COMMANDS, build_parser

HELP_CALLS = [["--help"], ["--version"]] + [[name, "--help"] for name in COMMANDS]


def best_of(cmd, runs=3):
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return min(times)


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["train", "--help"], ["eval", "--help"]])
def test_help_starts_within_a_few_times_a_bare_python(argv):
    bare = best_of([sys.executable, "-c", "pass"])
    tailgan = best_of([sys.executable, "-m", "tailgan", *argv])
    # importing torch alone takes ~40x a bare start; the CLI's own modules ~2-4x
    assert tailgan / bare < 10, f"tailgan {' '.join(argv)}: {tailgan:.2f} s vs python -c pass {bare:.2f} s"


@pytest.mark.parametrize("argv", HELP_CALLS, ids=" ".join)
def test_help_and_version_import_no_torch(argv):
    code = (
        "import sys\nfrom tailgan.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "heavy = sorted(m for m in ('torch', 'numpy', 'torchvision', 'matplotlib') if m in sys.modules)\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=True).stdout
    assert "HEAVY []" in out, out[-300:]


def test_the_lazy_help_lines_are_the_ones_the_modules_register():
    full = build_parser()._subparsers._group_actions[0]  # every module imported
    registered = {a.dest: a.help for a in full._choices_actions}
    assert registered == {name: help_line for name, (_, help_line) in COMMANDS.items()}
    lazy = build_parser("")._subparsers._group_actions[0]
    assert list(lazy.choices) == list(COMMANDS)


def test_a_command_runs_through_its_deferred_function(tmp_path, capsys):
    from tailgan.cli import main

    assert main(["data", "info", "digits_lt"]) == 0
    assert "imbalance" in capsys.readouterr().out.lower()


def test_a_lazy_name_keeps_its_meaning_after_its_same_named_submodule_is_imported():
    # tailgan.metrics exports the function evaluate from its submodule evaluate; import order must not matter
    code = (
        "import tailgan.metrics.evaluate\nfrom tailgan.metrics import evaluate, stats\n"
        "import tailgan.metrics as m\nprint(callable(evaluate), callable(m.evaluate), type(stats).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True", "module"]
