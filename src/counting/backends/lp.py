"""LP backend: the exact region-tree walk of src/counting/tree_walk.py (compiled with numba), driven by src/counting/walk_driver.py; no MILP.

Same feasibility definition and tol as the MILP backends. `workers` (option of get_backend,
or the `workers=` keyword of enumerate) walks prefix subtrees in that many Ray workers (option
`ray_address`: on that cluster; src/parallel.py);
the patterns reach the sink in lexicographic order whatever the number of workers. A time limit
or Ctrl-C returns complete=False with the unexplored frontier (a list of prefix strings), which
`resume_state={"frontier": [...]}` continues without losing or repeating a pattern. `threads` is
not used: the walk runs on one thread per process (use workers for parallelism).
"""
from __future__ import annotations

import time

import numpy as np

from src.core.errors import ToolError
from src.counting.problem import (Backend, BackendUnavailable, EnumerationProblem, EnumerationResult, Option,
                                  PatternSink, packages_line, positive_int)
from src.counting.tree_walk import EngineOptions
from src.counting.walk_driver import run_search


def _engine_options(v):

    return None if v is None or isinstance(v, EngineOptions) else f"must be an EngineOptions, got {type(v).__name__}"


def _address(v):
    return None if v is None or isinstance(v, str) else f"must be a string HOST:PORT, got {type(v).__name__}"


class LpBackend(Backend):
    name = "lp"
    package = "numba"
    frontier_checkpoints = True
    ordered_output = True
    options = {
        "workers": Option(1, "walk prefix subtrees in this many processes (same patterns, same order)", positive_int),
        "engine": Option(None, "src.counting.walk_driver.EngineOptions of the search (None: the defaults)", _engine_options),
        "ray_address": Option(None, "join this Ray cluster (HOST:PORT) instead of starting a local one", _address),
    }

    @classmethod
    def check_available(cls) -> None:
        try:
            import numba  # noqa: F401
        except ImportError:
            raise BackendUnavailable(f"backend 'lp' needs the pip package 'numba' (pinned in requirements.txt); "
                                     f"{packages_line()}") from None

    def enumerate(self, problem: EnumerationProblem, sink: PatternSink, *, time_limit: float | None = None,
                  threads: int = 1, resume_state: dict | None = None, workers: int | None = None,
                  checkpoint=None) -> EnumerationResult:

        workers = self.workers if workers is None else int(workers)
        if workers < 1:
            raise ToolError(f"--workers must be >= 1, got {workers}")
        roots = None
        if resume_state is not None and resume_state.get("frontier") is not None:
            roots = resume_state["frontier"]
        fixed = problem.stability.fixed_bits()

        def emit(bits):
            sink.add(bits.astype(np.uint8))

        t0 = time.perf_counter()
        out = run_search(problem.net, problem.box, fixed, problem.tol, emit, roots=roots, time_limit=time_limit,
                         workers=workers, options=self.engine, checkpoint=checkpoint, ray_address=self.ray_address)
        secs = time.perf_counter() - t0
        st = dict(out.stats)
        lps = int(st.get("lps", 0))
        found = int(st.get("patterns", 0))
        stats = {
            "status": "complete" if out.complete else ("interrupted" if out.interrupted else "time limit"),
            "workers": workers, "tasks": out.tasks, "resumed_from_frontier": roots is not None,
            "frontier_items_in": None if roots is None else len(roots),
            "seconds": round(secs, 4),
            "iterations_per_lp": round(st.get("lp_iterations", 0) / lps, 2) if lps else None,
            "lps_per_pattern": round(lps / found, 4) if found else None,
            **{k: (round(v, 4) if isinstance(v, float) else int(v)) for k, v in st.items()},
        }
        return EnumerationResult(complete=out.complete, stats=stats,
                                 frontier=None if out.complete else list(out.frontier),
                                 interrupted=out.interrupted, held=out.held)
