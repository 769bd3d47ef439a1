"""One conformance suite over every registered enumeration backend (src/counting/problem.py BACKENDS).

A backend whose solver package is missing is skipped. Each must: equal the brute force on tiny
nets and degenerate nets, stop at a time limit and resume to the same set, answer an all-stable
net with its single pattern, and accept exactly the options it declares.
"""
import numpy as np
import pytest
from bruteforce import brute_force_patterns
from conftest import random_net
from test_lp_enum import degenerate_nets

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.problem import (BACKENDS, BackendUnavailable, EnumerationProblem, PatternSink, backend_class,
                                  get_backend)
from src.stability.analyse import analyse_stability
from src.stability.interval import interval_bounds

TOL = 1e-6
TINY = [([2, 3, 3, 1], 0, 0.5), ([3, 4, 3, 2, 1], 1, 0.5), ([2, 5, 5, 1], 5, 2.5)]


@pytest.fixture(params=sorted(BACKENDS))
def backend(request):
    try:
        get_backend(request.param)
    except BackendUnavailable as e:
        pytest.skip(f"{request.param}: {e}")
    return request.param


def patterns_of(name, net, box, stability=None, **kw):
    st = stability if stability is not None else analyse_stability(net, box, tol=TOL)
    sink = PatternSink()
    res = get_backend(name).enumerate(EnumerationProblem(net, box, st, TOL), sink, **kw)
    return {tuple(int(v) for v in p) for p in sink.patterns()}, res, sink


@pytest.mark.parametrize("sizes,seed,scale", TINY)
def test_equals_brute_force_on_tiny_nets(backend, sizes, seed, scale):
    net = random_net(sizes, seed, bias_scale=scale)
    box = Box.uniform(net.n_inputs)
    got, res, _ = patterns_of(backend, net, box)
    assert res.complete and got == brute_force_patterns(net, box, TOL)


@pytest.mark.parametrize("name", ["duplicates", "zero_rows", "corner", "concurrent"])
def test_equals_brute_force_on_degenerate_nets(backend, name):
    net = degenerate_nets()[name]
    box = Box.uniform(net.n_inputs)
    got, res, _ = patterns_of(backend, net, box, stability=interval_bounds(net, box))
    assert res.complete and got == brute_force_patterns(net, box, TOL)


def test_time_limit_then_resume_gives_the_same_set(backend):
    net = random_net([3, 5, 4, 1], 9, bias_scale=0.4)
    box = Box.uniform(3)
    ref = brute_force_patterns(net, box, TOL)
    st = analyse_stability(net, box, tol=TOL)
    first, res, sink = patterns_of(backend, net, box, stability=st, time_limit=0.0)
    assert not res.complete and first <= ref
    known = sink.patterns() if len(sink) else None
    state = None if res.frontier is None else {"backend": backend, "frontier": res.frontier}
    resumed = PatternSink(known=known)
    res2 = get_backend(backend).enumerate(EnumerationProblem(net, box, st, TOL), resumed, resume_state=state)
    assert res2.complete
    assert {tuple(int(v) for v in p) for p in resumed.patterns()} == ref


def test_all_stable_net_has_its_one_pattern(backend):
    W1 = np.array([[1.0, 1.0], [-1.0, -1.0], [2.0, 0.5]])
    net = ReluNet([W1, np.ones((1, 3))], [np.array([0.5, -0.1, 1.0]), np.zeros(1)])
    box = Box.uniform(2)
    got, res, _ = patterns_of(backend, net, box)
    assert res.complete and got == {(1, 0, 1)} == brute_force_patterns(net, box, TOL)


def test_declared_options_only(backend):
    klass = backend_class(backend)
    for key, opt in klass.options.items():
        assert getattr(get_backend(backend, **{key: opt.default}), key) == opt.default
    with pytest.raises(ToolError, match="no option 'colour'"):
        get_backend(backend, colour="red")


def test_only_milp_backends_build_the_milp(backend, monkeypatch):
    import src.counting.milp as milp

    calls = []
    real = milp.build_formulation
    monkeypatch.setattr(milp, "build_formulation", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = random_net([2, 3, 3, 1], 0)
    box = Box.uniform(2)
    st = interval_bounds(net, box)              # no LP tier: it builds layer formulations of its own
    patterns_of(backend, net, box, stability=st)
    assert bool(calls) == backend_class(backend).uses_milp
