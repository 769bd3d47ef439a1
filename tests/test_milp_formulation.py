"""The lean MILP (src/stability/milp.py) against brute force on tiny nets, solved with scipy's HiGHS MILP."""
import itertools

import numpy as np
import pytest
from conftest import brute_force_patterns, nets, random_net, reference
from scipy.optimize import Bounds, LinearConstraint, milp

from src.core.box import Box
from src.core.network import ReluNet
from src.stability.analyse import analyse_stability
from src.stability.interval import interval_bounds
from src.stability.milp import build_formulation, expected_size

TOL = 1e-6
NETS = nets("milp")                      # the catalogue's (tests/conftest.py): hidden biases shifted by 0, +-1.5


def max_f(form, z_fixed=None, extra_rows=()):
    """max f over the formulation (optionally with z fixed to 0/1 values, and extra rows); -inf if infeasible."""
    lb, ub = form.lb.copy(), form.ub.copy()
    if z_fixed is not None:
        m = form.z_index >= 0
        lb[form.z_index[m]] = z_fixed[m]
        ub[form.z_index[m]] = z_fixed[m]
    cons = [LinearConstraint(form.A, form.row_lo, form.row_hi)]
    for idx, coef, rhs in extra_rows:
        row = np.zeros(form.n_vars)
        row[idx] = coef
        cons.append(LinearConstraint(row[None, :], -np.inf, rhs))
    r = milp(-form.objective, constraints=cons, bounds=Bounds(lb, ub), integrality=form.is_binary.astype(int))
    if r.status != 0:
        return -np.inf, None
    return -r.fun, r.x


def point_solution(form, net, x):
    """The variable vector that the exact forward pass at x induces (x, h = ReLU(g), hbar = ReLU(-g), z = [g > 0])."""
    v = np.zeros(form.n_vars)
    m = form.input_index >= 0
    v[form.input_index[m]] = x[m]
    g = np.concatenate([gl[0] for gl in net.preactivations(x)])
    for idx, val in ((form.h_index, np.maximum(g, 0)), (form.hbar_index, np.maximum(-g, 0)),
                     (form.z_index, (g > 0).astype(float))):
        k = idx >= 0
        v[idx[k]] = val[k]
    return v, g


@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_fixed_patterns_match_brute_force(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    st = analyse_stability(net, box, tol=TOL)
    form = build_formulation(net, box, st, tol=TOL)
    feasible = reference(net_spec, box)
    assert feasible, "every net has at least one feasible pattern"
    fb = form.fixed_bits
    for p in itertools.product((0, 1), repeat=net.n_hidden_units):
        p = np.array(p)
        if np.any((fb >= 0) & (fb != p)):
            assert tuple(p) not in feasible       # stable bits agree with every feasible pattern
            continue
        f, v = max_f(form, p.astype(float))
        assert (f > TOL) == (tuple(p) in feasible), (p, f)
        if f > TOL:
            assert np.array_equal(form.pattern_from_solution(v), p)


@pytest.mark.parametrize("net_spec", NETS[::2], ids=str)
def test_nogood_enumeration_finds_every_pattern(net_spec):
    """Maximise f, record the pattern, add its no-good cut, repeat until f <= tol: the brute-force set."""
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    form = build_formulation(net, box, analyse_stability(net, box, tol=TOL), tol=TOL)
    found, cuts = set(), []
    for _ in range(2 ** net.n_hidden_units + 1):
        f, v = max_f(form, extra_rows=cuts)
        if f <= TOL:
            break
        p = form.pattern_from_solution(v)
        assert tuple(int(b) for b in p) not in found
        found.add(tuple(int(b) for b in p))
        cuts.append(form.nogood_cut(p))
    assert found == reference(net_spec, box)


def test_nogood_cut_removes_exactly_one_assignment():
    net = random_net([3, 5, 5, 1], 3)
    box = Box.uniform(3)
    form = build_formulation(net, box, interval_bounds(net, box))
    unst = form.unstable_units
    assert unst.size >= 4
    rng = np.random.default_rng(0)
    p = np.where(form.fixed_bits >= 0, form.fixed_bits, rng.integers(0, 2, net.n_hidden_units)).astype(np.uint8)
    idx, coef, rhs = form.nogood_cut(p)
    assert np.array_equal(np.sort(idx), np.sort(form.binaries))
    for bits in itertools.product((0, 1), repeat=unst.size):
        q = p.copy()
        q[unst] = bits
        v = np.zeros(form.n_vars)
        v[form.z_index[unst]] = bits
        assert (coef @ v[idx] > rhs + 1e-9) == np.array_equal(q, p)


@pytest.mark.parametrize("net_spec", NETS[::3], ids=str)
def test_every_point_is_a_solution_and_preactivations_match(net_spec):
    """The forward pass at any x gives a feasible v; preactivation() evaluates to g; f = min g over z=1 works."""
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    st = analyse_stability(net, box, tol=TOL)
    form = build_formulation(net, box, st, tol=TOL)
    rng = np.random.default_rng(net_spec.seed)
    N = net.n_hidden_units
    flat = [(l, i) for l, n in enumerate(net.hidden_sizes) for i in range(n)]
    for x in box.sample(200, rng):
        v, g = point_solution(form, net, x)
        # the largest f the rows allow: g on bit-1 unstable units, M_i = rhs of the f-row on bit-0 ones
        unst = form.z_index >= 0
        M = form.row_hi[-int(unst.sum()):] if unst.any() else np.zeros(0)
        caps = np.where(g[unst] > 0, g[unst], M)
        v[form.f_index] = min(caps.min() if caps.size else np.inf, form.ub[form.f_index])
        assert v[form.f_index] > TOL or not (g[unst] > 0).any() or g[unst][g[unst] > 0].min() <= TOL
        Av = form.A @ v
        assert np.all(Av >= form.row_lo - 1e-9) and np.all(Av <= form.row_hi + 1e-9)
        assert np.all(v >= form.lb - 1e-9) and np.all(v <= form.ub + 1e-9)
        for k in range(N):
            idx, coef, const = form.preactivation(*flat[k])
            assert coef @ v[idx] + const == pytest.approx(g[k], abs=1e-9)
        off = 0
        for l, n in enumerate(net.hidden_sizes):
            G, c = form.layer_preactivations(l)
            assert np.allclose(G @ v + c, g[off:off + n], atol=1e-9)
            off += n
        assert np.array_equal(form.pattern_from_solution(v), net.patterns(x)[0])


@pytest.mark.parametrize("net_spec", NETS[::2], ids=str)
def test_sizes_match_formula(net_spec):
    net = net_spec.net()
    box = Box.uniform(net.n_inputs)
    st = analyse_stability(net, box, tol=TOL)
    form = build_formulation(net, box, st, tol=TOL)
    fb = st.fixed_bits()
    assert np.array_equal(form.fixed_bits, fb)
    n_act, n_unst = int((fb == 1).sum()), int((fb == -1).sum())
    want = {"variables": net.n_inputs + n_act + 3 * n_unst + 1, "constraints": n_act + 4 * n_unst, "binaries": n_unst}
    assert form.size() == want == expected_size(fb, net.n_inputs)
    assert form.is_binary.sum() == n_unst and np.all(form.is_binary[form.binaries])
    assert form.A.shape == (want["constraints"], want["variables"])
    # partial formulation of the first layer only: no f, no f-rows
    part = build_formulation(net, box, st, tol=TOL, upto_layer=1)
    fb1 = fb[: net.hidden_sizes[0]]
    a1, u1 = int((fb1 == 1).sum()), int((fb1 == -1).sum())
    assert part.size() == {"variables": net.n_inputs + a1 + 3 * u1, "constraints": a1 + 3 * u1, "binaries": u1}
    assert part.f_index == -1 and not part.objective.any()


def test_zero_inputs_are_dropped():
    rng = np.random.default_rng(7)
    ws = [rng.normal(size=(4, 4)), rng.normal(size=(3, 4)), rng.normal(size=(1, 3))]
    ws[0][:, [1, 3]] = 0.0
    net = ReluNet(ws, [0.3 * rng.normal(size=4), 0.3 * rng.normal(size=3), np.zeros(1)])
    box = Box.uniform(4)
    st = analyse_stability(net, box, tol=TOL)
    form = build_formulation(net, box, st, tol=TOL)
    assert np.array_equal(form.input_index >= 0, [True, False, True, False])
    assert form.size()["variables"] == expected_size(st.fixed_bits(), 2)["variables"]
    assert not any(n in form.names for n in ("x1", "x3"))
    found, cuts = set(), []
    while True:
        f, v = max_f(form, extra_rows=cuts)
        if f <= TOL:
            break
        p = form.pattern_from_solution(v)
        found.add(tuple(int(b) for b in p))
        cuts.append(form.nogood_cut(p))
    assert found == brute_force_patterns(net, box, TOL)


def test_inactive_columns_are_dropped_from_the_next_layer():
    net = random_net([2, 4, 3, 1], 0)
    net.biases[0][[0, 2]] = -50.0          # stably inactive
    box = Box.uniform(2)
    st = analyse_stability(net, box, tol=TOL)
    form = build_formulation(net, box, st, tol=TOL)
    assert st.inactive[0][[0, 2]].all()
    assert form.h_index[[0, 2]].tolist() == [-1, -1]
    for i in range(3):
        idx, _, _ = form.preactivation(1, i)
        assert set(idx.tolist()) <= set(form.h_index[[1, 3]].tolist())


def test_unit_with_tiny_positive_upper_bound_does_not_hide_patterns():
    """g0 = 1e-7 (x - 0.5) is unstable (0 < U <= tol), bit 1 never feasible; f must not be capped at U_0."""
    net = ReluNet([np.array([[1e-7], [-1.0]]), np.array([[1.0, 1.0]])], [np.array([-0.5e-7, 0.5]), np.zeros(1)])
    box = Box.uniform(1)
    st = analyse_stability(net, box, tol=TOL)
    assert st.fixed_bits().tolist() == [-1, -1]
    form = build_formulation(net, box, st, tol=TOL)
    found, cuts = set(), []
    while True:
        f, v = max_f(form, extra_rows=cuts)
        if f <= TOL:
            break
        p = form.pattern_from_solution(v)
        found.add(tuple(int(b) for b in p))
        cuts.append(form.nogood_cut(p))
    assert found == brute_force_patterns(net, box, TOL) == {(0, 0), (0, 1)}


def test_highs_loader_matches_scipy():
    """src.stability.highs_load passes the same model: same optimum of f with highspy."""
    import highspy

    from src.stability.highs import highs_load, new_highs

    net = random_net([3, 5, 5, 1], 1)
    box = Box.uniform(3)
    form = build_formulation(net, box, analyse_stability(net, box, tol=TOL), tol=TOL)
    h = new_highs()
    highs_load(h, form, integer=True)
    h.changeColCost(form.f_index, -1.0)
    h.run()
    assert h.getModelStatus() == highspy.HighsModelStatus.kOptimal
    assert -h.getInfo().objective_function_value == pytest.approx(max_f(form)[0], abs=1e-7)
