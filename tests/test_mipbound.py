"""`--mipbound`: MIPBound's probabilistic lower bound on the number of regions (src/counting/mipbound.py) and its
XOR-constrained MILPs (src/counting/backends/xor_milp.py), against the brute force of the catalogue's nets."""
import math
import time

import numpy as np
import pytest
from conftest import as_set, catalogue_net, load_script, random_net, reference, run_cli

from src.analysis import Analysis
from src.core.box import Box
from src.core.errors import ToolError
from src.counting.backends.gurobi import GurobiBackend
from src.counting.backends.xor_milp import ADAPTERS
from src.counting.mipbound import (default_xor_size, draw_xors, mipbound, mipbound_probability, satisfies)
from src.counting.problem import BackendUnavailable
from src.io.records import read_regions, write_regions
from src.io.weights_file import save_net
from src.stability.analyse import analyse_stability
from src.stability.milp import build_formulation

TOL = 1e-6
F_MIN = 2 * TOL
# catalogue nets with 7-9 unstable units and 16-47 regions (the estimate's coverage nets)
BOUND_NETS = ["3-4-3-2-1_seed0", "3-4-3-2-1_seed2", "3-5-4-1_seed9_bias0.4", "2-5-5-1_seed2"]


def _gurobi_ok() -> bool:
    try:
        GurobiBackend.check_available()
        return True
    except BackendUnavailable:
        return False


GUROBI = pytest.mark.skipif(not _gurobi_ok(), reason="gurobipy (with a licence) is not installed")
SOLVERS = ["scip", pytest.param("gurobi", marks=GUROBI)]


def setup(name):
    s = catalogue_net(name)
    net = s.net()
    box = Box.uniform(net.n_inputs)
    return s, net, box, analyse_stability(net, box, tol=TOL)


# ---- the pieces of the theorem -------------------------------------------------------------------------------
def test_probability_and_default_xor_size():
    assert mipbound_probability(5) == 1 - 2 ** -5
    assert mipbound_probability(3, alpha=2) == 1 - 2 ** -6
    assert [default_xor_size(u) for u in (0, 1, 2, 9, 12, 64, 200)] == [1, 1, 1, 5, 6, 32, 32]


def test_xors_are_seeded_and_each_pattern_survives_one_with_probability_one_half():
    A, b = draw_xors(3, 4, 1, 9, 5)
    assert A.shape == (4, 9) and b.shape == (4,) and np.all(A.sum(axis=1) == 5)
    A2, b2 = draw_xors(3, 4, 1, 9, 5)
    assert np.array_equal(A, A2) and np.array_equal(b, b2)
    assert not np.array_equal(A, draw_xors(3, 4, 2, 9, 5)[0])
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(50, 9)).astype(np.uint8)
    assert np.array_equal(satisfies(bits, A, b), np.all((bits.astype(int) @ A.T) % 2 == b, axis=1))
    # the theorem's premise: a fixed pattern satisfies a random XOR (any size) with probability exactly 1/2
    for k in (1, 3, 9):
        hits = sum(bool(satisfies(bits[:1], *draw_xors(7, 1, t, 9, k))[0]) for t in range(2000))
        assert 0.45 < hits / 2000 < 0.55, (k, hits)


# ---- the XOR-constrained MILP of each solver against the brute force -----------------------------------------
def _xor_cases(U):
    """(r, seed/trial, k): every number of XORs up to U, three sizes each (the grid on which SCIP's pairwise XOR
    presolving gave two wrong answers and a wrong solution)."""
    return [(r, t, 1 + (t * 7 + r) % U) for r in range(1, U + 1) for t in range(3)]


@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("name", ["3-4-3-2-1_seed2", "duplicates"])
def test_xor_feasibility_matches_the_brute_force(solver, name):
    s, net, box, st = setup(name)
    form = build_formulation(net, box, st, TOL)
    unst = form.unstable_units
    ref = np.array(sorted(reference(s)), np.uint8)
    adapter = ADAPTERS[solver](form, F_MIN)
    for r, t, k in _xor_cases(len(unst)):
        A, b = draw_xors(t, r, t, len(unst), k)
        truth = bool(satisfies(ref[:, unst], A, b).any())
        xors = [(form.z_index[unst[np.flatnonzero(row)]], int(bj)) for row, bj in zip(A, b)]
        ans = adapter.solve(xors)
        assert ans.status == ("feasible" if truth else "infeasible"), (r, t, k, ans)
        if truth:
            z = form.pattern_from_solution(ans.values)
            assert satisfies(z[unst], A, b)[0], (r, t, k)


@GUROBI
def test_gurobi_linearisation_equals_scip_xor():
    """sum z - 2 t = b with t integer (Gurobi) and SCIP's native XOR: the same answer on every instance."""
    s, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    form = build_formulation(net, box, st, TOL)
    unst = form.unstable_units
    scip, grb = ADAPTERS["scip"](form, F_MIN), ADAPTERS["gurobi"](form, F_MIN)
    statuses = set()
    for r, t, k in _xor_cases(len(unst)):
        A, b = draw_xors(t + 10, r, t, len(unst), k)
        xors = [(form.z_index[unst[np.flatnonzero(row)]], int(bj)) for row, bj in zip(A, b)]
        a, g = scip.solve(xors), grb.solve(xors)
        assert a.status == g.status, (r, t, k, a, g)
        statuses.add(a.status)
    assert statuses == {"feasible", "infeasible"}


# ---- the bound against the brute force -----------------------------------------------------------------------
@pytest.mark.parametrize("solver", SOLVERS)
def test_bound_and_certified_patterns(solver):
    s, net, box, st = setup("3-4-3-2-1_seed2")
    N = len(reference(s))
    mb = mipbound(net, box, st, seed=0, backend=solver)
    assert mb.solver == solver and mb.unstable_units == 9 and mb.xor_size == 5 and mb.trials == 5
    assert mb.probability == 1 - 2 ** -5
    assert 1 <= mb.log2_lower and 2 ** mb.log2_lower <= N
    assert mb.patterns_found >= 1 and as_set(mb.patterns) <= reference(s)     # certified: a subset, surely
    assert mb.r_max_tried == mb.log2_lower + 2                               # r* = log2_lower + alpha, then one more
    rec = mb.to_json()
    assert {"log2_lower", "probability", "xor_size", "trials", "seconds", "solver", "r_max_tried",
            "patterns_found"} <= set(rec)
    assert rec["per_r"][-1]["satisfied"] < 5 and all(x["satisfied"] == 5 for x in rec["per_r"][:-1])


def test_bound_holds_for_a_few_seeds():
    s, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    N = len(reference(s))
    for seed in range(4):
        mb = mipbound(net, box, st, seed=seed)
        assert 2 ** mb.log2_lower <= N and as_set(mb.patterns) <= reference(s), seed


@pytest.mark.slow
def test_bound_holds_over_seeds():
    """20 seeds on 4 nets: the theorem allows a wrong bound with probability < 2^-5 each (about 2.5 of 80);
    measured: none. The bounds must also be informative: within 3 of log2(N) at the median."""
    for name in BOUND_NETS:
        s, net, box, st = setup(name)
        N = len(reference(s))
        lows = []
        for seed in range(20):
            mb = mipbound(net, box, st, seed=seed)
            assert 2 ** mb.log2_lower <= N, (name, seed, mb.log2_lower, N)
            assert as_set(mb.patterns) <= reference(s)
            lows.append(mb.log2_lower)
        assert np.median(lows) >= math.log2(N) - 3, (name, lows)


def test_seeded_and_deterministic_and_known_patterns_only_save_solves():
    s, net, box, st = setup("3-4-3-2-1_seed0")
    a = mipbound(net, box, st, seed=4)
    b = mipbound(net, box, st, seed=4)
    drop = ("seconds", "stats", "per_r")
    assert {k: v for k, v in a.to_json().items() if k not in drop} == \
        {k: v for k, v in b.to_json().items() if k not in drop}
    # every region known: no trial is decided differently, only the satisfiable ones skip their solve
    known = np.array(sorted(reference(s)), np.uint8)
    c = mipbound(net, box, st, seed=4, known=known)
    assert c.log2_lower == a.log2_lower and c.r_max_tried == a.r_max_tried
    assert c.stats["solves"] == c.stats["infeasible"] <= 1 and c.patterns_found == 0


def test_all_units_stable_is_one_certified_region():
    s = catalogue_net("3-3-3-1_seed6_bias4")
    net = s.net()
    box = Box.uniform(3)
    st = analyse_stability(net, box, tol=TOL)
    assert (st.fixed_bits() >= 0).all()
    mb = mipbound(net, box, st)
    assert mb.log2_lower == 0.0 and mb.probability == 1.0 and as_set(mb.patterns) == reference(s)
    assert mb.stats["solves"] == 0


def test_time_limit_holds():
    net = random_net([6, 24, 24, 1], seed=3)
    t = time.perf_counter()
    mb = Analysis(net).mipbound(time_limit=1.0, seed=0)
    assert time.perf_counter() - t < 6.0
    assert mb.stopped == "time limit" and mb.to_json()["stopped"] == "time limit"
    box = Box.uniform(6)
    mb = mipbound(net, box, analyse_stability(net, box, tol=TOL), deadline=time.perf_counter())
    assert mb.stopped == "time limit" and mb.log2_lower is None and mb.probability == 0.0


@GUROBI
def test_gurobi_licence_falls_back_to_scip(monkeypatch):
    """A 2100-input net does not fit the size-limited pip licence: SCIP answers, the licence message is noted
    (through the size pre-check, and through GurobiError 10010 at optimize() when the pre-check is skipped)."""
    from src.counting.backends import xor_milp

    if not xor_milp.size_limited_licence():
        pytest.skip("a full Gurobi licence is active")
    net = random_net([2100, 4, 3, 1], seed=1)
    net.weights[0] /= 20.0
    box = Box.uniform(2100)
    st = analyse_stability(net, box, tol=TOL)
    ref = mipbound(net, box, st, seed=0, backend="scip")
    for skip_check in (False, True):
        if skip_check:
            monkeypatch.setattr(xor_milp, "size_limited_licence", lambda: False)
        mb = mipbound(net, box, st, seed=0, backend="gurobi")
        assert mb.solver == "scip" and "falling back to SCIP" in mb.to_json()["note"] and "10010" in mb.notes[0]
        assert mb.log2_lower == ref.log2_lower


def test_bad_settings():
    _, net, box, st = setup("3-4-3-2-1_seed1")
    for kw, what in (({"trials": 0}, "--mipbound-trials"), ({"trials": 1.5}, "--mipbound-trials"),
                     ({"xor_size": 0}, "--xor-size"), ({"xor_size": True}, "--xor-size"), ({"alpha": 0}, "alpha"),
                     ({"seed": -1}, "--seed"), ({"backend": "lp"}, "--backend")):
        with pytest.raises(ToolError, match=what):
            mipbound(net, box, st, **kw)


# ---- the command line and the record -------------------------------------------------------------------------
def _weights(tmp_path, name="3-5-4-1_seed9_bias0.4"):
    path = tmp_path / "weights.dat"
    save_net(catalogue_net(name).net(), path)
    return path


def test_cli_writes_the_record_and_the_final_line(tmp_path):
    main = load_script("count_linear_regions.py").main
    w = _weights(tmp_path)
    truth = len(reference(catalogue_net("3-5-4-1_seed9_bias0.4")))
    r = run_cli(main, "-w", w, "--mipbound", "--seed", "1", "-q", "--data-samples", "500")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("regions >= 2^") and "with probability 0.9688" in last
    assert "(MIPBound: 5 trials, XORs of 4 units," in last and last.endswith("regions_input_0_1.json")
    assert not list(tmp_path.glob("activation_pattern_*"))
    summ = read_regions(tmp_path / "regions_input_0_1.json")
    rec = summ["mipbound"]
    assert {"log2_lower", "probability", "xor_size", "trials"} <= set(rec) and rec["solver"] == "scip"
    assert 2 ** rec["log2_lower"] <= truth and rec["xor_size"] == 4 and rec["trials"] == 5
    assert summ["complete"] is False and summ["backend"] == "mipbound"
    assert summ["count"] == rec["patterns_found"] <= summ["lower_bound"] <= truth
    # a count of the same weights/tol/domain: the record is merged into its summary
    assert run_cli(main, "-w", w, "-q", "--data-samples", "500").returncode == 0
    r = run_cli(main, "-w", w, "--mipbound", "--xor-size", "2", "--mipbound-trials", "3", "-q", "--data-samples", "500")
    assert r.returncode == 0, r.stderr
    summ = read_regions(tmp_path / "regions_input_0_1.json")
    assert summ["complete"] is True and summ["count"] == truth
    assert summ["mipbound"]["xor_size"] == 2 and summ["mipbound"]["trials"] == 3
    assert summ["mipbound"]["probability"] == 1 - 2 ** -3


@GUROBI
def test_cli_with_gurobi(tmp_path):
    main = load_script("count_linear_regions.py").main
    r = run_cli(main, "-w", _weights(tmp_path), "--mipbound", "--backend", "gurobi", "-q", "--data-samples", "0")
    assert r.returncode == 0, r.stderr
    assert read_regions(tmp_path / "regions_input_0_1.json")["mipbound"]["solver"] == "gurobi"


def test_cli_refuses_bad_flags_and_writes_nothing(tmp_path):
    main = load_script("count_linear_regions.py").main
    w = _weights(tmp_path)
    center = tmp_path / "center.txt"
    center.write_text("0.5,0.5,0.5\n")
    for args, what in ((["--mipbound", "--mipbound-trials", "0"], "--mipbound-trials"),
                       (["--mipbound", "--xor-size", "0"], "--xor-size"),
                       (["--xor-size", "3"], "--xor-size"), (["--mipbound-trials", "3"], "--mipbound-trials"),
                       (["--mipbound", "--estimate", "5"], "--estimate"),
                       (["--mipbound", "--backend", "lp"], "--backend"),
                       (["--mipbound", "--resume"], "--resume"),
                       (["--mipbound", "--time-limit", "0"], "--time-limit"),
                       (["--mipbound", "--center", center, "--width", "0.1,0.2"], "sweep")):
        r = run_cli(main, "-w", w, "-q", *args)
        lines = [x for x in r.stderr.strip().splitlines() if x]
        assert r.returncode == 2 and lines[-1].startswith("error:") and what in lines[-1], (args, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["center.txt", "weights.dat"]


def test_the_regions_reader_checks_the_mipbound_record(tmp_path):
    rec = {"layer_sizes": [2, 3, 1], "domain": {"name": "input_0_1"}, "count": 3, "complete": False, "tol": 1e-6,
           "mipbound": {"log2_lower": 2.0, "probability": 0.96875, "xor_size": 2, "trials": 5, "patterns_found": 3}}
    write_regions(tmp_path / "r.json", rec)
    assert read_regions(tmp_path / "r.json")["mipbound"]["log2_lower"] == 2.0
    write_regions(tmp_path / "r.json", {**rec, "mipbound": {**rec["mipbound"], "log2_lower": None, "probability": 0}})
    for bad in ({"probability": 1.5}, {"xor_size": 0}, {"trials": -1}, {"log2_lower": -1.0}, {"log2_lower": "x"},
                {"patterns_found": -2}):
        with pytest.raises(ToolError, match="mipbound"):
            write_regions(tmp_path / "bad.json", {**rec, "mipbound": {**rec["mipbound"], **bad}})
    with pytest.raises(ToolError, match="mipbound"):
        write_regions(tmp_path / "bad.json", {**rec, "mipbound": [1]})
    assert not (tmp_path / "bad.json").exists()
