"""The file driver of the region count (src/counting/driver.py) with the MILP backends: stable units,
output files, other boxes, resume from a partial file or a time limit, the licence-limit fallback, the CLI
and its error paths, Ctrl-C, the bulk script.

Every backend's pattern set against the brute force, through both drivers, is
tests/test_backend_conformance.py; the nets are the catalogue's (tests/conftest.py), whose brute-force
results are cached for the session.
"""
import functools
import json
import signal

import numpy as np
import pytest
from conftest import (CATALOGUE, as_set, brute_force_patterns, catalogue_net, pause_env, reference, run_cli,
                      wait_for_pause)

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.driver import count_run
from src.counting.feasibility_lp import is_feasible_pattern
from src.counting.problem import AUTO_ORDER
from src.counting.problem import BACKENDS as REGISTERED
from src.counting.problem import PatternSink, backend_class, get_backend
from src.io.pattern_file import read_patterns, write_patterns
from src.io.weights_file import save_net

BACKENDS = [n for n in REGISTERED if backend_class(n).uses_milp]     # the MILP backends (lp: test_lp_enum)
CLI = "count_linear_regions.py"


def make_net(name):
    """The catalogue's net (tests/conftest.py) of that name."""
    return catalogue_net(name).net()


def bf(name):
    """The brute-force pattern set of the catalogue's net `name` on [0,1]^n0."""
    return reference(catalogue_net(name))


def run_count(tmp_path, net, backend, **kw):
    w = tmp_path / "weights.dat"
    if not w.exists():
        save_net(net, w)
    summary = count_run(w, backend=backend, progress=False, **kw)
    pats = read_patterns(tmp_path / summary["pattern_file"], net.layer_sizes, allow_empty=True)
    return summary, pats


# every backend's pattern set against the brute force, through both drivers: tests/test_backend_conformance.py
def test_biased_nets_have_stable_units(tmp_path):
    """The biased nets exercise the stable-unit path (fixed bits, fewer binaries)."""
    stable = 0
    for net_spec in CATALOGUE["tiny"]:
        if net_spec.bias_scale > 1:                  # 3-4-3-2-1 (bias 3), 2-5-5-1 (bias 2.5), 3-3-3-1 (bias 4)
            key = str(net_spec)
            summary, _ = run_count(tmp_path / key, net_spec.net(), "scip")
            stable += sum(c["active"] + c["inactive"] for c in summary["stable_units"])
            assert summary["model_size"]["binaries"] == sum(c["unstable"] for c in summary["stable_units"])
    assert stable >= 3


@pytest.mark.slow
def test_output_files(tmp_path):
    key = "3-4-3-2-1_seed2"
    net = make_net(key)
    summary, pats = run_count(tmp_path, net, AUTO_ORDER[0] if AUTO_ORDER[0] in BACKENDS else "scip")
    lines = (tmp_path / "activation_pattern_abhinav_input_0_1.dat").read_text().splitlines()
    assert lines[0] == "n = [3, 4, 3, 2, 1]"
    assert all(len(ln.split()) == 9 and set(ln.split()) <= {"0", "1"} for ln in lines[1:])
    assert len(lines) - 1 == summary["count"] == len(bf(key))
    js = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    for k in ("weights", "layer_sizes", "domain", "pattern_file", "count", "complete", "backend", "tol", "times",
              "stable_units", "model_size", "stats", "note"):
        assert k in js, k
    assert js == json.loads(json.dumps(summary))
    assert set(js["times"]) >= {"bounds", "enumeration", "total"}
    assert set(js["model_size"]) == {"variables", "constraints", "binaries"}
    assert js["domain"] == {"name": "input_0_1", "n": 3, "lo": 0.0, "hi": 1.0}
    assert [s["layer"] for s in js["stable_units"]] == [1, 2, 3]
    st = json.loads((tmp_path / "stable_units_input_0_1.json").read_text())
    inactive = [(l["layer"], u) for l in st["layers"] for u in l["inactive"]]
    dat = [tuple(map(int, ln.split())) for ln in (tmp_path / "inactive_input_0_1.dat").read_text().splitlines()]
    assert dat == inactive
    assert not list(tmp_path.glob(".*.tmp"))


def test_other_box_and_local_box(tmp_path):
    net = make_net("2-3-3-1_seed1")
    for box in (Box.uniform(2, -1.0, 2.0), Box.around([0.4, 0.6], 0.2, "c")):
        (tmp_path / box.name).mkdir()
        save_net(net, tmp_path / box.name / "weights.dat")
        s = count_run(tmp_path / box.name / "weights.dat", box, backend="scip", progress=False)
        assert (tmp_path / box.name / f"activation_pattern_abhinav_{box.name}.dat").exists()
        pats = read_patterns(tmp_path / box.name / s["pattern_file"], net.layer_sizes)
        assert as_set(pats) == brute_force_patterns(net, box)
    assert (tmp_path / "input_-1_2").exists() and (tmp_path / "center_c_width_0.2").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_from_partial_file(tmp_path, backend):
    key = "3-4-3-2-1_seed2"
    net = make_net(key)
    ref = sorted(bf(key))
    save_net(net, tmp_path / "weights.dat")
    part = np.array(ref[::3], np.uint8)
    write_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", net.layer_sizes, part)
    summary, pats = run_count(tmp_path, net, backend, resume=True)
    assert as_set(pats) == set(ref) and len(pats) == len(ref)
    assert summary["complete"] and summary["stats"]["patterns_at_start"] == len(part)
    assert summary["stats"]["new_patterns"] == len(ref) - len(part)
    # resuming a complete count does nothing
    before = (tmp_path / "regions_input_0_1.json").read_text()
    again, _ = run_count(tmp_path, net, backend, resume=True)
    assert again["count"] == len(ref) and (tmp_path / "regions_input_0_1.json").read_text() == before


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_time_limit_partial_then_resume(tmp_path, backend):
    key = "2-5-5-1_seed2"
    net = make_net(key)
    ref = bf(key)
    s1, p1 = run_count(tmp_path, net, backend, time_limit=1e-3)
    assert s1["complete"] is False and "incomplete" in s1["note"] and "--resume" in s1["note"]
    assert as_set(p1) <= ref and s1["count"] == len(p1)
    s2, p2 = run_count(tmp_path, net, backend, resume=True)
    assert s2["complete"] is True and as_set(p2) == ref


def test_resume_refuses_other_net(tmp_path):
    net = make_net("2-3-3-1_seed0")
    save_net(net, tmp_path / "weights.dat")
    write_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", [2, 4, 1], [[1, 0, 1, 0]])
    with pytest.raises(ToolError, match=r"n = \[2, 4, 1\].*n = \[2, 3, 3, 1\]"):
        count_run(tmp_path / "weights.dat", backend="scip", resume=True, progress=False)

    # same shape, but a pattern that contradicts the stable units (all units of this net are stable)
    net2 = make_net("3-3-3-1_seed6_bias4")
    d2 = tmp_path / "w2"
    d2.mkdir()
    s, pats = run_count(d2, net2, "scip")
    assert s["model_size"]["binaries"] == 0 and s["count"] == 1
    write_patterns(d2 / s["pattern_file"], net2.layer_sizes, 1 - pats)
    (d2 / "regions_input_0_1.json").unlink()
    with pytest.raises(ToolError, match="contradict the stable units"):
        count_run(d2 / "weights.dat", backend="scip", resume=True, progress=False)


# ---- licence-limit fallback -----------------------------------------------------------------------
def _wide_net():
    """2100 inputs (> 2000 variables, too large for gurobipy's pip licence), 3 + 2 hidden units."""
    rng = np.random.default_rng(0)
    w1 = rng.normal(size=(3, 2100)) / np.sqrt(2100)
    return ReluNet([w1, rng.normal(size=(2, 3)), rng.normal(size=(1, 2))],
                   [0.3 * rng.normal(size=3), 0.3 * rng.normal(size=2), np.zeros(1)])


@functools.lru_cache(maxsize=None)
def wide_reference():
    net = _wide_net()
    return brute_force_patterns(net, Box.uniform(net.n_inputs))


def _gurobi_limited() -> bool:
    from src.counting.backends.gurobi import size_limited_licence

    return size_limited_licence()


@pytest.mark.slow
def test_licence_limit_falls_back_to_scip(tmp_path, capsys):
    if not _gurobi_limited():
        pytest.skip("this Gurobi licence is not size-limited")
    net = _wide_net()
    s, pats = run_count(tmp_path, net, "milp")
    assert s["backend"] == "scip" and s["complete"]
    assert "falling back to SCIP" in s["note"] and "2000" in s["note"] and "GRB_LICENSE_FILE" in s["note"]
    assert "falling back to SCIP" in capsys.readouterr().err
    assert s["model_size"]["variables"] > 2000
    assert as_set(pats) == wide_reference()


@pytest.mark.slow
def test_licence_error_at_optimize_falls_back(tmp_path, monkeypatch):
    """When the size pre-check cannot tell, Gurobi's errno 10010 at optimize() still falls back."""
    if not _gurobi_limited():
        pytest.skip("this Gurobi licence is not size-limited")
    import src.counting.backends.gurobi as g

    monkeypatch.setattr(g, "size_limited_licence", lambda: False)
    net = _wide_net()
    s, pats = run_count(tmp_path, net, "milp")
    assert s["backend"] == "scip" and "falling back to SCIP" in s["note"]
    assert as_set(pats) == wide_reference()
    with pytest.raises(g.GurobiLicenceLimit, match="GRB_LICENSE_FILE"):
        count_run(tmp_path / "weights.dat", backend="gurobi", progress=False, out_dir=tmp_path / "g")
    assert not (tmp_path / "g" / "activation_pattern_abhinav_input_0_1.dat").exists()


# ---- CLI and error paths ----------------------------------------------------------------------------
def cli(*args):
    return run_cli(CLI, *args, timeout=120)


def one_error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_cli_counts_and_writes(tmp_path):
    net = make_net("2-3-3-1_seed1")
    save_net(net, tmp_path / "weights.dat")
    r = cli("-w", tmp_path / "weights.dat", "-q", "--backend", "scip", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    n = len(bf("2-3-3-1_seed1"))
    assert r.stdout.strip().splitlines()[-1].startswith(f"{n} linear regions (complete")
    assert (tmp_path / "out" / "regions_input_0_1.json").exists()


@pytest.mark.slow
def test_cli_error_paths(tmp_path):
    line = one_error_line(cli("-w", tmp_path / "nope.dat"))
    assert "nope.dat" in line
    (tmp_path / "bad.dat").write_text("levels = 2;\nn = [2, 3];\nW = [\n1,2,3\n];\n")
    line = one_error_line(cli("-w", tmp_path / "bad.dat"))
    assert "bad.dat" in line
    net = make_net("2-3-3-1_seed0")
    save_net(net, tmp_path / "weights.dat")
    line = one_error_line(cli("-w", tmp_path / "weights.dat", "--backend", "cplex"))
    assert all(s in line for s in ("cplex", "gurobipy", "pyscipopt", "numba"))
    write_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", [2, 5, 1], [[1, 0, 1, 0, 1]])
    line = one_error_line(cli("-w", tmp_path / "weights.dat", "--resume", "-q"))
    assert "n = [2, 5, 1]" in line and "n = [2, 3, 3, 1]" in line
    assert (tmp_path / "activation_pattern_abhinav_input_0_1.dat").read_text().startswith("n = [2, 5, 1]")
    line = one_error_line(cli("-w", tmp_path / "weights.dat", "--tol", "-1"))
    assert "--tol" in line
    line = one_error_line(cli("-w", tmp_path / "weights.dat", "--width", "0.1"))
    assert "--width" in line


@pytest.mark.slow
def test_cli_ctrl_c_writes_partial_output(tmp_path):
    """SIGINT during the search: patterns so far are written, complete: false, exit 130. The count pauses
    at its checkpoint of 5 patterns (src/core/fault_hooks.py), so the signal lands mid-search."""
    net_spec = catalogue_net("3-5-4-1_seed9_bias0.4")
    net = net_spec.net()
    save_net(net, tmp_path / "weights.dat")
    proc = run_cli(CLI, "-w", tmp_path / "weights.dat", "-q", "--backend", "scip", "--checkpoint-every", "1e-9",
                   env=pause_env(tmp_path / "paused.json", "patterns:5"), background=True)
    paused = wait_for_pause(proc, tmp_path / "paused.json")
    assert paused["pid"] == proc.pid and paused["done"] == 5
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.strip().splitlines()[-1].startswith("INCOMPLETE (interrupted)")
    s = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    assert s["complete"] is False and s["interrupted"] is True and "Ctrl-C" in s["note"]
    pats = read_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", net.layer_sizes, allow_empty=True)
    assert len(pats) == s["count"] > 0
    assert as_set(pats) < reference(net_spec)          # feasible patterns, and not all of them
    box = Box.uniform(3)
    for p in pats:
        assert is_feasible_pattern(net, box, p)


@pytest.mark.slow
def test_bulk_script(tmp_path):
    models = tmp_path / "models"
    for i, key in ((3, "2-3-3-1_seed0"), (4, "2-3-3-1_seed2")):
        (models / f"fcnn_run_{i}").mkdir(parents=True)
        save_net(make_net(key), models / f"fcnn_run_{i}" / "weights.dat")
    script = "count_linear_regions_script.sh"
    r = run_cli(script, "-s", "3", "-e", "5", "-m", models, "--", "-q", "--backend", "scip", timeout=120)
    assert r.returncode == 1, r.stderr                           # fcnn_run_5 is missing
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][1:4] == [str(len(bf("2-3-3-1_seed0"))), "true", rows["fcnn_run_3"][3]]
    assert rows["fcnn_run_3"][-1] == "done" and rows["fcnn_run_5"][-1] == "missing"
    r = run_cli(script, "-s", "3", "-e", "4", "-m", models, "--", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][-1] == "skipped" and rows["fcnn_run_4"][-1] == "skipped"
    save_net(make_net("2-3-3-1_seed1"), models / "fcnn_run_3" / "weights.dat")      # retrained: outputs are stale
    r = run_cli(script, "-s", "3", "-e", "4", "-m", models, "--", "-q", timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][-1] == "done" and rows["fcnn_run_4"][-1] == "skipped"
    assert rows["fcnn_run_3"][1] == str(len(bf("2-3-3-1_seed1")))
    r = run_cli(script, "-s", "4", "-e", "3", "-m", models)
    assert r.returncode == 2 and "after" in r.stderr


@pytest.mark.slow
def test_bulk_script_estimates_an_incomplete_count_without_resuming_it(tmp_path):
    """`-- --estimate N` on runs whose count stopped at its time limit: the estimate is added to the summary
    (the script passes no --resume to an estimate, which would refuse it)."""
    models = tmp_path / "models"
    (models / "fcnn_run_7").mkdir(parents=True)
    save_net(make_net("2-3-3-1_seed0"), models / "fcnn_run_7" / "weights.dat")
    script = "count_linear_regions_script.sh"
    r = run_cli(script, "-s", "7", "-e", "7", "-m", models, "--", "-q", "--time-limit", "0.001", timeout=120)
    summary = models / "fcnn_run_7" / "regions_input_0_1.json"
    assert r.returncode == 0 and not json.loads(summary.read_text())["complete"], r.stderr
    r = run_cli(script, "-s", "7", "-e", "7", "-m", models, "--", "-q", "--estimate", "20", timeout=120)
    assert r.returncode == 0, r.stderr
    est = json.loads(summary.read_text())["estimate"]
    assert est["ci95"][0] <= est["value"] <= est["ci95"][1], est
    assert est["exact"] and est["value"] == len(bf("2-3-3-1_seed0")), est   # a tree this small is expanded whole


def test_sink_dedupes_and_streams_known():
    class W:
        def __init__(self):
            self.rows = []

        def write(self, p):
            self.rows.append(tuple(p))

    w = W()
    sink = PatternSink(w, known=np.array([[1, 0], [0, 1]], np.uint8))
    assert sink.n_known == 2 and len(w.rows) == 2
    assert sink.add([1, 0]) is False and sink.add([1, 1]) is True and len(sink) == 3 and len(w.rows) == 3
    assert [1, 1] in sink


def test_unknown_and_missing_backend_messages():
    with pytest.raises(ToolError, match="gurobipy.*pyscipopt.*numba"):
        get_backend("nope")
