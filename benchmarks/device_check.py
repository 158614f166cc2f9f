"""Prepared GPU check (issue 29): does every tailgan path run on an accelerator, and how fast is the fast path?

One command, one JSON + one markdown file, every section timed, a failure recorded and the next section run:

1. **presets**: every recipe and preset (``tailgan.methods.all_presets``) trains ``--steps`` G steps through
   ``tailgan.train.train`` (run folder, checkpoint, log) in ``precision=auto``: bf16 autocast where the device
   has it, fp16 + GradScaler on a CUDA GPU without bf16, fp32 (with a note) on a CPU without native bf16.
   Pre-training phases run one epoch; DFG uses a random source; the joint recipes use one class pair.
2. **classify**: ``tailgan classify`` (logit adjustment, ResNet-32 on a GPU) for ``--classify-epochs``.
3. **eval**: ``tailgan eval`` of the ecogan-dcgan run of section 1 (FID, KID, label accuracy; the evaluator
   is trained and cached under ``$TAILGAN_CACHE`` on first use).
4. **ddp**: ``torchrun --nproc-per-node 2 -m tailgan train`` (ecogan-dcgan) when the machine has 2 GPUs.
5. **speed**: steps/s of ecogan-dcgan and bagan-gp (``Trainer.step``, GAN phase) and of ResNet-32
   (``tailgan.engine.fit``, SGD, 32 px) at each ``--batches`` size, fp32 and ``precision=auto`` built from the
   same seed and stepped alternately (A B B A ...), median of ``--speed-steps`` timed steps (CUDA synchronised).

Data: Fashion-MNIST-LT when its raw files are under ``--root``, else the embedded ``digits_lt`` (upscaled to
32 px, so a step costs the same). The whole run is sized for under 8 minutes on one H200-class GPU:

    python benchmarks/device_check.py                      # --device cuda
    python benchmarks/device_check.py --device cpu --data digits_lt --tiny --presets ecogan-dcgan,bagan-gp \\
        --steps 2 --speed-steps 2 --batches 8 --classify-epochs 0.2 --out /tmp/dc   # CI: tests/test_device_check.py

Writes ``--out``/device_check.{json,md} (default benchmarks/results).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
import traceback
from pathlib import Path

import fast_path_recipes  # benchmarks/: build() is the Trainer that tailgan train builds
import torch
from _harness import (
    RESULTS,
    command,
    data_root,
    machine,
    now,
    pick_data,
    run_tailgan,
    time_alternately,
    write_results,
)

from tailgan.version import __version__

STEM = "device_check"
SECTIONS = ("presets", "classify", "eval", "ddp", "speed")
# small networks for a check in seconds on a CPU (noise-driven GANs)
TINY = ["optim.batch_size=8", "optim.d_steps=1", "model.conv_dim=8", "model.embed_dim=16", "model.shared_dim=8",
        "model.z_dim=16"]  # fmt: skip
PRETRAINED = {"bagan", "bagan-gp", "ebgan", "idagan"}  # autoencoder pre-training: one epoch here
# ResNet-50's feature maps need ImageNet-sized images; a small channel evaluation keeps its first step short
PRESET_EXTRA = {"dfg-resnet50": ["data.resolution=224", "optim.batch_size=16", "options.per_class=2",
                                 "options.max_batches=1"]}  # fmt: skip
SPEED_GANS = {"ecogan-dcgan": [], "bagan-gp": ["options.pretrain=false"]}


def preset_overrides(name: str, data: str, tiny: bool) -> tuple[str, list[str]]:
    """(data preset, overrides) that let ``name`` train a few steps on ``data``."""
    from tailgan.methods import resolve_preset

    method = resolve_preset(name)["method"]
    if method in ("dfg", "cyclegan-cls", "stargan-cls"):  # benchmarks/fast_path_recipes.py's settings
        recipe_data, overrides = fast_path_recipes.RECIPES[method][1:]
        return (recipe_data if data == "fashion_mnist_lt" else data), [*overrides, *PRESET_EXTRA.get(name, [])]
    extra = ["options.pretrain_epochs=1"] if name in PRETRAINED or method in PRETRAINED else []
    return data, [*extra, *(TINY if tiny else [])]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def check_presets(args: argparse.Namespace, data: str, work: Path) -> list[dict]:
    from tailgan.methods import all_presets, method_names
    from tailgan.train import make_config, train

    every = method_names() + sorted(set(all_presets()) - set(method_names()))
    names = args.presets.split(",") if args.presets else every
    rows = []
    for name in names:
        row: dict = {"preset": name}
        t0 = time.perf_counter()
        try:
            preset_data, overrides = preset_overrides(name, data, args.tiny)
            root = args.root if preset_data.startswith("fashion_mnist") else None
            cfg = make_config(name, data=preset_data, root=root, steps=args.steps, overrides=[
                *overrides, "precision=auto", f"device={args.device}", "log_every=1", "sample_every=0",
                f"ckpt_every={args.steps}"])  # fmt: skip
            record = train(cfg, work / "presets" / name, console=False)
            start = next(json.loads(x) for x in (work / "presets" / name / "log.jsonl").open() if '"event"' in x)
            losses = {k: v for k, v in record.items() if isinstance(v, float) and k not in ("steps_per_s",)}
            row.update(ok=all(v == v and abs(v) != float("inf") for v in losses.values()), data=preset_data,
                       precision=start.get("precision"), channels_last=start.get("channels_last"),
                       note=start.get("note"), last_losses=losses, steps=args.steps)  # fmt: skip
        except Exception as e:  # recorded; the next preset runs
            row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}",
                       trace=traceback.format_exc()[-2000:])  # fmt: skip
        row["seconds"] = round(time.perf_counter() - t0, 2)
        print(f"  {name}: {'ok' if row['ok'] else 'FAILED ' + row.get('error', '')} ({row['seconds']} s)", flush=True)
        rows.append(row)
    return rows


def tailgan_cli(args: list[str], timeout: float, launcher: tuple[str, ...] = ()) -> dict:
    """Run ``python -m tailgan ARGS`` (optionally under ``launcher``), as a user would; its status and output tail."""
    t0 = time.perf_counter()
    try:
        res = run_tailgan(*args, threads=None, capture=True, timeout=timeout, launcher=launcher, check=False)
        ok, tail = res.returncode == 0, (res.stdout + res.stderr)[-1500:]
    except subprocess.TimeoutExpired:
        ok, tail = False, f"timed out after {timeout} s"
    cmd = " ".join([*launcher, "-m", "tailgan", *args])
    return {"ok": ok, "command": cmd, "seconds": round(time.perf_counter() - t0, 2), "output_tail": tail}


def check_classify(args: argparse.Namespace, data: str, work: Path) -> dict:
    arch = "lenet5" if args.tiny else "resnet32"
    root = ["--root", args.root] if data == "fashion_mnist_lt" else []
    return tailgan_cli(["classify", "--strategy", "la", "--data", data, *root, "--arch", arch, "--seeds", "1",
                        "--epochs", str(args.classify_epochs), "--device", args.device, "--precision", "auto",
                        "--out", str(work / "classify")], timeout=args.timeout)  # fmt: skip


def check_eval(args: argparse.Namespace, work: Path) -> dict:
    run = work / "presets" / "ecogan-dcgan"
    if not (run / "checkpoints" / "last.pt").is_file():
        return {"ok": False, "error": "no ecogan-dcgan run from the presets section to evaluate"}
    out = tailgan_cli(["eval", str(run), "--metrics", "fid,kid,labelacc", "--device", args.device, "--n",
                       str(args.eval_n), "--out", str(work / "eval.json")], timeout=args.timeout)  # fmt: skip
    if out["ok"]:
        overall = json.loads((work / "eval.json").read_text())
        out["overall"] = overall.get("overall", overall)
    return out


def check_ddp(args: argparse.Namespace, data: str, work: Path) -> dict:
    gpus = torch.cuda.device_count() if args.device.startswith("cuda") else 0
    if gpus < 2:
        return {"ok": None, "skipped": f"needs 2 GPUs; {args.device} with {gpus} CUDA device(s)"}
    run = work / "ddp"
    root = ["--root", args.root] if data == "fashion_mnist_lt" else []
    out = tailgan_cli(["train", "--method", "ecogan-dcgan", "--data", data, *root, "--steps", str(args.steps),
                       "--out", str(run), "precision=auto", "device=cuda", f"ckpt_every={args.steps}"],
                      timeout=args.timeout, launcher=("-m", "torch.distributed.run", "--standalone",
                                                      "--nproc-per-node", "2"))  # fmt: skip
    if out["ok"]:
        synced = [json.loads(x) for x in (run / "log.jsonl").open() if "ddp_in_sync" in x]
        out["in_sync"] = bool(synced) and all(r["ddp_in_sync"] for r in synced)
        out["ok"] = out["in_sync"]
    return out


def time_interleaved(steps: dict, n: int, warmup: int, device: str) -> dict:
    """Median seconds per call of each ``steps[mode]()``, the modes called alternately (A B B A ...)."""
    for _ in range(warmup):
        for f in steps.values():
            f()
    sync(device)
    wall = time_alternately(steps, n, sync=lambda: sync(device))
    return {m: statistics.median(v) for m, v in wall.items()}


def gan_speed(name: str, batch: int, args: argparse.Namespace, data: str) -> dict:
    overrides = [*SPEED_GANS[name], *(TINY if args.tiny else []), f"optim.batch_size={batch}"]
    loops = {p: fast_path_recipes.build(name, data, overrides, p, args.root, device=args.device)
             for p in ("fp32", "auto")}  # fmt: skip
    med = time_interleaved({p: loops[p][0].step for p in loops}, args.speed_steps, args.speed_warmup, args.device)
    return {"fp32": med["fp32"], "auto": med["auto"], "policy": loops["auto"][1].precision.name}


def classifier_speed(batch: int, args: argparse.Namespace) -> dict:
    """ResNet-32 SGD steps on one fixed batch through ``tailgan.engine.fit`` (the supervised loop)."""
    from torch.nn import functional as F

    from tailgan.engine.fit import fit
    from tailgan.nets.classifiers import build_classifier
    from tailgan.nets.precision import resolve_precision

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 32, 32, generator=gen).to(args.device)
    y = torch.randint(0, 10, (batch,), generator=gen).to(args.device)
    w = torch.ones(batch, device=args.device)

    def make(precision: str):
        torch.manual_seed(0)
        net = build_classifier("resnet32", 10, 3).to(args.device)
        opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return lambda: fit(net, lambda step: (x, y, w), lambda fwd, xb, yb, wb, t: F.cross_entropy(fwd(xb), yb),
                           opt, 1, device=args.device, precision=precision)  # fmt: skip

    med = time_interleaved({p: make(p) for p in ("fp32", "auto")}, args.speed_steps, args.speed_warmup, args.device)
    policy, _ = resolve_precision("auto", torch.device(args.device))
    return {"fp32": med["fp32"], "auto": med["auto"], "policy": policy.name}


def check_speed(args: argparse.Namespace, data: str) -> list[dict]:
    rows = []
    for name in [*SPEED_GANS, "resnet32"]:
        for batch in [int(b) for b in args.batches.split(",")]:
            row: dict = {"model": name, "batch": batch}
            try:
                med = classifier_speed(batch, args) if name == "resnet32" else gan_speed(name, batch, args, data)
                row.update(ok=True, fp32_steps_per_s=1 / med["fp32"], auto_steps_per_s=1 / med["auto"],
                           speedup=med["fp32"] / med["auto"], auto_policy=med["policy"])  # fmt: skip
            except Exception as e:
                row.update(ok=False, error=f"{type(e).__name__}: {str(e).splitlines()[0][:300]}")
            print(f"  {name} batch {batch}: {row}", flush=True)
            rows.append(row)
    return rows


def device_info(device: str) -> dict:
    info = machine(device=device, tailgan=__version__)
    if device.startswith("cuda") and torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(), gpus=torch.cuda.device_count(),
                    bf16=torch.cuda.is_bf16_supported(), cuda=torch.version.cuda)  # fmt: skip
    return info


def markdown(doc: dict) -> str:
    m = doc["machine"]
    where = m.get("gpu", m["cpu"])
    lines = [f"# Device check: {where}", "",
             f"{doc['started']}, {where} ({m['device']}), torch {m['torch']}, tailgan {m['tailgan']}; "
             f"{doc['seconds']:.0f} s in all. Command: `{doc['command']}`. Data: {doc['data']}.", ""]  # fmt: skip
    if "presets" in doc:
        lines += [
            "## Every recipe and preset, precision=auto",
            "",
            "| preset | ok | precision | channels-last | seconds | note / error |",
            "|---|---|---|---|---|---|",
        ]
        for r in doc["presets"]:
            lines.append(
                f"| {r['preset']} | {'yes' if r['ok'] else 'NO'} | {r.get('precision', '-')} | "
                f"{r.get('channels_last', '-')} | {r['seconds']} | {r.get('error') or r.get('note') or ''} |"
            )
        lines.append("")
    for key in ("classify", "eval", "ddp"):
        if key in doc:
            r = doc[key]
            state = "skipped: " + r["skipped"] if "skipped" in r else ("ok" if r["ok"] else "FAILED")
            extra = f"; {json.dumps(r['overall'])}" if "overall" in r else ""
            lines.append(f"- **{key}**: {state} ({r.get('seconds', 0)} s){extra}" +
                         (f"; `{r['command']}`" if "command" in r else ""))  # fmt: skip
    if "speed" in doc:
        lines += [
            "",
            "## Steps/s, fp32 vs precision=auto (interleaved, median)",
            "",
            "| model | batch | fp32 steps/s | auto steps/s | auto is | speed-up |",
            "|---|---|---|---|---|---|",
        ]
        for r in doc["speed"]:
            lines.append(f"| {r['model']} | {r['batch']} | {r['fp32_steps_per_s']:.2f} | {r['auto_steps_per_s']:.2f} | "
                         f"{r['auto_policy']} | {r['speedup']:.2f}x |" if r["ok"] else
                         f"| {r['model']} | {r['batch']} | FAILED: {r['error']} | | | |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda", help="cuda | cuda:N | cpu")
    p.add_argument("--root", default=data_root(), help="folder holding FashionMNIST/raw (else digits_lt)")
    p.add_argument("--data", default="auto", help="auto: fashion_mnist_lt when under --root, else digits_lt")
    p.add_argument("--sections", default=",".join(SECTIONS), help="comma list of " + ", ".join(SECTIONS))
    p.add_argument("--presets", default="", help="comma list (default: every recipe and preset)")
    p.add_argument("--steps", type=int, default=4, help="G steps per preset (and the DDP run)")
    p.add_argument("--tiny", action="store_true", help="tiny networks (a CPU check in seconds)")
    p.add_argument("--classify-epochs", type=float, default=1.0)
    p.add_argument("--eval-n", type=int, default=1000, help="fakes for the eval section")
    p.add_argument("--batches", default="64,128")
    p.add_argument("--speed-steps", type=int, default=30)
    p.add_argument("--speed-warmup", type=int, default=5)
    p.add_argument("--timeout", type=float, default=300, help="seconds for each CLI sub-process")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA GPU here; run with --device cpu for the CPU check")
    if args.threads:
        torch.set_num_threads(args.threads)
    sections = [s for s in args.sections.split(",") if s]
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise SystemExit(f"unknown section(s) {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    data, data_note = pick_data(args.root) if args.data == "auto" else (args.data, "")
    t0 = time.perf_counter()
    doc: dict = {
        "benchmark": STEM,
        "command": command(__file__, argv),
        "started": now(),
        "machine": device_info(args.device),
        "data": data + (f" ({data_note})" if data_note else ""),
    }
    work = Path(tempfile.mkdtemp(prefix="device_check_"))
    try:
        for section in sections:
            print(f"{section}:", flush=True)
            s0 = time.perf_counter()
            doc[section] = {"presets": lambda: check_presets(args, data, work),
                            "classify": lambda: check_classify(args, data, work),
                            "eval": lambda: check_eval(args, work),
                            "ddp": lambda: check_ddp(args, data, work),
                            "speed": lambda: check_speed(args, data)}[section]()  # fmt: skip
            doc.setdefault("section_seconds", {})[section] = round(time.perf_counter() - s0, 1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(fast_path_recipes.SCRATCH, ignore_errors=True)
    doc["seconds"] = time.perf_counter() - t0
    failed = [s for s in sections if s in ("classify", "eval", "ddp") and doc[s].get("ok") is False]
    failed += [f"presets:{r['preset']}" for r in doc.get("presets", []) if not r["ok"]]
    failed += [f"speed:{r['model']}@{r['batch']}" for r in doc.get("speed", []) if not r["ok"]]
    doc["failed"] = failed
    write_results(args.out, STEM, doc, markdown(doc))
    print(markdown(doc))
    print(f"failed: {', '.join(failed)}" if failed else "every check passed")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
