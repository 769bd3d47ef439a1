"""The stable-units files: `stable_units_<domain>.json` and `inactive_<domain>.dat`."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..domain import Box
from ..layout import inactive_file_name, stable_units_file_name
from .stability import Stability


def stability_to_json(stability: Stability, box: Box, weights_path) -> dict:
    """The `stable_units_<domain>.json` object of docs/formats.md."""
    layers, counts = [], []
    for l, (a, i, u, lo, up) in enumerate(zip(stability.active, stability.inactive, stability.unstable,
                                             stability.lower, stability.upper)):
        counts.append({"layer": l + 1, "active": int(a.sum()), "inactive": int(i.sum()), "unstable": int(u.sum())})
        layers.append({"layer": l + 1, "active": np.flatnonzero(a).tolist(), "inactive": np.flatnonzero(i).tolist(),
                       "unstable": np.flatnonzero(u).tolist(),
                       "lower": [float(v) for v in lo], "upper": [float(v) for v in up]})
    return {"weights": str(weights_path), "domain": box.to_json(), "tol": float(stability.tol),
            "exact": bool(stability.exact), "tiers": [dict(t) for t in stability.tiers],
            "counts": counts, "layers": layers}


def inactive_lines(stability: Stability) -> str:
    """`inactive_<domain>.dat` text: one line `layer unit` per stably inactive unit (layer 1-based)."""
    return "".join(f"{l + 1} {int(i)}\n" for l, m in enumerate(stability.inactive) for i in np.flatnonzero(m))


def write_stability_files(out_dir, stability: Stability, box: Box, weights_path) -> tuple[Path, Path]:
    """Write `stable_units_<domain>.json` and `inactive_<domain>.dat` atomically; returns both paths."""
    from ..ioutils import atomic_write_json, atomic_write_text

    out_dir = Path(out_dir)
    js = out_dir / stable_units_file_name(box.name)
    dat = out_dir / inactive_file_name(box.name)
    atomic_write_json(js, stability_to_json(stability, box, weights_path))
    atomic_write_text(dat, inactive_lines(stability))
    return js, dat
