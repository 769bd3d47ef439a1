"""Exact enumeration backends (see src/counting/problem.py for the contract).

gurobi.py and scip.py solve the lean MILP of src/stability/milp.py in one search tree, cutting off
every new pattern with a lazy no-good cut; each imports its solver package lazily.
"""
from __future__ import annotations

import numpy as np

from src.counting.problem import EnumerationProblem, EnumerationResult, PatternSink


def all_stable_result(problem: EnumerationProblem, sink: PatternSink) -> EnumerationResult | None:
    """When every hidden unit is stable, the whole box is one region (the fixed pattern): no solver needed.

    Stably active units have g > tol and stably inactive ones g <= 0 on the whole box, so every x
    realises the fixed pattern and no other pattern is feasible. Returns None if some unit is unstable.
    """
    fixed = np.asarray(problem.stability.fixed_bits())
    if (fixed < 0).any():
        return None
    sink.add(fixed.astype(np.uint8))
    return EnumerationResult(complete=True, stats={"status": "all units stable", "nodes": 0})
