"""Benchmark: the joint CycleGAN + classifier (ALT / AUG) against the classical rows, the seed's protocol.

The seed ("Mitigating Dataset Imbalance via Joint Generation and Classification") pits a majority class of
10,000 images against a minority of 50 ... 500 (CelebA), 12 ... 125 (CUB) or 25 ... 100 zebras. Here:
two Fashion-MNIST pairs, majority 6,000 (all its training images), minority 25, 50, 100, 200 (a seeded
choice), the two classes' 1,000 + 1,000 test images untouched:

- Sneaker (7) -> Ankle boot (9): both footwear seen side-on on the same background; translating a sneaker
  into a boot only has to grow the shaft, the sole and outline stay (the horse -> zebra situation: shared
  context, a change of content);
- Pullover (2) -> Coat (4): both long-sleeved upper-body garments of the same silhouette; a coat adds a
  front opening, buttons and a collar.

Rows: Vanilla, TS, CS, US, OS, US+CS, OS+CS, SMOTE, CBL with beta 0.9 / 0.99 / 0.999 / 0.9999, ALT
(``cyclegan-alt``), AUG (``cyclegan-aug``); ACSA and minority F1 (the seed's F1), mean ± std over seeds,
in the seed's layout (one row per method, one column per minority size), with the seed's CelebA numbers
beside for orientation (its 50 / 100 / 200 columns; it has no 25).

Protocol (as ``tailgan classify``): LeNet-5, the same classifier optimizer and step budget for every row,
model selection on a stratified 10 % validation split carved from the imbalanced training data, the test
set used once. CycleGAN schedule (sized for one CPU thread; the original: 200 epochs at batch 1):
``--joint-gan-steps`` CycleGAN updates (ResNet-6 generator, ``--ngf`` wide, PatchGAN, batch
``--joint-batch-size`` per domain, 50-image pools, LSGAN, beta 10, alpha 5, Adam 2e-4 with linear decay
over the second half) before the classifier trains; ALT then makes one CycleGAN update (with L_cls into
the generators) per classifier update. The translation grid of each (pair, size) is written beside.

Classical rows get ``--seeds`` seeds everywhere; ALT / AUG get them on the two smallest sizes and
``--joint-seeds-large`` (default 1) on the others when CPU time is short, and the table says so.

Resumable: every finished row (all its seeds) is written to the JSON at once; a rerun with the same
settings skips the rows it holds (other settings: a new ``--stem``). ``--quick`` checks the whole path
in a minute (tiny budget, one pair, majority 300, one size, into a temporary folder).

    python benchmarks/joint_binary.py                # the full table (hours on one thread; resumable)
    python benchmarks/joint_binary.py --quick        # a tiny end-to-end check

    python benchmarks/joint_binary.py --multiclass   # the K-class rows on fashion_mnist_lt

Writes benchmarks/results/joint_binary.{json,md} and joint_binary_grids/<pair>_<n>/<strategy>_seed<N>.png
(``--multiclass``: joint_binary_multiclass.{json,md} and its grids).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from _harness import RESULTS, ResultsTable, command, data_root, machine, write_results

from tailgan.baselines.joint import binary_pair
from tailgan.classify.bench import config_differences, run_bench
from tailgan.classify.train import ClassifyConfig, train_and_score
from tailgan.data import load_data, to_float
from tailgan.explain.heatmaps import explain_heatmaps
from tailgan.nets.classifier_io import load_classifier, save_classifier
from tailgan.outputs import pid_alive
from tailgan.report.classify_tables import mean_std

STEM = "joint_binary"
PAIRS = {"sneaker-ankleboot": (7, 9), "pullover-coat": (2, 4)}
MINORITY = (25, 50, 100, 200)
CLASSICAL = ("vanilla", "ts", "cs", "us", "os", "us+cs", "os+cs", "smote",
             "cbl:0.9", "cbl:0.99", "cbl:0.999", "cbl:0.9999")  # fmt: skip
JOINT = ("cyclegan-alt", "cyclegan-aug")
HEATMAP_ROWS = ("vanilla", "cs", "cyclegan-alt", "cyclegan-aug")  # classifiers kept at the smallest size
ROW_NAMES = {"vanilla": "Vanilla", "ts": "TS", "cs": "CS", "us": "US", "os": "OS", "us+cs": "US+CS",
             "os+cs": "OS+CS", "smote": "SMOTE", "cbl:0.9": "CBL (beta=0.9)", "cbl:0.99": "CBL (beta=0.99)",
             "cbl:0.999": "CBL (beta=0.999)", "cbl:0.9999": "CBL (beta=0.9999)", "cyclegan-alt": "ALT",
             "cyclegan-aug": "AUG"}  # fmt: skip
# the seed's CelebA table (majority 10,000) at minority 50 / 100 / 200, as printed (its metric: ACSA)
SEED_CELEBA = {"vanilla": (0.1500, 0.5220, 0.7740), "ts": (0.1560, 0.6300, 0.7880), "cs": (0.7825, 0.8012, 0.8975),
               "us": (0.8029, 0.8491, 0.9036), "os": (0.5805, 0.7333, 0.8749), "us+cs": (0.8041, 0.8463, 0.9019),
               "os+cs": (0.7644, 0.8249, 0.8915), "smote": (0.6208, 0.7685, 0.8807),
               "cbl:0.9": (0.6736, 0.7771, 0.8867), "cbl:0.99": (0.7012, 0.8021, 0.8938),
               "cbl:0.999": (0.7692, 0.8250, 0.8922), "cbl:0.9999": (0.7885, 0.8099, 0.8977),
               "cyclegan-alt": (0.8240, 0.8520, 0.8900), "cyclegan-aug": (0.8060, 0.8740, 0.9140)}  # fmt: skip


def settings_key(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def row_key(row: dict) -> str:
    """PAIR|MINORITY|STRATEGY: a row's name in the table."""
    return f"{row['pair']}|{row['minority']}|{row['strategy']}"


def rows_as_list(doc: dict) -> dict:
    """A table written before benchmarks/_harness.py (its rows a dict by key) in the list layout."""
    if isinstance(doc.get("rows"), dict):
        doc["rows"] = list(doc["rows"].values())
    return doc


def row_seeds(strategy: str, n_minority: int, sizes: list[int], seeds: int, joint_large: int) -> list[int]:
    """Seeds of a row: all of them, except ALT / AUG beyond the two smallest sizes (``joint_large``)."""
    if strategy in JOINT and n_minority not in sorted(sizes)[:2]:
        return list(range(min(seeds, joint_large)))
    return list(range(seeds))


def run_row(data, strategy: str, seeds: list[int], cfg: ClassifyConfig, keep: Path | None = None) -> dict:
    """Every seed of one row; the CPU time (process time, all threads) and wall time it took. ``keep``: save
    seed 0's selected classifier there (``tailgan explain`` format)."""
    runs, cpu0, wall0 = [], time.process_time(), time.perf_counter()
    for seed in seeds:

        def save(model, seed=seed):
            if keep is not None and seed == 0:
                save_classifier(model, keep, arch=cfg.arch, num_classes=2, in_channels=data.train.images.shape[1],
                                classes=data.classes, image_size=data.train.images.shape[-1])  # fmt: skip

        r = train_and_score(data, strategy, seed, cfg, log=lambda s: print(s, flush=True), keep_model=save)
        runs.append({k: r[k] for k in ("seed", "acsa", "macro_f1", "minority_f1", "accuracy", "selected_step",
                                       "steps", "valid_acsa", "recall_per_class", "f1_per_class",
                                       "confusion_matrix", "seconds") if k in r})  # fmt: skip
        if "joint" in r:
            runs[-1]["joint"] = r["joint"]
    return {
        "strategy": strategy,
        "seeds": seeds,
        "runs": runs,
        "acsa": mean_std([r["acsa"] for r in runs]),
        "minority_f1": mean_std([r["minority_f1"] for r in runs]),
        "cpu_seconds": round(time.process_time() - cpu0, 1),
        "wall_seconds": round(time.perf_counter() - wall0, 1),
    }


def heatmap_figure(data, files: dict[str, Path], path: Path) -> None:
    """Grad-CAM and RISE maps of the kept classifiers side by side on the first 3 test images of each class."""
    models = {ROW_NAMES[s]: load_classifier(f)[0] for s, f in files.items()}
    idx = torch.cat([torch.nonzero(data.test.labels == c).flatten()[:3] for c in (1, 0)])
    images = to_float(data.test.images[idx])
    titles = [data.classes[int(c)] for c in data.test.labels[idx]]
    explain_heatmaps(models, images, path, targets=data.test.labels[idx], row_titles=titles, n_masks=1000)


def _cell(stat: dict | None, n_seeds: int, full: int) -> str:
    if stat is None:
        return "-"
    mark = "" if n_seeds == full else f" ({n_seeds} seed)"
    return f"{stat['mean']:.4f} ± {stat['std']:.4f}{mark}"


def render(doc: dict) -> str:
    """The seed's layout: per pair and metric, one row per method, one column per minority size; the seed's
    CelebA ACSA beside; then where ALT / AUG beat, tie or lose to the best classical row."""
    s = doc["settings"]
    sizes, full = s["minority"], s["seeds"]
    lines = [f"# Joint CycleGAN + classifier vs classical rebalancing, Fashion-MNIST pairs (majority {s['majority']})",
             "", f"- command: `{doc['command']}`", f"- budget: {doc['budget']}",
             f"- machine: {doc['machine']['cpu']}, {doc['machine']['torch_threads']} torch thread(s)",
             f"- complete: {doc['complete']}", ""]  # fmt: skip
    rows = {row_key(r): r for r in doc["rows"]}
    for pair in s["pairs"]:
        for metric, title in (("acsa", "ACSA"), ("minority_f1", "minority-class F1")):
            lines += [f"## {pair}: {title}", ""]
            head = " | ".join(f"n_B = {n}" for n in sizes)
            seed_head = " | seed CelebA 50 | 100 | 200" if metric == "acsa" else ""
            lines += [f"| method | {head}{seed_head} | CPU s (all sizes) |",
                      "| --- | " + " | ".join("---" for _ in sizes) + (" | --- | --- | ---" if seed_head else "")
                      + " | --- |"]  # fmt: skip
            for strat in [*CLASSICAL, *JOINT]:
                if strat not in s["strategies"]:
                    continue
                cells, cpu = [], 0.0
                for n in sizes:
                    row = rows.get(f"{pair}|{n}|{strat}")
                    cells.append(_cell(row and row[metric], len(row["seeds"]) if row else 0, full))
                    cpu += row["cpu_seconds"] if row else 0.0
                seed = " | " + " | ".join(f"{v:.4f}" for v in SEED_CELEBA[strat]) if seed_head else ""
                lines.append(f"| {ROW_NAMES[strat]} | " + " | ".join(cells) + f"{seed} | {cpu:.0f} |")
            lines.append("")
        lines += closing(doc["settings"]["minority"], rows, pair) + [""]
    lines += [f"- {n}" for n in doc["notes"]]
    return "\n".join(lines) + "\n"


def closing(sizes: list[int], rows: dict[str, dict], pair: str) -> list[str]:
    """Per minority size: ALT and AUG against the best classical row on mean ACSA (a tie: within the larger
    of the two standard deviations)."""
    out = []
    for n in sizes:
        classical = [(rows[k]["acsa"]["mean"], rows[k]["acsa"]["std"], s) for s in CLASSICAL
                     if (k := f"{pair}|{n}|{s}") in rows]  # fmt: skip
        if not classical:
            continue
        best, best_std, name = max(classical)
        parts = []
        for strat in JOINT:
            row = rows.get(f"{pair}|{n}|{strat}")
            if row is None:
                continue
            m, sd = row["acsa"]["mean"], row["acsa"]["std"]
            verdict = "ties" if abs(m - best) <= max(sd, best_std) else ("beats" if m > best else "loses to")
            parts.append(f"{ROW_NAMES[strat]} {m:.4f} {verdict} {ROW_NAMES[name]} {best:.4f} ({m - best:+.4f})")
        if parts:
            out.append(f"- {pair}, n_B = {n}: " + "; ".join(parts) + ".")
    return out


def multiclass(args: argparse.Namespace, argv: list[str] | None) -> int:
    """The K-class rows (StarGAN-style translator into the tail classes) on fashion_mnist_lt; resumable: the
    strategies already in the report are kept."""
    out = Path(args.out or RESULTS)
    torch.set_num_threads(args.threads)
    epochs = 30.0 if args.epochs == 20.0 else args.epochs  # classify_fmnist_lt's budget unless given
    cfg = ClassifyConfig(
        arch="lenet5", epochs=epochs, precision=args.precision, joint_gan_steps=args.joint_gan_steps,
        joint_batch_size=args.joint_batch_size, joint_options=(f"options.ngf={args.ngf}", f"options.ndf={args.ngf}"),
        joint_grid_dir=str(out / f"{args.stem}_multiclass_grids"), joint_cls_batch=args.joint_cls_batch,
    )  # fmt: skip
    stem = f"{args.stem}_multiclass"
    report = out / f"{stem}.json"
    previous = json.loads(report.read_text()) if report.is_file() else None
    done = {r["strategy"] for r in (previous or {}).get("results", [])}
    todo = [s for s in ("stargan-alt", "stargan-aug") if s not in done]
    data = load_data("fashion_mnist_lt", root=args.root)
    header = {
        "command": command(__file__, argv),
        "budget": (
            f"LeNet-5, {epochs:g} epochs of the real LT training part (as classify_fmnist_lt); "
            f"{args.joint_gan_steps} translator updates first (ngf {args.ngf}, batch {args.joint_batch_size}), "
            "targets: the classes below the median count; classifier batch: "
            + (
                "128 real images + their translations per update, lr 0.05"
                if args.joint_cls_batch == "classifier"
                else f"the translator's {args.joint_batch_size} real + {args.joint_batch_size} translated, lr scaled"
            )
        ),
        "data": "fashion_mnist_lt",
    }
    notes = ["Compare with benchmarks/results/classify_fmnist_lt.md (same data, classifier and step budget)."]
    run_bench(data, todo, range(args.seeds), cfg, out, header=header, notes=notes, stem=stem, previous=previous,
              log=lambda s: print(s, flush=True))  # fmt: skip
    print(f"wrote {out / (stem + '.md')}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/raw")
    p.add_argument("--pairs", default=",".join(PAIRS), help=f"comma list of {', '.join(PAIRS)}")
    p.add_argument("--minority", default=",".join(map(str, MINORITY)), help="minority training counts")
    p.add_argument("--majority", type=int, default=6000)
    p.add_argument("--strategies", default=",".join([*CLASSICAL, *JOINT]), help="rows (comma list)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--joint-seeds-large", type=int, default=1, help="ALT/AUG seeds beyond the two smallest sizes")
    p.add_argument("--epochs", type=float, default=20.0, help="classifier passes over the real training part")
    p.add_argument("--joint-gan-steps", type=int, default=1000)
    p.add_argument("--joint-batch-size", type=int, default=8)
    p.add_argument("--ngf", type=int, default=16, help="generator and discriminator width")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"))
    p.add_argument("--joint-cls-batch", default="classifier", choices=("classifier", "translator"),
                   help="ALT/AUG classifier batch (tailgan classify --joint-cls-batch); the committed binary "
                   "tables used translator")  # fmt: skip
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", help="output folder (default benchmarks/results; --quick: a temporary folder)")
    p.add_argument("--stem", default=STEM)
    p.add_argument("--quick", action="store_true", help="a tiny end-to-end check (minutes), not a result")
    p.add_argument(
        "--multiclass",
        action="store_true",
        help="instead: stargan-alt / stargan-aug on fashion_mnist_lt (K = 10), the budget of "
        "benchmarks/classify_fmnist_lt.py (LeNet-5, 30 epochs), into <stem>_multiclass.{json,md}",
    )
    p.add_argument(
        "--merge",
        metavar="STEM",
        help="fold the table <STEM>.json (same settings, other pairs: a second process run with --pairs and "
        "--stem STEM on the other core) into --stem, with its grids, kept classifiers and heat maps, and exit",
    )
    return p


def open_table(args: argparse.Namespace, cfg: ClassifyConfig, argv: list[str] | None) -> ResultsTable:
    """The table in ``--out`` with this call's header; its rows are kept when it was made with the same settings
    (ClassifyConfig fields added since, at their defaults, count as the same), else it stops."""
    settings = {"pairs": args.pair_list, "minority": args.sizes, "majority": args.majority,
                "strategies": args.strategy_list, "seeds": args.seeds, "joint_seeds_large": args.joint_seeds_large,
                "config": json.loads(json.dumps(asdict(cfg)))}  # fmt: skip
    path = args.out / f"{args.stem}.json"
    old = json.loads(path.read_text())["settings"] if path.is_file() else None
    changed = old is not None and settings_key(old) != settings_key(settings)
    if changed and (any(old.get(k) != v for k, v in settings.items() if k != "config")
                    or config_differences(old.get("config"), cfg)):  # fmt: skip
        raise SystemExit(f"{path} was made with other settings; pass --stem NAME for a new table (or delete it)")
    total = len(args.pair_list) * len(args.sizes) * len(args.strategy_list)
    header = {
        "settings": settings, "settings_key": settings_key(settings), "command": command(__file__, argv),
        "machine": machine(),
        "budget": (
            f"LeNet-5, {args.epochs:g} epochs of the real training part for every row (SGD lr {cfg.lr}, batch "
            f"{cfg.batch_size}); ALT/AUG: {args.joint_gan_steps} CycleGAN updates first (ResNet-6 ngf "
            f"{args.ngf}, PatchGAN ndf {args.ngf}, batch {args.joint_batch_size} per domain, precision "
            f"{args.precision}), ALT one more per classifier update; classifier batch: {args.joint_cls_batch} "
            "(tailgan classify --joint-cls-batch)"
        ),
        "notes": table_notes(args),
    }  # fmt: skip
    complete = lambda doc: doc.update(complete=len(doc["rows"]) == total)  # noqa: E731
    return ResultsTable(args.out, args.stem, render, key=row_key, header=header, upgrade=rows_as_list,
                        shared=("claims",), derive=complete)  # fmt: skip


def table_notes(args: argparse.Namespace) -> list[str]:
    large = f"; ALT/AUG {args.joint_seeds_large} beyond the two smallest sizes (marked)"
    return [
        "Model selection on a stratified 10 % validation split of the imbalanced training data; test set "
        f"(1,000 images per class) used once. Seeds: {args.seeds} per row"
        + (large if args.joint_seeds_large < args.seeds else ""),
        "The seed's CelebA columns (majority 10,000, another dataset, its own protocol) are for orientation.",
        "us+cs / os+cs resample half-way and weight by inverse frequency (tailgan.classify.strategies).",
        f"Translation grids (rows: real A, G_AB(A), cycled back, real B, G_BA(B), cycled back): {args.stem}_grids/.",
        f"Heat maps (Grad-CAM, RISE; seed 0, smallest minority size): {args.stem}_heatmaps_<pair>.png; the "
        f"classifiers behind them: {args.stem}_classifiers/ (`tailgan explain` reads them).",
    ]


def claim(table: ResultsTable, key: str) -> bool:
    """Claim the row ``key`` for this process (several may share the table), unless it is done or another live
    process has it."""
    with table.locked() as doc:
        other = doc.get("claims", {}).get(key)
        if key in table or (other is not None and other != os.getpid() and pid_alive(other)):
            print(f"skip {key} ({'done' if key in table else f'running in process {other}'})", flush=True)
            return False
        doc.setdefault("claims", {})[key] = os.getpid()
        table.save()
    return True


def measure(table: ResultsTable, data, pair: str, n: int, strat: str, args: argparse.Namespace, cfg) -> None:
    """The row of ``strat`` at minority size ``n`` of ``pair``, unless done or claimed by another process."""
    key = f"{pair}|{n}|{strat}"
    if not claim(table, key):
        return
    seeds = row_seeds(strat, n, args.sizes, args.seeds, args.joint_seeds_large)
    grids = args.out / f"{args.stem}_grids" / f"{pair}_{n}"
    row_cfg = replace(cfg, joint_grid_dir=str(grids)) if strat in JOINT else cfg
    keep = kept_file(args, pair, n, strat) if n == min(args.sizes) and strat in HEATMAP_ROWS else None
    print(f"== {key} seeds {seeds}", flush=True)
    table.add({"pair": pair, "minority": n, **run_row(data, strat, seeds, row_cfg, keep)})
    with table.locked() as doc:
        doc["claims"].pop(key, None)
        table.save()


def kept_file(args: argparse.Namespace, pair: str, n: int, strat: str) -> Path:
    return args.out / f"{args.stem}_classifiers" / f"{pair}_{n}_{strat}.pt"


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    if args.multiclass:
        return multiclass(args, argv)
    if args.merge:
        return merge(Path(args.out or RESULTS), args.stem, args.merge)
    if args.quick:
        args.pairs, args.minority, args.majority, args.seeds = "sneaker-ankleboot", "25", 300, 1
        args.strategies, args.epochs, args.joint_gan_steps, args.ngf = "vanilla,cs,cyclegan-alt,cyclegan-aug", 1, 20, 8
        args.out = args.out or str(Path(tempfile.gettempdir()) / "tailgan_joint_binary_quick")
    args.out = Path(args.out or RESULTS)
    torch.set_num_threads(args.threads)
    args.pair_list = [x for x in args.pairs.split(",") if x]
    args.sizes = [int(x) for x in args.minority.split(",") if x]
    args.strategy_list = [x for x in args.strategies.split(",") if x]
    unknown = [x for x in args.pair_list if x not in PAIRS] + [x for x in args.strategy_list if x not in ROW_NAMES]
    if unknown:
        p.error(f"unknown pair or strategy {unknown[0]!r}")
    cfg = ClassifyConfig(
        arch="lenet5", epochs=args.epochs, precision=args.precision, joint_gan_steps=args.joint_gan_steps,
        joint_batch_size=args.joint_batch_size, joint_options=(f"options.ngf={args.ngf}", f"options.ndf={args.ngf}"),
        joint_cls_batch=args.joint_cls_batch,
    )  # fmt: skip
    table = open_table(args, cfg, argv)
    full = load_data("fashion_mnist", root=args.root)
    for n in args.sizes:  # sizes outermost: a cut-short run still has every pair at the smallest sizes
        for pair in args.pair_list:
            data = binary_pair(full, PAIRS[pair], (args.majority, n), seed=0)
            for strat in args.strategy_list:
                measure(table, data, pair, n, strat, args, cfg)
            files = {s: kept_file(args, pair, n, s) for s in HEATMAP_ROWS if s in args.strategy_list}
            figure = args.out / f"{args.stem}_heatmaps_{pair}.png"
            if n == min(args.sizes) and files and all(f.is_file() for f in files.values()) and not figure.is_file():
                heatmap_figure(data, files, figure)
    with table.locked():
        table.save()
    print(f"wrote {table.path} and {table.path.with_suffix('.md')}")
    return 0


def merge(out: Path, stem: str, other: str) -> int:
    """Fold ``other``'s rows (and files) into ``stem``'s table; the two must differ in their pairs only."""
    a, b = (rows_as_list(json.loads((out / f"{x}.json").read_text())) for x in (stem, other))
    same = ("minority", "majority", "strategies", "seeds", "joint_seeds_large", "config")
    diff = [k for k in same if a["settings"][k] != b["settings"][k]]
    if diff:
        raise SystemExit(f"{other}.json differs from {stem}.json in {diff[0]!r}; only tables of other pairs merge")
    a["settings"]["pairs"] += [x for x in b["settings"]["pairs"] if x not in a["settings"]["pairs"]]
    a["settings_key"] = settings_key(a["settings"])
    a["rows"] = list({row_key(r): r for r in a["rows"] + b["rows"]}.values())
    total = len(a["settings"]["pairs"]) * len(a["settings"]["minority"]) * len(a["settings"]["strategies"])
    a["complete"] = len(a["rows"]) == total
    a["command"] += f"; {b['command']}; python benchmarks/joint_binary.py --stem {stem} --merge {other}"
    for kind in ("grids", "classifiers"):
        for f in sorted((out / f"{other}_{kind}").glob("**/*")) if (out / f"{other}_{kind}").is_dir() else []:
            if f.is_file():
                dest = out / f"{stem}_{kind}" / f.relative_to(out / f"{other}_{kind}")
                dest.parent.mkdir(parents=True, exist_ok=True)
                f.replace(dest)
    for f in out.glob(f"{other}_heatmaps_*.png"):
        f.replace(out / f.name.replace(other, stem, 1))
    write_results(out, stem, a, render(a))
    print(f"merged {other} into {out / (stem + '.json')} ({len(a['rows'])} rows, complete: {a['complete']})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
