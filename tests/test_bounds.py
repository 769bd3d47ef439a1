"""Bounds and stable units (src/bounds.py) against exact per-region LPs on tiny nets."""
import json
from functools import lru_cache

import numpy as np
import pytest
from scipy.optimize import linprog

from conftest import random_net
from src.bounds import (Stability, analyse_stability, exact_stability_per_unit, interval_bounds, lp_tighten,
                        milp_settle, safe_lower_bound, stability_to_json, write_stability_files)
from src.domain import Box
from src.network import ReluNet

TOL = 1e-6
ARCHS = [[2, 3, 3, 1], [2, 4, 3, 2, 1], [3, 5, 5, 1], [3, 4, 3, 2, 1]]
NETS = [(a, s, 0.0) for a in ARCHS for s in range(3)] + \
       [(a, s, sh) for a in ARCHS for s in (3, 4) for sh in (-1.0, 1.0)]


def make_net(sizes, seed, shift):
    net = random_net(sizes, seed)
    for b in net.biases[:-1]:
        b += shift
    return net


def exact_ranges(net, box):
    """Exact [min g, max g] of every hidden unit over the box, by LPs over closed linear regions.

    Depth-first over layers: a prefix of bits for layers < l fixes g_l as an affine map of x on the
    closed region {x in box : g >= 0 on bits 1, g <= 0 on bits 0 of the prefix}; these regions
    cover the box, so the extremes of g_l over the box are the extremes over the non-empty ones.
    """
    n0 = net.n_inputs
    bnds = list(zip(box.lo, box.hi))
    lo = [np.full(n, np.inf) for n in net.hidden_sizes]
    hi = [np.full(n, -np.inf) for n in net.hidden_sizes]

    def visit(l, A, c, rows_A, rows_b):
        # g_l = A x + c on this region; rows_A x <= rows_b describe the region
        kw = dict(A_ub=np.array(rows_A) if rows_A else None, b_ub=np.array(rows_b) if rows_b else None,
                  bounds=bnds, method="highs")
        for i in range(A.shape[0]):
            for s in (1.0, -1.0):
                r = linprog(s * A[i], **kw)
                assert r.status == 0
                v = s * r.fun + c[i]
                lo[l][i] = min(lo[l][i], v)
                hi[l][i] = max(hi[l][i], v)
        if l + 1 == net.n_hidden_layers:
            return
        for bits in np.ndindex(*(2,) * A.shape[0]):
            bits = np.array(bits, float)
            sign = np.where(bits > 0, -1.0, 1.0)        # bit 1: -g <= 0 ; bit 0: g <= 0
            ra = rows_A + list(sign[:, None] * A)
            rb = rows_b + list(-sign * c)
            feas = linprog(np.zeros(n0), A_ub=np.array(ra), b_ub=np.array(rb), bounds=bnds, method="highs")
            if feas.status != 0:
                continue
            W, b = net.weights[l + 1], net.biases[l + 1]
            visit(l + 1, W @ (bits[:, None] * A), W @ (bits * c) + b, ra, rb)

    visit(0, net.weights[0], net.biases[0], [], [])
    return lo, hi


@lru_cache(maxsize=None)
def case(sizes, seed, shift):
    net = make_net(list(sizes), seed, shift)
    box = Box.uniform(sizes[0])
    return net, box, exact_ranges(net, box)


def exact_sets(lo, hi, tol=TOL):
    """Stable units by definition: inactive iff max g <= 0, active iff min g > tol."""
    return [h <= 0 for h in hi], [l_ > tol for l_ in lo]


def assert_well_posed(lo, hi):
    """The exact extremes must not sit on a threshold (then float solvers could not decide them)."""
    for l_, h in zip(lo, hi):
        assert np.all(np.abs(h) > 1e-5) and np.all(np.abs(l_ - TOL) > 1e-5)


@pytest.mark.parametrize("sizes,seed,shift", NETS)
def test_bounds_are_sound_and_tiers_tighten(sizes, seed, shift):
    net, box, (elo, ehi) = case(tuple(sizes), seed, shift)
    iv = interval_bounds(net, box)
    lp = analyse_stability(net, box, tol=TOL)
    ex = analyse_stability(net, box, tol=TOL, exact=True)
    x = box.sample(20_000, np.random.default_rng(seed))
    for l, g in enumerate(net.preactivations(x)):
        for st in (iv, lp, ex):
            assert np.all(st.lower[l] <= g.min(0)) and np.all(g.max(0) <= st.upper[l])
            assert np.all(st.lower[l] <= elo[l] + 1e-9) and np.all(ehi[l] <= st.upper[l] + 1e-9)
        assert np.all(lp.upper[l] <= iv.upper[l]) and np.all(lp.lower[l] >= iv.lower[l])
        assert np.all(ex.upper[l] <= lp.upper[l]) and np.all(ex.lower[l] >= lp.lower[l])
    # interval bounds of the first layer are exact
    assert np.allclose(iv.lower[0], elo[0], atol=1e-12) and np.allclose(iv.upper[0], ehi[0], atol=1e-12)
    # witnesses are values of g at points of the box
    for l in range(net.n_hidden_layers):
        assert np.all(ex.witness_max[l] <= ehi[l] + 1e-12) and np.all(ex.witness_min[l] >= elo[l] - 1e-12)


@pytest.mark.parametrize("sizes,seed,shift", NETS)
def test_exact_stability_matches_region_brute_force(sizes, seed, shift):
    net, box, (elo, ehi) = case(tuple(sizes), seed, shift)
    assert_well_posed(elo, ehi)
    inactive, active = exact_sets(elo, ehi)
    for st in (analyse_stability(net, box, tol=TOL, exact=True), exact_stability_per_unit(net, box, tol=TOL),
               exact_stability_per_unit(net, box, tol=TOL, early_stop=False)):
        assert st.exact
        for l in range(net.n_hidden_layers):
            assert np.array_equal(st.inactive[l], inactive[l]), (l, st.upper[l], ehi[l])
            assert np.array_equal(st.active[l], active[l]), (l, st.lower[l], elo[l])
    # the LP tier alone is sound: everything it declares stable is stable
    lp = analyse_stability(net, box, tol=TOL)
    for l in range(net.n_hidden_layers):
        assert not np.any(lp.inactive[l] & ~inactive[l]) and not np.any(lp.active[l] & ~active[l])


@pytest.mark.parametrize("sizes,seed,shift", NETS[::3])
def test_per_unit_milp_bounds_are_the_exact_ranges(sizes, seed, shift):
    """Solved to optimality, the per-unit MILP reproduces the exact extremes of units it solved."""
    net, box, (elo, ehi) = case(tuple(sizes), seed, shift)
    st = exact_stability_per_unit(net, box, tol=TOL, early_stop=False)
    iv = interval_bounds(net, box)
    for l in range(1, net.n_hidden_layers):
        solved = iv.unstable[l] & (st.upper[l] < iv.upper[l]) & (st.lower[l] > iv.lower[l])
        assert np.allclose(st.upper[l][solved], ehi[l][solved], atol=1e-6)
        assert np.allclose(st.lower[l][solved], elo[l][solved], atol=1e-6)


@pytest.mark.parametrize("sizes,seed,shift", NETS[1::3])
def test_stability_only_gives_the_same_stable_sets(sizes, seed, shift):
    net, box, _ = case(tuple(sizes), seed, shift)
    for exact in (False, True):
        full = analyse_stability(net, box, tol=TOL, exact=exact)
        lean = analyse_stability(net, box, tol=TOL, exact=exact, stability_only=True)
        assert np.array_equal(full.fixed_bits(), lean.fixed_bits())
        for l in range(net.n_hidden_layers):
            assert np.all(lean.upper[l] >= full.upper[l] - 1e-9) and np.all(lean.lower[l] <= full.lower[l] + 1e-9)


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("sizes,seed,shift", NETS[::2])
def test_every_milp_solve_returns_a_valid_bound(sizes, seed, shift, early_stop):
    """Stopped early (witness, cutoff or bound) or not, a solve's bound never cuts the exact range."""
    from src.bounds import _LayerMILP
    from src.milp import build_formulation

    net, box, (elo, ehi) = case(tuple(sizes), seed, shift)
    st = interval_bounds(net, box)
    for l in range(1, net.n_hidden_layers):
        for heuristics in (True, False):
            model = _LayerMILP(net, box, build_formulation(net, box, st, tol=TOL, upto_layer=l), l, heuristics)
            for i in range(net.hidden_sizes[l]):
                up, pts, fin = model.solve(i, "max", TOL, early_stop=early_stop, time_limit=None)
                lo, pts2, fin2 = model.solve(i, "min", TOL, early_stop=early_stop, time_limit=None)
                assert fin and fin2
                assert up >= ehi[l][i] - 1e-9 and lo <= elo[l][i] + 1e-9, (l, i, up, ehi[l][i], lo, elo[l][i])
                for p in pts + pts2:
                    assert elo[l][i] - 1e-9 <= net.preactivations(p)[l][0, i] <= ehi[l][i] + 1e-9
                if not early_stop:
                    assert up == pytest.approx(ehi[l][i], abs=1e-6) and lo == pytest.approx(elo[l][i], abs=1e-6)


def test_tiers_settle_units_and_record_times():
    """Biased nets: interval, LP and MILP each settle units; tiers are reported in order."""
    totals = {"interval": 0, "lp": 0, "milp": 0}
    for seed in range(6):
        net = make_net([3, 6, 6, 4, 1], seed, -0.3)
        st = analyse_stability(net, Box.uniform(3), tol=TOL, exact=True)
        assert [t["tier"] for t in st.tiers] == ["interval", "lp", "milp"]
        assert all(t["seconds"] >= 0 for t in st.tiers)
        assert sum(t["settled"] for t in st.tiers) == st.n_stable()
        for t in st.tiers:
            totals[t["tier"]] += t["settled"]
    assert all(v > 0 for v in totals.values()), totals


def test_stable_by_construction():
    """Huge negative bias -> inactive; positive weights and bias on [0,1] -> active; zero row -> per bias."""
    ws = [np.array([[1.0, 1.0], [1.0, -1.0], [2.0, 3.0], [0.0, 0.0], [0.0, 0.0]]),
          np.ones((2, 5)), np.ones((1, 2))]
    bs = [np.array([-100.0, 0.0, 0.5, 0.0, 1.0]), np.array([-1e3, 0.25]), np.zeros(1)]
    net = ReluNet(ws, bs)
    st = analyse_stability(net, Box.uniform(2), tol=TOL, exact=True)
    assert st.inactive[0].tolist() == [True, False, False, True, False]
    assert st.active[0].tolist() == [False, False, True, False, True]
    assert st.inactive[1].tolist() == [True, False] and st.active[1].tolist() == [False, True]
    assert st.fixed_bits().tolist() == [0, -1, 1, 0, 1, 0, 1]


def test_local_box_has_at_least_as_many_stable_units():
    net = make_net([3, 5, 5, 1], 1, 0.0)
    big = analyse_stability(net, Box.uniform(3), tol=TOL, exact=True)
    small = analyse_stability(net, Box.around(np.full(3, 0.4), 0.02, "p"), tol=TOL, exact=True)
    assert small.n_stable() >= big.n_stable()
    for l in range(2):
        assert np.all(small.inactive[l] >= big.inactive[l]) and np.all(small.active[l] >= big.active[l])


@pytest.mark.parametrize("local_search", [False, True])
@pytest.mark.parametrize("sizes,seed,shift", NETS[::4])
def test_milp_tier_alone_without_sample_witnesses(sizes, seed, shift, local_search):
    """With the sample witnesses wiped, the MILP (and local search) must answer both questions for
    every unit (early-stopped at incumbents with g > 0 / g <= tol, or at a bound), and be exact."""
    net, box, (elo, ehi) = case(tuple(sizes), seed, shift)
    st = interval_bounds(net, box)
    st.witness_min = [np.full(n, np.inf) for n in net.hidden_sizes]
    st.witness_max = [np.full(n, -np.inf) for n in net.hidden_sizes]
    st = milp_settle(net, box, st, tol=TOL, local_search=local_search)
    inactive, active = exact_sets(elo, ehi)
    open_units = sum(int(u.sum()) for u in interval_bounds(net, box).unstable[1:])
    # incumbents of one solve also certify other units, so there may be fewer solves than open units
    work = st.tiers[-1]["solves"] + st.tiers[-1]["local_searches"]
    assert st.exact and (work >= 1) == (open_units > 0)
    if not local_search:
        assert st.tiers[-1]["local_searches"] == 0
    for l in range(1, net.n_hidden_layers):
        assert np.array_equal(st.inactive[l], inactive[l]) and np.array_equal(st.active[l], active[l])
        unst = ~(inactive[l] | active[l])
        assert np.all(st.witness_max[l][unst] > 0) and np.all(st.witness_min[l][unst] <= TOL)


def test_time_limit_leaves_units_undecided_and_not_exact():
    net = make_net([3, 8, 8, 8, 1], 0, 0.0)
    box = Box.uniform(3)
    lp = analyse_stability(net, box, tol=TOL)
    st = milp_settle(net, box, lp, tol=TOL, time_limit=0.0)
    assert st.tiers[-1]["tier"] == "milp" and st.tiers[-1]["settled"] == 0
    undecided = sum(1 for l in range(1, 3) for i in np.flatnonzero(lp.unstable[l])
                    if lp.witness_max[l][i] <= 0 or lp.witness_min[l][i] > TOL)
    assert st.exact == (undecided == 0)
    assert st.tiers[-1]["undecided"] == undecided


def test_safe_lower_bound_is_valid_for_any_duals():
    """Weak duality bound: below the LP optimum for random y, equal to it for the optimal y."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    A = sp.csr_matrix(rng.normal(size=(6, 5)))
    lo = np.array([-1.0, -np.inf, -2.0, -np.inf, 0.5, -1.0])
    hi = np.array([1.0, 0.5, np.inf, 1.0, 0.5, np.inf])
    lb, ub = -np.ones(5), np.ones(5) * 2
    c = rng.normal(size=5)
    Ad = A.toarray()
    fin = np.isfinite
    res = linprog(c, A_ub=np.vstack([Ad[fin(hi)], -Ad[fin(lo)]]), b_ub=np.concatenate([hi[fin(hi)], -lo[fin(lo)]]),
                  bounds=list(zip(lb, ub)), method="highs")
    assert res.status == 0
    for _ in range(50):
        assert safe_lower_bound(c, rng.normal(size=6), A, A.T.tocsr(), lo, hi, lb, ub) <= res.fun + 1e-12
    assert safe_lower_bound(c, None, A, A.T.tocsr(), lo, hi, lb, ub) <= res.fun
    # the optimal duals from scipy (marginals of the <= rows) give the optimum back
    y = np.zeros(6)
    y[fin(hi)] += res.ineqlin.marginals[: fin(hi).sum()]
    y[fin(lo)] -= res.ineqlin.marginals[fin(hi).sum():]
    assert safe_lower_bound(c, y, A, A.T.tocsr(), lo, hi, lb, ub) == pytest.approx(res.fun, abs=1e-9)


def test_stability_files(tmp_path):
    net = make_net([3, 5, 5, 1], 2, -0.5)
    box = Box.uniform(3)
    st = analyse_stability(net, box, tol=TOL, exact=True)
    js, dat = write_stability_files(tmp_path, st, box, "runs/x/weights.dat")
    assert js.name == "stable_units_input_0_1.json" and dat.name == "inactive_input_0_1.dat"
    d = json.loads(js.read_text())
    assert d == json.loads(json.dumps(stability_to_json(st, box, "runs/x/weights.dat")))
    assert d["weights"] == "runs/x/weights.dat" and d["domain"] == {"name": "input_0_1", "n": 3, "lo": 0.0, "hi": 1.0}
    assert d["tol"] == TOL and d["exact"] is True
    assert [t["tier"] for t in d["tiers"]] == ["interval", "lp", "milp"]
    assert d["counts"] == [{"layer": l + 1, **c} for l, c in enumerate(st.counts())]
    for l, lay in enumerate(d["layers"]):
        assert lay["layer"] == l + 1
        assert sorted(lay["active"] + lay["inactive"] + lay["unstable"]) == list(range(net.hidden_sizes[l]))
        assert lay["inactive"] == np.flatnonzero(st.inactive[l]).tolist()
        assert np.allclose(lay["lower"], st.lower[l]) and np.allclose(lay["upper"], st.upper[l])
    lines = [tuple(map(int, ln.split())) for ln in dat.read_text().splitlines()]
    assert lines == [(l + 1, int(i)) for l in range(2) for i in np.flatnonzero(st.inactive[l])]
    assert lines, "this net has stably inactive units"
    assert not list(tmp_path.glob(".*.tmp"))


def test_stability_dataclass_is_backwards_compatible():
    st = Stability([np.array([-1.0, 0.5, -2.0])], [np.array([1.0, 2.0, -0.5])])
    assert st.fixed_bits().tolist() == [-1, 1, 0]
    assert st.counts() == [{"active": 1, "inactive": 1, "unstable": 1}]
    assert st.certified_unstable()[0].tolist() == [False, False, False]
    cp = st.copy()
    cp.lower[0][0] = 5
    assert st.lower[0][0] == -1.0
