"""Exact 1-D sections: the pieces of the linear-region partition along segments (pure numpy)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.sections.plane import check_points

SEGMENT_TOL = 1e-12

# ---- 1-D sections --------------------------------------------------------------------


@dataclass
class SegmentSection:
    """The exact linear regions crossed by the segment x(τ) = start + τ·(end − start), τ in [0, 1]."""

    start: np.ndarray
    end: np.ndarray
    breakpoints: np.ndarray      # sorted τ in (0, 1) where the pattern changes
    patterns: np.ndarray         # (regions, N) uint8, in order along the segment
    verified: np.ndarray         # (regions,) bool: the midpoint of each piece checked by the forward pass

    @property
    def regions(self) -> int:
        return len(self.patterns)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(self.end - self.start))

    @property
    def regions_per_unit_length(self) -> float:
        return self.regions / self.length if self.length > 0 else float("nan")


def segment_sections(net: ReluNet, starts, ends, tol: float = SEGMENT_TOL) -> list[SegmentSection]:
    """Exact 1-D sections of many segments at once (all intervals of all segments in one batch per layer)."""
    A = np.atleast_2d(np.asarray(starts, np.float64))
    B = np.atleast_2d(np.asarray(ends, np.float64))
    if A.shape != B.shape or A.shape[1] != net.n_inputs:
        raise ToolError(f"segments need start and end points of {net.n_inputs} values each, got shapes "
                        f"{A.shape} and {B.shape}")
    S = len(A)
    W, b = net.weights, net.biases
    seg = np.arange(S)
    lo, hi = np.zeros(S), np.ones(S)
    slope, const = (B - A) @ W[0].T, A @ W[0].T + b[0]       # (P, n1) per interval
    bits = np.zeros((S, 0), np.uint8)
    flat = np.zeros((S, 0), bool)
    for layer in range(net.n_hidden_layers):
        with np.errstate(divide="ignore", invalid="ignore"):
            r = np.where(slope != 0, -const / slope, np.inf)
        r = np.where((r > lo[:, None] + tol) & (r < hi[:, None] - tol), r, np.inf)
        r.sort(axis=1)
        # merge roots closer than tol to the previous kept root (they cut no piece wider than tol)
        for _ in range(r.shape[1]):
            close = np.zeros_like(r, bool)
            with np.errstate(invalid="ignore"):
                close[:, 1:] = np.isfinite(r[:, 1:]) & (r[:, 1:] - r[:, :-1] <= tol)
            if not close.any():
                break
            r[close] = np.inf
            r.sort(axis=1)
        k = np.isfinite(r).sum(axis=1)
        width = int(k.max()) + 1 if len(k) else 1
        ends_ = np.concatenate([r[:, :width - 1], np.full((len(r), 1), np.inf)], axis=1)
        ends_ = np.where(np.arange(width)[None, :] < k[:, None], ends_, hi[:, None])
        starts_ = np.concatenate([lo[:, None], ends_[:, :-1]], axis=1)
        use = np.arange(width)[None, :] <= k[:, None]
        parent = np.repeat(np.arange(len(r)), k + 1)
        new_lo, new_hi = starts_[use], ends_[use]
        mid = 0.5 * (new_lo + new_hi)
        g = slope[parent] * mid[:, None] + const[parent]
        layer_bits = g > 0
        layer_flat = (slope[parent] == 0) & (const[parent] == 0)
        bits = np.hstack([bits[parent], layer_bits.astype(np.uint8)])
        flat = np.hstack([flat[parent], layer_flat])
        seg, lo, hi = seg[parent], new_lo, new_hi
        slope, const = slope[parent] * layer_bits, const[parent] * layer_bits
        slope, const = slope @ W[layer + 1].T, const @ W[layer + 1].T + b[layer + 1]
    mids = A[seg] + (0.5 * (lo + hi))[:, None] * (B[seg] - A[seg])
    ok, _ = check_points(net, mids, bits, flat) if len(mids) else (np.zeros(0, bool), None)
    out = []
    for i in range(S):
        rows = np.flatnonzero(seg == i)
        out.append(SegmentSection(start=A[i].copy(), end=B[i].copy(), breakpoints=lo[rows][1:].copy(),
                                  patterns=bits[rows].astype(np.uint8), verified=ok[rows]))
    return out


def segment_section(net: ReluNet, start, end, tol: float = SEGMENT_TOL) -> SegmentSection:
    """Exact 1-D section of one segment."""
    return segment_sections(net, [start], [end], tol)[0]


def segment_along(net: ReluNet, start, direction, length: float | None = None, box: Box | None = None,
                  tol: float = SEGMENT_TOL) -> SegmentSection:
    """Exact 1-D section from `start` along `direction`: over `length` (L2), or up to where the ray leaves `box`."""
    x = np.asarray(start, np.float64).reshape(-1)
    d = np.asarray(direction, np.float64).reshape(-1)
    nd = np.linalg.norm(d)
    if nd == 0 or not np.isfinite(nd):
        raise ToolError("the direction must be a finite non-zero vector")
    d = d / nd
    if length is None:
        if box is None:
            raise ToolError("give a length or a box to stop the segment at")
        if not box.contains(x)[0]:
            raise ToolError("the start point lies outside the box")
        with np.errstate(divide="ignore", invalid="ignore"):
            up = np.where(d > 0, (box.hi - x) / d, np.inf)
            down = np.where(d < 0, (box.lo - x) / d, np.inf)
        length = float(min(up.min(), down.min()))
        if not np.isfinite(length) or length <= 0:
            raise ToolError("the direction leaves the box at once (the start lies on a face it points out of)")
    if not length > 0:
        raise ToolError(f"the segment length must be > 0, got {length}")
    return segment_section(net, x, x + length * d, tol)
