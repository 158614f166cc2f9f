"""Benchmark: the synthetic-data protocol on Fashion-MNIST-LT, ablated, and the amount of synthetic images swept.

Issue 12's generative ablation: for each trained generator (``--generator LABEL=RUN``, a ``tailgan train``
run on ``fashion_mnist_lt`` that held out the classifier's validation split, e.g. a run of
``benchmarks/gan_regularizers.py``), the ``gan+la`` strategy (generated images + the logit-adjusted loss,
the strongest classical loss) over

- filter: none, or keep an image only if the reference classifier (``la`` on the real training part) gives
  its own class p >= 0.9;
- synthetic weight: 1.0 or 0.5 in the loss;
- two-stage: none, or the last 20 % of the steps on real images only with the head re-trained (``head``);

every class filled up to the largest (``--synthetic fill``), LeNet-5, the budget of
``classify_fmnist_lt.py`` (30 epochs, 3 seeds). Then the **amount sweep**: the configuration with the best
*validation* ACSA (never the test set) with ``--synthetic add:N`` images per class for each N of
``--amounts`` (and ``fill``), plotted as test ACSA and tail-3 recall against N, with the real-only ``la``
row (N = 0) and the best classical row of ``classify_fmnist_lt_v2.json`` beside (``--sweep LABEL,...``: only
for these generators). Generators trained with and without a regulariser make it a factor of the ablation.

Resumable: each configuration is a ``run_bench`` report under ``--work``; finished ones are skipped.

    python benchmarks/synthetic_protocol.py --generator ecogan=runs/gan_regularizers/ecogan-dcgan_none_seed0

Writes benchmarks/results/synthetic_protocol.{json,md} and synthetic_protocol_sweep.png.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
from dataclasses import replace
from pathlib import Path

import torch
from _harness import REPO, RESULTS, command, data_root, machine, write_results

from tailgan import load_generator
from tailgan.classify.bench import run_bench
from tailgan.classify.train import ClassifyConfig
from tailgan.data import load_data
from tailgan.errors import TailganError
from tailgan.io import atomic_write_text
from tailgan.report.classify_tables import mean_std

STEM = "synthetic_protocol"
FILTERS = (None, 0.9)
WEIGHTS = (1.0, 0.5)
FINETUNE = ("none", "head")
BASE = ClassifyConfig(arch="lenet5", epochs=30.0)  # classify_fmnist_lt.py's budget


def tag(cfg: ClassifyConfig) -> str:
    f = "none" if cfg.filter is None else f"{cfg.filter:g}"
    return f"filter-{f}_w{cfg.synthetic_weight:g}_ft-{cfg.finetune}_{cfg.synthetic.replace(':', '')}"


REFERENCES: dict = {}  # the reference classifier of each seed, trained once for every configuration


def one(data, label: str, gen, cfg: ClassifyConfig, seeds: int, work: Path) -> dict:
    """One configuration's report (trained now or read back); the mean validation ACSA beside its summary."""
    stem = f"{label}_{tag(cfg)}"
    path = work / f"{stem}.json"
    doc = json.loads(path.read_text()) if path.is_file() else None
    row = {"label": label, "filter": cfg.filter, "synthetic_weight": cfg.synthetic_weight, "finetune": cfg.finetune,
           "synthetic": cfg.synthetic}  # fmt: skip
    refused = work / f"{stem}.refused"
    if refused.is_file():
        return {**row, "refused": refused.read_text()}
    if doc is None or not doc.get("complete"):
        try:
            run_bench(data, [], range(seeds), cfg, work, generators={f"gan:{label}": gen}, gan_strategies=("gan+la",),
                      header={"command": "benchmarks/synthetic_protocol.py"}, stem=stem,
                      log=lambda s: print(s, flush=True), references=REFERENCES)  # fmt: skip
        except TailganError as e:  # the guard refused the images: a result of the protocol, recorded as such
            atomic_write_text(refused, str(e))
            return {**row, "refused": str(e)}
        doc = json.loads(path.read_text())
    (r,) = doc["results"]
    return {**row, "valid_acsa": mean_std([x.get("valid_acsa") for x in r["runs"]]),
            **{k: r["summary"].get(k) for k in ("acsa", "macro_f1", "tail_recall")}}  # fmt: skip


def fmt(s: dict | None) -> str:
    return "-" if not s else f"{s['mean']:.4f} ± {s['std']:.4f}"


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        "# The synthetic-data protocol on Fashion-MNIST-LT: ablation and amount sweep (`gan+la`, LeNet-5)",
        "",
        f"- command: `{doc['command']}`",
        f"- date: {doc['date']}; machine: {m['cpu']}, {m['torch_threads']} torch thread(s)",
        f"- budget: LeNet-5, {doc['epochs']:g} epochs of the real training part, {doc['seeds']} seeds; generators: "
        + ", ".join(f"{k} = `{v}`" for k, v in doc["generators"].items()),
        f"- best classical row (classify_fmnist_lt_v2): {doc['classical']}",
        "",
        "## Ablation (fill to the largest class)",
        "",
        "| generator | filter | weight | two-stage | valid ACSA | test ACSA | macro-F1 | tail-3 recall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["ablation"]:
        if "refused" in r:
            lines.append(f"| {r['label']} | {r['filter'] or 'none'} | {r['synthetic_weight']:g} | {r['finetune']} | "
                         f"refused by the guard: {r['refused'].split(' (')[0]} | | | |")  # fmt: skip
            continue
        lines.append(f"| {r['label']} | {r['filter'] or 'none'} | {r['synthetic_weight']:g} | {r['finetune']} | "
                     f"{fmt(r['valid_acsa'])} | {fmt(r['acsa'])} | {fmt(r['macro_f1'])} | "
                     f"{fmt(r['tail_recall'])} |")  # fmt: skip
    lines += ["", "## Amount sweep (the best configuration on validation ACSA)", "",
              "| generator | synthetic | valid ACSA | test ACSA | tail-3 recall |",
              "|---|---|---|---|---|"]  # fmt: skip
    for r in doc["sweep"]:
        if "refused" in r:
            continue
        lines.append(f"| {r['label']} | {r['synthetic']} | {fmt(r['valid_acsa'])} | {fmt(r['acsa'])} | "
                     f"{fmt(r['tail_recall'])} |")  # fmt: skip
    lines += ["", "Plot: `synthetic_protocol_sweep.png`. Configurations are chosen on validation ACSA (the "
              "validation split of the imbalanced training data), never on the test figures shown."]  # fmt: skip
    return "\n".join(lines) + "\n"


def plot(doc: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    swept = False
    for i, label in enumerate(doc["generators"]):
        rows = [r for r in doc["sweep"] if r["label"] == label and r["synthetic"].startswith("add:") and "acsa" in r]
        xs = [int(r["synthetic"].split(":")[1]) for r in rows]
        swept = swept or bool(xs)
        for ax, key in zip(axes, ("acsa", "tail_recall")):
            ax.errorbar(xs, [r[key]["mean"] for r in rows], [r[key]["std"] for r in rows], marker="o", color=f"C{i}",
                        capsize=3, label=label)  # fmt: skip
    for ax, key, title in zip(axes, ("acsa", "tail_recall"), ("test ACSA", "tail-3 recall")):
        lines = (("best classical: " + doc.get("classical_name", "?"), doc.get("classical_summary"), "--"),
                 ("la, no synthetic images", doc.get("la_summary"), ":"))  # fmt: skip
        for name, summary, ls in lines:
            if summary and summary.get(key):
                ax.axhline(summary[key]["mean"], color="gray", ls=ls, label=name)
        if swept:  # the reference lines alone have no amounts (a log axis of them fails): --sweep none
            ax.set_xscale("log")
        ax.set_xlabel("synthetic images added per class")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root())
    p.add_argument("--generator", action="append", required=True, metavar="LABEL=RUN")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--amounts", default="100,300,1000,3000", help="images added per class in the sweep")
    p.add_argument("--sweep", default="", metavar="LABEL,...",
                   help="generators that get the amount sweep (default: all; 'none': ablation only)")  # fmt: skip
    p.add_argument("--epochs", type=float, default=30.0, help="classifier budget (30: classify_fmnist_lt.py's)")
    p.add_argument("--guard-refuse", default="0.15", help="the guard's refusal threshold ('none': never refuse)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=str(REPO / "runs" / STEM))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    refuse = None if args.guard_refuse == "none" else float(args.guard_refuse)
    base = replace(BASE, epochs=args.epochs, guard_refuse=refuse)
    data = load_data("fashion_mnist_lt", root=args.root)
    work, out = Path(args.work), Path(args.out)
    if bad := [g for g in args.generator if "=" not in g]:
        p.error(f"--generator {bad[0]!r}: give LABEL=RUN, e.g. --generator ecogan=runs/gan_regularizers/...")
    generators = dict(item.split("=", 1) for item in args.generator)
    swept = set(generators) if not args.sweep else set() if args.sweep == "none" else set(args.sweep.split(","))
    if unknown := swept - set(generators):
        p.error(f"--sweep {sorted(unknown)[0]!r} is not a --generator label; give one of {', '.join(generators)}")
    classical = json.loads((RESULTS / "classify_fmnist_lt_v2.json").read_text())
    best = max((r for r in classical["results"] if not r.get("generative")), key=lambda r: r["summary"]["acsa"]["mean"])
    doc = {"command": command(__file__), "machine": machine(),
           "date": datetime.date.today().isoformat(), "seeds": args.seeds, "epochs": args.epochs,
           "generators": generators,
           "classical": f"{best['strategy']} {fmt(best['summary']['acsa'])} ACSA, tail-3 recall "
                        f"{fmt(best['summary']['tail_recall'])}",
           "classical_summary": best["summary"], "classical_name": best["strategy"],
           "la_summary": next((r["summary"] for r in classical["results"] if r["strategy"] == "la"), None),
           "ablation": [], "sweep": []}  # fmt: skip
    for label, run in generators.items():
        gen = load_generator(run, device="cpu")
        for f, w, ft in itertools.product(FILTERS, WEIGHTS, FINETUNE):
            cfg = replace(base, filter=f, synthetic_weight=w, finetune=ft)
            doc["ablation"].append(one(data, label, gen, cfg, args.seeds, work))
            write_results(out, STEM, doc, render(doc))
        mine = [r for r in doc["ablation"] if r["label"] == label and "refused" not in r]
        if not mine or label not in swept:
            continue
        top = max(mine, key=lambda r: r["valid_acsa"]["mean"])  # chosen on validation, never on test
        for amount in [f"add:{n}" for n in args.amounts.split(",") if n] + ["fill"]:
            cfg = replace(base, filter=top["filter"], synthetic_weight=top["synthetic_weight"],
                          finetune=top["finetune"], synthetic=amount)  # fmt: skip
            doc["sweep"].append(one(data, label, gen, cfg, args.seeds, work))
            write_results(out, STEM, doc, render(doc))
    plot(doc, out / f"{STEM}_sweep.png")
    print(render(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
