"""Every plot script on a synthetic models dir: non-empty PNG and PDF; the slice helpers against the full net."""
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, random_net
from run_fixtures import write_run, write_sweep

from src import plotting
from src.ioutils import ToolError
from src.results import load_runs


def _script(name):
    spec = importlib.util.spec_from_file_location(f"plots_{name}", ROOT / "plots" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_sweep(d, start=100, hidden=(6, 6), incomplete=(101, 108))
    return d


def _assert_figure(out, stem):
    png, pdf = out / f"{stem}.png", out / f"{stem}.pdf"
    assert png.is_file() and png.stat().st_size > 5000, png
    assert pdf.is_file() and pdf.stat().st_size > 2000, pdf
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"


@pytest.mark.parametrize("script,stem", [
    ("plot_regions", "regions_vs_l1"),
    ("plot_stable_units", "stable_units_vs_l1"),
    ("plot_accuracy_regions", "accuracy_vs_regions"),
    ("plot_transform_sizes", "transform_sizes"),
])
def test_figure_scripts(sweep_dir, tmp_path, script, stem):
    rc = _script(script).main(["--models-dir", str(sweep_dir), "--runs", "100-111", "--out", str(tmp_path), "-q"])
    assert rc == 0
    _assert_figure(tmp_path, stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.pdf", f"{stem}.png"]


def test_slice_script_random_plane(sweep_dir, tmp_path):
    rc = _script("plot_input_slice").main(["--models-dir", str(sweep_dir), "--runs", "100-103", "--out",
                                           str(tmp_path), "--plane", "random", "--resolution", "64", "-q"])
    assert rc == 0
    _assert_figure(tmp_path, "input_slice")


def test_slice_script_single_weights(sweep_dir, tmp_path):
    w = sweep_dir / "fcnn_run_104" / "weights.dat"
    rc = _script("plot_input_slice").main(["-w", str(w), "--out", str(tmp_path), "--plane", "random",
                                           "--resolution", "80", "--name", "one", "-q"])
    assert rc == 0
    _assert_figure(tmp_path, "one")


def test_make_all_cli(sweep_dir, tmp_path):
    """End to end through the command line: every figure plus the table."""
    r = subprocess.run([sys.executable, str(ROOT / "plots" / "make_all.py"), "--models-dir", str(sweep_dir),
                        "--runs", "100-111", "--out", str(tmp_path), "--slice-plane", "random",
                        "--slice-resolution", "48"], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    for stem in ("regions_vs_l1", "stable_units_vs_l1", "accuracy_vs_regions", "transform_sizes", "input_slice"):
        _assert_figure(tmp_path, stem)
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "results.md").is_file()
    assert "SHOWS the paper's trend" in r.stdout
    assert "run 101" in r.stderr and "lower bound" in r.stderr


def test_figures_survive_missing_files(tmp_path):
    """Runs lacking some files are skipped in the figures that need them, not crashed on."""
    models = tmp_path / "m"
    write_run(models, 1, 0.0, "none", 0.0, hidden=(4, 4))
    write_run(models, 2, 1e-3, "none", 0.0, hidden=(4, 4), files=("config", "metrics"))
    write_run(models, 3, 1e-3, "pgd", 0.0, hidden=(4, 4), files=("config", "regions", "weights"))
    out = tmp_path / "out"
    done = plotting.draw_all(models, "1-4", out, slice_kw={"mode": "random", "resolution": 32}, log=lambda m: None)
    assert all(isinstance(v, list) for v in done.values()), done
    recs = load_runs(models, "1-4")
    assert recs[3].missing == ["<run directory>"]


def test_figure_without_any_input_is_a_clear_error(tmp_path):
    models = tmp_path / "m"
    write_run(models, 1, 0.0, "none", 0.0, hidden=(4, 4), files=("config", "metrics"))
    with pytest.raises(ToolError, match="regions"):
        plotting.draw("regions", models, "1", tmp_path / "out")
    mod = _script("make_all")
    with pytest.raises(ToolError, match="no figure"):
        mod.main(["--models-dir", str(models), "--runs", "1", "--out", str(tmp_path / "o"), "-q",
                  "--slice-plane", "random"])


def test_bad_runs_and_dirs(tmp_path):
    with pytest.raises(ToolError, match="not a directory"):
        plotting.draw("regions", tmp_path / "nope", "1-2", tmp_path)
    with pytest.raises(ToolError, match="none of the runs"):
        plotting.draw("regions", tmp_path, "1-2", tmp_path)
    r = subprocess.run([sys.executable, str(ROOT / "plots" / "plot_regions.py"), "--models-dir", str(tmp_path),
                        "--runs", "7-x"], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --runs")


def test_huge_sizes_as_log10(tmp_path):
    """2^N sizes stored as huge ints, numeric strings or log10 fields all plot."""
    models = tmp_path / "m"
    d = write_run(models, 1, 0.0, "none", 0.0, hidden=(4, 4), files=("config", "two_all", "two_feasible"))
    import json
    p = d / "two_hidden_all_nodes.json"
    j = json.loads(p.read_text())
    j["sizes"]["naive"] = {"layer_sizes": [784, 2 ** 400 * 410, 2 ** 400 * 11, 10], "params": 2 ** 400 * 330000}
    j["sizes"]["shared"] = {"layer_sizes_log10": [2.89, 122.0, 121.5, 1.0], "params_log10": 125.3}
    p.write_text(json.dumps(j))
    paths = plotting.draw("transform_sizes", models, "1", tmp_path / "out")
    assert all(x.stat().st_size > 0 for x in paths)


# ---- the slice helpers -----------------------------------------------------------------
def test_slice_net_equals_full_net_on_the_plane():
    net = random_net([30, 7, 5, 3], seed=3)
    rng = np.random.default_rng(0)
    origin, E = plotting.orthonormal_plane(points=rng.random((3, 30)))
    assert np.allclose(E @ E.T, np.eye(2), atol=1e-12)
    ab = rng.normal(size=(500, 2))
    X = origin + ab @ E
    small = plotting.slice_net(net, origin, E)
    np.testing.assert_allclose(small.forward(ab), net.forward(X), rtol=1e-9, atol=1e-9)
    g_small, g_full = np.concatenate(small.preactivations(ab), 1), np.concatenate(net.preactivations(X), 1)
    clear = np.all(np.abs(g_full) > 1e-9, axis=1)      # away from boundaries, bits must agree
    assert clear.mean() > 0.9
    np.testing.assert_array_equal(small.patterns(ab)[clear], net.patterns(X)[clear])
    np.testing.assert_allclose(g_small, g_full, atol=1e-9)


def test_region_ids_and_boundaries():
    pats = np.array([[1, 0, 1], [0, 0, 0], [1, 0, 1], [1, 1, 1], [0, 0, 0]], np.uint8)
    ids, k = plotting.region_ids(pats)
    assert k == 3 and ids.tolist() == [0, 1, 0, 2, 1]
    # more than 8 units (several packed bytes) and the all-different case
    wide = np.eye(20, dtype=np.uint8)
    ids, k = plotting.region_ids(wide)
    assert k == 20 and sorted(ids.tolist()) == list(range(20))
    grid = np.array([[0, 0, 1], [0, 0, 1], [2, 2, 1]])
    b = plotting.boundary_mask(grid)
    assert b.tolist() == [[False, True, False], [True, True, False], [False, True, False]]


def test_slice_counts_the_regions_of_a_known_net():
    """A 2-input net with hidden units x>0.5 and y>0.5 on the unit square: 4 regions, boundary on the lines."""
    from src.network import ReluNet
    net = ReluNet([np.eye(2), np.ones((1, 2))], [np.array([-0.5, -0.5]), np.zeros(1)])
    origin, E = np.zeros(2), np.eye(2)
    sl = plotting.compute_slice(net, origin, E, (0.0, 1.0, 0.0, 1.0), resolution=101)
    assert sl["n_regions"] == 4 and sl["n_regions_in_domain"] == 4 and sl["inside"].all()
    sl = plotting.compute_slice(net, origin, E, (-1.0, 0.4, -1.0, 0.4), resolution=50)
    assert sl["n_regions"] == 1
    sl = plotting.compute_slice(net, origin, E, (-1.0, 1.0, 0.1, 0.9), resolution=41)
    assert sl["n_regions"] == 4 and sl["n_regions_in_domain"] == 4
    assert sl["inside"][:, :20].sum() == 0 and sl["inside"][:, 20:].all()     # a < 0 is outside [0,1]^2


def test_domain_mask_matches_direct_check():
    rng = np.random.default_rng(1)
    origin, E = plotting.orthonormal_plane(points=rng.random((3, 50)))
    A, B = rng.normal(scale=0.8, size=400), rng.normal(scale=0.8, size=400)
    X = origin + np.outer(A, E[0]) + np.outer(B, E[1])
    direct = np.all((X >= 0) & (X <= 1), axis=1)
    np.testing.assert_array_equal(plotting.domain_mask(origin, E, A, B, chunk=37), direct)
    assert direct.any() and not direct.all()


def test_collinear_points_rejected():
    p = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    with pytest.raises(ToolError, match="collinear"):
        plotting.orthonormal_plane(points=p)
