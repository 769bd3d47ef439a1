"""Bounds and stable units (src/stability/) against exact per-region LPs on tiny nets."""
import json
from functools import lru_cache

import numpy as np
import pytest
from conftest import nets, random_net
from scipy.optimize import linprog

from src.core.box import Box
from src.core.network import ReluNet
from src.stability.analyse import analyse_stability
from src.stability.exact import exact_stability_per_unit, milp_settle
from src.stability.files import stability_to_json, write_stability_files
from src.stability.interval import interval_bounds
from src.stability.lp import lp_tighten, safe_lower_bound
from src.stability.record import Stability

TOL = 1e-6
NETS = nets("stability")                 # the catalogue's (tests/conftest.py)


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
def case(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    return net, box, exact_ranges(net, box)


def exact_sets(lo, hi, tol=TOL):
    """Stable units by definition: inactive iff max g <= 0, active iff min g > tol."""
    return [h <= 0 for h in hi], [l_ > tol for l_ in lo]


def assert_well_posed(lo, hi):
    """The exact extremes must not sit on a threshold (then float solvers could not decide them)."""
    for l_, h in zip(lo, hi):
        assert np.all(np.abs(h) > 1e-5) and np.all(np.abs(l_ - TOL) > 1e-5)


@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_bounds_are_sound_and_tiers_tighten(net_spec):
    net, box, (elo, ehi) = case(net_spec)
    iv = interval_bounds(net, box)
    lp = analyse_stability(net, box, tol=TOL)
    ex = analyse_stability(net, box, tol=TOL, exact=True)
    x = box.sample(20_000, np.random.default_rng(net_spec.seed))
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


@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_exact_stability_matches_region_brute_force(net_spec):
    net, box, (elo, ehi) = case(net_spec)
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


@pytest.mark.parametrize("net_spec", NETS[::3], ids=str)
def test_per_unit_milp_bounds_are_the_exact_ranges(net_spec):
    """Solved to optimality, the per-unit MILP reproduces the exact extremes of units it solved."""
    net, box, (elo, ehi) = case(net_spec)
    st = exact_stability_per_unit(net, box, tol=TOL, early_stop=False)
    iv = interval_bounds(net, box)
    for l in range(1, net.n_hidden_layers):
        solved = iv.unstable[l] & (st.upper[l] < iv.upper[l]) & (st.lower[l] > iv.lower[l])
        assert np.allclose(st.upper[l][solved], ehi[l][solved], atol=1e-6)
        assert np.allclose(st.lower[l][solved], elo[l][solved], atol=1e-6)


@pytest.mark.parametrize("net_spec", NETS[1::3], ids=str)
def test_stability_only_gives_the_same_stable_sets(net_spec):
    net, box, _ = case(net_spec)
    for exact in (False, True):
        full = analyse_stability(net, box, tol=TOL, exact=exact)
        lean = analyse_stability(net, box, tol=TOL, exact=exact, stability_only=True)
        assert np.array_equal(full.fixed_bits(), lean.fixed_bits())
        for l in range(net.n_hidden_layers):
            assert np.all(lean.upper[l] >= full.upper[l] - 1e-9) and np.all(lean.lower[l] <= full.lower[l] + 1e-9)


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("net_spec", NETS[::2], ids=str)
def test_every_milp_solve_returns_a_valid_bound(net_spec, early_stop):
    """Stopped early (witness, cutoff or bound) or not, a solve's bound never cuts the exact range."""
    from src.stability.exact import _LayerMILP
    from src.stability.milp import build_formulation

    net, box, (elo, ehi) = case(net_spec)
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
        net = random_net([3, 6, 6, 4, 1], seed, shift=-0.3)
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
    net = random_net([3, 5, 5, 1], 1)
    big = analyse_stability(net, Box.uniform(3), tol=TOL, exact=True)
    small = analyse_stability(net, Box.around(np.full(3, 0.4), 0.02, "p"), tol=TOL, exact=True)
    assert small.n_stable() >= big.n_stable()
    for l in range(2):
        assert np.all(small.inactive[l] >= big.inactive[l]) and np.all(small.active[l] >= big.active[l])


@pytest.mark.parametrize("local_search", [False, True])
@pytest.mark.parametrize("net_spec", NETS[::4], ids=str)
def test_milp_tier_alone_without_sample_witnesses(net_spec, local_search):
    """With the sample witnesses wiped, the MILP (and local search) must answer both questions for
    every unit (early-stopped at incumbents with g > 0 / g <= tol, or at a bound), and be exact."""
    net, box, (elo, ehi) = case(net_spec)
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
    net = random_net([3, 8, 8, 8, 1], 0)
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
    net = random_net([3, 5, 5, 1], 2, shift=-0.5)
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


# ---------------------------------------------------------------------------------------------
# data first, time limits, tiers only tighten
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_data_first_gives_the_exact_and_the_tiered_stable_sets(net_spec):
    """Witnesses from data points skip LPs, yet the stable sets are those of the exact reference
    (with exact=True) and those of today's LP tier (exact=False); bounds are sound, never tighter
    than the full LP tier's."""
    from src.stability.witnesses import data_points_for_box

    net, box, (elo, ehi) = case(net_spec)
    inactive, active = exact_sets(elo, ehi)
    data = data_points_for_box(box, n_samples=5000, seed=net_spec.seed)
    ref = exact_stability_per_unit(net, box, tol=TOL)
    full = analyse_stability(net, box, tol=TOL)
    x = box.sample(5000, np.random.default_rng(net_spec.seed + 100))
    for exact in (False, True):
        st = analyse_stability(net, box, tol=TOL, exact=exact, data=data)
        assert st.tiers[0]["data_points"] == 5000
        if exact:
            assert st.exact and np.array_equal(st.fixed_bits(), ref.fixed_bits())
            for l in range(net.n_hidden_layers):
                assert np.array_equal(st.inactive[l], inactive[l]) and np.array_equal(st.active[l], active[l])
        else:
            assert np.array_equal(st.fixed_bits(), full.fixed_bits())
        for l, g in enumerate(net.preactivations(x)):
            assert np.all(st.lower[l] <= g.min(0)) and np.all(g.max(0) <= st.upper[l])
            assert np.all(st.lower[l] <= elo[l] + 1e-9) and np.all(ehi[l] <= st.upper[l] + 1e-9)
            if not exact:
                assert np.all(st.upper[l] >= full.upper[l] - 1e-9) and np.all(st.lower[l] <= full.lower[l] + 1e-9)
    # tight_bounds: the full LP tier, data or not
    tight = analyse_stability(net, box, tol=TOL, data=data, tight_bounds=True)
    assert tight.tiers[1]["skipped_certified"] == 0
    for l in range(net.n_hidden_layers):
        assert np.allclose(tight.lower[l], full.lower[l], atol=1e-9) and np.allclose(tight.upper[l], full.upper[l], atol=1e-9)


def test_data_first_skips_the_lps_of_certified_units():
    from src.stability.witnesses import data_points_for_box

    lps = {"full": 0, "data": 0}
    skipped = 0
    for seed in range(4):
        net = random_net([3, 8, 8, 8, 1], seed)
        box = Box.uniform(3)
        full = analyse_stability(net, box, tol=TOL)
        lean = analyse_stability(net, box, tol=TOL, data=data_points_for_box(box, n_samples=20_000))
        assert np.array_equal(full.fixed_bits(), lean.fixed_bits())
        lps["full"] += full.tiers[1]["lps"]
        lps["data"] += lean.tiers[1]["lps"]
        skipped += lean.tiers[1]["skipped_certified"]
        assert lean.tiers[0]["certified_unstable"] >= full.tiers[0]["certified_unstable"]
    assert skipped > 0 and lps["data"] < lps["full"], (lps, skipped)


@pytest.mark.slow
def test_data_points_for_box_and_seeded_samples():
    from src.stability.witnesses import SeededSamples, data_points_for_box, iter_chunks, mnist_points_in_box

    box = Box.uniform(3, -1.0, 2.0)
    d = data_points_for_box(box, n_samples=1000, seed=3)
    assert list(d) == ["samples"] and len(d["samples"]) == 1000
    chunks = list(iter_chunks(d["samples"], 300))
    assert [len(c) for c in chunks] == [300, 300, 300, 100]
    assert np.array_equal(np.vstack(chunks), box.sample(1000, np.random.default_rng(3)))
    assert np.all(box.contains(np.vstack(chunks)))
    assert isinstance(d["samples"], SeededSamples)
    with pytest.raises(ValueError):
        mnist_points_in_box(box)
    # MNIST (offline): the whole input box holds every image; a small local box its center image
    from src.io.domains import test_image

    full = mnist_points_in_box(Box.uniform(784))
    assert len(full["train"]) == 60_000 and len(full["test"]) == 10_000
    local = data_points_for_box(Box.around(test_image(7), 0.01, "test7"), n_samples=10)
    assert list(local) == ["train", "test", "samples"]
    assert any(np.array_equal(x, full["test"][7]) for x in local["test"]) and len(local["test"]) <= 10


def test_record_points_drops_points_outside_the_box():
    from src.stability.witnesses import record_points

    net = random_net([2, 3, 3, 1], 0)
    box = Box.uniform(2)
    st = interval_bounds(net, box)
    outside = np.array([[5.0, 5.0], [-3.0, 0.5]])
    assert record_points(st, net, box, outside) == 0 and st.witness_min is None
    assert record_points(st, net, box, {"a": np.array([[0.2, 0.3]]), "b": outside}) == 1
    g = net.preactivations(np.array([0.2, 0.3]))
    assert all(np.array_equal(st.witness_min[l], g[l][0]) for l in range(2))


def test_tiers_never_loosen_their_input_bounds():
    """A witness evaluated with another summation order may sit a rounding step beyond an interval
    bound; the tiers intersect with their input (seen under OPENBLAS_CORETYPE=Prescott)."""
    net = random_net([3, 5, 5, 1], 3, shift=1.0)
    box = Box.uniform(3)
    iv = interval_bounds(net, box)
    # make every first-layer bound sit exactly at the corner value plus one rounding step, the way
    # another BLAS kernel may round; the corner witnesses then lie beyond them
    g_lo = net.preactivations(np.where(net.weights[0] > 0, box.lo, box.hi))[0].diagonal()
    g_hi = net.preactivations(np.where(net.weights[0] > 0, box.hi, box.lo))[0].diagonal()
    iv.lower[0] = np.nextafter(g_lo, np.inf)
    iv.upper[0] = np.nextafter(g_hi, -np.inf)
    lp = lp_tighten(net, box, iv, tol=TOL)
    ms = milp_settle(net, box, lp, tol=TOL)
    for st, prior in ((lp, iv), (ms, lp)):
        for l in range(net.n_hidden_layers):
            assert np.all(st.lower[l] >= prior.lower[l]) and np.all(st.upper[l] <= prior.upper[l])


def test_deadline_in_the_past_stops_every_tier():
    import time

    net = random_net([3, 8, 8, 8, 1], 0)
    box = Box.uniform(3)
    iv = interval_bounds(net, box)
    st = analyse_stability(net, box, tol=TOL, exact=True, deadline=time.perf_counter() - 1.0)
    assert st.tiers[1]["lps"] == 0 and st.tiers[1]["stopped"] == "time limit"
    assert st.stopped_by_time_limit
    undecided = st.tiers[2]["undecided"]
    assert st.exact == (undecided == 0) and st.tiers[2]["solves"] == 0
    for l in range(net.n_hidden_layers):
        assert np.all(st.lower[l] >= iv.lower[l]) and np.all(st.upper[l] <= iv.upper[l])
    free = analyse_stability(net, box, tol=TOL, exact=True)
    assert not free.stopped_by_time_limit and free.exact


@pytest.mark.slow
def test_time_limit_holds_on_a_784_100x4_net():
    """--time-limit 5 on a fcnn4b-shaped random net ends within 30 s with sound bounds."""
    import time

    rng = np.random.default_rng(0)
    sizes = [784, 100, 100, 100, 100, 10]
    ws = [rng.normal(size=(o, i)) / np.sqrt(i) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [0.1 * rng.normal(size=o) for o in sizes[1:]]
    net = ReluNet(ws, bs)
    box = Box.uniform(784)
    t0 = time.perf_counter()
    st = analyse_stability(net, box, tol=TOL, exact=True, time_limit=5.0)
    secs = time.perf_counter() - t0
    assert secs < 30, secs
    assert st.stopped_by_time_limit and not st.exact
    x = box.sample(2000, np.random.default_rng(1))
    for l, g in enumerate(net.preactivations(x)):
        assert np.all(st.lower[l] <= g.min(0)) and np.all(g.max(0) <= st.upper[l])
        assert np.all(st.lower[l] <= st.witness_min[l]) and np.all(st.witness_max[l] <= st.upper[l])
    assert st.tiers[1]["tier"] == "lp" and st.tiers[1]["lps"] > 0
