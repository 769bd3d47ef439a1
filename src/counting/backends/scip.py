"""SCIP backend (PySCIPOpt): one branch-and-bound tree, lazy no-good cuts from a constraint handler.

The handler owns one real constraint (needscons=True plus one constraint of the handler in
the model; a handler without constraints is skipped by SCIP, which then silently accepts
solutions and loses patterns). Its meaning: "no solution with f > tol is acceptable".
- conscheck (every candidate solution SCIP would accept passes here, after all other handlers,
  chckpriority lowest): f > tol -> INFEASIBLE; the pattern is recorded when SCIP checks the
  solution for acceptance (not `completely`, so all other handlers already said feasible) and
  its no-good cut is queued;
- consenfolp / consenfops (after integrality and the linear rows, enfopriority lowest): an
  integral node solution with f > tol is recorded (unless another handler already found it
  infeasible) and cut off: its no-good cut (plus any queued ones) is added as a global linear
  constraint -> CONSADDED;
- conslock locks every variable in both directions (no dual reductions may remove solutions);
  symmetry handling, restarts and component presolving are off.
The objective limit tol prunes every node whose bound is <= tol, so the solve ends (status
"infeasible") exactly when no pattern with f > tol is left. Patterns known from --resume are
added as no-good constraints before the solve.
"""
from __future__ import annotations

import time

import numpy as np

from src.core.patterns import pattern_key, pattern_keys
from src.counting.backends import all_stable_result
from src.counting.problem import (Backend, BackendUnavailable, EnumerationProblem, EnumerationResult, PatternSink,
                                  packages_line)

_PRIORITY = -9_999_999      # check and enforce after every built-in constraint handler


def _make_handler_class():
    from pyscipopt import SCIP_RESULT, Conshdlr

    class NogoodHandler(Conshdlr):
        """Rejects every solution with f > tol; records its pattern and cuts it off."""

        def __init__(self, form, sink, tol, zvars, fvar, allvars):
            super().__init__()
            self.form, self.sink, self.tol = form, sink, tol
            self.zvars, self.fvar, self.allvars = zvars, fvar, allvars
            self.unstable = np.flatnonzero(form.z_index >= 0)
            self.base = np.where(form.fixed_bits > 0, 1, 0).astype(np.uint8)
            self.cut_keys: set[bytes] = set()
            self.pending: list[np.ndarray] = []
            self.tvars = None
            self.error: BaseException | None = None
            self.stats = {"check_unverified": 0, "check_rejects": 0, "enfo_cuts": 0, "recorded_in_check": 0, "recorded_in_enfo": 0,
                          "duplicates": 0}

        # ---- solution -> (f, pattern) ------------------------------------------------------
        def _read(self, sol):
            f = self.model.getSolVal(sol, self.fvar) if self.fvar is not None else np.inf
            p = self.base.copy()
            if self.zvars:
                z = np.fromiter((self.model.getSolVal(sol, v) for v in self.zvars), np.float64, len(self.zvars))
                p[self.unstable] = (z > 0.5).astype(np.uint8)
            return f, p

        def _satisfies_rows(self, sol) -> bool:
            """Defence in depth before recording a checked solution: bounds, rows and integrality hold.

            (SCIP checks our handler last and stops at the first handler that rejects, so this
            should always be true; it costs one sparse product per checked solution.)
            """
            v = np.fromiter((self.model.getSolVal(sol, x) for x in self.allvars), np.float64, len(self.allvars))
            eps = 1e-6
            form = self.form
            if np.any(v < form.lb - eps) or np.any(v > form.ub + eps):
                return False
            z = v[form.is_binary]
            if np.any(np.minimum(np.abs(z), np.abs(z - 1.0)) > eps):
                return False
            av = form.A @ v
            scale = 1.0 + np.abs(av)
            return bool(np.all(av >= form.row_lo - eps * scale) and np.all(av <= form.row_hi + eps * scale))

        def _record(self, pattern, where):
            if self.sink.add(pattern):
                self.stats[f"recorded_in_{where}"] += 1
            else:
                self.stats["duplicates"] += 1
            if pattern_key(pattern) not in self.cut_keys:
                self.pending.append(pattern)

        def _flush(self) -> int:
            """Add the no-good cuts of all pending patterns as global linear constraints."""
            from pyscipopt import quicksum

            if self.tvars is None:
                self.tvars = [self.model.getTransformedVar(v) for v in self.allvars]
            added = 0
            for p in self.pending:
                key = pattern_key(p)
                if key in self.cut_keys:
                    continue
                self.cut_keys.add(key)
                idx, coef, rhs = self.form.nogood_cut(p)
                self.model.addCons(quicksum(c * self.tvars[i] for i, c in zip(idx.tolist(), coef.tolist())) <= rhs,
                                   name=f"nogood{len(self.cut_keys)}", initial=True, separate=True, enforce=True,
                                   check=True, propagate=True, local=False, removable=False, dynamic=False)
                added += 1
            self.pending.clear()
            self.stats["enfo_cuts"] += added
            return added

        # ---- callbacks ---------------------------------------------------------------------
        # An exception inside a callback would surface as "SCIP: unspecified error": keep the first
        # one, reject the solution, stop the solve and let enumerate() re-raise it (Ctrl-C -> incomplete).
        def _guard(self, fn, *args):
            if self.error is not None:
                return {"result": SCIP_RESULT.INFEASIBLE}
            try:
                return fn(*args)
            except BaseException as e:  # noqa: BLE001
                self.error = e
                self.model.interruptSolve()
                return {"result": SCIP_RESULT.INFEASIBLE}

        def conscheck(self, constraints, solution, checkintegrality, checklprows, printreason, completely):
            return self._guard(self._check, solution, completely)

        def _check(self, solution, completely):
            f, p = self._read(solution)
            if f <= self.tol:
                return {"result": SCIP_RESULT.FEASIBLE}
            if not completely:
                if self._satisfies_rows(solution):
                    self._record(p, "check")
                else:
                    self.stats["check_unverified"] += 1
            self.stats["check_rejects"] += 1
            return {"result": SCIP_RESULT.INFEASIBLE}

        def _enforce(self, solinfeasible):
            f, p = self._read(None)
            if f > self.tol and not solinfeasible:
                self._record(p, "enfo")
            if self._flush():
                return {"result": SCIP_RESULT.CONSADDED}
            if f > self.tol:
                return {"result": SCIP_RESULT.INFEASIBLE}
            return {"result": SCIP_RESULT.FEASIBLE}

        def consenfolp(self, constraints, nusefulconss, solinfeasible):
            return self._guard(self._enforce, solinfeasible)

        def consenfops(self, constraints, nusefulconss, solinfeasible, objinfeasible):
            return self._guard(self._enforce, solinfeasible)

        def conslock(self, constraint, locktype, nlockspos, nlocksneg):
            n = nlockspos + nlocksneg
            for v in self.allvars:
                self.model.addVarLocks(v, n, n)

    return NogoodHandler


class ScipBackend(Backend):
    name = "scip"
    package = "pyscipopt"
    uses_milp = True

    # tight tolerances, so that a recorded z really means g > 0 / g <= 0 (big-M rows)
    params = {"numerics/feastol": 1e-9, "misc/usesymmetry": 0, "presolving/maxrestarts": 0,
              "misc/allowstrongdualreds": False, "misc/allowweakdualreds": False,
              "constraints/components/maxprerounds": 0, "constraints/components/propfreq": -1}

    @classmethod
    def check_available(cls) -> None:
        try:
            import pyscipopt  # noqa: F401
        except ImportError:
            raise BackendUnavailable(f"--backend scip needs the pip package pyscipopt; {packages_line()}") from None

    def build_model(self, form):
        """(model, variables) of a MilpFormulation in PySCIPOpt."""
        from pyscipopt import Model, quicksum

        m = Model("regions")
        m.hideOutput()
        vs = [m.addVar(name=form.names[i], vtype="B" if form.is_binary[i] else "C",
                       lb=float(form.lb[i]), ub=float(form.ub[i])) for i in range(form.n_vars)]
        A = form.A.tocsr()
        for r in range(A.shape[0]):
            lo, hi = float(form.row_lo[r]), float(form.row_hi[r])
            s, e = A.indptr[r], A.indptr[r + 1]
            expr = quicksum(float(c) * vs[j] for j, c in zip(A.indices[s:e].tolist(), A.data[s:e].tolist()))
            if lo == hi:
                m.addCons(expr == hi)
            elif np.isfinite(lo) and np.isfinite(hi):
                m.addCons(lo <= (expr <= hi))
            elif np.isfinite(hi):
                m.addCons(expr <= hi)
            elif np.isfinite(lo):
                m.addCons(expr >= lo)
        nz = np.flatnonzero(form.objective)
        m.setObjective(quicksum(float(form.objective[j]) * vs[j] for j in nz), "maximize")
        return m, vs

    def enumerate(self, problem: EnumerationProblem, sink: PatternSink, *, time_limit: float | None = None,
                  threads: int = 1, resume_state: dict | None = None) -> EnumerationResult:
        from pyscipopt import quicksum

        trivial = all_stable_result(problem, sink)
        if trivial is not None:
            return trivial
        form = problem.formulation()
        tol = float(problem.tol)
        t0 = time.perf_counter()
        m, vs = self.build_model(form)
        for k, val in self.params.items():
            m.setParam(k, val)
        if time_limit is not None:
            m.setParam("limits/time", max(float(time_limit), 0.0))
        m.setParam("lp/threads", int(threads))
        m.setObjlimit(tol)
        # patterns known from --resume: no-good constraints up front
        for p in sink.known:
            idx, coef, rhs = form.nogood_cut(p)
            m.addCons(quicksum(c * vs[i] for i, c in zip(idx.tolist(), coef.tolist())) <= rhs)
        zvars = [vs[i] for i in form.z_index[form.z_index >= 0].tolist()]
        fvar = vs[form.f_index] if form.f_index >= 0 else None
        handler = _make_handler_class()(form, sink, tol, zvars, fvar, vs)
        handler.cut_keys.update(pattern_keys(sink.known))
        m.includeConshdlr(handler, "nogood", "records activation patterns and cuts them off",
                          sepapriority=0, enfopriority=_PRIORITY, chckpriority=_PRIORITY,
                          sepafreq=-1, propfreq=-1, eagerfreq=-1, maxprerounds=0,
                          delaysepa=False, delayprop=False, needscons=True)
        cons = m.createCons(handler, "nogood", initial=False, separate=False, enforce=True, check=True,
                            propagate=False, local=False, modifiable=False, dynamic=False, removable=False,
                            stickingatnode=False)
        m.addPyCons(cons)
        m.optimize()
        status = m.getStatus()
        err = handler.error
        if err is not None and not isinstance(err, KeyboardInterrupt):
            m.freeProb()
            raise err
        interrupted = status == "userinterrupt" or err is not None
        complete = not interrupted and status in ("infeasible", "optimal", "inforunbd")
        if complete and status == "optimal" and m.getNSols() and m.getObjVal() > tol:
            raise RuntimeError(f"SCIP accepted a solution with f = {m.getObjVal():g} > tol despite its no-good cut")
        stats = dict(handler.stats, status="interrupted" if interrupted else status, nodes=int(m.getNTotalNodes()),
                     seconds=round(time.perf_counter() - t0, 3), threads=1, resume_cuts=int(len(sink.known)))
        m.freeProb()
        return EnumerationResult(complete=complete, stats=stats, interrupted=interrupted)
