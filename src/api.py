"""The steps as library functions with plain arguments, in memory (no files); `src` re-exports them.

    from src import load_net, analyse_stability, count_regions, transform_net, verify_equivalence, compress_net

The scripts write the run directory's files around the same steps (src/regions.py, src/transform.py,
src/compress.py); these functions are what a notebook, a test or demo code calls.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bounds import Stability, analyse_stability
from .domain import Box, check_box
from .enumeration import EnumerationProblem, PatternSink, run_backends
from .ioutils import ToolError
from .network import ReluNet
from .readers import load_net

__all__ = ["load_net", "analyse_stability", "count_regions", "transform_net", "verify_equivalence", "compress_net",
           "RegionCount"]


@dataclass
class RegionCount:
    """The feasible activation patterns found (uint8 (P, N), lexicographic order) and how the count ended."""
    patterns: np.ndarray
    complete: bool
    backend: str
    stability: Stability
    stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return int(len(self.patterns))


def _box(net: ReluNet, box: Box | None, source=None) -> Box:
    """The box (default [0,1]^n0), checked against the net's inputs; source names the net in the message."""
    return check_box(Box.uniform(net.n_inputs) if box is None else box, net.n_inputs, source)


def count_domain(net: ReluNet, box: Box | None = None, source=None) -> Box:
    """The domain of a region count, checked: the net has a hidden layer and the box its inputs.

    One definition for count_regions here and the file driver src.regions.count_regions (source: the
    weights file, named in its messages).
    """
    where = "" if source is None else f"{source}: "
    if net.n_hidden_layers == 0:
        raise ToolError(f"{where}the network has no hidden layer, so it has exactly one linear region")
    return _box(net, box, source)


def count_stability(net: ReluNet, box: Box, *, backend: str = "auto", tol: float = 1e-6, exact: bool = False,
                    data=None, progress=None, time_limit: float | None = None,
                    deadline: float | None = None) -> Stability:
    """The stable units a region count starts from (src.bounds.analyse_stability).

    With data (points of the box, e.g. src.regions.count_data) the LP tier tightens every open unit
    only when the first backend `backend` tries solves the MILP (its big-M constants); without data
    analyse_stability's default (the full LP tier). One definition for both count drivers.
    """
    tight = None
    if data is not None:
        from .enumeration import backend_candidates, backend_class

        tight = backend_class(backend_candidates(backend)[0]).uses_milp
    return analyse_stability(net, box, tol=tol, exact=exact, progress=progress, time_limit=time_limit, data=data,
                             tight_bounds=tight, deadline=deadline)


def count_regions(net: ReluNet, box: Box | None = None, *, backend: str = "auto", tol: float = 1e-6,
                  time_limit: float | None = None, threads: int = 1, stability: Stability | None = None,
                  exact_stability: bool = False, **options) -> RegionCount:
    """Every feasible activation pattern of `net` on `box` (default [0,1]^n0), exactly.

    backend: auto (lp, then gurobi, then scip), milp (the paper's one-tree MILP: gurobi, else scip),
    or a registered name; options go to the backend (e.g. workers=2 for lp). A time limit returns
    what was found with complete=False. The file-writing driver is src.regions.count_regions.
    """
    box = count_domain(net, box)
    st = stability if stability is not None else count_stability(net, box, backend=backend, tol=tol,
                                                                    exact=exact_stability, time_limit=time_limit)
    sink = PatternSink()
    result, used, notes = run_backends(EnumerationProblem(net, box, st, tol), sink, backend, time_limit=time_limit,
                                       threads=threads, options=options)
    pats = sink.patterns() if len(sink) else np.zeros((0, net.n_hidden_units), np.uint8)
    return RegionCount(pats, bool(result.complete) and not result.interrupted, used, st, dict(result.stats), notes)


def transform_net(net: ReluNet, patterns=None, box: Box | None = None, *, big_m: float | None = None,
                  share: str = "full", progress: bool = False):
    """The two-hidden-layer net of Kumar, Serra & Ramalingam (2019) and its report.

    patterns: uint8 (P, N) feasible patterns (e.g. count_regions(...).patterns), or None for all 2^N
    (only for small N). Returns (TwoHiddenNet, report dict: patterns, big_m, band_width, sizes, seconds).
    """
    from .transform import DEFAULT_BIG_M, all_patterns, build_two_hidden, check_big_m

    box = _box(net, box)
    M = check_big_m(DEFAULT_BIG_M if big_m is None else big_m)
    P = all_patterns(net.n_hidden_units) if patterns is None else np.asarray(patterns, np.uint8)
    res = build_two_hidden(net, box, P, M, share=share, progress=progress)
    report = {"patterns": int(len(P)), "big_m": M, "band_width": res.band_width, "u_max": res.u_max,
              "share": share, "sizes": res.size_entry(), "pruned": len(res.pruned),
              "dropped_units": res.dropped_units, "merged_units": res.merged_units,
              "seconds": round(res.seconds, 4)}
    return res.net, report


def verify_equivalence(a: ReluNet, b, box: Box | None = None, *, points: int = 10000, seed: int = 0,
                       rtol: float = 1e-9, band_width: float = 0.0, test_set=None) -> dict:
    """Compare the outputs of a and b (a ReluNet or a TwoHiddenNet) on seeded points of the box.

    ok iff |a(x) - b(x)| <= rtol * max(1, |a(x)|) for every output at every point outside the band
    (points where some hidden unit of `a` has |g| <= band_width, the big-M band of a transformed net;
    0 for lossless compression). With test_set=(X, y) the same check runs on those points too.
    """
    from .verification import compare_outputs

    box = _box(a, box)
    X = box.sample(points, np.random.default_rng(seed))
    rec = {"points": compare_outputs(a, b, X, rtol, band_width), "seed": seed, "rtol": rtol}
    ok = rec["points"]["ok"]
    if test_set is not None:
        rec["test_set"] = compare_outputs(a, b, np.asarray(test_set[0], np.float64), rtol, band_width,
                                          labels=test_set[1])
        ok = ok and rec["test_set"]["ok"]
    rec["ok"] = bool(ok)
    return rec


def compress_net(net: ReluNet, box: Box | None = None, *, tol: float = 1e-6, exact: bool = True,
                 verify: bool = True, points: int = 10000, seed: int = 0):
    """Remove the stable units of `net` on `box` losslessly; returns src.compress.Compression.

    With verify (default) the compressed net is compared with the original on seeded points and a
    difference raises src.compress.VerificationError.
    """
    from .compress import compress_on_domain

    _, comp, _, _ = compress_on_domain(net, _box(net, box), tol=tol, exact=exact, verify_points=points,
                                       do_verify=verify, seed=seed)
    return comp
