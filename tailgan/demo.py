"""``tailgan demo``: the README's main job, end to end on the embedded long-tailed digits.

1. builds ``digits_lt`` (scikit-learn's real 8x8 digits cut to a long tail), prints its table, plots it;
2. trains BAGAN-GP (``bagan-gp``, 32 px; autoencoder pre-training, then the GAN) for a few CPU minutes,
   holding the classifier's validation split out of its data;
3. evaluates the generator per class against the balanced test set (FID, KID, label accuracy);
4. trains LeNet-5 classifiers on the long tail: real images only (vanilla), the best classical
   rebalancing (TS, logit adjustment), logit adjustment with the generated images (filtered by a
   classifier trained on the real training part), and the vanilla network's head re-trained on real +
   generated tail *features* (feat-calibrate), 3 seeds each, and says whether the generated images helped
   (label accuracy >= 0.8 and ACSA with them >= without them) and whether the features beat the best classical;
5. writes one HTML report of all of it.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace
from pathlib import Path

from tailgan.classify.bench import run_bench
from tailgan.classify.runconfig import ClassifyRunConfig
from tailgan.data import load_data
from tailgan.data.cli import plot_counts
from tailgan.engine import load_generator
from tailgan.errors import TailganError
from tailgan.metrics import evaluate
from tailgan.metrics.cli import write_eval
from tailgan.metrics.evaluate import format_table
from tailgan.metrics.evaluator import get_evaluator
from tailgan.outputs import claim_output
from tailgan.report.build import build_report
from tailgan.train import make_config, train

CLASSICAL = ("vanilla", "ts", "la")  # real images only; the best of ts / la is the bar to beat
GENERATIVE = "gan+la"  # logit adjustment with the generated images
# generated *features* for the head (the best row of benchmarks/results/classify_digits_lt_v3.md): the vanilla
# network's head re-trained on real + calibrated tail features
FEATURES = "feat-calibrate"
CLASSIFIER_SEEDS = 3
LABELACC_BAR = 0.8  # issue 12's bar for images worth mixing in
def run_demo(out: Path, steps: int, seed: int = 0, quick: bool = False, gan_overrides: tuple[str, ...] = ()) -> dict:
    t0 = time.perf_counter()
    claim = claim_output(out, "demo", overwrite=True)  # a previous demo folder is replaced, nothing else
    data = load_data("digits_lt")
    print(data.summary())
    plot_counts(data, out / "digits_lt_counts.png", log=True)
    print(f"class histogram: {out / 'digits_lt_counts.png'}\n")

    overrides = ["optim.batch_size=64", "model.conv_dim=32", f"seed={seed}", "valid_fraction=0.1",
                 f"valid_seed={seed}", f"sample_every={max(steps // 4, 1)}", f"ckpt_every={steps}",
                 f"log_every={max(steps // 10, 1)}"]  # fmt: skip
    if quick:  # for tests: the smallest networks that still run every stage
        overrides += ["optim.batch_size=16", "model.conv_dim=8", "model.embed_dim=16", "optim.d_steps=1",
                      "options.pretrain_epochs=1"]  # fmt: skip
    cfg = make_config("bagan-gp", data="digits_lt", overrides=[*overrides, *gan_overrides], steps=steps)
    run = out / "bagan_gp_run"
    print(f"training BAGAN-GP (32 px: autoencoder pre-training, then {steps} generator steps) ...")
    train(cfg, run)
    grids = sorted((run / "samples").glob("*.png"))
    print(f"sample grids (one row per class): {grids[-1]} (+{len(grids) - 1} earlier)\n")
    summary = {"run": str(run), "grid": str(grids[-1]), "seconds": None}
    summary.update(_evaluate(run, quick))
    summary.update(_classify(run, out / "classifiers", seed, quick))
    report = build_report([out], out / "report.html", title="tailgan demo: long-tailed digits", overwrite=True)
    summary["report"] = str(report)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    claim.finish()
    print(verdict(summary) + "\n")
    print(f"report: {report}")
    print(f"demo finished in {summary['seconds']} s; everything is in {out}")
    return summary


def _evaluate(run: Path, quick: bool) -> dict:
    """Per-class generation quality against the balanced test split, with the digits evaluator."""
    g = load_generator(run)
    data = load_data(g.data_config)
    print("evaluating the generator (features of a digits classifier trained once and cached) ...")
    evaluator = get_evaluator(data.config, log=print)  # trains and caches it on the first demo run
    metrics = ["fid", "kid", "labelacc"] + ([] if quick else ["prdc"])
    result = evaluate(g, data, metrics=metrics, ref="test", extractor=evaluator, kid_subset_size=50)
    result.update(run=str(run), checkpoint="last", step=g.step)
    write_eval(run, g.step, "last", result)
    print(format_table(result) + "\n")
    return {"fid": result["overall"].get("fid"), "labelacc": result["overall"].get("labelacc")}


def _classify(run: Path, out: Path, seed: int, quick: bool) -> dict:
    """ACSA of LeNet-5 on the long tail, mean over seeds (the test split has 50 images per class, so one
    seed's figure moves by a few points): vanilla, the best classical strategy, and with generated images."""
    g = load_generator(run)
    data = load_data(g.data_config)
    seeds = [seed] if quick else [seed + i for i in range(CLASSIFIER_SEEDS)]
    # the run config of this table, so its report prints a `tailgan bench classify` command that reruns it
    # (min_steps=1: the demo's budget is its epochs, as when its figures were measured)
    config = ClassifyRunConfig(
        command="bench classify", strategy=",".join([*CLASSICAL, FEATURES, GENERATIVE]), seeds=len(seeds),
        first_seed=seed,
        data=g.data_config, generator=[f"bagan-gp={run}"], epochs=2 if quick else 30, min_steps=1, filter=0.5,
        guard_refuse=None if quick else 0.15,
    )  # fmt: skip
    print(f"training LeNet-5 classifiers on digits_lt ({config.epochs:g} epochs each, {len(seeds)} seed(s)): "
          f"{', '.join(CLASSICAL)} and {FEATURES} on real images, then {GENERATIVE} with BAGAN-GP's images")
    try:
        with warnings.catch_warnings():  # the one config's --filter concerns the generated images only
            warnings.filterwarnings("ignore", message=".*is ignored by strategy.*")
            rows = run_bench(data, (*CLASSICAL, FEATURES), seeds, config, out, generators={"bagan-gp": g},
                             gan_strategies=(GENERATIVE,), header={"command": "tailgan demo"},
                             run_config=config)  # fmt: skip
    except TailganError as e:  # the guard refused images a classifier trained on real data does not recognise
        print(f"the generated images were not used: {e}\n")
        config = replace(config, strategy=",".join([*CLASSICAL, FEATURES]), generator=[])
        rows = run_bench(data, (*CLASSICAL, FEATURES), seeds, config, out, header={"command": "tailgan demo"},
                         run_config=config)  # fmt: skip
    acsa = {r["strategy"]: r["summary"]["acsa"] for r in rows}  # mean/std/n per row ("bagan-gp+la": generated)
    return {"acsa": acsa, "best_classical": max(("ts", "la"), key=lambda k: acsa[k]["mean"])}


def _fmt(s: dict) -> str:
    return f"{s['mean']:.3f}" + (f" ± {s['std']:.3f}" if s.get("n", 1) > 1 else "")


def verdict(summary: dict) -> str:
    """The demo's last lines: the generator's label accuracy and the ACSA with and without its images, next
    to the best classical strategy, and whether the images reached the bar (label accuracy >= 0.8 and
    ACSA with them >= ACSA of the same loss without them)."""
    acsa, best = summary["acsa"], summary["best_classical"]
    lines = [f"generator: label accuracy {summary['labelacc']:.3f} (the evaluator recognises its images as their "
             f"class; bar {LABELACC_BAR}), evaluator FID {summary['fid']:.2f}",  # fmt: skip
             f"ACSA (balanced accuracy on the real, balanced test set, {acsa['vanilla'].get('n', 1)} seed(s)): "
             f"real only {_fmt(acsa['vanilla'])}, best classical ({best}) {_fmt(acsa[best])}"]  # fmt: skip
    if FEATURES in acsa:
        feat, better = acsa[FEATURES], acsa[FEATURES]["mean"] > acsa[best]["mean"]
        lines.append(f"generated features ({FEATURES}: the vanilla network's head re-trained on real + generated tail "
                     f"features) {_fmt(feat)}: {'beat' if better else 'did not beat'} {best} "
                     f"({feat['mean'] - acsa[best]['mean']:+.3f})")  # fmt: skip
    gen = next((v for k, v in acsa.items() if k.startswith("bagan-gp")), None)
    if gen is None:
        lines[-2 if FEATURES in acsa else -1] += "; no generated images were used"
        lines.append("verdict: the generated images did not pass the guard, so they were not used")
        return "\n".join(lines)
    without = acsa[GENERATIVE.removeprefix("gan+")]
    lines[1] += f", {GENERATIVE} with BAGAN-GP's images {_fmt(gen)} ({GENERATIVE.removeprefix('gan+')} without them " \
                f"{_fmt(without)})"  # fmt: skip
    if summary["labelacc"] >= LABELACC_BAR and gen["mean"] >= without["mean"]:
        tail = f", and {'beat' if gen['mean'] > acsa[best]['mean'] else 'did not beat'} {best}"
        lines.append(f"verdict: the generated images helped (label accuracy >= {LABELACC_BAR}, ACSA with them >= "
                     f"without){tail}")  # fmt: skip
    else:
        why = (
            [f"label accuracy {summary['labelacc']:.3f} < {LABELACC_BAR}"] if summary["labelacc"] < LABELACC_BAR else []
        )
        if gen["mean"] < without["mean"]:
            why.append(f"ACSA with them {gen['mean']:.3f} < {without['mean']:.3f} without")
        lines.append(f"verdict: at this budget the generated images did not help ({'; '.join(why)}); "
                     "benchmarks/results/synthetic_protocol.md has the longer runs")  # fmt: skip
    return "\n".join(lines)


def cmd_demo(args: argparse.Namespace) -> int:
    run_demo(Path(args.out), args.steps, args.seed, quick=args.quick)
    return 0
