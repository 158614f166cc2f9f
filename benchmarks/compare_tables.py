"""Two classify tables side by side: the rows present in both, ACSA and tail-3 recall of each (mean ± std).

    python benchmarks/compare_tables.py benchmarks/results/classify_fmnist_lt_v2.json \
        benchmarks/results/classify_fmnist_lt_v3.json --labels "no augmentation" standard \
        --out benchmarks/results/classify_fmnist_lt_v3_augmentation.md

Reads the JSON reports ``benchmarks/classify_fmnist_lt.py`` writes; writes one markdown file naming both
reports, their commands and what differs between their settings.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from _harness import mean_std_text

from tailgan.classify.bench import load_json


def _cell(row: dict, key: str) -> str:
    return mean_std_text(row["summary"].get(key))


def _delta(a: dict, b: dict, key: str) -> str:
    return f"{b['summary'][key]['mean'] - a['summary'][key]['mean']:+.4f}"


def compare(first: dict, second: dict, labels: tuple[str, str], notes: Sequence[str] = ()) -> list[str]:
    rows_a = {r["strategy"]: r for r in first["results"]}
    rows_b = {r["strategy"]: r for r in second["results"]}
    both = [name for name in rows_b if name in rows_a]
    config_a, config_b = first.get("config", {}), second.get("config", {})
    # the synthetic-data protocol is each generative row's own (listed per row in each table), not the header's
    protocol = ("synthetic", "synthetic_classes", "synthetic_weight", "filter", "filter_rounds", "finetune")
    differs = sorted(k for k in set(config_a) & set(config_b) if config_a.get(k) != config_b.get(k)
                     and k not in protocol)  # fmt: skip
    added = sorted(set(config_b) - set(config_a))
    a, b = labels
    md = [f"# {a} vs {b}", ""]
    md += [f"- {a}: {first.get('command', '?')} ({first.get('machine', {}).get('cpu', '?')})"]
    md += [f"- {b}: {second.get('command', '?')} ({second.get('machine', {}).get('cpu', '?')})"]
    md += ["- settings that differ: " + ", ".join(f"{k} {config_a.get(k)!r} -> {config_b.get(k)!r}" for k in differs)]
    if added:
        md += [f"- settings {b} has and {a} did not (new fields; their defaults do what {a} did, except augment): "
               + ", ".join(added)]  # fmt: skip
    md += [f"- validation split, {a}: {first.get('validation_split', 'seed s selects on split s')}",
           f"- validation split, {b}: {second.get('validation_split', 'seed s selects on split s')}", ""]  # fmt: skip
    md += [f"| strategy | ACSA, {a} | ACSA, {b} | change | tail-3 recall, {a} | tail-3 recall, {b} | change |"]
    md += ["| --- | --- | --- | --- | --- | --- | --- |"]
    for name in both:
        ra, rb = rows_a[name], rows_b[name]
        cells = [_cell(ra, "acsa"), _cell(rb, "acsa"), _delta(ra, rb, "acsa"), _cell(ra, "tail_recall"),
                 _cell(rb, "tail_recall"), _delta(ra, rb, "tail_recall")]  # fmt: skip
        md.append(f"| {name} | " + " | ".join(cells) + " |")
    changes = [rows_b[n]["summary"]["acsa"]["mean"] - rows_a[n]["summary"]["acsa"]["mean"] for n in both]
    md += [""] + [f"- {n}" for n in notes] if notes else []
    if changes:
        md += ["", f"Mean ACSA change over the {len(both)} rows: {sum(changes) / len(changes):+.4f} "
                   f"(from {min(changes):+.4f} to {max(changes):+.4f})."]  # fmt: skip
    return md


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("first")
    p.add_argument("second")
    p.add_argument("--labels", nargs=2, default=("first", "second"))
    p.add_argument("--out", required=True)
    p.add_argument("--note", action="append", default=[], help="a line to add under the table")
    args = p.parse_args(argv)
    docs = [load_json(f) for f in (args.first, args.second)]
    Path(args.out).write_text("\n".join(compare(*docs, tuple(args.labels), args.note)) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
