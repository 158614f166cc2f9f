"""When does generation help: Fashion-MNIST cut with ``recipe=exp`` at imbalance factors 10 ... 500.

For each factor, ``classify_fmnist_lt.py`` trains the rows below (3 seeds, LeNet-5, ``--epochs`` (15) passes
over that cut, one validation split for every row) into ``benchmarks/results/if_sweep/if_sweep_<IF>.{json,md}``;
this script runs the factors that have no report yet (``--run``) and writes the summary
``benchmarks/results/if_sweep.{md,png}``: per factor, the classical row and the feature-generation row that score
best *on validation* (never on the test set), with their test ACSA and tail-3 recall.

    python benchmarks/if_sweep.py --run --threads 1      # ~20 min on one quiet core; resumes by factor
    python benchmarks/if_sweep.py                        # the summary from the reports already there
    python benchmarks/if_sweep.py --run --factors 10 --seeds 1 --rows vanilla,feat-calibrate --epochs 0.05 \
        --out /tmp/if_sweep                              # the tiny setting: a minute

Image generators are not in the sweep: a GAN per factor is hours of CPU (see the v3 table for BAGAN-GP at the
ECOGAN cut).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _harness import RESULTS, mean_std_text
from classify_fmnist_lt import main as classify_main

from tailgan.classify.bench import load_json

FACTORS = (10, 50, 100, 200, 500)
ROWS = "vanilla,balanced-softmax,crt,crt+balanced-softmax,feat-calibrate,feat-calibrate+balanced-softmax"
FAMILIES = ("classical", "feature generation")


def family(name: str) -> str:
    return "feature generation" if name.startswith("feat-") else "classical"


def valid_mean(row: dict) -> float:
    scores = [r.get("valid_acsa") for r in row["runs"]]
    return sum(s for s in scores if s is not None) / max(1, sum(s is not None for s in scores))


def best_by_validation(doc: dict) -> dict[str, dict]:
    best: dict[str, dict] = {}
    for row in doc["results"]:
        fam = family(row["strategy"])
        if fam not in best or valid_mean(row) > valid_mean(best[fam]):
            best[fam] = row
    return best


def _cell(row: dict, key: str) -> str:
    return mean_std_text(row["summary"][key])


def factor_report(out: Path, factor: int) -> Path:
    """The classify report of one imbalance factor."""
    return out / "if_sweep" / f"if_sweep_{factor}.json"


def validation_table(reports: dict[int, dict]) -> list[str]:
    """Per factor, the best row of each family by validation ACSA, with its test figures."""
    md = ["| IF | training images | classical (by validation) | test ACSA | tail-3 | feature generation "
          "(by validation) | test ACSA | tail-3 | difference |", "| --- " * 9 + "|"]  # fmt: skip
    for f, doc in reports.items():
        best = best_by_validation(doc)
        c, g = best["classical"], best["feature generation"]
        diff = g["summary"]["acsa"]["mean"] - c["summary"]["acsa"]["mean"]
        n = sum(doc["data"]["train_counts"]) if "train_counts" in doc["data"] else "?"
        md.append(f"| {f} | {n} | {c['strategy']} | {_cell(c, 'acsa')} | {_cell(c, 'tail_recall')} | {g['strategy']} | "
                  f"{_cell(g, 'acsa')} | {_cell(g, 'tail_recall')} | {diff:+.4f} |")  # fmt: skip
    return md


def reference_table(reports: dict[int, dict]) -> list[str]:
    """Per factor, the best row of each family by test ACSA and the best tail-3 recall of each family."""
    md = ["| IF | classical (test) | ACSA | feature generation (test) | ACSA | best tail-3, classical | "
          "best tail-3, feature generation |", "| --- " * 7 + "|"]  # fmt: skip
    for f, doc in reports.items():
        by_family = {fam: [r for r in doc["results"] if family(r["strategy"]) == fam] for fam in FAMILIES}
        cells = [str(f)]
        for fam in FAMILIES:
            top = max(by_family[fam], key=lambda r: r["summary"]["acsa"]["mean"])
            cells += [top["strategy"], _cell(top, "acsa")]
        for fam in FAMILIES:
            top = max(by_family[fam], key=lambda r: r["summary"]["tail_recall"]["mean"])
            cells.append(f"{top['strategy']} {_cell(top, 'tail_recall')}")
        md.append("| " + " | ".join(cells) + " |")
    return md


def summary(reports: dict[int, dict]) -> list[str]:
    """The summary markdown of the factors' reports (factor -> its classify report)."""
    md = ["# When does generation help: imbalance factor sweep (Fashion-MNIST, recipe=exp)", ""]
    md += ["Per factor, the best row of each family *by validation ACSA* (mean over seeds), and its test figures; "
           "every row of the factor's report is in `if_sweep/if_sweep_<IF>.md`.", ""]  # fmt: skip
    md += validation_table(reports)
    md += ["", "For reference only (chosen on the test set, so not a protocol result): the best row of each family by "
           "test ACSA, and the best tail-3 recall of each family.", ""]  # fmt: skip
    md += reference_table(reports)
    first = next(iter(reports.values()))
    md += ["", f"- command per factor: {first.get('command')}", f"- machine: {first.get('machine')}",
           f"- budget: {first.get('budget')}"]  # fmt: skip
    return md


def plot(reports: dict[int, dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows: dict[str, list[tuple[int, float, float]]] = {}
    for f, doc in reports.items():
        for row in doc["results"]:
            s = row["summary"]["acsa"]
            rows.setdefault(row["strategy"], []).append((f, s["mean"], s["std"]))
    for name, pts in rows.items():
        xs, ys, es = zip(*pts)
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=2, label=name, linestyle="--" if family(name) == "classical"
                    else "-")  # fmt: skip
    ax.set_xscale("log")
    ax.set_xlabel("imbalance factor")
    ax.set_ylabel(f"test ACSA ({len(next(iter(reports.values()))['seeds'])} seeds)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def _factors(text: str) -> tuple[int, ...]:
    return tuple(int(f) for f in text.split(","))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="train the factors that have no report yet")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=float, default=15.0, help="passes over each cut (the same for every row)")
    p.add_argument("--factors", type=_factors, default=FACTORS, help="imbalance factors, a comma list")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--rows", default=ROWS, help="the classify rows of each factor (both families are needed)")
    p.add_argument("--out", type=Path, default=RESULTS,
                   help="writes OUT/if_sweep/if_sweep_<IF>.{json,md} and OUT/if_sweep.{md,png}")  # fmt: skip
    return p.parse_args(argv)


def run_factor(args: argparse.Namespace, factor: int) -> None:
    """Train the rows of one factor into its report (classify_fmnist_lt.py, one validation split for every row)."""
    classify_main(["--data", "fashion_mnist", "--data-set", "recipe=exp", "--data-set", f"imbalance_factor={factor}",
                   "--seeds", str(args.seeds), "--strategies", args.rows, "--set", "split_seed=0",
                   "--stem", f"if_sweep_{factor}", "--out", str(args.out / "if_sweep"), "--threads", str(args.threads),
                   "--epochs", str(args.epochs)])  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for f in args.factors if args.run else ():
        if not factor_report(args.out, f).is_file():
            run_factor(args, f)
    reports = {f: load_json(factor_report(args.out, f)) for f in args.factors if factor_report(args.out, f).is_file()}
    if not reports:
        raise SystemExit("no factor has a report yet: run with --run")
    (args.out / "if_sweep.md").write_text("\n".join(summary(reports)) + "\n")
    plot(reports, args.out / "if_sweep.png")
    print(f"wrote {args.out / 'if_sweep.md'} ({len(reports)} of {len(args.factors)} factors)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
