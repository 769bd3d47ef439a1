"""The MILP of a ReLU net over a box, as pure numpy / scipy.sparse data (no solver imports).

Variables v (in this order):
  x_j        kept inputs (inputs with a nonzero outgoing weight in W_1), x_j in [lo_j, hi_j]
  per hidden layer l (0-based) and unit i, in unit order:
    stably inactive (U <= 0):     nothing; its column is dropped from layer l+1
    stably active   (L > tol):    h                       W h_prev + b = h,          h in [L, U]
    unstable:                     h, hbar, z (binary)     W h_prev + b = h - hbar,   h in [0, U], hbar in [0, -L],
                                                          h <= U z,  hbar <= -L (1 - z)
  f (only for a full formulation): f <= h_i + M_i (1 - z_i) for every unstable unit i, f in [0, F];
  maximise f.

With valid bounds L <= g <= U the rows give exactly h = ReLU(g) for every x in the box, and
z = 1 forces g = h >= f, z = 0 forces g = -hbar <= 0. Hence a solution with f > tol is a
feasible pattern (g > tol on bit-1 units, g <= 0 on bit-0 units), and every feasible pattern
has such a solution: M_i = max(U_i, F_min) with F_min = 10 tol + 1e-6 > tol, so z_i = 0 never
forbids f > tol (F = max(F_min, max_i U_i) caps f; only f > tol matters).
An unstable unit with 0 < L <= tol gets hbar in [0, 0], which forces z = 1.
Rows are  row_lo <= A v <= row_hi  (equalities have row_lo == row_hi; one-sided rows use +-inf).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet


@dataclass
class MilpFormulation:
    """One lean MILP (or, for upto_layer, the ReLU-graph constraints of the first layers)."""

    n_vars: int
    lb: np.ndarray
    ub: np.ndarray
    is_binary: np.ndarray           # bool per variable
    names: list[str]
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    objective: np.ndarray           # maximise objective @ v (e_f; all zero without f)
    f_index: int                    # index of f, -1 when the formulation has no f
    z_index: np.ndarray             # int, per hidden unit (pattern order): index of z, -1 if stable / not built
    fixed_bits: np.ndarray          # int8 per hidden unit: 1 / 0 for stable units, -1 for unstable
    input_index: np.ndarray         # int, per input: variable index, -1 for dropped inputs
    h_index: np.ndarray             # int, per hidden unit: index of h, -1 for inactive units / not built
    hbar_index: np.ndarray          # int, per hidden unit: index of hbar, -1 unless unstable
    layer_sizes: list[int]          # hidden widths of the net
    n_layers_built: int             # hidden layers with variables (upto_layer or all)
    net: ReluNet | None = None

    # ---- helpers ---------------------------------------------------------------------
    @property
    def n_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def binaries(self) -> np.ndarray:
        """Variable indices of the z's, in pattern order of the unstable units."""
        return self.z_index[self.z_index >= 0]

    @property
    def unstable_units(self) -> np.ndarray:
        """Flat hidden-unit indices (pattern order) that carry a binary."""
        return np.flatnonzero(self.z_index >= 0)

    def pattern_from_solution(self, v) -> np.ndarray:
        """uint8 pattern over all hidden units: z rounded for unstable units, fixed bits elsewhere."""
        v = np.asarray(v, dtype=np.float64)
        p = np.where(self.fixed_bits > 0, 1, 0).astype(np.uint8)
        m = self.z_index >= 0
        p[m] = (v[self.z_index[m]] > 0.5).astype(np.uint8)
        return p

    def nogood_cut(self, pattern):
        """(idx, coef, rhs) of  sum_{z*=1} z - sum_{z*=0} z <= |{z*=1}| - 1  over the unstable units.

        It removes exactly the assignment of the unstable bits of `pattern` (a pattern whose unstable
        part equals it violates the row; every other 0/1 assignment satisfies it).
        """
        p = np.asarray(pattern).reshape(-1)
        if p.shape[0] != self.z_index.shape[0]:
            raise ValueError(f"pattern has {p.shape[0]} bits, the net has {self.z_index.shape[0]} hidden units")
        m = self.z_index >= 0
        bits = p[m] > 0
        idx = self.z_index[m].astype(np.int64)
        coef = np.where(bits, 1.0, -1.0)
        return idx, coef, float(bits.sum() - 1)

    def preactivation(self, layer: int, unit: int):
        """(idx, coef, const): g_{layer,unit} = coef @ v[idx] + const (layer 0-based, <= n_layers_built)."""
        if not 0 <= layer <= self.n_layers_built or layer >= len(self.layer_sizes):
            raise ValueError(f"layer {layer}: the formulation has variables for layers < {self.n_layers_built}")
        w = self.net.weights[layer][unit]
        const = float(self.net.biases[layer][unit])
        if layer == 0:
            src = self.input_index
        else:
            off = sum(self.layer_sizes[: layer - 1])
            src = self.h_index[off: off + self.layer_sizes[layer - 1]]
        keep = (src >= 0) & (w != 0)
        return src[keep].astype(np.int64), w[keep].astype(np.float64), const

    def layer_preactivations(self, layer: int):
        """(G, const): all pre-activations of `layer` as a sparse matrix over the variables, G v + const."""
        W = self.net.weights[layer]
        if layer == 0:
            src = self.input_index
        else:
            off = sum(self.layer_sizes[: layer - 1])
            src = self.h_index[off: off + self.layer_sizes[layer - 1]]
        keep = np.flatnonzero(src >= 0)
        Wk = W[:, keep]
        G = sp.csr_matrix((Wk.shape[0], self.n_vars))
        if keep.size:
            C = sp.csr_matrix((np.ones(keep.size), (keep, src[keep])), shape=(W.shape[1], self.n_vars))
            G = sp.csr_matrix(W) @ C
        return sp.csr_matrix(G), self.net.biases[layer].copy()

    def size(self) -> dict:
        return {"variables": int(self.n_vars), "constraints": int(self.n_rows),
                "binaries": int((self.z_index >= 0).sum())}


def expected_size(stability_fixed_bits: np.ndarray, n_kept_inputs: int, with_f: bool = True) -> dict:
    """Closed-form size: vars = n_in + n_act + 3 n_unst (+1 for f), rows = n_act + 3 n_unst (+ n_unst f-rows)."""
    s = np.asarray(stability_fixed_bits)
    n_act, n_unst = int((s == 1).sum()), int((s == -1).sum())
    return {"variables": n_kept_inputs + n_act + 3 * n_unst + int(with_f),
            "constraints": n_act + 3 * n_unst + (n_unst if with_f else 0),
            "binaries": n_unst}


def formulation_size(net: ReluNet, stability, tol: float = DEFAULT_TOL) -> dict:
    """The size of build_formulation(net, box, stability, tol) without building it."""
    fixed = [np.where(np.asarray(lo) > tol, 1, np.where(np.asarray(up) <= 0, 0, -1))
             for lo, up in zip(stability.lower, stability.upper)]
    n_kept = int(np.any(net.weights[0] != 0, axis=0).sum())
    return expected_size(np.concatenate(fixed), n_kept)


def build_formulation(net: ReluNet, box: Box, stability, tol: float = DEFAULT_TOL,
                      upto_layer: int | None = None) -> MilpFormulation:
    """The lean MILP over `box` using the bounds and stable units of `stability`.

    upto_layer=k builds only hidden layers < k (for bounding layer k's pre-activations, see
    `MilpFormulation.preactivation`); it has no f and a zero objective. Without it, all hidden
    layers and f are built.
    """
    sizes = net.hidden_sizes
    n_layers = len(sizes)
    k = n_layers if upto_layer is None else int(upto_layer)
    if not 0 <= k <= n_layers:
        raise ValueError(f"upto_layer must be in 0..{n_layers}, got {upto_layer}")
    with_f = upto_layer is None
    if box.n != net.n_inputs:
        raise ValueError(f"box has {box.n} inputs, the net {net.n_inputs}")
    lowers = [np.asarray(v, np.float64) for v in stability.lower]
    uppers = [np.asarray(v, np.float64) for v in stability.upper]
    N = int(sum(sizes))
    fixed_all = np.full(N, -1, np.int8)
    offs = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
    for l in range(n_layers):
        L, U = lowers[l], uppers[l]
        s = np.full(sizes[l], -1, np.int8)
        s[L > tol] = 1
        s[U <= 0] = 0
        fixed_all[offs[l]:offs[l + 1]] = s

    lb, ub, isb, names = [], [], [], []
    rows_r, rows_c, rows_v, rlo, rhi = [], [], [], [], []
    n_rows = 0

    def add_vars(lo_, hi_, binary, nm):
        start = len(lb)
        lb.extend(np.atleast_1d(lo_).tolist())
        ub.extend(np.atleast_1d(hi_).tolist())
        cnt = len(lb) - start
        isb.extend([binary] * cnt)
        names.extend(nm)
        return np.arange(start, start + cnt)

    # inputs
    used = np.any(net.weights[0] != 0, axis=0)
    input_index = np.full(net.n_inputs, -1, np.int64)
    kept = np.flatnonzero(used)
    input_index[kept] = add_vars(box.lo[kept], box.hi[kept], False, [f"x{j}" for j in kept])

    h_index = np.full(N, -1, np.int64)
    hbar_index = np.full(N, -1, np.int64)
    z_index = np.full(N, -1, np.int64)
    src = input_index
    for l in range(k):
        W, b = net.weights[l], net.biases[l]
        L, U = lowers[l], uppers[l]
        s = fixed_all[offs[l]:offs[l + 1]]
        cols = np.flatnonzero(src >= 0)
        Wk = W[:, cols]
        vcols = src[cols]
        act = np.flatnonzero(s == 1)
        uns = np.flatnonzero(s == -1)
        # variables of this layer, in unit order per kind
        h_act = add_vars(L[act], U[act], False, [f"h{l + 1}_{i}" for i in act])
        nu = uns.size
        trip = add_vars(np.zeros(3 * nu), np.ravel(np.column_stack([U[uns], np.maximum(-L[uns], 0.0), np.ones(nu)])),
                        False, [n for i in uns for n in (f"h{l + 1}_{i}", f"hb{l + 1}_{i}", f"z{l + 1}_{i}")])
        trip = trip.reshape(nu, 3)
        for t in trip[:, 2]:
            isb[t] = True
        g = offs[l]
        h_index[g + act] = h_act
        h_index[g + uns] = trip[:, 0]
        hbar_index[g + uns] = trip[:, 1]
        z_index[g + uns] = trip[:, 2]
        # equality rows: W h_prev - h (+ hbar) = -b
        for units, hv, hb in ((act, h_act, None), (uns, trip[:, 0], trip[:, 1])):
            if units.size == 0:
                continue
            sub = Wk[units]
            r, c = np.nonzero(sub)
            rows_r.append(n_rows + r); rows_c.append(vcols[c]); rows_v.append(sub[r, c])
            ar = n_rows + np.arange(units.size)
            rows_r.append(ar); rows_c.append(hv); rows_v.append(-np.ones(units.size))
            if hb is not None:
                rows_r.append(ar); rows_c.append(hb); rows_v.append(np.ones(units.size))
            rlo.append(-b[units]); rhi.append(-b[units])
            n_rows += units.size
        if nu:
            # h - U z <= 0
            ar = n_rows + np.arange(nu)
            rows_r += [ar, ar]; rows_c += [trip[:, 0], trip[:, 2]]; rows_v += [np.ones(nu), -U[uns]]
            rlo.append(np.full(nu, -np.inf)); rhi.append(np.zeros(nu))
            n_rows += nu
            # hbar - L z <= -L      (hbar <= -L (1 - z))
            ar = n_rows + np.arange(nu)
            rows_r += [ar, ar]; rows_c += [trip[:, 1], trip[:, 2]]; rows_v += [np.ones(nu), -L[uns]]
            rlo.append(np.full(nu, -np.inf)); rhi.append(-L[uns])
            n_rows += nu
        src = h_index[offs[l]:offs[l + 1]]

    f_index = -1
    if with_f:
        uns_all = np.flatnonzero(z_index >= 0)
        U_all = np.concatenate(uppers) if uppers else np.zeros(0)
        # f only has to exceed tol for a feasible pattern: cap it at F (>= every U_i of an unstable unit)
        F = float(max(U_all[uns_all].max() if uns_all.size else 0.0, 10 * tol + 1e-6))
        f_index = int(add_vars(0.0, F, False, ["f"])[0])
        if uns_all.size:
            # f - h + M z <= M  with M_i = U_i, but never below the smallest F-cap, so that
            # z_i = 0 never forbids f > tol (an unstable unit may have 0 < U_i <= tol).
            M = np.maximum(U_all[uns_all], 10 * tol + 1e-6)
            nu = uns_all.size
            ar = n_rows + np.arange(nu)
            rows_r += [ar, ar, ar]
            rows_c += [np.full(nu, f_index), h_index[uns_all], z_index[uns_all]]
            rows_v += [np.ones(nu), -np.ones(nu), M]
            rlo.append(np.full(nu, -np.inf)); rhi.append(M)
            n_rows += nu

    n_vars = len(lb)
    if rows_r:
        A = sp.csr_matrix((np.concatenate(rows_v), (np.concatenate(rows_r), np.concatenate(rows_c))),
                          shape=(n_rows, n_vars))
    else:
        A = sp.csr_matrix((0, n_vars))
    A.sum_duplicates()
    obj = np.zeros(n_vars)
    if f_index >= 0:
        obj[f_index] = 1.0
    fixed_bits = fixed_all.copy()
    return MilpFormulation(
        n_vars=n_vars, lb=np.asarray(lb, np.float64), ub=np.asarray(ub, np.float64),
        is_binary=np.asarray(isb, bool), names=names, A=A,
        row_lo=np.concatenate(rlo) if rlo else np.zeros(0), row_hi=np.concatenate(rhi) if rhi else np.zeros(0),
        objective=obj, f_index=f_index, z_index=z_index, fixed_bits=fixed_bits, input_index=input_index,
        h_index=h_index, hbar_index=hbar_index, layer_sizes=list(sizes), n_layers_built=k, net=net)
