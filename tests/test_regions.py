"""Exact region counting: every backend's pattern set against an independent brute force.

Nets are tiny (2-3 inputs, <= 10 hidden units) so that one LP per candidate pattern in {0,1}^N
is affordable; brute force results are cached per net and shared by the backends.
"""
import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from bruteforce import brute_force_patterns, sampled_patterns
from conftest import ROOT, random_net

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.driver import count_run
from src.counting.feasibility_lp import is_feasible_pattern
from src.counting.problem import AUTO_ORDER
from src.counting.problem import BACKENDS as REGISTERED
from src.counting.problem import PatternSink, backend_class, get_backend
from src.io.pattern_file import read_patterns, write_patterns

BACKENDS = [n for n in REGISTERED if backend_class(n).uses_milp]     # the MILP backends (lp: test_lp_enum)
PY = sys.executable
CLI = str(ROOT / "count_linear_regions.py")


def _dup_net():
    """Duplicate hidden units (identical rows): symmetric solutions must all be listed."""
    net = random_net([2, 3, 3, 1], seed=11)
    w, b = net.weights, net.biases
    w0 = np.vstack([w[0], w[0][:1]])
    b0 = np.concatenate([b[0], b[0][:1]])
    w1 = np.hstack([w[1], np.zeros((3, 1))])
    w1 = np.vstack([w1, w1[:1]])
    b1 = np.concatenate([b[1], b[1][:1]])
    w2 = np.hstack([w[2], np.zeros((1, 1))])
    return ReluNet([w0, w1, w2], [b0, b1, b[2]])


NETS = {f"{'-'.join(map(str, s))}_seed{seed}": (s, seed, 0.5)
        for s in ([2, 3, 3, 1], [3, 4, 3, 2, 1], [2, 5, 5, 1]) for seed in range(3)}
NETS.update({f"{'-'.join(map(str, s))}_bias{bs}_seed{seed}": (s, seed, bs)
             for s, seed, bs in (([3, 4, 3, 2, 1], 4, 3.0), ([2, 5, 5, 1], 5, 2.5), ([3, 3, 3, 1], 6, 4.0))})


def make_net(key):
    if key == "duplicate_units":
        return _dup_net()
    sizes, seed, bs = NETS[key]
    return random_net(sizes, seed=seed, bias_scale=bs)


@functools.lru_cache(maxsize=None)
def reference(key):
    """(brute-force set, sampled set) for the net named key on [0,1]^n0."""
    net = make_net(key)
    box = Box.uniform(net.n_inputs)
    return brute_force_patterns(net, box), sampled_patterns(net, box, 100_000, seed=1)


def as_set(patterns):
    return {tuple(int(v) for v in p) for p in patterns}


def run_count(tmp_path, net, backend, **kw):
    w = tmp_path / "weights.dat"
    if not w.exists():
        net.save(w)
    summary = count_run(w, backend=backend, progress=False, **kw)
    pats = read_patterns(tmp_path / summary["pattern_file"], net.layer_sizes, allow_empty=True)
    return summary, pats


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("key", list(NETS) + ["duplicate_units"])
def test_backend_matches_brute_force(tmp_path, key, backend):
    net = make_net(key)
    bf, seen = reference(key)
    summary, pats = run_count(tmp_path, net, backend)
    got = as_set(pats)
    assert len(got) == len(pats)                     # no duplicates in the file
    assert got == bf, f"{key}: {backend} missed {len(bf - got)}, extra {len(got - bf)}"
    assert seen <= got
    assert summary["complete"] is True and summary["count"] == len(bf) and summary["backend"] == backend


def test_biased_nets_have_stable_units(tmp_path):
    """The biased nets exercise the stable-unit path (fixed bits, fewer binaries)."""
    stable = 0
    for key in NETS:
        if "bias" in key:
            net = make_net(key)
            summary, _ = run_count(tmp_path / key, net, "scip")
            stable += sum(c["active"] + c["inactive"] for c in summary["stable_units"])
            assert summary["model_size"]["binaries"] == sum(c["unstable"] for c in summary["stable_units"])
    assert stable >= 3


def test_output_files(tmp_path):
    key = "3-4-3-2-1_seed2"
    net = make_net(key)
    summary, pats = run_count(tmp_path, net, AUTO_ORDER[0] if AUTO_ORDER[0] in BACKENDS else "scip")
    lines = (tmp_path / "activation_pattern_abhinav_input_0_1.dat").read_text().splitlines()
    assert lines[0] == "n = [3, 4, 3, 2, 1]"
    assert all(len(ln.split()) == 9 and set(ln.split()) <= {"0", "1"} for ln in lines[1:])
    assert len(lines) - 1 == summary["count"] == len(reference(key)[0])
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
        net.save(tmp_path / box.name / "weights.dat")
        s = count_run(tmp_path / box.name / "weights.dat", box, backend="scip", progress=False)
        assert (tmp_path / box.name / f"activation_pattern_abhinav_{box.name}.dat").exists()
        pats = read_patterns(tmp_path / box.name / s["pattern_file"], net.layer_sizes)
        assert as_set(pats) == brute_force_patterns(net, box)
    assert (tmp_path / "input_-1_2").exists() and (tmp_path / "center_c_width_0.2").exists()


@pytest.mark.parametrize("backend", BACKENDS)
def test_resume_from_partial_file(tmp_path, backend):
    key = "3-4-3-2-1_seed2"
    net = make_net(key)
    bf = sorted(reference(key)[0])
    net.save(tmp_path / "weights.dat")
    part = np.array(bf[::3], np.uint8)
    write_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", net.layer_sizes, part)
    summary, pats = run_count(tmp_path, net, backend, resume=True)
    assert as_set(pats) == set(bf) and len(pats) == len(bf)
    assert summary["complete"] and summary["stats"]["patterns_at_start"] == len(part)
    assert summary["stats"]["new_patterns"] == len(bf) - len(part)
    # resuming a complete count does nothing
    before = (tmp_path / "regions_input_0_1.json").read_text()
    again, _ = run_count(tmp_path, net, backend, resume=True)
    assert again["count"] == len(bf) and (tmp_path / "regions_input_0_1.json").read_text() == before


@pytest.mark.parametrize("backend", BACKENDS)
def test_time_limit_partial_then_resume(tmp_path, backend):
    key = "2-5-5-1_seed2"
    net = make_net(key)
    bf = reference(key)[0]
    s1, p1 = run_count(tmp_path, net, backend, time_limit=1e-3)
    assert s1["complete"] is False and "incomplete" in s1["note"] and "--resume" in s1["note"]
    assert as_set(p1) <= bf and s1["count"] == len(p1)
    s2, p2 = run_count(tmp_path, net, backend, resume=True)
    assert s2["complete"] is True and as_set(p2) == bf


def test_resume_refuses_other_net(tmp_path):
    net = make_net("2-3-3-1_seed0")
    net.save(tmp_path / "weights.dat")
    write_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", [2, 4, 1], [[1, 0, 1, 0]])
    with pytest.raises(ToolError, match=r"n = \[2, 4, 1\].*n = \[2, 3, 3, 1\]"):
        count_run(tmp_path / "weights.dat", backend="scip", resume=True, progress=False)

    # same shape, but a pattern that contradicts the stable units (all units of this net are stable)
    net2 = make_net("3-3-3-1_bias4.0_seed6")
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
def cli(*args, cwd=None, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([PY, CLI, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env,
                          timeout=timeout)


def one_error_line(r):
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2, r.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_cli_counts_and_writes(tmp_path):
    net = make_net("2-3-3-1_seed1")
    net.save(tmp_path / "weights.dat")
    r = cli("-w", tmp_path / "weights.dat", "-q", "--backend", "scip", "-o", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    n = len(reference("2-3-3-1_seed1")[0])
    assert r.stdout.strip().splitlines()[-1].startswith(f"{n} linear regions (complete")
    assert (tmp_path / "out" / "regions_input_0_1.json").exists()


def test_cli_error_paths(tmp_path):
    line = one_error_line(cli("-w", tmp_path / "nope.dat"))
    assert "nope.dat" in line
    (tmp_path / "bad.dat").write_text("levels = 2;\nn = [2, 3];\nW = [\n1,2,3\n];\n")
    line = one_error_line(cli("-w", tmp_path / "bad.dat"))
    assert "bad.dat" in line
    net = make_net("2-3-3-1_seed0")
    net.save(tmp_path / "weights.dat")
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


def test_cli_ctrl_c_writes_partial_output(tmp_path):
    """SIGINT during the search: patterns so far are written, complete: false, exit 130."""
    net = random_net([6, 14, 14, 1], seed=0)          # ~2200 regions, ~10 s to count
    net.save(tmp_path / "weights.dat")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen([PY, CLI, "-w", str(tmp_path / "weights.dat"), "-q", "--backend", "scip"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 60
    while not (tmp_path / ".activation_pattern_abhinav_input_0_1.dat.partial").exists() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.7)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert out.strip().splitlines()[-1].startswith("INCOMPLETE (interrupted)")
    s = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    assert s["complete"] is False and s["interrupted"] is True and "Ctrl-C" in s["note"]
    pats = read_patterns(tmp_path / "activation_pattern_abhinav_input_0_1.dat", net.layer_sizes, allow_empty=True)
    assert len(pats) == s["count"] > 0
    box = Box.uniform(6)
    for p in pats[:: max(1, len(pats) // 10)]:
        assert is_feasible_pattern(net, box, p)


def test_bulk_script(tmp_path):
    models = tmp_path / "models"
    for i, key in ((3, "2-3-3-1_seed0"), (4, "2-3-3-1_seed2")):
        (models / f"fcnn_run_{i}").mkdir(parents=True)
        make_net(key).save(models / f"fcnn_run_{i}" / "weights.dat")
    script = str(ROOT / "count_linear_regions_script.sh")
    r = subprocess.run([script, "-s", "3", "-e", "5", "-m", str(models), "--", "-q", "--backend", "scip"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 1, r.stderr                           # fcnn_run_5 is missing
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][1:4] == [str(len(reference("2-3-3-1_seed0")[0])), "true", rows["fcnn_run_3"][3]]
    assert rows["fcnn_run_3"][-1] == "done" and rows["fcnn_run_5"][-1] == "missing"
    r = subprocess.run([script, "-s", "3", "-e", "4", "-m", str(models), "--", "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][-1] == "skipped" and rows["fcnn_run_4"][-1] == "skipped"
    make_net("2-3-3-1_seed1").save(models / "fcnn_run_3" / "weights.dat")      # retrained: outputs are stale
    r = subprocess.run([script, "-s", "3", "-e", "4", "-m", str(models), "--", "-q"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {ln.split()[0]: ln.split() for ln in r.stdout.splitlines() if ln.startswith("fcnn_run_")}
    assert rows["fcnn_run_3"][-1] == "done" and rows["fcnn_run_4"][-1] == "skipped"
    assert rows["fcnn_run_3"][1] == str(len(reference("2-3-3-1_seed1")[0]))
    r = subprocess.run([script, "-s", "4", "-e", "3", "-m", str(models)], capture_output=True, text=True)
    assert r.returncode == 2 and "after" in r.stderr


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
