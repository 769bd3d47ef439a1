"""Bounds on the number of linear regions (feasible activation patterns) of a ReLU net on a box.

A pattern S is feasible on the box B (the definition of the enumeration: docs/counting.md, the contract in
src/counting/problem.py, tests/bruteforce.py) iff some x in B has g_i(x) > tol on the units with bit 1 and g_i(x) <= 0 on
those with bit 0. For the count of feasible patterns:

  lower bound   distinct feasible patterns known: those certified by concrete points of B
                (`data_patterns`: a point whose every g is > tol or <= 0 realises its own
                pattern) together with the enumerated ones (`lower_bound`);
  upper bound   Serra, Tjandraatmadja & Ramalingam (ICML 2018), Theorem 1, as an exact integer
                (`theorem1_upper_bound`), optionally tightened by the stable units (proof in its
                docstring), next to the plain 2^(unstable units) (`upper_bounds`).

Pure numpy and Python integers; see docs/stability.md.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from src.core.box import Box
from src.core.network import ReluNet
from src.core.patterns import pattern_keys, patterns_of_keys
from src.stability.witnesses import CHUNK, iter_chunks


# ---------------------------------------------------------------------------------------------
# upper bounds
# ---------------------------------------------------------------------------------------------
def theorem1_upper_bound(n0: int, hidden_sizes: Sequence[int], stable_active: Sequence[int] | None = None,
                         stable_inactive: Sequence[int] | None = None) -> int:
    """Theorem 1 of Serra, Tjandraatmadja & Ramalingam, "Bounding and Counting Linear Regions of Deep
    Neural Networks" (ICML 2018, arXiv:1711.02114), as an exact int.

    For n0 inputs and L hidden layers of widths n_1..n_L the number of regions is at most

        sum over (j_1..j_L) in J of  prod_l C(n_l, j_l),
        J = {(j_1..j_L) integers : 0 <= j_l <= min(n0, n_1 - j_1, ..., n_{l-1} - j_{l-1}, n_l) for all l}.

    Computed by dynamic programming over the "dimension budget" d_l = min(n0, n_k - j_k, k <= l):
    a map budget -> sum of the products so far, O(L * n0 * max n_l) big-int operations.

    With stable units (a_l = stable_active[l] units with g > tol on the whole box, i_l =
    stable_inactive[l] with g <= 0 on it, u_l = n_l - a_l - i_l the rest) the bound becomes

        sum over J' of prod_l C(u_l, j_l),
        J' = {0 <= j_l <= min(n0, a_1 + u_1 - j_1, ..., a_{l-1} + u_{l-1} - j_{l-1}, u_l)},

    which equals Theorem 1 for a_l = i_l = 0 and never exceeds it (J' is a subset of J and
    C(u_l, j) <= C(n_l, j)). Proof that it bounds the feasible patterns on the box B:
    (1) A stably inactive unit outputs 0 on B and has bit 0 in every feasible pattern: removing it
        changes neither the function on B nor the number of feasible patterns.
    (2) Strict signs. Fix one witness x_S in B per feasible pattern S. Lower the biases of layer l
        by delta_l with delta_1 = delta, delta_l = delta + 2 |W_l|_inf E_{l-1}, where E_l = delta_l +
        |W_l|_inf E_{l-1} bounds the change of layer l's pre-activations (ReLU is 1-Lipschitz). Every
        g_i(x_S) <= 0 becomes < 0, and for small delta every g_i(x_S) > tol stays > 0 and every
        stably active unit stays > 0 on all of compact B. So distinct S give distinct sign
        vectors with no zero entry, each on a nonempty set
        R(S) = {x in B : every g_i(x) != 0 with the signs of S}.
    (3) Lemma. For m affine functions on a convex set C of affine dimension <= d, there is an
        injection phi from the nonempty sign cells {x in C : h_i(x) > 0 for i in A, < 0 otherwise}
        to subsets of {1..m} with |phi(R)| <= d and phi(R) inside R's negative set. Induction on m
        (deletion-restriction): a cell R' of the first m-1 functions not cut by h_m keeps phi(R');
        if h_m cuts it, the part with h_m > 0 keeps phi(R') and the part with h_m < 0 gets
        psi(R' & {h_m = 0}) + {m}, psi being the injection of the restriction to the hyperplane
        (dimension <= d - 1, the induction on d); the cells R' & {h_m = 0} of distinct R' are
        distinct. Base: m = 0 or d = 0, one cell, phi = {}.
    (4) Layers. With the signs of layers < l fixed, the set of x is convex and h_{l-1} is affine on
        it, with an image C of dimension <= D = min(n0, #positive units of each layer < l).
        Layer l's stably active units are positive on all of C; its u_l other units are affine
        functions on C, so (3) maps the cells they cut C into injectively to sets of j_l <= min(D,
        u_l) negative units (C(u_l, j_l) choices), and each cell has at most a_l + u_l - j_l positive
        units, so its image has dimension <= min(D, a_l + u_l - j_l). Chaining the injections
        over the layers maps the sets R(S) injectively into the sequences counted by J'.
    Any split works as long as the units counted in a_l (i_l) really are stably active
    (inactive), so sound stability results may be used, exact or not.
    """
    n0 = int(n0)
    sizes = [int(n) for n in hidden_sizes]
    L = len(sizes)
    act = [0] * L if stable_active is None else [int(a) for a in stable_active]
    ina = [0] * L if stable_inactive is None else [int(i) for i in stable_inactive]
    if n0 < 0 or any(n < 0 for n in sizes) or len(act) != L or len(ina) != L:
        raise ValueError("need n0 >= 0, widths >= 0 and one stable count per hidden layer")
    if any(a < 0 or i < 0 or a + i > n for a, i, n in zip(act, ina, sizes)):
        raise ValueError("stable counts must be >= 0 and at most the layer width")
    states = {n0: 1}                   # dimension budget -> sum of products of binomials so far
    for n, a, i in zip(sizes, act, ina):
        u = n - a - i
        binom = [math.comb(u, j) for j in range(u + 1)]
        nxt: dict[int, int] = {}
        for d, w in states.items():
            for j in range(min(d, u) + 1):
                d2 = min(d, a + u - j)
                nxt[d2] = nxt.get(d2, 0) + w * binom[j]
        states = nxt
    return sum(states.values())


def theorem1_log10_float(n0: int, hidden_sizes: Sequence[int]) -> float:
    """log10 of the Theorem 1 sum computed in floating point (log-sum-exp over the same DP).

    An independent float computation of `theorem1_upper_bound` for checking it on large nets.
    """
    def lcomb(n, k):
        return (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)) / math.log(10)

    states = {int(n0): 0.0}            # budget -> log10 of the sum
    for n in hidden_sizes:
        acc: dict[int, list[float]] = {}
        for d, lw in states.items():
            for j in range(min(d, n) + 1):
                acc.setdefault(min(d, n - j), []).append(lw + lcomb(n, j))
        states = {}
        for d, terms in acc.items():
            m = max(terms)
            states[d] = m + math.log10(sum(10.0 ** (t - m) for t in terms))
    m = max(states.values())
    return m + math.log10(sum(10.0 ** (v - m) for v in states.values()))


def bound_entry(value: int) -> dict:
    """{"value": decimal string, "log10": float} of a non-negative int (exact at any size)."""
    value = int(value)
    return {"value": str(value), "log10": math.log10(value) if value > 0 else float("-inf")}


def upper_bounds(net: ReluNet, stability=None) -> dict:
    """The upper bounds of the count on a box, labelled, each as `bound_entry`.

    theorem1: Theorem 1 for the architecture; theorem1_stable (with a Stability): tightened by its
    stable units; two_pow_unstable: 2^(units not proven stable) (2^N without a Stability).
    "upper_bound" is the smallest of them.
    """
    sizes = net.hidden_sizes
    out = {"theorem1": bound_entry(theorem1_upper_bound(net.n_inputs, sizes))}
    if stability is not None:
        act = [int(a.sum()) for a in stability.active]
        ina = [int(i.sum()) for i in stability.inactive]
        out["theorem1_stable"] = bound_entry(theorem1_upper_bound(net.n_inputs, sizes, act, ina))
        unstable = sum(n - a - i for n, a, i in zip(sizes, act, ina))
    else:
        unstable = sum(sizes)
    out["two_pow_unstable"] = bound_entry(2 ** unstable)
    best = min(int(v["value"]) for v in out.values())
    return {"upper_bound": bound_entry(best), **out}


@dataclass
class DataPatterns:
    """Distinct certified patterns per source and in all sources together.

    sources: [{"source", "points" (in the box), "certified_points", "distinct_patterns"}, ...];
    keys: the union, packed (`pattern_keys`); witness_min / witness_max: per layer, min and max
    of g over every point used: analyse_stability(data=<this>) takes them as witnesses without a
    second forward pass.
    """

    sources: list[dict]
    keys: set[bytes]
    n_units: int
    witness_min: list[np.ndarray] | None = None
    witness_max: list[np.ndarray] | None = None
    per_source_keys: dict[str, set[bytes]] = field(default_factory=dict)
    stopped_by_time_limit: bool = False       # the deadline ended the pass: fewer points, still sound

    @property
    def n_points(self) -> int:
        return int(sum(s["points"] for s in self.sources))

    @property
    def union(self) -> int:
        return len(self.keys)

    def patterns(self) -> np.ndarray:
        """The certified patterns as uint8 (P, N), sorted lexicographically."""
        return patterns_of_keys(self.keys, self.n_units)

    def to_json(self) -> dict:
        return {"sources": [dict(s) for s in self.sources], "union": self.union}


def data_patterns(net: ReluNet, points_by_source: dict, tol: float, box: Box, chunk: int = CHUNK,
                  deadline: float | None = None) -> DataPatterns:
    """Distinct feasible patterns certified by the given points of the box, per source and overall.

    points_by_source: {label: array (n, n0) or SeededSamples}, e.g. src.stability.witnesses.data_points_for_box(box).
    Points outside the box are dropped. A point certifies its own pattern (bit 1 iff g > tol) iff
    every unit has g > tol or g <= 0, the enumeration's feasibility test at a point
    (`_verify` in src/counting/tree_walk.py); points with some g in (0, tol] certify nothing. One chunked forward
    pass per source. deadline (time.perf_counter): the pass stops between chunks once it has passed
    (`stopped_by_time_limit`; the points used so far still certify what they certify).
    """
    n = net.n_hidden_units
    sources, keys, per = [], set(), {}
    wmin = wmax = None
    stopped = False
    for label, pts in points_by_source.items():
        n_in = n_cert = 0
        seen: set[bytes] = set()
        for x in iter_chunks(pts, chunk):
            if deadline is not None and time.perf_counter() >= deadline:
                stopped = True
                break
            x = x[box.contains(x)]
            if not len(x):
                continue
            gs = net.preactivations(x)
            if wmin is None:
                wmin = [g.min(axis=0) for g in gs]
                wmax = [g.max(axis=0) for g in gs]
            else:
                for l, g in enumerate(gs):
                    wmin[l] = np.minimum(wmin[l], g.min(axis=0))
                    wmax[l] = np.maximum(wmax[l], g.max(axis=0))
            G = np.concatenate(gs, axis=1) if gs else np.zeros((len(x), 0))
            on, off = G > tol, G <= 0
            ok = np.all(on | off, axis=1)
            n_in += len(x)
            n_cert += int(ok.sum())
            if ok.any():
                seen.update(pattern_keys(on[ok]))
        per[label] = seen
        keys |= seen
        sources.append({"source": str(label), "points": n_in, "certified_points": n_cert,
                        "distinct_patterns": len(seen)})
    return DataPatterns(sources, keys, n, wmin, wmax, per, stopped_by_time_limit=stopped)


def lower_bound(data: DataPatterns | None, enumerated=None) -> int:
    """Distinct feasible patterns known: the data-certified ones together with `enumerated`.

    enumerated: uint8 patterns (P, N) (e.g. PatternSink.patterns()), or a set of keys from
    `pattern_keys`. Every pattern counted is feasible (certified by a point or by the
    enumeration), so the result is a lower bound of the count (equal to it for a complete count).
    """
    keys = set() if data is None else set(data.keys)
    if enumerated is not None:
        keys |= enumerated if isinstance(enumerated, set) else pattern_keys(enumerated)
    return len(keys)
