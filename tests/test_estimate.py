"""`--estimate N`: Knuth's (stratified) estimate of the number of regions with a 95 % interval
(src/counting/knuth.py), against the brute force of the catalogue's nets."""
import json
import time

import numpy as np
import pytest
from conftest import as_set, catalogue_net, load_script, reference, run_cli

from src.analysis import Analysis
from src.core.box import Box
from src.counting.knuth import estimate_regions
from src.io.records import read_regions
from src.stability.analyse import analyse_stability
from src.stability.record import Stability
from src.io.weights_file import save_net

TOL = 1e-6
# catalogue nets whose region tree is not enumerated by the strata at 20 probes (7-9 unstable units)
COVERAGE_NETS = ["3-4-3-2-1_seed0", "3-4-3-2-1_seed2", "3-5-4-1_seed9_bias0.4", "2-5-5-1_seed2"]


def setup(name):
    s = catalogue_net(name)
    net = s.net()
    box = Box.uniform(net.n_inputs)
    return s, net, box, analyse_stability(net, box, tol=TOL)


def open_stability(net) -> Stability:
    """No unit proven stable: the tree branches on every hidden unit."""
    return Stability([np.full(n, -np.inf) for n in net.hidden_sizes], [np.full(n, np.inf) for n in net.hidden_sizes],
                     tol=TOL)


def test_path_is_exact():
    """Every unit of this net is stable, but none is declared so: the tree is a path of 6 forced units."""
    s = catalogue_net("3-3-3-1_seed6_bias4")
    net = s.net()
    assert len(reference(s)) == 1
    for probes, strata in ((1, None), (5, 1), (50, None)):
        e = estimate_regions(net, Box.uniform(3), open_stability(net), probes=probes, seed=3, strata=strata)
        assert e.unstable_units == 6
        assert e.value == 1.0 and e.ci95 == (1.0, 1.0) and e.exact
        assert as_set(e.patterns) == reference(s)


def test_plain_knuth_on_a_path_of_probes():
    """strata=1 on a net with branching: every probe is a root-to-leaf walk; the estimate and its certified
    patterns are consistent with the brute force."""
    s, net, box, st = setup("3-4-3-2-1_seed2")
    e = estimate_regions(net, box, st, probes=30, seed=1, strata=1)
    assert e.strata == 1 and e.probes == 30 and not e.exact
    assert as_set(e.patterns) <= reference(s)
    assert e.ci95[0] >= e.lower_bound


def test_small_tree_enumerated_exactly():
    s, net, box, st = setup("2-5-5-1_seed1")
    e = estimate_regions(net, box, st, probes=80, seed=0)
    assert e.exact and e.value == len(reference(s)) and e.ci95 == (e.value, e.value)
    assert as_set(e.patterns) == reference(s)


@pytest.mark.parametrize("name", ["3-4-3-2-1_seed2", "3-5-4-1_seed9_bias0.4"])
def test_within_factor_two(name):
    s, net, box, st = setup(name)
    truth = len(reference(s))
    e = estimate_regions(net, box, st, probes=120, seed=7, strata=4)
    assert not e.exact
    assert truth / 2 <= e.value <= 2 * truth
    assert as_set(e.patterns) <= reference(s)
    assert e.lower_bound <= e.ci95[0] <= truth <= e.ci95[1]  # seed 7 covers; coverage over seeds: below


def test_seeded_and_deterministic():
    _, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    a = estimate_regions(net, box, st, probes=20, seed=5)
    b = estimate_regions(net, box, st, probes=20, seed=5)
    assert (a.value, a.ci95) == (b.value, b.ci95)
    rec = a.to_json()
    assert {"method", "value", "ci95", "probes", "seconds"} <= set(rec) and len(rec["ci95"]) == 2
    json.dumps(rec, allow_nan=False)


@pytest.mark.slow
def test_interval_covers_the_truth_over_seeds():
    """Measured: 150/160 (94 %) at 20 probes; per net 38, 35, 39, 38 of 40. The floor: the intervals must be
    informative (median hi/lo below 3), so that trivially wide ones cannot pass."""
    hits = total = 0
    ratios = []
    for name in COVERAGE_NETS:
        s, net, box, st = setup(name)
        truth = len(reference(s))
        covered = 0
        for seed in range(40):
            e = estimate_regions(net, box, st, probes=20, seed=seed)
            lo, hi = e.ci95
            assert hi is not None and not e.exact
            covered += lo <= truth <= hi
            ratios.append(hi / max(lo, 1e-9))
        assert covered >= 32, (name, covered)          # >= 80 % on every net
        hits, total = hits + covered, total + 40
    assert hits >= 0.9 * total, (hits, total)
    assert np.median(ratios) < 3.0


def test_time_limit_stops_it():
    _, net, box, st = setup("3-4-3-2-1_seed2")
    e = estimate_regions(net, box, st, probes=10_000, seed=0, deadline=time.perf_counter() + 0.3, strata=2)
    assert e.stopped == "time limit" and e.probes < 10_000
    assert e.to_json()["stopped"] == "time limit"
    e = estimate_regions(net, box, st, probes=100, seed=0, deadline=time.perf_counter())
    assert e.stopped == "time limit" and e.probes == 0 and e.value is None
    t = time.perf_counter()
    r = Analysis(net, box).estimate_regions(probes=10_000, time_limit=0.05, seed=1)
    assert r.stopped == "time limit" and r.probes < 10_000 and time.perf_counter() - t < 5


def test_a_deadline_inside_a_probe_drops_that_probe():
    """The deadline is looked at inside a probe (a probe of a 400-unit net takes many LPs): a probe that meets
    it returns nothing and is not counted."""
    from src.counting.tree_walk import make_engine

    _, net, box, st = setup("3-4-3-2-1_seed2")
    eng = make_engine(net, box, st.fixed_bits(), 1e-6)
    rand = np.random.default_rng(0).random(net.n_hidden_units)
    assert eng.dive("", rand, deadline=time.monotonic() - 1) == (None, None)
    k, leaf = eng.dive("", rand)
    assert k >= 1 and leaf is not None and len(leaf) == net.n_hidden_units


@pytest.mark.parametrize("name", COVERAGE_NETS)
def test_the_dives_are_unbiased_exactly(name):
    """Knuth's identity on the walk's own tree: over every choice vector (a choice per unit, all equally
    likely) the mean of the dive's value (2^k at a leaf, 0 at a dead end) is the number of regions, the
    brute force's; and every leaf reached is a region."""
    import itertools

    from src.counting.tree_walk import make_engine

    s, net, box, st = setup(name)
    truth = reference(s)
    N = net.n_hidden_units
    eng = make_engine(net, box, st.fixed_bits(), 1e-6)
    total, reached = 0, set()
    for choice in itertools.product((0.25, 0.75), repeat=N):
        k, leaf = eng.dive("", np.array(choice))
        if leaf is not None:
            total += 2 ** k
            reached.add(tuple(int(b) for b in leaf))
    assert total == len(truth) * 2 ** N, (name, total / 2 ** N, len(truth))
    assert reached <= set(truth) and len(reached) >= 1

def test_bad_probes():
    _, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    for bad in (0, -3, 1.5, True):
        with pytest.raises(Exception, match="probes"):
            estimate_regions(net, box, st, probes=bad)


def _weights(tmp_path, name="3-5-4-1_seed9_bias0.4"):
    path = tmp_path / "weights.dat"
    save_net(catalogue_net(name).net(), path)
    return path


def test_cli_writes_the_record_and_no_pattern_file(tmp_path):
    main = load_script("count_linear_regions.py").main
    w = _weights(tmp_path)
    r = run_cli(main, "-w", w, "--estimate", "40", "--seed", "2", "-q", "--data-samples", "500")
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]
    assert last.startswith("ESTIMATE ~") and "95% CI" in last and "regions_input_0_1.json" in last
    assert not list(tmp_path.glob("activation_pattern_*"))
    summ = read_regions(tmp_path / "regions_input_0_1.json")
    est = summ["estimate"]
    assert {"method", "value", "ci95", "probes", "seconds"} <= set(est) and est["probes"] == 40
    assert summ["complete"] is False and summ["count"] == est["certified_patterns"] <= summ["lower_bound"]
    truth = len(reference(catalogue_net("3-5-4-1_seed9_bias0.4")))
    assert summ["count"] <= truth
    # a count of the same weights/tol/domain: the estimate is merged into its summary
    r = run_cli(main, "-w", w, "-q", "--data-samples", "500")
    assert r.returncode == 0, r.stderr
    r = run_cli(main, "-w", w, "--estimate", "20", "-q", "--data-samples", "500")
    assert r.returncode == 0, r.stderr
    summ = read_regions(tmp_path / "regions_input_0_1.json")
    assert summ["complete"] is True and summ["count"] == truth and summ["estimate"]["probes"] == 20


def test_cli_refuses_bad_values(tmp_path):
    main = load_script("count_linear_regions.py").main
    w = _weights(tmp_path)
    for args in (["--estimate", "0"], ["--estimate", "-2"], ["--estimate", "5", "--time-limit", "0"],
                 ["--estimate", "5", "--resume"]):
        r = run_cli(main, "-w", w, "-q", *args)
        lines = [x for x in r.stderr.strip().splitlines() if x]
        assert r.returncode == 2 and lines[-1].startswith("error:"), (args, r.stderr)
        assert ("--estimate" in lines[-1]) or ("--time-limit" in lines[-1])
    assert not (tmp_path / "regions_input_0_1.json").exists()


def test_the_regions_reader_checks_the_estimate_record(tmp_path):
    from src.core.errors import ToolError
    from src.io.records import write_regions

    rec = {"layer_sizes": [2, 3, 1], "domain": {"name": "input_0_1"}, "count": 3, "complete": False, "tol": 1e-6,
           "estimate": {"method": "knuth-stratified", "value": 5.0, "ci95": [3.0, 8.0], "probes": 20}}
    write_regions(tmp_path / "r.json", rec)
    assert read_regions(tmp_path / "r.json")["estimate"]["ci95"] == [3.0, 8.0]
    for bad in ({"ci95": [8.0, 3.0]}, {"probes": -1}, {"value": -2.0}, {"method": 7}):
        with pytest.raises(ToolError, match="estimate"):
            write_regions(tmp_path / "bad.json", {**rec, "estimate": {**rec["estimate"], **bad}})
    assert not (tmp_path / "bad.json").exists()
