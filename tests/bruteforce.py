"""Independent brute force for tiny nets: one LP per candidate pattern in {0,1}^N."""
import itertools

import numpy as np

from src.counting.feasibility_lp import is_feasible_pattern


def brute_force_patterns(net, box, tol=1e-6) -> set[tuple[int, ...]]:
    """Every feasible pattern, by trying all 2^N patterns (N <= ~14)."""
    n = net.n_hidden_units
    assert n <= 14, "brute force is for tiny nets"
    return {p for p in itertools.product((0, 1), repeat=n) if is_feasible_pattern(net, box, p, tol)}


def sampled_patterns(net, box, n_points=100_000, seed=0) -> set[tuple[int, ...]]:
    """Patterns seen at random points of the box (a subset of the feasible ones, up to ties)."""
    rng = np.random.default_rng(seed)
    pats = net.patterns(box.sample(n_points, rng))
    return {tuple(int(v) for v in p) for p in np.unique(pats, axis=0)}
