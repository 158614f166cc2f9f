"""Benchmark: does the fast path (bf16 autocast + channels-last) train generators as good as fp32?

Issue 10's quality bar, extended by issue 29: ``--steps`` (2,000) G steps of a GP recipe (``ecogan-dcgan``,
``bagan-gp``) on Fashion-MNIST-LT, three fp32 seeds (0, 1, 2) against candidate variants with seed 0:

- ``fast``: ``precision=auto`` (the gradient penalty in fp32, the default before issue 29);
- ``gp_autocast``: ``precision=auto loss.gp_autocast=true`` (the penalty's critic pass under autocast too);
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

Writes benchmarks/results/precision_quality.{json,md}.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from gan_regularizers import gan_records, median_gan_rate  # noqa: E402

from tailgan.io import atomic_write_json, atomic_write_text  # noqa: E402
from tailgan.version import cpu_model  # noqa: E402

STEM = "precision_quality"
COMMON = ["optim.batch_size=64", "model.conv_dim=32", "log_every=100", "sample_every=500", "ckpt_every=100"]
RECIPES = {"ecogan-dcgan": ["sampling=balanced", *COMMON], "bagan-gp": COMMON}
VARIANTS = {
    "fp32": ["precision=fp32"],
    "fast": ["precision=auto"],
    "gp_autocast": ["precision=auto", "loss.gp_autocast=true"],
    "lazy4": ["precision=auto", "loss.gp_autocast=true", "loss.gp_every=4"],
}
KEYS = ("fid", "kid", "labelacc", "rare_fid", "rare_labelacc")
LOCK = threading.Lock()
EVAL_LOCK = threading.Lock()  # one evaluation at a time: the first trains and caches the evaluator, the next reuse it


def tailgan(*args: str, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, "-m", "tailgan", *args]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)


def train_and_eval(recipe: str, variant: str, seed: int, args: argparse.Namespace) -> dict:
    run = Path(args.work) / recipe / f"{variant}_seed{seed}"
    if not (run / "checkpoints" / "last.pt").is_file():
        if run.exists():  # killed before its first checkpoint: start again
            subprocess.run(["rm", "-rf", str(run)], check=True)
        tailgan("train", "--method", recipe, "--data", "fashion_mnist_lt", "--root", args.root,
                "--steps", str(args.steps), "--out", str(run), f"seed={seed}", *RECIPES[recipe], *VARIANTS[variant],
                threads=args.threads)  # fmt: skip
    elif max((r.get("step", 0) for r in gan_records(run)), default=0) < args.steps:
        tailgan("train", "--resume", str(run), "--steps", str(args.steps), threads=args.threads)
    result_file = run / "eval" / f"{args.steps}.json"
    if not result_file.is_file() or "test/evaluator" not in json.loads(result_file.read_text())["results"]:
        with EVAL_LOCK:
            tailgan("eval", str(run), "--metrics", "fid,kid,labelacc", "--ref", "test", "--root", args.root,
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


def load_rows(path: Path) -> list[dict]:
    """Rows of an earlier JSON; issue 10's flat table (ecogan-dcgan only, ``fast_seed0``) is read as such."""
    if not path.is_file():
        return []
    doc = json.loads(path.read_text())
    rows = doc.get("rows", [])
    for r in rows:
        if "recipe" not in r:  # issue 10's format
            r.update(recipe="ecogan-dcgan", variant="fast" if r["precision"] == "auto" else "fp32",
                     overrides=VARIANTS["fast" if r["precision"] == "auto" else "fp32"],
                     measured=doc["started"][:10], cpu=doc["machine"]["cpu"])  # fmt: skip
            r.pop("precision", None)
    return rows


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
            state = f"the default stays fp32: fails on {', '.join(failed)} (by the distances above)"
        elif missing:
            state = f"undecided, so the default stays fp32; not measured yet: {'; '.join(missing)}"
        else:
            state = "passes on every recipe: default of precision=auto"
        lines.append(f"- {variant}: {state}")
    for recipe in recipes:
        cpus = sorted({r["cpu"] for r in rows if r["recipe"] == recipe})
        if len(cpus) > 1:
            lines.append(f"- note: {recipe}'s rows were measured on different CPUs ({', '.join(cpus)}), each "
                         "evaluation with the evaluator trained and cached on its machine")  # fmt: skip
    return lines


def save(args: argparse.Namespace, started: str, rows: list[dict]) -> None:
    order = {(rec, var): i for i, (rec, var) in enumerate((a, b) for a in RECIPES for b in VARIANTS)}
    rows = sorted(rows, key=lambda r: (order[(r["recipe"], r["variant"])], r["seed"]))
    doc = {
        "command": args.command, "started": started,
        "finished": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "machine": {"cpu": cpu_model(), "nproc": os.cpu_count(), "python": platform.python_version()},
        "settings": {"data": "fashion_mnist_lt", "steps": args.steps, "overrides": RECIPES,
                     "recipes": args.recipes.split(","),
                     "eval": "evaluator features at 32 px, ref test, fid,kid,labelacc"},
        "rows": rows, "verdict": verdicts(rows),
    }  # fmt: skip
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / f"{STEM}.json", doc)
    atomic_write_text(out / f"{STEM}.md", markdown(doc))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", default=os.environ.get("TAILGAN_DATA") or str(REPO.parent / "shared" / "data"))
    p.add_argument("--work", default=str(REPO / "runs" / STEM))
    p.add_argument("--recipes", default="ecogan-dcgan,bagan-gp")
    p.add_argument("--variants", default="gp_autocast", help="candidates (seed 0) besides the fp32 seeds 0, 1, 2")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--redo", default="", help="RECIPE:RUN,... rows to measure again")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    p.add_argument("--report-only", action="store_true", help="rewrite the table from the JSON's rows, run nothing")
    args = p.parse_args()
    started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    previous = Path(args.out) / f"{STEM}.json"
    args.command = " ".join([sys.executable, *sys.argv])
    if args.report_only and previous.is_file():  # the table's command is the one that measured it
        args.command = json.loads(previous.read_text())["command"]
    redo = args.redo.split(",")
    rows = [r for r in load_rows(Path(args.out) / f"{STEM}.json") if f"{r['recipe']}:{r['run']}" not in redo]
    done = {(r["recipe"], r["run"]) for r in rows}
    variants = [v for v in args.variants.split(",") if v]
    todo = [(rec, var, seed) for var in variants for rec in args.recipes.split(",") for seed in [0]]
    todo += [(rec, "fp32", seed) for seed in (0, 1, 2) for rec in args.recipes.split(",")]
    todo = [t for t in todo if (t[0], f"{t[1]}_seed{t[2]}") not in done and not args.report_only]

    def work(task: tuple[str, str, int]) -> None:
        row = train_and_eval(*task, args)
        with LOCK:
            rows.append(row)
            save(args, started, rows)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(work, todo))
    save(args, started, rows)
    print((Path(args.out) / f"{STEM}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
