"""Bounds on hidden pre-activations over a box, and the stable units they imply.

A unit is stably inactive if its upper bound <= 0, stably active if its lower bound > tol.
Tiers, each tightening the previous one (`analyse_stability` runs them in order):

  interval      interval arithmetic (pure numpy; exact for the first hidden layer)
  lp            per undecided unit, max / min of g over the LP relaxation (z in [0,1]) of the
                MILP of the earlier layers (src/milp.py), solved with HiGHS; the reported bound is
                made rigorous from the LP's dual values (see `safe_lower_bound`)
  milp          per still undecided unit, the exact MILP with HiGHS's branch and cut, stopped as
                soon as the sign question is answered

Instability is certified by concrete points: g evaluated by a forward pass at sample points, LP
optima, gradient local-search points and MILP incumbents ("witnesses"); a unit with a witness
g > 0 cannot be inactive and one with a witness g <= tol cannot be active, and no solver is asked
about it any more. See the README section "Bounds, stable units and the MILP" for the numerical-soundness rules.

Data first (`analyse_stability(data=...)`): one chunked forward pass over given points of the box
(MNIST images inside it, seeded samples: `data_points_for_box`) records witnesses before any LP;
units seen on both sides skip the LP tier unless the caller needs tight big-M bounds
(`tight_bounds=True`, for the MILP enumeration backends). A deadline bounds every tier: what is
left when it passes keeps its sound, looser bounds, and the tier entry says "stopped": "time limit".
Every tier only tightens: its result is intersected with the bounds it started from.
See docs/stability.md.

Modules: `stability` (the Stability record, witnesses as facts), `interval`, `lp` (rigorous duals),
`exact` (the MILP tier and the per-unit reference), `witnesses` (data first, local search),
`highs` (HiGHS model construction: `new_highs`, `highs_load`), `tiered` (`analyse_stability`),
`files` (stable_units_<domain>.json, inactive_<domain>.dat). `from src.bounds import X` works for all.
"""
from .exact import (MIP_MARGIN, MIP_TOL, POOL_EXTRA, QUICK_MILP_SECONDS, _LayerMILP, _needs,  # noqa: F401
                    exact_stability_per_unit, milp_settle)
from .files import (inactive_lines, read_stability_file, reusable_stability, stability_to_json,  # noqa: F401
                    write_stability_files)
from .highs import _LinearObjective, _x_from, highs_load, new_highs  # noqa: F401
from .interval import _interval_affine, _interval_layer, interval_bounds  # noqa: F401
from .lp import SEARCH_RATIO, _LayerLP, lp_tighten, safe_lower_bound  # noqa: F401
from .stability import Stability, _deadline, _left, _only_tighter, _progress_bar, _record_witnesses  # noqa: F401
from .tiered import analyse_stability  # noqa: F401
from .witnesses import (CHUNK, N_DATA_SAMPLES, N_WITNESS_SAMPLES, SeededSamples, _pgd, _search_witnesses,  # noqa: F401
                        _unit_gradient, ascent_witnesses, data_points_for_box, iter_chunks, mnist_points_in_box,
                        record_points, witness_points)
