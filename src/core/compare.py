"""Net-versus-net comparison: the one home of the criteria that decide whether two nets agree.

`match_rows` is the criterion of the transformation (per point: max_j |y'_j - y_j| <= rtol *
max(1, max_j |y_j|)); `relative_errors` the elementwise one of compression (|y' - y| / max(1, |y|)
<= rtol for every output). Both are absolute below 1 and relative above, so they never ask for
agreement closer than rtol in absolute terms.
"""
from __future__ import annotations

import numpy as np


def relative_errors(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """|a - b| / max(1, |a|), elementwise: relative for large outputs, absolute below 1."""
    return np.abs(a - b) / np.maximum(1.0, np.abs(a))


def match_rows(y0: np.ndarray, y1: np.ndarray, rtol: float):
    """Per point (row): (max abs error, that error over max(1, max|y0|), whether it is <= rtol)."""
    err = np.abs(y1 - y0).max(axis=1) if y0.size else np.zeros(len(y0))
    scale = np.maximum(1.0, np.abs(y0).max(axis=1)) if y0.size else np.ones(len(y0))
    return err, err / scale, err <= rtol * scale


def min_abs_preactivation(net, x, batch: int = 4096) -> np.ndarray:
    """min over all hidden units of |g(x)| of `net`, per point (the distance to the big-M band)."""
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    out = np.empty(len(x))
    for s in range(0, len(x), batch):
        gs = net.preactivations(x[s:s + batch])
        out[s:s + batch] = np.min(np.abs(np.concatenate(gs, axis=1)), axis=1) if gs else np.inf
    return out


def batched_forward(net, x, batch: int = 4096) -> np.ndarray:
    x = np.atleast_2d(np.asarray(x, dtype=np.float64))
    return np.concatenate([net.forward(x[s:s + batch]) for s in range(0, len(x), batch)]) if len(x) \
        else np.zeros((0, net.n_outputs))


def compare_outputs(a, b, X, rtol: float, band_width: float = 0.0, labels=None) -> dict:
    """a versus b on the points X (match_rows); points in a's band (min |g| <= band_width) are not held
    to rtol. ok iff no point outside the band mismatches."""
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    y0, y1 = batched_forward(a, X), b.forward(X)
    err, rel, ok = match_rows(y0, y1, rtol)
    in_band = min_abs_preactivation(a, X) <= band_width if band_width > 0 else np.zeros(len(X), bool)
    bad = ~ok & ~in_band
    rec = {"points": int(len(X)), "in_band": int(in_band.sum()), "mismatch_outside_band": int(bad.sum()),
           "max_abs_error": float(err.max()) if len(X) else 0.0, "max_rel_error": float(rel.max()) if len(X) else 0.0,
           "argmax_agreement": float((y0.argmax(1) == y1.argmax(1)).mean()) if len(X) else None}
    if labels is not None:
        y = np.asarray(labels)
        rec["accuracy_a"] = float((y0.argmax(1) == y).mean())
        rec["accuracy_b"] = float((y1.argmax(1) == y).mean())
    rec["ok"] = rec["mismatch_outside_band"] == 0
    return rec
