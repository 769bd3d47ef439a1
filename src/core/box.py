"""Input boxes: [lo,hi]^n0 or a local box [c-L, c+L] ∩ [lo,hi] around a sample, and their names.

Every output file of an analysis step carries the domain's name: `input_0_1` for [0,1]^n0,
`input_<lo>_<hi>` (%g) for another box, and `center_<name>_width_<L>` for a local box (name = the
center file's stem or `test<K>`)."""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from src.core.errors import ToolError


@dataclass(frozen=True, eq=False)
class Box:
    lo: np.ndarray
    hi: np.ndarray
    name: str

    @property
    def n(self) -> int:
        return self.lo.shape[0]

    @classmethod
    def uniform(cls, n: int, lo: float = 0.0, hi: float = 1.0) -> "Box":
        if not hi > lo:
            raise ToolError(f"a box needs lo < hi, got lo={lo:g}, hi={hi:g}")
        return cls(np.full(n, float(lo)), np.full(n, float(hi)), uniform_domain_name(lo, hi))

    @classmethod
    def around(cls, center, width: float, center_name: str, lo: float = 0.0, hi: float = 1.0) -> "Box":
        """[c - width, c + width] ∩ [lo, hi]; the center must lie in [lo, hi]."""
        c = np.asarray(center, dtype=np.float64).reshape(-1)
        if not np.isfinite(width) or width <= 0:
            raise ToolError(f"the half-width of a local box must be > 0, got {width:g}")
        if not np.all(np.isfinite(c)):
            raise ToolError(f"center {center_name}: values must be finite")
        bad = np.flatnonzero((c < lo) | (c > hi))
        if bad.size:
            raise ToolError(f"center {center_name}: {bad.size} values lie outside [{lo:g}, {hi:g}] "
                            f"(first: index {bad[0]} = {c[bad[0]]:g})")
        return cls(np.maximum(c - width, lo), np.minimum(c + width, hi), local_domain_name(center_name, width))

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """n points uniformly from the box, float64 (n, n0)."""
        return self.lo + (self.hi - self.lo) * rng.random((n, self.n))

    def contains(self, x, atol: float = 0.0) -> np.ndarray:
        x = np.atleast_2d(x)
        return np.all((x >= self.lo - atol) & (x <= self.hi + atol), axis=1)

    def to_json(self) -> dict:
        uniform = np.all(self.lo == self.lo[0]) and np.all(self.hi == self.hi[0])
        d = {"name": self.name, "n": self.n}
        if uniform:
            d.update(lo=float(self.lo[0]), hi=float(self.hi[0]))
        else:
            d.update(lo_min=float(self.lo.min()), hi_max=float(self.hi.max()),
                     mean_width=float((self.hi - self.lo).mean()))
        return d


def check_box(box: Box, n_inputs: int, source=None) -> Box:
    """The box, when it has the net's n_inputs (ToolError otherwise; source names the net in the message)."""
    if box.n != n_inputs:
        what = "the network" if source is None else f"the network {source}"
        raise ToolError(f"the domain has {box.n} inputs but {what} has {n_inputs}")
    return box


_UNIFORM = re.compile(r"^input_(.+)_(.+)$")

_CENTERED = re.compile(r"^center_(.+)_width_(.+)$")

# ---- domains ---------------------------------------------------------------------------------------


def uniform_domain_name(lo: float, hi: float) -> str:
    return f"input_{lo:g}_{hi:g}"


def local_domain_name(center_name: str, width: float) -> str:
    return f"center_{center_name}_width_{width:g}"


def parse_domain_name(name: str):
    """("uniform", lo, hi) or ("local", center_name, width) for a domain name, else None."""
    try:
        m = _UNIFORM.match(name)
        if m:
            lo, hi = float(m.group(1)), float(m.group(2))
            return ("uniform", lo, hi) if uniform_domain_name(lo, hi) == name else None
        m = _CENTERED.match(name)
        if m:
            width = float(m.group(2))
            return ("local", m.group(1), width) if local_domain_name(m.group(1), width) == name else None
    except ValueError:
        return None
    return None


def resolve_box(box: Box | None, n_inputs: int, source=None) -> Box:
    """The box (None: [0,1]^n0), checked against the net's n_inputs; source names the net in the message."""
    return check_box(Box.uniform(n_inputs) if box is None else box, n_inputs, source)
