"""The region-tree engine (src/counting/tree_walk.py driven by src/counting/walk_driver.py, backend 'lp'): exactness against the brute force (one LP
per candidate pattern) on many tiny random and degenerate nets, resume from the frontier after an
interruption (stop after k patterns, time limit, Ctrl-C), workers=2 (on Ray) versus 1, and agreement with the
MILP backends."""
import itertools
import os
import signal

import numpy as np
import pytest
from bruteforce import brute_force_patterns, sampled_patterns
from conftest import random_net

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.problem import BACKENDS, EnumerationProblem, PatternSink, backend_class, get_backend
from src.counting.tree_walk import CompiledSearch, EngineOptions
from src.counting.walk_driver import check_frontier, run_search
from src.stability.interval import interval_bounds

TOL = 1e-6


def lp_patterns(net, box, fixed=None, tol=TOL, **kw):
    """The engine's pattern list (in emission order) and its outcome."""
    if fixed is None:
        fixed = interval_bounds(net, box).fixed_bits()
    found = []
    out = run_search(net, box, fixed, tol, lambda b: found.append(tuple(int(v) for v in b)), **kw)
    return found, out


def as_set(found):
    assert len(found) == len(set(found)), "a pattern was emitted twice"
    return set(found)


# ---- exactness on random nets ------------------------------------------------------------------
SHAPES = [[2, 3, 3, 1], [3, 4, 3, 1], [2, 4, 4, 1], [3, 3, 2, 2, 1], [2, 8, 1], [3, 2, 2, 2, 2, 1]]
RANDOM_CASES = [(shape, seed, scale) for seed in range(3) for shape in SHAPES for scale in (0.1, 0.6, 2.0)]


@pytest.mark.parametrize("shape,seed,scale", RANDOM_CASES)
def test_random_nets_match_brute_force(shape, seed, scale):
    net = random_net(shape, seed=100 * seed + len(shape), bias_scale=scale)
    box = Box.uniform(shape[0])
    found, out = lp_patterns(net, box)
    assert out.complete and not out.interrupted and out.frontier == []
    assert as_set(found) == brute_force_patterns(net, box, TOL)
    assert found == sorted(found), "patterns must come in lexicographic order"


@pytest.mark.parametrize("seed", range(4))
def test_other_boxes_and_sampled_points(seed):
    net = random_net([3, 4, 4, 1], seed=seed, bias_scale=0.8)
    for box in (Box.uniform(3, -1.0, 1.0), Box.around([0.3, 0.6, 0.5], 0.2, "c")):
        found = as_set(lp_patterns(net, box)[0])
        assert found == brute_force_patterns(net, box, TOL)
        assert sampled_patterns(net, box, 20_000, seed) <= found


def test_larger_tol_matches_brute_force():
    net = random_net([2, 4, 4, 1], seed=7, bias_scale=0.3)
    box = Box.uniform(2)
    for tol in (1e-3, 0.05):
        assert as_set(lp_patterns(net, box, tol=tol)[0]) == brute_force_patterns(net, box, tol)


# ---- degenerate nets ------------------------------------------------------------------------------
def _net(ws, bs):
    return ReluNet([np.asarray(w, float) for w in ws], [np.asarray(b, float) for b in bs])


def _through_points(ws, rng, lo=0.0, hi=1.0, keep=()):
    """Biases that make every unit's hyperplane pass through a random point of the box (so it cuts it);
    units listed in `keep` ((layer, unit, bias)) get the given bias instead."""
    bs, prev = [], None
    for l, w in enumerate(ws):
        w = np.asarray(w, float)
        pts = lo + (hi - lo) * rng.random((w.shape[0], ws[0].shape[1]))
        h = pts
        for wp, bp in zip(ws[:l], bs):
            h = np.maximum(h @ np.asarray(wp, float).T + bp, 0.0)
        b = -np.einsum("ij,ij->i", w, h) if l < len(ws) - 1 else np.zeros(w.shape[0])
        for (kl, ku, kb) in keep:
            if kl == l:
                b[ku] = kb
        bs.append(b)
    return bs


def degenerate_nets():
    rng = np.random.default_rng(3)
    out = {}
    # duplicate units: identical and positively scaled copies, in both layers
    W1 = rng.normal(size=(3, 2))
    W1 = np.vstack([W1, W1[0], 2.0 * W1[1]])
    W2 = rng.normal(size=(3, 5))
    W2 = np.vstack([W2, W2[2]])
    bs = _through_points([W1, W2, np.ones((1, 4))], rng)
    bs[0][3], bs[0][4] = bs[0][0], 2.0 * bs[0][1]
    bs[1][3] = bs[1][2]
    out["duplicates"] = _net([W1, W2, np.ones((1, 4))], bs)
    # zero rows: a dead unit (g = 0 <= 0), a constant active unit, zero columns and a zero row in layer 2
    W1 = np.vstack([rng.normal(size=(3, 2)), np.zeros((2, 2))])
    W2 = np.vstack([np.c_[rng.normal(size=(2, 3)), np.zeros((2, 2))], np.zeros((1, 5))])
    bs = _through_points([W1, W2, np.ones((1, 3))], rng, keep=((0, 3, 0.0), (0, 4, 0.7), (1, 2, -0.3)))
    out["zero_rows"] = _net([W1, W2, np.ones((1, 3))], bs)
    # zero bias through the box corner x = 0 (weights >= 0), and a unit through the corner x = 1
    pos = np.abs(rng.normal(size=(3, 2)))
    W1 = np.vstack([pos, [[1.0, 1.0]]])
    W2 = rng.normal(size=(3, 4))
    bs = _through_points([W1, W2, np.ones((1, 3))], rng, keep=((0, 0, 0.0), (0, 1, 0.0), (0, 2, 0.0), (0, 3, -2.0),
                                                              (1, 0, 0.0)))
    out["corner"] = _net([W1, W2, np.ones((1, 3))], bs)
    # layer-2 units whose inputs are all dead on part of the box: constant rows after a 0-pattern
    out["dead_then_const"] = _net([[[1.0, -1.0], [-1.0, 1.0]], [[1.0, 1.0], [2.0, -1.0], [0.0, 0.0], [1.0, -2.0]],
                                   np.ones((1, 4))], [[0.0, 0.0], [0.0, 0.5, -0.1, 0.0], [0.0]])
    # strongly positive / negative biases: stable units mixed with unstable ones
    W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(4, 5))
    bs = _through_points([W1, W2, np.ones((1, 4))], rng, keep=((0, 0, 5.0), (0, 1, -5.0), (1, 0, -9.0), (1, 1, 9.0)))
    out["stable_mix"] = _net([W1, W2, np.ones((1, 4))], bs)
    # hyperplanes through one common point (0.5, 0.5) of the box, then a layer through one common point too
    ang = np.array([0.0, 0.7, 1.9, 2.6])
    Wc = np.c_[np.cos(ang), np.sin(ang)]
    out["concurrent"] = _net([Wc, rng.normal(size=(3, 4)), np.ones((1, 3))], [-Wc @ [0.5, 0.5], np.zeros(3), [0.0]])
    return out


@pytest.mark.parametrize("name", sorted(degenerate_nets()))
def test_degenerate_nets_match_brute_force(name):
    net = degenerate_nets()[name]
    box = Box.uniform(net.n_inputs)
    for fixed in (interval_bounds(net, box).fixed_bits(), np.full(net.n_hidden_units, -1, np.int8)):
        found, out = lp_patterns(net, box, fixed=fixed)
        assert out.complete
        ref = brute_force_patterns(net, box, TOL)
        # with every unit declared unstable the engine must still find exactly the feasible patterns
        assert as_set(found) == ref, name


def test_unit_in_the_gap_everywhere_gives_no_pattern():
    # g = tol/2 on the whole box: neither g > tol nor g <= 0 is possible, so no pattern is feasible
    net = _net([[[0.0, 0.0], [1.0, -1.0]], np.ones((1, 2))], [[TOL / 2, 0.0], [0.0]])
    box = Box.uniform(2)
    st = interval_bounds(net, box)
    found, out = lp_patterns(net, box, fixed=st.fixed_bits())
    assert out.complete and found == [] and brute_force_patterns(net, box, TOL) == set()


# ---- interruption and resume --------------------------------------------------------------------------
def _resume_until_done(net, box, fixed, first_found, frontier, **kw):
    found = list(first_found)
    rounds = 0
    while frontier:
        more, out = lp_patterns(net, box, fixed=fixed, roots=frontier, **kw)
        found += more
        frontier = out.frontier
        assert out.complete or frontier
        rounds += 1
        assert rounds < 100
    return found


@pytest.mark.parametrize("k", [1, 2, 5, 13])
def test_stop_after_k_patterns_then_resume(k):
    net = random_net([3, 4, 3, 1], seed=11, bias_scale=0.4)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    full = lp_patterns(net, box, fixed=fixed)[0]
    assert len(full) > 13
    found = []

    def emit(b):
        found.append(tuple(int(v) for v in b))

    out = run_search(net, box, fixed, TOL, emit, stop_flag=lambda: len(found) >= k)
    assert not out.complete and not out.interrupted and len(found) == k
    check_frontier(out.frontier, net.n_hidden_units)
    # the frontier's subtrees are disjoint from what was found: resuming repeats nothing and loses nothing
    everything = _resume_until_done(net, box, fixed, found, out.frontier, stop_flag=None)
    assert len(everything) == len(set(everything))
    assert sorted(everything) == sorted(full)
    assert set(full) == brute_force_patterns(net, box, TOL)


def test_repeated_interruptions_lose_nothing():
    net = random_net([2, 4, 4, 1], seed=5, bias_scale=0.5)
    box = Box.uniform(2)
    fixed = interval_bounds(net, box).fixed_bits()
    full = lp_patterns(net, box, fixed=fixed)[0]
    found, frontier = [], None
    for _ in range(200):
        batch = []
        out = run_search(net, box, fixed, TOL, lambda b: batch.append(tuple(int(v) for v in b)), roots=frontier,
                         stop_flag=lambda: len(batch) >= 3)
        found += batch
        if out.complete:
            break
        frontier = out.frontier
    assert out.complete
    assert len(found) == len(set(found)) and set(found) == set(full)


def test_time_limit_zero_returns_the_whole_tree_as_frontier():
    net = random_net([2, 3, 3, 1], seed=2)
    box = Box.uniform(2)
    found, out = lp_patterns(net, box, time_limit=0.0)
    assert not out.complete and found == [] and out.frontier == [""]
    more, out2 = lp_patterns(net, box, roots=out.frontier)
    assert out2.complete and set(more) == brute_force_patterns(net, box, TOL)


def test_ctrl_c_stops_with_frontier_and_resume_completes():
    net = random_net([3, 4, 3, 1], seed=11, bias_scale=0.4)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    found = []

    def emit(b):
        found.append(tuple(int(v) for v in b))
        if len(found) == 4:
            os.kill(os.getpid(), signal.SIGINT)    # Ctrl-C in the middle of the walk

    out = run_search(net, box, fixed, TOL, emit)
    assert out.interrupted and not out.complete and out.frontier
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler   # handler restored
    everything = _resume_until_done(net, box, fixed, found, out.frontier)
    assert len(everything) == len(set(everything))
    assert set(everything) == brute_force_patterns(net, box, TOL)


def test_ctrl_c_with_two_workers(ray_session):
    net = random_net([3, 8, 8, 1], seed=9, bias_scale=0.4)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    full = lp_patterns(net, box, fixed=fixed)[0]
    found = []

    def emit(b):
        found.append(tuple(int(v) for v in b))
        if len(found) == 2:
            os.kill(os.getpid(), signal.SIGINT)

    out = run_search(net, box, fixed, TOL, emit, workers=2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if out.complete:                 # every subtree had finished before the workers saw the stop
        assert sorted(found) == sorted(full)
        return
    assert out.interrupted and out.frontier
    everything = _resume_until_done(net, box, fixed, found, out.frontier)
    assert len(everything) == len(set(everything)) and sorted(everything) == sorted(full)


def test_resume_from_mid_layer_prefixes():
    net = random_net([2, 3, 3, 2, 1], seed=4, bias_scale=0.5)
    box = Box.uniform(2)
    fixed = interval_bounds(net, box).fixed_bits()
    full = set(lp_patterns(net, box, fixed=fixed)[0])
    n = net.n_hidden_units
    for depth in (1, 2, 4, 5, n):
        roots = ["".join(p) for p in itertools.product("01", repeat=depth)]
        got = lp_patterns(net, box, fixed=fixed, roots=roots)[0]
        assert as_set(got) == full, depth


def test_bad_frontier_is_refused():
    with pytest.raises(ToolError, match="frontier item 1"):
        check_frontier(["01", "0x1"], 4)
    with pytest.raises(ToolError, match="length <= 4"):
        check_frontier(["01010"], 4)
    with pytest.raises(ToolError):
        check_frontier("0101", 4)


# ---- workers -------------------------------------------------------------------------------------------
def test_two_workers_give_the_same_sequence(ray_session, monkeypatch):
    import src.counting.walk_driver as lp_enum

    monkeypatch.setattr(lp_enum, "slice_seconds", lambda waiting, workers: 0.001)   # many slices: much reordering
    net = random_net([4, 8, 6, 1], seed=5, bias_scale=0.4)      # a few thousand nodes: many slices
    box = Box.uniform(4)
    fixed = interval_bounds(net, box).fixed_bits()
    one, out1 = lp_patterns(net, box, fixed=fixed)
    two, out2 = lp_patterns(net, box, fixed=fixed, workers=2)
    assert out1.complete and out2.complete and out2.tasks > 3 and len(one) > 50
    assert two == one            # same patterns, same (lexicographic) order
    assert sampled_patterns(net, box, 20_000, 0) <= set(one)


def test_two_workers_time_limit_then_resume(ray_session):
    net = random_net([3, 5, 4, 1], seed=9, bias_scale=0.4)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    full = lp_patterns(net, box, fixed=fixed)[0]
    found, out = lp_patterns(net, box, fixed=fixed, workers=2, time_limit=0.0)
    assert not out.complete and out.frontier
    everything = _resume_until_done(net, box, fixed, found, out.frontier, workers=2)
    assert sorted(everything) == sorted(full) and len(everything) == len(set(everything))


# ---- the backend and the MILP backends --------------------------------------------------------------------
def _problem(net, box, tol=TOL):
    return EnumerationProblem(net, box, interval_bounds(net, box), tol)


def test_backend_resume_state_roundtrip():
    net = random_net([3, 4, 3, 1], seed=21, bias_scale=0.4)
    box = Box.uniform(3)
    be = get_backend("lp")
    sink = PatternSink()
    res = be.enumerate(_problem(net, box), sink, time_limit=0.0)
    assert not res.complete and res.frontier == [""] and len(sink) == 0
    res2 = be.enumerate(_problem(net, box), sink, resume_state={"backend": "lp", "frontier": res.frontier})
    assert res2.complete and res2.frontier is None
    assert {tuple(p) for p in sink.patterns().tolist()} == brute_force_patterns(net, box, TOL)
    assert res2.stats["lps"] >= 1 and "iterations_per_lp" in res2.stats


def test_backend_workers_keyword(ray_session):
    net = random_net([3, 5, 4, 1], seed=9, bias_scale=0.4)
    box = Box.uniform(3)
    be = get_backend("lp")
    s1, s2 = PatternSink(), PatternSink()
    assert be.enumerate(_problem(net, box), s1).complete
    assert be.enumerate(_problem(net, box), s2, workers=2).complete
    assert np.array_equal(s1.patterns(), s2.patterns())
    with pytest.raises(ToolError, match="--workers"):
        be.enumerate(_problem(net, box), PatternSink(), workers=0)


def _milp_backend(name):
    try:
        return get_backend(name)
    except Exception as e:          # not importable / no licence here
        pytest.skip(f"backend {name} unavailable: {e}")


@pytest.mark.parametrize("name", [n for n in BACKENDS if backend_class(n).uses_milp])
def test_agrees_with_milp_backends(name):
    be = _milp_backend(name)
    for shape, seed in (([2, 4, 4, 1], 1), ([3, 4, 3, 2, 1], 2), ([3, 6, 1], 3)):
        net = random_net(shape, seed=seed, bias_scale=0.5)
        box = Box.uniform(shape[0])
        problem = _problem(net, box)
        milp, lp = PatternSink(), PatternSink()
        assert be.enumerate(problem, milp).complete
        assert get_backend("lp").enumerate(problem, lp).complete
        assert np.array_equal(milp.patterns(), lp.patterns()), (name, shape, seed)


def test_engine_options_do_not_change_the_result():
    net = random_net([3, 4, 4, 1], seed=13, bias_scale=0.5)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    ref = lp_patterns(net, box, fixed=fixed)[0]
    for opt in (EngineOptions(eager=False), EngineOptions(max_points=2, root_points=2),
                EngineOptions(max_points=1, root_samples=0), EngineOptions(cap=1.0), EngineOptions(seed=5)):
        assert lp_patterns(net, box, fixed=fixed, options=opt)[0] == ref


def test_engine_rejects_wrong_fixed_bits():
    net = random_net([2, 3, 1], seed=0)
    with pytest.raises(ValueError):
        CompiledSearch(net, Box.uniform(2), np.zeros(5, np.int8))
