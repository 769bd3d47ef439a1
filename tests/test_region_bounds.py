"""Bounds on the number of linear regions (src/counting/count_bounds.py) against brute-force counts."""
import math

import numpy as np
import pytest
from conftest import CATALOGUE, brute_force_patterns, nets, reference

from src.core.box import Box
from src.core.network import ReluNet
from src.core.patterns import pattern_keys
from src.counting.count_bounds import (DataPatterns, bound_entry, data_patterns, lower_bound, theorem1_log10_float,
                                       theorem1_upper_bound, upper_bounds)
from src.stability.analyse import analyse_stability
from src.stability.witnesses import SeededSamples, data_points_for_box, witness_points

TOL = 1e-6


def test_theorem1_hand_cases():
    assert theorem1_upper_bound(2, [2]) == 4       # C(2,0) + C(2,1) + C(2,2)
    assert theorem1_upper_bound(1, [3]) == 4       # C(3,0) + C(3,1)
    assert theorem1_upper_bound(2, [3]) == 7       # C(3,0) + C(3,1) + C(3,2)
    # two layers, by hand: n0 = 1, widths 2, 2: j1 = 0 -> 1 * (1 + 2); j1 = 1 -> 2 * (1 + 2)
    assert theorem1_upper_bound(1, [2, 2]) == 9
    # n0 = 2, widths 2, 2: j1 = 0 (budget 2) -> 1 * 4; j1 = 1 (budget 1) -> 2 * 3; j1 = 2 (budget 0) -> 1 * 1
    assert theorem1_upper_bound(2, [2, 2]) == 11


@pytest.mark.parametrize("n0", [1, 2, 3, 5])
def test_theorem1_one_layer_and_one_input(n0):
    for n1 in range(0, 12):
        assert theorem1_upper_bound(n0, [n1]) == sum(math.comb(n1, j) for j in range(min(n0, n1) + 1))
    # one input, widths >= 2: the bound is prod (n_l + 1) (a width-1 layer can pass no dimension when off)
    rng = np.random.default_rng(n0)
    for _ in range(10):
        widths = rng.integers(2, 7, size=rng.integers(1, 5)).tolist()
        assert theorem1_upper_bound(1, widths) == math.prod(w + 1 for w in widths)


def brute_sum(n0, widths, act=None, ina=None):
    """The sum over J (or J') by enumerating every tuple (j_1..j_L), straight from the definition."""
    L = len(widths)
    act = act or [0] * L
    ina = ina or [0] * L
    u = [n - a - i for n, a, i in zip(widths, act, ina)]
    total = 0
    for js in np.ndindex(*[x + 1 for x in u]):
        budget, ok = n0, True
        for l, j in enumerate(js):
            if j > min(budget, u[l]):
                ok = False
                break
            budget = min(budget, act[l] + u[l] - j)
        if ok:
            total += math.prod(math.comb(u[l], j) for l, j in enumerate(js))
    return total


def test_theorem1_dp_equals_the_definition():
    rng = np.random.default_rng(7)
    for _ in range(60):
        L = int(rng.integers(1, 4))
        widths = rng.integers(1, 6, size=L).tolist()
        n0 = int(rng.integers(1, 5))
        assert theorem1_upper_bound(n0, widths) == brute_sum(n0, widths)
        act = [int(rng.integers(0, w + 1)) for w in widths]
        ina = [int(rng.integers(0, w - a + 1)) for w, a in zip(widths, act)]
        tight = theorem1_upper_bound(n0, widths, act, ina)
        assert tight == brute_sum(n0, widths, act, ina)
        assert tight <= theorem1_upper_bound(n0, widths)
        assert tight <= 2 ** sum(w - a - i for w, a, i in zip(widths, act, ina))


def test_theorem1_big_ints_for_fcnn_shapes():
    for n0, widths in ((784, [100] * 4), (784, [100] * 2), (784, [400] * 2), (10, [100] * 4), (50, [20] * 6)):
        v = theorem1_upper_bound(n0, widths)
        assert isinstance(v, int) and v >= 1
        lf = theorem1_log10_float(n0, widths)
        assert abs(math.log10(v) - lf) <= 1e-9 * abs(lf) + 1e-12
        e = bound_entry(v)
        assert e["value"] == str(v) and int(e["value"]) == v and e["log10"] == math.log10(v)
        assert v <= 2 ** sum(widths)
    # one layer at least as wide as the input space is split by every subset: 2^n1 exactly
    assert theorem1_upper_bound(784, [100]) == 2 ** 100
    assert theorem1_upper_bound(784, [100] * 4) < 2 ** 400


def test_theorem1_rejects_bad_arguments():
    with pytest.raises(ValueError):
        theorem1_upper_bound(2, [3], [2], [2])
    with pytest.raises(ValueError):
        theorem1_upper_bound(2, [3, 3], [0])


def test_bound_is_reached_by_lines_through_the_center():
    """2 inputs, 3 lines in general position crossing near the center of the box: 7 regions = bound."""
    ang = np.deg2rad([10.0, 70.0, 130.0])
    W = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    offs = np.array([0.01, -0.02, 0.015])
    net = ReluNet([W, np.ones((1, 3))], [-(W @ np.full(2, 0.5)) + offs, np.zeros(1)])
    box = Box.uniform(2)
    count = len(brute_force_patterns(net, box, TOL))
    assert count == 7 == theorem1_upper_bound(2, [3])


def test_stable_tightening_is_reached_and_below_theorem1():
    """1 input: a stably active unit passes the input dimension on, so the second layer still splits
    both regions of the unstable unit: 4 regions = the tightened bound < Theorem 1 (6)."""
    ws = [np.array([[1.0], [1.0]]), np.array([[-1.0, 3.0]]), np.ones((1, 1))]
    bs = [np.array([1.0, -0.5]), np.array([1.3]), np.zeros(1)]
    net = ReluNet(ws, bs)
    box = Box.uniform(1)
    st = analyse_stability(net, box, tol=TOL, exact=True)
    assert st.fixed_bits().tolist() == [1, -1, -1]
    count = len(brute_force_patterns(net, box, TOL))
    ub = upper_bounds(net, st)
    assert count == 4 == int(ub["theorem1_stable"]["value"]) == int(ub["upper_bound"]["value"])
    assert int(ub["theorem1"]["value"]) == 6 and int(ub["two_pow_unstable"]["value"]) == 4


NETS = nets("region_bounds")             # the catalogue's (tests/conftest.py): hidden biases shifted by 0, -0.6


def brute(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    return net, box, reference(net_spec, box)


@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_bounds_sandwich_the_brute_force_count(net_spec):
    """data_patterns <= lower_bound <= count <= upper bounds, with the data patterns certified."""
    net, box, truth = brute(net_spec)
    sizes = net.layer_sizes
    count = len(truth)
    pts = data_points_for_box(box, n_samples=20_000, seed=net_spec.seed)
    pts["witness_points"] = witness_points(box)
    dp = data_patterns(net, pts, TOL, box)
    data_set = {tuple(int(v) for v in p) for p in dp.patterns()}
    assert data_set <= truth, "a data pattern that is not feasible"
    assert dp.union == len(data_set) and all(s["distinct_patterns"] <= dp.union for s in dp.sources)
    assert [s["source"] for s in dp.sources] == ["samples", "witness_points"]
    assert dp.sources[0]["points"] == 20_000
    truth_arr = np.array(sorted(truth), np.uint8)
    assert lower_bound(dp) == dp.union <= lower_bound(dp, truth_arr) == count
    assert lower_bound(dp, pattern_keys(truth_arr[: count // 2])) <= count
    st = analyse_stability(net, box, tol=TOL, exact=True)
    ub = upper_bounds(net, st)
    vals = {k: int(v["value"]) for k, v in ub.items()}
    assert count <= vals["upper_bound"] == min(vals["theorem1"], vals["theorem1_stable"], vals["two_pow_unstable"])
    assert vals["theorem1_stable"] <= vals["theorem1"]
    assert vals["theorem1"] == theorem1_upper_bound(sizes[0], sizes[1:-1])
    # the plain bounds (no stability) hold as well
    plain = upper_bounds(net)
    assert count <= int(plain["upper_bound"]["value"]) and "theorem1_stable" not in plain


@pytest.mark.slow
def test_some_sandwich_nets_have_stable_units_and_data_reaches_the_count():
    """The nets above are not trivial: some have stable units, and sampling finds every region of some."""
    stable = reached = 0
    for net_spec in CATALOGUE["region_bounds"]:
        net, box, truth = brute(net_spec)
        st = analyse_stability(net, box, tol=TOL, exact=True)
        stable += st.n_stable() > 0
        dp = data_patterns(net, {"samples": SeededSamples(box, 20_000, net_spec.seed)}, TOL, box)
        reached += dp.union == len(truth)
    assert stable >= 5 and reached >= 5, (stable, reached)


def test_data_patterns_certify_only_points_outside_the_tol_band_and_inside_the_box():
    net = ReluNet([np.array([[1.0], [-1.0]]), np.ones((1, 2))], [np.array([-0.5, 0.25]), np.zeros(1)])
    box = Box.uniform(1)
    x = np.array([[0.1], [0.5], [0.5 + TOL / 2], [0.9], [0.25], [1.5], [-0.2]])
    dp = data_patterns(net, {"a": x[:3], "b": x[3:]}, TOL, box)
    # a: 0.1 -> (0, 1); 0.5 -> g1 = 0 -> (0, 0)... g2 = -0.25 <= 0 -> (0, 0); 0.5 + tol/2 in the band
    # b: 0.9 -> (1, 0); 0.25 -> g2 = 0 -> (0, 0); 1.5 and -0.2 lie outside the box
    assert dp.sources == [{"source": "a", "points": 3, "certified_points": 2, "distinct_patterns": 2},
                          {"source": "b", "points": 2, "certified_points": 2, "distinct_patterns": 2}]
    assert {tuple(p) for p in dp.patterns().tolist()} == {(0, 1), (0, 0), (1, 0)}
    assert dp.union == 3 and dp.n_points == 5
    assert dp.to_json() == {"sources": dp.sources, "union": 3}
    assert [list(w) for w in dp.witness_min] == [[-0.4, -0.65]] and [list(w) for w in dp.witness_max] == [[0.4, 0.15]]
    assert lower_bound(dp, np.array([[1, 1], [0, 1]], np.uint8)) == 4
    empty = DataPatterns([], set(), 2)
    assert empty.patterns().shape == (0, 2) and lower_bound(empty) == 0 and lower_bound(None) == 0


def test_pattern_keys_match_the_data_keys():
    rng = np.random.default_rng(0)
    P = rng.integers(0, 2, size=(50, 13)).astype(np.uint8)
    dp = DataPatterns([], pattern_keys(P), 13)
    assert np.array_equal(dp.patterns(), np.unique(P, axis=0))
    assert pattern_keys(np.zeros((0, 13), np.uint8)) == set()


def test_data_pass_stops_at_its_deadline_with_a_sound_subset():
    """A deadline that has passed stops the data pass between chunks (as `count_run` passes it, so that
    --time-limit holds for the data phase too): fewer points, patterns a subset, the flag set; none: all."""
    import time

    net_spec = CATALOGUE["region_bounds"][0]
    net, box, truth = brute(net_spec)
    pts = {"samples": SeededSamples(box, 20_000, net_spec.seed)}
    whole = data_patterns(net, pts, TOL, box, chunk=1000)
    cut = data_patterns(net, pts, TOL, box, chunk=1000, deadline=time.perf_counter() - 1.0)
    assert not whole.stopped_by_time_limit and whole.n_points == 20_000
    assert cut.stopped_by_time_limit and cut.n_points == 0 and cut.keys <= whole.keys
    assert {tuple(p) for p in whole.patterns().tolist()} <= set(truth)


def test_count_gives_the_data_pass_half_of_its_time_limit(tmp_path, monkeypatch):
    """Under --time-limit T the data pass stops at T/2 after the count started (DATA_SHARE), so the search always
    keeps half of T however slow the data are; the count still ends complete and exact."""
    import time

    import src.counting.driver as driver
    from src.io.weights_file import save_net

    net_spec = CATALOGUE["region_bounds"][0]
    net, box, truth = brute(net_spec)
    save_net(net, tmp_path / "weights.dat")
    seen = []
    real = driver.data_patterns

    def spy(*a, deadline=None, **kw):
        seen.append((deadline, time.perf_counter()))
        return real(*a, deadline=deadline, **kw)

    monkeypatch.setattr(driver, "data_patterns", spy)
    t_call = time.perf_counter()
    out = driver.count_run(tmp_path / "weights.dat", box=box, backend="lp", time_limit=40.0, progress=False)
    (deadline, t_seen), = seen
    assert t_call + 20.0 <= deadline <= t_seen + 20.0
    assert out["complete"] and out["count"] == len(truth)
    seen.clear()
    driver.count_run(tmp_path / "weights.dat", box=box, backend="lp", progress=False, out_dir=tmp_path / "b")
    assert seen[0][0] is None                                         # no limit, no deadline
