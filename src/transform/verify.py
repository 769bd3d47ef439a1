"""Verification of a two-hidden-layer net against the original: interior points of its regions and seeded points."""
from __future__ import annotations

import sys
import time

import numpy as np

from src.core.box import Box
from src.core.compare import compare_nets, compare_points, min_abs_preactivation
from src.core.defaults import DEFAULT_TOL, DEFAULT_TRANSFORM_RTOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.progress import progress_iter
from src.counting.feasibility_lp import max_margin_point
from src.io.mnist import load_mnist_arrays
from src.transform.two_hidden import TwoHiddenNet


# ---------------------------------------------------------------------------------------------
# Verification: the rule of src.core.compare (docs/transform.md, "When two nets agree")
# ---------------------------------------------------------------------------------------------
def verify_interior(net: ReluNet, two: TwoHiddenNet, box: Box, patterns, band_width: float,
                    tol: float = DEFAULT_TOL, rtol: float = DEFAULT_TRANSFORM_RTOL, limit: int = 0, seed: int = 0,
                    progress: bool = False) -> dict:
    """At one interior point per pattern (max two-sided margin by LP): the outputs must agree (the rule
    of src.core.compare).

    Patterns with LP margin <= tol have no interior point; points whose margin min|g| <= band_width
    lie in the band and are not held to rtol (reported), nor are points whose pattern is not the one
    they were computed for (off_pattern). `limit` > 0 checks a seeded sample of that many.
    """

    t0 = time.perf_counter()
    P = np.asarray(patterns, dtype=np.uint8)
    sel = np.arange(len(P))
    if limit and limit < len(P):
        sel = np.sort(np.random.default_rng(seed).choice(len(P), size=limit, replace=False))
    xs, idx, no_int = [], [], 0
    for j in progress_iter(sel, progress, "interior points (LP)"):
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
        pc = compare_points(net, two, X, rtol=rtol, band_width=band_width)
        on = (net.patterns(X) == P[idx]).all(axis=1)
        fail = pc.mismatch_outside_band & on
        res.update(off_pattern=int((~on).sum()), in_band=int(pc.in_band.sum()),
                   max_abs_error=float(pc.abs_error.max()), max_rel_error=float(pc.rel_error.max()),
                   min_margin=float(min_abs_preactivation(net, X).min()), failures=int(fail.sum()),
                   failed_patterns=[int(v) for v in idx[fail][:20]])
    else:
        res.update(off_pattern=0, in_band=0, max_abs_error=None, max_rel_error=None, min_margin=None,
                   failures=0, failed_patterns=[])
    res["mismatch_outside_band"] = res["failures"]
    res["ok"] = res["failures"] == 0
    res["seconds"] = round(time.perf_counter() - t0, 3)
    return res


def compare_on_points(net: ReluNet, two: TwoHiddenNet, X, band_width: float, pattern_keys: set | None = None,
                      rtol: float = DEFAULT_TRANSFORM_RTOL, labels=None) -> dict:
    """`compare_nets` (src.core.compare) of the original against the new net on X, as the transform's
    .json writes it: always with the `known` / `missing` blocks and `missing_pattern` (without
    pattern_keys every point is known), the `all` block, and with labels the accuracies also as
    accuracy_original / accuracy_transformed. Points whose pattern is not among `pattern_keys`
    (src.core.patterns.pattern_keys of an incomplete list) are reported apart and not held to rtol.
    """
    rec = compare_nets(net, two, X, rtol=rtol, band_width=band_width, labels=labels, pattern_keys=pattern_keys)
    if pattern_keys is None:
        rec.update(missing_pattern=0, missing=None,
                   known={k: v for k, v in rec.items() if k not in ("ok", "accuracy_a", "accuracy_b")})
    rec["all"] = {k: rec[k] for k in ("fraction_match", "argmax_agreement", "max_abs_error")}
    if labels is not None:
        rec["accuracy_original"], rec["accuracy_transformed"] = rec["accuracy_a"], rec["accuracy_b"]
    return rec


def _mnist_check(net, two, box, band_width, keys, rtol, data_root) -> dict:
    try:

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
