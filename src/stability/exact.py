"""The exact MILP tier (HiGHS branch and cut per undecided unit) and the per-unit MILP reference method."""
from __future__ import annotations

import time

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet
from src.core.progress import progress_bar
from src.stability.highs import _LinearObjective, _x_from, highs_load, new_highs
from src.stability.interval import _interval_layer, interval_bounds
from src.stability.milp import build_formulation
from src.stability.record import Stability, _deadline, _left, _only_tighter, _record_witnesses
from src.stability.witnesses import ascent_witnesses, witness_points

# HiGHS's tolerances in the MILP tier and the margin a MILP bound needs to decide a unit
MIP_TOL = 1e-9

MIP_MARGIN = 1e-7          # relative: a MILP dual bound B decides only if beyond 0 / tol by MIP_MARGIN (1 + |B|)

POOL_EXTRA = 2048          # local-search / incumbent points kept as start points in the MILP tier

QUICK_MILP_SECONDS = 1.0   # the first, short MILP attempt before the longer local search


class _LayerMILP:
    """The MILP of layers < l on one HiGHS model; per unit, max or min of g, optionally stopped early."""

    def __init__(self, net: ReluNet, box: Box, form, layer: int, heuristics: bool = True):
        import highspy

        self.net, self.box, self.form, self.layer = net, box, form, layer
        self.h = new_highs()
        for k, v in (("mip_feasibility_tolerance", MIP_TOL), ("primal_feasibility_tolerance", MIP_TOL),
                     ("dual_feasibility_tolerance", MIP_TOL), ("mip_rel_gap", 0.0), ("mip_abs_gap", 0.0)):
            self.h.setOptionValue(k, v)
        if not heuristics:
            # proving a bound: the primal heuristics (root sub-MIPs above all) only cost time
            for k, v in (("mip_heuristic_effort", 0.0), ("mip_heuristic_run_rins", False),
                         ("mip_heuristic_run_rens", False), ("mip_heuristic_run_root_reduced_cost", False)):
                self.h.setOptionValue(k, v)
        highs_load(self.h, form, integer=True)
        self.obj = _LinearObjective(self.h)
        self.kOptimal = highspy.HighsModelStatus.kOptimal
        self.kCutOff = (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kObjectiveBound)
        self.h.cbMipImprovingSolution.subscribe(self._on_solution)
        self.h.cbMipInterrupt.subscribe(self._on_interrupt)
        self._task = None

    def _on_solution(self, e):
        t = self._task
        if t is None or t["done"]:
            return
        x = _x_from(self.form, np.asarray(e.data_out.mip_solution), self.box)
        g = float(self.net.preactivations(x)[self.layer][0, t["unit"]])
        t["points"].append(x)
        if t["stop_witness"](g):
            t["done"] = True

    def _on_interrupt(self, e):
        t = self._task
        # always write the flag: HiGHS keeps it between runs of the same model
        e.interrupt(bool(t is not None and (t["done"] or t["stop_bound"](float(e.data_out.mip_dual_bound)))))

    def solve(self, unit: int, sense: str, tol: float, early_stop: bool, time_limit: float | None):
        """Maximise ('max') or minimise ('min') g of `unit`. Returns (bound, points, finished).

        bound: max g <= bound (max) or min g >= bound (min), from the solver's dual bound widened by
        MIP_MARGIN (1 + |D|); points: input points of the incumbents (witnesses); finished: solved to
        optimality, or stopped because the sign question was answered. With early_stop, 'max' stops
        at the first incumbent with exact g > 0 or once the bound proves g <= 0; 'min' at the first
        incumbent with g <= tol or once the bound proves g > tol. Early stop also passes HiGHS a
        cutoff (objective_bound): nodes that cannot reach g > -2m ('max') or g <= tol + 2m ('min'),
        m = MIP_MARGIN (1 + |threshold|), are pruned as if an incumbent of that value were known; a
        search that ends "infeasible" has proven max g <= -2m (reported bound -m) or min g >= tol + 2m
        (reported tol + m).
        """
        idx, coef, const = self.form.preactivation(self.layer, unit)
        sgn = -1.0 if sense == "max" else 1.0
        self.obj.set(idx, sgn * coef)

        m = MIP_MARGIN * (1.0 + (abs(const) if sense == "max" else abs(tol - const)))
        cutoff = np.inf
        if early_stop:
            cutoff = (const + 2 * m) if sense == "max" else (tol - const + 2 * m)

        def bound_of(D):
            # the solver minimises sgn * (g - const) and proves it >= D over the nodes it kept; nodes
            # pruned by the cutoff are only known to be >= cutoff, so the proven bound is min(D, cutoff)
            D = min(D, cutoff)
            mD = MIP_MARGIN * (1.0 + abs(D))
            return (-D + const + mD) if sense == "max" else (D + const - mD)

        if sense == "max":
            stop_witness = lambda g: early_stop and g > 0  # noqa: E731
            stop_bound = lambda D: early_stop and bound_of(D) <= 0  # noqa: E731
        else:
            stop_witness = lambda g: early_stop and g <= tol  # noqa: E731
            stop_bound = lambda D: early_stop and bound_of(D) > tol  # noqa: E731
        self._task = {"unit": unit, "done": False, "points": [], "stop_witness": stop_witness,
                      "stop_bound": stop_bound}
        self.h.setOptionValue("objective_bound", float(cutoff))
        self.h.setOptionValue("time_limit", float(time_limit) if time_limit is not None else np.inf)
        self.h.clearSolver()
        self.h.run()
        D = float(self.h.getInfo().mip_dual_bound)
        status = self.h.getModelStatus()
        sol = self.h.getSolution()
        task, self._task = self._task, None
        points = task["points"]
        if sol.value_valid and status not in self.kCutOff:
            points.append(_x_from(self.form, np.asarray(sol.col_value), self.box))
        if early_stop and status in self.kCutOff and not task["done"]:
            return (-m if sense == "max" else tol + m), points, True
        finished = status == self.kOptimal or task["done"] or stop_bound(D)
        if np.isfinite(min(D, cutoff)):
            bound = bound_of(D)
        else:
            bound = np.inf if sense == "max" else -np.inf
        return bound, points, finished


def _needs(st: Stability, l: int, i: int) -> str | None:
    """Which MILP settles unit i of layer l: 'max' (could be inactive), 'min' (could be active), or None.

    Witnesses satisfy witness_min <= witness_max, so at most one of the two questions is open.
    """
    if st.upper[l][i] <= 0 or st.lower[l][i] > st.tol:
        return None
    if st.witness_max[l][i] <= 0:
        return "max"
    if st.witness_min[l][i] > st.tol:
        return "min"
    return None


def milp_settle(net: ReluNet, box: Box, stability: Stability, tol: float = DEFAULT_TOL, time_limit: float | None = None,
                progress=None, unit_time_limit: float | None = None, local_search: bool = True,
                deadline: float | None = None) -> Stability:
    """Settle every unit still undecided by the exact MILP (HiGHS), stopping each solve early.

    If no witness has g > 0 the unit is maximised (inactive iff max g <= 0); if no witness has
    g <= tol it is minimised (active iff min g > tol). Before a solve, a projected-gradient local
    search from the best known points looks for a witness that answers the question (it often does
    for units with a small active region, which branch and cut may take minutes to find). Each
    layer's MILP uses the settled earlier layers. `time_limit` (seconds) and `deadline` (a
    time.perf_counter() value) bound the whole tier, searches included, `unit_time_limit` each
    solve; units left open stay unstable (sound), `exact` is False and the tier entry gets
    "stopped": "time limit". The result is intersected with the input bounds.
    """

    t0 = time.perf_counter()
    deadline = _deadline(t0, time_limit, deadline)
    st = stability.copy()
    st.tol = tol
    before = st.n_stable()
    rng = np.random.default_rng(0)
    pool = witness_points(box)          # start points of the local search (samples + recent finds)
    n_base = len(pool)

    def grow(pool, new):
        """Add points to the pool, keeping the samples and at most POOL_EXTRA recent finds."""
        extra = np.vstack([pool[n_base:], new])[-POOL_EXTRA:]
        return np.vstack([pool[:n_base], extra])
    if st.witness_min is None:
        _record_witnesses(st, net, box, pool)
    n_layers = net.n_hidden_layers
    ambiguous = solves = searched = 0
    timed_out = False
    bar = progress_bar(sum(int(u.sum()) for u in st.unstable[1:]), progress, "MILP settle")
    for l in range(1, n_layers):
        lo_i, up_i = _interval_layer(net, l, st.lower[l - 1], st.upper[l - 1])
        st.lower[l] = np.maximum(st.lower[l], lo_i)
        st.upper[l] = np.minimum(st.upper[l], up_i)
        und = [int(i) for i in np.flatnonzero(st.unstable[l])]
        model = None
        pool_g = None
        for i in und:
            tried = set()
            while (sense := _needs(st, l, i)) is not None and sense not in tried:
                tried.add(sense)
                # escalate: a short local search, a short MILP, a longer local search, the full MILP
                phases = [("search", 1), ("milp", QUICK_MILP_SECONDS), ("search", 3), ("milp", None)] \
                    if local_search else [("milp", None)]
                for kind, arg in phases:
                    if _needs(st, l, i) != sense:
                        break
                    left = _left(deadline)
                    if left is not None and left <= 0:
                        timed_out = True
                        break
                    if kind == "search":
                        if pool_g is None:
                            pool_g = net.preactivations(pool)[l]
                        sgn = 1.0 if sense == "max" else -1.0
                        top = pool[np.argsort(-sgn * pool_g[:, i])[:16]]
                        pts = ascent_witnesses(net, box, l, i, sense, np.vstack([top, box.sample(16, rng)]),
                                               target=0.0 if sense == "max" else tol, rounds=arg,
                                               seed=int(rng.integers(2**31)))
                        searched += 1
                        _record_witnesses(st, net, box, pts)
                        pool, pool_g = grow(pool, pts), None
                        continue
                    for cap in (unit_time_limit, arg):
                        if cap is not None:
                            left = cap if left is None else min(left, cap)
                    if model is None:
                        model = _LayerMILP(net, box, build_formulation(net, box, st, tol=tol, upto_layer=l), l,
                                           heuristics=not local_search)
                    bound, points, finished = model.solve(i, sense, tol, early_stop=True, time_limit=left)
                    solves += 1
                    if sense == "max":
                        st.upper[l][i] = min(st.upper[l][i], bound)
                    else:
                        st.lower[l][i] = max(st.lower[l][i], bound)
                    if points:
                        _record_witnesses(st, net, box, np.array(points))
                        pool, pool_g = grow(pool, np.array(points)), None
                    if finished:
                        break
                    timed_out |= arg is None
            if _needs(st, l, i) is not None:
                ambiguous += 1
            bar.update(1)
    bar.close()
    _only_tighter(st, stability)
    st.exact = ambiguous == 0
    entry = {"tier": "milp", "settled": st.n_stable() - before, "seconds": round(time.perf_counter() - t0, 6),
             "solves": solves, "local_searches": searched, "undecided": ambiguous, "time_limit_hit": timed_out}
    if timed_out and ambiguous:
        entry["stopped"] = "time limit"
    st.tiers.append(entry)
    return st


def exact_stability_per_unit(net: ReluNet, box: Box, tol: float = DEFAULT_TOL, progress=None,
                             time_limit: float | None = None, early_stop: bool = True,
                             unit_time_limit: float | None = None) -> Stability:
    """Reference method: one exact MILP for the max and one for the min of every unit, no tiers.

    Layer by layer from the interval bounds: every unit of layers 2.. that interval arithmetic leaves
    undecided gets its max and its min solved by HiGHS over the MILP of the earlier layers (built
    with the bounds found so far). No LP tier, no sample or local-search witnesses. With
    early_stop (default) each solve stops once the sign question is answered (max: an incumbent with
    g > 0 or a bound <= 0; min: an incumbent with g <= tol or a bound > tol); without it, solves run
    to optimality and the bounds are the exact ranges (up to MIP_MARGIN).
    """

    t0 = time.perf_counter()
    st = interval_bounds(net, box)
    st.tol = tol
    st.tiers.append({"tier": "interval", "settled": st.n_stable(), "seconds": round(time.perf_counter() - t0, 6)})
    before = st.n_stable()
    solves = 0
    all_finished = True
    bar = progress_bar(sum(int(u.sum()) for u in st.unstable[1:]), progress, "per-unit MILP")
    for l in range(1, net.n_hidden_layers):
        lo_i, up_i = _interval_layer(net, l, st.lower[l - 1], st.upper[l - 1])
        st.lower[l] = np.maximum(st.lower[l], lo_i)
        st.upper[l] = np.minimum(st.upper[l], up_i)
        und = np.flatnonzero(st.unstable[l])
        if und.size == 0:
            continue
        model = _LayerMILP(net, box, build_formulation(net, box, st, tol=tol, upto_layer=l), l)
        for i in und:
            for sense in ("max", "min"):
                left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
                if left is not None and left <= 0:
                    all_finished = False
                    continue
                if unit_time_limit is not None:
                    left = unit_time_limit if left is None else min(left, unit_time_limit)
                bound, points, finished = model.solve(int(i), sense, tol, early_stop=early_stop, time_limit=left)
                solves += 1
                all_finished &= finished
                seen = net.preactivations(np.array(points))[l][:, i] if points else np.zeros(0)
                if sense == "max":
                    st.upper[l][i] = max(min(st.upper[l][i], bound), seen.max(initial=-np.inf))
                else:
                    st.lower[l][i] = min(max(st.lower[l][i], bound), seen.min(initial=np.inf))
            bar.update(1)
    bar.close()
    st.exact = all_finished
    st.tiers.append({"tier": "milp_per_unit", "settled": st.n_stable() - before,
                     "seconds": round(time.perf_counter() - t0, 6), "solves": solves})
    return st
