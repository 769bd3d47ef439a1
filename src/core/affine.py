"""Region geometry: the affine maps of a fixed activation prefix, and bounds of affine maps on a box.

On the region of a pattern S, layer l's pre-activation is affine in x: g_l = A_l x + c_l with
    A_1 = W_1, c_1 = b_1,   A_{l+1} = W_{l+1} diag(s_l) A_l,   c_{l+1} = W_{l+1} (s_l * c_l) + b_{l+1},
and the output is F x + e (the same step through the output layer). `advance` is the one
definition of that step; everything that follows a pattern through the net uses it (region LPs,
the LP engine, the two-hidden-layer construction, compression's layer merge).
"""
from __future__ import annotations

import numpy as np


def advance(A: np.ndarray, c: np.ndarray, W: np.ndarray, b: np.ndarray, s) -> tuple[np.ndarray, np.ndarray]:
    """(W diag(s) A, W (s * c) + b): the next layer's affine map. A (..., n_l, n0), c and s (..., n_l)."""
    sf = np.asarray(s, dtype=np.float64)
    return np.matmul(W, sf[..., :, None] * A), (sf * c) @ W.T + b


def pattern_affine_maps(net, pattern):
    """([(A_l, c_l) for each hidden layer], (F, e)) for the flat 0/1 pattern."""
    bits = net.split_pattern(np.asarray(pattern))
    A, c = net.weights[0], net.biases[0]
    maps = []
    for l, s in enumerate(bits):
        maps.append((A, c))
        A, c = advance(A, c, net.weights[l + 1], net.biases[l + 1], s)
    return maps, (A, c)


def box_bounds(A: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, margin: float = 0.0,
               chunk_numbers: int = 4_000_000) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper bounds of A x + c over the box lo <= x <= hi (A (..., k, n), c (..., k)).

    Computed as A+ lo + A- hi + c and A+ hi + A- lo + c (the exact extremes, up to the rounding of
    the sums). margin > 0 widens both by margin * (|c| + |A| max(|lo|, |hi|)) + tiny, which covers
    that rounding when margin >= n * 2^-52: the bounds are then sound.
    """
    A = np.asarray(A, dtype=np.float64)
    lead, n = A.shape[:-1], A.shape[-1]
    Af = A.reshape(-1, n)
    lo_v, hi_v = np.empty(len(Af)), np.empty(len(Af))
    step = max(1, chunk_numbers // max(1, n))
    absbox = np.maximum(np.abs(lo), np.abs(hi)) if margin > 0 else None
    widen = np.zeros(len(Af)) if margin > 0 else None
    for s in range(0, len(Af), step):
        blk = Af[s:s + step]
        ap, an = np.maximum(blk, 0.0), np.minimum(blk, 0.0)
        lo_v[s:s + step] = ap @ lo + an @ hi
        hi_v[s:s + step] = ap @ hi + an @ lo
        if margin > 0:
            widen[s:s + step] = (ap - an) @ absbox
    c = np.broadcast_to(c, lead).reshape(-1)
    lo_v, hi_v = lo_v + c, hi_v + c
    if margin > 0:
        w = margin * (np.abs(c) + widen) + 1e-300
        lo_v, hi_v = lo_v - w, hi_v + w
    return lo_v.reshape(lead), hi_v.reshape(lead)
