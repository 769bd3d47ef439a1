"""The LP tier: max / min of each undecided unit over the LP relaxation, made rigorous by the duals."""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet
from src.core.progress import progress_bar
from src.stability.highs import _LinearObjective, _x_from, highs_load, new_highs
from src.stability.interval import _interval_layer
from src.stability.milp import build_formulation
from src.stability.record import Stability, _left, _only_tighter, _record_witnesses
from src.stability.witnesses import _search_witnesses, witness_points

SEARCH_RATIO = 8           # lp_tighten searches witnesses for <= 1 open unit per SEARCH_RATIO skipped ones


def safe_lower_bound(c, y, A: sp.csr_matrix, AT: sp.csr_matrix, row_lo, row_hi, lb, ub, absAT=None) -> float:
    """A rigorous lower bound of  min c@v  s.t. row_lo <= A v <= row_hi, lb <= v <= ub  from any duals y.

    Weak duality: c@v = y@(A v) + r@v with r = c - A^T y, so c@v >= sum_i min(y_i lo_i, y_i hi_i)
    + sum_j min(r_j lb_j, r_j ub_j) for every feasible v (duals pointing at an infinite row side are
    zeroed). Valid for any y, tight when y is the optimal dual, so solver tolerances cannot make it
    wrong; a slack of (n + m + 2) eps |terms| covers floating-point rounding. Both signs of y are
    tried (solver sign conventions differ) and the better bound is returned. Variables must have
    finite bounds. AT = A^T (CSR) and absAT = |A^T| may be passed precomputed.
    """
    c = np.asarray(c, np.float64)
    lo_f = np.where(np.isfinite(row_lo), row_lo, 0.0)
    hi_f = np.where(np.isfinite(row_hi), row_hi, 0.0)
    bmax = np.maximum(np.abs(lb), np.abs(ub))
    gamma = (A.shape[0] + A.shape[1] + 2) * np.finfo(float).eps
    absAT = abs(AT) if absAT is None else absAT
    best = -np.inf
    cands = [np.zeros(A.shape[0])] if y is None or len(y) == 0 else [np.asarray(y, np.float64), -np.asarray(y, np.float64)]
    for yy in cands:
        yy = yy.copy()
        yy[(yy > 0) & ~np.isfinite(row_lo)] = 0.0
        yy[(yy < 0) & ~np.isfinite(row_hi)] = 0.0
        r = c - AT @ yy if yy.size else c.copy()
        rows = np.where(yy > 0, yy * lo_f, yy * hi_f).sum()
        cols = np.where(r > 0, r * lb, r * ub).sum()
        mag = (np.abs(yy) * np.maximum(np.abs(lo_f), np.abs(hi_f))).sum() + \
            ((np.abs(c) + (absAT @ np.abs(yy) if yy.size else 0.0)) * bmax).sum()
        best = max(best, rows + cols - 2 * gamma * mag)
    return float(best)


class _LayerLP:
    """The LP relaxation of the formulation of layers < l, with one objective swapped per solve."""

    def __init__(self, form, box: Box):
        self.form, self.box = form, box
        self.h = new_highs()
        self.h.setOptionValue("presolve", "off")      # keep the simplex basis between objectives
        highs_load(self.h, form, integer=False)
        self.obj = _LinearObjective(self.h)
        self.AT = form.A.T.tocsr()
        self.absAT = abs(self.AT)

    def minimise(self, idx, coef, time_left: float | None = None):
        """(rigorous lower bound of coef @ v[idx], input point of the LP optimum or None).

        time_left caps this solve. HiGHS compares its time_limit with the run time accumulated
        over all runs of a model (highspy 1.16), so the option is set to that run time plus
        time_left. A solve that stops before optimality contributes no duals: the bound is then the
        trivial one of the variable bounds (sound; the caller intersects it with what it had).
        """
        import highspy

        self.obj.set(idx, coef)
        limit = np.inf if time_left is None else self.h.getRunTime() + max(float(time_left), 1e-3)
        self.h.setOptionValue("time_limit", float(limit))
        self.h.run()
        sol = self.h.getSolution()
        ok = self.h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        y = np.asarray(sol.row_dual) if ok and sol.dual_valid else None
        c = np.zeros(self.form.n_vars)
        c[idx] = coef
        bound = safe_lower_bound(c, y, self.form.A, self.AT, self.form.row_lo, self.form.row_hi,
                                 self.form.lb, self.form.ub, absAT=self.absAT)
        x = _x_from(self.form, sol.col_value, self.box) if ok and sol.value_valid else None
        return bound, x


def lp_tighten(net: ReluNet, box: Box, stability: Stability, tol: float = DEFAULT_TOL, progress=None,
               stability_only: bool = False, deadline: float | None = None) -> Stability:
    """Tighten every undecided unit of layers 2.. by max / min of g over the LP relaxation.

    Layer by layer: interval bounds from the (tightened) previous layer, then for each unit that is
    still undecided two LPs over one HiGHS model per layer (only the objective changes). Bounds are
    rigorous (`safe_lower_bound`); the first hidden layer's interval bounds are already exact.

    stability_only: skip the units that witnesses already prove unstable (their bounds only serve as
    big-M constants of the MILP enumeration backends; when a few open, uncertified units would
    force a redo of many skipped ones, a short local search first looks for their missing
    witnesses), with the same stable sets as the full tier
    and bounds never tighter than its: a skipped unit is unstable in truth; a layer whose open
    units are all certified needs no LP; and before a layer with an open, uncertified unit is
    solved, the earlier layers that hold skipped (looser) units are redone without skipping from
    their input bounds, so that its LPs run over the full tier's own formulation.

    deadline (a time.perf_counter() value): checked between LPs, and each LP's HiGHS time limit is
    the time left; when it passes, the units not yet done keep their (sound) interval bounds, and
    the tier entry gets "stopped": "time limit". The result is intersected with the input bounds.
    """

    t0 = time.perf_counter()
    st = stability.copy()
    st.tol = tol
    before = st.n_stable()
    if st.witness_min is None:
        _record_witnesses(st, net, box, witness_points(box))
    base = st.copy()                      # input bounds (and witnesses): the start of a redo
    n_layers = net.n_hidden_layers
    todo_total = sum(int(u.sum()) for u in st.unstable[1:])
    bar = progress_bar(todo_total, progress, "LP bounds")
    lps = redone = searched = 0
    rng = np.random.default_rng(0)
    skipped: set[tuple[int, int]] = set()
    stopped = False
    clean = 1          # layers < clean hold the full tier's bounds (layer 0: exact interval bounds)
    full_from, full_to = n_layers, -1     # layers in [full_from, full_to] are being redone without skipping
    l = 1
    while l < n_layers:
        lo_i, up_i = _interval_layer(net, l, st.lower[l - 1], st.upper[l - 1])
        st.lower[l] = np.maximum(st.lower[l], lo_i)
        st.upper[l] = np.minimum(st.upper[l], up_i)
        if stopped:
            l += 1
            continue
        open_ = ~((st.lower[l] > tol) | (st.upper[l] <= 0))
        skip = np.zeros_like(open_)
        if stability_only and not full_from <= l <= full_to:
            missing = np.flatnonzero(open_ & ~st.certified_unstable()[l])
            n_loose = sum(1 for k, _ in skipped if clean <= k < l)
            if clean < l and 0 < missing.size <= max(1, n_loose // SEARCH_RATIO):
                # a few open units would force a redo of many skipped ones: look for their witnesses first
                searched += _search_witnesses(st, net, box, l, missing, rng, deadline)
            skip = open_ & st.certified_unstable()[l]
            if clean < l and (open_ & ~skip).any():
                # redo layers clean..l-1 without skipping, from their input bounds
                for k in range(clean, l):
                    st.lower[k], st.upper[k] = base.lower[k].copy(), base.upper[k].copy()
                    skipped.difference_update({(k, int(i)) for i in range(net.hidden_sizes[k])})
                full_from, full_to = clean, l - 1
                redone += l - clean
                l = clean
                continue
            skipped.update((l, int(i)) for i in np.flatnonzero(skip))
        und = np.flatnonzero(open_ & ~skip)
        if und.size:
            form = build_formulation(net, box, st, tol=tol, upto_layer=l)
            lp = _LayerLP(form, box)
            pts = []
            for i in und:
                if deadline is not None and time.perf_counter() >= deadline:
                    stopped = True
                    break
                idx, coef, const = form.preactivation(l, int(i))
                lo, x1 = lp.minimise(idx, coef, _left(deadline))
                neg, x2 = lp.minimise(idx, -coef, _left(deadline))
                lps += 2
                st.lower[l][i] = max(st.lower[l][i], lo + const)
                st.upper[l][i] = min(st.upper[l][i], -neg + const)
                pts += [p for p in (x1, x2) if p is not None]
                bar.update(1)
            if pts:
                _record_witnesses(st, net, box, np.array(pts))
        if stopped:
            l += 1
            continue
        if clean == l and not skip.any():
            clean = l + 1
        l += 1
    bar.close()
    _only_tighter(st, stability)
    entry = {"tier": "lp", "settled": st.n_stable() - before, "seconds": round(time.perf_counter() - t0, 6),
             "lps": lps, "skipped_certified": len(skipped), "layers_redone": redone, "local_searches": searched}
    if stopped:
        entry["stopped"] = "time limit"
    st.tiers.append(entry)
    return st
