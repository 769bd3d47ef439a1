"""Verification of a two-hidden-layer net against the original: interior points of its regions and seeded points."""
from __future__ import annotations

import sys
import time

import numpy as np

from src.core.box import Box
from src.core.compare import batched_forward as _forward
from src.core.compare import match_rows as _match
from src.core.compare import min_abs_preactivation
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.progress import _iter
from src.transform.two_hidden import TwoHiddenNet


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
    from src.counting.feasibility_lp import max_margin_point

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


def _mnist_check(net, two, box, band_width, keys, rtol, data_root) -> dict:
    try:
        from src.io.mnist import load_mnist_arrays

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
