"""tailgan report: a page built from a tiny real run + eval + classify + bench, checked against the inputs."""

import argparse
import base64
import json
import shutil
import statistics
import subprocess
from html.parser import HTMLParser
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import read_log
from PIL import Image

from tailgan.cli import main as cli
from tailgan.data import load_data, to_float
from tailgan.errors import TailganError
from tailgan.io import atomic_write_json
from tailgan.metrics import FeatureExtractor, evaluate
from tailgan.report import build_report
from tailgan.report import cli as report_cli
from tailgan.report.build import data_sections

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
PNG = b"\x89PNG\r\n\x1a\n"


class Page(HTMLParser):
    """Strict enough for our pages: every end tag closes the innermost open tag; collects images, links,
    section ids and the cells of every table row."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.errors, self.srcs, self.links, self.ids, self.rows = [], [], [], [], [], []
        self._row, self._cell = None, None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "srcset", "poster", "data") and v is not None:
                (self.srcs if k != "href" else self.links).append(v)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "tr":
            self._row = []
        if tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(" ".join("".join(self._cell).split()))
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def parse(path):
    text = path.read_text(encoding="utf-8")
    page = Page()
    page.feed(text)
    page.close()
    assert page.errors == [] and page.stack == [], (page.errors, page.stack)
    return page, text


class PooledPixels(FeatureExtractor):
    """Tiny extractor: 4x4 average-pooled pixels (16-d); logits = -squared distance to each class mean."""

    def __init__(self, means):
        super().__init__("pooled-pixels", "pooled-pixels-report-test", 16)
        self.register_buffer("means", means)

    @staticmethod
    def pool(images):
        return F.adaptive_avg_pool2d(images.float() / 255.0, 4).flatten(1)

    def forward(self, images):
        f = self.pool(images)
        return f, -(torch.cdist(f, self.means) ** 2)


class ReplayGenerator:
    """Real training images of the asked classes (a perfect generator)."""

    def __init__(self, images):
        self.images, self.num_classes = images, images.num_classes
        self.by_class = [(images.labels == c).nonzero().flatten() for c in range(images.num_classes)]

    def sample(self, labels, seed=None, batch_size=256):
        g = torch.Generator().manual_seed(seed)
        picks = torch.stack([self.by_class[y][torch.randint(len(self.by_class[y]), (1,), generator=g)][0]
                             for y in labels.tolist()])
        return to_float(self.images.images[picks])


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A 4-step ECOGAN run with an evaluation file, a 2-seed classify folder and a 2-strategy bench."""
    root = tmp_path_factory.mktemp("study")
    run, cls, bench = root / "run", root / "cls", root / "bench"
    assert cli(["train", "--method", "ecogan-dcgan", "--data", "digits_lt", "--steps", "4", "--out", str(run),
                "model.conv_dim=8", "model.embed_dim=16", "optim.batch_size=16", "optim.d_steps=1",
                "sample_every=2", "log_every=2", "ckpt_every=4"]) == 0  # fmt: skip
    data = load_data("digits_lt", resolution=32)
    f = PooledPixels.pool(data.train.images)
    means = torch.stack([f[data.train.labels == c].mean(0) for c in range(data.num_classes)])
    pooled = PooledPixels(means)
    result = evaluate(ReplayGenerator(data.test), data, metrics="fid,kid,labelacc", ref="test", n=200,
                      extractor=pooled, classifier=pooled, kid_subsets=5, kid_subset_size=10)  # fmt: skip
    result.update(run=str(run), checkpoint="last", step=4)
    atomic_write_json(run / "eval" / "4.json",
                      {"run": str(run), "step": 4, "checkpoint": "last", "results": {"test/pooled-pixels": result}})
    steps = ["--steps", "6", "--batch-size", "32"]
    assert cli(["classify", "--data", "digits_lt", "--strategy", "cs", "--seeds", "2", *steps, "--out", str(cls)]) == 0
    assert cli(["bench", "classify", "--data", "digits_lt", "--strategies", "vanilla,ts", "--seeds", "1", *steps,
                "--out", str(bench)]) == 0  # fmt: skip
    return {"root": root, "run": run, "cls": cls, "bench": bench}


def test_report_embeds_everything_and_shows_the_inputs_numbers(study, tmp_path):
    run, cls, bench = study["run"], study["cls"], study["bench"]
    out = build_report([run, cls, bench], tmp_path / "report.html")
    page, text = parse(out)

    # self-contained: every image a PNG data URI, links only to anchors of the page
    assert page.srcs and all(s.startswith("data:image/png;base64,") for s in page.srcs)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == PNG for s in page.srcs)
    assert all(link.startswith("#") and link[1:] in page.ids for link in page.links)
    assert "http://" not in text and "https://" not in text
    for section in ("data", "training", "samples", "quality", "classifiers", "reproduce"):
        assert section in page.ids

    manifest = json.loads((run / "data_manifest.json").read_text())
    for c, (name, n) in enumerate(zip(manifest["classes"], manifest["counts"])):
        assert [str(c), name, str(n)] == next(r[:3] for r in page.rows if r[:2] == [str(c), name] and len(r) == 5)
    assert f"{max(manifest['counts']) / min(manifest['counts']):.1f}" in text and manifest["fingerprint"] in text

    records = read_log(run)
    assert [r["step"] for r in records] == [2, 4]
    assert f"{statistics.median(r['steps_per_s'] for r in records):.2f} median" in text

    grid = (run / "samples" / "step_0000004.png").read_bytes()
    assert "data:image/png;base64," + base64.b64encode(grid).decode() in page.srcs

    result = json.loads((run / "eval" / "4.json").read_text())["results"]["test/pooled-pixels"]
    assert "pooled-pixels" in text
    for row in result["per_class"]:
        cells = next(r for r in page.rows if r[:2] == [str(row["class"]), row["name"]] and len(r) > 5)
        assert cells[2] == str(manifest["counts"][row["class"]])  # training images beside the figures
        assert f"{row['fid']:.4g}" in cells[5] and cells[6].startswith(f"{row['kid']:.4g}")
        assert cells[7] == f"{row['labelacc']:.3f}"

    doc = json.loads((cls / "metrics.json").read_text())
    acsa = doc["summary"]["acsa"]
    row = next(r for r in page.rows if r and r[0] == "cs")
    assert row[1] == "2" and row[2] == f"{acsa['mean']:.4f} ± {acsa['std']:.4f}"
    bench_doc = json.loads((bench / "bench.json").read_text())
    best = max(r["summary"]["acsa"]["mean"] for r in bench_doc["results"])  # ties are all marked
    for r in bench_doc["results"]:
        cells = next(x for x in page.rows if x and x[0].startswith(r["strategy"]))
        tail = r["summary"]["tail_recall"]
        assert f"{tail['mean']:.4f} ± {tail['std']:.4f}" in cells
        assert ("★ best ACSA" in cells[0]) == (r["summary"]["acsa"]["mean"] == best)
    assert bench_doc["winners"] in text

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert f"tailgan train --config {run / 'config.yaml'}" in text and f"steps: {cfg['steps']}" in text
    # the reproduce commands are generated from the outputs' config.yaml (tailgan.classify.runconfig)
    assert "tailgan classify --data digits_lt --strategy cs --seeds 2 steps=6 batch_size=32 --out NEW_OUT" in text
    assert "tailgan bench classify --data digits_lt --strategies vanilla,ts --seeds 1 steps=6 batch_size=32" in text


def test_one_dataset_used_by_a_run_and_a_classify_input_shows_its_fingerprint_once():
    data = {"preset": "digits_lt", "classes": ["a", "b"], "fingerprint": "401b00a20a759c0c"}
    run = SimpleNamespace(manifest={**data, "counts": [9, 3], "resolution": 32})
    cls = SimpleNamespace(doc={"data": {**data, "train_counts": [9, 3], "image_shape": [1, 32, 32]}})
    inputs = SimpleNamespace(runs=[run], classify=[cls], benches=[])
    (entry,) = data_sections(inputs, ["r"], ["c"], [])
    assert entry["prints"] == [("401b00a20a759c0c", "32x32 px")]
    assert entry["used_by"] == ["run r", "classify c"]


def test_report_shows_new_fields_and_survives_odd_logs(study, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(study["run"], run)
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["faithful"] = True
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    lines = [
        {"step": 2, "phase": "pretrain", "ae_loss": 0.5, "steps_per_s": 10.0},
        {"step": 2, "event": "resume", "from": "last.pt"},
        {"step": 4, "fid": 30.0, "kid": 0.02},
        {"step": 5, "fid": 20.5, "kid": 0.03, "shiny_new_key": [1, 2]},
        {"step": 6, "fid": 25.0, "kid": 0.01, "event": "diverged", "loss": "d_loss"},
    ]
    with open(run / "log.jsonl", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in lines) + '{"step": 7, "cut in the mid')
    Image.new("RGB", (40, 20), (200, 30, 30)).save(run / "samples" / "translate_step_0000004.png")
    Image.new("RGB", (30, 30), (30, 200, 30)).save(run / "attention.png")
    out = build_report([run], tmp_path / "r.html")
    page, text = parse(out)
    assert "faithful to the original code" in text
    assert "1 unreadable line skipped" in text
    for name in ("translate_step_0000004.png", "attention.png"):
        raw = (run / ("samples" if "translate" in name else "") / name).read_bytes()
        assert "data:image/png;base64," + base64.b64encode(raw).decode() in page.srcs
    events = [r for r in page.rows if len(r) == 4 and r[1] in ("resume", "diverged")]
    assert [r[:2] for r in events] == [["2", "resume"], ["6", "diverged"]]
    fid_row = next(r for r in page.rows if r and r[0].startswith("fid ("))
    assert fid_row == ["fid (lower is better)keeps best.pt", "20.5", "5", "25", "6"]  # best and last steps
    assert ["kid (lower is better)", "0.01", "6", "0.01", "6"] in page.rows
    first = json.loads((run / "log.jsonl").read_text().splitlines()[0]).get("phase", "train")
    assert f"phases: {first} → pretrain" in text  # records without a phase belong to the one before them


def test_report_folder_search_overwrite_rules_and_errors(study, tmp_path):
    out = tmp_path / "study.html"
    build_report([study["root"]], out)  # a study folder: its run, classify and bench folders are found
    page, text = parse(out)
    assert all(name in text for name in ("/run", "/cls", "/bench/bench.json"))
    build_report([study["run"]], out)  # an earlier report is replaced
    assert "bench.json" not in out.read_text()
    other = tmp_path / "notes.html"
    other.write_text("<p>mine</p>")
    with pytest.raises(TailganError, match="not a tailgan report"):
        build_report([study["run"]], other)
    assert other.read_text() == "<p>mine</p>"
    with pytest.raises(TailganError, match="does not exist"):
        build_report([tmp_path / "nope"], tmp_path / "x.html")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(TailganError, match="not a tailgan output"):
        build_report([tmp_path / "junk"], tmp_path / "x.html")
    assert not (tmp_path / "x.html").exists()


def test_report_command_line(study, tmp_path, capsys):
    parser = argparse.ArgumentParser(prog="tailgan")
    report_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["report", str(study["cls"]), "--out", str(tmp_path / "c.html"), "--title", "My <study>"])
    assert args.func(args) == 0
    assert str(tmp_path / "c.html") in capsys.readouterr().out
    page, text = parse(tmp_path / "c.html")
    assert "<title>My &lt;study&gt;</title>" in text  # autoescaped


def _chromium():
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
def test_report_renders_in_headless_chromium(study, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium)")
    out = build_report([study["run"], study["cls"], study["bench"]], tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1280,2000",
         "--enable-logging=stderr", "--v=0", out.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert shot.is_file(), proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == []
    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        gray = im.convert("L")
        hist = gray.histogram()
        dark = sum(hist[:128]) / (im.width * im.height)
        assert 0.005 < dark < 0.5  # text, plots and grids drawn on a light page
        assert len(set(gray.resize((64, 100)).tobytes())) > 20
