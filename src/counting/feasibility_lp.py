"""The linear region of one full activation pattern (its affine maps: src/core/affine.py) and one LP over it."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linprog

from src.core.affine import pattern_affine_maps
from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet


def region_rows(net: ReluNet, pattern):
    """(G, c, sign): all hidden pre-activations g = G x + c under S, and sign = +1 for bit 1, -1 for bit 0."""
    maps, _ = pattern_affine_maps(net, pattern)
    G = np.vstack([a for a, _ in maps])
    c = np.concatenate([b for _, b in maps])
    sign = np.where(np.asarray(pattern).reshape(-1) > 0, 1.0, -1.0)
    return G, c, sign


def max_margin_point(net: ReluNet, box: Box, pattern, two_sided: bool = False, cap: float = 1.0, rows=None):
    """Maximise t s.t. g_i >= t on bit-1 units, g_i <= 0 (or <= -t if two_sided) on bit-0 units, x in box.

    Returns (x, t), or (None, -inf) when the constraints are infeasible. With the definition of a
    feasible pattern (g > tol on 1s, g <= 0 on 0s), S is feasible iff t > tol (one-sided).
    t is capped at `cap` so the LP stays bounded. `rows` (a boolean mask over the units) keeps only
    those units' constraints (the other bits then only shape the affine maps of later layers).
    """
    G, c, sign = region_rows(net, pattern)
    if rows is not None:
        keep = np.asarray(rows, bool).reshape(-1)
        G, c, sign = G[keep], c[keep], sign[keep]
    n = net.n_inputs
    # variables (x, t); constraint  -sign*(G x + c) + t*[bit1 or two_sided] <= 0
    use_t = (sign > 0) | two_sided
    A_ub = np.hstack([-sign[:, None] * G, use_t[:, None].astype(np.float64)])
    b_ub = sign * c
    cost = np.zeros(n + 1)
    cost[-1] = -1.0
    bounds = [(lo, hi) for lo, hi in zip(box.lo, box.hi)] + [(None, cap)]
    res = linprog(cost, A_ub=A_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        return None, -np.inf
    return res.x[:n], float(res.x[-1])


def prefix_margin_point(net: ReluNet, box: Box, bits, rows):
    """max_margin_point for a prefix in layer order: bits (-1 = undecided, only after the decided units of
    the same or earlier layers) and the units whose constraint counts (decided ones)."""
    pattern = np.where(np.asarray(bits).reshape(-1) < 0, 0, np.asarray(bits).reshape(-1))
    return max_margin_point(net, box, pattern, rows=rows)


def is_feasible_pattern(net: ReluNet, box: Box, pattern, tol: float = DEFAULT_TOL) -> bool:
    """One LP: does some x in the box realise the pattern with g > tol on 1s and g <= 0 on 0s?"""
    _, t = max_margin_point(net, box, pattern)
    return t > tol
