"""Every code example of README.md and docs/ runs, so none can rot.

- Each fenced ``python`` block is executed as pasted, by a fresh interpreter in a temporary folder (what a user
  pasting it gets: no state from other tests), with its budget cut to a few steps:
  the numbers of ``steps=``, ``--steps``, ``epochs=``, ``--epochs``, ``options.pretrain_epochs=`` and
  ``--seeds`` (the knobs the examples document) are replaced by tiny ones (``BUDGET``; steps become a
  hundredth, at least 2, so a resumed run still has steps to make).
  ``<!-- test: skip REASON -->`` on the line before a block exempts it (the reason is required).
- Every ``tailgan`` command line of a ``bash`` block is parsed by tailgan's own argument parser (sub-command,
  options, ``key=value`` overrides); lines with ``...`` placeholders are skipped. A block preceded by
  ``<!-- test: run -->`` is also run with bash, in a temporary folder, with the same budget cuts.

The examples that score a generator find a small digits evaluator (one epoch, width 8) in the session's cache,
trained here first: ``get_evaluator`` and ``tailgan eval`` use an evaluator trained with other settings when the
default one is absent, so the examples run as written without a minute of evaluator training.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tailgan.cli import build_parser, command_of, parse_args

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted(p for p in (REPO / "docs").rglob("*.md") if "_hooks" not in p.parts)]
def _hundredth(m: re.Match) -> str:
    return f"{m.group(1)}{max(2, -(-int(m.group(2)) // 100))}"


BUDGET = [
    (re.compile(r"((?<![\w.])steps=)(\d+)"), _hundredth),
    (re.compile(r"(--steps[ =])(\d+)"), _hundredth),
    (re.compile(r"options\.pretrain_epochs=\d+"), "options.pretrain_epochs=1"),
    (re.compile(r"(?<![\w.])epochs=\d+"), "epochs=1"),
    (re.compile(r"--epochs[ =]\d+"), "--epochs 1"),
    (re.compile(r"--seeds[ =]\d+"), "--seeds 1"),
]
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```\s*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*test:\s*(\w+)\s*(.*?)-->\s*$")


@dataclass
class Block:
    page: Path
    line: int
    lang: str
    code: str
    marker: str | None = None  # "skip" or "run"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def blocks(lang: str) -> list[Block]:
    out = []
    for page in PAGES:
        text = page.read_text()
        for m in FENCE.finditer(text):
            if m.group(1) != lang:
                continue
            line = text.count("\n", 0, m.start()) + 1
            before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
            mark = MARKER.search(before)
            out.append(Block(page, line, lang, m.group(2), *(mark.groups() if mark else (None, ""))))
    return out


@pytest.fixture(scope="module")
def small_evaluator():
    from tailgan.data import load_data
    from tailgan.metrics.evaluator import EvaluatorConfig, evaluator_data_config, find_evaluators, train_evaluator
    from tailgan.train import make_config

    digits_32px = make_config("bagan-gp", data="digits_lt").data
    if not find_evaluators(digits_32px):
        cfg = EvaluatorConfig(epochs=1, width=8, feature_dim=16)
        train_evaluator(load_data(evaluator_data_config(digits_32px)), cfg, log=None)


def example_env() -> dict:
    """The test's environment (its evaluator cache included), this venv's ``tailgan`` first on PATH, one thread."""
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}


def cut_budget(code: str) -> str:
    for pattern, tiny in BUDGET:
        code = pattern.sub(tiny, code)
    return code


def test_budget_cuts_the_documented_knobs():
    code = 'make_config("bagan-gp", steps=600, overrides=["options.pretrain_epochs=10"]); f(epochs=30, max_steps=5)'
    assert cut_budget(code) == (
        'make_config("bagan-gp", steps=6, overrides=["options.pretrain_epochs=1"]); f(epochs=1, max_steps=5)'
    )
    cut = cut_budget("tailgan train --steps 3000 --epochs=30 --seeds 3")
    assert cut == "tailgan train --steps 30 --epochs 1 --seeds 1"
    assert cut_budget("--steps 300 ... --steps 50") == "--steps 3 ... --steps 2"


def test_examples_are_found():
    """The README's two Python examples and the docs' blocks are collected (a broken fence regex would skip all)."""
    readme = [b for b in blocks("python") if b.page.name == "README.md"]
    assert len(readme) == 2 and "GenerativeOverSampler" in readme[1].code
    assert sum(b.page.name == "README.md" for b in blocks("bash")) >= 4


def test_readme_is_a_front_door():
    assert len((REPO / "README.md").read_text().splitlines()) <= 200


@pytest.mark.parametrize("block", blocks("python"), ids=lambda b: b.id)
def test_python_example_runs(block: Block, tmp_path, small_evaluator):
    if block.marker == "skip":
        assert block.reason.strip(), f"{block.id}: a skipped example must say why"
        pytest.skip(block.reason)
    compile(block.code, block.id, "exec")  # a syntax error names the page and line
    done = subprocess.run(
        [sys.executable, "-c", cut_budget(block.code)], cwd=tmp_path, env=example_env(), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"


def command_lines(code: str) -> list[str]:
    """The ``tailgan ...`` commands of a bash block: continuation lines joined, comments dropped, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", " ", code)
    out = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()
        for part in re.split(r"&&|;", line):
            words = shlex.split(part)
            if "-m" in words and words[0] == "torchrun":  # torchrun ... -m tailgan train ...
                words = words[words.index("-m") + 1 :]
            if words and Path(words[0]).name == "tailgan" and "..." not in words:
                out.append(shlex.join(words[1:]))
    return out


BASH = blocks("bash")
COMMANDS = [(b, cmd) for b in BASH for cmd in command_lines(b.code)]


@pytest.mark.parametrize(("block", "command"), COMMANDS, ids=[f"{b.id}:{c.split()[0]}" for b, c in COMMANDS])
def test_command_line_parses(block: Block, command: str):
    argv = shlex.split(cut_budget(command))
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            parse_args(build_parser(command_of(argv)), argv)
    except SystemExit:
        pytest.fail(f"{block.id}: `tailgan {command}` does not parse: {err.getvalue().strip().splitlines()[-1]}")


@pytest.mark.parametrize("block", [b for b in BASH if b.marker == "run"], ids=lambda b: b.id)
def test_bash_example_runs(block: Block, tmp_path, small_evaluator):
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", cut_budget(block.code)], cwd=tmp_path, env=example_env(),
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, f"{block.id} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
