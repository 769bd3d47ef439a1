"""Bounds on hidden pre-activations over a box, and the stable units they imply.

Pure numpy math (interval arithmetic) plus tiers that tighten with LPs / exact MILPs.
A unit is stably inactive if its upper bound <= 0, stably active if its lower bound > tol.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .domain import Box
from .network import ReluNet


@dataclass
class Stability:
    """Per hidden layer: lower/upper bounds of the pre-activation over the domain."""

    lower: list[np.ndarray]
    upper: list[np.ndarray]
    tol: float = 1e-6
    exact: bool = False          # True when every undecided unit was settled by an exact MILP
    tiers: list[dict] = field(default_factory=list)  # [{"tier", "settled", "seconds"}, ...]

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


def interval_bounds(net: ReluNet, box: Box) -> Stability:
    """Interval arithmetic through the hidden layers (sound, loose)."""
    lo_h, hi_h = box.lo, box.hi
    lowers, uppers = [], []
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        lo = wp @ lo_h + wn @ hi_h + b
        up = wp @ hi_h + wn @ lo_h + b
        lowers.append(lo)
        uppers.append(up)
        lo_h, hi_h = np.maximum(lo, 0.0), np.maximum(up, 0.0)
    return Stability(lowers, uppers)
