"""The file steps of the region estimates (the estimator itself: src/counting/knuth.py).

`estimate_run` is `count_linear_regions.py --estimate N`: the stable units as a count computes them, Knuth's
estimate of the whole count, and its `"estimate"` record in regions_<domain>.json (no pattern file).
`estimate_remaining` is `--remaining N`: what an incomplete lp count has still to find, estimated below the
frontier of its checkpoint (or frontier file), and when it should end at its own rate; it writes nothing.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import pattern_keys
from src.counting.count import count_domain, count_stability
from src.counting.driver import SideRun, incomplete_count_state
from src.counting.knuth import estimate_regions
from src.io.files import file_sha256
from src.io.readers import load_net
from src.stability.files import reusable_stability


def estimate_line(record: dict, path=None) -> str:
    """The last line `count_linear_regions.py --estimate N` prints."""
    lo, hi = record["ci95"]
    v = "?" if record["value"] is None else f"{record['value']:.6g}"
    h = "?" if hi is None else f"{hi:.6g}"
    stop = f", stopped: {record['stopped']} after {record['probes']} of {record['requested']} probes" \
        if record.get("stopped") else ""
    where = "" if path is None else f": {path}"
    return (f"ESTIMATE ~{v} linear regions (95% CI [{lo:.6g}, {h}], {record['probes']} probes, "
            f"{record['seconds']:.2f}s{stop}; {record['certified_patterns']} certified){where}")


def estimate_run(weights, box: Box | None = None, *, probes: int, tol: float = DEFAULT_TOL, seed: int = 0,
                 time_limit: float | None = None, out_dir=None, net: ReluNet | None = None,
                 exact_stability: bool = False, progress: bool = True, data_root=None,
                 data_samples: int | None = None, mnist: bool | None = None) -> tuple[dict, Path]:
    """`count_linear_regions.py --estimate N`: the stable units as a count computes them (written like a
    count's), the estimate, and its `"estimate"` record in regions_<domain>.json: merged into the summary of
    the same weights, tol and domain when there is one, else a new summary whose `count` is the number of
    distinct patterns the probes certified (`complete: false`). Writes no pattern file. Returns (the
    summary written, its path)."""

    if isinstance(probes, bool) or not isinstance(probes, (int, np.integer)) or probes < 1:
        raise ToolError(f"--estimate must be a number of probes >= 1, got {probes}")
    run = SideRun(weights, box, tol=tol, time_limit=time_limit, out_dir=out_dir, net=net,
                  exact_stability=exact_stability, progress=progress, data_root=data_root, data_samples=data_samples,
                  mnist=mnist)
    est = estimate_regions(run.net, run.box, run.stability, probes=int(probes), tol=tol, seed=seed,
                           deadline=run.deadline)
    found = pattern_keys(est.patterns)
    summary = run.write("estimate", est.to_json(), found, "estimate",
                        f"no enumeration (--estimate {probes}): count = the {len(found)} distinct patterns the probes "
                        f"certified, a lower bound")
    return summary, run.json_path


def estimate_remaining(weights, box: Box | None = None, *, probes: int, tol: float = DEFAULT_TOL, seed: int = 0,
                       time_limit: float | None = None, out_dir=None, net: ReluNet | None = None,
                       progress: bool = True) -> dict:
    """`count_linear_regions.py --remaining N`: how many regions an incomplete lp count (running now, killed, or
    stopped by a time limit) has still to find, estimated with N Knuth probes below its frontier
    (`estimate_regions(roots=frontier)`), and when it should end at its own rate. Reads the count's files
    (`src.counting.driver.incomplete_count_state`) and its stable units when current (else computes them);
    writes nothing, so it may run beside the count.

    Returns {"found", "source", "subtrees", "remaining" (the estimate's record), "total": {"value", "ci95"}
    (found + remaining), "rate" (patterns per second of the count since its process started, or None),
    "seconds_left" ({"value", "ci95"} at that rate, or None), "written" (the checkpoint's time, or None)}."""

    if isinstance(probes, bool) or not isinstance(probes, (int, np.integer)) or probes < 1:
        raise ToolError(f"--remaining must be a number of probes >= 1, got {probes}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ToolError(f"--time-limit must be > 0 seconds, got {time_limit}")
    t0 = time.perf_counter()
    weights = Path(weights)
    net = load_net(weights) if net is None else net
    box = count_domain(net, box, source=weights)
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    state = incomplete_count_state(weights, box, tol, out_dir, net=net)
    sha = file_sha256(weights) if weights.is_file() else None
    reused = reusable_stability(out_dir, box, weights, net.hidden_sizes, tol, exact=False, sha=sha)
    deadline = None if time_limit is None else t0 + time_limit
    stability = reused[0] if reused is not None else count_stability(net, box, tol=tol, progress=progress,
                                                                    deadline=deadline)
    est = estimate_regions(net, box, stability, probes=int(probes), tol=tol, seed=seed, deadline=deadline,
                           roots=state["frontier"])
    found = state["found"]
    lo, hi = est.ci95
    rec = {"found": found, "source": str(state["source"]), "subtrees": len(state["frontier"]),
           "remaining": est.to_json(),
           "total": {"value": None if est.value is None else found + est.value,
                     "ci95": [found + lo, None if hi is None else found + hi]},
           "rate": None, "seconds_left": None, "written": state["written"]}
    rate = _rate_since_start(state)
    if rate is not None and est.value is not None:
        rec["rate"] = rate
        rec["seconds_left"] = {"value": est.value / rate, "ci95": [lo / rate, None if hi is None else hi / rate]}
    return rec


def _rate_since_start(state: dict) -> float | None:
    """Patterns per second of the count's process between its start and its last checkpoint, else None."""
    try:
        t = (datetime.fromisoformat(state["written"]) - datetime.fromisoformat(state["started"])).total_seconds()
        n = state["found"] - int(state["patterns_at_start"])
    except (TypeError, ValueError):
        return None
    return n / t if t > 0 and n > 0 else None


def remaining_lines(rec: dict) -> list[str]:
    """What `count_linear_regions.py --remaining N` prints: the state read, the estimate of what is left and of
    the total, and the expected end at the count's own rate."""
    r = rec["remaining"]
    when = f" of {rec['written']}" if rec["written"] else ""
    out = [f"{rec['found']} regions found by the count{when} ({rec['source']}); {rec['subtrees']} subtrees left"]
    if r["value"] is None:
        out.append(f"REMAINING unknown: no probe finished ({r.get('stopped') or 'no probes'})")
        return out
    lo, hi = r["ci95"]
    h = "?" if hi is None else f"{hi:.4g}"
    stop = f", stopped: {r['stopped']} after {r['probes']} of {r['requested']} probes" if r.get("stopped") else ""
    out.append(f"REMAINING ~{r['value']:.4g} regions (95% CI [{lo:.4g}, {h}], {r['probes']} probes below the "
               f"frontier, {r['seconds']:.2f}s{stop}; {r['certified_patterns']} of them certified)")
    tlo, thi = rec["total"]["ci95"]
    thi = "?" if thi is None else f"{thi:.4g}"
    out.append(f"TOTAL ~{rec['total']['value']:.4g} regions (95% CI [{tlo:.4g}, {thi}])")
    if rec["seconds_left"] is not None:
        s = rec["seconds_left"]
        end = datetime.fromisoformat(rec["written"])

        def at(sec):
            return "?" if sec is None else (end + timedelta(seconds=sec)).strftime("%Y-%m-%d %H:%M")
        out.append(f"at the count's rate since its start ({rec['rate']:.0f} regions/s): {_duration(s['value'])} after "
                   f"its checkpoint, about {at(s['value'])} (95% CI [{at(s['ci95'][0])}, {at(s['ci95'][1])}])")
    return out


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
