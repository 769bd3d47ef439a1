"""`analyse_stability`: the tiers in order (interval -> data-first witnesses -> LP -> exact MILP)."""
from __future__ import annotations

import time

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet
from src.stability.exact import milp_settle
from src.stability.interval import interval_bounds
from src.stability.lp import lp_tighten
from src.stability.record import Stability, _deadline, _only_tighter, _record_witnesses
from src.stability.witnesses import record_points, witness_points


def analyse_stability(net: ReluNet, box: Box, tol: float = DEFAULT_TOL, exact: bool = False, progress=None,
                      time_limit: float | None = None, unit_time_limit: float | None = None,
                      stability_only: bool = False, data=None, tight_bounds: bool | None = None,
                      deadline: float | None = None) -> Stability:
    """Tiered stability: interval -> LP tightening -> (exact MILP for the units still undecided).

    progress: truthy for tqdm bars on stderr. unit_time_limit: see `milp_settle`.
    time_limit (seconds from the call) and deadline (a time.perf_counter() value, e.g. the end of
    a whole command): the earlier one bounds every tier; units left open keep sound, looser
    bounds, `exact` is False when a unit stays undecided, and the tier entry that was cut short has
    "stopped": "time limit" (`Stability.stopped_by_time_limit`).
    data: points of the box (an array, a SeededSamples, or a dict of them such as
    `data_points_for_box(box)`, or the src.counting.count_bounds.DataPatterns of such points, whose
    witness ranges are reused); one chunked forward pass records them as witnesses first, so
    every unit they show on both sides is certified unstable without an LP. Points outside the box
    are dropped.
    tight_bounds: True runs the LP tier on every undecided unit (tight big-M constants for the MILP
    enumeration backends); False skips the units witnesses certify unstable (`lp_tighten`'s
    stability_only: same stable sets, looser bounds on those units). Default: False when data or
    stability_only is given, else True (the behaviour without data).
    """
    t0 = time.perf_counter()
    deadline = _deadline(t0, time_limit, deadline)
    iv = interval_bounds(net, box)
    iv.tol = tol
    st = iv.copy()
    _record_witnesses(st, net, box, witness_points(box))
    n_data = 0 if data is None else record_points(st, net, box, data, deadline=deadline)
    _only_tighter(st, iv)
    entry = {"tier": "interval", "settled": st.n_stable(), "seconds": round(time.perf_counter() - t0, 6)}
    if data is not None:
        entry["data_points"] = n_data
    entry["certified_unstable"] = int(sum(int(c.sum()) for c in st.certified_unstable()))
    st.tiers.append(entry)
    skip = (stability_only or data is not None) if tight_bounds is None else not tight_bounds
    st = lp_tighten(net, box, st, tol=tol, progress=progress, stability_only=skip, deadline=deadline)
    if exact:
        st = milp_settle(net, box, st, tol=tol, progress=progress, unit_time_limit=unit_time_limit,
                         deadline=deadline)
    return st
