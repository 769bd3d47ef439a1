"""The record every tier passes on (`Stability`), witnesses as facts, and the helpers the tiers share."""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.network import ReluNet


@dataclass
class Stability:
    """Per hidden layer: lower/upper bounds of the pre-activation over the domain."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]
    tol: float = DEFAULT_TOL
    exact: bool = False          # True when every undecided unit was settled by an exact MILP
    tiers: list[dict] = field(default_factory=list)  # [{"tier", "settled", "seconds"}, ...]
    # g at concrete points of the domain (per layer, per unit): the true range contains
    # [witness_min, witness_max]; None until a tier has evaluated points
    witness_min: list[np.ndarray] | None = None
    witness_max: list[np.ndarray] | None = None

    @property
    def active(self) -> list[np.ndarray]:
        return [lo > self.tol for lo in self.lower]

    @property
    def inactive(self) -> list[np.ndarray]:
        return [up <= 0 for up in self.upper]

    @property
    def unstable(self) -> list[np.ndarray]:
        return [~(a | i) for a, i in zip(self.active, self.inactive)]

    def fixed_bits(self) -> np.ndarray:
        """int8 over all hidden units, layer by layer: 1 stably active, 0 stably inactive, -1 unstable."""
        out = []
        for a, i in zip(self.active, self.inactive):
            s = np.full(a.shape, -1, dtype=np.int8)
            s[a] = 1
            s[i] = 0
            out.append(s)
        return np.concatenate(out) if out else np.zeros(0, np.int8)

    def counts(self) -> list[dict]:
        return [{"active": int(a.sum()), "inactive": int(i.sum()), "unstable": int(u.sum())}
                for a, i, u in zip(self.active, self.inactive, self.unstable)]

    def n_stable(self) -> int:
        return int(sum(int(a.sum() + i.sum()) for a, i in zip(self.active, self.inactive)))

    @property
    def stopped_by_time_limit(self) -> bool:
        """True when some tier was cut short by its time limit (its bounds are sound but looser)."""
        return any(t.get("stopped") == "time limit" for t in self.tiers)

    def certified_unstable(self) -> list[np.ndarray]:
        """Units proven unstable by witnesses: some point has g > 0 and some point has g <= tol."""
        if self.witness_max is None:
            return [np.zeros(lo.shape, bool) for lo in self.lower]
        return [(wx > 0) & (wn <= self.tol) for wx, wn in zip(self.witness_max, self.witness_min)]

    def copy(self) -> "Stability":
        cp = lambda xs: None if xs is None else [x.copy() for x in xs]  # noqa: E731
        return replace(self, lower=cp(self.lower), upper=cp(self.upper), tiers=[dict(t) for t in self.tiers],
                       witness_min=cp(self.witness_min), witness_max=cp(self.witness_max))


def _record_witnesses(st: Stability, net: ReluNet, box: Box, x) -> None:
    """Evaluate g at points x (clipped into the box) and widen the witness ranges."""
    x = np.clip(np.atleast_2d(np.asarray(x, np.float64)), box.lo, box.hi)
    gs = net.preactivations(x)
    if st.witness_min is None:
        st.witness_min = [g.min(axis=0) for g in gs]
        st.witness_max = [g.max(axis=0) for g in gs]
    else:
        for l, g in enumerate(gs):
            st.witness_min[l] = np.minimum(st.witness_min[l], g.min(axis=0))
            st.witness_max[l] = np.maximum(st.witness_max[l], g.max(axis=0))
    # a witness is a fact: no bound may contradict it (guards against solver-tolerance bounds)
    for l in range(len(gs)):
        st.upper[l] = np.maximum(st.upper[l], st.witness_max[l])
        st.lower[l] = np.minimum(st.lower[l], st.witness_min[l])


def _only_tighter(st: Stability, prior: Stability) -> None:
    """Intersect st's bounds with the bounds `prior` a tier started from: a tier may only tighten.

    A tier's own interval step and the forward pass at a witness can round differently from the
    computation that produced `prior` (BLAS kernels sum in different orders), which must never
    loosen a bound by a rounding step; both are sound, so their intersection is.
    """
    for l in range(len(st.lower)):
        st.lower[l] = np.maximum(st.lower[l], prior.lower[l])
        st.upper[l] = np.minimum(st.upper[l], prior.upper[l])


def _deadline(t0: float, time_limit: float | None, deadline: float | None) -> float | None:
    """The earlier of t0 + time_limit and deadline (time.perf_counter() values); None = no limit."""
    ends = [e for e in (None if time_limit is None else t0 + max(float(time_limit), 0.0), deadline) if e is not None]
    return min(ends) if ends else None


def _left(deadline: float | None) -> float | None:
    return None if deadline is None else deadline - time.perf_counter()
