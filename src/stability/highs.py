"""Construction of HiGHS models (highspy) for the LP and MILP tiers, and their solutions as input points."""
from __future__ import annotations

import os
import sys
import threading

import numpy as np

from src.core.box import Box

_BANNER_DONE = False

_BANNER_LOCK = threading.Lock()     # two threads swallowing the banner at once could leave fd 1 on devnull


def new_highs(threads: int = 1):
    """A silent highspy.Highs (the one-time banner printed by the first construction is swallowed)."""
    global _BANNER_DONE
    import highspy

    h = highspy.Highs() if _BANNER_DONE else None
    if h is None:
        with _BANNER_LOCK:
            if _BANNER_DONE:
                h = highspy.Highs()
            else:
                sys.stdout.flush()
                saved = os.dup(1)
                try:
                    with open(os.devnull, "w") as devnull:
                        os.dup2(devnull.fileno(), 1)
                        h = highspy.Highs()
                finally:
                    os.dup2(saved, 1)
                    os.close(saved)
                _BANNER_DONE = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("threads", int(threads))
    return h


def highs_load(h, form, integer: bool) -> None:
    """Pass a MilpFormulation to a highspy model (minimisation, zero objective)."""
    import highspy

    inf = highspy.kHighsInf
    n = form.n_vars
    h.addVars(n, form.lb, form.ub)
    A = form.A.tocsr()
    if A.shape[0]:
        lo = np.where(np.isfinite(form.row_lo), form.row_lo, -inf)
        hi = np.where(np.isfinite(form.row_hi), form.row_hi, inf)
        h.addRows(A.shape[0], lo, hi, A.nnz, A.indptr[:-1].astype(np.int32), A.indices.astype(np.int32),
                  A.data.astype(np.float64))
    if integer and form.is_binary.any():
        idx = np.flatnonzero(form.is_binary).astype(np.int32)
        h.changeColsIntegrality(idx.size, idx, np.array([highspy.HighsVarType.kInteger] * idx.size))


class _LinearObjective:
    """Swap sparse objectives on one HiGHS model, clearing the previous one (minimisation)."""

    def __init__(self, h):
        self.h = h
        self.prev = np.zeros(0, np.int32)

    def set(self, idx, coef) -> None:
        idx = np.asarray(idx, np.int32)
        if self.prev.size:
            self.h.changeColsCost(self.prev.size, self.prev, np.zeros(self.prev.size))
        if idx.size:
            self.h.changeColsCost(idx.size, idx, np.asarray(coef, np.float64))
        self.prev = idx


def _x_from(form, v, box: Box) -> np.ndarray:
    """Input point of a solution vector (dropped inputs at the box center; they do not matter)."""
    x = (box.lo + box.hi) / 2
    m = form.input_index >= 0
    x = x.copy()
    x[m] = np.asarray(v)[form.input_index[m]]
    return np.clip(x, box.lo, box.hi)
