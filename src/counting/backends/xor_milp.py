"""The solver side of MIPBound (src/counting/mipbound.py): is the lean MILP plus some XOR (parity) constraints
over its binaries feasible?

One adapter per solver, each building the model of src/stability/milp.py with its enumeration backend's
`build_model` (one formulation, two solvers), then:
  - the margin variable f gets the lower bound `f_min` (> tol), so that any solution is a pattern whose
    1-units have g >= f_min > tol (the definition's feasibility with a margin; a solver may still be off by
    its tolerance, which is why src/counting/mipbound.py certifies every point it gets);
  - each XOR  z_{i_1} xor ... xor z_{i_k} = b  is added: SCIP has a native XOR constraint (`addConsXor`);
    for Gurobi it is linearised with an integer slack t:  sum_j z_{i_j} - 2 t = b,  t in {0, ..., (k - b) // 2}
    (the sum of k binaries has the parity b iff it equals b + 2t for such an integer t);
  - the solve stops at the first solution (a feasibility question), within the time left.

`solve(xors, time_limit)` returns an `XorAnswer`: "feasible" (with the solution vector, in the formulation's
variable order), "infeasible" (proved), or "unknown" (time limit, or the solver gave up). The Gurobi adapter
raises `GurobiLicenceLimit` (a `ProblemTooLarge`) when the size-limited pip licence refuses the model, checked
before the solve like the count's backend does and also caught as GurobiError 10010 at optimize();
MIPBound then falls back to SCIP.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from src.counting.backends.gurobi import (LICENCE_ERRNO, GurobiBackend, GurobiLicenceLimit, _env,
                                          exceeds_pip_limit, gurobi_size, licence_message, size_limited_licence)
from src.counting.backends.scip import ScipBackend

FEASTOL = 1e-9          # as the count's backends: a z read as 1 / 0 really means g >= f / g <= 0


@dataclass
class XorAnswer:
    status: str                         # "feasible", "infeasible" or "unknown"
    values: np.ndarray | None = None    # the solution (formulation's variable order) when feasible
    seconds: float = 0.0
    detail: str = ""                    # the solver's own status word


def check_xors(form, xors) -> list[tuple[np.ndarray, int]]:
    """The XORs as (variable indices of binaries of `form`, parity 0/1); ValueError if one is not."""
    binary = set(form.binaries.tolist())
    out = []
    for idx, b in xors:
        idx = np.asarray(idx, np.int64).reshape(-1)
        if not set(idx.tolist()) <= binary or len(set(idx.tolist())) != idx.size or int(b) not in (0, 1):
            raise ValueError("an XOR needs distinct binary variables of the formulation and a parity 0 or 1")
        out.append((idx, int(b)))
    return out


class ScipXorSolver:
    """The lean MILP with XOR constraints in SCIP (native `xor` constraints)."""

    name = "scip"
    # pairwise presolving of XOR constraints is off: with it SCIP 10.0 returned, as "optimal", a solution that
    # violates one of five XORs on a 9-unit net (checkSol on the original problem: False)
    params = {"numerics/feastol": FEASTOL, "limits/solutions": 1, "constraints/xor/presolpairwise": False}

    def __init__(self, form, f_min: float, threads: int = 1):
        ScipBackend.check_available()
        self.form, self.f_min, self.threads = form, float(f_min), int(threads)

    def solve(self, xors, time_limit: float | None = None) -> XorAnswer:
        xors = check_xors(self.form, xors)
        t0 = time.perf_counter()
        m, vs = ScipBackend().build_model(self.form)
        try:
            if self.form.f_index >= 0:
                m.chgVarLb(vs[self.form.f_index], self.f_min)
            for key, val in self.params.items():
                m.setParam(key, val)
            m.setParam("lp/threads", self.threads)
            if time_limit is not None:
                m.setParam("limits/time", max(float(time_limit), 0.0))
            for j, (idx, b) in enumerate(xors):
                m.addConsXor([vs[i] for i in idx.tolist()], bool(b), name=f"xor{j}")
            m.optimize()
            status = m.getStatus()
            if m.getNSols() > 0:
                sol = m.getBestSol()
                v = np.fromiter((m.getSolVal(sol, x) for x in vs), np.float64, len(vs))
                return XorAnswer("feasible", v, time.perf_counter() - t0, status)
            kind = "infeasible" if status == "infeasible" else "unknown"
            return XorAnswer(kind, None, time.perf_counter() - t0, status)
        finally:
            m.freeProb()


class GurobiXorSolver:
    """The lean MILP with XOR constraints in Gurobi, each linearised with an integer slack."""

    name = "gurobi"

    def __init__(self, form, f_min: float, threads: int = 1):
        GurobiBackend.check_available()
        self.form, self.f_min, self.threads = form, float(f_min), int(threads)

    def size(self, n_xors: int) -> dict:
        """Variables and linear constraints as Gurobi counts them, with one slack and one row per XOR."""
        s = gurobi_size(self.form)
        return {"variables": s["variables"] + n_xors, "constraints": s["constraints"] + n_xors}

    def solve(self, xors, time_limit: float | None = None) -> XorAnswer:
        import gurobipy as gp
        from gurobipy import GRB

        xors = check_xors(self.form, xors)
        size = self.size(len(xors))
        if exceeds_pip_limit(size) and size_limited_licence():
            raise GurobiLicenceLimit(licence_message(size))
        t0 = time.perf_counter()
        with _env() as env:
            m, v = GurobiBackend().build_model(self.form, env)
            try:
                xs = v.tolist()
                if self.form.f_index >= 0:
                    xs[self.form.f_index].LB = self.f_min
                for key, val in {"IntFeasTol": FEASTOL, "FeasibilityTol": FEASTOL, "SolutionLimit": 1,
                                 "Threads": self.threads}.items():
                    m.setParam(key, val)
                if time_limit is not None:
                    m.setParam("TimeLimit", max(float(time_limit), 0.0))
                for j, (idx, b) in enumerate(xors):
                    t = m.addVar(lb=0.0, ub=float((idx.size - b) // 2), vtype=GRB.INTEGER, name=f"xor_slack{j}")
                    m.addConstr(gp.quicksum(xs[i] for i in idx.tolist()) - 2 * t == b, name=f"xor{j}")
                try:
                    m.optimize()
                except gp.GurobiError as e:
                    if e.errno == LICENCE_ERRNO:
                        raise GurobiLicenceLimit(licence_message(size)) from None
                    raise
                status = m.Status
                names = {GRB.OPTIMAL: "optimal", GRB.SOLUTION_LIMIT: "solution_limit", GRB.INFEASIBLE: "infeasible",
                         GRB.INF_OR_UNBD: "inf_or_unbd", GRB.TIME_LIMIT: "time_limit", GRB.INTERRUPTED: "interrupted"}
                word = names.get(status, str(status))
                if m.SolCount > 0:
                    return XorAnswer("feasible", np.asarray(m.getAttr("X", xs), np.float64), time.perf_counter() - t0, word)
                kind = "infeasible" if status in (GRB.INFEASIBLE, GRB.INF_OR_UNBD) else "unknown"
                return XorAnswer(kind, None, time.perf_counter() - t0, word)
            finally:
                m.dispose()


ADAPTERS = {"scip": ScipXorSolver, "gurobi": GurobiXorSolver}
