"""The exact region-tree walk of `--backend lp`, compiled with numba (docs/lp-engine.md); src/counting/walk_driver.py drives it.

Definition (identical to the MILP backends and tests/bruteforce.py): a pattern S is feasible iff
some x in the box has g_j(x) > tol on every unit with bit 1 and g_j(x) <= 0 on every unit with
bit 0. Stable units (fixed_bits >= 0) keep their bit; their constraint holds on the whole box.

The walk is depth-first over the hidden units in layer order: a node is a prefix of bits, its
region is {x in box : the prefix's constraints}, and on it the units of the current layer l are
affine, g = A_l^S x + c_l^S (the step of src/core/affine.py, compiled here as `_build_layer`). Each
child of a node is decided, cheapest certificate first:

1. sound box bounds of g on the whole box (margin 1e-12 relative) refute a side;
2. the node's carried points (inputs x with all pre-activations, from an exact forward pass): a
   point on the side certifies the child;
3. a segment search from each carried point towards the box vertex that pushes g across its
   threshold (every decided unit is affine along the segment inside the region: one ratio test);
4. a margin LP, max s s.t. alpha_r . x + s <= beta_r on the rows of the decided units plus the
   child's row (rows scaled to unit norm in x, s <= cap, x in the box), solved by a bounded-variable
   primal simplex compiled here (`_margin_lp`). Pricing goes through the features z = W_1 x when the
   first layer is narrower than the input, so one iteration costs O(n_0 n_1 + m^2). It stops as
   soon as s > 0 at a basic solution; the point is certified by the forward pass. At an optimum
   s <= 0 its row duals y give the bound s <= sum y_r beta_r + max_box(-sum y_r alpha_r . x),
   recomputed from the x-space rows with a relative margin of 1e-11: a negative bound refutes
   the child rigorously;
5. when neither certificate is conclusive the walk pauses and the caller decides the child with
   the brute force's own LP (src/counting/feasibility_lp.py: prefix_margin_point), then resumes.

Soundness rests on none of the compiled arithmetic: every emitted pattern's witness point is
checked again by ReluNet's forward pass (src/core/network.py) before it is emitted (a witness that fails
there sends the pattern to the brute-force LP), and every refutation is a box bound or a re-checked
dual certificate.

The walk keeps its state in numpy arrays (an explicit stack), runs a bounded number of nodes per
call and returns: the caller emits the leaves found, honours time limits, stop requests and
checkpoints, and reads the unexplored frontier off the stack.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import pattern_string
from src.counting.feasibility_lp import prefix_margin_point

try:
    import numba
    from numba import njit
except ImportError:          # pragma: no cover - numba is pinned in requirements.txt
    numba = None

    def njit(*a, **k):
        raise ToolError("the compiled engine needs the pip package 'numba' (pinned in requirements.txt)")

_JIT = dict(cache=True, nogil=True, error_model="numpy")
CALL_SECONDS = 0.05      # a call into the compiled walk lasts about this long (node and LP-iteration budgets)

# status codes of _walk
DONE, PAUSED, NEED_DECISION = 0, 1, 2

# slots of the int state vector
I_DEPTH, I_ROOT, I_NROWS, I_NOUT, I_REQU, I_REQB, I_SIZE = range(7)
# after them, per layer l, the eager LPs of the layer: ist[I_SIZE + 3 l + (0 done, 1 refuting, 2 skipped)]
EAGER_TRIAL = 32         # eager LPs a layer always gets
EAGER_RATE = 8           # then only while at least 1 in EAGER_RATE of them refutes a side ...
EAGER_PROBE = 16         # ... or, when they do not, one in EAGER_PROBE (the rate can recover)

# stats counters (int64)
STAT_NAMES = ("nodes", "lps", "lp_feasible", "lp_refuted", "lp_iterations", "lp_inconclusive",
              "point_certified", "segment_certified", "box_refuted", "regions", "patterns", "dead_ends",
              "definition_lps", "witness_rechecked", "eager_checks", "two_way")

# their indices (numba reads module-level ints as constants)
ST_NODES = 0

ST_LPS = 1

ST_LP_FEASIBLE = 2

ST_LP_REFUTED = 3

ST_LP_ITERATIONS = 4

ST_LP_INCONCLUSIVE = 5

ST_POINT_CERTIFIED = 6

ST_SEGMENT_CERTIFIED = 7

ST_BOX_REFUTED = 8

ST_REGIONS = 9

ST_PATTERNS = 10

ST_DEAD_ENDS = 11

ST_DEFINITION_LPS = 12

ST_WITNESS_RECHECKED = 13

ST_EAGER_CHECKS = 14

ST_TWO_WAY = 15          # nodes of a dive whose two children are both feasible

# ---- the compiled pieces ----------------------------------------------------------------------------


@njit(**_JIT)
def _forward(net, x, g):
    """All hidden pre-activations of input x into g (layer order)."""
    W1, WH, BH, sizes, off = net[0], net[1], net[2], net[3], net[4]
    n1 = sizes[0]
    z = W1 @ x
    for j in range(n1):
        g[j] = z[j] + BH[0, j]
    for l in range(1, sizes.size):
        a, b = off[l - 1], off[l]
        n = sizes[l]
        for j in range(n):
            acc = 0.0
            for k in range(b - a):
                h = g[a + k]
                if h > 0.0:
                    acc += WH[l, j, k] * h
            g[b + j] = acc + BH[l, j]


@njit(**_JIT)
def _verify(g, bits, unstable, upto, tol, u, b):
    """Does g meet every decided (bit >= 0) unstable unit < upto strictly, and unit u with bit b (u >= 0)?"""
    for j in range(upto):
        if unstable[j] and bits[j] >= 0:
            if bits[j] == 1:
                if not g[j] > tol:
                    return False
            elif not g[j] <= 0.0:
                return False
    if u >= 0:
        if b == 1:
            return g[u] > tol
        return g[u] <= 0.0
    return True


@njit(**_JIT)
def _build_layer(net, lay, bits, l, use_z):
    """Layer l's affine map on the current layer region (A_{l+1} = W_{l+1} diag(s_l) A_l), its box bounds
    with a rounding margin, and its row norms; clears the region's vertex cache."""
    W1, WH, BH, sizes, off, lo, hi, absbox = net[0], net[1], net[2], net[3], net[4], net[7], net[8], net[9]
    AF, AX, CC, NU, LOB, HIB, EPS, VF = lay[0], lay[1], lay[2], lay[3], lay[4], lay[5], lay[6], lay[7]
    n = sizes[l]
    d = AF.shape[2]
    n0 = lo.size
    if l == 0:
        for i in range(n):
            for k in range(d):
                AF[0, i, k] = 0.0
            if use_z:
                AF[0, i, i] = 1.0
            else:
                for k in range(d):
                    AF[0, i, k] = W1[i, k]
            CC[0, i] = BH[0, i]
            for k in range(n0):
                AX[0, i, k] = W1[i, k]
    else:
        a = off[l - 1]
        m = sizes[l - 1]
        for i in range(n):
            for k in range(d):
                AF[l, i, k] = 0.0
            cc = 0.0
            for j in range(m):
                if bits[a + j] == 1:
                    w = WH[l, i, j]
                    if w != 0.0:
                        for k in range(d):
                            AF[l, i, k] += w * AF[l - 1, j, k]
                        cc += w * CC[l - 1, j]
            CC[l, i] = cc + BH[l, i]
        if use_z:
            AX[l, :n, :] = AF[l][:n] @ W1
        else:
            AX[l, :n, :] = AF[l, :n, :]
    for i in range(n):
        s_lo = 0.0
        s_hi = 0.0
        s_abs = 0.0
        s_sq = 0.0
        for k in range(n0):
            v = AX[l, i, k]
            if v > 0.0:
                s_lo += v * lo[k]
                s_hi += v * hi[k]
            else:
                s_lo += v * hi[k]
                s_hi += v * lo[k]
            s_abs += abs(v) * absbox[k]
            s_sq += v * v
        c = CC[l, i]
        LOB[l, i] = s_lo + c
        HIB[l, i] = s_hi + c
        EPS[l, i] = 1e-12 * (abs(c) + s_abs) + 1e-300
        NU[l, i] = np.sqrt(s_sq)
        VF[l, i, 0] = 0
        VF[l, i, 1] = 0


@njit(**_JIT)
def _vertex(v, W1, use_z, lo, hi, x, z):
    """The box vertex x minimising v . z over the box, with its features z = W1 x (or x)."""
    p = v @ W1 if use_z else v
    for k in range(lo.size):
        x[k] = lo[k] if p[k] > 0.0 else hi[k]
    if use_z:
        z[:] = W1 @ x
    else:
        z[:] = x


@njit(**_JIT)
def _margin_lp(R, RB, m, W1, use_z, lo, hi, cap, s_goal, maxit, x_out, y_out, st, pool):
    """max s s.t. R_r . z + s <= RB_r (r < m), z = W1 x (or x), x in the box, s <= cap, by column generation
    over the box's vertices: the restricted master takes convex combinations of a few vertices (its columns),
    pricing finds the vertex that minimises y . R z (one pass over W1). Starts from the vertex that best
    meets the last row (the child's) and the recent vertices in `pool`.

    Returns (status, s): 1 = a solution with s >= s_goal (x in x_out, a convex combination of vertices),
    2 = optimal (x_out, and the row duals in y_out), 0 = gave up (iteration or column limit).
    """
    ZP, XP, PI = pool[0], pool[1], pool[2]
    n0 = lo.size
    d = R.shape[1]
    KC = PI[0] + maxit + 1
    ZC = np.empty((KC, d))
    XC = np.empty((KC, n0))
    RZ = np.empty((KC, m))
    _vertex(R[m - 1], W1, use_z, lo, hi, XC[0], ZC[0])
    K = 1
    np0 = PI[0]
    for p in range(np0):
        ZC[K, :] = ZP[p]
        XC[K, :] = XP[p]
        K += 1
    Rm = R[:m]
    RZ[:K] = ZC[:K] @ Rm.T
    # variables: columns 0..KC-1, s = KC, slack r = KC + 1 + r; rows 0..m-1 and the convexity row m
    sv = KC
    nv = KC + 1 + m
    val = np.zeros(nv)
    isb = np.full(nv, -1, np.int64)
    basis = np.empty(m + 1, np.int64)
    v0 = 0
    best = -np.inf
    for v in range(K):
        f = np.inf
        for r in range(m):
            t = RB[r] - RZ[v, r]
            if t < f:
                f = t
        if f > best:
            best, v0 = f, v
    rs = 0
    for r in range(m):
        if RB[r] - RZ[v0, r] == best:
            rs = r
            break
    if best >= cap:
        x_out[:] = XC[v0]
        return 1, cap
    Bm = np.zeros((m + 1, m + 1))
    for r in range(m):
        if r == rs:
            basis[r] = sv
            for k in range(m):
                Bm[k, r] = 1.0
        else:
            basis[r] = KC + 1 + r
            Bm[r, r] = 1.0
            val[KC + 1 + r] = RB[r] - RZ[v0, r] - best
    basis[m] = v0
    for k in range(m):
        Bm[k, m] = RZ[v0, k]
    Bm[m, m] = 1.0
    for r in range(m + 1):
        isb[basis[r]] = r
    val[sv] = best
    val[v0] = 1.0
    Binv = np.linalg.inv(Bm)
    dtol = 1e-9
    ptol = 1e-9
    col = np.empty(m + 1)
    xv = np.empty(n0)
    zv = np.empty(d)
    y = np.zeros(m + 1)
    degenerate = 0
    status = 0
    for it in range(maxit):
        st[ST_LP_ITERATIONS] += 1
        ps = isb[sv]
        if ps < 0:
            status = 1            # s left the basis at its cap
            break
        if val[sv] >= s_goal:
            status = 1
            break
        for r in range(m + 1):
            y[r] = Binv[ps, r]
        mu = y[m]
        bland = degenerate > 30
        q = -1
        score = 0.0
        for v in range(K):
            if isb[v] >= 0:
                continue
            rc = -mu
            for r in range(m):
                rc -= RZ[v, r] * y[r]
            if rc > dtol and (rc > score or (bland and q < 0)):
                q, score = v, rc
                if bland:
                    break
        if q < 0 or not bland:
            for r in range(m):
                j = KC + 1 + r
                if isb[j] < 0 and -y[r] > dtol and (-y[r] > score or (bland and q < 0)):
                    q, score = j, -y[r]
                    if bland:
                        break
        if q < 0:                                 # the master is optimal: price a new vertex
            vy = y[:m] @ Rm
            _vertex(vy, W1, use_z, lo, hi, xv, zv)
            rz = Rm @ zv
            rc = -mu
            for r in range(m):
                rc -= rz[r] * y[r]
            if not rc > dtol * (1.0 + abs(mu)):
                status = 2
                break
            if K >= KC:
                break
            ZC[K, :] = zv
            XC[K, :] = xv
            RZ[K, :] = rz
            q = K
            K += 1
        if q < KC:
            for r in range(m):
                col[r] = RZ[q, r]
            col[m] = 1.0
        else:
            col[:] = 0.0
            col[q - KC - 1] = 1.0
        alpha = Binv @ col
        theta = np.inf
        leave = -1
        lbound = 0.0
        for r in range(m + 1):
            a = alpha[r]
            if abs(a) < ptol:
                continue
            j = basis[r]
            if a > 0.0:
                if j == sv:
                    continue
                t = val[j] / a
                bnd = 0.0
            else:
                if j != sv:
                    continue
                t = (cap - val[j]) / -a
                bnd = cap
            if t < 0.0:
                t = 0.0
            if t < theta or (t == theta and leave >= 0 and abs(a) > abs(alpha[leave])):
                theta, leave, lbound = t, r, bnd
        if leave < 0:
            break
        degenerate = degenerate + 1 if theta <= 1e-12 else 0
        val[q] += theta
        for r in range(m + 1):
            val[basis[r]] -= alpha[r] * theta
        lv = basis[leave]
        val[lv] = lbound
        basis[leave] = q
        isb[q] = leave
        isb[lv] = -1
        p = alpha[leave]
        for k in range(m + 1):
            Binv[leave, k] /= p
        for r in range(m + 1):
            if r != leave and alpha[r] != 0.0:
                f = alpha[r]
                for k in range(m + 1):
                    Binv[r, k] -= f * Binv[leave, k]
    # the point: the master's convex combination; the recent vertices go to the pool
    x_out[:] = 0.0
    tot = 0.0
    for r in range(m + 1):
        j = basis[r]
        if j < KC and val[j] > 0.0:
            tot += val[j]
    for r in range(m + 1):
        j = basis[r]
        if j < KC and val[j] > 0.0:
            x_out += (val[j] / tot) * XC[j]
            if j != 0 and j < 1 + np0:
                continue                      # already in the pool
            slot = PI[1]
            ZP[slot, :] = ZC[j]
            XP[slot, :] = XC[j]
            PI[1] = (slot + 1) % ZP.shape[0]
            if PI[0] < ZP.shape[0]:
                PI[0] += 1
    for k in range(n0):
        v0x = x_out[k]
        x_out[k] = lo[k] if v0x < lo[k] else (hi[k] if v0x > hi[k] else v0x)
    if status == 2:
        for r in range(m):
            y_out[r] = y[r]
    return status, val[sv]


@njit(**_JIT)
def _refutes(RAX, RB, m, y, lo, hi, absbox):
    """Rigorous check of a dual certificate: with w = |y| / sum |y| (any w >= 0 with sum 1 is valid),
    s <= sum w_r RB_r + max_box(-sum w_r RAX_r . x); True when that bound is below -1e-11 * magnitude."""
    tot = 0.0
    ymax = 0.0
    for r in range(m):
        a = abs(y[r])
        if not np.isfinite(a):
            return False
        if a > ymax:
            ymax = a
    if ymax <= 0.0:
        return False
    w = np.empty(m)
    for r in range(m):
        a = abs(y[r])
        w[r] = a if a >= 1e-9 * ymax else 0.0
        tot += w[r]
    bound = 0.0
    mag = 0.0
    for r in range(m):
        w[r] /= tot
        bound += w[r] * RB[r]
        mag += w[r] * abs(RB[r])
    v = -(w @ RAX[:m])
    for k in range(v.size):
        bound += max(v[k] * lo[k], v[k] * hi[k])
        mag += abs(v[k]) * absbox[k]
    return bound < -1e-11 * max(mag, 1.0)


@njit(**_JIT)
def _push_row(lay, rows, ist, l, i, b):
    """Append the row of unit i of layer l with bit b (scaled to unit norm in x)."""
    AF, AX, CC, NU = lay[0], lay[1], lay[2], lay[3]
    RAF, RAX, RB = rows[0], rows[1], rows[2]
    k = ist[I_NROWS]
    nu = NU[l, i]
    sg = 1.0 if b == 0 else -1.0
    RAF[k, :] = (sg / nu) * AF[l, i, :]
    RAX[k, :] = (sg / nu) * AX[l, i, :]
    tol = rows[3][0]
    RB[k] = -CC[l, i] / nu if b == 0 else (CC[l, i] - tol) / nu
    ist[I_NROWS] = k + 1


@njit(**_JIT)
def _sides(lay, l, i, tol):
    """(possible0, possible1, redundant0, redundant1) of unit i of layer l from the box bounds."""
    NU, CC, LOB, HIB, EPS = lay[3], lay[2], lay[4], lay[5], lay[6]
    if NU[l, i] == 0.0:
        c = CC[l, i]
        return c <= 0.0, c > tol, True, True
    eps = EPS[l, i]
    return not (LOB[l, i] > eps), not (HIB[l, i] <= tol - eps), HIB[l, i] <= -eps, LOB[l, i] > tol + eps


@njit(**_JIT)
def _segment(net, lay, bits, unstable, X, G, npts, l, i, u, b, tol, xn, gn):
    """A point of child (u, b) on the segment from a carried point to the extreme box vertex (or False)."""
    sizes, off, lo, hi = net[3], net[4], net[7], net[8]
    AX, CC, VF, VG = lay[1], lay[2], lay[7], lay[8]
    n0 = lo.size
    end = off[l + 1]
    vx = np.empty(n0)
    for k in range(n0):
        pos = AX[l, i, k] > 0.0
        vx[k] = (lo[k] if pos else hi[k]) if b == 0 else (hi[k] if pos else lo[k])
    if VF[l, i, b] == 0:
        for ll in range(l + 1):
            a = off[ll]
            vals = AX[ll][:sizes[ll]] @ vx
            for j in range(sizes[ll]):
                VG[l, i, b, a + j] = vals[j] + CC[ll, j]
        VF[l, i, b] = 1
    best = 0.0
    kbest = -1
    tbest = 0.0
    for p in range(npts):
        gu = G[p, u]
        du = VG[l, i, b, u] - gu
        if b == 1:
            cross = (tol - gu) / du if du > 0.0 else np.inf
        else:
            cross = gu / -du if du < 0.0 else np.inf
        if cross < 0.0:
            cross = 0.0
        if not cross < 1.0:
            continue
        lim = 1.0
        for j in range(end):
            if j == u or not unstable[j] or bits[j] < 0 or j > u:
                continue
            dj = VG[l, i, b, j] - G[p, j]
            if bits[j] == 1:
                if dj < 0.0:
                    t = (G[p, j] - tol) / -dj
                    if t < lim:
                        lim = t
            elif dj > 0.0:
                t = -G[p, j] / dj
                if t < lim:
                    lim = t
        gap = lim - cross
        if gap > best:
            best, kbest, tbest = gap, p, cross + 0.5 * gap
    if kbest < 0:
        return False
    for k in range(n0):
        v0 = X[kbest, k] + tbest * (vx[k] - X[kbest, k])
        xn[k] = lo[k] if v0 < lo[k] else (hi[k] if v0 > hi[k] else v0)
    _forward(net, xn, gn)
    return _verify(gn, bits, unstable, u, tol, u, b)


@njit(**_JIT)
def _select_into(X, G, npts, u, b, tol, keep, unstable, bits, end, DX, DG):
    """Copy the points on side b of unit u (all of them when b < 0) into DX/DG, at most `keep`, chosen
    greedily to show both sides of as many later undecided units of the layer as possible."""
    idx = np.empty(npts, np.int64)
    n = 0
    for p in range(npts):
        if b < 0 or (G[p, u] > tol if b == 1 else G[p, u] <= 0.0):
            idx[n] = p
            n += 1
    if n <= keep:
        for t in range(n):
            DX[t, :] = X[idx[t]]
            DG[t, :] = G[idx[t]]
        return n
    lo_u = u + 1
    nl = end - lo_u
    cov = np.zeros(2 * max(nl, 1), np.bool_)
    used = np.zeros(n, np.bool_)
    out = 0
    while out < keep:
        bestg = -1
        bp = -1
        for t in range(n):
            if used[t]:
                continue
            gain = 0
            for j in range(nl):
                uj = lo_u + j
                if not unstable[uj] or bits[uj] >= 0:
                    continue
                v = G[idx[t], uj]
                if v > tol and not cov[2 * j + 1]:
                    gain += 1
                elif v <= 0.0 and not cov[2 * j]:
                    gain += 1
            if gain > bestg:
                bestg, bp = gain, t
        if bestg <= 0:
            break
        used[bp] = True
        for j in range(nl):
            v = G[idx[bp], lo_u + j]
            if v > tol:
                cov[2 * j + 1] = True
            elif v <= 0.0:
                cov[2 * j] = True
        DX[out, :] = X[idx[bp]]
        DG[out, :] = G[idx[bp]]
        out += 1
    t = 0
    while out < keep and t < n:
        if not used[t]:
            DX[out, :] = X[idx[t]]
            DG[out, :] = G[idx[t]]
            out += 1
        t += 1
    return out


@njit(**_JIT)
def _lp_side(net, lay, rows, ist, bits, unstable, u, l, i, b, with_row, tol, cap, use_z, xn, gn, st):
    """The margin LP of the current rows plus, with_row, the row of child (unit i of layer l, bit b): 1 = point
    (xn, gn verified against every decided unit and unit u >= 0 with bit b), 0 = refuted (certificate),
    -1 = inconclusive."""
    W1, lo, hi, absbox = net[0], net[7], net[8], net[9]
    RAF, RAX, RB = rows[0], rows[1], rows[2]
    m0 = ist[I_NROWS]
    m = m0
    if with_row:
        _push_row(lay, rows, ist, l, i, b)
        m = m0 + 1
    if m == 0:                     # no constraint at all: any verified box point
        ist[I_NROWS] = m0
        return -1
    st[ST_LPS] += 1
    y = np.zeros(m)
    pool = (rows[4], rows[5], rows[6])
    status, sval = _margin_lp(RAF, RB, m, W1, use_z, lo, hi, cap, 1e-3 * cap, 20 * m + 200, xn, y, st, pool)
    res = -1
    if status == 1 or (status == 2 and sval > 0.0):
        _forward(net, xn, gn)
        if _verify(gn, bits, unstable, bits.size, tol, u, b):
            st[ST_LP_FEASIBLE] += 1
            res = 1
    elif status == 2:
        if _refutes(RAX, RB, m, y, lo, hi, absbox):
            st[ST_LP_REFUTED] += 1
            res = 0
    ist[I_NROWS] = m0
    if res < 0:
        st[ST_LP_INCONCLUSIVE] += 1
    return res


@njit(**_JIT)
def _descend(net, lay, rows, ist, bits, pushed, unstable, u, b, tol):
    """Fix unit u to bit b at the current node (its row when unstable and not redundant); depth u+1."""
    layer_of, off = net[5], net[4]
    l = layer_of[u]
    i = u - off[l]
    bits[u] = b
    pushed[u] = 0
    if unstable[u]:
        p0, p1, r0, r1 = _sides(lay, l, i, tol)
        red = r0 if b == 0 else r1
        if not red:
            _push_row(lay, rows, ist, l, i, b)
            pushed[u] = 1
    ist[I_DEPTH] = u + 1


@njit(**_JIT)
def _backtrack(net, lay, rows, ist, path, pts, unstable, tol):
    """Go up to the deepest node with a pending child and descend into it; False when the walk is over."""
    bits, pushed, pend = path[0], path[1], path[2]
    PX, PG, NP, QX, QG, NQ = pts[0], pts[1], pts[2], pts[3], pts[4], pts[5]
    u = ist[I_DEPTH]
    while True:
        u -= 1
        if u < ist[I_ROOT]:
            ist[I_DEPTH] = ist[I_ROOT]
            return False
        if pushed[u]:
            ist[I_NROWS] -= 1
            pushed[u] = 0
        if pend[u] >= 0:
            b = pend[u]
            pend[u] = -1
            n = NQ[u]
            PX[u + 1, :n] = QX[u, :n]
            PG[u + 1, :n] = QG[u, :n]
            NP[u + 1] = n
            _descend(net, lay, rows, ist, bits, pushed, unstable, u, b, tol)
            return True
        _unsettle(path, u, net[4][net[5][u] + 1])
        bits[u] = -1


@njit(**_JIT)
def _eager(net, lay, rows, ist, path, pts, unstable, u, l, tol, cap, use_z, xn, gn, st):
    """Settle the later units of the layer that the node's points show on one side only: refute the other
    side here (it then stays refuted in the whole subtree of this node) or add a point that shows it."""
    bits, settled, sby = path[0], path[5], path[6]
    PX, PG, NP = pts[0], pts[1], pts[2]
    off = net[4]
    start, end = off[l], off[l + 1]
    for k in range(u + 1, end):
        if not unstable[k] or settled[k] >= 0:
            continue
        i = k - start
        p0, p1, r0, r1 = _sides(lay, l, i, tol)
        if not (p0 and p1):
            continue
        n = NP[u]
        has0 = False
        has1 = False
        for p in range(n):
            v = PG[u, p, k]
            if v > tol:
                has1 = True
            elif v <= 0.0:
                has0 = True
        if has0 == has1:
            continue
        b = 0 if has1 else 1
        st[ST_EAGER_CHECKS] += 1
        found = False
        if _segment(net, lay, bits, unstable, PX[u], PG[u], n, l, i, k, b, tol, xn, gn):
            found = True
            st[ST_SEGMENT_CERTIFIED] += 1
        elif _eager_lp_pays(ist, l):
            r = _lp_side(net, lay, rows, ist, bits, unstable, k, l, i, b, not (r0 if b == 0 else r1), tol, cap,
                         use_z, xn, gn, st)
            ist[I_SIZE + 3 * l] += 1
            if r == 1:
                found = True
            elif r == 0:
                ist[I_SIZE + 3 * l + 1] += 1
                settled[k] = 1 - b
                sby[k] = u
        if found and n < PX.shape[1]:
            PX[u, n, :] = xn
            PG[u, n, :] = gn
            NP[u] = n + 1


@njit(**_JIT)
def _eager_lp_pays(ist, l):
    """Is an eager LP in layer l worth its cost? Only its refutations pay (they hold in the whole subtree);
    on wide layers nearly every one finds the other side feasible (784-200-200-10: 9,961 of 9,961), so
    after EAGER_TRIAL LPs a layer keeps them while at least 1 in EAGER_RATE refutes, and otherwise tries one
    in EAGER_PROBE. Tuning only: no result depends on it."""
    j = I_SIZE + 3 * l
    done, refuting = ist[j], ist[j + 1]
    if done < EAGER_TRIAL or refuting * EAGER_RATE >= done:
        return True
    ist[j + 2] += 1
    return ist[j + 2] % EAGER_PROBE == 0


@njit(**_JIT)
def _unsettle(path, u, end):
    """Clear the settlements made at node u (when the node is finished)."""
    settled, sby = path[5], path[6]
    for k in range(u + 1, end):
        if settled[k] >= 0 and sby[k] == u:
            settled[k] = -1


@njit(**_JIT)
def _walk(net, lay, rows, ist, path, pts, out, st, fixed, unstable, tol, cap, use_z, keep, eager, budget, lp_budget,
          dive, rand):
    """Walk from the current node for at most `budget` node entries and about `lp_budget` LP iterations (a
    node is not entered once either is used up). Returns DONE (the subtree of the root is finished), PAUSED
    (budget used or output full; the current node is not entered yet) or NEED_DECISION (child (ist[I_REQU],
    ist[I_REQB]) of the current node needs the caller's exact LP).

    dive: one random path instead of the whole subtree (Knuth's probe): where both children of unit u are
    feasible (counted in ST_TWO_WAY) the walk takes child 1 iff rand[u] < 0.5 and leaves the other."""
    off, layer_of = net[4], net[5]
    bits, pushed, pend, dec, entered, settled = path[0], path[1], path[2], path[3], path[4], path[5]
    PX, PG, NP, QX, QG, NQ = pts[0], pts[1], pts[2], pts[3], pts[4], pts[5]
    OB, OX, OW = out[0], out[1], out[2]
    N = bits.size
    n0 = PX.shape[2]
    xn = np.empty(n0)
    gn = np.empty(N)
    steps = 0
    lp_end = st[ST_LP_ITERATIONS] + lp_budget
    while True:
        u = ist[I_DEPTH]
        if u == N:                                       # a leaf: all units decided
            k = ist[I_NOUT]
            if k >= OB.shape[0]:
                return PAUSED
            OB[k, :] = bits
            if NP[N] > 0:
                OX[k, :] = PX[N, 0]
                OW[k] = 1
            else:
                OW[k] = 0
            ist[I_NOUT] = k + 1
            st[ST_PATTERNS] += 1
            if not _backtrack(net, lay, rows, ist, path, pts, unstable, tol):
                return DONE
            continue
        l = layer_of[u]
        i = u - off[l]
        if not entered[u]:
            if steps >= budget or st[ST_LP_ITERATIONS] >= lp_end:
                return PAUSED
            steps += 1
            st[ST_NODES] += 1
            entered[u] = 1
            dec[u, 0] = -1
            dec[u, 1] = -1
            pend[u] = -1
            if i == 0 and l > 0:
                _build_layer(net, lay, bits, l, use_z)
                st[ST_REGIONS] += 1
            if eager and unstable[u]:
                _eager(net, lay, rows, ist, path, pts, unstable, u, l, tol, cap, use_z, xn, gn, st)
        if fixed[u] >= 0:
            b = fixed[u]
            n = NP[u]
            PX[u + 1, :n] = PX[u, :n]
            PG[u + 1, :n] = PG[u, :n]
            NP[u + 1] = n
            entered[u] = 0
            _descend(net, lay, rows, ist, bits, pushed, unstable, u, b, tol)
            continue
        p0, p1, r0, r1 = _sides(lay, l, i, tol)
        if settled[u] >= 0:
            p0 = p0 and settled[u] == 0
            p1 = p1 and settled[u] == 1
        end = off[l + 1]
        npts = NP[u]
        for b in range(2):
            if dec[u, b] >= 0:
                continue
            if not (p0 if b == 0 else p1):
                dec[u, b] = 0
                st[ST_BOX_REFUTED] += 1
                continue
            DX = PX[u + 1] if b == 0 else QX[u]
            DG = PG[u + 1] if b == 0 else QG[u]
            n = _select_into(PX[u], PG[u], npts, u, b, tol, keep, unstable, bits, end, DX, DG)
            if n > 0:
                st[ST_POINT_CERTIFIED] += 1
            elif npts > 0 and _segment(net, lay, bits, unstable, PX[u], PG[u], npts, l, i, u, b, tol, xn, gn):
                DX[0, :] = xn
                DG[0, :] = gn
                n = 1
                st[ST_SEGMENT_CERTIFIED] += 1
            else:
                r = _lp_side(net, lay, rows, ist, bits, unstable, u, l, i, b, not (r0 if b == 0 else r1), tol, cap,
                             use_z, xn, gn, st)
                if r == 1:
                    DX[0, :] = xn
                    DG[0, :] = gn
                    n = 1
                elif r == 0:
                    dec[u, b] = 0
                    continue
                else:
                    ist[I_REQU] = u
                    ist[I_REQB] = b
                    return NEED_DECISION
            dec[u, b] = 1
            if b == 0:
                NP[u + 1] = n
            else:
                NQ[u] = n
        entered[u] = 0
        go1 = False
        if dive and dec[u, 0] == 1 and dec[u, 1] == 1:
            st[ST_TWO_WAY] += 1
            go1 = rand[u] < 0.5
        if dec[u, 0] == 1 and not go1:
            if dec[u, 1] == 1 and not dive:
                pend[u] = 1
            _descend(net, lay, rows, ist, bits, pushed, unstable, u, 0, tol)
        elif dec[u, 1] == 1:
            n = NQ[u]
            PX[u + 1, :n] = QX[u, :n]
            PG[u + 1, :n] = QG[u, :n]
            NP[u + 1] = n
            _descend(net, lay, rows, ist, bits, pushed, unstable, u, 1, tol)
        else:
            st[ST_DEAD_ENDS] += 1
            _unsettle(path, u, end)
            bits[u] = -1
            if not _backtrack(net, lay, rows, ist, path, pts, unstable, tol):
                return DONE


@njit(**_JIT)
def _start(net, lay, rows, ist, path, pts, st, fixed, unstable, tol, cap, use_z, prefix, X0):
    """Set the walk at the node of `prefix` (an int8 array of bits): layer maps, rows, and the root points
    that lie in its region. Returns 1 (ready, with points), 0 (ready, no point: the caller decides it) or -1
    (empty: contradicts a stable unit, the box bounds or a dual certificate)."""
    off, layer_of = net[4], net[5]
    bits, pushed, pend, entered = path[0], path[1], path[2], path[4]
    PX, PG, NP = pts[0], pts[1], pts[2]
    N = bits.size
    k = prefix.size
    bits[:] = -1
    pushed[:] = 0
    pend[:] = -1
    entered[:] = 0
    path[5][:] = -1
    ist[I_NROWS] = 0
    ist[I_ROOT] = k
    ist[I_NOUT] = 0
    _build_layer(net, lay, bits, 0, use_z)
    for u in range(k):
        l = layer_of[u]
        i = u - off[l]
        if i == 0 and l > 0:
            _build_layer(net, lay, bits, l, use_z)
        b = prefix[u]
        if fixed[u] >= 0 and fixed[u] != b:
            return -1
        if unstable[u]:
            p0, p1, r0, r1 = _sides(lay, l, i, tol)
            if not (p0 if b == 0 else p1):
                return -1
        _descend(net, lay, rows, ist, bits, pushed, unstable, u, b, tol)
    n0 = X0.shape[1]
    g = np.empty(N)
    n = 0
    cap_pts = PX.shape[1]
    for p in range(X0.shape[0]):
        _forward(net, X0[p], g)
        if _verify(g, bits, unstable, k, tol, -1, 0):
            if n < cap_pts:
                PX[k, n, :] = X0[p]
                PG[k, n, :] = g
                n += 1
    if n == 0 and ist[I_NROWS] > 0:      # no sample in the region: the margin LP of the prefix's rows
        xn = np.empty(n0)
        r = _lp_side(net, lay, rows, ist, bits, unstable, -1, 0, 0, 0, False, tol, cap, use_z, xn, g, st)
        if r == 1:
            PX[k, 0, :] = xn
            PG[k, 0, :] = g
            n = 1
        elif r == 0:
            return -1
    NP[k] = n
    ist[I_DEPTH] = k
    return 1 if n > 0 else 0

# ---- the Python driver ------------------------------------------------------------------------------


class CompiledSearch:
    """The walk for one problem (net, box, stable bits as int8 with -1 = unstable, tol)."""

    def __init__(self, net, box, fixed_bits, tol: float = DEFAULT_TOL, options=None):
        self.opt = options or EngineOptions()
        self.net = net
        self.box = box
        # fresh writable copies: arrays that arrive read-only (from Ray's object store) would be another
        # type for numba, and each worker would compile the walk again
        W = [np.array(w, np.float64, order="C") for w in net.weights]
        B = [np.array(b, np.float64, order="C") for b in net.biases]
        self.sizes = np.array(net.hidden_sizes, np.int64)
        self.L = len(self.sizes)
        self.off = np.r_[0, np.cumsum(self.sizes)].astype(np.int64)
        self.N = int(self.off[-1])
        self.n0 = int(net.n_inputs)
        self.tol = float(tol)
        self.fixed = np.array(fixed_bits, np.int8).reshape(-1)
        if self.fixed.size != self.N:
            raise ValueError(f"fixed_bits has {self.fixed.size} entries, the net has {self.N} hidden units")
        self.unstable = self.fixed < 0
        lo = np.array(box.lo, np.float64)
        hi = np.array(box.hi, np.float64)
        self.lo, self.hi = lo, hi
        self.use_z = bool(self.sizes[0] < self.n0)
        nmax = int(self.sizes.max())
        d = int(self.sizes[0]) if self.use_z else self.n0
        WH = np.zeros((self.L, nmax, nmax))
        BH = np.zeros((self.L, nmax))
        BH[0, :self.sizes[0]] = B[0]
        for l in range(1, self.L):
            WH[l, :self.sizes[l], :self.sizes[l - 1]] = W[l]
            BH[l, :self.sizes[l]] = B[l]
        layer_of = np.repeat(np.arange(self.L), self.sizes).astype(np.int64)
        absbox = np.maximum(np.abs(lo), np.abs(hi))
        self._net = (W[0], WH, BH, self.sizes, self.off, layer_of, self.fixed, lo, hi, absbox)
        L, N, n0 = self.L, self.N, self.n0
        self._lay = (np.zeros((L, nmax, d)), np.zeros((L, nmax, n0)), np.zeros((L, nmax)), np.zeros((L, nmax)),
                     np.zeros((L, nmax)), np.zeros((L, nmax)), np.zeros((L, nmax)), np.zeros((L, nmax, 2), np.int8),
                     np.zeros((L, nmax, 2, max(N, 1))))
        P = self.opt.pool or int(min(max(16, 2 * d), 256))   # recent vertices that seed the next LP's columns
        self._rows = (np.zeros((N + 1, d)), np.zeros((N + 1, n0)), np.zeros(N + 1), np.array([self.tol]),
                      np.zeros((P, d)), np.zeros((P, n0)), np.zeros(2, np.int64))
        self._ist = np.zeros(I_SIZE + 3 * self.L, np.int64)
        self._path = (np.full(N, -1, np.int8), np.zeros(N, np.int8), np.full(N, -1, np.int8),
                      np.full((N, 2), -1, np.int8), np.zeros(N, np.int8), np.full(N, -1, np.int8),
                      np.zeros(N, np.int64))
        K = max(int(self.opt.max_points), 1)
        KR = max(K, int(self.opt.root_points))
        self.keep = K
        self._pts = (np.zeros((N + 1, KR, n0)), np.zeros((N + 1, KR, max(N, 1))), np.zeros(N + 1, np.int64),
                     np.zeros((N, KR, n0)), np.zeros((N, KR, max(N, 1))), np.zeros(N, np.int64))
        self.out_cap = 2048
        self._out = (np.zeros((self.out_cap, N), np.int8), np.zeros((self.out_cap, n0)),
                     np.zeros(self.out_cap, np.int8))
        span = hi - lo
        self.cap = float(self.opt.cap) * float(np.mean(span)) if n0 else 0.0
        self._st = np.zeros(len(STAT_NAMES), np.int64)
        self.rng = np.random.default_rng(self.opt.seed)
        self.budget = 2000
        self.stats = self._stats_dict()

    # ---- helpers ----------------------------------------------------------------------------------
    def _stats_dict(self) -> dict:
        return {k: int(v) for k, v in zip(STAT_NAMES, self._st)}

    def _root_points(self) -> np.ndarray:
        m = int(self.opt.root_samples)
        span = self.hi - self.lo
        center = ((self.lo + self.hi) / 2)[None, :]
        if m <= 0:
            return np.ascontiguousarray(center)
        r = self.rng
        U = self.lo + span * r.random((m // 2, self.n0))
        p = r.random((m - m // 2, 1))
        V = self.lo + span * (r.random((m - m // 2, self.n0)) < p)
        return np.ascontiguousarray(np.vstack([center, U, V]))

    def _next_budgets(self, budget: int, lp_budget: int, seconds: float, lp_iterations: int) -> tuple[int, int]:
        """The node and LP-iteration budgets of the next call into the compiled walk, so that a call lasts about
        CALL_SECONDS: the deadline, Ctrl-C and checkpoints are looked at between calls, on wide layers too
        (where one node can cost thousands of LP iterations)."""
        if seconds > CALL_SECONDS:
            budget = max(1, budget // 2)
        elif seconds < CALL_SECONDS / 4:
            budget = min(2 * budget, self.budget)
        if lp_iterations > 0 and seconds > 0:
            lp_budget = int(min(max(lp_iterations / seconds * CALL_SECONDS, 1000), 1 << 24))
        return budget, lp_budget

    def _decide_exact(self, prefix_bits, u, b):
        """The brute force's LP on the decided unstable units plus (u, b): ('point', x, g), 'feasible' or
        'refuted'."""

        self._st[ST_DEFINITION_LPS] += 1
        bits = np.array(prefix_bits, np.int8)
        if u >= 0:
            bits[u] = b
        rows = (bits >= 0) & self.unstable
        x, t = prefix_margin_point(self.net, self.box, bits, rows)
        if x is None or not t > self.tol:
            return "refuted", None, None
        g = np.concatenate(self.net.preactivations(x), axis=1)[0]
        if self._witness_ok(g[None, :], bits[None, :])[0]:
            return "point", x, g
        return "feasible", None, None

    def _witness_ok(self, G, B) -> np.ndarray:
        """Exact check (ReluNet's forward pass): do pre-activations G meet bits B on every decided unstable
        unit (g > tol on 1s, g <= 0 on 0s)?"""
        un = self.unstable[None, :]
        bad1 = (B == 1) & un & ~(G > self.tol)
        bad0 = (B == 0) & un & ~(G <= 0.0)
        return ~(bad1 | bad0).any(axis=1)

    def _answer(self, res, x, g):
        """Write the caller's decision of the pending child into the walk state."""
        u, b = int(self._ist[I_REQU]), int(self._ist[I_REQB])
        dec = self._path[3]
        PX, PG, NP, QX, QG, NQ = self._pts
        if res == "refuted":
            dec[u, b] = 0
            return
        dec[u, b] = 1
        n = 0
        if res == "point":
            DX, DG = (PX[u + 1], PG[u + 1]) if b == 0 else (QX[u], QG[u])
            DX[0, :] = x
            DG[0, :] = g
            n = 1
        if b == 0:
            NP[u + 1] = n
        else:
            NQ[u] = n

    def _flush(self, emit, stop_flag=None):
        """Emit the leaves in the output buffer after the exact witness check. When stop_flag() turns true
        after an emit, stop there: returns the unemitted leaves as full-length prefixes (else None)."""
        k = int(self._ist[I_NOUT])
        self._ist[I_NOUT] = 0
        if not k:
            return None
        OB, OX, OW = self._out
        Bk = OB[:k]
        ok = np.zeros(k, bool)
        has = OW[:k] == 1
        if has.any():
            idx = np.flatnonzero(has)
            G = np.concatenate(self.net.preactivations(OX[idx]), axis=1)
            ok[idx] = self._witness_ok(G, Bk[idx])
        for j in range(k):
            if not ok[j]:
                self._st[ST_WITNESS_RECHECKED] += 1
                if OW[j] == 1:           # the compiled forward pass disagreed with ReluNet's: the exact LP
                    res = self._decide_exact(Bk[j], -1, 0)[0]
                    if res == "refuted":
                        continue
            emit(Bk[j])
            if stop_flag is not None and j + 1 < k and stop_flag():
                return [pattern_string(row == 1) for row in Bk[j + 1:k]]
        return None

    def _frontier(self) -> list[str]:
        bits, pend = self._path[0], self._path[2]
        depth, root = int(self._ist[I_DEPTH]), int(self._ist[I_ROOT])
        s = pattern_string(bits[:depth] == 1)
        fr = [s]
        for v in range(depth - 1, root - 1, -1):
            if pend[v] >= 0:
                fr.append(s[:v] + str(int(pend[v])))
        return fr

    # ---- the walk -------------------------------------------------------------------------------
    def dive(self, prefix: str, rand, deadline=None):
        """Knuth's probe below `prefix` (a prefix string over all hidden units, as `run` takes): one random
        root-to-leaf path of the walk's own tree, each child decided by the walk's certified tests; where both
        children are feasible, child 1 iff rand[u] < 0.5 (rand: N uniforms). Returns (k, leaf): the value of
        the probe is 2^k (k = nodes with two feasible children), the leaf's pattern (int8, checked by the exact
        forward pass like every emitted one); (k, None) at a dead end (value 0); (None, None) when the deadline
        passed first."""
        leaf = []
        done, _ = self.run(lambda b: leaf.append(np.array(b)), [prefix], deadline=deadline,
                           dive_rand=np.ascontiguousarray(rand, np.float64))
        if not done:
            return None, None
        return int(self._st[ST_TWO_WAY]), (leaf[0] if leaf else None)

    def run(self, emit, roots=None, deadline=None, stop_flag=None, checkpoint=None, dive_rand=None):
        """Walk the subtrees of `roots` (prefix strings; None = the whole tree) in order.

        emit(bits) receives every feasible pattern (an int8 array that is reused: copy it).
        checkpoint: an object with due() and save(frontier); when due, save gets the unexplored
        frontier, consistent with the patterns emitted so far. Stops at `deadline` (time.monotonic)
        or when stop_flag() turns true. Returns (complete, frontier); the frontier lists the
        unexplored prefixes (empty when complete).
        """
        roots = [""] if roots is None else list(roots)
        dive = dive_rand is not None
        rand = dive_rand if dive else np.zeros(1)
        X0 = self._root_points()
        budget, lp_budget = 16, 1 << 16       # per call into the compiled walk, adapted to CALL_SECONDS
        net, lay, rows, ist, path, pts, out, st = (self._net, self._lay, self._rows, self._ist, self._path,
                                                   self._pts, self._out, self._st)
        self._st[:] = 0

        def stopped() -> bool:
            return (deadline is not None and time.monotonic() >= deadline) or \
                (stop_flag is not None and stop_flag())

        try:
            for k, p in enumerate(roots):
                rest = list(roots[k + 1:])
                if stopped():
                    return False, [p] + rest
                if k and checkpoint is not None and checkpoint.due():   # between roots too: a resumed count's
                    checkpoint.save([p] + rest)         # frontier can be many subtrees of one call each
                pre = (np.frombuffer(p.encode(), np.uint8) - ord("0")).astype(np.int8)
                r = _start(net, lay, rows, ist, path, pts, st, self.fixed, self.unstable, self.tol, self.cap,
                           self.use_z, pre, X0)
                if r < 0:
                    continue
                if r == 0 and len(p):
                    res, x, g = self._decide_exact(path[0], -1, 0)
                    if res == "refuted":
                        continue
                    if res == "point":
                        pts[0][len(p), 0] = x
                        pts[1][len(p), 0] = g
                        pts[2][len(p)] = 1
                while True:
                    t_call, it0 = time.monotonic(), st[ST_LP_ITERATIONS]
                    status = _walk(net, lay, rows, ist, path, pts, out, st, self.fixed, self.unstable, self.tol,
                                   self.cap, self.use_z, self.keep, bool(self.opt.eager), budget, lp_budget,
                                   dive, rand)
                    budget, lp_budget = self._next_budgets(budget, lp_budget, time.monotonic() - t_call,
                                                           int(st[ST_LP_ITERATIONS] - it0))
                    if status == NEED_DECISION:
                        u, b = int(ist[I_REQU]), int(ist[I_REQB])
                        self._answer(*self._decide_exact(path[0], u, b))
                        continue
                    left = self._flush(emit, stop_flag)
                    if left is not None:
                        return False, left + (self._frontier() if status != DONE else []) + rest
                    if status == DONE:
                        break
                    if checkpoint is not None and checkpoint.due():
                        checkpoint.save(self._frontier() + rest)
                    if stopped():
                        return False, self._frontier() + rest
            return True, []
        finally:
            self.stats = self._stats_dict()


def warm_up() -> None:
    """Compile the walk now (about 45 s the first time; later runs load it from src/__pycache__)."""

    rng = np.random.default_rng(0)
    for n0 in (3, 2):                       # features z = W_1 x (narrow first layer) and x itself
        net = ReluNet([rng.normal(size=(2 if n0 == 3 else 3, n0)), rng.normal(size=(2, 2 if n0 == 3 else 3)),
                       rng.normal(size=(1, 2))], [rng.normal(size=2 if n0 == 3 else 3), rng.normal(size=2),
                                                 np.zeros(1)])
        CompiledSearch(net, Box.uniform(n0), np.full(net.n_hidden_units, -1, np.int8)).run(lambda b: None)


@dataclass
class EngineOptions:
    """Tuning knobs of the walk; none of them changes the result."""

    max_points: int = 8           # verified points carried per node
    root_points: int = 32         # points the root keeps from the samples
    root_samples: int = 64        # random box points drawn for the root (plus the box centre)
    eager: bool = True            # settle one-sided units of the layer when a node is entered
    cap: float = 1e-4             # margin cap of the LP, times the mean box width
    pool: int = 0                 # recent box vertices that seed an LP's columns (0: 2 x features, 16 to 256)
    seed: int = 0


def make_engine(net, box, fixed_bits, tol, options: EngineOptions | None = None):
    """The walk for one problem (net, box, stable bits, tol)."""

    return CompiledSearch(net, box, fixed_bits, tol, options or EngineOptions())
