import numpy as np
from conftest import brute_force_patterns, random_net, sampled_patterns

from src.core.affine import pattern_affine_maps
from src.core.box import Box
from src.counting.feasibility_lp import max_margin_point


def test_affine_maps_match_forward(rng):
    net = random_net([3, 4, 3, 2], seed=3)
    x = rng.random((20, 3))
    for xi, p in zip(x, net.patterns(x)):
        maps, (F, e) = pattern_affine_maps(net, p)
        np.testing.assert_allclose(F @ xi + e, net.forward(xi)[0], atol=1e-12)
        gs = net.preactivations(xi)
        for (A, c), g in zip(maps, gs):
            np.testing.assert_allclose(A @ xi + c, g[0], atol=1e-12)


def test_bruteforce_contains_sampled_patterns():
    for seed in range(3):
        net = random_net([2, 3, 3, 1], seed=seed)
        box = Box.uniform(2)
        feasible = brute_force_patterns(net, box)
        seen = sampled_patterns(net, box, 20000, seed)
        assert seen <= feasible
        assert len(feasible) >= len(seen) > 1


def test_max_margin_point_lies_in_region():
    net = random_net([2, 4, 1], seed=5)
    box = Box.uniform(2)
    for p in brute_force_patterns(net, box):
        x, t = max_margin_point(net, box, p, two_sided=True)
        if t > 1e-6:
            assert tuple(net.patterns(x)[0]) == p
