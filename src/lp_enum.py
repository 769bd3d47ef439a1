"""Exact activation-pattern enumeration by an LP search over the region tree (numpy + highspy).

Definition (identical to the MILP backends and tests/bruteforce.py): a pattern S is feasible iff
some x in the box has g_j(x) > tol on every unit with bit 1 and g_j(x) <= 0 on every unit with
bit 0. Stable units (fixed_bits >= 0) keep their bit; their constraint holds on the whole box.

The search is a depth-first walk over the hidden units in layer order. A node is a prefix of
bits; its region is {x in box : the prefix's constraints}. On it every unit of the current layer
l is affine, g = A_l^S x + c_l^S, and the map depends only on the bits of earlier layers
(A_1 = W_1, A_{l+1} = W_{l+1} diag(s_l) A_l: built once per layer region). At each node the
two children of the next unit are decided, cheapest certificate first:

1. box bounds of the affine function (sound interval bound with a rounding margin) refute a
   side for the whole layer region;
2. carried points: every node carries a few points of its region, verified by an exact
   forward pass through the net against the strict definition; a point on a side certifies
   that child;
3. learned clauses: an LP refutation's dual certificate names the rows it used; it refutes the
   same child at every node of the layer region that shares those rows' bits;
4. a segment search: from every carried point towards the box vertex that pushes g across its
   threshold; inside the region every unit is affine along the segment, so one vectorised
   ratio test finds the longest admissible step; the point found is verified;
5. one LP on a HiGHS model kept for the search path: maximise s subject to every decided row
   with margin s (rows scaled to unit norm, s <= cap). The model holds one block of 2 n_l rows
   per layer region on the path (unit i, bit b = row 2i+b; inactive rows are free), so moving
   in the tree only changes row bounds, and every node keeps the optimal basis of the LP that
   created it (warm start by setBasis). The LP's point certifies the child when the forward
   pass verifies it; otherwise its row duals y give the bound
       s <= sum_j y_j beta_j + max_box(-sum_j y_j alpha_j . x)      (y >= 0, sum y = 1),
   recomputed here in numpy: a negative bound refutes the child rigorously;
6. only when neither certificate is conclusive (a region that touches its boundary) the brute
   force's definition LP (max t: g >= t on 1s, g <= 0 on 0s, t <= 1; feasible iff t > tol) is
   solved from scratch with tight tolerances.

Eager settlement: at every node, each later unit of the layer that the carried points show on
one side only is checked once (steps 3-5): a refuted side stays refuted in the whole subtree, a
new point enriches the node.

A time limit, a stop request or Ctrl-C stops the walk and returns the unexplored frontier: a list
of prefixes ("0110..." over the first k hidden units, pattern order) whose subtrees hold exactly
the patterns not yet emitted. Passing it back as `roots` continues the search. With workers > 1
(or a Ray cluster) workers walk prefix subtrees in time slices and hand back the unexplored rest,
which is queued again (dynamic splitting); the patterns are emitted in lexicographic order (the
order of the sequential walk) whatever the number of workers.
"""
from __future__ import annotations

import os
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field

import numpy as np

from .geometry import advance, box_bounds
from .ioutils import ToolError


class SearchStopped(Exception):
    """Raised inside the walk on a stop request; carries the unexplored frontier (prefix strings)."""

    def __init__(self, frontier=None):
        super().__init__("search stopped")
        self.frontier = list(frontier or [])


@dataclass
class EngineOptions:
    """Tuning knobs of the search; none of them changes the result."""

    max_points: int = 8           # verified points carried per node
    root_points: int = 32         # points kept at the first node of a layer region
    root_samples: int = 64        # random box points drawn at the top of the tree
    eager: bool = True            # settle one-sided units of the layer at every node
    eager_depth: int = 10**9      # ... whose position in its layer is at most this
    segment_search: bool = True
    clauses: bool = True
    crossing_points: bool = True  # give each child points from segments across the branching hyperplane
    cap: float = 1e-4             # margin cap of the LP, times the mean box width
    seed: int = 0
    highs_options: dict = field(default_factory=lambda: {"simplex_scale_strategy": 0})
    engine: str = "compiled"      # "compiled" (src/fast_enum.py) or "highs" (LpSearch here, kept for comparison)


def make_engine(net, box, fixed_bits, tol, options: EngineOptions | None = None):
    """The search engine that `options.engine` names, for one problem."""
    options = options or EngineOptions()
    if options.engine == "compiled":
        from .fast_enum import CompiledSearch

        return CompiledSearch(net, box, fixed_bits, tol, options)
    if options.engine == "highs":
        return LpSearch(net, box, fixed_bits, tol, options)
    raise ToolError(f"engine: expected 'compiled' or 'highs', got {options.engine!r}")


STAT_KEYS = ("nodes", "lps", "lp_feasible", "lp_refuted", "lp_seconds", "lp_iterations", "definition_lps",
             "definition_feasible_without_point", "point_certified", "segment_certified", "clause_refuted",
             "eager_checks", "regions", "patterns", "dead_ends", "blocks_added")


def new_stats() -> dict:
    return {k: (0.0 if k == "lp_seconds" else 0) for k in STAT_KEYS}


def merge_stats(total: dict, part: dict) -> dict:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v
    return total


def prefix_to_str(bits) -> str:
    return "".join("1" if b else "0" for b in bits)


def check_frontier(frontier, n_units: int) -> list[str]:
    """Validate a frontier: a list of 0/1 strings, each at most n_units long (ToolError otherwise).

    A prefix that contradicts a stable unit is kept: its subtree is simply empty (stable units can
    differ between runs when the bounds were cut short by a time limit).
    """
    if not isinstance(frontier, (list, tuple)):
        raise ToolError("frontier: expected a list of prefix strings")
    out = []
    for k, p in enumerate(frontier):
        if not isinstance(p, str) or len(p) > n_units or any(ch not in "01" for ch in p):
            raise ToolError(f"frontier item {k}: expected a string of 0/1 of length <= {n_units}, "
                            f"got {str(p)[:40]!r}")
        out.append(p)
    return out


class _Region:
    """One layer region (all bits of earlier layers fixed): the layer's affine map and what is known on it."""

    __slots__ = ("l", "A", "Af", "c", "alpha", "alpha_f", "nu", "rbeta", "lo", "hi", "possible", "redundant", "clauses",
                 "parent_snap", "root_snap", "vertex_feat")


class _PathModel:
    """The HiGHS model of the search path: columns x (box), z = W_1 x (free; only when the first hidden
    layer is narrower than the input, so that every unit row is short), s (<= cap); maximise s.

    One block of 2 n_l rows per layer region on the path; row 2i+b of a block is
    alpha_i^b . z + s <= beta_i^b (unit i with bit b, scaled), free (inactive) unless set.
    """

    def __init__(self, n0, lo, hi, cap, highs_options, W1=None):
        import highspy

        from .bounds import new_highs

        self.hs = highspy
        h = new_highs(1)
        h.setOptionValue("presolve", "off")
        for k, v in highs_options.items():
            h.setOptionValue(k, v)
        inf = self.inf = highspy.kHighsInf
        nf = 0 if W1 is None else W1.shape[0]
        ncol = n0 + nf + 1
        cost = np.zeros(ncol)
        cost[-1] = 1.0
        h.addCols(ncol, cost, np.r_[lo, np.full(nf, -inf), -inf], np.r_[hi, np.full(nf, inf), cap], 0,
                  np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
        if nf:
            E = np.hstack([W1, -np.eye(nf)])
            nz = E != 0.0
            starts = np.r_[0, np.cumsum(nz.sum(axis=1))[:-1]].astype(np.int32)
            h.addRows(nf, np.zeros(nf), np.zeros(nf), int(nz.sum()), starts, np.nonzero(nz)[1].astype(np.int32), E[nz])
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        self.h = h
        self.n0 = n0
        self.feat = (np.arange(n0, n0 + nf) if nf else np.arange(n0)).astype(np.int32)
        self.s_col = ncol - 1
        self.blocks: list[_Region] = []
        self.starts: list[int] = []
        self.nrows = nf
        self.active: dict[tuple[int, int], float] = {}   # (block depth, local row) -> upper bound

    def pop_to(self, k):
        if k >= len(self.blocks):
            return
        first = self.starts[k]
        self.h.deleteRows(self.nrows - first, np.arange(first, self.nrows, dtype=np.int32))
        del self.blocks[k:]
        del self.starts[k:]
        self.nrows = first
        for key in [key for key in self.active if key[0] >= k]:
            del self.active[key]

    def push_block(self, R):
        af = R.alpha_f
        n, nf = af.shape
        M = np.empty((2 * n, nf + 1))
        M[0::2, :nf] = af
        M[1::2, :nf] = -af
        M[:, nf] = 1.0
        cols = np.r_[self.feat, self.s_col].astype(np.int32)
        nz = M != 0.0
        starts = np.r_[0, np.cumsum(nz.sum(axis=1))[:-1]].astype(np.int32)
        idx = cols[np.nonzero(nz)[1]]
        self.h.addRows(2 * n, np.full(2 * n, -self.inf), np.full(2 * n, self.inf), int(nz.sum()), starts, idx, M[nz])
        self.blocks.append(R)
        self.starts.append(self.nrows)
        self.nrows += 2 * n

    def set_active(self, target: dict, upto: int):
        """Make the active rows of blocks < upto exactly `target` ((depth, row) -> beta)."""
        for key in [key for key in self.active if key[0] < upto and key not in target]:
            self.h.changeRowBounds(self.starts[key[0]] + key[1], -self.inf, self.inf)
            del self.active[key]
        for key, beta in target.items():
            if key[0] < upto and self.active.get(key) != beta:
                self.h.changeRowBounds(self.starts[key[0]] + key[1], -self.inf, beta)
                self.active[key] = beta

    def row_index(self, key) -> int:
        return self.starts[key[0]] + key[1]


class LpSearch:
    """The sequential search engine for one problem (net, box, stable bits, tol)."""

    def __init__(self, net, box, fixed_bits, tol: float = 1e-6, options: EngineOptions | None = None):
        self.opt = options or EngineOptions()
        self.W = [np.ascontiguousarray(w, np.float64) for w in net.weights]
        self.bvec = [np.ascontiguousarray(b, np.float64) for b in net.biases]
        self.sizes = list(net.hidden_sizes)
        self.L = len(self.sizes)
        self.off = np.r_[0, np.cumsum(self.sizes)].astype(int)
        self.N = int(self.off[-1])
        self.n0 = int(net.n_inputs)
        self.lo = np.asarray(box.lo, np.float64).copy()
        self.hi = np.asarray(box.hi, np.float64).copy()
        self.tol = float(tol)
        self.fixed = np.asarray(fixed_bits, np.int8).reshape(-1)
        if self.fixed.size != self.N:
            raise ValueError(f"fixed_bits has {self.fixed.size} entries, the net has {self.N} hidden units")
        self.unstable = self.fixed < 0
        self.layer_of = np.repeat(np.arange(self.L), self.sizes)
        # LP rows live in the feature space z = W_1 x when the first layer is narrower than the input
        self.use_z = self.sizes[0] < self.n0
        self.stats = new_stats()
        self.rng = np.random.default_rng(self.opt.seed)
        self._absbox = np.maximum(np.abs(self.lo), np.abs(self.hi))
        self.cap = float(self.opt.cap) * float(np.mean(self.hi - self.lo))
        self._model = None
        self._reset_path()
        self._deadline = None
        self._stop_flag = None
        self._emit = None
        self._checkpoint = None
        self._pending: list = []
        self._roots_left: list = []

    def _reset_path(self):
        self.bits = np.full(self.N, -1, np.int8)
        self.settled = np.full(self.N, -1, np.int8)    # bit forced in the current subtree (other side refuted)
        self._on1 = np.zeros(self.N, bool)               # decided unstable units with bit 1 / bit 0
        self._on0 = np.zeros(self.N, bool)
        self.path_keys: list[tuple[int, int]] = []      # (unit, bit) of decided units with an active row
        self.path_rows: list[tuple[int, int]] = []      # (layer, local row 2i+b)
        self.path_alpha: list[np.ndarray] = []
        self.path_beta: list[float] = []
        self.regions: list[_Region] = []                # layer regions on the path
        self.maps: list = [None] * self.L       # (A, c) in x-space per layer on the path
        self.fmaps: list = [None] * self.L      # (A_f, c) in the LP's feature space

    # ---- points ------------------------------------------------------------------------------
    # Points are carried as features p = W_1 x (or x itself when the first layer is not narrower than the
    # input): every pre-activation depends on x only through p, and convex combinations of the features of
    # box points are features of box points.
    def to_feat(self, X) -> np.ndarray:
        return X @ self.W[0].T if self.use_z else X

    def forward(self, P) -> np.ndarray:
        """Pre-activations of all hidden units for points given by features P (m, n_f) -> (m, N)."""
        g = (P if self.use_z else P @ self.W[0].T) + self.bvec[0]
        out = [g]
        for l in range(1, self.L):
            g = np.maximum(g, 0.0) @ self.W[l].T + self.bvec[l]
            out.append(g)
        return np.concatenate(out, axis=1) if self.L > 1 else out[0]

    def _verify(self, g, extra_unit=-1, extra_bit=-1) -> bool:
        """Does a point with pre-activations g meet every decided unstable unit (and one extra) strictly?"""
        if np.any(g[self._on1] <= self.tol) or np.any(g[self._on0] > 0.0):
            return False
        if extra_unit >= 0:
            v = g[extra_unit]
            return bool(v > self.tol) if extra_bit == 1 else bool(v <= 0.0)
        return True

    def _side_mask(self, G, u, b):
        col = G[:, u]
        return col > self.tol if b == 1 else col <= 0.0

    # ---- layer maps and regions ---------------------------------------------------------------
    def _make_region(self, l) -> _Region:
        if l == 0:
            Af = np.eye(self.sizes[0]) if self.use_z else self.W[0]
            c = self.bvec[0]
        else:
            Ap, cp = self.fmaps[l - 1]
            Af, c = advance(Ap, cp, self.W[l], self.bvec[l], self.bits[self.off[l - 1]: self.off[l]])
        A = (self.W[0] if l == 0 else Af @ self.W[0]) if self.use_z else Af
        self.fmaps[l] = (Af, c)
        self.maps[l] = (A, c)
        R = _Region()
        R.l, R.A, R.Af, R.c = l, A, Af, c
        R.lo, R.hi = box_bounds(A, c, self.lo, self.hi)
        eps = 1e-12 * (np.abs(c) + np.abs(A) @ self._absbox) + 1e-300
        R.nu = np.sqrt(np.einsum("ij,ij->i", A, A))
        safe = np.where(R.nu > 0, R.nu, 1.0)
        R.alpha = np.where(R.nu[:, None] > 0, A / safe[:, None], 0.0)
        R.alpha_f = np.where(R.nu[:, None] > 0, Af / safe[:, None], 0.0)
        rb = np.empty(2 * len(c))
        rb[0::2] = -c / safe
        rb[1::2] = (c - self.tol) / safe
        R.rbeta = rb
        const = R.nu == 0.0
        p0 = np.where(const, c <= 0.0, ~(R.lo > eps))
        p1 = np.where(const, c > self.tol, ~(R.hi <= self.tol - eps))
        R.possible = (p0.astype(np.int8) | (p1.astype(np.int8) << 1)).astype(np.int8)
        R.redundant = np.stack([const | (R.hi <= -eps), const | (R.lo > self.tol + eps)], axis=1)
        R.clauses = {}
        R.parent_snap = None
        R.root_snap = None
        R.vertex_feat = None
        return R

    def _push(self, R, i, b):
        u = self.off[R.l] + i
        self.bits[u] = b
        if self.unstable[u]:
            (self._on1 if b == 1 else self._on0)[u] = True
        if self.unstable[u] and not R.redundant[i, b]:
            self.path_keys.append((u, b))
            self.path_rows.append((R.l, 2 * i + b))
            self.path_alpha.append(R.alpha[i] if b == 0 else -R.alpha[i])
            self.path_beta.append(float(R.rbeta[2 * i + b]))
            return True
        return False

    def _pop(self, u, pushed):
        self.bits[u] = -1
        self._on1[u] = self._on0[u] = False
        if pushed:
            self.path_keys.pop()
            self.path_rows.pop()
            self.path_alpha.pop()
            self.path_beta.pop()

    # ---- LPs -----------------------------------------------------------------------------------
    def _prepare_lp(self, snap):
        """Bring the path model to the current node: blocks, active rows, warm-start basis."""
        if self._model is None:
            self._model = _PathModel(self.n0, self.lo, self.hi, self.cap, self.opt.highs_options,
                                     self.W[0] if self.use_z else None)
        M = self._model
        path = self.regions
        k = 0
        while k < len(M.blocks) and k < len(path) and M.blocks[k] is path[k]:
            k += 1
        M.pop_to(k)
        target = {key: beta for key, beta in zip(self.path_rows, self.path_beta)}
        for j in range(k, len(path)):
            Rj = path[j]
            M.set_active(target, j)
            if Rj.parent_snap is not None and Rj.parent_snap[0] == j:
                M.h.setBasis(Rj.parent_snap[1])
            M.push_block(Rj)
            self.stats["blocks_added"] += 1
            Rj.root_snap = (j + 1, M.h.getBasis())
        M.set_active(target, len(path))
        if snap is None or snap[0] != len(path):
            snap = path[-1].root_snap
        if snap is not None:
            M.h.setBasis(snap[1])
        return M

    def _solve(self, M):
        t0 = time.perf_counter()
        M.h.run()
        self.stats["lp_seconds"] += time.perf_counter() - t0
        self.stats["lps"] += 1
        self.stats["lp_iterations"] += int(M.h.getInfo().simplex_iteration_count)
        return M.h.getModelStatus() == M.hs.HighsModelStatus.kOptimal

    def _lp_check(self, R, i, b, snap):
        """One margin LP for child (unit i of R, bit b) at the current node.

        Returns ("point", x, g, snap), ("refuted", support) or, from the definition LP when the margin
        LP is inconclusive, ("point", x, g, None), ("feasible", None, None, None) or ("refuted", None).
        """
        u = self.off[R.l] + i
        M = self._prepare_lp(snap)
        key = (R.l, 2 * i + b)
        beta = float(R.rbeta[2 * i + b])
        row = M.row_index(key)
        M.h.changeRowBounds(row, -M.inf, beta)
        result = None
        try:
            if self._solve(M):
                sol = M.h.getSolution()
                if M.h.getObjectiveValue() > 0:
                    p = self.to_feat(np.clip(np.array(sol.col_value)[: self.n0], self.lo, self.hi))
                    g = self.forward(p[None, :])[0]
                    if self._verify(g, u, b):
                        self.stats["lp_feasible"] += 1
                        result = ("point", p, g, (len(M.blocks), M.h.getBasis()))
                if result is None:
                    duals = np.array(sol.row_dual)
                    a = R.alpha[i] if b == 0 else -R.alpha[i]
                    support = self._dual_refutation(M, duals, row, a, beta)
                    if support is not None:
                        self.stats["lp_refuted"] += 1
                        result = ("refuted", support)
        finally:
            M.h.changeRowBounds(row, -M.inf, M.inf)
        if result is None:
            result = self._definition_lp(R, i, b)
        return result

    def _dual_refutation(self, M, duals, test_row, a, beta):
        """Rigorous refutation from the LP's row duals: any y >= 0 with sum 1 over the active rows bounds
        s <= sum_j y_j beta_j + max_box(-sum_j y_j alpha_j . x); a negative bound means that no point of
        the box meets the rows (margin 0). Returns the path keys of the support, or None."""
        n = len(self.path_keys)
        idx = [M.row_index(k) for k in self.path_rows] + [test_row]
        if len(duals) != M.nrows:
            return None
        y = np.abs(duals[idx])
        if not np.all(np.isfinite(y)) or y.sum() <= 0:
            return None
        y = np.where(y >= 1e-9 * y.max(), y, 0.0)
        y = y / y.sum()
        sup = np.flatnonzero(y)
        alphas = np.vstack([self.path_alpha[j] if j < n else a for j in sup])
        betas = np.array([self.path_beta[j] if j < n else beta for j in sup])
        ys = y[sup]
        v = -(ys @ alphas)
        bound = float(ys @ betas + np.sum(np.maximum(v * self.lo, v * self.hi)))
        mag = float(ys @ np.abs(betas) + np.abs(v) @ self._absbox)
        if bound < -1e-11 * max(mag, 1.0):
            return [self.path_keys[j] for j in sup if j < n]
        return None

    def _definition_lp(self, R, i, b):
        """The brute force's LP for the current prefix + (unit i of R, bit b), from scratch, tight tolerances:
        max t s.t. g >= t on bit-1 units, g <= 0 on bit-0 units, x in box, t <= 1; feasible iff t > tol."""
        import highspy

        self.stats["definition_lps"] += 1
        u = -1 if i is None else self.off[R.l] + i
        dec = np.flatnonzero((self.bits >= 0) & self.unstable)
        units = [(int(j), int(self.bits[j])) for j in dec] + ([(u, b)] if u >= 0 else [])
        n = self.n0
        M = np.zeros((len(units), n + 1))
        lo_r = np.full(len(units), -highspy.kHighsInf)
        hi_r = np.full(len(units), highspy.kHighsInf)
        for r, (j, bj) in enumerate(units):
            l = self.layer_of[j]
            A, c = self.maps[l]
            M[r, :n] = A[j - self.off[l]]
            cj = c[j - self.off[l]]
            if bj == 1:      # a.x + cj >= t
                M[r, n] = -1.0
                lo_r[r] = -cj
            else:            # a.x + cj <= 0
                hi_r[r] = -cj
        from .bounds import new_highs

        h = new_highs(1)
        h.setOptionValue("primal_feasibility_tolerance", 1e-9)
        h.setOptionValue("dual_feasibility_tolerance", 1e-9)
        cost = np.zeros(n + 1)
        cost[n] = 1.0
        h.addCols(n + 1, cost, np.r_[self.lo, -highspy.kHighsInf], np.r_[self.hi, 1.0], 0,
                  np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0))
        if len(units):
            nz = M != 0
            starts = np.r_[0, np.cumsum(nz.sum(1))[:-1]].astype(np.int32)
            h.addRows(len(units), lo_r, hi_r, int(nz.sum()), starts, np.nonzero(nz)[1].astype(np.int32), M[nz])
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.run()
        if h.getModelStatus() != highspy.HighsModelStatus.kOptimal or not h.getObjectiveValue() > self.tol:
            return ("refuted", None)
        p = self.to_feat(np.clip(np.array(h.getSolution().col_value)[:n], self.lo, self.hi))
        g = self.forward(p[None, :])[0]
        if self._verify(g, u, b):
            return ("point", p, g, None)
        self.stats["definition_feasible_without_point"] += 1
        return ("feasible", None, None, None)

    # ---- cheap certificates ---------------------------------------------------------------------
    def _clause_refutes(self, R, u, b) -> bool:
        for clause in R.clauses.get((u, b), ()):
            if all(self.bits[j] == bj for j, bj in clause):
                return True
        return False

    def _vertex_values(self, R):
        """Per side b: features of the box vertex extreme for each unit of R's layer (towards side b), and the
        affine values of every unit of layers <= l at those vertices (cached per region)."""
        if R.vertex_feat is None:
            pos = R.A > 0
            feats = (self.to_feat(np.where(pos, self.lo, self.hi)), self.to_feat(np.where(pos, self.hi, self.lo)))
            vals = tuple(np.hstack([F @ self.fmaps[k][0].T + self.fmaps[k][1] for k in range(R.l + 1)]) for F in feats)
            R.vertex_feat = (feats, vals)
        return R.vertex_feat

    def _segment_search(self, R, i, b, X, G):
        """From every carried point walk towards the box vertex extreme for g_i on side b.

        Inside the node's region every decided unit is affine along a segment, so its value is the
        interpolation between the point's pre-activation and the affine value at the vertex: one
        vectorised ratio test per point; the best candidate is verified by a forward pass.
        (Divisions by zero below give inf/nan that np.where discards; run() silences the warnings.)
        """
        if len(X) == 0:
            return None
        l = R.l
        u = self.off[l] + i
        end = self.off[l + 1]
        feats, vals = self._vertex_values(R)
        pv, gv = feats[b][i], vals[b][i]
        Gd = G[:, :end]
        D = gv - Gd
        du, pu = D[:, u], Gd[:, u]
        if b == 1:
            cross = np.where(du > 0, (self.tol - pu) / du, np.inf)
        else:
            cross = np.where(du < 0, pu / -du, np.inf)
        cross = np.maximum(cross, 0.0)
        if not (cross < 1.0).any():
            return None
        on1, on0 = self._on1[:end], self._on0[:end]
        lim = np.minimum(np.where(on1 & (D < 0), (Gd - self.tol) / -D, np.inf).min(axis=1),
                         np.where(on0 & (D > 0), -Gd / D, np.inf).min(axis=1))
        gap = np.minimum(lim, 1.0) - cross
        k = int(np.argmax(gap))
        if not gap[k] > 0:
            return None
        t = cross[k] + 0.5 * gap[k]
        xn = X[k] + t * (pv - X[k])
        gn = self.forward(xn[None, :])[0]
        if self._verify(gn, u, b):
            return xn, gn
        return None

    def _certify(self, R, i, b, X, G, snap):
        """Decide child (unit i, bit b) at the current node when no carried point is on side b:
        clause, segment search, LP. Returns ("point", x, g, snap), ("feasible", None, None, None) or ("refuted",)."""
        u = self.off[R.l] + i
        if self.opt.clauses and self._clause_refutes(R, u, b):
            self.stats["clause_refuted"] += 1
            return ("refuted",)
        if self.opt.segment_search:
            r = self._segment_search(R, i, b, X, G)
            if r is not None:
                self.stats["segment_certified"] += 1
                return ("point", r[0], r[1], None)
        res = self._lp_check(R, i, b, snap)
        if res[0] != "refuted":
            return res
        support = res[1]
        if support is not None and self.opt.clauses:
            start = self.off[R.l]
            clause = tuple((j, bj) for j, bj in support if j >= start)
            if not clause:
                R.possible[i] &= ~(1 << b)
            R.clauses.setdefault((u, b), []).append(clause)
        return ("refuted",)

    # ---- the walk ---------------------------------------------------------------------------------
    def _frontier_here(self, u) -> list[str]:
        """The unexplored frontier at the entry of the node of unit u (what a stop here would return)."""
        fr = [self._prefix(u)]
        for v, rest in reversed(self._pending):
            pre = self._prefix(v)
            fr.extend(pre + str(c) for c in rest)
        return fr + self._roots_left

    def _check_stop(self) -> bool:
        return (self._deadline is not None and time.monotonic() >= self._deadline) or \
            (self._stop_flag is not None and self._stop_flag())

    def _prefix(self, upto) -> str:
        return prefix_to_str(self.bits[:upto])

    def _decide(self, R, i, X, G, snap):
        """Certified children of unit i at the current node: {b: (X_b, G_b, snap_b)}."""
        u = self.off[R.l] + i
        poss = int(R.possible[i])
        if self.settled[u] >= 0:
            poss &= 1 << int(self.settled[u])
        out = {}
        for b in (0, 1):
            if not poss & (1 << b):
                continue
            if len(X):
                sel = self._side_mask(G, u, b)
                if sel.any():
                    out[b] = (X[sel], G[sel], snap)
                    self.stats["point_certified"] += 1
                    continue
            res = self._certify(R, i, b, X, G, snap)
            if res[0] == "point":
                out[b] = (res[1][None, :], res[2][None, :], res[3] or snap)
            elif res[0] == "feasible":
                out[b] = (X[:0], G[:0], snap)
        return out

    def _eager(self, R, i, X, G, snap):
        """Settle each later unit of the layer that the carried points show on one side only: refute the
        other side here (it then stays refuted in the whole subtree) or find a point on it."""
        undo = []
        if len(X) == 0 or i + 1 >= self.sizes[R.l]:
            return X, G, undo
        start = self.off[R.l]
        us = np.arange(start + i + 1, start + self.sizes[R.l])
        cand = self.unstable[us] & (self.settled[us] < 0) & (R.possible[i + 1:] == 3)
        Gs = G[:, us]
        has1 = (Gs > self.tol).any(axis=0)
        has0 = (Gs <= 0.0).any(axis=0)
        for idx in np.flatnonzero(cand & (has1 != has0)):
            if has1[idx] == has0[idx]:            # a point found meanwhile shows both sides
                continue
            u = int(us[idx])
            k = i + 1 + int(idx)
            b = 0 if has1[idx] else 1
            self.stats["eager_checks"] += 1
            res = self._certify(R, k, b, X, G, snap)
            if res[0] == "refuted":
                if R.possible[k] == 3:
                    self.settled[u] = 1 - b
                    undo.append(u)
            elif res[0] == "point":
                X = np.vstack([res[1][None, :], X])
                G = np.vstack([res[2][None, :], G])
                gn = res[2][us]
                has1 |= gn > self.tol
                has0 |= gn <= 0.0
        return X, G, undo

    def _crossing_points(self, u, b, Xb, Gb, Xo, Go):
        """Points of child (u, b) from the segments between its points and the other child's points, taken
        just before the segment crosses unit u's threshold: they lie in the node's region (convexity), on
        side b of u, and inherit the other side's position with respect to later units."""
        if len(Xb) == 0 or len(Xo) == 0:
            return Xb, Gb
        # only the other side's points that show a side of a later unit of this layer that Xb lacks
        end = self.off[self.layer_of[u] + 1]
        later = np.arange(u + 1, end)
        later = later[self.unstable[later] & (self.settled[later] < 0)]
        if later.size == 0:
            return Xb, Gb
        Bl, Ol = Gb[:, later], Go[:, later]
        lack1 = ~(Bl > self.tol).any(axis=0)
        lack0 = ~(Bl <= 0.0).any(axis=0)
        useful = ((Ol > self.tol) & lack1).any(axis=1) | ((Ol <= 0.0) & lack0).any(axis=1)
        if not useful.any():
            return Xb, Gb
        thr = self.tol if b == 1 else 0.0
        margin = Gb[:, u] - thr
        k = int(np.argmax(margin)) if b == 1 else int(np.argmin(margin))   # deepest point on side b
        gi = Gb[k, u]
        gj = Go[:, u]
        lam = 0.999 * (gi - thr) / (gi - gj)
        jj = np.flatnonzero(useful & np.isfinite(lam) & (lam > 0))
        if jj.size == 0:
            return Xb, Gb
        t = np.minimum(lam[jj], 1.0)[:, None]
        Z = Xb[k] + t * (Xo[jj] - Xb[k])
        GZ = self.forward(Z)
        ok = self._verify_batch(GZ, u, b)
        if not ok.any():
            return Xb, Gb
        return np.vstack([Xb, Z[ok]]), np.vstack([Gb, GZ[ok]])

    def _verify_batch(self, G, u, b):
        ok = np.all(G[:, self._on1] > self.tol, axis=1) & np.all(G[:, self._on0] <= 0.0, axis=1)
        return ok & (G[:, u] > self.tol if b == 1 else G[:, u] <= 0.0)

    def _select(self, X, G, cap, after):
        """At most `cap` points, chosen greedily to show both sides of as many later undecided units as possible."""
        m = len(X)
        if m <= cap:
            return X, G
        later = np.flatnonzero(self.unstable[after:] & (self.bits[after:] < 0)) + after
        if later.size == 0:
            return X[:cap], G[:cap]
        F = np.concatenate([G[:, later] > self.tol, G[:, later] <= 0.0], axis=1)
        covered = np.zeros(F.shape[1], bool)
        chosen: list[int] = []
        free = np.ones(m, bool)
        while len(chosen) < cap:
            gain = np.where(free, (F & ~covered).sum(axis=1), -1)
            k = int(np.argmax(gain))
            if gain[k] <= 0:
                break
            chosen.append(k)
            free[k] = False
            covered |= F[k]
        if len(chosen) < cap:
            chosen += list(np.flatnonzero(free)[: cap - len(chosen)])
        idx = np.array(chosen, int)
        return X[idx], G[idx]

    def _enter_region(self, l, i, X, G, snap):
        """Start layer l at position i (0, or > 0 when resuming mid-layer)."""
        self.stats["regions"] += 1
        R = self._make_region(l)
        R.parent_snap = snap
        self.regions.append(R)
        try:
            self._node(R, i, X, G, None)
        finally:
            self.regions.pop()

    def _node(self, R, i, X, G, snap, fresh=True):
        """Walk the subtree of the current node (unit i of region R next). `fresh` is False when the node
        carries exactly its parent's points, so that the eager pass would find nothing new."""
        self.stats["nodes"] += 1
        l = R.l
        u = self.off[l] + i
        if self._check_stop():
            raise SearchStopped([self._prefix(u)])
        if self._checkpoint is not None and self._checkpoint.due():
            self._checkpoint.save(self._frontier_here(u))
        if i == self.sizes[l]:
            if l == self.L - 1:
                self.stats["patterns"] += 1
                self._emit(self.bits)
                return
            self._enter_region(l + 1, 0, X, G, snap)
            return
        if not self.unstable[u]:
            b = int(self.fixed[u])
            pushed = self._push(R, i, b)
            try:
                self._node(R, i + 1, X, G, snap, fresh)
            finally:
                self._pop(u, pushed)
            return
        undo = []
        try:
            if self.opt.eager and fresh and i <= self.opt.eager_depth:
                X, G, undo = self._eager(R, i, X, G, snap)
                cap = self.opt.root_points if i == 0 else self.opt.max_points
                X, G = X[:cap], G[:cap]
            out = self._decide(R, i, X, G, snap)
            if not out:
                self.stats["dead_ends"] += 1
                return
            children = sorted(out)
            for k, b in enumerate(children):
                Xb, Gb, sb = out[b]
                same = len(children) == 1 and len(Xb) == len(X) and sb is snap
                if len(children) == 2 and self.opt.crossing_points:
                    Xb, Gb = self._crossing_points(u, b, Xb, Gb, out[1 - b][0], out[1 - b][1])
                Xb, Gb = self._select(Xb, Gb, self.opt.max_points, u + 1)
                pushed = self._push(R, i, b)
                self._pending.append((u, children[k + 1:]))
                try:
                    self._node(R, i + 1, Xb, Gb, sb, not same)
                except SearchStopped as e:
                    pre = self._prefix(u)
                    e.frontier.extend(pre + str(c) for c in children[k + 1:])
                    raise
                finally:
                    self._pending.pop()
                    self._pop(u, pushed)
        finally:
            for v in undo:
                self.settled[v] = -1

    # ---- entry points ---------------------------------------------------------------------------------
    def _root_points(self):
        m = self.opt.root_samples
        if m <= 0:
            return np.zeros((0, self.sizes[0] if self.use_z else self.n0)), np.zeros((0, self.N))
        r = self.rng
        span = self.hi - self.lo
        U = self.lo + span * r.random((m // 2, self.n0))
        p = r.random((m - m // 2, 1))
        B = self.lo + span * (r.random((m - m // 2, self.n0)) < p)
        P = self.to_feat(np.vstack([(self.lo + self.hi)[None, :] / 2, U, B]))
        return P, self.forward(P)

    def _run_root(self, prefix: str, X, G):
        """Walk the subtree of one prefix (the empty string is the whole tree)."""
        self._reset_path()
        k = len(prefix)
        pbits = (np.frombuffer(prefix.encode(), np.uint8) - ord("0")).astype(np.int8)
        if np.any((self.fixed[:k] >= 0) & (self.fixed[:k] != pbits)):
            return                          # contradicts a stable unit: an empty subtree
        # fix the prefix layer by layer (maps and rows), ending in the layer of unit k
        l = 0
        while True:
            R = self._make_region(l)
            R.parent_snap = None
            self.regions.append(R)
            start, end = self.off[l], self.off[l + 1]
            for j in range(start, min(end, k)):
                self._push(R, j - start, int(pbits[j]))
            if k >= end and l + 1 < self.L:
                l += 1
                continue
            break
        if self._check_stop():
            raise SearchStopped([prefix])
        if len(X):
            ok = np.array([self._verify(g) for g in G], bool)
            X, G = X[ok], G[ok]
        if k and len(X) == 0:
            res = self._prefix_point()
            if res is False:
                return
            if res is not None:
                X, G = res[0][None, :], res[1][None, :]
        self.regions.pop()
        if k == self.N:
            self.stats["patterns"] += 1
            self._emit(self.bits)
            return
        self._enter_region(l, k - self.off[l], X, G, None)

    def _prefix_point(self):
        """Feasibility of a resumed prefix: (x, g), None (feasible without a point) or False (infeasible)."""
        if not self.path_keys:
            return None
        M = self._prepare_lp(None)
        if self._solve(M) and M.h.getObjectiveValue() > 0:
            p = self.to_feat(np.clip(np.array(M.h.getSolution().col_value)[: self.n0], self.lo, self.hi))
            g = self.forward(p[None, :])[0]
            if self._verify(g):
                return p, g
        res = self._definition_lp(None, None, None)
        if res[0] == "point":
            return res[1], res[2]
        if res[0] == "feasible":
            return None
        return False

    def run(self, emit, roots=None, deadline=None, stop_flag=None, checkpoint=None):
        """Walk the subtrees of `roots` (prefix strings; None = the whole tree) in order.

        emit(bits) receives every feasible pattern (an int8 array that is reused: copy it).
        checkpoint: an object with due() and save(frontier); when due, save gets the unexplored
        frontier at a node entry, consistent with the patterns emitted so far.
        Returns (complete, frontier); the frontier lists the unexplored prefixes (empty when complete).
        """
        self._emit = emit
        self._deadline = deadline
        self._stop_flag = stop_flag
        self._checkpoint = checkpoint
        self._pending = []
        roots = [""] if roots is None else list(roots)
        need = 6 * self.N + 500
        if need > sys.getrecursionlimit():
            sys.setrecursionlimit(need)
        X0, G0 = self._root_points()
        err = np.seterr(divide="ignore", invalid="ignore")
        try:
            for k, p in enumerate(roots):
                self._roots_left = list(roots[k + 1:])
                try:
                    self._run_root(p, X0, G0)
                except SearchStopped as e:
                    return False, e.frontier + list(roots[k + 1:])
            return True, []
        finally:
            np.seterr(**err)
            self._emit = None
            self._checkpoint = None
            self._reset_path()


# ---- the driver: sequential or parallel, time limit, Ctrl-C -------------------------------------------
@dataclass
class SearchOutcome:
    complete: bool
    frontier: list
    stats: dict
    interrupted: bool = False
    tasks: int = 1


class _SigintFlag:
    """While active (main thread only), Ctrl-C sets a flag (and an optional event) instead of raising."""

    def __init__(self, event=None):
        self.hit = False
        self.event = event
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        if self.event is not None:
            self.event.set()

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


# ---- parallel: time slices of prefix subtrees (src/execution.py runs them), dynamic splitting ----------
SLICE_MIN = 0.1          # seconds of a slice while fewer subtrees wait than there are workers (split fast)
SLICE_SHORT = 0.5        # ... while fewer than 4 per worker wait
SLICE_LONG = 2.0         # ... while more wait (least overhead per pattern)
STOP_WAIT = 60.0         # after a stop, how long running slices may take to hand back their state

def slice_seconds(waiting: int, workers: int) -> float:
    """Length of the next slice: short while few subtrees wait (they split into more), long when many do."""
    if waiting < workers:
        return SLICE_MIN
    return SLICE_SHORT if waiting < 4 * workers else SLICE_LONG


_ENGINE: dict = {}       # per worker process: the engine of the current problem (token -> LpSearch)


def walk_slice(problem, token: str, prefixes: list, seconds: float) -> dict:
    """Walk the subtrees of `prefixes` (in order) for at most `seconds` (checked at node entries) here.

    problem = (net, box, fixed_bits, tol, options); the engine is built once per token and process.
    Returns the patterns found (packbits rows, lexicographic order), the unexplored frontier of the
    subtrees (prefixes in order; empty when they are done), the stats and where and how long it ran.
    """
    eng = _ENGINE.get(token)
    if eng is None:
        _ENGINE.clear()
        eng = _ENGINE[token] = make_engine(*problem)
    eng.stats = new_stats()
    found = []
    w0, t0 = time.time(), time.monotonic()
    _, frontier = eng.run(lambda bits: found.append(bits.copy()), roots=list(prefixes), deadline=t0 + seconds)
    pats = np.array(found, np.uint8).reshape(len(found), eng.N)
    return {"prefixes": list(prefixes), "packed": np.packbits(pats, axis=1), "n": len(found),
            "frontier": list(frontier), "stats": eng.stats, "seconds": time.monotonic() - t0, "start": w0,
            "pid": os.getpid(), "host": socket.gethostname()}


class _Item:
    __slots__ = ("prefix", "state", "packed", "grow", "roots")

    def __init__(self, prefix, state="todo", packed=None, roots=None):
        self.prefix, self.state, self.packed, self.grow = prefix, state, packed, 1.0
        self.roots = roots if roots is not None else [prefix]


class OrderedWork:
    """The unfinished part of a parallel walk: disjoint prefix subtrees in lexicographic order.

    Each item waits (todo), runs, or is done: a done item holds the patterns one slice found below its
    roots; they are emitted once every earlier item is emitted. A finished slice replaces its items (one,
    or a run of consecutive small ones) by the patterns it found followed by its unexplored frontier
    (smaller subtrees, queued in place).
    """

    def __init__(self, roots):
        self.items = [_Item(p) for p in roots]

    def take(self, most: int = 1) -> list:
        """The first waiting item and up to most-1 waiting items right after it (now running); [] if none."""
        for k, it in enumerate(self.items):
            if it.state == "todo":
                group = [it]
                while len(group) < most and k + len(group) < len(self.items) and \
                        self.items[k + len(group)].state == "todo":
                    group.append(self.items[k + len(group)])
                for g in group:
                    g.state = "run"
                return group
        return []

    def waiting(self) -> int:
        return sum(1 for it in self.items if it.state == "todo")

    def _index(self, item) -> int:
        return next(k for k, it in enumerate(self.items) if it is item)

    def release(self, group) -> None:
        """Running items whose slice was abandoned: they wait again, nothing of them is kept."""
        for it in group:
            it.state = "todo"

    def finish(self, group, packed, n: int, frontier) -> None:
        """The slice of `group` (consecutive items) found n patterns (packed) and left `frontier`."""
        roots = [it.prefix for it in group]
        if n == 0 and list(frontier) == roots:        # no progress: the slice was too short
            for it in group:
                it.state = "todo"
            group[0].grow *= 2.0
            return
        new = [_Item(roots[0], "done", packed, roots)] if n else []
        new += [_Item(p) for p in frontier]
        k = self._index(group[0])
        self.items[k:k + len(group)] = new

    def flush(self, emit_packed) -> int:
        """Emit the done items at the front (in order); returns how many pattern rows were emitted."""
        k = 0
        rows = 0
        while k < len(self.items) and self.items[k].state == "done":
            emit_packed(self.items[k].packed)
            rows += len(self.items[k].packed)
            k += 1
        del self.items[:k]
        return rows

    def frontier(self) -> list[str]:
        """The prefixes whose subtrees hold exactly the patterns not yet emitted (after flush)."""
        out, cover = [], ()
        for it in self.items:
            if cover and it.prefix.startswith(cover):
                continue
            if it.state == "done":
                out += it.roots
                cover = tuple(it.roots)
            else:
                out.append(it.prefix)
                cover = ()
        return out


def group_size(waiting: int, workers: int) -> int:
    """How many consecutive waiting subtrees one slice takes: one while few wait, more (small ones, fewer
    round trips) while many do."""
    return max(1, min(64, waiting // (4 * workers)))


def _run_parallel(session, eng, problem, emit, roots, t_end, stop_flag, checkpoint, trace) -> SearchOutcome:
    """The walk as time slices on `session` (src.execution.Session), emitted in lexicographic order."""
    work = OrderedWork([""] if roots is None else roots)
    data = session.put(problem)
    token = uuid.uuid4().hex
    n_units = eng.N
    stats = new_stats()
    running: dict = {}
    slices = 0

    def emit_packed(packed):
        for row in np.unpackbits(packed, axis=1, count=n_units).astype(np.int8):
            emit(row)

    with _SigintFlag() as sig:
        stop_at = None
        try:
            while True:
                if stop_at is None and (sig.hit or (stop_flag is not None and stop_flag())
                                        or (t_end is not None and time.monotonic() >= t_end)):
                    stop_at = time.monotonic()
                while stop_at is None and len(running) < session.slots:
                    waiting = work.waiting()
                    group = work.take(group_size(waiting, session.slots))
                    if not group:
                        break
                    s = slice_seconds(waiting - len(group), session.slots) * group[0].grow
                    if t_end is not None:
                        s = max(0.0, min(s, t_end - time.monotonic()))
                    h = session.submit(walk_slice, data, token, [it.prefix for it in group], s)
                    running[h] = (group, time.time())
                if not running:
                    break
                if stop_at is not None and time.monotonic() > stop_at + STOP_WAIT:
                    session.cancel(list(running))
                    for group, _ in running.values():
                        work.release(group)
                    running.clear()
                    break
                for h in session.wait(list(running), timeout=0.2):
                    group, dispatched = running.pop(h)
                    r = session.result(h)
                    work.finish(group, r["packed"], r["n"], r["frontier"])
                    merge_stats(stats, r["stats"])
                    slices += 1
                    if trace is not None:
                        trace({**r, "dispatched": dispatched, "returned": time.time()})
                work.flush(emit_packed)
                if checkpoint is not None and checkpoint.due():
                    checkpoint.save(work.frontier())
        finally:
            if running:                      # an error: abandon what still runs
                session.cancel(list(running))
        work.flush(emit_packed)
    frontier = work.frontier()
    complete = not frontier
    return SearchOutcome(complete, frontier, stats, interrupted=sig.hit and not complete, tasks=slices)


def run_search(net, box, fixed_bits, tol, emit, *, roots=None, time_limit=None, workers: int = 1,
               options: EngineOptions | None = None, stop_flag=None, checkpoint=None, ray_address=None,
               trace=None) -> SearchOutcome:
    """Enumerate every feasible pattern below `roots` (None = the whole tree), streaming them to emit(bits).

    Stops at the time limit, on Ctrl-C (then interrupted=True) or when the callable stop_flag() turns true
    (checked in this process), with complete=False and the unexplored frontier. checkpoint (see
    LpSearch.run) receives the frontier of the patterns emitted so far whenever it is due.

    workers > 1 or a Ray address (src/execution.py) walks the tree in time slices of prefix subtrees on Ray
    workers; a slice hands back its patterns and the unexplored rest of its subtree, which is queued again.
    The emission order is lexicographic either way. trace(event), when given, gets every finished slice
    (prefix, seconds, frontier, n, packed, pid, host, start, dispatched, returned).
    """
    from .execution import Session

    options = options or EngineOptions()
    t_end = None if time_limit is None else time.monotonic() + max(0.0, float(time_limit))
    fixed = np.asarray(fixed_bits, np.int8)
    eng = make_engine(net, box, fixed, tol, options)
    if roots is not None:
        roots = check_frontier(roots, eng.N)
    with Session(max(1, int(workers)), ray_address) as session:
        if session.parallel:
            return _run_parallel(session, eng, (net, box, fixed, tol, options), emit, roots, t_end, stop_flag,
                                 checkpoint, trace)
    with _SigintFlag() as sig:
        complete, frontier = eng.run(emit, roots=roots, deadline=t_end, checkpoint=checkpoint,
                                     stop_flag=lambda: sig.hit or (stop_flag is not None and stop_flag()))
    return SearchOutcome(complete, frontier, eng.stats, interrupted=sig.hit and not complete)
