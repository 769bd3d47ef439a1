"""Transformation of a ReLU net into a net with two hidden layers, built from activation patterns.

Original net: x in D = [lo,hi]^n0, hidden layers l = 1..L (W_l, b_l), linear output (W_{L+1}, b_{L+1}).
For a pattern S = (s_1..s_L) the pre-activation of layer l is g_l = A_l^S x + c_l^S, which depends
only on s_1..s_{l-1}; the output is F^S x + e^S. The new net (issue 5):

  hidden layer 1: violation units  v_{S,l,i} = ReLU(-sigma (A_l^S x + c_l^S)_i), sigma = +1 for bit 1, -1 for bit 0
                  value units      u_{S,k}   = ReLU(F_k^S x + e_k^S + K_{S,k}),  K = max(0, -min_D(F_k^S x + e_k^S))
  hidden layer 2: z_{S,k} = ReLU(u_{S,k} - M V_S),  t_S = ReLU(1 - M V_S),  V_S = sum of S's violation units
  output:         y_k = sum_S (z_{S,k} - K_{S,k} t_S)

It equals the original net on D except where some hidden pre-activation g of the original net has
|g| <= band_width = max(1, max_D u)/M (TransformResult.band_width).

Sharing (`share`):
  "none": the naive net, |P|(N+m) / |P|(m+1) units.
  "trie": v_{S,l,i} is shared by all patterns with the same prefix s_1..s_{l-1} and bit s_{l,i}
          (the nodes of a prefix trie); sizes equal `formula_sizes`.
  "full": trie + drop violation units identically zero on D (box bound of the affine function),
          leave out patterns that are provably empty on D (a unit whose side of S cannot hold anywhere
          on D by the same bound), and merge units with bit-identical weights and bias (e.g. value units
          of patterns that differ only in units with zero outgoing weights, or dead prefixes).
          For all 2^N patterns, `nonempty_patterns` grows only the non-provably-empty ones.
Everything here is pure numpy/scipy; `transform_run` is the step transform_networks_using_all_nodes.py runs.
"""
from __future__ import annotations

import bisect
import math
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from . import layout
from .domain import Box, DomainSpec, box_for, box_from_domain_name
from .geometry import advance, box_bounds
from .ioutils import ToolError, atomic_write_json
from .network import ReluNet
from .weights_io import write_weights
from .verification import batched_forward as _forward, match_rows as _match, min_abs_preactivation  # noqa: F401

SHARE_MODES = ("full", "trie", "none")
DEFAULT_BIG_M = 1e9          # band width max(1, max u)/M; the interior is exact for any M (violations are exactly 0)
MAX_BIG_M = 1e150          # M * V must stay far below the float64 overflow
DEFAULT_MAX_UNITS = 4_000_000
BOX_MARGIN = 1e-12            # relative widening of box bounds: covers the rounding of their sums (sound)
DEFAULT_MAX_PARAMS = 100_000_000
DEFAULT_MAX_FILE_PARAMS = 50_000_000
HUGE = 10 ** 15            # integers at least this large are also reported as log10


# ---------------------------------------------------------------------------------------------
# The new net
# ---------------------------------------------------------------------------------------------
@dataclass
class TwoHiddenNet:
    """y = W3 ReLU(W2 ReLU(W1 x + b1) + b2) + b3 with a dense W1 and sparse (CSR) W2, W3."""

    W1: np.ndarray
    b1: np.ndarray
    W2: sp.csr_matrix
    b2: np.ndarray
    W3: sp.csr_matrix
    b3: np.ndarray

    @property
    def layer_sizes(self) -> list[int]:
        return [int(self.W1.shape[1]), int(self.W1.shape[0]), int(self.W2.shape[0]), int(self.W3.shape[0])]

    @property
    def n_params(self) -> int:
        """Parameters of the dense net of this shape (what weights.dat holds)."""
        return dense_params(self.layer_sizes)

    @property
    def nonzeros(self) -> int:
        """Nonzero weights and biases actually stored."""
        return int(np.count_nonzero(self.W1) + np.count_nonzero(self.b1) + self.W2.count_nonzero()
                   + np.count_nonzero(self.b2) + self.W3.count_nonzero() + np.count_nonzero(self.b3))

    def forward(self, x, batch: int | None = None, progress: bool = False) -> np.ndarray:
        """Outputs (batch, m), float64. Points go in batches and W1 in row blocks (with the matching
        column blocks of W2), so that no intermediate holds more than a few million numbers."""
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.W1.shape[1]:
            raise ValueError(f"inputs must have {self.W1.shape[1]} features, got shape {x.shape}")
        h1_n, h2_n = self.W1.shape[0], self.W2.shape[0]
        bs = batch or int(max(1, min(2048, 4e6 // max(h2_n, 1))))
        rc = int(max(1, 4e6 // bs))
        if rc >= h1_n:
            blocks = [(0, h1_n, self.W2)]
        else:
            csc = self.W2.tocsc()
            blocks = [(a, min(a + rc, h1_n), csc[:, a:a + rc].tocsr()) for a in range(0, h1_n, rc)]
        out = np.empty((x.shape[0], self.W3.shape[0]))
        for s in _iter(range(0, x.shape[0], bs), progress, "evaluate new net"):
            xb = x[s:s + bs]
            acc = np.zeros((h2_n, len(xb)))
            for a, b, W2b in blocks:
                h1 = np.maximum(xb @ self.W1[a:b].T + self.b1[a:b], 0.0)
                acc += W2b @ h1.T
            h2 = np.maximum(acc.T + self.b2, 0.0)
            out[s:s + bs] = np.asarray(self.W3 @ h2.T).T + self.b3
        return out

    def to_relunet(self) -> ReluNet:
        """The same net as a dense ReluNet (only for nets that fit in memory densely)."""
        return ReluNet([self.W1, self.W2.toarray(), self.W3.toarray()], [self.b1, self.b2, self.b3])

    def save(self, path, model_path: str = "", accuracy: float | None = None) -> None:
        """Write weights.dat (levels = 3, n = [n0, H1, H2, m]) with src.weights_io.write_weights, which
        streams the sparse W2/W3 (zeros as `0`), so ReluNet.load gives back exactly these numbers."""
        write_weights(path, [self.W1, self.W2, self.W3], [self.b1, self.b2, self.b3], model_path=model_path,
                      accuracy=accuracy)


@dataclass
class TransformResult:
    """The built net plus what the construction did."""

    net: TwoHiddenNet
    share: str
    big_m: float
    band_width: float                 # max(1, u_max) / M, in pre-activation units
    u_max: float                      # max over value units of max_D u
    patterns: int                     # patterns given
    patterns_used: np.ndarray         # indices (into the given patterns) of those in the net
    pruned: np.ndarray                # indices of patterns left out as provably empty on D
    violation_units: list[int]        # per hidden layer of the original net, in the new net
    value_units: int
    dropped_units: int                # violation units identically zero on D (left out)
    merged_units: int                 # units equal to an earlier one (shared)
    seconds: float
    notes: list[str] = field(default_factory=list)

    def size_entry(self) -> dict:
        """Sizes of the built net: layer widths, dense parameter count, nonzeros and unit counts."""
        return size_entry(self.net.layer_sizes, counted="built", nonzeros=self.net.nonzeros,
                          violation_units=int(sum(self.violation_units)),
                          violation_units_per_layer=[int(v) for v in self.violation_units],
                          value_units=int(self.value_units), patterns=int(len(self.patterns_used)),
                          dropped_units=int(self.dropped_units), merged_units=int(self.merged_units),
                          pruned_patterns=int(len(self.pruned)))


@dataclass
class TransformReport:
    """What `transform_run` did: the exit code of the script, the sizes, the .json record it wrote
    (None with size_only), the files, the built net, and the warning/error line for stderr."""

    exit_code: int                     # 0, or 1: the interior-point check failed / incomplete list not written
    sizes: dict
    record: dict | None = None
    json_path: Path | None = None
    dat_path: Path | None = None       # the two-hidden-layer weights file, when written
    net: TwoHiddenNet | None = None
    message: str | None = None         # "warning: …" / "error: …" (the script prints it on stderr)


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


# ---------------------------------------------------------------------------------------------
# Construction
# ---------------------------------------------------------------------------------------------
def check_big_m(big_m) -> float:
    m = float(big_m)
    if not np.isfinite(m) or m <= 0:
        raise ToolError(f"--big-m must be a finite number > 0, got {big_m}")
    if m > MAX_BIG_M:
        raise ToolError(f"--big-m {big_m:g} is too large for float64 (M times a violation could overflow); "
                        f"use at most {MAX_BIG_M:g}")
    return m


def all_patterns(n_units: int, limit: int = 1 << 24) -> np.ndarray:
    """All 2^N patterns as uint8 (2^N, N), first unit most significant (itertools.product order)."""
    if 2 ** n_units > limit:
        raise ToolError(f"2^{n_units} patterns are too many to list (at most {limit})")
    idx = np.arange(2 ** n_units, dtype=np.int64)
    shifts = np.arange(n_units - 1, -1, -1, dtype=np.int64)
    return ((idx[:, None] >> shifts[None, :]) & 1).astype(np.uint8)


def box_min_max(R: np.ndarray, d: np.ndarray, box: Box):
    """Sound min and max over the box of the affine functions R[..., :] x + d (any leading shape)."""
    return box_bounds(R, d, box.lo, box.hi, margin=BOX_MARGIN)


_COEFS: dict[int, np.ndarray] = {}


def _row_hashes(R: np.ndarray, d: np.ndarray, salt: int, chunk_numbers: int = 2_000_000) -> np.ndarray:
    """A 64-bit hash of each row's bytes (w, b): integer arithmetic on the bit patterns, so equal rows
    always hash equally."""
    n0 = R.shape[1]
    if n0 + 1 not in _COEFS:
        _COEFS[n0 + 1] = np.random.default_rng(20190527).integers(1, 2 ** 63, size=n0 + 1, dtype=np.uint64) \
            | np.uint64(1)
    coef = _COEFS[n0 + 1]
    V = R.view(np.uint64)
    h = np.empty(len(R), dtype=np.uint64)
    chunk = max(1, chunk_numbers // max(1, n0))
    for s in range(0, len(R), chunk):
        h[s:s + chunk] = (V[s:s + chunk] * coef[:-1]).sum(axis=1, dtype=np.uint64)
    h += d.view(np.uint64) * coef[-1]
    return h ^ np.uint64(salt)


class _RowPool:
    """Rows (w, b) of hidden layer 1 in order; with merge=True a row bit-identical to an earlier one of
    the same kind is stored once (hash lookup, always confirmed by exact comparison)."""

    def __init__(self, merge: bool):
        self.merge = merge
        self.R: list[np.ndarray] = []
        self.d: list[np.ndarray] = []
        self.starts: list[int] = []
        self.count = 0
        self.offered = 0
        self._index: dict[int, list[int]] = {}

    def _stored(self, k: int):
        b = bisect.bisect_right(self.starts, k) - 1
        return self.R[b][k - self.starts[b]], self.d[b][k - self.starts[b]]

    def add(self, R: np.ndarray, d: np.ndarray, kind: int = 0) -> np.ndarray:
        """Store rows R (n, n0) with biases d (n,) (the pool takes the arrays over); returns their indices."""
        n = len(d)
        self.offered += n
        R = np.ascontiguousarray(R, dtype=np.float64)
        d = np.ascontiguousarray(d, dtype=np.float64)
        base = self.count
        if not self.merge:
            if n:
                self.starts.append(base)
                self.R.append(R)
                self.d.append(d)
            self.count += n
            return np.arange(base, base + n, dtype=np.int64)
        if n == 0:
            return np.zeros(0, dtype=np.int64)
        R += 0.0                                     # -0.0 -> 0.0, so equal numbers have equal bytes
        d += 0.0
        h = _row_hashes(R, d, kind)
        order = np.argsort(h, kind="stable")
        hs = h[order]
        start = np.r_[True, hs[1:] != hs[:-1]]
        rep = order[np.maximum.accumulate(np.where(start, np.arange(n), 0))]
        eq = np.empty(n, dtype=bool)                 # row equals the first row of its hash group?
        chunk = max(1, 2_000_000 // max(1, R.shape[1]))
        for s in range(0, n, chunk):
            o, r = order[s:s + chunk], rep[s:s + chunk]
            eq[s:s + chunk] = (R[o] == R[r]).all(axis=1) & (d[o] == d[r])
        owner = np.empty(n, dtype=np.int64)
        owner[order] = np.where(eq, rep, order)      # a hash collision keeps its own row
        reps = np.flatnonzero(owner == np.arange(n))
        target = np.empty(n, dtype=np.int64)
        new = []
        for j, key in zip(reps.tolist(), h[reps].tolist()):
            found = -1
            for k in self._index.get(key, ()):
                r, b = self._stored(k) if k < base else (R[new[k - base]], d[new[k - base]])
                if b == d[j] and np.array_equal(r, R[j]):
                    found = k
                    break
            if found < 0:
                found = base + len(new)
                self._index.setdefault(key, []).append(found)
                new.append(j)
            target[j] = found
        if new:
            self.starts.append(base)
            keep_all = len(new) == n
            self.R.append(R if keep_all else R[new])
            self.d.append(d if keep_all else d[new])
        self.count += len(new)
        return target[owner]

    def take(self, n_cols: int):
        """All rows as one (count, n_cols) array and the biases; the pool is emptied."""
        if not self.R:
            R = np.zeros((0, n_cols))
        else:
            R = self.R[0] if len(self.R) == 1 else np.concatenate(self.R, axis=0)
        d = np.concatenate(self.d) if self.d else np.zeros(0)
        self.R, self.d = [], []
        return R, d


def _advance(A, c, parent, bits, W, b, chunk_numbers: int = 4_000_000):
    """Children's affine maps (geometry.advance of each child's parent map and layer bits), in chunks."""
    q, n0 = len(parent), A.shape[2]
    out_A = np.empty((q, W.shape[0], n0))
    out_c = np.empty((q, W.shape[0]))
    chunk = max(1, chunk_numbers // max(1, A.shape[1] * n0))
    for s in range(0, q, chunk):
        p = parent[s:s + chunk]
        out_A[s:s + chunk], out_c[s:s + chunk] = advance(A[p], c[p], W, b, bits[s:s + chunk])
    return out_A, out_c


def _child_nodes(node: np.ndarray, bits: np.ndarray):
    """Node ids of (parent node, layer bits) per pattern, and the first pattern of each node."""
    key = np.column_stack([node, bits.astype(np.int64)])
    _, first, inv = np.unique(key, axis=0, return_index=True, return_inverse=True)
    return inv.reshape(-1), first


def nonempty_patterns(net: ReluNet, box: Box, max_patterns: int, max_numbers: int):
    """The patterns of all 2^N that are not provably empty on D, grown through the prefix trie.

    At every trie node the exact box bounds of each unit's g decide which bits are possible
    (bit 1 needs max_D g > 0, bit 0 needs min_D g <= 0); stable units fix their bit. Returns
    (P, info) with P uint8 (count, N) in lexicographic order, or (None, info) when more than
    max_patterns prefixes (a lower bound on the count) or more than max_numbers numbers of affine
    maps would be needed; info = {"patterns": count or lower bound, "complete", "layer"}.
    """
    hs = net.hidden_sizes
    prefixes = np.zeros((1, 0), dtype=np.uint8)
    A, c = net.weights[0][None], net.biases[0][None]
    combos: dict[int, np.ndarray] = {}
    for l, n_l in enumerate(hs):
        gmin, gmax = box_min_max(A, c, box)
        can1, can0 = gmax > 0, gmin <= 0
        free = can1 & can0
        nfree = free.sum(axis=1)
        total = sum(2 ** int(f) for f in nfree)
        n_next = net.weights[l + 1].shape[0]
        if total > max_patterns or total * n_next * net.n_inputs > max_numbers:
            return None, {"patterns": total, "complete": False, "layer": l + 1}
        parents, bits = [], []
        for j in range(len(prefixes)):
            f = int(nfree[j])
            if f not in combos:
                combos[f] = all_patterns(f)
            b = np.repeat((can1[j] & ~can0[j]).astype(np.uint8)[None, :], len(combos[f]), axis=0)
            b[:, free[j]] = combos[f]
            bits.append(b)
            parents.append(np.full(len(b), j, dtype=np.int64))
        parent, bits = np.concatenate(parents), np.concatenate(bits)
        A, c = _advance(A, c, parent, bits, net.weights[l + 1], net.biases[l + 1])
        prefixes = np.concatenate([prefixes[parent], bits], axis=1)
    return prefixes, {"patterns": len(prefixes), "complete": True, "layer": len(hs)}


def check_patterns(net: ReluNet, patterns) -> np.ndarray:
    P = np.asarray(patterns)
    N = net.n_hidden_units
    if P.ndim != 2 or P.shape[1] != N:
        raise ValueError(f"patterns must have shape (P, {N}), got {P.shape}")
    if P.size and not np.isin(P, (0, 1)).all():
        raise ValueError("patterns must be 0/1")
    P = P.astype(np.uint8)
    if len(np.unique(P, axis=0)) != len(P):
        raise ValueError("patterns must be distinct (a repeated pattern would be counted twice)")
    return P


def build_two_hidden(net: ReluNet, box: Box, patterns, big_m: float = DEFAULT_BIG_M, share: str = "full",
                     progress: bool = False) -> TransformResult:
    """Build the two-hidden-layer net of issue 5 for the given distinct 0/1 patterns (P, N).

    The affine maps (A_l, c_l) are computed once per node of the prefix trie in every mode; `share`
    decides which units are shared (see the module docstring).
    """
    if share not in SHARE_MODES:
        raise ValueError(f"share must be one of {SHARE_MODES}, got {share!r}")
    if net.n_hidden_layers < 1:
        raise ToolError("the network has no hidden layer: there is nothing to transform")
    M = check_big_m(big_m)
    t0 = time.perf_counter()
    P = check_patterns(net, patterns)
    p, N = P.shape
    hs, m, n0 = net.hidden_sizes, net.n_outputs, net.n_inputs
    offs = np.concatenate([[0], np.cumsum(hs)]).astype(int)
    full, per_pattern = share == "full", share == "none"
    pool = _RowPool(full)
    alive = np.ones(p, dtype=bool)
    unit_idx = np.full((p, N), -1, dtype=np.int64)
    node = np.zeros(p, dtype=np.int64)
    A, c = net.weights[0][None], net.biases[0][None]
    dropped = 0
    viol_counts = []
    bar = _bar(len(hs) + 2, progress, "build")
    for l, n_l in enumerate(hs):
        S = P[:, offs[l]:offs[l + 1]]
        if full:
            gmin, gmax = box_min_max(A, c, box)      # (nodes, n_l): bounds of g_l over D per trie node
            ia = np.flatnonzero(alive)
            nd, bits = node[ia], S[ia]
            # bit 1 needs g > 0 somewhere, bit 0 needs g <= 0: otherwise the pattern is empty on D
            empty = np.where(bits == 1, gmax[nd] <= 0, gmin[nd] > 0).any(axis=1)
            alive[ia[empty]] = False
        ia = np.flatnonzero(alive)
        before = pool.count
        for i in range(n_l):
            if per_pattern:
                nd, bit = node[ia], S[ia, i].astype(np.int64)
                inv = None
            else:
                uk, inv = np.unique(node[ia] * 2 + S[ia, i], return_inverse=True)
                nd, bit = uk // 2, uk % 2
            sg = np.where(bit == 1, -1.0, 1.0)
            keep = np.ones(len(nd), dtype=bool)
            if full:                                 # v = ReLU(-sigma g) identically zero on D: drop it
                keep = ~np.where(bit == 1, gmin[nd, i] >= 0, gmax[nd, i] <= 0)
                dropped += int((~keep).sum())
            idx = np.full(len(nd), -1, dtype=np.int64)
            ndk = nd[keep]
            idx[keep] = pool.add(A[ndk, i, :] * sg[keep, None], c[ndk, i] * sg[keep], kind=1)
            unit_idx[ia, offs[l] + i] = idx if inv is None else idx[inv.reshape(-1)]
        viol_counts.append(pool.count - before)
        # next layer's affine maps, one per trie node (distinct prefix s_1..s_l)
        child, first = _child_nodes(node[ia], S[ia])
        A, c = _advance(A, c, node[ia][first], S[ia][first], net.weights[l + 1], net.biases[l + 1])
        node = np.full(p, -1, dtype=np.int64)
        node[ia] = child
        bar.update(1)
    n_viol = pool.count
    # value units from the output maps F^S, e^S (one trie leaf per pattern)
    ia = np.flatnonzero(alive)
    fmin, fmax = box_min_max(A, c, box)             # (leaves, m)
    K = np.maximum(0.0, -fmin)
    u_max = float((fmax + K).max()) if K.size else 0.0
    if per_pattern:
        vidx = pool.add(A[node[ia]].reshape(-1, n0), (c + K)[node[ia]].reshape(-1), kind=2)
    else:
        vidx = pool.add(A.reshape(-1, n0), (c + K).reshape(-1), kind=2)
    vidx = vidx.reshape(-1, m)
    n_value = pool.count - n_viol
    del A
    if per_pattern:
        value_idx, Kp = vidx, K[node[ia]]
    else:
        value_idx, Kp = vidx[node[ia]], K[node[ia]]
    bar.update(1)
    W1, b1 = pool.take(n0)
    W2, b2, W3, b3 = _layers_two_and_out(unit_idx[ia], value_idx, Kp, m, M, W1.shape[0])
    bar.update(1)
    bar.close()
    band = max(1.0, u_max) / M
    two = TwoHiddenNet(W1, b1, W2, b2, W3, b3)
    return TransformResult(two, share, M, band, u_max, p, ia, np.flatnonzero(~alive), viol_counts,
                           n_value, dropped, pool.offered - pool.count, time.perf_counter() - t0)


def _layers_two_and_out(U, V, K, m, M, h1, chunk: int = 20000):
    """Layer 2 (z_{S,k}, t_S per pattern) and the output layer from unit indices.

    U (p, N): H1 index of each violation unit of each pattern (-1: dropped); V (p, m): value units;
    K (p, m): the shifts K_{S,k}.
    """
    p = len(U)
    h2 = p * (m + 1)
    blocks = []
    ar_m = np.arange(m)
    for s in range(0, p, chunk):
        Ub, Vb = U[s:s + chunk], V[s:s + chunk]
        q = len(Ub)
        jj, ii = np.nonzero(Ub >= 0)
        cols = Ub[jj, ii]
        rz = (jj[:, None] * (m + 1) + ar_m[None, :]).ravel()
        cz = np.repeat(cols, m)
        rt = jj * (m + 1) + m
        ru = (np.arange(q)[:, None] * (m + 1) + ar_m[None, :]).ravel()
        rows = np.concatenate([rz, rt, ru])
        colsall = np.concatenate([cz, cols, Vb.ravel()])
        data = np.concatenate([np.full(len(rz) + len(rt), -M), np.ones(len(ru))])
        blocks.append(sp.coo_matrix((data, (rows, colsall)), shape=(q * (m + 1), h1)).tocsr())
    W2 = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, h1))
    W2.sum_duplicates()
    b2 = np.zeros(h2)
    b2[m::m + 1] = 1.0
    j = np.arange(p)
    rz = np.repeat(ar_m[None, :], p, axis=0).ravel()
    cz = (j[:, None] * (m + 1) + ar_m[None, :]).ravel()
    nz = K.ravel() != 0
    rt = rz[nz]
    ct = np.repeat(j * (m + 1) + m, m)[nz]
    W3 = sp.coo_matrix((np.concatenate([np.ones(len(rz)), -K.ravel()[nz]]),
                        (np.concatenate([rz, rt]), np.concatenate([cz, ct]))), shape=(m, h2)).tocsr()
    return W2, b2, W3, np.zeros(m)


# ---------------------------------------------------------------------------------------------
# Verification
# ---------------------------------------------------------------------------------------------
def _pattern_keys(P) -> set:
    packed = np.packbits(np.asarray(P, dtype=np.uint8), axis=1)
    return {r.tobytes() for r in packed}


def verify_interior(net: ReluNet, two: TwoHiddenNet, box: Box, patterns, band_width: float,
                    tol: float = 1e-6, rtol: float = 1e-6, limit: int = 0, seed: int = 0,
                    progress: bool = False) -> dict:
    """At one interior point per pattern (max two-sided margin by LP): the outputs must match to rtol.

    Patterns with LP margin <= tol have no interior point; points whose margin min|g| <= band_width
    lie in the band and are not held to rtol (reported). `limit` > 0 checks a seeded sample of that many.
    """
    from .region_lp import max_margin_point

    t0 = time.perf_counter()
    P = np.asarray(patterns, dtype=np.uint8)
    sel = np.arange(len(P))
    if limit and limit < len(P):
        sel = np.sort(np.random.default_rng(seed).choice(len(P), size=limit, replace=False))
    xs, idx, no_int = [], [], 0
    for j in _iter(sel, progress, "interior points (LP)"):
        x, t = max_margin_point(net, box, P[j], two_sided=True)
        if x is None or t <= tol:
            no_int += 1
            continue
        xs.append(np.clip(x, box.lo, box.hi))
        idx.append(j)
    res = {"patterns": int(len(P)), "sampled": int(len(sel)), "with_interior_point": int(len(xs)),
           "no_interior_point": int(no_int), "tol": tol, "rtol": rtol}
    if xs:
        X = np.array(xs)
        idx = np.array(idx)
        y0, y1 = _forward(net, X), two.forward(X)
        err, rel, ok = _match(y0, y1, rtol)
        on = (net.patterns(X) == P[idx]).all(axis=1)
        mu = min_abs_preactivation(net, X)
        in_band = mu <= band_width
        fail = ~ok & ~in_band & on
        res.update(off_pattern=int((~on).sum()), in_band=int(in_band.sum()),
                   max_abs_error=float(err.max()), max_rel_error=float(rel.max()),
                   min_margin=float(mu.min()), failures=int(fail.sum()),
                   failed_patterns=[int(v) for v in idx[fail][:20]])
    else:
        res.update(off_pattern=0, in_band=0, max_abs_error=None, max_rel_error=None, min_margin=None,
                   failures=0, failed_patterns=[])
    res["ok"] = res["failures"] == 0
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


def compare_on_points(net: ReluNet, two: TwoHiddenNet, X, band_width: float, pattern_keys: set | None = None,
                      rtol: float = 1e-6, labels=None) -> dict:
    """Original vs new net on points X: errors, matches to rtol, argmax agreement (and accuracy with labels).

    Points whose pattern is not among `pattern_keys` (an incomplete pattern list) are reported apart.
    """
    X = np.asarray(X, dtype=np.float64)
    y0, y1 = _forward(net, X), two.forward(X)
    err, rel, ok = _match(y0, y1, rtol)
    agree = y0.argmax(axis=1) == y1.argmax(axis=1)
    in_band = min_abs_preactivation(net, X) <= band_width
    if pattern_keys is None:
        known = np.ones(len(X), dtype=bool)
    else:
        packed = np.packbits(net.patterns(X), axis=1)
        known = np.array([r.tobytes() in pattern_keys for r in packed], dtype=bool)

    def part(mask):
        if not mask.any():
            return None
        out_band = mask & ~in_band
        return {"points": int(mask.sum()), "max_abs_error": float(err[mask].max()),
                "max_rel_error": float(rel[mask].max()), "fraction_match": float(ok[mask].mean()),
                "argmax_agreement": float(agree[mask].mean()), "in_band": int((mask & in_band).sum()),
                "mismatch_outside_band": int((out_band & ~ok).sum()),
                "max_abs_error_outside_band": float(err[out_band].max()) if out_band.any() else 0.0}

    res = {"points": int(len(X)), "missing_pattern": int((~known).sum()), "in_band": int(in_band.sum()),
           "known": part(known), "missing": part(~known),
           "all": {"fraction_match": float(ok.mean()) if len(X) else None,
                   "argmax_agreement": float(agree.mean()) if len(X) else None,
                   "max_abs_error": float(err.max()) if len(X) else None}}
    if labels is not None:
        y = np.asarray(labels)
        res["accuracy_original"] = float((y0.argmax(axis=1) == y).mean())
        res["accuracy_transformed"] = float((y1.argmax(axis=1) == y).mean())
    return res


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def _bar(total, progress, desc):
    if progress:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

    class _Null:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Null()


def _iter(seq, progress, desc):
    if progress:
        from tqdm import tqdm

        return tqdm(seq, desc=desc, file=sys.stderr, leave=False)
    return seq


def fmt_int(v: int) -> str:
    """An exact integer, with '(~10^x)' appended when huge."""
    v = int(v)
    return f"{v} (~10^{math.log10(v):.2f})" if v >= HUGE else str(v)


def output_paths(weights, tag: str, out=None) -> tuple[Path, Path]:
    dat = Path(out) if out else Path(weights).parent / layout.two_hidden_file_names(tag)[0]
    return dat, dat.with_suffix(".json")


def _size_lines(sizes: dict) -> list[str]:
    lines = []
    for name in ("original", "naive", "shared_formula", "shared", "nonempty_formula", "built"):
        e = sizes.get(name)
        if e is None or (name == "shared" and e.get("counted") == "built" and "nonempty_formula" in sizes):
            continue
        label = e.get("label") or ("trie" if name == "shared_formula" or e.get("counted") == "formula"
                                   and name == "shared" else ("built" if name == "shared" else name))
        widths = ", ".join(fmt_int(v) for v in e["layer_sizes"])
        extra = f"  [{e['counted']}]" if "counted" in e else ""
        lines.append(f"  {label:8s} n = [{widths}]  params = {fmt_int(e['params'])}{extra}")
    return lines


def check_pattern_sidecar(pattern_path, weights_path, domain_name, n_patterns: int) -> str | None:
    """Check a pattern file against the regions_<domain>.json written beside it by the count.

    Raises ToolError when the count was made for other weights (sha256) or the summary does not
    describe this file; returns why the list is incomplete (the count stopped early), else None.
    Without a summary (files of the authors' own tools) a one-line notice says it was not checked.
    """
    from .records import read_regions
    from .layout import regions_file_name
    from .ioutils import file_sha256

    pattern_path = Path(pattern_path)
    side = pattern_path.parent / regions_file_name(domain_name) if domain_name else None
    if side is None or not side.is_file():
        print(f"notice: no regions_<domain>.json beside {pattern_path}: it could not be checked against "
              f"{weights_path} (weights, completeness)", file=sys.stderr)
        return None
    summary = read_regions(side)
    sha = file_sha256(weights_path)
    if summary.get("weights_sha256") and summary["weights_sha256"] != sha:
        raise ToolError(f"-i {pattern_path}: made for other weights than -w {weights_path} "
                        f"({side.name} records sha256 {summary['weights_sha256'][:12]}…, the weights have "
                        f"{sha[:12]}…)")
    if summary.get("pattern_file") not in (None, pattern_path.name) or summary["count"] != n_patterns:
        raise ToolError(f"-i {pattern_path}: {side.name} beside it records {summary['count']} patterns in "
                        f"{summary.get('pattern_file')}, the file holds {n_patterns}; count again")
    if not summary["complete"]:
        return f"the count that wrote it stopped early ({side.name} says complete: false)"
    return None


def transform_run(weights, patterns=None, *, output=None, domain: DomainSpec | Box | None = None,
                  big_m: float = DEFAULT_BIG_M, share: str = "full", allow_incomplete: bool = False,
                  size_only: bool = False, max_units: int = DEFAULT_MAX_UNITS, max_params: int = DEFAULT_MAX_PARAMS,
                  max_file_params: int = DEFAULT_MAX_FILE_PARAMS, verify: bool = True, verify_points: int = 10000,
                  verify_patterns: int = 0, rtol: float = 1e-6, tol: float = 1e-6, seed: int = 0,
                  mnist: bool = True, data_root=None, progress: bool = True, say=None) -> TransformReport:
    """The transformation step (transform_networks_using_all_nodes.py): read the net in `weights`, build
    the two-hidden-layer net from all 2^N patterns (patterns=None) or from the pattern file `patterns`,
    verify it and write two_hidden_<tag>.dat / .json beside the weights (or at `output`).

    domain: a DomainSpec (default [0,1]^n0; then a pattern file named for another domain sets it) or a
    Box. share: "full", "trie" or "none" (module docstring). Nets over max_units / max_params are not
    built (their sizes go to the .json, exit code 0); size_only prints the sizes and writes nothing.
    say(line) receives the report lines (the script prints them); notes and warnings go to stderr.
    Returns a TransformReport; bad input raises ToolError before anything is written.
    """
    from .patterns_io import read_patterns

    say = say or (lambda line: None)
    if share not in SHARE_MODES:
        raise ToolError(f"share must be one of {', '.join(SHARE_MODES)}, got {share!r}")
    spec = domain if domain is not None else DomainSpec()
    M = check_big_m(big_m)
    for flag, v in (("--max-units", max_units), ("--max-params", max_params),
                    ("--max-file-params", max_file_params)):
        if v < 0:
            raise ToolError(f"{flag} must be >= 0, got {v}")
    if verify_points < 0 or verify_patterns < 0:
        raise ToolError("--verify-points and --verify-patterns must be >= 0")
    if not (rtol > 0 and tol >= 0):
        raise ToolError("--rtol must be > 0 and --tol >= 0")
    if output and Path(output).suffix == ".json":
        raise ToolError(f"-o {output}: give the path of the weights file (.dat); the .json goes beside it")
    from .readers import load_net   # weights.dat, .pt/.pth state_dict or .onnx
    net = load_net(weights)
    if net.n_hidden_layers < 1:
        raise ToolError(f"{weights}: the network has no hidden layer; there is nothing to transform")
    box = box_for(spec, net.n_inputs, data_root)   # data_root None: the repository's data/
    N, m = net.n_hidden_units, net.n_outputs

    if patterns:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            P = read_patterns(patterns, net.layer_sizes)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        mode = "feasible"
        file_domain = layout.domain_of_pattern_file(patterns)
        if file_domain and file_domain != box.name and isinstance(spec, DomainSpec) and spec.is_default:
            named = box_from_domain_name(file_domain, net.n_inputs, data_root)
            if named is not None:
                box = named
                print(f"note: domain {box.name} taken from the name of {patterns}", file=sys.stderr)
        domain_name = file_domain or box.name
        if file_domain and file_domain != box.name:
            print(f"warning: {patterns} is named for domain '{file_domain}' but the flags give "
                  f"'{box.name}'; K, the box bounds and the verification use the flags' box",
                  file=sys.stderr)
        tag = layout.two_hidden_tag("feasible", domain_name)
        formulas = formula_sizes(net.layer_sizes, P)
        list_problem = check_pattern_sidecar(patterns, weights, file_domain, len(P))
    else:
        P = None
        list_problem = None
        mode = "all"
        tag = layout.two_hidden_tag("all", box.name)
        formulas = formula_sizes(net.layer_sizes, None)
    dat_path, json_path = output_paths(weights, tag, output)
    sizes = {"original": size_entry(net.layer_sizes), "naive": formulas["naive"], "shared": formulas["shared"]}
    plan = formulas["naive"] if share == "none" else formulas["shared"]
    n_pat = formulas["patterns"]
    head = (f"{net!r}: {N} hidden units, {'all 2^%d = %s' % (N, fmt_int(n_pat)) if mode == 'all' else n_pat} "
            f"patterns, domain {box.name}, big-M {M:g}, sharing: {share}")
    say(head)
    reason = None
    nonempty_info = None
    if mode == "all" and share == "full":
        # full sharing leaves out the patterns that are provably empty on D: grow them through the trie
        P, nonempty_info = nonempty_patterns(net, box, max_units // (m + 1), max_params)
        if P is None:
            reason = (f"at least {fmt_int(nonempty_info['patterns'])} prefixes (up to hidden layer "
                      f"{nonempty_info['layer']}) are not provably empty on D by the box bounds of each trie "
                      f"node, more than --max-units / --max-params allow")
            say(f"patterns not provably empty on D: at least {fmt_int(nonempty_info['patterns'])} "
                f"(counted up to hidden layer {nonempty_info['layer']})")
        else:
            f2 = formula_sizes(net.layer_sizes, P)["shared"]
            f2["note"] = ("prefix trie over the patterns not provably empty on D (box bounds per trie node); "
                          "no dropping of stable violation units, no merging (the built net is at most this large)")
            f2["label"] = "nonempty"
            sizes["nonempty_formula"] = plan = f2
            say(f"patterns not provably empty on D (box bounds per trie node): {len(P)} of 2^{N}")
    if size_only:
        say("sizes (by formula; not built):")
        for line in _size_lines(sizes):
            say(line)
        say(f"  note: {formulas['shared']['note']}")
        return TransformReport(0, sizes)

    units = plan["layer_sizes"][1] + plan["layer_sizes"][2]
    mem = memory_params(plan, N)
    if reason:
        pass
    elif units > max_units:
        reason = (f"it would have {fmt_int(units)} hidden units, more than --max-units {max_units}")
    elif mem > max_params:
        reason = (f"building it would hold {fmt_int(mem)} numbers (dense layer 1 + sparse layers 2, 3), "
                  f"more than --max-params {max_params}")
    record = {"weights": str(weights), "mode": mode,
              "pattern_file": str(patterns) if patterns else None,
              "domain": box.to_json(), "patterns": n_pat, "big_m": M, "band_width": None,
              "built": False, "shared": share != "none", "share": share, "sizes": sizes,
              "build_seconds": None, "verification": None}
    if nonempty_info is not None:
        record["nonempty_patterns"] = nonempty_info
    if patterns and domain_name != box.name:
        record["pattern_domain"] = domain_name
    if reason:
        say(f"not built: {reason}. Sizes it would have (by formula):")
        for line in _size_lines(sizes):
            say(line)
        say(f"  note: {formulas['shared']['note']}")
        record["not_built_reason"] = reason
        atomic_write_json(json_path, record)
        say(f"wrote {json_path}")
        return TransformReport(0, sizes, record, json_path)

    if P is None:
        P = all_patterns(N)
    res = build_two_hidden(net, box, P, M, share=share, progress=progress)
    two = res.net
    built = res.size_entry()
    if share == "none":
        sizes["built"] = built
    else:
        sizes["shared"] = built
        sizes["shared_formula"] = formulas["shared"]
    record.update(built=True, band_width=res.band_width, u_max=res.u_max, build_seconds=round(res.seconds, 3))
    say(f"built in {res.seconds:.2f} s: band width {res.band_width:.3g} (max u = {res.u_max:.4g}); "
        f"{len(res.pruned)} patterns left out as empty on D, {res.dropped_units} stable violation units "
        f"dropped, {res.merged_units} equal units merged")
    for line in _size_lines(sizes):
        say(line)
    if "nonempty_formula" in sizes:
        say(f"  {'built':8s} n = [{', '.join(map(str, built['layer_sizes']))}]  params = {built['params']}  [built]")

    ok = True
    accuracy = None
    if verify:
        t0 = time.perf_counter()
        ver = {"rtol": rtol, "band_width": res.band_width}
        ver["interior"] = verify_interior(net, two, box, P, res.band_width, tol=tol, rtol=rtol,
                                          limit=verify_patterns, seed=seed, progress=progress)
        keys = _pattern_keys(P) if mode == "feasible" else None
        if verify_points:
            X = box.sample(verify_points, np.random.default_rng(seed))
            ver["uniform"] = compare_on_points(net, two, X, res.band_width, keys, rtol)
            ver["uniform"]["seed"] = seed
        if net.n_inputs == 784 and mnist:
            ver["mnist_test"] = _mnist_check(net, two, box, res.band_width, keys, rtol, data_root)
            accuracy = ver["mnist_test"].get("accuracy_transformed")
        ver["seconds"] = round(time.perf_counter() - t0, 3)
        ok = ver["interior"]["ok"]
        ver["ok"] = ok
        record["verification"] = ver
        for line in _verification_lines(ver):
            say(line)

    ver = record.get("verification") or {}
    missing = sum(int((ver.get(k) or {}).get("missing_pattern") or 0) for k in ("uniform", "mnist_test"))
    checked = sum(int((ver.get(k) or {}).get("points") or 0) for k in ("uniform", "mnist_test"))
    if missing:
        found = (f"{missing} of the {checked} test and random points ({100.0 * missing / checked:.2f} %) have an "
                 f"activation pattern that is not in the list")
        list_problem = found if list_problem is None else f"{list_problem}; {found}"
    record["equivalent"] = bool(ok and list_problem is None)
    if list_problem is not None:
        record["incomplete_list"] = list_problem
    record["weights_file"] = None
    if not ok:
        record["weights_file_note"] = "not written: the interior-point check failed"
    elif list_problem is not None and not allow_incomplete:
        record["weights_file_note"] = "not written: the pattern list is incomplete (--allow-incomplete writes it)"
    elif two.n_params > max_file_params:
        note = (f"not written: the dense weights.dat would hold {fmt_int(two.n_params)} numbers, more than "
                f"--max-file-params {max_file_params}")
        record["weights_file_note"] = note
        say(note)
    else:
        two.save(dat_path, model_path=str(weights), accuracy=accuracy)
        record["weights_file"] = str(dat_path)
        say(f"wrote {dat_path}")
    atomic_write_json(json_path, record)
    say(f"wrote {json_path}")
    report = TransformReport(0, sizes, record, json_path, Path(record["weights_file"]) if record["weights_file"]
                             else None, two)
    if ok and list_problem is not None:
        what = "written as asked (--allow-incomplete)" if allow_incomplete else \
            "no .dat written (--allow-incomplete writes it anyway)"
        report.message = (f"{'warning' if allow_incomplete else 'error'}: the pattern list is incomplete, so the net "
                          f"is NOT equivalent to {weights} (\"equivalent\": false): {list_problem}; {what}")
        report.exit_code = 0 if allow_incomplete else 1
    elif not ok:
        it = record["verification"]["interior"]
        report.message = (f"error: interior-point check failed for {it['failures']} patterns (outputs differ by more "
                          f"than rtol {rtol:g} at points outside the band); first: {it['failed_patterns'][:5]}")
        report.exit_code = 1
    return report


def _mnist_check(net, two, box, band_width, keys, rtol, data_root) -> dict:
    try:
        from .data import load_mnist_arrays

        X, y = load_mnist_arrays("test", root=data_root)
    except (ImportError, ToolError, OSError) as e:
        print(f"warning: MNIST test set not available ({e}); skipped", file=sys.stderr)
        return {"skipped": f"MNIST test set not available: {e}"}
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    inside = box.contains(X)
    res = {"images": int(len(X)), "in_domain": int(inside.sum())}
    if inside.any():
        res.update(compare_on_points(net, two, X[inside], band_width, keys, rtol, labels=np.asarray(y)[inside]))
    return res


def _verification_lines(ver: dict) -> list[str]:
    it = ver["interior"]
    lines = [f"verify interior: {it['with_interior_point']}/{it['sampled']} patterns have an interior point "
             f"({it['no_interior_point']} none), {it['in_band']} in the band, {it['failures']} failures, "
             f"max rel error {_g(it['max_rel_error'])}  -> {'OK' if it['ok'] else 'FAILED'}"]
    for name in ("uniform", "mnist_test"):
        r = ver.get(name)
        if r is None:
            continue
        if "skipped" in r:
            lines.append(f"verify {name}: skipped ({r['skipped']})")
            continue
        if "points" not in r:
            lines.append(f"verify {name}: no image lies in the domain")
            continue
        k = r["known"] or {}
        s = (f"verify {name}: {r['points']} points, max abs error {_g(k.get('max_abs_error'))}, "
             f"match {_pct(k.get('fraction_match'))}, argmax agreement {_pct(k.get('argmax_agreement'))}, "
             f"{r['in_band']} in the band, {k.get('mismatch_outside_band', 0)} mismatches outside it")
        if r["missing_pattern"]:
            s += (f"; {r['missing_pattern']} points have a pattern missing from the list "
                  f"(there: match {_pct(r['missing']['fraction_match'])}, "
                  f"argmax {_pct(r['missing']['argmax_agreement'])})")
        if "accuracy_original" in r:
            s += f"; test accuracy {r['accuracy_original']:.4f} -> {r['accuracy_transformed']:.4f}"
        lines.append(s)
    return lines


def _g(v):
    return "n/a" if v is None else f"{v:.3g}"


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"
