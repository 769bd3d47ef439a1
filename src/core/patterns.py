"""Activation patterns as keys: the one encoding of a pattern (or a prefix) for sets and lookups."""
from __future__ import annotations

import numpy as np


# ---------------------------------------------------------------------------------------------
# data patterns and the lower bound
# ---------------------------------------------------------------------------------------------
def pattern_keys(patterns) -> set[bytes]:
    """Keys of 0/1 patterns (rows), as `np.packbits(row).tobytes()` (the keys of `data_patterns`)."""
    p = np.asarray(patterns, np.uint8)
    if p.size == 0:
        return set()
    p = np.atleast_2d(p)
    packed = np.packbits(p, axis=1)
    return {r.tobytes() for r in packed}
