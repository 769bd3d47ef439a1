"""Gurobi backend: one branch-and-bound tree, a lazy no-good cut at every new incumbent.

The MILP (src/stability/milp.py) maximises f; a solution with f > tol is a feasible pattern. At each
MIPSOL callback the pattern is read from z, recorded (the sink de-duplicates: MIPSOL can
report a solution twice) and cut off with cbLazy. Cutoff = BestBdStop = tol make the search
end as soon as no f > tol is left, so the final model is infeasible (status INFEASIBLE/CUTOFF)
and every feasible pattern has been recorded. Patterns known from --resume become cuts at the
first callback (cbLazy cuts do not count against the licence's model size).
"""
from __future__ import annotations

import time

import numpy as np

from src.counting.backends import all_stable_result
from src.counting.problem import (Backend, BackendUnavailable, EnumerationProblem, EnumerationResult, PatternSink,
                                  ProblemTooLarge, packages_line)

# Gurobi's size-limited licence (shipped with the gurobipy pip package)
PIP_LICENCE_LIMIT = {"variables": 2000, "constraints": 2000}

LICENCE_ERRNO = 10010          # "Model too large for size-limited license"

_size_limited: bool | None = None   # cached result of the licence probe


class GurobiLicenceLimit(ProblemTooLarge):
    """The model exceeds the size-limited Gurobi licence (GurobiError 10010)."""


def licence_message(size: dict) -> str:
    """The one-line explanation of a licence refusal: model size, limit, how to get a full licence."""
    return (f"Gurobi refused the model: it has {size['variables']} variables and {size['constraints']} linear "
            f"constraints, but this Gurobi licence is the size-limited one of the gurobipy pip package "
            f"(at most {PIP_LICENCE_LIMIT['variables']} variables and {PIP_LICENCE_LIMIT['constraints']} linear "
            f"constraints, GurobiError {LICENCE_ERRNO}); to use a full licence set GRB_LICENSE_FILE=/path/to/gurobi.lic "
            f"(a named-user/academic licence from gurobi.com, or a WLS licence file with WLSACCESSID, WLSSECRET "
            f"and LICENSEID), or use --backend scip")


def _env():
    """A Gurobi environment with the banner and all output silenced."""
    import gurobipy as gp

    env = gp.Env(empty=True)
    env.setParam("OutputFlag", 0)
    env.setParam("LogToConsole", 0)
    env.start()
    return env


def size_limited_licence() -> bool:
    """True if the active licence refuses a model just above the pip licence's limits (probed once)."""
    global _size_limited
    if _size_limited is None:
        import gurobipy as gp
        from gurobipy import GRB

        with _env() as env, gp.Model(env=env) as m:
            m.addMVar(PIP_LICENCE_LIMIT["variables"] + 1, lb=0.0, ub=1.0)
            m.setParam("TimeLimit", 1.0)
            m.ModelSense = GRB.MAXIMIZE
            try:
                m.optimize()
                _size_limited = False
            except gp.GurobiError as e:
                if e.errno != LICENCE_ERRNO:
                    raise
                _size_limited = True
    return _size_limited


def exceeds_pip_limit(size: dict) -> bool:
    return size["variables"] > PIP_LICENCE_LIMIT["variables"] or size["constraints"] > PIP_LICENCE_LIMIT["constraints"]


def gurobi_size(formulation) -> dict:
    """Variables and linear constraints as Gurobi counts them (a two-sided range row counts twice)."""
    lo, hi = formulation.row_lo, formulation.row_hi
    ranged = np.isfinite(lo) & np.isfinite(hi) & (lo != hi)
    return {"variables": int(formulation.n_vars), "constraints": int(formulation.n_rows + ranged.sum())}


class GurobiBackend(Backend):
    name = "gurobi"
    package = "gurobipy"
    uses_milp = True

    # solver tolerances: tight, so that a recorded z really means g > 0 / g <= 0 (big-M rows)
    params = {"IntFeasTol": 1e-9, "FeasibilityTol": 1e-9, "MIPGap": 0.0, "MIPGapAbs": 0.0, "Symmetry": 0}

    @classmethod
    def check_available(cls) -> None:
        try:
            import gurobipy  # noqa: F401
        except ImportError:
            raise BackendUnavailable(f"--backend gurobi needs the pip package gurobipy; {packages_line()}") from None
        try:
            _env().dispose()
        except Exception as e:  # GurobiError: no/expired licence
            raise BackendUnavailable(f"--backend gurobi: gurobipy cannot start ({e}); point GRB_LICENSE_FILE at a "
                                     f"valid licence, or use --backend scip") from None

    def check_problem(self, problem: EnumerationProblem) -> None:
        size = gurobi_size(problem.formulation())
        if exceeds_pip_limit(size) and size_limited_licence():
            raise GurobiLicenceLimit(licence_message(size))

    def build_model(self, form, env):
        """The gurobipy model of a MilpFormulation: (model, MVar)."""
        import gurobipy as gp
        from gurobipy import GRB

        m = gp.Model(env=env)
        vtype = np.where(form.is_binary, GRB.BINARY, GRB.CONTINUOUS)
        v = m.addMVar(form.n_vars, lb=form.lb, ub=form.ub, vtype=vtype, name="v")
        A = form.A.tocsr()
        lo, hi = form.row_lo, form.row_hi
        eq = np.isfinite(lo) & np.isfinite(hi) & (lo == hi)
        le = np.isfinite(hi) & ~eq
        ge = np.isfinite(lo) & ~eq
        for mask, sense, rhs in ((eq, GRB.EQUAL, hi), (le, GRB.LESS_EQUAL, hi), (ge, GRB.GREATER_EQUAL, lo)):
            rows = np.flatnonzero(mask)
            if rows.size:
                m.addMConstr(A[rows], v, sense, rhs[rows])
        m.setObjective(form.objective @ v, GRB.MAXIMIZE)
        m.update()
        return m, v

    def enumerate(self, problem: EnumerationProblem, sink: PatternSink, *, time_limit: float | None = None,
                  threads: int = 1, resume_state: dict | None = None) -> EnumerationResult:
        import gurobipy as gp
        from gurobipy import GRB

        trivial = all_stable_result(problem, sink)
        if trivial is not None:
            return trivial
        form = problem.formulation()
        tol = float(problem.tol)
        size = gurobi_size(form)
        t0 = time.perf_counter()
        stats = {"mipsol_callbacks": 0, "duplicates": 0, "lazy_cuts": 0, "resume_cuts": 0}
        known = [p for p in sink.known] if len(sink.known) else []
        with _env() as env:
            m, v = self.build_model(form, env)
            allv = v.tolist()
            for k, val in self.params.items():
                m.setParam(k, val)
            m.setParam("LazyConstraints", 1)
            m.setParam("Threads", int(threads))
            # no solution with f <= tol is of interest; stop once the bound says none with f > tol is left
            m.setParam("Cutoff", tol)
            m.setParam("BestBdStop", tol)
            if time_limit is not None:
                m.setParam("TimeLimit", max(float(time_limit), 0.0))
            state = {"resume_added": False, "error": None}

            def add_cut(model, pattern):
                idx, coef, rhs = form.nogood_cut(pattern)
                model.cbLazy(gp.LinExpr(coef.tolist(), [allv[i] for i in idx]) <= rhs)

            def callback(model, where):
                # gurobipy swallows exceptions raised in a callback and goes on (a solution whose cut
                # was not added would then be accepted): keep the first one, stop, re-raise after optimize
                if where != GRB.Callback.MIPSOL or state["error"] is not None:
                    return
                try:
                    on_mipsol(model)
                except BaseException as e:  # noqa: BLE001 (incl. KeyboardInterrupt)
                    state["error"] = e
                    model.terminate()

            def on_mipsol(model):
                if not state["resume_added"]:
                    state["resume_added"] = True
                    for p in known:
                        add_cut(model, p)
                    stats["resume_cuts"] = len(known)
                sol = np.asarray(model.cbGetSolution(allv), dtype=np.float64)
                stats["mipsol_callbacks"] += 1
                if form.f_index >= 0 and sol[form.f_index] <= tol:
                    return                     # not a region (and below the cutoff anyway)
                pattern = form.pattern_from_solution(sol)
                add_cut(model, pattern)
                stats["lazy_cuts"] += 1
                if not sink.add(pattern):
                    stats["duplicates"] += 1

            try:
                m.optimize(callback)
            except gp.GurobiError as e:
                if e.errno == LICENCE_ERRNO:
                    raise GurobiLicenceLimit(licence_message(size)) from None
                raise
            status = m.Status
            err = state["error"]
            if err is not None and not isinstance(err, KeyboardInterrupt):
                raise err
            interrupted = status == GRB.INTERRUPTED or err is not None
            complete = not interrupted and status in (GRB.INFEASIBLE, GRB.CUTOFF, GRB.USER_OBJ_LIMIT,
                                                      GRB.INF_OR_UNBD, GRB.OPTIMAL)
            if complete and status == GRB.OPTIMAL and m.SolCount and m.ObjVal > tol:
                raise RuntimeError(f"gurobi accepted a solution with f = {m.ObjVal:g} > tol despite its no-good cut")
            status_names = {GRB.INFEASIBLE: "infeasible", GRB.CUTOFF: "cutoff", GRB.USER_OBJ_LIMIT: "bound_stop",
                            GRB.OPTIMAL: "optimal", GRB.INF_OR_UNBD: "inf_or_unbd", GRB.TIME_LIMIT: "time_limit",
                            GRB.INTERRUPTED: "interrupted"}
            stats.update(status="interrupted" if interrupted else status_names.get(status, str(status)), nodes=int(m.NodeCount),
                         seconds=round(time.perf_counter() - t0, 3), threads=int(threads),
                         gurobi_version=".".join(map(str, gp.gurobi.version())), size=size)
            m.dispose()
        return EnumerationResult(complete=complete, stats=stats, interrupted=interrupted)
