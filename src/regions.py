"""Count the linear regions of a ReLU net on a box: bounds, stable units, exact enumeration, files.

Definitions. The pattern of x sets, for every hidden unit, 1 if its pre-activation g(x) > 0,
else 0. A pattern S is feasible iff some x in the domain has g > tol on every unit of S with
bit 1 and g <= 0 on every unit with bit 0; the number of linear regions is the number of
feasible patterns. `count_regions` writes, next to the weights (or in out_dir):
  activation_pattern_abhinav_<domain>.dat   the patterns (streamed, atomic)
  stable_units_<domain>.json, inactive_<domain>.dat   the stable units (src/bounds.py)
  regions_<domain>.json                     the summary (docs/formats.md), written last
  frontier_<domain>.json                    resumable search state (only backends that have one)
"""
from __future__ import annotations

import hashlib
import math
import sys
import time
from pathlib import Path

import numpy as np

from .bounds import analyse_stability, write_stability_files
from .domain import Box
from .enumeration import (FALLBACK_CHOICES, BackendUnavailable, EnumerationProblem, EnumerationResult, PatternSink,
                          ProblemTooLarge, get_backend, packages_line)
from .ioutils import ToolError, atomic_write_json, read_json
from .network import ReluNet
from .patterns_io import PatternWriter, pattern_file_name, read_pattern_header, read_patterns


def regions_file_name(domain_name: str) -> str:
    return f"regions_{domain_name}.json"


def frontier_file_name(domain_name: str) -> str:
    return f"frontier_{domain_name}.json"


def file_sha256(path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class _Progress:
    """Patterns found, elapsed time and rate on stderr (tqdm), or nothing when disabled."""

    def __init__(self, enabled: bool, start: int = 0):
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(desc="patterns", unit=" pat", initial=start, file=sys.stderr, mininterval=0.5,
                            dynamic_ncols=True, leave=False)

    def __call__(self, count: int) -> None:
        if self.bar is not None and count > self.bar.n:
            self.bar.update(count - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def check_known_patterns(known: np.ndarray, fixed_bits: np.ndarray, path) -> None:
    """Refuse resumed patterns that contradict a stable unit (they cannot be patterns of this net/domain)."""
    if known.size == 0:
        return
    m = fixed_bits >= 0
    bad = np.flatnonzero(np.any(known[:, m] != fixed_bits[m].astype(np.uint8), axis=1))
    if bad.size:
        raise ToolError(f"--resume {path}: {bad.size} of its {len(known)} patterns contradict the stable units of this "
                        f"net on this domain (first: pattern {bad[0] + 1}); it was not written for this net/domain/tol — "
                        f"remove it or run without --resume")


def prev_complete(json_path, n_patterns: int, sha, tol: float, domain_name: str) -> bool:
    """True if json_path records a complete count of n_patterns for these weights, tol and domain."""
    if not Path(json_path).exists():
        return False
    prev = read_json(json_path)
    return (prev.get("complete") is True and prev.get("count") == n_patterns and prev.get("weights_sha256") == sha
            and prev.get("tol") == float(tol) and (prev.get("domain") or {}).get("name") == domain_name)


def count_pattern_lines(path) -> int:
    """Patterns in a pattern file (non-empty lines after the header), without parsing them."""
    n = 0
    with open(path, "rb") as fh:
        fh.readline()
        for line in fh:
            n += bool(line.strip())
    return n


def count_status(weights, box: Box, tol: float = 1e-6, out_dir=None) -> tuple[str, Path]:
    """(status, summary path) of an earlier count with these arguments.

    status: "complete" (its summary says complete for these very weights (sha256), tol and domain,
    and the pattern file holds that many patterns), "incomplete" (a resumable earlier count of these
    weights), "stale" (outputs of other weights or another tol) or "none".
    """
    weights = Path(weights)
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    json_path = out_dir / regions_file_name(box.name)
    pattern_path = out_dir / pattern_file_name(box.name)
    if not json_path.exists():
        return "none", json_path
    try:
        prev = read_json(json_path)
    except ToolError:
        return "stale", json_path
    sha = file_sha256(weights)
    if prev.get("weights_sha256") != sha or prev.get("tol") != float(tol):
        return "stale", json_path
    if (prev.get("complete") is True and pattern_path.exists()
            and prev_complete(json_path, count_pattern_lines(pattern_path), sha, tol, box.name)):
        return "complete", json_path
    return "incomplete", json_path


def _validate_settings(tol, time_limit, threads, workers=1) -> None:
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ToolError(f"--tol must be a finite number >= 0, got {tol}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ToolError(f"--time-limit must be > 0 seconds, got {time_limit}")
    if int(threads) < 1:
        raise ToolError(f"--threads must be >= 1, got {threads}")
    if int(workers) < 1:
        raise ToolError(f"--workers must be >= 1, got {workers}")


def _backend_candidates(name: str) -> list[str]:
    return list(FALLBACK_CHOICES.get(name, (name,)))


def count_regions(weights, box: Box | None = None, *, backend: str = "auto", tol: float = 1e-6,
                  time_limit: float | None = None, threads: int = 1, resume: bool = False, out_dir=None,
                  exact_stability: bool = False, progress: bool = True, net: ReluNet | None = None,
                  workers: int = 1) -> dict:
    """Enumerate every feasible activation pattern of the net in `weights` on `box` (default [0,1]^n0).

    Returns the summary written to regions_<domain>.json (docs/formats.md). A time limit (wall
    clock for the whole count) or Ctrl-C ends the search early: what was found is written and the
    summary says complete: false (and "interrupted": true after Ctrl-C). resume=True continues from
    the patterns already in the pattern file (they become no-good cuts / are skipped).
    """
    t_start = time.perf_counter()
    _validate_settings(tol, time_limit, threads, workers)
    weights = Path(weights)
    if net is None:
        net = ReluNet.load(weights)
    if net.n_hidden_layers == 0:
        raise ToolError(f"{weights}: the network has no hidden layer, so it has exactly one linear region")
    if box is None:
        box = Box.uniform(net.n_inputs)
    if box.n != net.n_inputs:
        raise ToolError(f"the domain has {box.n} inputs but the network {weights} has {net.n_inputs}")
    if backend not in FALLBACK_CHOICES:
        get_backend(backend)          # unknown name / missing package: fail before any work
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    pattern_path = out_dir / pattern_file_name(box.name)
    json_path = out_dir / regions_file_name(box.name)
    frontier_path = out_dir / frontier_file_name(box.name)
    sha = file_sha256(weights) if weights.is_file() else None
    notes: list[str] = []

    # ---- resume: the patterns already found -------------------------------------------------
    known = None
    resume_state = None
    if resume:
        if pattern_path.exists():
            sizes = read_pattern_header(pattern_path)
            if sizes != net.layer_sizes:
                raise ToolError(f"--resume {pattern_path}: the pattern file is for a net with n = {sizes}, but "
                                f"{weights} has n = {net.layer_sizes}; remove it or run without --resume")
            if json_path.exists():
                prev = read_json(json_path)
                if prev.get("weights_sha256") and sha and prev["weights_sha256"] != sha:
                    raise ToolError(f"--resume {pattern_path}: {json_path.name} was written for different weights "
                                    f"(sha256 differs from {weights}); remove the old outputs or run without --resume")
                if "tol" in prev and float(prev["tol"]) != float(tol):
                    raise ToolError(f"--resume {pattern_path}: the earlier run used --tol {prev['tol']}, this one "
                                    f"--tol {tol}; use the same tol or run without --resume")
            known = read_patterns(pattern_path, net.layer_sizes, allow_empty=True)
            if prev_complete(json_path, len(known), sha, tol, box.name) and not frontier_path.exists():
                prev = read_json(json_path)
                _log(f"{json_path.name}: already complete ({prev['count']} regions); nothing to resume", not progress)
                return prev
            if frontier_path.exists():
                resume_state = read_json(frontier_path)
            _log(f"resuming from {pattern_path} ({len(known)} patterns)", not progress)
        else:
            _log(f"--resume: no {pattern_path.name} in {out_dir} yet; starting from scratch", not progress)

    # ---- bounds and stable units --------------------------------------------------------------
    t0 = time.perf_counter()
    bounds_limit = None if time_limit is None else max(time_limit, 0.0)
    stability = analyse_stability(net, box, tol=tol, exact=exact_stability, progress=progress,
                                  time_limit=bounds_limit)
    write_stability_files(out_dir, stability, box, weights)
    t_bounds = time.perf_counter() - t0
    fixed = stability.fixed_bits()
    if known is not None:
        check_known_patterns(known, fixed, pattern_path)
    problem = EnumerationProblem(net, box, stability, tol)
    model_size = problem.formulation().size()
    counts = stability.counts()
    _log(f"{net!r} on {box.name}: bounds in {t_bounds:.2f}s, unstable units per layer "
         f"{[c['unstable'] for c in counts]} of {net.hidden_sizes}; MILP {model_size['variables']} variables, "
         f"{model_size['constraints']} constraints, {model_size['binaries']} binaries", not progress)

    # ---- enumeration ----------------------------------------------------------------------------
    candidates = _backend_candidates(backend)
    bar = _Progress(progress, 0 if known is None else len(known))
    writer = PatternWriter(pattern_path, net.layer_sizes)
    result: EnumerationResult | None = None
    used = None
    interrupted = False
    t_enum0 = time.perf_counter()
    try:
        sink = PatternSink(writer, known, progress=bar)
        reasons = []
        for i, name in enumerate(candidates):
            nxt = candidates[i + 1] if i + 1 < len(candidates) else None
            try:
                be = get_backend(name)
                if hasattr(be, "workers"):        # the lp engine walks subtrees in parallel processes
                    be.workers = int(workers)
                be.check_problem(problem)
                left = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - t_start))
                result = be.enumerate(problem, sink, time_limit=left, threads=int(threads),
                                      resume_state=resume_state if resume_state is None or
                                      resume_state.get("backend") in (None, name) else None)
                used = name
                break
            except BackendUnavailable as e:
                if backend not in FALLBACK_CHOICES:
                    raise
                reasons.append(f"{name}: {e}")
                if nxt is None:
                    raise ToolError(f"no backend could count this net ({'; '.join(reasons)}); {packages_line()}") from None
                if isinstance(e, ProblemTooLarge):
                    msg = f"{e}; falling back to {nxt.upper() if nxt == 'scip' else nxt}"
                    bar.close()
                    print(msg, file=sys.stderr, flush=True)
                    notes.append(msg)
                    bar = _Progress(progress, len(sink))
                    sink.progress = bar
                else:
                    notes.append(f"backend {name} unavailable ({e}); using {nxt}")
    except KeyboardInterrupt:
        interrupted = True
        result = EnumerationResult(complete=False, stats={"status": "interrupted"}, interrupted=True)
        used = used or (candidates[0] if len(candidates) == 1 else "auto")
    except BaseException as e:
        bar.close()
        writer.abort(e)
        raise
    bar.close()
    writer.close()
    t_enum = time.perf_counter() - t_enum0
    interrupted = interrupted or result.interrupted
    complete = bool(result.complete) and not interrupted

    # ---- frontier, summary ------------------------------------------------------------------------
    if not complete and result.frontier is not None:
        atomic_write_json(frontier_path, {"backend": used, "weights_sha256": sha, "tol": tol,
                                          "layer_sizes": net.layer_sizes, "frontier": result.frontier})
    elif frontier_path.exists():
        frontier_path.unlink()
    count = len(sink)
    if not complete:
        why = "interrupted (Ctrl-C)" if interrupted else (
            "time limit reached" if time_limit is not None else f"solver stopped ({result.stats.get('status')})")
        notes.append(f"incomplete: {why}; {count} patterns so far; rerun with --resume to continue")
    stats = dict(result.stats)
    n_new = count - sink.n_known
    stats.update(patterns_at_start=int(sink.n_known), new_patterns=int(n_new), threads=int(threads),
                 time_limit=time_limit,
                 ms_per_region=round(1000.0 * t_enum / n_new, 4) if n_new else None)
    summary = {
        "weights": str(weights), "weights_sha256": sha, "layer_sizes": net.layer_sizes, "domain": box.to_json(),
        "pattern_file": pattern_path.name, "count": int(count), "complete": complete, "backend": used,
        "tol": float(tol),
        "times": {"bounds": round(t_bounds, 4), "enumeration": round(t_enum, 4),
                  "total": round(time.perf_counter() - t_start, 4)},
        "stable_units": [{"layer": l + 1, **c} for l, c in enumerate(counts)],
        "exact_stability": bool(stability.exact),
        "model_size": model_size, "stats": stats, "note": "; ".join(notes),
    }
    if interrupted:
        summary["interrupted"] = True
    atomic_write_json(json_path, summary)
    return summary


def final_line(summary: dict, out_dir=None) -> str:
    """The last line the CLI prints: the count, and whether it is complete."""
    where = summary["pattern_file"] if out_dir is None else str(Path(out_dir) / summary["pattern_file"])
    t = summary["times"]["total"]
    if summary["complete"]:
        return f"{summary['count']} linear regions (complete, backend {summary['backend']}, {t:.2f}s): {where}"
    why = "interrupted" if summary.get("interrupted") else "stopped early"
    return (f"INCOMPLETE ({why}): {summary['count']} patterns found so far in {t:.2f}s, written to {where}; "
            f"rerun with --resume to continue")
