"""Benchmark: does the fast path (bf16 autocast + channels-last) train generators as good as fp32?

Issue 10's quality bar, extended by issue 29: ``--steps`` (2,000) G steps of a GP recipe (``ecogan-dcgan``,
``bagan-gp``) on Fashion-MNIST-LT, three fp32 seeds (0, 1, 2) against candidate variants with seed 0:

- ``fast``: ``precision=auto loss.gp_autocast=false`` (the gradient penalty in fp32, the default before issue 29);
- ``gp_autocast``: ``precision=auto loss.gp_autocast=true`` (the penalty's critic pass under autocast too: the
  default of ``precision=auto`` since this benchmark's verdict);
- ``lazy4``: ``gp_autocast`` plus ``loss.gp_every=4`` (the penalty every 4th D step, weight x 4).

FID, KID and label accuracy (the evaluator at 32 px, the balanced test split as reference, equal fakes per
class), overall and on the three rarest classes. A variant passes when each figure lies within the range of
the fp32 seeds (widened by nothing) or outside it on the better side; the table says by how much a figure
falls outside.

Resumable: each run is a tailgan run folder under ``--work/RECIPE``; rerunning continues unfinished runs from
their checkpoints and skips finished ones and finished evaluations. Every finished row is kept in the JSON
(a row there is not measured again, ``--redo RECIPE:RUN`` drops it first), so rows measured earlier, e.g.
the ecogan-dcgan fp32 seeds of 2026-12-01, stay. ``--jobs 2`` trains two runs at once (one thread each).

    python benchmarks/precision_quality.py --recipes ecogan-dcgan,bagan-gp --variants gp_autocast --jobs 2
    python benchmarks/precision_quality.py --recipes ecogan-dcgan --steps 2 --jobs 1 --work /tmp/pq --out /tmp/pq

Writes benchmarks/results/precision_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import threading
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
    now,
    run_tailgan,
    train_or_resume,
)

from tailgan.version import cpu_model

STEM = "precision_quality"
DATA = "fashion_mnist_lt"
COMMON = ["optim.batch_size=64", "model.conv_dim=32", "log_every=100", "sample_every=500", "ckpt_every=100"]
RECIPES = {"ecogan-dcgan": ["sampling=balanced", *COMMON], "bagan-gp": COMMON}
VARIANTS = {
    "fp32": ["precision=fp32"],
    "fast": ["precision=auto", "loss.gp_autocast=false"],  # the default of precision=auto before issue 29
    "gp_autocast": ["precision=auto", "loss.gp_autocast=true"],
    "lazy4": ["precision=auto", "loss.gp_autocast=true", "loss.gp_every=4"],
}
KEYS = ("fid", "kid", "labelacc", "rare_fid", "rare_labelacc")
EVAL_LOCK = threading.Lock()  # one evaluation at a time: the first trains and caches the evaluator, the next reuse it


def train_and_eval(recipe: str, variant: str, seed: int, args: argparse.Namespace) -> dict:
    run = Path(args.work) / recipe / f"{variant}_seed{seed}"
    train_or_resume(run, args.steps, ["--method", recipe, "--data", DATA, "--root", args.root],
                    [f"seed={seed}", *RECIPES[recipe], *VARIANTS[variant]], threads=args.threads)  # fmt: skip
    result_file = run / "eval" / f"{args.steps}.json"
    if not result_file.is_file() or "test/evaluator" not in json.loads(result_file.read_text())["results"]:
        with EVAL_LOCK:
            run_tailgan("eval", str(run), "--metrics", "fid,kid,labelacc", "--ref", "test", "--root", args.root,
                        threads=args.threads)  # fmt: skip
    result = json.loads(result_file.read_text())["results"]["test/evaluator"]
    counts = json.loads((run / "data_manifest.json").read_text())["counts"]
    rare = sorted(range(len(counts)), key=lambda c: (counts[c], c))[:3]
    per = {r["class"]: r for r in result["per_class"]}
    return {
        "recipe": recipe, "run": run.name, "variant": variant, "seed": seed, "overrides": VARIANTS[variant],
        "measured": datetime.date.today().isoformat(), "cpu": cpu_model(),
        "fid": result["overall"]["fid"], "kid": result["overall"]["kid"], "labelacc": result["overall"]["labelacc"],
        "rare_classes": rare,
        "rare_fid": sum(per[c]["fid"] for c in rare) / 3, "rare_labelacc": sum(per[c]["labelacc"] for c in rare) / 3,
        "steps_per_s_median": median_gan_rate(run),
    }  # fmt: skip


def row_key(row: dict) -> str:
    """RECIPE:RUN, as --redo names a row."""
    return f"{row['recipe']}:{row['run']}"


def issue10_rows(doc: dict) -> dict:
    """An earlier JSON with its rows in this layout; issue 10's flat table (ecogan-dcgan only, ``fast_seed0``) is
    read as such."""
    for r in doc.get("rows", []):
        if "recipe" not in r:  # issue 10's format
            r.update(recipe="ecogan-dcgan", variant="fast" if r["precision"] == "auto" else "fp32",
                     overrides=VARIANTS["fast" if r["precision"] == "auto" else "fp32"],
                     measured=doc["started"][:10], cpu=doc["machine"]["cpu"])  # fmt: skip
            r.pop("precision", None)
    return doc


def compare(fp32: list[dict], row: dict) -> dict:
    """Each figure against the fp32 seeds' range: within, better or worse, and the distance outside it."""
    out = {}
    for key in KEYS:
        lo, hi = min(r[key] for r in fp32), max(r[key] for r in fp32)
        higher_better = "labelacc" in key  # FID / KID: lower is better
        value = row[key]
        side = "within" if lo <= value <= hi else ("better" if (value > hi) == higher_better else "worse")
        outside = 0.0 if side == "within" else (value - hi if value > hi else value - lo)
        out[key] = {"fp32_min": lo, "fp32_max": hi, "value": value, "side": side, "outside_by": outside}
    return out


def verdicts(rows: list[dict]) -> dict:
    result = {}
    for recipe in dict.fromkeys(r["recipe"] for r in rows):
        fp32 = [r for r in rows if r["recipe"] == recipe and r["variant"] == "fp32"]
        for row in (r for r in rows if r["recipe"] == recipe and r["variant"] != "fp32"):
            if len(fp32) >= 3:
                cmp = compare(fp32, row)
                passed = all(v["side"] != "worse" for v in cmp.values())
                result[f"{recipe}/{row['run']}"] = {"figures": cmp, "passes": passed}
    return result


def markdown(doc: dict) -> str:
    lines = [
        f"# Fast path vs fp32: {doc['settings']['steps']} G steps of GP recipes on Fashion-MNIST-LT",
        "",
        f"Machine: {', '.join(dict.fromkeys(r['cpu'] for r in doc['rows']))}, {doc['machine']['nproc']} cores, "
        "one thread per run (each row's CPU in the JSON). "
        f"Command: `{doc['command']}` (last run {doc['finished'][:10]}; each row's date in the table). "
        "Variants: " + "; ".join(f"{k}: `{' '.join(v)}`" for k, v in VARIANTS.items()) + ".",
        "",
        "| recipe | run | FID | KID | label acc. | rarest-3 FID | rarest-3 label acc. | G steps/s | measured |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in doc["rows"]:
        rate = f"{r['steps_per_s_median']:.3f}" if r.get("steps_per_s_median") else "-"
        lines.append(f"| {r['recipe']} | {r['run']} | {r['fid']:.2f} | {r['kid']:.4f} | {r['labelacc']:.3f} | "
                     f"{r['rare_fid']:.2f} | {r['rare_labelacc']:.3f} | {rate} | {r['measured']} |")  # fmt: skip
    lines += ["", "Each variant against its recipe's three fp32 seeds (within their range, or outside it on the "
              "better / worse side, by how much):", ""]  # fmt: skip
    for name, v in doc["verdict"].items():
        parts = [f"{k} {f['side']}" + (f" by {f['outside_by']:+.4g}" if f["side"] != "within" else "")
                 for k, f in v["figures"].items()]  # fmt: skip
        lines.append(f"- {name}: {', '.join(parts)} -> {'passes' if v['passes'] else 'fails'}")
    lines += ["", *decision_lines(doc)]
    lines += ["", "G steps/s: the median of a run's log records (adversarial phase); the runs shared the machine "
              "with other jobs at different times (and were resumed), so speed is measured by train_speed.py, not "
              "here."]  # fmt: skip
    return "\n".join(lines) + "\n"


def decision_lines(doc: dict) -> list[str]:
    """Issue 29's rule: a variant becomes the default of ``precision=auto`` only if it passes on every recipe."""
    rows, recipes = doc["rows"], doc["settings"]["recipes"]
    lines = ["Decision (issue 29: the penalty under autocast becomes the default of `precision=auto` only if it "
             "passes on every recipe):"]  # fmt: skip
    for variant in dict.fromkeys(r["variant"] for r in rows if r["variant"] not in ("fp32", "fast")):
        missing = []
        for recipe in recipes:
            n_fp32 = sum(r["recipe"] == recipe and r["variant"] == "fp32" for r in rows)
            has = any(r["recipe"] == recipe and r["variant"] == variant for r in rows)
            if n_fp32 < 3 or not has:
                missing.append(f"{recipe} ({n_fp32} of 3 fp32 seeds, {variant} {'done' if has else 'not done'})")
        failed = [k for k, v in doc["verdict"].items() if k.endswith(f"/{variant}_seed0") and not v["passes"]]
        if failed:
            state = f"not made a default: fails on {', '.join(failed)} (by the distances above)"
        elif missing:
            state = f"undecided, so the default stays fp32; not measured yet: {'; '.join(missing)}"
        else:
            state = "passes on every recipe: " + ("the default of precision=auto" if variant == "gp_autocast" else
                                                   "an option (issue 29: lazy regularisation is not made a default)")
        lines.append(f"- {variant}: {state}")
    for recipe in recipes:
        cpus = sorted({r["cpu"] for r in rows if r["recipe"] == recipe})
        if len(cpus) > 1:
            lines.append(f"- note: {recipe}'s rows were measured on different CPUs ({', '.join(cpus)}), each "
                         "evaluation with the evaluator trained and cached on its machine")  # fmt: skip
    return lines


def open_table(args: argparse.Namespace) -> ResultsTable:
    """The table in ``--out``: its rows kept, the header of this call (with ``--report-only``: the command and
    settings that measured it)."""
    order = {(rec, var): i for i, (rec, var) in enumerate((a, b) for a in RECIPES for b in VARIANTS)}
    header = {
        "command": command(__file__), "started": now(), "machine": machine(),
        "settings": {"data": DATA, "steps": args.steps, "overrides": RECIPES,
                     "recipes": args.recipes.split(","),
                     "eval": "evaluator features at 32 px, ref test, fid,kid,labelacc"},
    }  # fmt: skip
    if args.report_only and (Path(args.out) / f"{STEM}.json").is_file():
        del header["command"], header["settings"]
    return ResultsTable(args.out, STEM, markdown, key=row_key, header=header, upgrade=issue10_rows,
                        order=lambda r: (order[(r["recipe"], r["variant"])], r["seed"]),
                        derive=lambda doc: doc.update(finished=now(), verdict=verdicts(doc["rows"])))  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=data_root())
    p.add_argument("--work", default=str(REPO / "runs" / STEM))
    p.add_argument("--recipes", default="ecogan-dcgan,bagan-gp")
    p.add_argument("--variants", default="gp_autocast", help="candidates (seed 0) besides the fp32 seeds 0, 1, 2")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--redo", default="", help="RECIPE:RUN,... rows to measure again")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON's rows, run nothing")
    args = p.parse_args()
    table = open_table(args)
    table.drop(args.redo.split(","))
    variants = [v for v in args.variants.split(",") if v]
    todo = [(rec, var, seed) for var in variants for rec in args.recipes.split(",") for seed in [0]]
    todo += [(rec, "fp32", seed) for seed in (0, 1, 2) for rec in args.recipes.split(",")]
    todo = [t for t in todo if f"{t[0]}:{t[1]}_seed{t[2]}" not in table and not args.report_only]
    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda task: table.add(train_and_eval(*task, args)), todo))
    with table.locked():
        table.save()
    print(table.path.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
