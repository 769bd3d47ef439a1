"""Activation patterns as keys and strings: the one encoding of a pattern (or a prefix) for sets and files.

A pattern is a 0/1 vector over all hidden units, layer by layer (uint8). Its key is
`np.packbits(row).tobytes()`: 8 units a byte, first unit in the most significant bit, so for
patterns of one length the byte order of keys is their lexicographic order (the order in which
the lp backend emits them). A prefix (the decided units of a path in the region tree, in layer
order) is written as a string of 0/1 characters, e.g. in frontier and checkpoint files.
"""
from __future__ import annotations

import numpy as np

from src.core.errors import ToolError


def pattern_key(pattern) -> bytes:
    """The key of one 0/1 pattern."""
    return np.packbits(np.asarray(pattern, np.uint8).reshape(-1)).tobytes()


def row_keys(patterns) -> list[bytes]:
    """The key of each 0/1 pattern (row), in order."""
    p = np.asarray(patterns, np.uint8)
    if p.size == 0:
        return []
    return [r.tobytes() for r in np.packbits(np.atleast_2d(p), axis=1)]


def pattern_keys(patterns) -> set[bytes]:
    """The keys of 0/1 patterns (rows)."""
    return set(row_keys(patterns))


def patterns_of_keys(keys, n_units: int) -> np.ndarray:
    """The patterns (uint8 (P, n_units)) of a collection of keys, sorted lexicographically."""
    keys = sorted(keys)
    if not keys:
        return np.zeros((0, n_units), np.uint8)
    packed = np.frombuffer(b"".join(keys), np.uint8).reshape(len(keys), -1)
    return np.unpackbits(packed, axis=1, count=n_units)


def pattern_string(bits) -> str:
    """The 0/1 string of a pattern or a prefix ("0110...")."""
    return "".join("1" if b else "0" for b in np.asarray(bits).reshape(-1))


def check_prefixes(prefixes, n_units: int, what: str = "frontier") -> list[str]:
    """Validate prefixes: a list of 0/1 strings, each at most n_units long (ToolError naming `what` otherwise)."""
    if not isinstance(prefixes, (list, tuple)):
        raise ToolError(f"{what}: expected a list of prefix strings")
    for k, p in enumerate(prefixes):
        if not isinstance(p, str) or len(p) > n_units or any(ch not in "01" for ch in p):
            raise ToolError(f"{what} item {k}: expected a string of 0/1 of length <= {n_units}, "
                            f"got {str(p)[:40]!r}")
    return list(prefixes)
