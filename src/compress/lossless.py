"""Lossless compression math (pure numpy): remove the stable units of a net given its stability record.

`compress`: for hidden layer l, processed first to last on the partly
compressed net (W_l has one row per original unit of layer l, W_{l+1} one column per unit):

* stably inactive unit j (g_j <= 0 on the domain, so h_j = 0): delete row j of (W_l, b_l) and
  column j of W_{l+1};
* layer with no unstable unit left (every remaining unit active, h = g): the layer is affine,
  merge it into the next one: W_{l+1} <- W_{l+1}[:, A] W_l[A], b_{l+1} <- W_{l+1}[:, A] b_l[A] + b_{l+1}
  (A = active units; this is W_{l+1} diag(s) W_l with s the 0/1 stable pattern);
* otherwise, the stably active units S: pick a basis B of the row space of W_l[S] by QR with
  column pivoting (rank tolerance `rank_tol`, relative to the largest pivot); each other
  j in S \\ B has w_j = alpha_j^T W_B, hence h_j = alpha_j^T h_B + (b_j - alpha_j^T b_B) because
  every unit of S is active (h = g) on the whole domain; fold it into the next layer
  (W_{l+1}[:, B] += W_{l+1}[:, j] alpha_j^T, b_{l+1} += W_{l+1}[:, j] (b_j - alpha_j^T b_B)) and delete it.

Merging or folding never changes the pre-activation of any remaining unit as a function of
the input on the domain, so the Stability computed on the original net stays valid for every
later layer. When every hidden layer is merged away the result is one affine map.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.linalg

from src.core.affine import advance
from src.core.network import ReluNet

DEFAULT_RANK_TOL = 1e-9

# ---- pure math ---------------------------------------------------------------------------


def active_basis(rows: np.ndarray, rank_tol: float = DEFAULT_RANK_TOL):
    """Split the rows of `rows` (k x d) into a basis B of their span and the rest F.

    Returns (B, F, alpha): index arrays into the rows (B ascending) and alpha (|F| x |B|) with
    rows[F] ~= alpha @ rows[B]. B comes from QR with column pivoting of rows^T; a pivot counts
    when |R_ii| > rank_tol * |R_00|. A row whose residual ||rows[j] - alpha_j rows[B]|| exceeds
    rank_tol * |R_00| is moved into B (never folded), so every fold is exact to that tolerance.
    """
    rows = np.asarray(rows, dtype=np.float64)
    k = rows.shape[0]
    if k == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 0))
    norms = np.linalg.norm(rows, axis=1)
    scale = float(norms.max())
    if scale == 0.0:  # every row is zero: h_j = b_j is a constant, fold all
        return np.zeros(0, int), np.arange(k), np.zeros((k, 0))
    if rows.shape[1] == 0:
        return np.zeros(0, int), np.arange(k), np.zeros((k, 0))
    _, r, piv = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > rank_tol * diag[0]))
    basis = set(piv[:rank].tolist())
    while True:
        B = np.array(sorted(basis), dtype=int)
        F = np.array([j for j in range(k) if j not in basis], dtype=int)
        if F.size == 0:
            return B, F, np.zeros((0, B.size))
        if B.size == 0:
            alpha = np.zeros((F.size, 0))
            resid = norms[F]
        else:
            sol, *_ = np.linalg.lstsq(rows[B].T, rows[F].T, rcond=None)
            alpha = sol.T
            resid = np.linalg.norm(rows[F] - alpha @ rows[B], axis=1)
        bad = resid > rank_tol * scale
        if not bad.any():
            return B, F, alpha
        basis.update(F[bad].tolist())


@dataclass
class Compression:
    """A compressed net and what was removed, per original hidden layer (1-based in JSON)."""

    net: ReluNet
    units_before: list[int]
    units_after: list[int]              # units left per original hidden layer (0 when collapsed)
    kept: list[np.ndarray]              # original indices of the units left, per hidden layer
    collapsed: list[int]                # 1-based original layers merged into their successor
    per_layer: list[dict] = field(default_factory=list)  # inactive/folded_active/merged_active/unstable
    params_before: int = 0
    verification: dict | None = None    # the comparison with the original (src.analysis.Analysis.verify)

    @property
    def params_after(self) -> int:
        return self.net.n_params

    @property
    def removed(self) -> dict:
        return {"inactive": sum(d["inactive"] for d in self.per_layer),
                "folded_active": sum(d["folded_active"] for d in self.per_layer),
                "merged_active": sum(d["merged_active"] for d in self.per_layer),
                "collapsed_layers": len(self.collapsed)}

    @property
    def is_affine(self) -> bool:
        return self.net.n_hidden_layers == 0

    def to_json(self) -> dict:
        return {"layer_sizes_after": self.net.layer_sizes, "units_before": self.units_before,
                "units_after": self.units_after, "removed": self.removed, "collapsed_layers": self.collapsed,
                "affine": self.is_affine, "params_before": self.params_before, "params_after": self.params_after,
                "per_layer": self.per_layer, "verification": self.verification}

    def summary(self) -> str:
        ver = "" if self.verification is None else (", verified" if self.verification["ok"] else ", DIFFERS")
        return (f"hidden units {sum(self.units_before)} -> {sum(self.units_after)}, params {self.params_before} -> "
                f"{self.params_after}{' (affine)' if self.is_affine else ''}{ver}")


def _masks(stability, net: ReluNet):
    act, inact = stability.active, stability.inactive
    if len(act) != net.n_hidden_layers:
        raise ValueError(f"stability has {len(act)} hidden layers, the net {net.n_hidden_layers}")
    for l, (a, i, n) in enumerate(zip(act, inact, net.hidden_sizes)):
        if a.shape != (n,) or i.shape != (n,):
            raise ValueError(f"stability layer {l + 1} has {a.shape[0]} units, the net {n}")
        if np.any(a & i):
            raise ValueError(f"stability layer {l + 1}: a unit is both active and inactive")
    return act, inact


def compress(net: ReluNet, stability, rank_tol: float = DEFAULT_RANK_TOL) -> Compression:
    """Remove stably inactive units, fold linearly dependent stably active ones, merge linear layers.

    `stability` (src.stability.record.Stability) must be sound for the domain of interest; the result equals
    `net` on that domain (up to float rounding, and up to rank_tol for folds).
    """
    active, inactive = _masks(stability, net)
    L = net.n_hidden_layers
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    out_w, out_b = [], []            # surviving hidden layers of the compressed net
    kept, collapsed, per_layer = [], [], []
    for l in range(L):
        a, i = active[l], inactive[l]
        u = ~(a | i)
        rec = {"layer": l + 1, "units": int(a.size), "inactive": int(i.sum()), "active": int(a.sum()),
               "unstable": int(u.sum()), "folded_active": 0, "merged_active": 0}
        W, b, Wn, bn = Ws[l], bs[l], Ws[l + 1], bs[l + 1]
        if not u.any():
            # affine layer -> merge into layer l+1
            Ws[l + 1], bs[l + 1] = advance(W, b, Wn, bn, a)     # h = diag(a) (W z + b) on the domain
            rec["merged_active"] = int(a.sum())
            collapsed.append(l + 1)
            kept.append(np.zeros(0, int))
            per_layer.append(rec)
            continue
        S = np.flatnonzero(a)
        Bl, Fl, alpha = active_basis(W[S], rank_tol)
        B, F = S[Bl], S[Fl]
        if F.size:
            WF = Wn[:, F]
            bn = bn + WF @ (b[F] - alpha @ b[B])
            Wn = Wn.copy()
            Wn[:, B] += WF @ alpha
        keep = np.sort(np.concatenate([np.flatnonzero(u), B]))
        rec["folded_active"] = int(F.size)
        out_w.append(W[keep])
        out_b.append(b[keep])
        Ws[l + 1] = Wn[:, keep]
        bs[l + 1] = bn
        kept.append(keep)
        per_layer.append(rec)
    out_w.append(Ws[L])
    out_b.append(bs[L])
    cnet = ReluNet(out_w, out_b, meta={"compressed_from": net.meta.get("path", "")})
    return Compression(net=cnet, units_before=list(net.hidden_sizes), units_after=[int(k.size) for k in kept],
                       kept=kept, collapsed=collapsed, per_layer=per_layer, params_before=net.n_params)
