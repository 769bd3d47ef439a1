"""Every plot script on a synthetic models dir: non-empty PNG and PDF; the exact slice figure."""
import matplotlib.pyplot as plt
import numpy as np
import pytest
from conftest import load_script, run_cli
from run_fixtures import write_local_counts, write_run, write_sweep
from test_sections import write_section_files

from src.core.errors import ToolError
from src.report.figures import _render_section, draw, draw_all
from src.report.table import load_runs
from src.sections.plane import orthonormal_plane


def _script(name):
    return load_script(f"plots/{name}.py")


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("models")
    write_sweep(d, start=100, hidden=(6, 6), incomplete=(101, 108))
    for run in range(100, 112):
        write_section_files(d / f"fcnn_run_{run}")
        write_local_counts(d / f"fcnn_run_{run}")
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
    ("plot_segments", "segment_regions_vs_l1"),
    ("plot_local_regions", "local_regions_vs_l1"),
    ("plot_regions_ci", "regions_ci_vs_l1"),
    ("plot_paired_differences", "paired_differences"),
])
@pytest.mark.slow
def test_figure_scripts(sweep_dir, tmp_path, script, stem):
    rc = _script(script).main(["--models-dir", str(sweep_dir), "--runs", "100-111", "--out", str(tmp_path), "-q"])
    assert rc == 0
    _assert_figure(tmp_path, stem)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"{stem}.pdf", f"{stem}.png"]


@pytest.mark.slow
def test_slice_script_random_plane(sweep_dir, tmp_path):
    rc = _script("plot_input_slice").main(["--models-dir", str(sweep_dir), "--runs", "100-103", "--out",
                                           str(tmp_path), "--plane", "random", "--resolution", "64", "-q"])
    assert rc == 0
    _assert_figure(tmp_path, "input_slice")


@pytest.mark.slow
def test_slice_script_single_weights(sweep_dir, tmp_path):
    w = sweep_dir / "fcnn_run_104" / "weights.dat"
    rc = _script("plot_input_slice").main(["-w", str(w), "--out", str(tmp_path), "--plane", "random",
                                           "--resolution", "80", "--name", "one", "-q"])
    assert rc == 0
    _assert_figure(tmp_path, "one")


@pytest.mark.slow
def test_make_all_cli(sweep_dir, tmp_path):
    """End to end through the command line: every figure plus the table."""
    r = run_cli("plots/make_all.py", "--models-dir", sweep_dir, "--runs", "100-111", "--out", tmp_path,
                "--slice-plane", "random", "--slice-resolution", "48", timeout=300)
    assert r.returncode == 0, r.stderr
    for stem in ("regions_vs_l1", "stable_units_vs_l1", "accuracy_vs_regions", "transform_sizes", "input_slice",
                 "segment_regions_vs_l1"):
        _assert_figure(tmp_path, stem)
    assert (tmp_path / "results.csv").is_file() and (tmp_path / "results.md").is_file()
    assert "SHOWS the paper's trend" in r.stdout
    assert "Exact sections, median regions crossed per segment" in r.stdout
    assert "run 101" in r.stderr and "lower bound" in r.stderr


@pytest.mark.slow
def test_figures_survive_missing_files(tmp_path):
    """Runs lacking some files are skipped in the figures that need them, not crashed on."""
    models = tmp_path / "m"
    write_section_files(write_run(models, 1, 0.0, "none", 0.0, hidden=(4, 4)))
    write_local_counts(models / "fcnn_run_1")
    write_run(models, 2, 1e-3, "none", 0.0, hidden=(4, 4), files=("config", "metrics"))
    write_run(models, 3, 1e-3, "pgd", 0.0, hidden=(4, 4), files=("config", "regions", "weights"))
    out = tmp_path / "out"
    done = draw_all(models, "1-4", out, slice_kw={"mode": "random"}, log=lambda m: None)
    assert "no pair of runs" in done.pop("paired_differences")     # run 1 is the only one with local counts
    assert all(isinstance(v, list) for v in done.values()), done
    recs = load_runs(models, "1-4")
    assert recs[3].missing == ["<run directory>"]


def test_figure_without_any_input_is_a_clear_error(tmp_path):
    models = tmp_path / "m"
    write_run(models, 1, 0.0, "none", 0.0, hidden=(4, 4), files=("config", "metrics"))
    with pytest.raises(ToolError, match="regions"):
        draw("regions", models, "1", tmp_path / "out")
    mod = _script("make_all")
    with pytest.raises(ToolError, match="no figure"):
        mod.main(["--models-dir", str(models), "--runs", "1", "--out", str(tmp_path / "o"), "-q",
                  "--slice-plane", "random"])


@pytest.mark.slow
def test_bad_runs_and_dirs(tmp_path):
    with pytest.raises(ToolError, match="not a directory"):
        draw("regions", tmp_path / "nope", "1-2", tmp_path)
    with pytest.raises(ToolError, match="none of the runs"):
        draw("regions", tmp_path, "1-2", tmp_path)
    r = run_cli("plots/plot_regions.py", "--models-dir", tmp_path, "--runs", "7-x", timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --runs")


@pytest.mark.slow
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
    paths = draw("transform_sizes", models, "1", tmp_path / "out")
    assert all(x.stat().st_size > 0 for x in paths)


# ---- the exact slice figure ------------------------------------------------------------
def test_slice_figure_counts_are_exact(tmp_path):
    """A 784-input net whose hidden units see only pixels 0 and 1 (x0 > 0.5, x1 > 0.5): on the plane of
    pixels 0 and 1 the box holds exactly 4 regions; the panel info carries the exact counts."""
    from src.core.network import ReluNet
    from src.sections.plane import Plane, plane_section
    W1 = np.zeros((2, 784))
    W1[0, 0] = W1[1, 1] = 1.0
    net = ReluNet([W1, np.ones((1, 2))], [np.array([-0.5, -0.5]), np.zeros(1)])
    basis = np.zeros((2, 784))
    basis[0, 0] = basis[1, 1] = 1.0
    plane = Plane(np.zeros(784), basis)
    from src.core.box import Box
    sec = plane_section(net, plane, (-1.0, 1.0, 0.1, 0.9), Box.uniform(784))
    assert sec.regions_in_box == 4 and sec.regions_in_view == 4 and sec.unverified == []
    assert sec.box_area == pytest.approx(0.8, abs=1e-12)
    fig = plt.figure()
    ax = fig.add_subplot()
    _render_section(ax, sec, net, [(0.0, 0.5, "p")], colour="class")
    _render_section(ax, sec, net, [], colour="pattern")
    plt.close(fig)


@pytest.mark.slow
def test_slice_script_class_colours_and_info(sweep_dir, tmp_path, capsys):
    w = sweep_dir / "fcnn_run_100" / "weights.dat"
    rc = _script("plot_input_slice").main(["-w", str(w), "--out", str(tmp_path), "--plane", "random",
                                           "--colour", "class", "--name", "cls"])
    assert rc == 0
    _assert_figure(tmp_path, "cls")
    out = capsys.readouterr().out
    assert "regions in the box" in out and "in view" in out


@pytest.mark.slow
def test_segments_figure(sweep_dir, tmp_path):
    paths = draw("segments", sweep_dir, "100-111", tmp_path)
    _assert_figure(tmp_path, "segment_regions_vs_l1")
    assert len(paths) == 2


def test_collinear_points_rejected():
    p = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    with pytest.raises(ToolError, match="collinear"):
        orthonormal_plane(points=p)


# ---- the study's figures (src/report/study.py draws them) ------------------------------------------------
def _seeded_sweep(models):
    """Two seeds x l1 {0, 1e-3} x adv {none, pgd} x dropout 0, 6 images, 4 segments; run 1 broken (near chance).
    The l1 runs have half the counts; returns {run id: (seed, l1, adv, counts)}."""
    from run_fixtures import write_local_table, write_segment_table

    runs, rid = {}, 1
    for seed in (0, 1):
        for l1 in (0.0, 1e-3):
            for adv in ("none", "pgd"):
                d = write_run(models, rid, l1, adv, 0.0, hidden=(4, 4), train_seed=seed,
                              files=("config", "metrics", "stable"), accuracy=0.1 if rid == 1 else None)
                counts = {f"test{k}": (40 + 10 * k + seed) // (2 if l1 else 1) for k in range(6)}
                write_local_table(d, counts, width=(0.01, 0.02))
                write_segment_table(d, {(k, k + 1): (30 + k + 5 * seed, 2.0) for k in range(4)})
                runs[rid] = (seed, l1, adv, counts)
                rid += 1
    return runs


def test_study_figures_values(tmp_path, monkeypatch):
    """The errorbar points of regions_ci_vs_l1 are the medians of the pooled working runs; the paired-differences
    boxes hold log2(treated / baseline) of every pair the verdict used."""
    from src.report import figures
    from src.report.trend import factor_verdicts, paired_measures

    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    models = tmp_path / "m"
    runs = _seeded_sweep(models)
    recs = load_runs(models, "1-8")
    figures.plot_regions_ci(recs, tmp_path / "a", formats=("png",))
    ax = drawn[-1].axes[0]                                       # width 0.01
    ys = sorted(round(float(y), 6) for ln in ax.get_lines() if ln.get_marker() not in ("x", "None", "", "_")
                for y in ln.get_ydata())
    want = []
    for l1 in (0.0, 1e-3):
        for adv in ("none", "pgd"):
            pooled = [v for rid, (s, a, b, c) in runs.items() if (a, b) == (l1, adv) and rid != 1 for v in c.values()]
            want.append(round(float(np.median(pooled)), 6))
    assert ys == sorted(want)
    paired = [(m, factor_verdicts(recs, m, n_boot=200)) for m in paired_measures(recs)]
    figures.plot_paired_differences(paired, tmp_path / "b", formats=("png",))
    fig = drawn[-1]
    assert len(fig.axes) == 3                                    # two widths and the segments
    v = {x.label: x for x in paired[0][1]}["l1 1e-3 vs 0"]
    assert v.a.size == v.n == 18 and np.all(v.b < v.a)          # 3 run pairs (run 1 broken) x 6 images
    pts = [ln.get_ydata() for ln in fig.axes[0].get_lines() if ln.get_marker() == "."]
    assert any(np.allclose(np.sort(p), np.sort(np.log2(v.b / v.a))) for p in pts)
    with pytest.raises(ToolError, match="no pair of runs"):
        figures.plot_paired_differences([], tmp_path / "c")
    with pytest.raises(ToolError, match="no run has exact local counts"):
        figures.plot_regions_ci([], tmp_path / "d")
