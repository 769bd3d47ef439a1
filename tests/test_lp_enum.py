"""The region-tree engine (src/counting/tree_walk.py driven by src/counting/walk_driver.py, backend 'lp'): exactness against the brute force (one LP
per candidate pattern) on many tiny random and degenerate nets, resume from the frontier after an
interruption (stop after k patterns, time limit, Ctrl-C), workers=2 (on Ray) versus 1, and agreement with the
MILP backends."""
import itertools
import os
import signal

import numpy as np
import pytest
from conftest import (TOL, SaveRecorder, brute_force_patterns, net_of, nets, random_net, reference,
                      sampled_patterns)

from src.core.box import Box
from src.core.errors import ToolError
from src.core.patterns import check_prefixes
from src.counting.problem import BACKENDS, EnumerationProblem, PatternSink, backend_class, get_backend
from src.counting.tree_walk import CompiledSearch, EngineOptions
from src.counting.walk_driver import run_search
from src.stability.interval import interval_bounds


def lp_patterns(net, box, fixed=None, tol=TOL, **kw):
    """The engine's pattern list (in emission order) and its outcome."""
    if fixed is None:
        fixed = interval_bounds(net, box).fixed_bits()
    found = []
    out = run_search(net, box, fixed, tol, lambda b: found.append(tuple(int(v) for v in b)), **kw)
    return found, out


def as_unique_set(found):
    """The emitted patterns as a set; none may have been emitted twice."""
    assert len(found) == len(set(found)), "a pattern was emitted twice"
    return set(found)


# ---- exactness on random nets (the catalogue's "walk" family, tests/conftest.py) -------------------------
@pytest.mark.parametrize("net_spec", nets("walk"), ids=str)
def test_random_nets_match_brute_force(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    found, out = lp_patterns(net, box)
    assert out.complete and not out.interrupted and out.frontier == []
    assert as_unique_set(found) == reference(net_spec, box)
    assert found == sorted(found), "patterns must come in lexicographic order"


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_other_boxes_and_sampled_points(seed):
    net = random_net([3, 4, 4, 1], seed=seed, bias_scale=0.8)
    for box in (Box.uniform(3, -1.0, 1.0), Box.around([0.3, 0.6, 0.5], 0.2, "c")):
        found = as_unique_set(lp_patterns(net, box)[0])
        assert found == brute_force_patterns(net, box, TOL)
        assert sampled_patterns(net, box, 20_000, seed) <= found


@pytest.mark.slow
def test_larger_tol_matches_brute_force():
    net = random_net([2, 4, 4, 1], seed=7, bias_scale=0.3)
    box = Box.uniform(2)
    for tol in (1e-3, 0.05):
        assert as_unique_set(lp_patterns(net, box, tol=tol)[0]) == brute_force_patterns(net, box, tol)


# ---- degenerate nets (the catalogue's hand-built ones, tests/conftest.py) ------------------------------
@pytest.mark.parametrize("net_spec", nets("degenerate"), ids=str)
def test_degenerate_nets_match_brute_force(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    for fixed in (interval_bounds(net, box).fixed_bits(), np.full(net.n_hidden_units, -1, np.int8)):
        found, out = lp_patterns(net, box, fixed=fixed)
        assert out.complete
        ref = reference(net_spec, box)
        # with every unit declared unstable the engine must still find exactly the feasible patterns
        assert as_unique_set(found) == ref, str(net_spec)


def test_unit_in_the_gap_everywhere_gives_no_pattern():
    # g = tol/2 on the whole box: neither g > tol nor g <= 0 is possible, so no pattern is feasible
    net = net_of([[[0.0, 0.0], [1.0, -1.0]], np.ones((1, 2))], [[TOL / 2, 0.0], [0.0]])
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
    check_prefixes(out.frontier, net.n_hidden_units)
    # the frontier's subtrees are disjoint from what was found: resuming repeats nothing and loses nothing
    everything = _resume_until_done(net, box, fixed, found, out.frontier, stop_flag=None)
    assert len(everything) == len(set(everything))
    assert sorted(everything) == sorted(full)
    assert set(full) == brute_force_patterns(net, box, TOL)


def test_checkpoints_between_the_subtrees_of_a_frontier():
    """A resumed count walks its frontier, often many subtrees that take one call each: a checkpoint that is due
    is saved between them too (not only inside a subtree), and each save is consistent with what was emitted."""
    net = random_net([3, 8, 8, 1], 0)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    full = lp_patterns(net, box, fixed=fixed)[0]
    roots = ["".join(p) for p in itertools.product("01", repeat=6)]
    found = []
    always = SaveRecorder(found)
    out = run_search(net, box, fixed, TOL, lambda b: found.append(tuple(int(v) for v in b)), roots=roots,
                     checkpoint=always)
    saves = always.saves
    assert out.complete and found == full
    assert set(roots[1:]) <= {f[0] for _, f in saves if f}
    for n, frontier in saves:
        assert sorted(found[:n] + lp_patterns(net, box, fixed=fixed, roots=frontier)[0]) == sorted(full)


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


def test_ctrl_c_stops_with_frontier_and_resume_completes(default_sigint):
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
    assert signal.getsignal(signal.SIGINT) is default_sigint   # handler restored
    everything = _resume_until_done(net, box, fixed, found, out.frontier)
    assert len(everything) == len(set(everything))
    assert set(everything) == brute_force_patterns(net, box, TOL)


@pytest.mark.slow
def test_ctrl_c_with_two_workers(ray_session, default_sigint):
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
    assert signal.getsignal(signal.SIGINT) is default_sigint
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
        assert as_unique_set(got) == full, depth


def test_bad_frontier_is_refused():
    with pytest.raises(ToolError, match="frontier item 1"):
        check_prefixes(["01", "0x1"], 4)
    with pytest.raises(ToolError, match="length <= 4"):
        check_prefixes(["01010"], 4)
    with pytest.raises(ToolError):
        check_prefixes("0101", 4)


# ---- workers -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_give_the_same_sequence(ray_session, monkeypatch):
    import src.counting.walk_driver as lp_enum

    # Many slices whatever the machine's speed: the driver splits the tree into at least 24 waiting
    # subtrees and each slice takes one of them (a slice's length alone cannot promise that: a fast machine
    # walks this tree in a few 1 ms slices). Short slices still hand back frontiers where the machine is slow.
    split = lp_enum.OrderedWork.split
    monkeypatch.setattr(lp_enum.OrderedWork, "split",
                        lambda self, target, n_units, fixed=None: split(self, max(target, 24), n_units, fixed))
    monkeypatch.setattr(lp_enum, "group_size", lambda waiting, workers: 1)
    monkeypatch.setattr(lp_enum, "slice_seconds", lambda waiting, workers, elapsed=None: 0.001)
    net = random_net([4, 8, 6, 1], seed=5, bias_scale=0.4)
    box = Box.uniform(4)
    fixed = interval_bounds(net, box).fixed_bits()
    one, out1 = lp_patterns(net, box, fixed=fixed)
    two, out2 = lp_patterns(net, box, fixed=fixed, workers=2)
    assert out1.complete and out2.complete and out2.tasks >= 24 and len(one) > 50
    assert two == one            # same patterns, same (lexicographic) order
    assert sampled_patterns(net, box, 20_000, 0) <= set(one)
    assert out2.stats["ray_nodes"] == 1 and out2.stats["nodes"] >= len(one)    # nodes: of the tree, summed


@pytest.mark.slow
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


@pytest.mark.slow
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
                EngineOptions(max_points=1, root_samples=0), EngineOptions(cap=1.0), EngineOptions(seed=5),
                EngineOptions(pool=1), EngineOptions(pool=300)):
        assert lp_patterns(net, box, fixed=fixed, options=opt)[0] == ref


def test_eager_lps_stop_in_a_layer_where_they_do_not_refute():
    """The gate of the eager LPs (tree_walk._eager_lp_pays): always during a layer's first EAGER_TRIAL LPs,
    then while at least 1 in EAGER_RATE refutes, else one in EAGER_PROBE; counters per layer."""
    from src.counting.tree_walk import EAGER_PROBE, EAGER_RATE, EAGER_TRIAL, I_SIZE, _eager_lp_pays

    ist = np.zeros(I_SIZE + 6, np.int64)
    ist[I_SIZE + 3:I_SIZE + 5] = EAGER_TRIAL - 1, 0            # layer 1: still in its trial
    assert _eager_lp_pays(ist, 1)
    ist[I_SIZE:I_SIZE + 2] = 10 * EAGER_RATE, 10                # layer 0: refutes 1 in EAGER_RATE: keeps going
    assert all(_eager_lp_pays(ist, 0) for _ in range(50)) and ist[I_SIZE + 2] == 0
    ist[I_SIZE + 1] = 9                                          # below the rate: one in EAGER_PROBE
    said = [_eager_lp_pays(ist, 0) for _ in range(4 * EAGER_PROBE)]
    assert sum(said) == 4 and said[EAGER_PROBE - 1] and not any(said[:EAGER_PROBE - 1])
    assert ist[I_SIZE + 2] == 4 * EAGER_PROBE and _eager_lp_pays(ist, 1)


def test_engine_rejects_wrong_fixed_bits():
    net = random_net([2, 3, 1], seed=0)
    with pytest.raises(ValueError):
        CompiledSearch(net, Box.uniform(2), np.zeros(5, np.int8))
