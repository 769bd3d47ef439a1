"""The CNN zoo through the whole pipeline (issue 22 part 2): train_bulk_script's sweep trains CNN runs, the count
reads their dense weights.dat on a local box, and the results table shows them.

Independent references: the count of each run against a brute force over the units that interval arithmetic
(computed here, in numpy) leaves unstable, every other bit fixed by its proved sign, one LP per candidate
pattern; the lp and scip backends against each other; the table's columns against the run's own files.
"""
import csv
import io
import itertools
import json

import numpy as np
import pytest
from conftest import load_script, run_cli

from src.core.box import Box
from src.counting.feasibility_lp import is_feasible_pattern
from src.io.domains import test_image as mnist_test_image
from src.io.pattern_file import read_patterns
from src.io.readers import load_net
from src.report.table import collect_results

pytest.importorskip("torch")

MAX_OPEN = 8            # brute force over at most 2^8 patterns per run


def interval_signs(net, box, tol):
    """Per hidden unit: 1 (g > tol on the whole box), 0 (g <= 0 on it) or None (open), by interval arithmetic."""
    lo, hi = box.lo, box.hi
    signs = []
    for W, b in zip(net.weights[:-1], net.biases[:-1]):
        Wp, Wn = np.maximum(W, 0), np.minimum(W, 0)
        g_lo, g_hi = Wp @ lo + Wn @ hi + b, Wp @ hi + Wn @ lo + b
        signs += [1 if a > tol else 0 if c <= 0 else None for a, c in zip(g_lo, g_hi)]
        lo, hi = np.maximum(g_lo, 0), np.maximum(g_hi, 0)
    return signs


def brute_force_local(net, box, tol):
    signs = interval_signs(net, box, tol)
    open_units = [i for i, s in enumerate(signs) if s is None]
    assert len(open_units) <= MAX_OPEN
    found = set()
    for bits in itertools.product((0, 1), repeat=len(open_units)):
        p = list(signs)
        for i, v in zip(open_units, bits):
            p[i] = v
        if is_feasible_pattern(net, box, p, tol):
            found.add(tuple(p))
    return found


@pytest.mark.slow
def test_cnn_sweep_count_and_table(tmp_path):
    models = tmp_path / "models"
    train = load_script("train_bulk_script.py")
    r = run_cli(train.main, "-s", "100", "-a", "cnn_tiny", "--l1", "0,1e-3", "--adv", "none", "--dropout", "0",
                "--epochs", "1", "--train-subset", "1000", "-q", "--models-dir", models)
    assert r.returncode == 0, r.stderr
    assert [ln.split()[:3] for ln in r.stdout.splitlines()[1:3]] == [["100", "cnn_tiny", "0"],
                                                                     ["101", "cnn_tiny", "0.001"]]
    runs = [models / f"fcnn_run_{i}" for i in (100, 101)]
    nets = [load_net(d / "weights.dat") for d in runs]
    assert all(n.layer_sizes == [784, 64, 16, 10] for n in nets)
    # a local box around test image 0 as wide as the brute force allows (the interval bounds say how many
    # units it leaves open; the same width for both runs, so that the table compares one domain)
    x, tol = mnist_test_image(0), 1e-6
    for width in (0.005, 0.004, 0.003, 0.0025, 0.002):
        if all(interval_signs(n, Box.around(x, width, "t"), tol).count(None) <= MAX_OPEN for n in nets):
            break
    domain = f"center_test0_width_{width:g}"
    count = load_script("count_linear_regions.py")
    counts = []
    for d, net in zip(runs, nets):
        for backend, out in (("lp", d), ("scip", tmp_path / f"scip_{d.name}")):
            r = run_cli(count.main, "-w", d / "weights.dat", "--center-test-index", "0", "--width", f"{width:g}",
                        "--backend", backend, "-q", *(["-o", out] if out != d else []))
            assert r.returncode == 0, r.stderr
            rec = json.loads((out / f"regions_{domain}.json").read_text())
            assert rec["complete"] is True and rec["layer_sizes"] == net.layer_sizes
            pats = read_patterns(out / rec["pattern_file"], net.layer_sizes)
            found = {tuple(int(v) for v in row) for row in pats}
            assert len(found) == rec["count"] == len(pats)
            box = Box.around(x, width, "test0")
            if backend == "lp":
                ref = brute_force_local(net, box, tol)
                lp_found = found
            assert found == ref == lp_found
        counts.append(len(ref))
    assert max(counts) >= 2, (width, counts)   # a box with more than one region somewhere
    res = collect_results(models, "100-101", tmp_path / "out", domain=domain, quiet=True)
    rows = list(csv.DictReader(io.StringIO(res["csv"].read_text())))
    assert [int(r["run"]) for r in rows] == [100, 101]
    for row, d, n in zip(rows, runs, counts):
        met = json.loads((d / "metrics.json").read_text())
        assert row["arch"] == "cnn_tiny" and row["hidden_sizes"] == "64-16"
        assert float(row["test_accuracy"]) == pytest.approx(met["test_accuracy"], abs=1e-4)
        assert int(row["regions"]) == n and row["regions_complete"] == "yes"
    assert float(rows[0]["l1"]) == 0 and float(rows[1]["l1"]) == 1e-3
    # the figures read the CNN runs like any other (the dense equivalent's weights.dat and the records)
    r = run_cli("plots/make_all.py", "--models-dir", models, "--runs", "100-101", "--domain", domain,
                "--out", tmp_path / "fig", "--formats", "png", "--no-table", "--slice-plane", "random",
                "--slice-resolution", "24", "-q", timeout=300)
    assert r.returncode == 0, r.stderr
    for stem in ("regions_vs_l1", "stable_units_vs_l1", "accuracy_vs_regions", "input_slice"):
        assert (tmp_path / "fig" / f"{stem}.png").stat().st_size > 1000, stem
