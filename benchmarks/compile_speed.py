"""Benchmark: does ``torch.compile`` pay for its compile time on the CPU? (issue 10)

For tailgan's classifier networks (LeNet-5, ResNet-32; batch 128, 32 px, SGD) in fp32 and in the fast mode
(bf16 autocast + channels-last), the optimizer step eager against the same step with the network compiled
(``torch.compile``, inductor): the compile time (first steps), the steady-state steps/s, and the number of
steps after which compiling has paid for itself. GAN recipes with a gradient penalty cannot be compiled as
a whole (aot_autograd refuses double backward), so they are not in this table.

    python benchmarks/compile_speed.py --threads 1
    python benchmarks/compile_speed.py --archs lenet5 --modes fp32 --steps 2 --out /tmp/cs   # a check

Writes benchmarks/results/compile_speed.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F
from _harness import RESULTS, command, machine, now, write_results

from tailgan.nets.classifiers import build_classifier
from tailgan.nets.precision import resolve_precision

STEM = "compile_speed"


def step_fn(arch: str, mode: str, compiled: bool):
    channels = 1 if arch == "lenet5" else 3
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, channels, 32, 32, generator=gen)
    y = torch.randint(0, 10, (128,), generator=gen)
    torch.manual_seed(0)
    net = build_classifier(arch, 10, channels)
    policy, _ = resolve_precision("auto" if mode == "fast" else "fp32", torch.device("cpu"))
    policy.module(net)
    x = policy.tensor(x)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4, foreach=True)
    model = torch.compile(net) if compiled else net

    def step() -> None:
        with policy.autocast():
            logits = model(x)
        loss = F.cross_entropy(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def measure(arch: str, mode: str, compiled: bool, steps: int) -> dict:
    step = step_fn(arch, mode, compiled)
    t0 = time.perf_counter()
    step()
    step()  # compilation happens in the first calls (forward and backward graphs)
    first = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return {"first_two_steps_s": first, "step_s_median": statistics.median(times)}


def measure_row(arch: str, mode: str, steps: int) -> dict:
    """Eager against compiled for one network and mode; a compiler missing or failing is a result too."""
    eager = measure(arch, mode, False, steps)
    try:
        comp = measure(arch, mode, True, steps)
        error = None
    except Exception as e:
        comp, error = None, f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
    row = {"arch": arch, "mode": mode, "eager": eager, "compiled": comp, "error": error}
    if comp:
        gain = eager["step_s_median"] - comp["step_s_median"]
        overhead = comp["first_two_steps_s"] - eager["first_two_steps_s"]
        row["speedup"] = eager["step_s_median"] / comp["step_s_median"]
        row["break_even_steps"] = overhead / gain if gain > 0 else None
    return row


def markdown(doc: dict) -> str:
    lines = [f"# torch.compile on the CPU: classifier steps ({doc['date'][:10]}, torch {doc['torch']}, "
             f"{doc['machine']['torch_threads']} thread)", "", f"Command: `{doc['command']}`", "",
             "| network | mode | eager step (s) | compiled step (s) | speed-up | compile overhead (s) "
             "| pays off after |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in doc["rows"]:
        if r["compiled"] is None:
            lines.append(f"| {r['arch']} | {r['mode']} | {r['eager']['step_s_median']:.4f} | failed | - | - | "
                         f"{r['error']} |")  # fmt: skip
            continue
        over = r["compiled"]["first_two_steps_s"] - r["eager"]["first_two_steps_s"]
        be = f"{r['break_even_steps']:.0f} steps" if r["break_even_steps"] else "never"
        lines.append(f"| {r['arch']} | {r['mode']} | {r['eager']['step_s_median']:.4f} | "
                     f"{r['compiled']['step_s_median']:.4f} | {r['speedup']:.2f}x | {over:.1f} | {be} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--archs", default="lenet5,resnet32", help="comma list of lenet5, resnet32")
    p.add_argument("--modes", default="fp32,fast", help="comma list of fp32, fast")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    for arch in args.archs.split(","):
        for mode in args.modes.split(","):
            rows.append(measure_row(arch, mode, args.steps))
            print(json.dumps(rows[-1]), flush=True)
    doc = {"command": command(__file__, argv), "torch": torch.__version__, "date": now(), "machine": machine(),
           "rows": rows}  # fmt: skip
    write_results(args.out, STEM, doc, markdown(doc))
    print(markdown(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
