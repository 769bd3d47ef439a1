"""Bounds on hidden pre-activations over a box, and the stable units they imply.

A unit is stably inactive if its upper bound <= 0, stably active if its lower bound > tol.
Tiers, each tightening the previous one (`analyse_stability` runs them in order):

  interval      interval arithmetic (pure numpy; exact for the first hidden layer)
  lp            per undecided unit, max / min of g over the LP relaxation (z in [0,1]) of the
                MILP of the earlier layers (src/milp.py), solved with HiGHS; the reported bound is
                made rigorous from the LP's dual values (see `safe_lower_bound`)
  milp          per still undecided unit, the exact MILP with HiGHS's branch and cut, stopped as
                soon as the sign question is answered

Instability is certified by concrete points: g evaluated by a forward pass at sample points, LP
optima, gradient local-search points and MILP incumbents ("witnesses"); a unit with a witness
g > 0 cannot be inactive and one with a witness g <= tol cannot be active, and no solver is asked
about it any more. See the README section "Bounds, stable units and the MILP" for the numerical-soundness rules.

Data first (`analyse_stability(data=...)`): one chunked forward pass over given points of the box
(MNIST images inside it, seeded samples: `data_points_for_box`) records witnesses before any LP;
units seen on both sides skip the LP tier unless the caller needs tight big-M bounds
(`tight_bounds=True`, for the MILP enumeration backends). A deadline bounds every tier: what is
left when it passes keeps its sound, looser bounds, and the tier entry says "stopped": "time limit".
Every tier only tightens: its result is intersected with the bounds it started from.
See docs/stability.md.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .geometry import box_bounds
from .layout import inactive_file_name, stable_units_file_name
from .domain import Box
from .network import ReluNet

# HiGHS's tolerances in the MILP tier and the margin a MILP bound needs to decide a unit
MIP_TOL = 1e-9
MIP_MARGIN = 1e-7          # relative: a MILP dual bound B decides only if beyond 0 / tol by MIP_MARGIN (1 + |B|)
N_WITNESS_SAMPLES = 2048
POOL_EXTRA = 2048          # local-search / incumbent points kept as start points in the MILP tier
QUICK_MILP_SECONDS = 1.0   # the first, short MILP attempt before the longer local search
SEARCH_RATIO = 8           # lp_tighten searches witnesses for <= 1 open unit per SEARCH_RATIO skipped ones


@dataclass
class Stability:
    """Per hidden layer: lower/upper bounds of the pre-activation over the domain."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]
    tol: float = 1e-6
    exact: bool = False          # True when every undecided unit was settled by an exact MILP
    tiers: list[dict] = field(default_factory=list)  # [{"tier", "settled", "seconds"}, ...]
    # g at concrete points of the domain (per layer, per unit): the true range contains
    # [witness_min, witness_max]; None until a tier has evaluated points
    witness_min: list[np.ndarray] | None = None
    witness_max: list[np.ndarray] | None = None

    @property
    def active(self) -> list[np.ndarray]:
        return [lo > self.tol for lo in self.lower]

    @property
    def inactive(self) -> list[np.ndarray]:
        return [up <= 0 for up in self.upper]

    @property
    def unstable(self) -> list[np.ndarray]:
        return [~(a | i) for a, i in zip(self.active, self.inactive)]

    def fixed_bits(self) -> np.ndarray:
        """int8 over all hidden units, layer by layer: 1 stably active, 0 stably inactive, -1 unstable."""
        out = []
        for a, i in zip(self.active, self.inactive):
            s = np.full(a.shape, -1, dtype=np.int8)
            s[a] = 1
            s[i] = 0
            out.append(s)
        return np.concatenate(out) if out else np.zeros(0, np.int8)

    def counts(self) -> list[dict]:
        return [{"active": int(a.sum()), "inactive": int(i.sum()), "unstable": int(u.sum())}
                for a, i, u in zip(self.active, self.inactive, self.unstable)]

    def n_stable(self) -> int:
        return int(sum(int(a.sum() + i.sum()) for a, i in zip(self.active, self.inactive)))

    @property
    def stopped_by_time_limit(self) -> bool:
        """True when some tier was cut short by its time limit (its bounds are sound but looser)."""
        return any(t.get("stopped") == "time limit" for t in self.tiers)

    def certified_unstable(self) -> list[np.ndarray]:
        """Units proven unstable by witnesses: some point has g > 0 and some point has g <= tol."""
        if self.witness_max is None:
            return [np.zeros(lo.shape, bool) for lo in self.lower]
        return [(wx > 0) & (wn <= self.tol) for wx, wn in zip(self.witness_max, self.witness_min)]

    def copy(self) -> "Stability":
        cp = lambda xs: None if xs is None else [x.copy() for x in xs]  # noqa: E731
        return replace(self, lower=cp(self.lower), upper=cp(self.upper), tiers=[dict(t) for t in self.tiers],
                       witness_min=cp(self.witness_min), witness_max=cp(self.witness_max))


# ---------------------------------------------------------------------------------------------
# interval tier (pure numpy)
# ---------------------------------------------------------------------------------------------
def interval_bounds(net: ReluNet, box: Box) -> Stability:
    """Interval arithmetic through the hidden layers (sound, loose)."""
    if net.n_hidden_layers == 0:
        return Stability([], [])
    lo, up = _interval_affine(net.weights[0], net.biases[0], box.lo, box.hi)
    lowers, uppers = [lo], [up]
    for layer in range(1, net.n_hidden_layers):
        lo, up = _interval_layer(net, layer, lo, up)
        lowers.append(lo)
        uppers.append(up)
    return Stability(lowers, uppers)


def _interval_affine(w: np.ndarray, b: np.ndarray, lo_h: np.ndarray, hi_h: np.ndarray):
    """Bounds of w h + b for h in the box [lo_h, hi_h]."""
    return box_bounds(w, b, lo_h, hi_h)


def _interval_layer(net: ReluNet, layer: int, lo_prev: np.ndarray, up_prev: np.ndarray):
    """Interval bounds of layer `layer` from bounds of the previous layer's pre-activations."""
    return _interval_affine(net.weights[layer], net.biases[layer], np.maximum(lo_prev, 0.0), np.maximum(up_prev, 0.0))


def witness_points(box: Box, n: int = N_WITNESS_SAMPLES, seed: int = 0) -> np.ndarray:
    """Points of the box used as witnesses: its center, both corners, and n seeded uniform samples."""
    rng = np.random.default_rng(seed)
    return np.vstack([(box.lo + box.hi) / 2, box.lo, box.hi, box.sample(n, rng)])


def _record_witnesses(st: Stability, net: ReluNet, box: Box, x) -> None:
    """Evaluate g at points x (clipped into the box) and widen the witness ranges."""
    x = np.clip(np.atleast_2d(np.asarray(x, np.float64)), box.lo, box.hi)
    gs = net.preactivations(x)
    if st.witness_min is None:
        st.witness_min = [g.min(axis=0) for g in gs]
        st.witness_max = [g.max(axis=0) for g in gs]
    else:
        for l, g in enumerate(gs):
            st.witness_min[l] = np.minimum(st.witness_min[l], g.min(axis=0))
            st.witness_max[l] = np.maximum(st.witness_max[l], g.max(axis=0))
    # a witness is a fact: no bound may contradict it (guards against solver-tolerance bounds)
    for l in range(len(gs)):
        st.upper[l] = np.maximum(st.upper[l], st.witness_max[l])
        st.lower[l] = np.minimum(st.lower[l], st.witness_min[l])


def _only_tighter(st: Stability, prior: Stability) -> None:
    """Intersect st's bounds with the bounds `prior` a tier started from: a tier may only tighten.

    A tier's own interval step and the forward pass at a witness can round differently from the
    computation that produced `prior` (BLAS kernels sum in different orders), which must never
    loosen a bound by a rounding step; both are sound, so their intersection is.
    """
    for l in range(len(st.lower)):
        st.lower[l] = np.maximum(st.lower[l], prior.lower[l])
        st.upper[l] = np.minimum(st.upper[l], prior.upper[l])


def _deadline(t0: float, time_limit: float | None, deadline: float | None) -> float | None:
    """The earlier of t0 + time_limit and deadline (time.perf_counter() values); None = no limit."""
    ends = [e for e in (None if time_limit is None else t0 + max(float(time_limit), 0.0), deadline) if e is not None]
    return min(ends) if ends else None


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.perf_counter()


# ---------------------------------------------------------------------------------------------
# data points of a box (data-first stability, data patterns)
# ---------------------------------------------------------------------------------------------
CHUNK = 8192                # rows per batched forward pass (bounds memory: CHUNK x width float64 per layer)
N_DATA_SAMPLES = 100_000    # default number of seeded uniform samples of the box


@dataclass(frozen=True, eq=False)
class SeededSamples:
    """n uniform samples of `box` from np.random.default_rng(seed), produced chunk by chunk.

    The chunks concatenate to box.sample(n, np.random.default_rng(seed)) whatever the chunk size,
    so n = 100,000 points of [0,1]^784 never sit in memory at once.
    """

    box: Box
    n: int
    seed: int = 0

    def __len__(self) -> int:
        return int(self.n)

    def chunks(self, size: int = CHUNK):
        rng = np.random.default_rng(self.seed)
        for start in range(0, int(self.n), size):
            yield self.box.sample(min(size, int(self.n) - start), rng)


def iter_chunks(points, size: int = CHUNK):
    """float64 chunks (<= size rows) of an array of points or of a SeededSamples."""
    if isinstance(points, SeededSamples):
        yield from points.chunks(size)
        return
    x = np.asarray(points)
    if x.ndim == 1:
        x = x[None, :]
    for start in range(0, len(x), size):
        yield np.asarray(x[start:start + size], np.float64)


def mnist_points_in_box(box: Box, data_root=None) -> dict[str, np.ndarray]:
    """{"train": X, "test": X}: the MNIST images (float32 in [0,1], read-only) that lie in the box.

    For [0,1]^784 these are all 60,000 + 10,000 images (no copy); for a local box the few inside
    it (the center image of `Box.around(test_image(k), ...)` always is). Loaded with
    src.data.load_mnist_arrays (offline; raises ToolError without MNIST). Needs a 784-input box.
    """
    from .data import load_mnist_arrays

    if box.n != 784:
        raise ValueError(f"MNIST images have 784 pixels, the box has {box.n} inputs")
    out = {}
    for split in ("train", "test"):
        X, _ = load_mnist_arrays(split, root=data_root)
        inside = np.ones(len(X), bool)
        for start in range(0, len(X), CHUNK):
            inside[start:start + CHUNK] = box.contains(np.asarray(X[start:start + CHUNK], np.float64))
        out[split] = X if inside.all() else X[inside]
    return out


def data_points_for_box(box: Box, data_root=None, n_samples: int = N_DATA_SAMPLES, seed: int = 0,
                        mnist: bool | None = None) -> dict:
    """Points of the box by source: {"train": ..., "test": ..., "samples": SeededSamples}.

    "train"/"test": MNIST images inside the box (`mnist_points_in_box`), only when mnist is True,
    or None (the default) and the box has 784 inputs; "samples": n_samples seeded uniform samples.
    Feed it to analyse_stability(data=...) and src.region_bounds.data_patterns.
    """
    use_mnist = box.n == 784 if mnist is None else bool(mnist)
    out = mnist_points_in_box(box, data_root) if use_mnist else {}
    out["samples"] = SeededSamples(box, int(n_samples), int(seed))
    return out


def record_points(st: Stability, net: ReluNet, box: Box, points, deadline: float | None = None,
                  chunk: int = CHUNK) -> int:
    """Record witnesses at the given points that lie in the box, in batched chunked forward passes.

    points: an array (n, n0), a SeededSamples, or a dict of those (e.g. `data_points_for_box`);
    or an object with per-layer witness_min / witness_max of g over points of this box and an
    n_points count (src.region_bounds.DataPatterns), merged without a forward pass.
    Points outside the box are dropped (not clipped). Stops between chunks once the deadline has
    passed (fewer witnesses: still sound). Returns the number of points used.
    """
    if hasattr(points, "witness_min") and hasattr(points, "witness_max"):
        if points.witness_min is None:
            return 0
        if st.witness_min is None:
            st.witness_min = [w.copy() for w in points.witness_min]
            st.witness_max = [w.copy() for w in points.witness_max]
        else:
            for l in range(len(st.witness_min)):
                st.witness_min[l] = np.minimum(st.witness_min[l], points.witness_min[l])
                st.witness_max[l] = np.maximum(st.witness_max[l], points.witness_max[l])
        for l in range(len(st.lower)):
            st.upper[l] = np.maximum(st.upper[l], st.witness_max[l])
            st.lower[l] = np.minimum(st.lower[l], st.witness_min[l])
        return int(points.n_points)
    sources = points.values() if isinstance(points, dict) else [points]
    used = 0
    for src in sources:
        for x in iter_chunks(src, chunk):
            if deadline is not None and time.perf_counter() > deadline:
                return used
            x = x[box.contains(x)]
            if len(x):
                _record_witnesses(st, net, box, x)
                used += len(x)
    return used


def _unit_gradient(net: ReluNet, x: np.ndarray, layer: int, unit: int):
    """(g, dg/dx) of one unit at a batch of points (the gradient of the linear piece at each point)."""
    h, masks = x, []
    for l in range(layer):
        g = h @ net.weights[l].T + net.biases[l]
        m = g > 0
        masks.append(m)
        h = np.where(m, g, 0.0)
    w = net.weights[layer][unit]
    val = h @ w + net.biases[layer][unit]
    d = np.broadcast_to(w, h.shape)
    for l in range(layer - 1, -1, -1):
        d = (d * masks[l]) @ net.weights[l]
    return val, d


def _pgd(net: ReluNet, box: Box, layer: int, unit: int, sgn: float, x: np.ndarray, steps: int, a0: float,
         a1: float):
    """Projected normalised-gradient ascent of sgn * g from every row of x; (best values, best points)."""
    width = box.hi - box.lo
    x = np.clip(x, box.lo, box.hi)
    best = np.full(len(x), -np.inf)
    bx = x.copy()
    for k in range(steps + 1):
        val, d = _unit_gradient(net, x, layer, unit)
        val = sgn * val
        imp = val > best
        best[imp], bx[imp] = val[imp], x[imp]
        if k == steps:
            break
        a = a0 * (a1 / a0) ** (k / max(steps - 1, 1))
        d = sgn * d
        scale = np.abs(d).max(axis=1, keepdims=True)
        x = np.clip(x + a * width * d / np.where(scale > 0, scale, 1.0), box.lo, box.hi)
    return best, bx


def ascent_witnesses(net: ReluNet, box: Box, layer: int, unit: int, sense: str, starts: np.ndarray,
                     target: float | None = None, rounds: int = 4, steps: int = 150,
                     step0: tuple = (1.0, 0.3), step1: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Local search for witnesses of one unit: projected gradient ascent of g ('max') or descent ('min').

    Each round runs, from every start, normalised-gradient steps a * (hi - lo) * grad / max|grad|
    (a decaying geometrically from each step0 to step1), projected onto the box; the next round
    restarts from the best points, noisy copies of them and fresh samples (basin hopping). Stops
    once a point reaches `target` (g > target for 'max', g <= target for 'min'). Returns the best
    points found. A heuristic that can only certify: only the exact forward pass at them is trusted.
    """
    sgn = 1.0 if sense == "max" else -1.0
    rng = np.random.default_rng(seed)
    starts = np.atleast_2d(np.asarray(starts, np.float64))
    k = max(len(starts), 8)
    found = []
    for _ in range(rounds):
        vals, pts = [], []
        for a0 in step0:
            v, p = _pgd(net, box, layer, unit, sgn, starts, steps, a0, step1)
            vals.append(v)
            pts.append(p)
        vals, pts = np.concatenate(vals), np.vstack(pts)
        order = np.argsort(-vals)[:k]
        found.append(pts[order])
        if target is not None and (vals[order[0]] > target if sense == "max" else -vals[order[0]] <= target):
            break
        best = pts[order[: k // 2]]
        noisy = np.clip(best + rng.normal(scale=0.3, size=best.shape) * (box.hi - box.lo), box.lo, box.hi)
        starts = np.vstack([best, noisy, box.sample(k // 2, rng)])
    return np.vstack(found)


def _progress_bar(progress, total: int, desc: str):
    if not progress or total == 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


# ---------------------------------------------------------------------------------------------
# HiGHS plumbing
# ---------------------------------------------------------------------------------------------
_BANNER_DONE = False


def new_highs(threads: int = 1):
    """A silent highspy.Highs (the one-time banner printed by the first construction is swallowed)."""
    global _BANNER_DONE
    import highspy

    if _BANNER_DONE:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        try:
            with open(os.devnull, "w") as devnull:
                os.dup2(devnull.fileno(), 1)
                h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
        _BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("threads", int(threads))
    return h


def highs_load(h, form, integer: bool) -> None:
    """Pass a MilpFormulation to a highspy model (minimisation, zero objective)."""
    import highspy

    inf = highspy.kHighsInf
    n = form.n_vars
    h.addVars(n, form.lb, form.ub)
    A = form.A.tocsr()
    if A.shape[0]:
        lo = np.where(np.isfinite(form.row_lo), form.row_lo, -inf)
        hi = np.where(np.isfinite(form.row_hi), form.row_hi, inf)
        h.addRows(A.shape[0], lo, hi, A.nnz, A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32),
                  A.data.astype(np.float64))
    if integer and form.is_binary.any():
        idx = np.flatnonzero(form.is_binary).astype(np.int32)
        h.changeColsIntegrality(idx.size, idx, np.array([highspy.HighsVarType.kInteger] * idx.size))


class _LinearObjective:
    """Swap sparse objectives on one HiGHS model, clearing the previous one (minimisation)."""

    def __init__(self, h):
        self.h = h
        self.prev = np.zeros(0, np.int32)

    def set(self, idx, coef) -> None:
        idx = np.asarray(idx, np.int32)
        if self.prev.size:
            self.h.changeColsCost(self.prev.size, self.prev, np.zeros(self.prev.size))
        if idx.size:
            self.h.changeColsCost(idx.size, idx, np.asarray(coef, np.float64))
        self.prev = idx


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


def _x_from(form, v, box: Box) -> np.ndarray:
    """Input point of a solution vector (dropped inputs at the box center; they do not matter)."""
    x = (box.lo + box.hi) / 2
    m = form.input_index >= 0
    x = x.copy()
    x[m] = np.asarray(v)[form.input_index[m]]
    return np.clip(x, box.lo, box.hi)


# ---------------------------------------------------------------------------------------------
# LP tier
# ---------------------------------------------------------------------------------------------
def _search_witnesses(st: Stability, net: ReluNet, box: Box, l: int, units, rng, deadline: float | None,
                      rounds: int = 1) -> int:
    """A short local search (`ascent_witnesses`) for the missing side of each unit, before any LP.

    For a unit no witness has shown with g > 0 it looks for one ('max'), for one never seen with
    g <= tol it looks for that ('min'), starting from the best of the box's witness points and
    fresh samples. Found points are recorded as witnesses (facts: only the forward pass at them
    counts). Returns the number of searches run (stops at the deadline).
    """
    pool = witness_points(box)
    g = net.preactivations(pool)[l]
    runs = 0
    for i in units:
        i = int(i)
        if st.witness_max[l][i] <= 0:
            sense, target, sgn = "max", 0.0, 1.0
        elif st.witness_min[l][i] > st.tol:
            sense, target, sgn = "min", st.tol, -1.0
        else:
            continue
        if deadline is not None and time.perf_counter() >= deadline:
            break
        top = pool[np.argsort(-sgn * g[:, i])[:16]]
        pts = ascent_witnesses(net, box, l, i, sense, np.vstack([top, box.sample(16, rng)]), target=target,
                               rounds=rounds, seed=int(rng.integers(2**31)))
        _record_witnesses(st, net, box, pts)
        runs += 1
    return runs


def lp_tighten(net: ReluNet, box: Box, stability: Stability, tol: float = 1e-6, progress=None,
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
    from .milp import build_formulation

    t0 = time.perf_counter()
    st = stability.copy()
    st.tol = tol
    before = st.n_stable()
    if st.witness_min is None:
        _record_witnesses(st, net, box, witness_points(box))
    base = st.copy()                      # input bounds (and witnesses): the start of a redo
    n_layers = net.n_hidden_layers
    todo_total = sum(int(u.sum()) for u in st.unstable[1:])
    bar = _progress_bar(progress, todo_total, "LP bounds")
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
                if bar is not None:
                    bar.update(1)
            if pts:
                _record_witnesses(st, net, box, np.array(pts))
        if stopped:
            l += 1
            continue
        if clean == l and not skip.any():
            clean = l + 1
        l += 1
    if bar is not None:
        bar.close()
    _only_tighter(st, stability)
    entry = {"tier": "lp", "settled": st.n_stable() - before, "seconds": round(time.perf_counter() - t0, 6),
             "lps": lps, "skipped_certified": len(skipped), "layers_redone": redone, "local_searches": searched}
    if stopped:
        entry["stopped"] = "time limit"
    st.tiers.append(entry)
    return st


# ---------------------------------------------------------------------------------------------
# exact MILP tier
# ---------------------------------------------------------------------------------------------
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


def milp_settle(net: ReluNet, box: Box, stability: Stability, tol: float = 1e-6, time_limit: float | None = None,
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
    from .milp import build_formulation

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
    bar = _progress_bar(progress, sum(int(u.sum()) for u in st.unstable[1:]), "MILP settle")
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
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    _only_tighter(st, stability)
    st.exact = ambiguous == 0
    entry = {"tier": "milp", "settled": st.n_stable() - before, "seconds": round(time.perf_counter() - t0, 6),
             "solves": solves, "local_searches": searched, "undecided": ambiguous, "time_limit_hit": timed_out}
    if timed_out and ambiguous:
        entry["stopped"] = "time limit"
    st.tiers.append(entry)
    return st


def analyse_stability(net: ReluNet, box: Box, tol: float = 1e-6, exact: bool = False, progress=None,
                      time_limit: float | None = None, unit_time_limit: float | None = None,
                      stability_only: bool = False, data=None, tight_bounds: bool | None = None,
                      deadline: float | None = None) -> Stability:
    """Tiered stability: interval -> LP tightening -> (exact MILP for the units still undecided).

    progress: truthy for tqdm bars on stderr. unit_time_limit: see `milp_settle`.
    time_limit (seconds from the call) and deadline (a time.perf_counter() value, e.g. the end of
    a whole command): the earlier one bounds every tier; units left open keep sound, looser
    bounds, `exact` is False when a unit stays undecided, and the tier entry that was cut short has
    "stopped": "time limit" (`Stability.stopped_by_time_limit`).
    data: points of the box (an array, a SeededSamples, or a dict of them such as
    `data_points_for_box(box)`, or the src.region_bounds.DataPatterns of such points, whose
    witness ranges are reused); one chunked forward pass records them as witnesses first, so
    every unit they show on both sides is certified unstable without an LP. Points outside the box
    are dropped.
    tight_bounds: True runs the LP tier on every undecided unit (tight big-M constants for the MILP
    enumeration backends); False skips the units witnesses certify unstable (`lp_tighten`'s
    stability_only: same stable sets, looser bounds on those units). Default: False when data or
    stability_only is given, else True (the behaviour without data).
    """
    t0 = time.perf_counter()
    deadline = _deadline(t0, time_limit, deadline)
    iv = interval_bounds(net, box)
    iv.tol = tol
    st = iv.copy()
    _record_witnesses(st, net, box, witness_points(box))
    n_data = 0 if data is None else record_points(st, net, box, data, deadline=deadline)
    _only_tighter(st, iv)
    entry = {"tier": "interval", "settled": st.n_stable(), "seconds": round(time.perf_counter() - t0, 6)}
    if data is not None:
        entry["data_points"] = n_data
    entry["certified_unstable"] = int(sum(int(c.sum()) for c in st.certified_unstable()))
    st.tiers.append(entry)
    skip = (stability_only or data is not None) if tight_bounds is None else not tight_bounds
    st = lp_tighten(net, box, st, tol=tol, progress=progress, stability_only=skip, deadline=deadline)
    if exact:
        st = milp_settle(net, box, st, tol=tol, progress=progress, unit_time_limit=unit_time_limit,
                         deadline=deadline)
    return st


def exact_stability_per_unit(net: ReluNet, box: Box, tol: float = 1e-6, progress=None,
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
    from .milp import build_formulation

    t0 = time.perf_counter()
    st = interval_bounds(net, box)
    st.tol = tol
    st.tiers.append({"tier": "interval", "settled": st.n_stable(), "seconds": round(time.perf_counter() - t0, 6)})
    before = st.n_stable()
    solves = 0
    all_finished = True
    bar = _progress_bar(progress, sum(int(u.sum()) for u in st.unstable[1:]), "per-unit MILP")
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
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    st.exact = all_finished
    st.tiers.append({"tier": "milp_per_unit", "settled": st.n_stable() - before,
                     "seconds": round(time.perf_counter() - t0, 6), "solves": solves})
    return st


# ---------------------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------------------
def stability_to_json(stability: Stability, box: Box, weights_path) -> dict:
    """The `stable_units_<domain>.json` object of docs/formats.md."""
    layers, counts = [], []
    for l, (a, i, u, lo, up) in enumerate(zip(stability.active, stability.inactive, stability.unstable,
                                             stability.lower, stability.upper)):
        counts.append({"layer": l + 1, "active": int(a.sum()), "inactive": int(i.sum()), "unstable": int(u.sum())})
        layers.append({"layer": l + 1, "active": np.flatnonzero(a).tolist(), "inactive": np.flatnonzero(i).tolist(),
                       "unstable": np.flatnonzero(u).tolist(),
                       "lower": [float(v) for v in lo], "upper": [float(v) for v in up]})
    return {"weights": str(weights_path), "domain": box.to_json(), "tol": float(stability.tol),
            "exact": bool(stability.exact), "tiers": [dict(t) for t in stability.tiers],
            "counts": counts, "layers": layers}


def inactive_lines(stability: Stability) -> str:
    """`inactive_<domain>.dat` text: one line `layer unit` per stably inactive unit (layer 1-based)."""
    return "".join(f"{l + 1} {int(i)}\n" for l, m in enumerate(stability.inactive) for i in np.flatnonzero(m))


def write_stability_files(out_dir, stability: Stability, box: Box, weights_path) -> tuple[Path, Path]:
    """Write `stable_units_<domain>.json` and `inactive_<domain>.dat` atomically; returns both paths."""
    from .ioutils import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    js = out_dir / stable_units_file_name(box.name)
    dat = out_dir / inactive_file_name(box.name)
    atomic_write_json(js, stability_to_json(stability, box, weights_path))
    atomic_write_text(dat, inactive_lines(stability))
    return js, dat
