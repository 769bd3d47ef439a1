"""Exact 1-D and 2-D sections of the linear-region partition of a ReLU net (pure numpy).

On a plane x = o + s·u + t·v every hidden pre-activation is piecewise affine in (s, t): on a piece
where the bits of layers < l are fixed, layer l's pre-activations are g = a_s·s + a_t·t + c. So the
partition of a convex polygon is computed exactly, layer by layer: split every piece by the zero
line of each unit of layer l (convex clipping), fix the unit's bit on each side, and carry the
pieces to layer l + 1 with their bits. A line x = a + τ(b − a) is the same in one dimension: each
interval is cut at the roots of the layer's affine pre-activations.

Floating point (float64) enters only through two documented tolerances:
- a vertex whose value g lies within REL_EPS·(|a_s|·S + |a_t|·T + |c|) of zero (S, T: the largest
  |s|, |t| of the view) counts as lying on the unit's line, so no sliver thinner than that is cut;
- a piece whose area is at most AREA_TOL·(area of the view) is a degenerate sliver: it is dropped
  and counted in `slivers_dropped`, never counted as a region.
On a line, roots closer than SEGMENT_TOL (in τ, the segment has length 1) are merged.
Every piece carries an interior point (its centroid, else its Chebyshev centre) checked by the
full forward pass (ReluNet.preactivations on the n0-dimensional point): its pattern must equal the
piece's pattern and every |g| must be > 0 (units that are identically zero on the piece excepted);
a piece that fails is kept and listed in `unverified`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linprog

from src.core.affine import advance
from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet

REL_EPS = 1e-9

AREA_TOL = 1e-12

CHUNK = 2048

COLLINEAR_TOL = 1e-9

# ---- planes --------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Plane:
    """The affine plane x = origin + s·basis[0] + t·basis[1] in input space."""

    origin: np.ndarray
    basis: np.ndarray   # (2, n0)

    def points(self, st) -> np.ndarray:
        """Input-space points (k, n0) of plane coordinates st (k, 2)."""
        return self.origin + np.atleast_2d(np.asarray(st, np.float64)) @ self.basis

    def coordinates(self, x) -> np.ndarray:
        """Plane coordinates (k, 2) of input points that lie on the plane (least squares)."""
        x = np.atleast_2d(np.asarray(x, np.float64)) - self.origin
        return np.linalg.lstsq(self.basis.T, x.T, rcond=None)[0].T


def _independent(u, v) -> bool:
    nu, nv = np.linalg.norm(u), np.linalg.norm(v)
    if nu == 0 or nv == 0:
        return False
    e = u / nu
    return np.linalg.norm(v - (v @ e) * e) > COLLINEAR_TOL * nv


def plane_through(points) -> Plane:
    """The plane x = p0 + s·(p1 − p0) + t·(p2 − p0); ToolError when the points are collinear."""
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != 3:
        raise ToolError(f"a plane needs three points, got an array of shape {p.shape}")
    u, v = p[1] - p[0], p[2] - p[0]
    if not _independent(u, v):
        raise ToolError("the three points are collinear (or two of them coincide); a plane needs three "
                        "points in general position")
    return Plane(p[0].copy(), np.stack([u, v]))


def orthonormal_plane(points=None, center=None, directions=None) -> Plane:
    """Plane with an orthonormal basis (Gram–Schmidt): through three points, or a center and two directions."""
    if points is not None:
        p = np.asarray(points, dtype=np.float64)
        origin, d = p[0], np.stack([p[1] - p[0], p[2] - p[0]])
    else:
        origin, d = np.asarray(center, np.float64), np.asarray(directions, np.float64)
    if not _independent(d[0], d[1]):
        raise ToolError("the three points (or two directions) are collinear; pick others")
    e1 = d[0] / np.linalg.norm(d[0])
    v = d[1] - (d[1] @ e1) * e1
    return Plane(origin.copy(), np.stack([e1, v / np.linalg.norm(v)]))


def restrict_to_plane(net: ReluNet, plane: Plane) -> ReluNet:
    """The net on the plane as a 2-input ReluNet in (s, t): first layer W1·basisᵀ, W1·origin + b1."""
    W1 = net.weights[0]
    return ReluNet([W1 @ plane.basis.T] + net.weights[1:], [W1 @ plane.origin + net.biases[0]] + net.biases[1:])

# ---- convex polygons -----------------------------------------------------------------


def polygon_area(vertices) -> float:
    """Absolute area of a simple polygon (k, 2) (shoelace)."""
    v = np.asarray(vertices, np.float64)
    if len(v) < 3:
        return 0.0
    x, y = v[:, 0], v[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))


def clip_polygon(vertices, a, c, tol: float = 0.0) -> np.ndarray:
    """The part of a convex polygon where a·x + c >= 0 (values within tol of 0 count as 0)."""
    V = np.asarray(vertices, np.float64)
    g = V @ np.asarray(a, np.float64) + c
    g = np.where(np.abs(g) <= tol, 0.0, g)
    out = []
    k = len(V)
    for i in range(k):
        j = (i + 1) % k
        if g[i] >= 0:
            out.append(V[i])
        if (g[i] > 0 > g[j]) or (g[i] < 0 < g[j]):
            out.append(V[i] + g[i] / (g[i] - g[j]) * (V[j] - V[i]))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def _rectangle(view) -> np.ndarray:
    s0, s1, t0, t1 = view
    return np.array([[s0, t0], [s1, t0], [s1, t1], [s0, t1]], np.float64)


def _box_halfplanes(plane: Plane, box: Box):
    """(A (h, 2), c (h,)) with plane ∩ box = {st: A·st + c >= 0}, rows of unit length; None if empty."""
    B = plane.basis.T
    moving = np.any(B != 0, axis=1)
    o, lo, hi = plane.origin, box.lo, box.hi
    if np.any((o[~moving] < lo[~moving]) | (o[~moving] > hi[~moving])):
        return None
    Bm = B[moving]
    norm = np.linalg.norm(Bm, axis=1)
    A = np.vstack([Bm, -Bm]) / np.concatenate([norm, norm])[:, None]
    c = np.concatenate([(o[moving] - lo[moving]) / norm, (hi[moving] - o[moving]) / norm])
    return A, c


def box_polygon(plane: Plane, box: Box, view, tol: float):
    """(polygon, edges): plane ∩ box ∩ view as a convex polygon (k, 2), empty if of no area, and the
    (a, c) half-planes a·st + c >= 0 of the box that carry its edges inside the view."""
    rect = _rectangle(view)
    hp = _box_halfplanes(plane, box)
    if hp is None:
        return np.zeros((0, 2)), []
    A, c = hp
    poly, used = rect, []
    for _ in range(len(c)):                        # each constraint clips at most once
        if len(poly) < 3:
            break
        worst = (poly @ A.T + c).min(axis=0)       # most violated constraint first
        h = int(np.argmin(worst))
        if worst[h] >= -tol:
            break
        poly = clip_polygon(poly, A[h], c[h], tol)
        used.append(h)
    view_area = polygon_area(rect)
    if len(poly) < 3 or polygon_area(poly) <= AREA_TOL * view_area:
        return np.zeros((0, 2)), []
    edges = [(A[h], c[h]) for h in dict.fromkeys(used)
             if np.count_nonzero(np.abs(poly @ A[h] + c[h]) <= tol) >= 2]
    return poly, edges


def _outside_pieces(view, edges, tol: float) -> list[np.ndarray]:
    """Convex pieces covering view minus the box polygon: inside edges[:k], outside edges[k]."""
    out = []
    for k, (a, c) in enumerate(edges):
        poly = _rectangle(view)
        for a2, c2 in edges[:k]:
            poly = clip_polygon(poly, a2, c2, tol)
            if len(poly) < 3:
                break
        if len(poly) >= 3:
            poly = clip_polygon(poly, -a, -c, tol)
        if len(poly) >= 3:
            out.append(poly)
    return out

# ---- batched splitting of padded convex polygons -------------------------------------
# A batch of polygons is V (P, K, 2) with n (P,) true vertex counts; slots >= n repeat the last
# vertex, so the edge from slot K-1 to slot 0 closes every polygon and padded edges have length 0.


def _pad(polys: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    n = np.array([len(p) for p in polys], np.int64)
    K = int(n.max()) if len(n) else 3
    V = np.empty((len(polys), K, 2))
    for i, p in enumerate(polys):
        V[i, :len(p)] = p
        V[i, len(p):] = p[-1]
    return V, n


def _widen(V, K: int) -> np.ndarray:
    """Pad the vertex axis to K slots by repeating the last slot."""
    if V.shape[1] >= K:
        return V
    return np.concatenate([V, np.repeat(V[:, -1:], K - V.shape[1], axis=1)], axis=1)


def _compact(cand, keep) -> tuple[np.ndarray, np.ndarray]:
    cnt = keep.sum(axis=1)
    order = np.argsort(~keep, axis=1, kind="stable")
    C = np.take_along_axis(cand, order[..., None], axis=1)[:, :max(int(cnt.max()), 1)]
    last = C[np.arange(len(C)), np.maximum(cnt - 1, 0)]
    pad = np.arange(C.shape[1])[None, :] >= cnt[:, None]
    C[pad] = np.broadcast_to(last[:, None, :], C.shape)[pad]
    return C, cnt


def _split_convex(V, n, g):
    """Split each polygon by its line g = 0 (g (Q, K): values at the slots, exact zeros on the line)."""
    Q, K = g.shape
    valid = np.arange(K)[None, :] < n[:, None]
    gn, Vn = np.roll(g, -1, axis=1), np.roll(V, -1, axis=1)
    cross = ((g > 0) & (gn < 0)) | ((g < 0) & (gn > 0))
    t = np.divide(g, g - gn, out=np.zeros_like(g), where=cross)
    cand = np.stack([V, V + t[..., None] * (Vn - V)], axis=2).reshape(Q, 2 * K, 2)
    keep_pos = np.stack([(g >= 0) & valid, cross], axis=2).reshape(Q, 2 * K)
    keep_neg = np.stack([(g <= 0) & valid, cross], axis=2).reshape(Q, 2 * K)
    return _compact(cand, keep_pos), _compact(cand, keep_neg)


def _values(V, M) -> np.ndarray:
    """Affine values at the slots: V (Q, K, 2), M (Q, 3, m) rows (a_s, a_t, c) -> (Q, K, m)."""
    return V @ M[:, :2, :] + M[:, 2:3, :]


def _layer_maps(first, weights, biases, bits, layer: int) -> np.ndarray:
    """(P, 3, n_layer): pre-activation maps of hidden layer `layer` on pieces with the given bits of the
    earlier layers (rows: the s and t coefficients, then the constant); first = (3, n1) map of the
    restricted first layer. Each layer is one affine step (src.core.affine.advance)."""
    P = len(bits)
    A = np.broadcast_to(first[:2].T, (P,) + first[:2].T.shape)     # (P, n1, 2)
    c = np.broadcast_to(first[2], (P, first.shape[1]))
    off = 0
    for k in range(layer):
        nk = A.shape[1]
        A, c = advance(A, c, weights[k + 1], biases[k + 1], bits[:, off:off + nk])
        off += nk
    return np.concatenate([np.swapaxes(A, 1, 2), c[:, None, :]], axis=1)


def _split_layer(V, n, M, scale, rel_eps):
    """Split every polygon by the zero lines of all units of one layer.

    Returns children (V, n), their bits (P', m) bool, flat (P', m) (unit identically 0 on the piece)
    and parent (P',) indices into the input batch."""
    P, K, _ = V.shape
    m = M.shape[2]
    eps = rel_eps * (np.abs(M[:, 0]) * scale[0] + np.abs(M[:, 1]) * scale[1] + np.abs(M[:, 2]))
    flat = np.all(M == 0, axis=1)
    G = _values(V, M)
    gmin, gmax = G.min(axis=1), G.max(axis=1)
    cap = max(2 * P, 64)
    Vb = np.empty((cap, K, 2))
    nb = np.empty(cap, np.int64)
    bits = np.empty((cap, m), bool)
    cross = np.empty((cap, m), bool)
    parent = np.empty(cap, np.int64)
    Vb[:P], nb[:P], parent[:P] = V, n, np.arange(P)
    bits[:P] = gmax > eps
    cross[:P] = (gmin < -eps) & (gmax > eps)
    size = P
    for j in range(m):
        idx = np.flatnonzero(cross[:size, j])
        if not idx.size:
            continue
        Q = idx.size
        par = parent[idx]
        Vi = Vb[idx]
        Mj = M[par, :, j]
        g = Vi[..., 0] * Mj[:, :1] + Vi[..., 1] * Mj[:, 1:2] + Mj[:, 2:3]
        g[np.abs(g) <= eps[par, j][:, None]] = 0.0
        (Vp, np_), (Vn, nn) = _split_convex(Vi, nb[idx], g)
        Kc = max(Vp.shape[1], Vn.shape[1], Vb.shape[1])
        if Kc > Vb.shape[1]:
            Vb = _widen(Vb, Kc)
        if size + Q > cap:
            cap = max(2 * cap, size + Q)
            Vb = np.concatenate([Vb, np.empty((cap - len(Vb),) + Vb.shape[1:])])
            nb, parent = (np.concatenate([a, np.empty(cap - len(a), a.dtype)]) for a in (nb, parent))
            bits, cross = (np.concatenate([a, np.empty((cap - len(a), m), bool)]) for a in (bits, cross))
        Mrest, erest = M[par, :, j + 1:], eps[par, j + 1:]
        new = slice(size, size + Q)
        bits[new], cross[new] = bits[idx], cross[idx]      # bits of units < j from the parent
        for rows, Vc, nc, bit in ((idx, Vp, np_, True), (np.arange(size, size + Q), Vn, nn, False)):
            Gc = _values(Vc, Mrest)
            cmin, cmax = Gc.min(axis=1), Gc.max(axis=1)
            Vb[rows] = _widen(Vc, Vb.shape[1])
            nb[rows] = nc
            parent[rows] = par
            bits[rows, j] = bit
            cross[rows, j] = False
            bits[rows, j + 1:] = cmax > erest
            cross[rows, j + 1:] = (cmin < -erest) & (cmax > erest)
        size += Q
    return Vb[:size], nb[:size], bits[:size], flat[parent[:size]], parent[:size]


def _centroids(V) -> tuple[np.ndarray, np.ndarray]:
    """(area (P,), centroid (P, 2)) of padded polygons (padding adds nothing)."""
    x, y = V[..., 0], V[..., 1]
    xn, yn = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    cr = x * yn - xn * y
    a = 0.5 * cr.sum(axis=1)
    safe = np.where(a == 0, 1.0, a)
    cx = ((x + xn) * cr).sum(axis=1) / (6 * safe)
    cy = ((y + yn) * cr).sum(axis=1) / (6 * safe)
    return np.abs(a), np.stack([cx, cy], axis=1)


def chebyshev_centre(vertices) -> np.ndarray | None:
    """The centre of the largest disc inside a convex polygon (one LP), or None if it has no interior."""

    V = np.asarray(vertices, np.float64)
    inner = V.mean(axis=0)
    rows, rhs = [], []
    for i in range(len(V)):
        e = V[(i + 1) % len(V)] - V[i]
        nrm = np.array([-e[1], e[0]])
        ln = np.linalg.norm(nrm)
        if ln == 0:
            continue
        if nrm @ (inner - V[i]) < 0:
            nrm = -nrm
        rows.append([-nrm[0], -nrm[1], ln])      # nrm·(x − V_i) >= r·|nrm|
        rhs.append(-nrm @ V[i])
    if len(rows) < 3:
        return None
    res = linprog([0.0, 0.0, -1.0], A_ub=np.array(rows), b_ub=np.array(rhs),
                  bounds=[(None, None), (None, None), (0, None)], method="highs")
    if res.status != 0 or res.x[2] <= 0:
        return None
    return res.x[:2]


def check_points(net: ReluNet, X, patterns, flat=None, chunk: int = 4096):
    """(ok (k,) bool, min |g| (k,)): the forward pass at X gives `patterns` and no unit is at 0 there
    (units marked in `flat`, identically zero on their piece, are exempt)."""
    X = np.atleast_2d(X)
    ok = np.zeros(len(X), bool)
    margin = np.zeros(len(X))
    for s in range(0, len(X), chunk):
        gs = net.preactivations(X[s:s + chunk])
        g = np.concatenate(gs, axis=1) if gs else np.zeros((len(X[s:s + chunk]), 0))
        p = (g > 0).astype(np.uint8)
        a = np.abs(g)
        if flat is not None:
            a = np.where(flat[s:s + chunk], np.inf, a)
        margin[s:s + chunk] = a.min(axis=1) if a.shape[1] else np.inf
        ok[s:s + chunk] = np.all(p == patterns[s:s + chunk], axis=1) & (margin[s:s + chunk] > 0)
    return ok, margin

# ---- 2-D sections --------------------------------------------------------------------


@dataclass
class PlaneSection:
    """The exact partition of the view rectangle of a plane into linear regions (one convex polygon each)."""

    plane: Plane
    view: tuple
    box_polygon: np.ndarray          # plane ∩ box ∩ view, (k, 2); empty when of no area
    vertices: list                   # per polygon (k_i, 2)
    patterns: np.ndarray             # (P, N) uint8, pattern order (layer by layer)
    interior_points: np.ndarray      # (P, 2)
    areas: np.ndarray                # (P,)
    in_box: np.ndarray               # (P,) bool
    verified: np.ndarray             # (P,) bool
    margins: np.ndarray              # (P,) min |g| at the interior point
    slivers_dropped: int = 0
    seconds: float = 0.0
    tolerances: dict = field(default_factory=dict)

    @property
    def n_polygons(self) -> int:
        return len(self.vertices)

    @property
    def regions_in_box(self) -> int:
        return _n_distinct(self.patterns[self.in_box])

    @property
    def regions_in_view(self) -> int:
        return _n_distinct(self.patterns)

    @property
    def box_area(self) -> float:
        return polygon_area(self.box_polygon)

    @property
    def unverified(self) -> list[int]:
        return [int(i) for i in np.flatnonzero(~self.verified)]

    def region_ids(self) -> np.ndarray:
        """Per polygon the index of its distinct pattern (polygons of one region share it)."""
        if not len(self.patterns):
            return np.zeros(0, np.int64)
        return np.unique(self.patterns, axis=0, return_inverse=True)[1].reshape(-1)


def _n_distinct(patterns) -> int:
    return 0 if len(patterns) == 0 else len(np.unique(patterns, axis=0))


def plane_section(net: ReluNet, plane: Plane, view, box: Box | None = None, outside: bool = True,
                  rel_eps: float = REL_EPS, area_tol: float = AREA_TOL, chunk: int = CHUNK) -> PlaneSection:
    """The linear regions of `net` on the view rectangle (s0, s1, t0, t1) of `plane`, exactly.

    Polygons inside the box (plane ∩ box, default: the whole view) are flagged in_box; with
    outside=True the rest of the view is partitioned too (in_box False), else left out."""
    t0 = time.perf_counter()
    view = tuple(float(v) for v in view)
    if not (view[1] > view[0] and view[3] > view[2]):
        raise ToolError(f"the view {view} is empty: need s0 < s1 and t0 < t1")
    scale = (max(abs(view[0]), abs(view[1])), max(abs(view[2]), abs(view[3])))
    span = max(view[1] - view[0], view[3] - view[2], *scale)
    view_area = (view[1] - view[0]) * (view[3] - view[2])
    rect = _rectangle(view)
    if box is None:
        box_poly, polys, flags = rect, [rect], [True]
    else:
        box_poly, edges = box_polygon(plane, box, view, rel_eps * span)
        polys, flags = ([box_poly], [True]) if len(box_poly) else ([], [])
        if outside:
            rest = _outside_pieces(view, edges, rel_eps * span) if len(box_poly) else [rect]
            rest = [p for p in rest if polygon_area(p) > area_tol * view_area]
            polys += rest
            flags += [False] * len(rest)
    small = restrict_to_plane(net, plane)
    first = np.vstack([small.weights[0].T, small.biases[0][None, :]])      # (3, n1)
    if polys:
        V, n = _pad(polys)
    else:
        V, n = np.zeros((0, 3, 2)), np.zeros(0, np.int64)
    bits = np.zeros((len(V), 0), np.uint8)
    flat = np.zeros((len(V), 0), bool)
    in_box = np.array(flags, bool)
    for layer in range(net.n_hidden_layers):
        outs = []
        for s in range(0, len(V), chunk):
            sl = slice(s, s + chunk)
            M = _layer_maps(first, small.weights, small.biases, bits[sl], layer)
            Vc, nc, bc, fc, par = _split_layer(V[sl], n[sl], M, scale, rel_eps)
            outs.append((Vc, nc, np.hstack([bits[sl][par], bc.astype(np.uint8)]),
                         np.hstack([flat[sl][par], fc]), in_box[sl][par]))
        if outs:
            K = max(o[0].shape[1] for o in outs)
            V = np.concatenate([_widen(o[0], K) for o in outs])
            n, bits, flat, in_box = (np.concatenate([o[i] for o in outs]) for i in range(1, 5))
    areas, cents = _centroids(V) if len(V) else (np.zeros(0), np.zeros((0, 2)))
    keep = areas > area_tol * view_area
    dropped = int((~keep).sum())
    V, n, bits, flat, in_box, areas, cents = (a[keep] for a in (V, n, bits, flat, in_box, areas, cents))
    ok, margin = check_points(net, plane.points(cents), bits, flat) if len(V) else (np.zeros(0, bool), np.zeros(0))
    for i in np.flatnonzero(~ok):                      # retry off-centre pieces at their Chebyshev centre
        c = chebyshev_centre(V[i, :n[i]])
        if c is not None:
            ok_c, m_c = check_points(net, plane.points(c), bits[i:i + 1], flat[i:i + 1])
            if ok_c[0]:
                cents[i], ok[i], margin[i] = c, True, m_c[0]
    return PlaneSection(plane=plane, view=view, box_polygon=box_poly,
                        vertices=[V[i, :n[i]].copy() for i in range(len(V))],
                        patterns=bits.astype(np.uint8), interior_points=cents, areas=areas, in_box=in_box,
                        verified=ok, margins=margin, slivers_dropped=dropped,
                        seconds=time.perf_counter() - t0,
                        tolerances={"rel_eps": rel_eps, "area_tol": area_tol})


def default_view(plane: Plane, box: Box | None, points_st, margin: float = 0.12):
    """The bounding rectangle of the marked points (plane coordinates) and of plane ∩ box near them, padded
    by `margin` of its span."""
    pts = np.atleast_2d(np.asarray(points_st, np.float64))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    span = max(float((hi - lo).max()), 1e-9)
    if box is not None:         # grow to the box section within a generous window around the points
        window = (lo[0] - span, hi[0] + span, lo[1] - span, hi[1] + span)
        poly, _ = box_polygon(plane, box, window, REL_EPS * 3 * span)
        if len(poly):
            lo, hi = np.minimum(lo, poly.min(axis=0)), np.maximum(hi, poly.max(axis=0))
            span = max(float((hi - lo).max()), 1e-9)
    pad = margin * span
    return (lo[0] - pad, hi[0] + pad, lo[1] - pad, hi[1] + pad)


def class_pieces(net: ReluNet, section: PlaneSection) -> list[tuple[np.ndarray, int, int]]:
    """[(vertices, class, polygon index)]: every polygon split exactly by the output layer's decision
    boundaries (the logits are affine on a polygon, so each class's part of it is convex)."""
    out = []
    for p, verts in enumerate(section.vertices):
        logits = net.forward(section.plane.points(verts))
        cls = logits.argmax(axis=1)
        if np.all(cls == cls[0]):          # the class's part is convex and holds every vertex
            out.append((verts, int(cls[0]), p))
            continue
        F, e = _affine_fit(verts, logits)
        area = polygon_area(verts)
        for k in range(net.n_outputs):
            piece = verts
            for j in range(net.n_outputs):
                if j != k and len(piece) >= 3:
                    piece = clip_polygon(piece, F[k] - F[j], e[k] - e[j])
            if len(piece) >= 3 and polygon_area(piece) > AREA_TOL * area:
                out.append((piece, k, p))
    return out


def _affine_fit(verts, values):
    """(F (m, 2), e (m,)) with values = verts @ F.T + e (exact for affine values; least squares)."""
    A = np.hstack([verts, np.ones((len(verts), 1))])
    sol = np.linalg.lstsq(A, values, rcond=None)[0]
    return sol[:2].T, sol[2]
