"""Bounds on hidden pre-activations over a box, and the stable units they imply.

A unit is stably inactive if its upper bound <= 0, stably active if its lower bound > tol.
Tiers, each tightening the previous one (`analyse_stability` runs them in order):

  interval      interval arithmetic (pure numpy; exact for the first hidden layer)
  lp            per undecided unit, max / min of g over the LP relaxation (z in [0,1]) of the
                MILP of the earlier layers (src/stability/milp.py), solved with HiGHS; the reported bound is
                made rigorous from the LP's dual values (see `safe_lower_bound`)
  milp          per still undecided unit, the exact MILP with HiGHS's branch and cut, stopped as
                soon as the sign question is answered

Instability is certified by concrete points: g evaluated by a forward pass at sample points, LP
optima, gradient local-search points and MILP incumbents ("witnesses"); a unit with a witness
g > 0 cannot be inactive and one with a witness g <= tol cannot be active, and no solver is asked
about it any more. The numerical-soundness rules: docs/milp.md ("Numerical soundness").

Data first (`analyse_stability(data=...)`): one chunked forward pass over given points of the box
(MNIST images inside it, seeded samples: `data_points_for_box`) records witnesses before any LP;
units seen on both sides skip the LP tier unless the caller needs tight big-M bounds
(`tight_bounds=True`, for the MILP enumeration backends). A deadline bounds every tier: what is
left when it passes keeps its sound, looser bounds, and the tier entry says "stopped": "time limit".
Every tier only tightens: its result is intersected with the bounds it started from.
See docs/stability.md.

Modules: `record` (the Stability record, witnesses as facts), `interval`, `lp` (rigorous duals),
`exact` (the MILP tier and the per-unit reference), `witnesses` (data first, local search),
`highs` (HiGHS model construction: `new_highs`, `highs_load`), `analyse` (`analyse_stability`),
`files` (stable_units_<domain>.json, inactive_<domain>.dat). The package re-exports nothing: import
each name from its module (`from src.stability.analyse import analyse_stability`).
"""
from __future__ import annotations





