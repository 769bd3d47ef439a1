"""The demo pipeline end to end on a 2-run sweep of a tiny net (real scripts, no stubs), then a resumed re-run."""
import json

import pytest
from conftest import run_cli

from src.cli import demo


def test_helpers():
    # whether a step's output is current (weights sha256, tol, domain; never file times): tests/test_current.py
    opts = demo.build_parser().parse_args([])
    assert demo.sweep_size(opts) == 12
    assert demo.sweep_size(demo.build_parser().parse_args(["--l1", "0", "--adv", "none", "--dropout", "0,0.3"])) == 2
    args = [str(x) for x in demo.train_args(opts)]
    assert args[:4] == ["-s", "900", "-a", "mlp:6-6"] and "--force" not in args


@pytest.mark.slow
def test_bad_flags():
    r = run_cli("demo.py", "--jobs", "0", timeout=60)
    assert r.returncode == 2 and "--jobs" in r.stderr


@pytest.mark.slow
def test_demo_end_to_end_and_resume(tmp_path):
    models, out = tmp_path / "models", tmp_path / "out"
    cmd = ["demo.py", "--models-dir", models, "--out", out, "-s", "7",
           "-a", "mlp:3-3", "--epochs", "1", "--train-subset", "2000", "--l1", "0,3e-3", "--adv", "none",
           "--dropout", "0", "--time-limit", "30", "--verify-points", "200", "--verify-patterns", "10",
           "--slice-plane", "random", "-j", "2"]
    r = run_cli(*cmd, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    summary = json.loads((out / "demo_summary.json").read_text())
    assert summary["runs"] == [7, 8] and summary["failures"] == 0
    steps = {(s["step"], s["run"]): s["status"] for s in summary["steps"]}
    for run in (7, 8):
        for step in ("count", "compress", "transform:feasible", "transform:all"):
            assert steps[(step, run)] == "ok", (step, run, steps)
        d = models / f"fcnn_run_{run}"
        reg = json.loads((d / "regions_input_0_1.json").read_text())
        tf = json.loads((d / "two_hidden_feasible_input_0_1.json").read_text())
        assert reg["complete"] and tf["patterns"] == reg["count"] and tf["verification"]["ok"] is True
        assert (d / "compressed_input_0_1.json").is_file() and (d / "two_hidden_all_nodes.json").is_file()
    for stem in ("regions_vs_l1", "stable_units_vs_l1", "accuracy_vs_regions", "transform_sizes", "input_slice"):
        assert (out / f"{stem}.png").stat().st_size > 0 and (out / f"{stem}.pdf").stat().st_size > 0
    md = (out / "results.md").read_text()
    assert "| 7 |" in md and "| 8 |" in md
    # the verdict is stated, and agrees with the numbers in the summary; runs near chance (a 3-3 net after
    # one epoch on 2,000 images) are named and left out of it rather than counted
    accs = {run: json.loads((models / f"fcnn_run_{run}" / "metrics.json").read_text())["test_accuracy"]
            for run in (7, 8)}
    judged = [run for run, a in accs.items() if a >= 0.2]
    if judged:
        verdict = "SHOWS the paper's trend" if summary["trend"]["shows"] else "does NOT show the paper's trend"
    else:
        verdict = "nothing to judge"
    assert verdict in r.stdout and verdict in summary["trend"]["text"]
    for run in set(accs) - set(judged):
        assert f"run {run} (test accuracy {accs[run]:.4f}, near chance" in r.stdout
    assert "Where everything is" in r.stdout
    # a second run resumes: nothing is recomputed
    r2 = run_cli(*cmd, timeout=600)
    assert r2.returncode == 0, r2.stderr[-2000:]
    s2 = json.loads((out / "demo_summary.json").read_text())
    per_run = [s for s in s2["steps"] if s["run"] is not None]
    assert per_run and all(s["status"] == "skipped" for s in per_run), per_run
