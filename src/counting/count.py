"""A region count in memory: its domain, the stable units it starts from, and the enumeration by backends."""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from src.core.box import Box, resolve_box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.count_bounds import bound_entry, upper_bounds
from src.counting.problem import EnumerationProblem, PatternSink, backend_candidates, backend_class, run_backends
from src.stability.analyse import analyse_stability
from src.stability.record import Stability


@dataclass
class RegionCount:
    """The feasible activation patterns found (uint8 (P, N), lexicographic order) and how the count ended.

    bounds: the certified bounds of the count on the box: "lower" (the patterns found, all feasible)
    and "upper" (src.counting.count_bounds.upper_bounds with the stable units); equal when complete.
    """
    patterns: np.ndarray
    complete: bool
    backend: str
    stability: Stability
    box: Box
    stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)
    bounds: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def count(self) -> int:
        return int(len(self.patterns))

    def to_json(self) -> dict:
        """The count as plain JSON types (the patterns as 0/1 strings)."""
        return {"domain": self.box.to_json(), "count": self.count, "complete": self.complete, "backend": self.backend,
                "stable_units": self.stability.counts(), "bounds": self.bounds, "stats": dict(self.stats),
                "notes": list(self.notes), "seconds": round(self.seconds, 6),
                "patterns": ["".join("1" if v else "0" for v in p) for p in self.patterns]}

    def summary(self) -> str:
        unstable = sum(c["unstable"] for c in self.stability.counts())
        if self.complete:
            what = f"{self.count} regions (complete)"
        else:
            what = f"{self.count} <= regions <= 10^{self.bounds['upper']['log10']:.1f} (incomplete)"
        return f"{self.box.name}: {what}, {unstable} unstable units, backend {self.backend}, {self.seconds:.2f} s"


def count_domain(net: ReluNet, box: Box | None = None, source=None) -> Box:
    """The domain of a region count, checked: the net has a hidden layer and the box its inputs.

    One definition for the in-memory count (src.analysis) and the file driver src.counting.driver.count_run (source: the
    weights file, named in its messages).
    """
    where = "" if source is None else f"{source}: "
    if net.n_hidden_layers == 0:
        raise ToolError(f"{where}the network has no hidden layer, so it has exactly one linear region")
    return resolve_box(box, net.n_inputs, source)


def count_stability(net: ReluNet, box: Box, *, backend: str = "auto", tol: float = DEFAULT_TOL, exact: bool = False,
                    data=None, progress=None, time_limit: float | None = None,
                    deadline: float | None = None) -> Stability:
    """The stable units a region count starts from (src.stability.analyse.analyse_stability).

    With data (points of the box, e.g. src.counting.driver.count_data) the LP tier tightens every open unit
    only when the first backend `backend` tries solves the MILP (its big-M constants); without data
    analyse_stability's default (the full LP tier). One definition for both count drivers.
    """
    tight = None
    if data is not None:
        tight = backend_class(backend_candidates(backend)[0]).uses_milp
    return analyse_stability(net, box, tol=tol, exact=exact, progress=progress, time_limit=time_limit, data=data,
                             tight_bounds=tight, deadline=deadline)


def enumerate_regions(net: ReluNet, box: Box, stability: Stability, *, backend: str = "auto",
                      tol: float = DEFAULT_TOL, time_limit: float | None = None, threads: int = 1,
                      **options) -> RegionCount:
    """Every feasible activation pattern of `net` on `box`, exactly, starting from `stability`.

    backend: auto (lp, then gurobi, then scip), milp (the paper's one-tree MILP: gurobi, else scip),
    or a registered name; options go to the backend (e.g. workers=2 for lp). A time limit returns
    what was found with complete=False. The file-writing step is src.counting.driver.count_run.
    """
    t0 = time.perf_counter()
    sink = PatternSink()
    result, used, notes = run_backends(EnumerationProblem(net, box, stability, tol), sink, backend,
                                       time_limit=time_limit, threads=threads, options=options)
    pats = sink.patterns() if len(sink) else np.zeros((0, net.n_hidden_units), np.uint8)
    complete = bool(result.complete) and not result.interrupted
    upper = upper_bounds(net, stability)["upper_bound"]
    bounds = {"lower": bound_entry(len(pats)), "upper": bound_entry(len(pats)) if complete else upper}
    return RegionCount(pats, complete, used, stability, box, dict(result.stats), notes, bounds,
                       time.perf_counter() - t0)
