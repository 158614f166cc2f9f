"""ECOGAN README table 3 on Fashion-MNIST-LT, at a CPU budget: BAGAN, EBGAN +/- pre-training, ECOGAN +/- sampling.

Every configuration trains the same number of generator steps (32 px, batch 64, DCGAN-like nets at
``model.conv_dim=32``), keeps a checkpoint every quarter of the run, and is evaluated at each one with
tailgan's Fashion-MNIST evaluator against the long-tailed training set with label-matched fakes
(``ref=train-lt``, ECOGAN's protocol). The table reports FID and IS at the best-FID step, plus per-class
KID and label accuracy of the three rarest classes.

    python benchmarks/seed_table3.py --steps 600 --jobs 2      # trains (skips finished runs), evaluates, writes
    python benchmarks/seed_table3.py --steps 2 --only "ECOGAN samp" --out /tmp/st3 --results /tmp/st3   # a check

Writes ``--results``/seed_table3.{json,md} (default benchmarks/results); the run folders go to ``--out``.
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from _harness import RESULTS, data_root, machine, train_or_resume, write_results

CONFIGS = {
    # name: (preset, extra overrides)
    "BAGAN": ("bagan", []),
    "EBGAN pre": ("ebgan", ["options.pretrain=true"]),
    "EBGAN no-pre": ("ebgan", ["options.pretrain=false"]),
    "ECOGAN no-samp": ("ecogan-dcgan", ["sampling=uniform"]),
    "ECOGAN samp": ("ecogan-dcgan", ["sampling=balanced"]),
}
PUBLISHED_FMNIST = {  # ECOGAN README table 3, FashionMNIST_LT (FID / IS, 64 px, torchvision Inception)
    "BAGAN": (92.61, 2.81), "EBGAN pre": (27.40, 2.43), "EBGAN no-pre": (30.10, 2.38),
    "ECOGAN no-samp": (32.91, 2.91), "ECOGAN samp": (20.02, 2.63),
}  # fmt: skip


def slug(name: str) -> str:
    return name.lower().replace(" ", "_").replace("-", "")


def train_one(name: str, args: argparse.Namespace) -> tuple[str, float]:
    """Train (or resume) the run of ``name`` to ``--steps``, keeping a checkpoint every quarter; its output is
    appended to OUT/<slug>.log. Returns the seconds it took (0: it was finished)."""
    preset, extra = CONFIGS[name]
    every = max(args.steps // 4, 1)
    overrides = ["optim.batch_size=64", "model.conv_dim=32", f"ckpt_every={every}", f"sample_every={every}",
                 "keep_checkpoints=true", "log_every=50", f"seed={args.seed}", *extra]  # fmt: skip
    if preset in ("bagan", "ebgan"):
        overrides.append(f"options.pretrain_epochs={args.pretrain_epochs}")
    train_args = ["--method", preset, "--data", "fashion_mnist_lt", "--root", args.root]
    seconds = train_or_resume(Path(args.out) / slug(name), args.steps, train_args, overrides, threads=args.threads,
                              log=Path(args.out) / f"{slug(name)}.log")  # fmt: skip
    return name, seconds


def evaluate_run(name: str, args: argparse.Namespace, data, extractor) -> dict:
    from tailgan import load_generator
    from tailgan.metrics import evaluate

    run = Path(args.out) / slug(name)
    rare = sorted(range(data.num_classes), key=lambda c: data.train.counts()[c])[:3]
    points = []
    for ckpt in sorted((run / "checkpoints").glob("step_*.pt")):
        g = load_generator(run, checkpoint=str(ckpt))
        r = evaluate(g, data, metrics=["fid", "is", "kid", "labelacc"], ref="train-lt", seed=args.seed,
                     extractor=extractor, kid_subset_size=100)  # fmt: skip
        per_class = {p["class"]: p for p in r["per_class"]}
        points.append({
            "step": g.step, "fid": r["overall"]["fid"], "is": r["overall"]["is"], "kid": r["overall"]["kid"],
            "labelacc": r["overall"]["labelacc"],
            "rare": {data.classes[c]: {"n_train": data.train.counts()[c], "kid": per_class[c].get("kid"),
                                       "labelacc": per_class[c].get("labelacc")} for c in rare},
            "extractor": r["extractor"], "num_fake": r["num_fake"],
        })  # fmt: skip
        print(f"{name:15s} step {g.step:5d}: FID {points[-1]['fid']:.2f} IS {points[-1]['is']:.2f}", flush=True)
    best = min(points, key=lambda p: p["fid"])
    return {"name": name, "preset": CONFIGS[name][0], "overrides": CONFIGS[name][1], "best": best, "curve": points}


def write_table(rows: list[dict], args: argparse.Namespace, seconds: dict) -> None:
    meta = {"steps": args.steps, "batch_size": 64, "resolution": 32, "conv_dim": 32,
            "pretrain_epochs": args.pretrain_epochs, "evaluator": getattr(args, "evaluator", None),
            "threads_per_run": args.threads, "seed": args.seed,
            "train_seconds": seconds, "machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "protocol": "ref=train-lt: fakes carry the LT training labels, as many as its 10,500 images; "
                        "tailgan's Fashion-MNIST evaluator features (not Inception); best step by FID"}  # fmt: skip
    rare_names = list(rows[0]["best"]["rare"])
    lines = [
        "# Seed table 3 on Fashion-MNIST-LT at a CPU budget",
        "",
        f"{meta['date']}; {meta['machine']['cpu']}, {meta['machine']['nproc']} cores, "
        f"torch {meta['machine']['torch']}, "
        f"{args.threads} thread(s) per run. Every configuration: {args.steps} generator steps, batch 64, 32 px, "
        f"DCGAN-like nets at conv_dim 32; autoencoder pre-training {args.pretrain_epochs} epochs. FID / IS with "
        "tailgan's Fashion-MNIST evaluator (its penultimate features and softmax), `ref=train-lt`, best step of "
        f"{', '.join(str(p['step']) for p in rows[0]['curve'])}. Published: the ECOGAN README (64 px, Inception, "
        "~25k G steps) for orientation only: the extractor and the budget differ, so only the ordering compares.",
        "",
        "| method | FID | IS | best step | published FID / IS | "
        + " | ".join(f"KID {n} (n={rows[0]['best']['rare'][n]['n_train']}) | label acc {n}" for n in rare_names) + " |",
        "|---|---|---|---|---|" + "---|---|" * len(rare_names),
    ]  # fmt: skip
    for r in rows:
        b = r["best"]
        pub = PUBLISHED_FMNIST[r["name"]]
        cells = " | ".join(f"{b['rare'][n]['kid']:.4f} | {b['rare'][n]['labelacc']:.3f}" for n in rare_names)
        lines.append(f"| {r['name']} | {b['fid']:.2f} | {b['is']:.2f} | {b['step']} | {pub[0]} / {pub[1]} | {cells} |")
    order = [r["name"] for r in sorted(rows, key=lambda r: r["best"]["fid"])]
    lines += ["", f"Measured FID ordering (best first): {' < '.join(order)}.",
              "Published ordering: ECOGAN samp < EBGAN pre < EBGAN no-pre < ECOGAN no-samp < BAGAN."]  # fmt: skip
    write_results(args.results, "seed_table3", {"meta": meta, "rows": rows}, "\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--pretrain-epochs", type=int, default=5)
    p.add_argument("--out", default="runs/seed_table3", help="the run folders")
    p.add_argument("--results", default=str(RESULTS), help="where seed_table3.{json,md} go")
    p.add_argument("--root", default=data_root())
    p.add_argument("--jobs", type=int, default=2, help="runs trained at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", help="configuration names to train (default: all)")
    p.add_argument("--skip-train", action="store_true")
    args = p.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    names = args.only or list(CONFIGS)
    seconds = {}
    if not args.skip_train:
        with ThreadPoolExecutor(args.jobs) as pool:
            for name, sec in pool.map(lambda n: train_one(n, args), names):
                seconds[name] = round(sec, 1)
                print(f"trained {name} in {sec:.0f} s", flush=True)
    torch.set_num_threads(args.threads)
    from tailgan.data import load_data
    from tailgan.metrics.evaluator import get_evaluator

    data = load_data("fashion_mnist_lt", root=args.root, resolution=32)
    # the evaluator trained at the runs' pixels (32 px): resizing 28 -> 32 -> 28 would cost it accuracy
    extractor = get_evaluator(data.config)
    trained = [n for n in CONFIGS if any((Path(args.out) / slug(n) / "checkpoints").glob("step_*.pt"))]
    if missing := [n for n in CONFIGS if n not in trained]:
        print(f"not trained yet, left out of the table: {', '.join(missing)}", flush=True)
    rows = [evaluate_run(n, args, data, extractor) for n in trained]
    args.evaluator = extractor.info
    write_table(rows, args, seconds)


if __name__ == "__main__":
    main()
