"""The stable-units files: `stable_units_<domain>.json` and `inactive_<domain>.dat`.

`write_stability_files` is their only writer (the count step, src/counting/driver.py, and compression,
src/compress/run.py, both call it); `reusable_stability` reads them back for a step that would
otherwise compute the same stable units again.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.core.box import Box
from src.core.errors import ToolError
from src.io.current import record_is_current
from src.io.files import atomic_write_text, file_sha256
from src.io.records import read_stable_units, write_stable_units
from src.io.run_dir import inactive_file_name, stable_units_file_name
from src.stability.record import Stability


def stability_to_json(stability: Stability, box: Box, weights_path, sha: str | None = None) -> dict:
    """The `stable_units_<domain>.json` object of docs/formats.md (`weights_sha256` when sha is known)."""
    layers, counts = [], []
    for l, (a, i, u, lo, up) in enumerate(zip(stability.active, stability.inactive, stability.unstable,
                                             stability.lower, stability.upper)):
        counts.append({"layer": l + 1, "active": int(a.sum()), "inactive": int(i.sum()), "unstable": int(u.sum())})
        layers.append({"layer": l + 1, "active": np.flatnonzero(a).tolist(), "inactive": np.flatnonzero(i).tolist(),
                       "unstable": np.flatnonzero(u).tolist(),
                       "lower": [float(v) for v in lo], "upper": [float(v) for v in up]})
    head = {"weights": str(weights_path)}
    if sha is not None:
        head["weights_sha256"] = sha
    return {**head, "domain": box.to_json(), "tol": float(stability.tol),
            "exact": bool(stability.exact), "tiers": [dict(t) for t in stability.tiers],
            "counts": counts, "layers": layers}


def inactive_lines(stability: Stability) -> str:
    """`inactive_<domain>.dat` text: one line `layer unit` per stably inactive unit (layer 1-based)."""
    return "".join(f"{l + 1} {int(i)}\n" for l, m in enumerate(stability.inactive) for i in np.flatnonzero(m))


def _weights_sha(weights_path, sha: str | None) -> str | None:

    return sha if sha is not None else (file_sha256(weights_path) if Path(weights_path).is_file() else None)


def write_stability_files(out_dir, stability: Stability, box: Box, weights_path,
                          sha: str | None = None) -> tuple[Path, Path]:
    """Write `stable_units_<domain>.json` and `inactive_<domain>.dat` atomically; returns both paths.

    The JSON records the sha256 of the weights file (sha, else hashed here when weights_path is a
    file), so that a later step can tell whether the stable units are those of its net.
    """

    out_dir = Path(out_dir)
    js = out_dir / stable_units_file_name(box.name)
    dat = out_dir / inactive_file_name(box.name)
    write_stable_units(js, stability_to_json(stability, box, weights_path, _weights_sha(weights_path, sha)))
    atomic_write_text(dat, inactive_lines(stability))
    return js, dat


def read_stability_file(path) -> tuple[Stability, dict]:
    """(Stability, the JSON object) of a `stable_units_<domain>.json` (src.io.records.read_stable_units checks
    it); the Stability has the bounds, tol, exact and tiers of the file, no witnesses."""

    d = read_stable_units(path)
    st = Stability([np.asarray(lay["lower"], np.float64) for lay in d["layers"]],
                   [np.asarray(lay["upper"], np.float64) for lay in d["layers"]],
                   tol=float(d["tol"]), exact=bool(d["exact"]), tiers=[dict(t) for t in d["tiers"]])
    return st, d


def reusable_stability(out_dir, box: Box, weights_path, hidden_sizes, tol: float, exact: bool,
                       sha: str | None = None) -> tuple[Stability, Path] | None:
    """The stable units in out_dir/stable_units_<domain>.json, when they may stand in for computing them.

    They must be of these weights (the file's weights_sha256 equals the sha256 of weights_path, so files
    written before it was recorded never qualify), this domain (Box.to_json) and tol, list per layer the
    units its bounds imply, and be at least as strong as asked: with exact, settled by the exact MILP
    tier (`exact`: true); without, exact or no tier cut short by a time limit. Else None (also for a
    missing or unreadable file).
    """

    path = Path(out_dir) / stable_units_file_name(box.name)
    if not path.is_file():
        return None
    try:
        st, d = read_stability_file(path)
    except ToolError:
        return None
    if not record_is_current(d, _weights_sha(weights_path, sha), tol=tol, domain=box):
        return None
    if [len(lo) for lo in st.lower] != [int(n) for n in hidden_sizes]:
        return None
    for lay, a, i in zip(d["layers"], st.active, st.inactive):
        if lay["active"] != np.flatnonzero(a).tolist() or lay["inactive"] != np.flatnonzero(i).tolist():
            return None
    if not st.exact and (exact or st.stopped_by_time_limit):
        return None
    return st, path
