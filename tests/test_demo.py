"""The README's main job runs end to end (tiny networks, few steps)."""

from tailgan.cli import main as cli


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--out", str(out), "--steps", "2", "--quick"]) == 0
    text = capsys.readouterr().out
    assert "120" in text and "ACSA" in text and "labelacc" in text and "\nverdict: " in text
    assert (out / "digits_lt_counts.png").is_file()
    assert (out / "bagan_gp_run" / "samples" / "step_0000002.png").is_file()
    assert (out / "report.html").is_file() and "report:" in text and "best classical" in text
    # a second run replaces its own earlier demo folder
    assert cli(["demo", "--out", str(out), "--steps", "1", "--quick"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    assert cli(["demo", "--out", str(tmp_path / "mine"), "--steps", "1", "--quick"]) == 2
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"


def _summary(labelacc, vanilla, ts, la, gan, feat=None):
    s = lambda m: {"mean": m, "std": 0.01, "n": 3}  # noqa: E731
    acsa = {"vanilla": s(vanilla), "ts": s(ts), "la": s(la)}
    if feat is not None:
        acsa["feat-calibrate"] = s(feat)
    if gan is not None:
        acsa["bagan-gp+la"] = s(gan)
    best = "ts" if ts > la else "la"
    return {"labelacc": labelacc, "fid": 6.5, "acsa": acsa, "best_classical": best}


def test_demo_verdict_names_the_bar_and_the_numbers():
    from tailgan.demo import verdict

    text = verdict(_summary(0.85, 0.90, 0.91, 0.92, 0.925))
    assert "label accuracy 0.850" in text and "best classical (la) 0.920 ± 0.010" in text
    assert "gan+la with BAGAN-GP's images 0.925 ± 0.010 (la without them 0.920 ± 0.010)" in text
    assert text.splitlines()[-1] == (
        "verdict: the generated images helped (label accuracy >= 0.8, ACSA with them >= without), and beat la"
    )
    # ts is the best classical strategy, la without images is the comparison
    assert verdict(_summary(0.85, 0.90, 0.93, 0.92, 0.92)).endswith("and did not beat ts")
    low = verdict(_summary(0.75, 0.90, 0.91, 0.92, 0.91)).splitlines()[-1]
    assert "did not help (label accuracy 0.750 < 0.8; ACSA with them 0.910 < 0.920 without)" in low
    assert verdict(_summary(0.85, 0.90, 0.91, 0.92, None)).endswith("so they were not used")


def test_demo_verdict_says_whether_generated_features_beat_the_best_classical():
    from tailgan.demo import verdict

    lines = verdict(_summary(0.85, 0.90, 0.91, 0.92, 0.925, feat=0.935)).splitlines()
    assert lines[2] == ("generated features (feat-calibrate: the vanilla network's head re-trained on real + "
                        "generated tail features) 0.935 ± 0.010: beat la (+0.015)")  # fmt: skip
    assert "gan+la with BAGAN-GP's images 0.925" in lines[1]
    lines = verdict(_summary(0.85, 0.90, 0.93, 0.92, None, feat=0.92)).splitlines()
    assert lines[2].endswith("did not beat ts (-0.010)") and lines[1].endswith("no generated images were used")
