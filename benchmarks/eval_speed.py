"""Evaluation speed: tailgan's FID + KID + PRDC against torchmetrics (and clovaai's prdc) on the same features.

For 10,000 real (the Fashion-MNIST test split) and 10,000 "fake" images (the first 10,000 training images,
standing in for generated ones), both pipelines extract the Fashion-MNIST evaluator's features and compute
FID, KID (100 subsets of 1,000) and precision/recall/density/coverage (k = 5):

* tailgan: ``tailgan.metrics.extract`` + ``stats.fid`` / ``stats.kid`` / ``stats.prdc``;
* baseline: the same evaluator forward pass written out by hand, torchmetrics' ``FrechetInceptionDistance``
  and ``KernelInceptionDistance`` fed those features, and clovaai's ``prdc.compute_prdc`` (if installed,
  else its algorithm transcribed below).

Images per second = 20,000 / wall time (best of ``--repeats`` runs, the two pipelines interleaved), with
seconds per stage. The evaluator is trained first when it is not cached (its test accuracy is reported).
With ``--run RUN`` it also evaluates that training run (both reference protocols) and records the
per-class FID / KID / label accuracy.

    python benchmarks/eval_speed.py --root ../shared/data [--run /path/to/run] [--threads 2]
    python benchmarks/eval_speed.py --n 1000 --repeats 1 --out /tmp/es     # a check of the pipelines (seconds)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import warnings
from pathlib import Path

import numpy as np
import torch
import torchmetrics
from _harness import RESULTS, data_root, machine, write_results
from torch import nn
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.kid import KernelInceptionDistance

from tailgan.data import DataConfig, fit_images, load_data, to_float
from tailgan.metrics import evaluate, extract, format_table, get_evaluator, stats

N = 10_000  # real and fake images each
KID_SUBSET = 1000


class _Identity(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.num_features = d

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def clovaai_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict:
    """clovaai/prdc's compute_prdc (the package when installed, else the same algorithm transcribed)."""
    try:
        from prdc import compute_prdc
    except ModuleNotFoundError:
        from sklearn.metrics import pairwise_distances

        def radii(x):
            d = pairwise_distances(x, x)
            return np.take_along_axis(d, np.argpartition(d, k + 1, axis=-1)[..., : k + 1], axis=-1).max(axis=-1)

        rr, fr, d = radii(real), radii(fake), pairwise_distances(real, fake)
        return {
            "precision": (d < rr[:, None]).any(axis=0).mean(),
            "recall": (d < fr[None, :]).any(axis=1).mean(),
            "density": (1.0 / k) * (d < rr[:, None]).sum(axis=0).mean(),
            "coverage": (d.min(axis=1) < rr).mean(),
        }
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
        return compute_prdc(real, fake, nearest_k=k)


def tailgan_pipeline(ev, real_images, fake_images):
    """tailgan: (figures, seconds per stage)."""
    t = {}
    t0 = time.perf_counter()
    fr, _ = extract(ev, real_images, batch_size=500)
    ff, _ = extract(ev, fake_images, batch_size=500)
    t["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = {"fid": stats.fid(fr, ff)}
    t["fid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out["kid"], out["kid_std"] = stats.kid(fr, ff, subsets=100, subset_size=min(KID_SUBSET, len(fr)))
    t["kid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out.update(stats.prdc(fr, ff, k=5))
    t["prdc"] = time.perf_counter() - t0
    return out, t


@torch.no_grad()
def baseline_pipeline(ev, real_images, fake_images):
    """The evaluator's forward pass by hand, torchmetrics' metric classes and clovaai's prdc."""
    net = ev.net.eval()

    def features(images):
        return torch.cat(
            [
                net.forward_features(to_float(fit_images(images[i : i + 500], ev.resolution, ev.channels)))[0]
                for i in range(0, len(images), 500)
            ]
        )

    t = {}
    t0 = time.perf_counter()
    fr, ff = features(real_images), features(fake_images)
    t["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "will save all extracted features"
        fid = FrechetInceptionDistance(feature=_Identity(fr.shape[1]))
        kid = KernelInceptionDistance(feature=_Identity(fr.shape[1]), subsets=100,
                                      subset_size=min(KID_SUBSET, len(fr)))  # fmt: skip
    fid.update(fr, real=True)
    fid.update(ff, real=False)
    out = {"fid": float(fid.compute())}
    t["fid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    kid.update(fr, real=True)
    kid.update(ff, real=False)
    kid_mean, kid_std = kid.compute()
    out["kid"], out["kid_std"] = float(kid_mean), float(kid_std)
    t["kid"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    out.update({k: float(v) for k, v in clovaai_prdc(fr.numpy(), ff.numpy(), 5).items()})
    t["prdc"] = time.perf_counter() - t0
    return out, t


def timed(pipelines: dict, repeats: int) -> dict:
    """Run the pipelines in turn ``repeats`` times (interleaved, so load changes hit both alike)."""
    runs = {name: [] for name in pipelines}
    outs = {}
    for _ in range(repeats):
        for name, fn in pipelines.items():
            t0 = time.perf_counter()
            outs[name], stages = fn()
            runs[name].append({"total": time.perf_counter() - t0, **stages})
    return {name: {"figures": outs[name], "runs": runs[name]} for name in pipelines}


def evaluate_run(run_dir: str, root: str | None) -> dict:
    from tailgan import load_generator

    g = load_generator(run_dir)
    data = load_data(g.data_config, root=root) if root else load_data(g.data_config)
    ev = get_evaluator(data.config, log=print)  # the evaluator for the run's pixels (trained if missing)
    results = {}
    for ref in ("test", "train-lt"):
        t0 = time.perf_counter()
        results[ref] = evaluate(g, data, metrics="all", ref=ref, extractor=ev)
        results[ref]["wall_seconds"] = time.perf_counter() - t0
        print(format_table(results[ref]))
    return {
        "run": str(run_dir),
        "step": g.step,
        "data": data.config.preset or data.config.source,
        "evaluator": ev.info,
        "results": results,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--n", type=int, default=N, help="real and fake images each (10,000: the table)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    p.add_argument("--run", help="also evaluate this tailgan run folder (per-class tables)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    report = {"machine": machine(torchmetrics=torchmetrics.__version__)}
    data = load_data(DataConfig(source="fashion_mnist", root=args.root, recipe="none"))
    t0 = time.perf_counter()
    ev = get_evaluator(data.config, log=print)
    report["evaluator"] = {**ev.info, "load_or_train_seconds": time.perf_counter() - t0}
    meta = json.loads((Path(ev.info["path"]) / "evaluator.json").read_text())
    report["evaluator"].update(
        train_seconds=meta["train_seconds"],
        config=meta["config"],
        test_accuracy_per_class=meta["test_accuracy_per_class"],
    )
    print(f"evaluator: test accuracy {ev.info['test_accuracy']:.4f} (trained in {meta['train_seconds']:.0f} s)")

    real, fake = data.test.images[: args.n], data.train.images[: args.n]
    res = timed(
        {
            "tailgan": lambda: tailgan_pipeline(ev, real, fake),
            "baseline": lambda: baseline_pipeline(ev, real, fake),
        },
        args.repeats,
    )
    speed = {"images": 2 * args.n, "repeats": args.repeats}
    for name, r in res.items():
        best = {k: min(run[k] for run in r["runs"]) for k in r["runs"][0]}
        speed[name] = {**r, "best_seconds": best, "images_per_s": 2 * args.n / best["total"]}
    t, b = speed["tailgan"], speed["baseline"]
    speed["tailgan_overhead"] = t["best_seconds"]["total"] / b["best_seconds"]["total"] - 1
    speed["fid_rel_diff"] = abs(t["figures"]["fid"] - b["figures"]["fid"]) / b["figures"]["fid"]
    speed["prdc_max_abs_diff"] = max(
        abs(t["figures"][k] - b["figures"][k]) for k in ("precision", "recall", "density", "coverage")
    )
    report["speed"] = speed
    print(
        f"tailgan  {t['images_per_s']:.0f} images/s  baseline {b['images_per_s']:.0f} images/s  "
        f"overhead {100 * speed['tailgan_overhead']:+.1f}%"
    )
    if args.run:
        report["run"] = evaluate_run(args.run, args.root)

    path = write_results(args.out, "eval_speed", report, markdown(report))
    print(f"written to {path.with_suffix('.md')}")


def _f(v, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def markdown(r: dict) -> str:
    m, e, s = r["machine"], r["evaluator"], r["speed"]
    lines = [
        "# Evaluation speed (benchmarks/eval_speed.py)",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), torch {m['torch']} ({m['torch_threads']} threads), "
        f"torchmetrics {m['torchmetrics']}, Python {m['python']}; load average at start "
        f"{', '.join(f'{x:.1f}' for x in m['loadavg_start'])} (the machine is shared: timings are noisy).",
        "",
        "## Fashion-MNIST evaluator",
        "",
        f"Test accuracy **{e['test_accuracy']:.4f}** on the 10,000 test images after training "
        f"{e['config']['epochs']} epochs on the 60,000 training images ({e['train_seconds']:.0f} s on this CPU); "
        f"{e['resolution']} px, {e['channels']} channel(s), cache folder `{Path(e['path']).name}`.",
        "",
        "| class | " + " | ".join(str(i) for i in range(len(e["test_accuracy_per_class"]))) + " |",
        "|---|" + "---|" * len(e["test_accuracy_per_class"]),
        "| test accuracy | " + " | ".join(f"{a:.3f}" for a in e["test_accuracy_per_class"]) + " |",
        "",
        f"## FID + KID + PRDC of {s['images'] // 2:,} vs {s['images'] // 2:,} images (feature extraction included)",
        "",
        f"Best of {s['repeats']} interleaved runs; seconds per stage (each the best over the runs).",
        "",
        "| pipeline | total (s) | images/s | features (s) | FID (s) | KID (s) | PRDC (s) | FID | KID | precision "
        "| recall | density | coverage |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, key in (("tailgan", "tailgan"), ("torchmetrics FID/KID + clovaai prdc", "baseline")):
        o, b = s[key]["figures"], s[key]["best_seconds"]
        lines.append(
            f"| {name} | {b['total']:.2f} | {s[key]['images_per_s']:.0f} | {b['features']:.2f} | {b['fid']:.2f} | "
            f"{b['kid']:.2f} | {b['prdc']:.2f} | {o['fid']:.4f} | {o['kid']:.5f} | {o['precision']:.4f} | "
            f"{o['recall']:.4f} | {o['density']:.5f} | {o['coverage']:.4f} |"
        )
    lines += [
        "",
        f"tailgan's overhead over the baseline: **{100 * s['tailgan_overhead']:+.1f}%** (target: at most +10%). "
        f"FID relative difference {s['fid_rel_diff']:.1e}; largest PRDC difference {s['prdc_max_abs_diff']:.1e} "
        "(float32 distances computed two ways: a point on a ball's edge can fall either side). "
        "KIDs differ by the random subsets.",
        "",
    ]
    if "run" in r:
        lines += run_markdown(r["run"])
    return "\n".join(lines)


def run_markdown(run: dict) -> list[str]:
    """The ``--run`` section: the run's overall figures and per-class table for each reference."""
    lines = [
        f"## Run `{run['run']}` (step {run['step']}, {run['data']})",
        "",
        f"Evaluator at the run's pixels: test accuracy {run['evaluator']['test_accuracy']:.4f} "
        f"({run['evaluator']['resolution']} px).",
        "",
    ]
    for ref, res in run["results"].items():
        o = res["overall"]
        lines += [
            f"### ref {ref}: {res['num_real']} real / {res['num_fake']} fake images ({res['wall_seconds']:.0f} s)",
            "",
            f"FID {o['fid']:.3f}, KID {o['kid']:.5f} ± {o['kid_std']:.5f}, IS {o['is']:.3f}, "
            f"intra-class FID {o['ifid']:.3f}, precision {o['precision']:.3f}, recall {o['recall']:.3f}, "
            f"density {o['density']:.3f}, coverage {o['coverage']:.3f}, MS-SSIM {o['msssim']:.3f} "
            f"(real {o['msssim_real']:.3f}), label accuracy {o['labelacc']:.3f} "
            f"(real {o['labelacc_real']:.3f})",
            "",
            "| class | real | fake | FID | KID | label acc. | MS-SSIM | precision | recall |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        columns = (("fid", ".2f"), ("kid", ".4f"), ("labelacc", ".3f"), ("msssim", ".3f"), ("precision", ".3f"),
                   ("recall", ".3f"))  # fmt: skip
        for row in res["per_class"]:
            cells = [f"{row['class']} {row['name']}", str(row["num_real"]), str(row["num_fake"])]
            lines.append("| " + " | ".join(cells + [_f(row[k], f) for k, f in columns]) + " |")
        lines += [""] + [f"- warning: {w}" for w in res["warnings"]] + [""]
    return lines


if __name__ == "__main__":
    main()
