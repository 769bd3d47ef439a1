"""Sizes of the two-hidden-layer net: closed formulas per construction (all nodes, trie, feasible patterns)."""
from __future__ import annotations

import math

import numpy as np

HUGE = 10 ** 15            # integers at least this large are also reported as log10

# ---------------------------------------------------------------------------------------------
# Sizes
# ---------------------------------------------------------------------------------------------


def dense_params(layer_sizes) -> int:
    """Weights and biases of the fully connected net with these layer sizes (exact Python int)."""
    s = [int(v) for v in layer_sizes]
    return sum(a * b + b for a, b in zip(s[:-1], s[1:]))


def _log10(v: int) -> float:
    return round(math.log10(v), 3) if v > 0 else float("-inf")


def size_entry(layer_sizes, **extra) -> dict:
    """{"layer_sizes", "params"} as exact integers (+ their log10 when huge) and extra keys."""
    sizes = [int(v) for v in layer_sizes]
    params = dense_params(sizes)
    d = {"layer_sizes": sizes, "params": params}
    if params >= HUGE:
        d["log10_layer_sizes"] = [_log10(v) for v in sizes]
        d["log10_params"] = _log10(params)
    d.update(extra)
    return d


def all_nodes_violation_counts(hidden_sizes) -> list[int]:
    """Trie violation units per layer for all 2^N patterns: 2 n_l 2^(n_1 + ... + n_{l-1})."""
    out, before = [], 0
    for n in hidden_sizes:
        out.append(2 * int(n) * 2 ** before)
        before += int(n)
    return out


def trie_violation_counts(patterns, hidden_sizes) -> list[int]:
    """Trie violation units per layer for a list of patterns: distinct (prefix s_<l, unit i, bit s_l,i)."""
    P = np.asarray(patterns, dtype=np.uint8)
    out = []
    node = np.zeros(len(P), dtype=np.int64)
    off = 0
    for n in hidden_sizes:
        S = P[:, off:off + n].astype(np.int64)
        keys = np.sort(node[:, None] * 2 + S, axis=0)
        out.append(int(n * min(len(P), 1) + (np.diff(keys, axis=0) != 0).sum()) if len(P) else 0)
        node = np.unique(np.column_stack([node, S]), axis=0, return_inverse=True)[1].reshape(-1)
        off += n
    return out


def formula_sizes(layer_sizes, patterns=None) -> dict:
    """Sizes by formula, exact integers: the naive net and the trie-shared net (no stable-unit dropping).

    patterns=None means all 2^N patterns (computed without enumerating them).
    """
    n0, hidden, m = int(layer_sizes[0]), [int(v) for v in layer_sizes[1:-1]], int(layer_sizes[-1])
    N = sum(hidden)
    if patterns is None:
        p = 2 ** N
        viol = all_nodes_violation_counts(hidden)
    else:
        p = int(len(patterns))
        viol = trie_violation_counts(patterns, hidden)
    h2 = p * (m + 1)
    naive = size_entry([n0, p * (N + m), h2, m], counted="formula", violation_units=p * N, value_units=p * m,
                       patterns=p)
    value = p * m
    shared = size_entry([n0, sum(viol) + value, h2, m], counted="formula", violation_units=sum(viol),
                        violation_units_per_layer=viol, value_units=value, patterns=p,
                        note="prefix-trie sharing only; no dropping of stable units, no merging of equal units "
                             "(the built net with full sharing is at most this large)")
    return {"patterns": p, "naive": naive, "shared": shared}


def memory_params(entry: dict, n_hidden_units: int) -> int:
    """Numbers the build holds (dense layer 1 + nonzeros of layers 2 and 3), from a size entry."""
    n0, h1, h2, m = entry["layer_sizes"]
    p = entry["patterns"]
    return h1 * (n0 + 1) + p * (m + 1) * (n_hidden_units + 1) + 2 * p * m + h2 + m


def fmt_int(v: int) -> str:
    """An exact integer, with '(~10^x)' appended when huge."""
    v = int(v)
    return f"{v} (~10^{math.log10(v):.2f})" if v >= HUGE else str(v)
