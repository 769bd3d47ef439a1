"""The compiled engine (src/counting/tree_walk.py) beyond the brute-force suite of tests/test_lp_enum.py: its margin LP
against scipy's HiGHS on random LPs, the exact fallback, and identical pattern sets with the MILP backends on
MNIST nets trained here (784 inputs: the feature-space path)."""
import time

import numpy as np
import pytest
from conftest import brute_force_patterns, random_net
from scipy.optimize import linprog

from src.core.box import Box
from src.counting.problem import BACKENDS, EnumerationProblem, PatternSink, backend_class, get_backend
from src.core.network import ReluNet
from src.counting import tree_walk
from src.counting.tree_walk import STAT_NAMES, _margin_lp, _refutes, make_engine
from src.counting.walk_driver import run_search
from src.io.readers import load_net
from src.stability.analyse import analyse_stability
from src.stability.interval import interval_bounds

TOL = 1e-6


def _lp_case(rng, m, n0, d, use_z):
    W1 = rng.normal(size=(d, n0)) if use_z else np.eye(n0)
    R = rng.normal(size=(m, d if use_z else n0))
    X = R @ W1 if use_z else R
    nrm = np.linalg.norm(X, axis=1)
    R, X = R / nrm[:, None], X / nrm[:, None]
    RB = rng.normal(scale=0.5, size=m)
    return np.ascontiguousarray(W1), np.ascontiguousarray(R), np.ascontiguousarray(X), RB


def _scipy_margin(X, RB, lo, hi, cap):
    m, n0 = X.shape
    res = linprog(np.r_[np.zeros(n0), -1.0], A_ub=np.hstack([X, np.ones((m, 1))]), b_ub=RB,
                  bounds=[(a, b) for a, b in zip(lo, hi)] + [(None, cap)], method="highs")
    assert res.status == 0
    return -res.fun


@pytest.mark.parametrize("use_z", [True, False])
def test_margin_lp_matches_scipy_highs(use_z):
    rng = np.random.default_rng(7 if use_z else 8)
    for case in range(60):
        m, n0, d = int(rng.integers(1, 12)), int(rng.integers(2, 40)), int(rng.integers(1, 6))
        W1, R, X, RB = _lp_case(rng, m, n0, d, use_z)
        lo, hi = np.zeros(n0), np.ones(n0)
        cap = 10.0                      # large: the LP is solved to its optimum unless it reaches the cap
        ref = _scipy_margin(X, RB, lo, hi, cap)
        pool = (np.zeros((4, R.shape[1])), np.zeros((4, n0)), np.zeros(2, np.int64))
        x, y, st = np.zeros(n0), np.zeros(m), np.zeros(len(STAT_NAMES), np.int64)
        status, s = _margin_lp(R, RB, m, W1, use_z, lo, hi, cap, np.inf, 20 * m + 200, x, y, st, pool)
        assert status in (1, 2), case
        assert abs(s - ref) <= 1e-7 * (1 + abs(ref)), (case, s, ref)
        assert np.all((x >= lo) & (x <= hi))
        assert np.all(X @ x + s <= RB + 1e-9), case            # the returned point has margin s
        if status == 2 and s < -1e-6:                            # infeasible rows: the duals refute them
            assert _refutes(X, RB, m, y, lo, hi, np.maximum(abs(lo), abs(hi))), case


def test_refutation_needs_a_valid_certificate():
    """A certificate whose bound is not negative refutes nothing (here the rows are feasible)."""
    X = np.array([[1.0, 0.0], [-1.0, 0.0]])
    RB = np.array([0.6, -0.4])          # 0.4 <= x0 <= 0.6: feasible
    lo, hi = np.zeros(2), np.ones(2)
    for y in (np.array([0.5, 0.5]), np.array([1.0, 0.0]), np.array([0.0, 1.0]), np.zeros(2)):
        assert not _refutes(X, RB, 2, y, lo, hi, hi)
    RB = np.array([0.4, -0.6])          # x0 <= 0.4 and x0 >= 0.6: empty, refuted by y = (1/2, 1/2)
    assert _refutes(X, RB, 2, np.array([0.5, 0.5]), lo, hi, hi)


@pytest.mark.parametrize("W1,b1", [
    ([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]], [-1.0, 0.0, 0.0]),                 # three lines through one point
    ([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], [0.0, 0.0, -2.0]),                    # through the box's corners
    ([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [0.0, 0.0]], [-1.0, 0.0, 0.0, 5e-7]),  # + a unit stuck in the gap
])
def test_inconclusive_children_go_to_the_exact_lp(W1, b1):
    """Regions that only touch a hyperplane (a point, a corner) leave the margin LP inconclusive; the brute
    force's own LP decides them (definition_lps) and the set stays exact."""
    from src.core.network import ReluNet

    net = ReluNet([np.array(W1), np.ones((1, len(b1)))], [np.array(b1), np.zeros(1)])
    box = Box.uniform(2)
    found = []
    out = run_search(net, box, np.full(len(b1), -1, np.int8), TOL, lambda b: found.append(tuple(int(v) for v in b)))
    assert out.complete and out.stats["definition_lps"] >= 1
    assert set(found) == brute_force_patterns(net, box, TOL) and found == sorted(found)


def _trained(tmp_path_factory, arch, l1):
    from src.training.train import TrainConfig, train_run

    d = tmp_path_factory.mktemp(arch.replace(":", "_"))
    train_run(TrainConfig(run_id=0, arch=arch, l1=l1, epochs=1, train_subset=3000, seed=1, threads=1), d,
              quiet=True, bars=False)
    return load_net(d / "weights.dat")


@pytest.fixture(scope="module")
def mnist_nets(tmp_path_factory):
    return [_trained(tmp_path_factory, "mlp:5-5", 0.0), _trained(tmp_path_factory, "mlp:4-3-3", 1e-3)]


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in BACKENDS if backend_class(n).uses_milp])
def test_trained_mnist_nets_match_the_milp_backends(mnist_nets, name):
    try:
        milp_backend = get_backend(name)
    except Exception as e:              # not importable / no licence here
        pytest.skip(f"backend {name} unavailable: {e}")
    for net in mnist_nets:
        box = Box.uniform(784)
        problem = EnumerationProblem(net, box, analyse_stability(net, box, tol=TOL, progress=False), TOL)
        lp, milp = PatternSink(), PatternSink()
        assert get_backend("lp").enumerate(problem, lp).complete
        assert milp_backend.enumerate(problem, milp, threads=1).complete
        assert len(lp) > 20
        assert {p.tobytes() for p in lp.patterns()} == {p.tobytes() for p in milp.patterns()}


@pytest.mark.slow
def test_local_box_of_a_trained_net_matches_the_brute_force_count(mnist_nets):
    """A small box around a point: few units unstable, every candidate pattern checked by one LP."""
    import itertools

    from src.counting.feasibility_lp import is_feasible_pattern

    net = mnist_nets[0]
    box = Box.around(np.full(784, 0.5), 0.02, "c")
    st = interval_bounds(net, box)
    fixed = st.fixed_bits()
    free = np.flatnonzero(fixed < 0)
    assert 0 < free.size <= 10
    found = []
    assert run_search(net, box, fixed, TOL, lambda b: found.append(tuple(int(v) for v in b))).complete
    brute = set()
    for bits in itertools.product((0, 1), repeat=free.size):
        p = fixed.astype(int).copy()
        p[free] = bits
        if is_feasible_pattern(net, box, p, TOL):
            brute.add(tuple(int(v) for v in p))
    assert set(found) == brute


# ---- the file driver's sink for ordered backends ------------------------------------------------------------
def test_ordered_sink_keeps_no_set_and_checks_the_order():
    rows = [np.array(p, np.uint8) for p in ([0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0])]
    written = []

    class W:
        def write(self, p):
            written.append(tuple(p))

    sink = PatternSink(W(), known=np.array([rows[0]]), flat_memory=True, watch=[rows[2], [1, 1, 1]])
    sink.start_backend(True)
    assert sink.add(rows[1]) and not sink.add(rows[1])          # a repeat of the last one is dropped
    assert sink.add(rows[2]) and len(sink) == 3 and sink._seen == set()
    assert rows[2] in sink and [1, 1, 1] not in sink             # watched patterns only
    with pytest.raises(ValueError):
        rows[3] in sink
    with pytest.raises(RuntimeError, match="out of lexicographic order"):
        sink.add(rows[0])
    with pytest.raises(RuntimeError):
        sink.patterns()
    assert written == [(0, 0, 1), (0, 1, 0), (0, 1, 1)]


def test_unordered_backends_and_in_memory_sinks_keep_the_set():
    sink = PatternSink(flat_memory=True)
    sink.start_backend(False)                                   # a MILP backend: any order, set kept
    for p in ([1, 0], [0, 1], [1, 0]):
        sink.add(p)
    assert len(sink) == 2 and sink.patterns().tolist() == [[0, 1], [1, 0]]
    mem = PatternSink()
    mem.start_backend(True)                                     # in memory (the API): patterns stay available
    mem.add([0, 1])
    assert mem.patterns().tolist() == [[0, 1]]


@pytest.mark.parametrize("shape", [[3, 2, 4, 3, 1], [2, 4, 3, 1]])      # features z = W_1 x, and x itself
def test_compiled_layer_maps_equal_src_geometry(shape):
    """_build_layer is the compiled copy of geometry.advance and geometry.box_bounds: same maps, same bounds."""
    from src.core.affine import box_bounds, pattern_affine_maps
    from src.counting.tree_walk import CompiledSearch, _build_layer

    net = random_net(shape, seed=4, bias_scale=0.7)
    box = Box.uniform(shape[0], -1.0, 2.0)
    eng = CompiledSearch(net, box, np.full(net.n_hidden_units, -1, np.int8))
    rng = np.random.default_rng(0)
    for _ in range(5):
        bits = rng.integers(0, 2, net.n_hidden_units).astype(np.int8)
        maps, _ = pattern_affine_maps(net, bits)
        for l, (A, c) in enumerate(maps):
            _build_layer(eng._net, eng._lay, bits, l, eng.use_z)
            n = A.shape[0]
            AX, CC, LOB, HIB = eng._lay[1][l, :n], eng._lay[2][l, :n], eng._lay[4][l, :n], eng._lay[5][l, :n]
            np.testing.assert_allclose(AX, A, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(CC, c, rtol=1e-12, atol=1e-12)
            lo, hi = box_bounds(A, c, box.lo, box.hi)
            np.testing.assert_allclose(LOB, lo, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(HIB, hi, rtol=1e-12, atol=1e-12)


def test_call_budgets_follow_the_time_a_call_takes():
    """A call into the compiled walk lasts about CALL_SECONDS: budgets halve after a slow call, grow after fast ones,
    and the LP-iteration budget follows the measured rate."""
    net = random_net([3, 4, 3, 1], seed=1)
    eng = make_engine(net, Box.uniform(3), np.full(net.n_hidden_units, -1, np.int8), 1e-6)
    T = tree_walk.CALL_SECONDS
    assert eng._next_budgets(64, 10_000, 10 * T, 5_000_000) == (32, 5_000_000 // 10)
    assert eng._next_budgets(1, 10_000, 10 * T, 0) == (1, 10_000)                       # never below one node
    assert eng._next_budgets(64, 10_000, T / 10, 1000)[0] == 128
    assert eng._next_budgets(eng.budget, 10_000, T / 10, 0)[0] == eng.budget           # capped
    assert eng._next_budgets(64, 10_000, T, 10)[1] == 1000                             # at least 1000 iterations


@pytest.mark.slow
def test_a_deadline_holds_on_wide_layers():
    """On a 784-input net with wide layers (thousands of LP iterations per node) the walk stops within a second of
    its deadline with a resumable frontier (it used to run a 2000-node call to its end first)."""
    rng = np.random.default_rng(0)
    w = 200                                   # a 784-200-200-10 net: the old walk overran a 2 s deadline by 6 s
    net = ReluNet([rng.normal(size=(w, 784)) / 28, rng.normal(size=(w, w)) / np.sqrt(w), rng.normal(size=(10, w))],
                  [rng.normal(size=w) * 0.3, rng.normal(size=w) * 0.3, np.zeros(10)])
    box = Box.uniform(784)
    eng = make_engine(net, box, np.full(net.n_hidden_units, -1, np.int8), 1e-6)
    found = []
    t0 = time.monotonic()
    complete, frontier = eng.run(lambda b: found.append(b.copy()), deadline=t0 + 2.0)
    took = time.monotonic() - t0
    assert not complete and frontier and took < 2.0 + 1.5, took
    assert all(set(p) <= {"0", "1"} for p in frontier)
