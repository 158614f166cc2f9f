"""Benchmark: limited-data GAN regularisers (DiffAugment, LeCam, gSR) at a fixed CPU budget (issue 12).

For each recipe (``ecogan-dcgan``, ``bagan-gp``; ``ecogan-biggan`` for gSR, which needs conditional batch
norm) and each regulariser setting, one ``tailgan train`` run of ``--steps`` G steps (fast mode, batch 64,
width 32, the classifier's 10 % validation split held out so the runs can serve ``tailgan classify
--strategy gan``), then ``tailgan eval``: FID, KID and label accuracy overall and on the three rarest classes,
against two references:

- ``train-lt``: the long-tailed training images (what a user has), fakes with its labels; **the default of
  the augmentation presets is chosen on these figures** (the test split is never used to choose anything);
- ``test``: the balanced test split, equal fakes per class (the usual GAN table; reported, not used).

Settings (literature defaults, not tuned here): DiffAugment ``color,translation,cutout`` (Zhao et al.);
LeCam weight 0.3, EMA decay 0.99 (Tseng et al., BigGAN on CIFAR); gSR weight 0.5 (Rangwani et al.).

Resumable: every run is a run folder under ``--work`` (continued from its checkpoint on a rerun) and every
finished row is kept in the JSON; ``--jobs 2`` trains two runs at once (one thread each).

    python benchmarks/gan_regularizers.py --steps 3000 --jobs 2             # hours on this CPU
    python benchmarks/gan_regularizers.py --steps 4 --work /tmp/reg --out /tmp/reg --data digits_lt   # a check

Writes benchmarks/results/gan_regularizers.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from _harness import (
    REPO,
    RESULTS,
    ResultsTable,
    command,
    data_root,
    machine,
    median_gan_rate,
    run_tailgan,
    train_or_resume,
)

STEM = "gan_regularizers"
RECIPES = {
    "ecogan-dcgan": ["sampling=balanced", "optim.batch_size=64", "model.conv_dim=32"],
    "bagan-gp": ["optim.batch_size=64", "model.conv_dim=32"],
    "ecogan-biggan": ["optim.batch_size=64", "model.conv_dim=24", "model.shared_dim=32"],
}
DIFFAUG, LECAM, GSR = "loss.diffaug=color,translation,cutout", "loss.lecam_weight=0.3", "loss.gsr_weight=0.5"
SETTINGS = {
    "none": [],
    "diffaug": [DIFFAUG],
    "lecam": [LECAM],
    "diffaug+lecam": [DIFFAUG, LECAM],
    "gsr": [GSR],
    "diffaug+lecam+gsr": [DIFFAUG, LECAM, GSR],
}
GRID = {"ecogan-dcgan": ("none", "diffaug", "lecam", "diffaug+lecam"),
        "bagan-gp": ("none", "diffaug", "lecam", "diffaug+lecam"),
        "ecogan-biggan": ("none", "gsr", "diffaug+lecam+gsr")}  # fmt: skip
COMMON = ["valid_fraction=0.1", "log_every=100", "sample_every=500", "ckpt_every=250"]
REFS = ("train-lt", "test")


def train_and_eval(recipe: str, setting: str, args: argparse.Namespace) -> dict:
    run = Path(args.work) / f"{recipe}_{setting}_seed{args.seed}"
    root = ["--root", args.root] if args.root else []
    overrides = [f"seed={args.seed}", *RECIPES[recipe], *COMMON, *SETTINGS[setting]]
    train_or_resume(run, args.steps, ["--method", recipe, "--data", args.data, *root], overrides, threads=args.threads)
    row = {"recipe": recipe, "setting": setting, "seed": args.seed, "run": run.name}
    counts = json.loads((run / "data_manifest.json").read_text())["counts"]
    rare = sorted(range(len(counts)), key=lambda c: (counts[c], c))[:3]
    for ref in REFS:
        path = run / "eval" / f"{args.steps}.json"
        key = f"{ref}/evaluator"
        if not path.is_file() or key not in json.loads(path.read_text())["results"]:
            run_tailgan("eval", str(run), "--metrics", "fid,kid,labelacc", "--ref", ref, *root, threads=args.threads)
        res = json.loads(path.read_text())["results"][key]
        per = {r["class"]: r for r in res["per_class"]}
        o = res["overall"]
        row[ref] = {"fid": o["fid"], "kid": o["kid"], "labelacc": o["labelacc"],
                    "rare_fid": sum(per[c]["fid"] for c in rare) / 3,
                    "rare_labelacc": sum(per[c]["labelacc"] for c in rare) / 3}  # fmt: skip
    row["steps_per_s_median"] = median_gan_rate(run)
    row["rare_classes"] = rare
    return row


def best_setting(rows: list[dict], recipe: str) -> str | None:
    """The setting with the best mean rank on the train-lt figures (FID, KID low; label accuracy high;
    overall and rarest 3 alike), ties broken by FID."""
    mine = [r for r in rows if r["recipe"] == recipe]
    if len(mine) < 2:
        return None
    keys = [("fid", 1), ("kid", 1), ("labelacc", -1), ("rare_fid", 1), ("rare_labelacc", -1)]
    rank = {r["setting"]: 0.0 for r in mine}
    for k, sign in keys:
        for i, r in enumerate(sorted(mine, key=lambda r: sign * r["train-lt"][k])):
            rank[r["setting"]] += i
    return min(mine, key=lambda r: (rank[r["setting"]], r["train-lt"]["fid"]))["setting"]


def render(doc: dict) -> str:
    m = doc["machine"]
    lines = [
        f"# Limited-data GAN regularisers: {doc['steps']} G steps on {doc['data']}",
        "",
        *(f"- command: `{c}`" for c in dict.fromkeys(r.get("command", doc["command"]) for r in doc["rows"])),
        f"- date: {doc['date']}; machine: {m['cpu']}, one torch thread per run, torch {m['torch']}",
        "- settings: DiffAugment `color,translation,cutout`, LeCam weight 0.3 (decay 0.99), gSR weight 0.5; "
        "fast mode, batch 64; 10 % validation split held out; seed " + str(doc["seed"]),
        "- **choice** on `train-lt` (the long-tailed training images); `test` (balanced test split) reported only",
        "",
    ]
    for recipe in GRID:
        rows = [r for r in doc["rows"] if r["recipe"] == recipe]
        if not rows:
            continue
        lines += [f"## {recipe}", "", "| setting | ref | FID | KID | label acc. | rarest-3 FID | rarest-3 label acc. "
                  "| G steps/s |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
        for r in rows:
            for ref in REFS:
                f = r[ref]
                lines.append(f"| {r['setting']} | {ref} | {f['fid']:.2f} | {f['kid']:.4f} | {f['labelacc']:.3f} | "
                             f"{f['rare_fid']:.2f} | {f['rare_labelacc']:.3f} | "
                             f"{r['steps_per_s_median']:.3f} |")  # fmt: skip
        if missing := [s for s in GRID[recipe] if s not in {r["setting"] for r in rows}]:
            lines += ["", f"Not measured: {', '.join(missing)}."]
        best = best_setting(doc["rows"], recipe)
        lines += ["", f"Best on train-lt (mean rank over the five figures): **{best}**" if best else "", ""]
    return "\n".join(lines) + "\n"


def cell_order(row: dict) -> tuple[int, int]:
    return list(GRID).index(row["recipe"]), GRID[row["recipe"]].index(row["setting"])


def open_table(args: argparse.Namespace) -> ResultsTable:
    """The table in ``--out``: its rows kept (they must be of the same steps, data and seed)."""

    def derive(doc: dict) -> None:
        for row in doc["rows"]:  # rows written before the rate excluded pre-training: their run folder's rate
            row["steps_per_s_median"] = median_gan_rate(Path(args.work) / row["run"]) or row["steps_per_s_median"]
        doc["best"] = {r: best_setting(doc["rows"], r) for r in GRID}

    header = {"steps": args.steps, "data": args.data, "seed": args.seed, "command": command(__file__),
              "machine": machine(), "date": datetime.date.today().isoformat()}  # fmt: skip
    return ResultsTable(args.out, STEM, render, key=lambda r: f"{r['recipe']}:{r['setting']}", header=header,
                        same=("steps", "data", "seed"), order=cell_order, derive=derive)  # fmt: skip


def cells(args: argparse.Namespace, recipes: list[str], table: ResultsTable, p: argparse.ArgumentParser) -> list:
    """The (recipe, setting) cells still to measure: ``--only``'s, or the grid's in setting-major order (every
    recipe's unregularised run first, so a cut-short grid is still comparable)."""
    if args.only:
        only = [tuple(c.split(":", 1)) for c in args.only.split(",") if c]
        if bad := [c for c in only if len(c) != 2 or c[0] not in GRID or c[1] not in GRID[c[0]]]:
            p.error(f"--only {':'.join(bad[0])!r}: give RECIPE:SETTING from the grid, e.g. ecogan-dcgan:lecam")
        return [c for c in only if f"{c[0]}:{c[1]}" not in table]
    return sorted(((r, s) for r in recipes for s in GRID[r] if f"{r}:{s}" not in table),
                  key=lambda rs: (GRID[rs[0]].index(rs[1]), recipes.index(rs[0])))  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="fashion_mnist_lt")
    p.add_argument("--root", default=data_root())
    p.add_argument("--recipes", default="ecogan-dcgan,bagan-gp", help=f"comma list of {', '.join(GRID)}")
    p.add_argument("--only", default="", metavar="RECIPE:SETTING,...",
                   help="run just these cells, in this order (e.g. ecogan-dcgan:lecam,bagan-gp:diffaug)")  # fmt: skip
    p.add_argument("--steps", type=int, default=3000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", default=str(REPO / "runs" / STEM))
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    recipes = [r for r in args.recipes.split(",") if r]
    if unknown := [r for r in recipes if r not in GRID]:
        p.error(f"unknown recipe {unknown[0]!r}; choose from {', '.join(GRID)}")
    table = open_table(args)

    def one(job: tuple[str, str]) -> None:
        table.add({**train_and_eval(*job, args), "command": table.doc["command"]})

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(one, cells(args, recipes, table, p)))
    print(render(table.doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
