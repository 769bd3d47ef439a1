"""Transformation of a ReLU net into a net with two hidden layers, built from activation patterns.

Original net: x in D = [lo,hi]^n0, hidden layers l = 1..L (W_l, b_l), linear output (W_{L+1}, b_{L+1}).
For a pattern S = (s_1..s_L) the pre-activation of layer l is g_l = A_l^S x + c_l^S, which depends
only on s_1..s_{l-1}; the output is F^S x + e^S. The new net (docs/transform.md, "The construction"):

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
Everything here is pure numpy/scipy; the step transform_networks_using_all_nodes.py runs is
src.transform.run.transform_run.
"""
from __future__ import annotations

import bisect
import time
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from src.core.affine import advance, box_bounds
from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.progress import progress_bar, progress_iter
from src.io.weights_file import write_weights
from src.transform.sizes import dense_params, size_entry

SHARE_MODES = ("full", "trie", "none")

DEFAULT_BIG_M = 1e9          # band width max(1, max u)/M; the interior is exact for any M (violations are exactly 0)

MAX_BIG_M = 1e150          # M * V must stay far below the float64 overflow

DEFAULT_MAX_UNITS = 4_000_000

BOX_MARGIN = 1e-12            # relative widening of box bounds: covers the rounding of their sums (sound)

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
        for s in progress_iter(range(0, x.shape[0], bs), progress, "evaluate new net"):
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
        """Write weights.dat (levels = 3, n = [n0, H1, H2, m]) with src.io.weights_file.write_weights, which
        streams the sparse W2/W3 (zeros as `0`), so src.io.readers.load_net gives back exactly these numbers."""
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
    verification: dict | None = None  # the comparison with the original (src.analysis.Analysis.verify)

    def size_entry(self) -> dict:
        """Sizes of the built net: layer widths, dense parameter count, nonzeros and unit counts."""
        return size_entry(self.net.layer_sizes, counted="built", nonzeros=self.net.nonzeros,
                          violation_units=int(sum(self.violation_units)),
                          violation_units_per_layer=[int(v) for v in self.violation_units],
                          value_units=int(self.value_units), patterns=int(len(self.patterns_used)),
                          dropped_units=int(self.dropped_units), merged_units=int(self.merged_units),
                          pruned_patterns=int(len(self.pruned)))

    @property
    def sizes(self) -> dict:
        return self.size_entry()

    def to_json(self) -> dict:
        return {"share": self.share, "big_m": self.big_m, "band_width": self.band_width, "u_max": self.u_max,
                "patterns": int(self.patterns), "sizes": self.size_entry(), "seconds": round(self.seconds, 4),
                "notes": list(self.notes), "verification": self.verification}

    def summary(self) -> str:
        ver = "" if self.verification is None else (", verified" if self.verification["ok"] else ", DIFFERS")
        return (f"two hidden layers {'-'.join(map(str, self.net.layer_sizes))} from {int(self.patterns)} patterns "
                f"(share {self.share}), band width {self.band_width:.3g}{ver}")

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
    """Children's affine maps (src.core.affine.advance of each child's parent map and layer bits), in chunks."""
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
    """Build the two-hidden-layer net of the module docstring for the given distinct 0/1 patterns (P, N).

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
    bar = progress_bar(len(hs) + 2, progress, "build")
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
