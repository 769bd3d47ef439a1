"""src/core/affine.py: the prefix maps reproduce the forward pass; box bounds are the extremes and, with a margin, sound."""
import numpy as np
from conftest import random_net

from src.core.affine import advance, box_bounds, pattern_affine_maps


def test_pattern_maps_reproduce_the_forward_pass():
    net = random_net([4, 6, 5, 3], seed=2)
    X = np.random.default_rng(0).random((200, 4))
    for x, p in zip(X, net.patterns(X)):
        maps, (F, e) = pattern_affine_maps(net, p)
        np.testing.assert_allclose(F @ x + e, net.forward(x)[0], rtol=1e-12, atol=1e-12)
        for (A, c), g in zip(maps, net.preactivations(x)):
            np.testing.assert_allclose(A @ x + c, g[0], rtol=1e-12, atol=1e-12)


def test_advance_is_batched():
    rng = np.random.default_rng(1)
    A, c, W, b = rng.normal(size=(7, 5, 3)), rng.normal(size=(7, 5)), rng.normal(size=(4, 5)), rng.normal(size=4)
    s = rng.integers(0, 2, size=(7, 5))
    A2, c2 = advance(A, c, W, b, s)
    for k in range(7):
        a1, c1 = advance(A[k], c[k], W, b, s[k])
        np.testing.assert_allclose(A2[k], a1, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(c2[k], c1, rtol=1e-12, atol=1e-12)


def test_box_bounds_are_the_extremes_and_sound_with_a_margin():
    rng = np.random.default_rng(2)
    A, c = rng.normal(size=(3, 6, 8)), rng.normal(size=(3, 6))
    lo, hi = -rng.random(8), rng.random(8)
    mn, mx = box_bounds(A, c, lo, hi, chunk_numbers=16)          # chunked like the big cases
    corners = lo + (hi - lo) * rng.integers(0, 2, size=(4000, 8))
    vals = np.einsum("kin,pn->pki", A, corners) + c
    assert np.all(vals.min(0) >= mn - 1e-9) and np.all(vals.max(0) <= mx + 1e-9)
    best_lo = lo * (A > 0) + hi * (A < 0)                          # the minimising vertex, per row
    np.testing.assert_allclose(mn, np.einsum("kin,kin->ki", A, best_lo) + c, rtol=1e-12, atol=1e-12)
    smn, smx = box_bounds(A, c, lo, hi, margin=1e-12)
    assert np.all(smn < mn) and np.all(smx > mx) and np.all(mn - smn < 1e-10)
