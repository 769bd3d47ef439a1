"""The library's entry point: one net on one box, every step of the toolkit as a method (docs/api.md).

    from src import Analysis, Box, load_net
    a = Analysis(load_net("forward_pass/activation_pattern/models/fcnn_run_100/weights.dat"))
    a.stability()                                   # computed once; every method below reuses it
    rc = a.count_regions(backend="auto")            # .count, .complete, .patterns, .bounds
    c = a.compress()                                # .net, .verification["ok"], .removed
    t = a.transform(rc.patterns)                    # .net, .verification["ok"], .sizes (None: all 2^N)

Everything happens in memory; the scripts write the run directory's files around the same steps
(src/counting/driver.py, src/compress/run.py, src/transform/run.py). Results are typed objects with
`to_json()` and a one-line `summary()`.
"""
from __future__ import annotations

import time

import numpy as np

from src.compress.lossless import Compression, compress
from src.core.box import Box, resolve_box
from src.core.compare import RULE, compare_nets
from src.core.defaults import DEFAULT_POINTS, DEFAULT_RTOL, DEFAULT_TOL, DEFAULT_TRANSFORM_RTOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.count import RegionCount, count_domain, enumerate_regions
from src.counting.knuth import RegionEstimate, estimate_regions
from src.counting.mipbound import DEFAULT_ALPHA, DEFAULT_TRIALS, MipBound, mipbound
from src.io.readers import load_net
from src.sections.plane import Plane, PlaneSection, default_view, plane_section, plane_through
from src.sections.segments import SegmentSection, segment_sections
from src.stability.analyse import analyse_stability
from src.stability.exact import milp_settle
from src.stability.record import Stability
from src.transform.two_hidden import DEFAULT_BIG_M, TransformResult, all_patterns, build_two_hidden, check_big_m


class Analysis:
    """A ReLU net on an input box (None: [0,1]^n0) with the feasibility tolerance `tol`.

    The stable units are computed on first use and shared by every step: the count starts from
    them, compression removes them, local counts and the transform reuse the same record.
    """

    def __init__(self, net: ReluNet, box: Box | None = None, *, tol: float = DEFAULT_TOL):
        if not isinstance(net, ReluNet):
            raise TypeError(f"Analysis needs a ReluNet (src.load_net reads one from a file), got {type(net).__name__}")
        if not (np.isfinite(tol) and tol >= 0):
            raise ToolError(f"tol must be a finite number >= 0, got {tol}")
        self.net = net
        self.box = resolve_box(box, net.n_inputs)
        self.tol = float(tol)
        self._stability: Stability | None = None

    @classmethod
    def load(cls, path, box: Box | None = None, *, tol: float = DEFAULT_TOL) -> "Analysis":
        """The net in `path` (weights.dat, .pt/.pth state_dict or .onnx) on `box`."""
        return cls(load_net(path), box, tol=tol)

    def __repr__(self) -> str:
        return f"Analysis({self.net!r}, box={self.box.name}, tol={self.tol:g})"

    # ---- stable units ------------------------------------------------------------------------------
    def stability(self, *, exact: bool = False, time_limit: float | None = None, progress=None) -> Stability:
        """The stable units on the box (src.stability.analyse.analyse_stability), computed once and cached.

        exact: every unit the LP tier leaves open is settled by an exact MILP; asked after a cheaper
        record exists, only that tier runs, on the cached bounds.
        """
        if self._stability is None:
            self._stability = analyse_stability(self.net, self.box, tol=self.tol, exact=exact, progress=progress,
                                                time_limit=time_limit)
        elif exact and not self._stability.exact:
            self._stability = milp_settle(self.net, self.box, self._stability, tol=self.tol, progress=progress,
                                          deadline=None if time_limit is None else time.perf_counter() + time_limit)
        return self._stability

    # ---- linear regions ----------------------------------------------------------------------------
    def count_regions(self, backend: str = "auto", time_limit: float | None = None, *, threads: int = 1,
                      exact_stability: bool = False, **options) -> RegionCount:
        """Every feasible activation pattern on the box, exactly (docs/counting.md).

        backend: auto (lp, then gurobi, then scip), milp (the paper's one-tree MILP: gurobi, else scip) or
        a registered name; options go to the backend (e.g. workers=2 for lp). A time limit returns what
        was found with complete=False and certified bounds in `.bounds`.
        """
        count_domain(self.net, self.box)
        st = self.stability(exact=exact_stability, time_limit=time_limit)
        return enumerate_regions(self.net, self.box, st, backend=backend, tol=self.tol, time_limit=time_limit,
                                 threads=threads, **options)

    def estimate_regions(self, probes: int = 200, time_limit: float | None = None, seed: int = 0,
                         roots=None) -> RegionEstimate:
        """An estimate of the number of regions with a 95 % interval, without enumerating (stratified Knuth
        probes of the lp region tree; docs/counting.md, "Estimates"). A time limit (stable units included)
        runs fewer probes and says so (`stopped = "time limit"`). roots: only the regions below these prefixes
        (e.g. the "frontier" of an incomplete count's checkpoint_<domain>.json: what it has still to find)."""
        t0 = time.perf_counter()
        count_domain(self.net, self.box)
        st = self.stability(time_limit=time_limit)
        return estimate_regions(self.net, self.box, st, probes=probes, tol=self.tol, seed=seed,
                                deadline=None if time_limit is None else t0 + time_limit, roots=roots)

    def mipbound(self, trials: int = DEFAULT_TRIALS, xor_size: int | None = None, time_limit: float | None = None,
                 seed: int = 0, *, backend: str = "auto", alpha: float = DEFAULT_ALPHA, threads: int = 1) -> MipBound:
        """A probabilistic lower bound on the number of regions: regions >= 2^log2_lower with probability
        `probability` = 1 - 2^(-alpha trials), by random XORs on the MILP (MIPBound; docs/counting.md, "MIPBound");
        `.patterns`: the patterns the solves certified (a certain lower bound). backend: auto/scip (SCIP),
        gurobi/milp (Gurobi, SCIP when its licence is too small). A time limit (stable units included) returns
        what is known so far (`stopped = "time limit"`)."""
        t0 = time.perf_counter()
        count_domain(self.net, self.box)
        st = self.stability(time_limit=time_limit)
        return mipbound(self.net, self.box, st, trials=trials, xor_size=xor_size, alpha=alpha, tol=self.tol, seed=seed,
                        deadline=None if time_limit is None else t0 + time_limit, backend=backend, threads=threads)

    def local_counts(self, centers, widths, backend: str = "auto", time_limit: float | None = None,
                     **options) -> list[RegionCount]:
        """Exact counts on the local boxes [c - w, c + w] ∩ box, for every center (rows of `centers`) and
        width; each box is analysed afresh (its own stable units). Returned center-major."""
        C = np.atleast_2d(np.asarray(centers, dtype=np.float64))
        lo, hi = self.box.lo, self.box.hi
        out = []
        t0 = time.perf_counter()
        for k, c in enumerate(C):
            for w in np.atleast_1d(widths):
                left = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - t0))
                box = Box.around(c, float(w), f"center{k}", float(lo.min()), float(hi.max()))
                box = Box(np.maximum(box.lo, lo), np.minimum(box.hi, hi), box.name)
                out.append(Analysis(self.net, box, tol=self.tol).count_regions(backend, left, **options))
        return out

    # ---- sections ----------------------------------------------------------------------------------
    def segments(self, starts, ends) -> list[SegmentSection]:
        """Exact 1-D sections: the linear pieces of the net along each segment starts[i] -> ends[i]."""
        return segment_sections(self.net, starts, ends)

    def plane_section(self, points=None, *, plane: Plane | None = None, view=None,
                      outside: bool = True) -> PlaneSection:
        """The exact 2-D section through three points (or `plane`), on `view` (s0, s1, t0, t1; default:
        around the points and the box), with the polygons inside the box flagged."""
        if plane is None and points is None:
            raise ToolError("plane_section needs three points or a plane")
        if plane is None:
            plane = plane_through(np.asarray(points, dtype=np.float64))
        if view is None:
            if points is None:
                raise ToolError("plane_section needs a view (s0, s1, t0, t1) when given a plane and no points")
            view = default_view(plane, self.box, plane.coordinates(points))
        return plane_section(self.net, plane, view, self.box, outside=outside)

    # ---- compression and transformation -------------------------------------------------------------
    def compress(self, *, exact_stability: bool = True, verify: bool = True, points: int = DEFAULT_POINTS,
                 seed: int = 0) -> Compression:
        """Remove the stable units losslessly (docs/compression.md); `.verification` holds the comparison
        with the original on seeded points of the box (None without verify)."""
        comp = compress(self.net, self.stability(exact=exact_stability))
        comp.verification = self.verify(comp.net, points=points, seed=seed) if verify else None
        return comp

    def transform(self, patterns=None, *, big_m: float | None = None, share: str = "full", verify: bool = True,
                  points: int = DEFAULT_POINTS, seed: int = 0, progress: bool = False) -> TransformResult:
        """The two-hidden-layer net of Kumar, Serra & Ramalingam (2019) from `patterns` (uint8 (P, N), e.g.
        `count_regions().patterns`; None: all 2^N, small nets only). `.verification` compares it with the
        original on seeded points of the box; points in the big-M band are not held to the tolerance."""
        P = all_patterns(self.net.n_hidden_units) if patterns is None else np.asarray(patterns, np.uint8)
        M = check_big_m(DEFAULT_BIG_M if big_m is None else big_m)
        res = build_two_hidden(self.net, self.box, P, M, share=share, progress=progress)
        res.verification = self.verify(res.net, points=points, seed=seed, rtol=DEFAULT_TRANSFORM_RTOL,
                                       band_width=res.band_width) if verify else None
        return res

    # ---- comparison ---------------------------------------------------------------------------------
    def verify(self, other, *, points: int = DEFAULT_POINTS, seed: int = 0, rtol: float = DEFAULT_RTOL,
               band_width: float = 0.0, test_set=None) -> dict:
        """This net against `other` (a ReluNet or a TwoHiddenNet) on seeded points of the box, by the one rule
        of src.core.compare (`compare_nets`; docs/transform.md, "When two nets agree").

        ok iff max_j |b_j(x) - a_j(x)| <= rtol * max(1, max_j |a_j(x)|) at every point outside the band
        (points where some hidden unit has |g| <= band_width). With test_set=(X, y) those points too.
        The record: "points" (and "test_set") hold the compare_nets records; criterion, rtol, band_width, seed, ok.
        """
        X = self.box.sample(points, np.random.default_rng(seed))
        rec = {"points": compare_nets(self.net, other, X, rtol=rtol, band_width=band_width), "seed": seed,
               "rtol": rtol, "band_width": band_width, "criterion": RULE}
        ok = rec["points"]["ok"]
        if test_set is not None:
            rec["test_set"] = compare_nets(self.net, other, np.asarray(test_set[0], np.float64), rtol=rtol,
                                           band_width=band_width, labels=test_set[1])
            ok = ok and rec["test_set"]["ok"]
        rec["ok"] = bool(ok)
        return rec
