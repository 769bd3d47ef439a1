"""One conformance suite over every registered enumeration backend (src/counting/problem.py BACKENDS).

A backend whose solver package is missing is skipped. Each runs through both drivers, the file driver
(src.counting.driver.count_run: the pattern file it writes is read back) and the in-memory one
(src.analysis.Analysis.count_regions), on the shared catalogue of tiny and degenerate nets
(tests/conftest.py), against the brute force. Each must also: equal the brute force on degenerate nets
with only interval bounds (more units open), stop at a time limit and resume to the same set, answer an
all-stable net with its single pattern, and accept exactly the options it declares.
"""
import numpy as np
import pytest
from conftest import TOL, as_set, brute_force_patterns, catalogue_net, nets, random_net, reference, sampled_reference

from src.analysis import Analysis
from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.driver import count_run
from src.counting.problem import (BACKENDS, BackendUnavailable, EnumerationProblem, PatternSink, backend_class,
                                  get_backend)
from src.io.pattern_file import read_patterns
from src.io.weights_file import save_net
from src.stability.analyse import analyse_stability
from src.stability.interval import interval_bounds


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
    return as_set(sink.patterns()), res, sink


def count_file(tmp_path, net, box, backend):
    """The file driver: the patterns of the pattern file count_run writes, and its summary."""
    save_net(net, tmp_path / "weights.dat")
    summary = count_run(tmp_path / "weights.dat", box, backend=backend, progress=False)
    pats = read_patterns(tmp_path / summary["pattern_file"], net.layer_sizes, allow_empty=True)
    got = as_set(pats)
    assert len(got) == len(pats)                     # no duplicates in the file
    assert summary["complete"] is True and summary["count"] == len(pats) and summary["backend"] == backend
    return got


def count_memory(net, box, backend):
    """The in-memory driver: Analysis(net, box).count_regions."""
    res = Analysis(net, box).count_regions(backend=backend)
    got = as_set(res.patterns)
    assert len(got) == len(res.patterns) == res.count
    assert res.complete is True and res.backend == backend
    return got


@pytest.mark.parametrize("driver", ["file", "memory"])
@pytest.mark.parametrize("net_spec", nets("tiny") + nets("degenerate"), ids=str)
def test_both_drivers_equal_brute_force(tmp_path, backend, driver, net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    got = count_file(tmp_path, net, box, backend) if driver == "file" else count_memory(net, box, backend)
    bf = reference(net_spec, box)
    assert got == bf, f"{net_spec}: {backend}/{driver} missed {len(bf - got)}, extra {len(got - bf)}"
    assert sampled_reference(net_spec) <= got


@pytest.mark.parametrize("net_spec", nets("degenerate"), ids=str)
def test_equals_brute_force_on_degenerate_nets_with_interval_bounds(backend, net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    got, res, _ = patterns_of(backend, net, box, stability=interval_bounds(net, box))
    assert res.complete and got == reference(net_spec, box)


def test_time_limit_then_resume_gives_the_same_set(backend):
    s = catalogue_net("3-5-4-1_seed9_bias0.4")
    net, box = s.net(), Box.uniform(3)
    ref = reference(s, box)
    st = analyse_stability(net, box, tol=TOL)
    first, res, sink = patterns_of(backend, net, box, stability=st, time_limit=0.0)
    assert not res.complete and first <= ref
    known = sink.patterns() if len(sink) else None
    state = None if res.frontier is None else {"backend": backend, "frontier": res.frontier}
    resumed = PatternSink(known=known)
    res2 = get_backend(backend).enumerate(EnumerationProblem(net, box, st, TOL), resumed, resume_state=state)
    assert res2.complete
    assert as_set(resumed.patterns()) == ref


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
    import src.stability.milp as milp

    calls = []
    real = milp.build_formulation
    monkeypatch.setattr(milp, "build_formulation", lambda *a, **k: calls.append(1) or real(*a, **k))
    net = random_net([2, 3, 3, 1], 0)
    box = Box.uniform(2)
    st = interval_bounds(net, box)              # no LP tier: it builds layer formulations of its own
    patterns_of(backend, net, box, stability=st)
    assert bool(calls) == backend_class(backend).uses_milp
