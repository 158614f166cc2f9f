"""The README's main job runs end to end (tiny networks, few steps)."""

from tailgan.cli import main as cli


def test_demo_quick(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli(["demo", "--out", str(out), "--steps", "2", "--quick"]) == 0
    text = capsys.readouterr().out
    assert "120" in text and "ACSA" in text and "labelacc" in text
    assert (out / "digits_lt_counts.png").is_file()
    assert (out / "bagan_gp_run" / "samples" / "step_0000002.png").is_file()
    assert (out / "report.html").is_file() and "report:" in text and "best classical" in text
    # a second run replaces its own earlier demo folder
    assert cli(["demo", "--out", str(out), "--steps", "1", "--quick"]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("x")
    assert cli(["demo", "--out", str(tmp_path / "mine"), "--steps", "1", "--quick"]) == 2
    assert (tmp_path / "mine" / "keep.txt").read_text() == "x"
