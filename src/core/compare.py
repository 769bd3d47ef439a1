"""Net-versus-net comparison: the one rule that decides whether two nets agree, and its record.

The rule (docs/transform.md, "When two nets agree"). A reference net a and a candidate b agree at a
point x when

    max_j |b_j(x) - a_j(x)|  <=  rtol * max(1, max_j |a_j(x)|)

i.e. the largest output error, measured against the largest output of the reference: absolute below 1,
relative above, never asking for agreement closer than rtol in absolute terms. It is norm-wise (per
point, over the output vector) on purpose: the rounding error of a computed output is of the size of
the whole output vector (a logit near 0 obtained by cancellation carries the absolute error of the
large terms it came from), so an elementwise rule would flag correct nets at tight tolerances, while
this one still catches any error that matters next to the largest logit, the one that decides the
argmax. Points in the band of a (some hidden unit of a with |g(x)| <= band_width; no band when
band_width is 0) are counted but not held to the rule: there the two-hidden-layer net may differ
by construction. The comparison is ok iff no point outside the band breaks the rule.

`compare_nets` gives the record of one set of points (keys in its docstring) that every
net-versus-net check writes: the transformation (src.transform.verify), compression
(src.compress.run.verify) and `src.analysis.Analysis.verify`. `compare_points` gives the same rule
per point, for checks that select their points themselves (the interior points of the transformation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from src.core.patterns import row_keys

RULE = ("max_j |b_j(x) - a_j(x)| <= rtol * max(1, max_j |a_j(x)|) at every point x outside the band "
        "(some hidden unit of a with |g(x)| <= band_width)")


def output_errors(ya: np.ndarray, yb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per point (row): the rule's error max_j |yb_j - ya_j| and its scale max(1, max_j |ya_j|)."""
    ya, yb = np.atleast_2d(ya), np.atleast_2d(yb)
    if ya.size == 0:
        return np.zeros(len(ya)), np.ones(len(ya))
    return np.abs(yb - ya).max(axis=1), np.maximum(1.0, np.abs(ya).max(axis=1))


def min_abs_preactivation(net, x, batch: int = 4096) -> np.ndarray:
    """min over all hidden units of |g(x)| of `net`, per point (the distance to the big-M band)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.empty(len(x))
    for s in range(0, len(x), batch):
        gs = net.preactivations(x[s:s + batch])
        out[s:s + batch] = np.min(np.abs(np.concatenate(gs, axis=1)), axis=1) if gs else np.inf
    return out


def batched_forward(net, x, batch: int = 4096) -> np.ndarray:
    """net.forward on x in batches of `batch` points (a ReluNet or a TwoHiddenNet)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    if not len(x):
        return np.zeros((0, net.layer_sizes[-1]))
    return np.concatenate([net.forward(x[s:s + batch]) for s in range(0, len(x), batch)])


@dataclass
class PointComparison:
    """The rule at each point of X: outputs of a and b, error, error / scale, match, in a's band."""

    ya: np.ndarray
    yb: np.ndarray
    abs_error: np.ndarray
    rel_error: np.ndarray
    match: np.ndarray
    in_band: np.ndarray

    @property
    def mismatch_outside_band(self) -> np.ndarray:
        """The points that break the rule: no match and not in the band."""
        return ~self.match & ~self.in_band


def compare_points(a, b, X, *, rtol: float, band_width: float = 0.0) -> PointComparison:
    """a (the reference) against b on the points X, per point (the module's rule)."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    ya, yb = batched_forward(a, X), batched_forward(b, X)
    err, scale = output_errors(ya, yb)
    in_band = (min_abs_preactivation(a, X) <= band_width if band_width > 0 and len(X)
               else np.zeros(len(X), dtype=bool))
    return PointComparison(ya, yb, err, err / scale, err <= rtol * scale, in_band)


def _stats(pc: PointComparison, mask: np.ndarray, labels=None) -> dict:
    """The record's numbers over the points of `mask`."""
    n = int(mask.sum())
    out_band = mask & ~pc.in_band
    agree = pc.ya.argmax(axis=1) == pc.yb.argmax(axis=1) if n else np.zeros(len(mask), bool)
    rec = {"points": n, "in_band": int((mask & pc.in_band).sum()),
           "mismatch_outside_band": int((out_band & ~pc.match).sum()),
           "max_abs_error": float(pc.abs_error[mask].max()) if n else 0.0,
           "max_rel_error": float(pc.rel_error[mask].max()) if n else 0.0,
           "max_abs_error_outside_band": float(pc.abs_error[out_band].max()) if out_band.any() else 0.0,
           "fraction_match": float(pc.match[mask].mean()) if n else None,
           "argmax_agreement": float(agree[mask].mean()) if n else None,
           "argmax_differ": int((mask & ~agree).sum()) if n else 0}
    if labels is not None:
        y = np.asarray(labels)
        rec["accuracy_a"] = float((pc.ya[mask].argmax(axis=1) == y[mask]).mean()) if n else None
        rec["accuracy_b"] = float((pc.yb[mask].argmax(axis=1) == y[mask]).mean()) if n else None
    return rec


def compare_nets(a, b, X, *, rtol: float, band_width: float = 0.0, labels=None, pattern_keys=None) -> dict:
    """The verification record of a (the reference) against b on the points X (the module's rule).

    Keys: points, in_band (points in a's band, not held to the rule), mismatch_outside_band (points
    that break the rule), max_abs_error, max_rel_error (the largest error and error / max(1, max|a|)),
    max_abs_error_outside_band, fraction_match, argmax_agreement, argmax_differ; with labels (one
    class per point) accuracy_a, accuracy_b; ok (no mismatch outside the band).

    pattern_keys (src.core.patterns.pattern_keys of a pattern list, for a net built from that list):
    points whose pattern of a is not among them are not held to the rule (the net has no term for
    their region); the record then adds missing_pattern (their number) and the same numbers over
    the points with a listed pattern (`known`) and over the others (`missing`, None when there are
    none), and ok looks at `known` only. The top-level numbers are over all points.
    """
    pc = compare_points(a, b, X, rtol=rtol, band_width=band_width)
    n = len(pc.match)
    if labels is not None and len(np.asarray(labels)) != n:
        raise ValueError(f"{len(np.asarray(labels))} labels for {n} points")
    rec = _stats(pc, np.ones(n, dtype=bool), labels)
    held = rec
    if pattern_keys is not None:
        X = np.atleast_2d(np.asarray(X, dtype=np.float64))
        known = np.array([k in pattern_keys for k in row_keys(a.patterns(X))] if n else [], dtype=bool)
        held = _stats(pc, known)
        rec.update(missing_pattern=int((~known).sum()), known=held,
                   missing=_stats(pc, ~known) if (~known).any() else None)
    rec["ok"] = held["mismatch_outside_band"] == 0
    return rec
