"""Count the linear regions of a ReLU net on a box: bounds, stable units, exact enumeration, files.

Definitions. The pattern of x sets, for every hidden unit, 1 if its pre-activation g(x) > 0,
else 0. A pattern S is feasible iff some x in the domain has g > tol on every unit of S with
bit 1 and g <= 0 on every unit with bit 0; the number of linear regions is the number of
feasible patterns. `count_run` writes, next to the weights (or in out_dir):
  activation_pattern_abhinav_<domain>.dat   the patterns (streamed, atomic)
  stable_units_<domain>.json, inactive_<domain>.dat   the stable units (src/stability/files.py)
  regions_<domain>.json                     the summary (docs/formats.md), written last
  frontier_<domain>.json                    resumable search state (only backends that have one)
"""
from __future__ import annotations

import contextlib
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.fault_hooks import pause_point
from src.core.network import ReluNet
from src.core.patterns import row_keys
from src.counting.count import count_domain, count_stability
from src.counting.count_bounds import data_patterns, lower_bound, upper_bounds
from src.counting.knuth import TotalForecast
from src.counting.problem import (FALLBACK_CHOICES, EnumerationProblem, EnumerationResult, PatternSink,
                                  ResumedPatterns, backend_candidates, backend_class, get_backend, run_backends)
from src.io.current import output_is_current, record_is_current, record_mismatch
from src.io.files import file_sha256, remove_stale_temps
from src.io.pattern_file import (PatternWriter, count_pattern_lines, count_patterns, iter_pattern_blocks,
                                 read_pattern_header, read_patterns)
from src.io.readers import load_net
from src.io.records import nonneg_num, read_checkpoint, read_frontier, read_regions, write_checkpoint, write_frontier, write_regions
from src.io.run_dir import (checkpoint_file_name, frontier_file_name, partial_pattern_file_name, pattern_file_name,
                            regions_file_name)
from src.parallel import ClusterLost, check_address
from src.stability.files import write_stability_files
from src.stability.milp import formulation_size
from src.stability.witnesses import N_DATA_SAMPLES, data_points_for_box


class Checkpointer:
    """Writes checkpoint_<domain>.json: the patterns made durable so far (their byte count in the
    partial pattern file) and the backend's frontier, atomically, at most every `every` seconds.
    Without a writer (a --count-only count) it records instead what resuming needs of the patterns:
    their number, the last one and the data patterns among them (`ordered_state_fields`)."""

    def __init__(self, path, writer: PatternWriter | None, sink: PatternSink, every: float | None, meta: dict,
                 on_saved=None, earlier: "EarlierRuns | None" = None):
        self.path, self.writer, self.sink, self.every, self.meta = Path(path), writer, sink, every, meta
        self.on_saved = on_saved        # on_saved(frontier, patterns) after each save (the progress bar's forecast)
        self.earlier = earlier          # the enumeration seconds and runs of the count before this process
        self._t0 = time.perf_counter()
        self.backend = None
        self.saves = 0
        self._next = None if not every else time.monotonic() + every

    def due(self) -> bool:
        return self._next is not None and time.monotonic() >= self._next

    def save(self, frontier=None, held=None) -> None:
        """Save the state of the patterns emitted and `frontier`; `held` (walk_driver.HeldPatterns, a parallel
        walk's patterns found but held behind an earlier subtree) is counted now when no pattern file is kept,
        with its frontier, so that a stop loses none of it; with a pattern file, which takes patterns in order
        only, those subtrees stay in `frontier` and are walked again after a kill."""
        nbytes = None if self.writer is None else self.writer.sync()
        now = datetime.now().isoformat(timespec="milliseconds")
        if self.saves == 0:         # this process's start: the rate since then gives `--remaining` its ETA
            self.meta = dict(self.meta, started=now, patterns_at_start=len(self.sink))
        spent = {} if self.earlier is None else self.earlier.including(time.perf_counter() - self._t0)
        found, kept = len(self.sink), {}
        if self.writer is None:
            state = self.sink.ordered_state(() if held is None else held.packed)
            found, kept = state.count, ordered_state_fields(state)
            if held is not None:
                frontier = held.frontier
        write_checkpoint(self.path, {"format": "region-count-checkpoint", **self.meta, "backend": self.backend,
                                      "patterns": found, "bytes": nbytes, **kept,
                                      "frontier": None if frontier is None else list(frontier), "written": now,
                                      **spent})
        self.saves += 1
        if self.on_saved is not None:
            self.on_saved(frontier, found)
        if self.every:
            self._next = time.monotonic() + self.every
        pause_point("patterns", found)                  # kill tests only: $RELU_TOOLKIT_PAUSE_AFTER

    def on_new_pattern(self) -> None:
        if self.due():
            self.save(None)

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ordered_state_fields(state: ResumedPatterns) -> dict:
    """The checkpoint fields of a count that keeps no pattern file (--count-only): the last pattern's key
    and the data patterns found, in hex (src.core.patterns keys); their number is the checkpoint's `patterns`."""
    return {"last_pattern": None if state.last is None else state.last.hex(),
            "data_patterns_found": sorted(k.hex() for k in state.hits)}


def checkpointed_patterns(ck: dict) -> ResumedPatterns:
    """What a --count-only checkpoint records of the patterns found (the inverse of ordered_state_fields)."""
    last = ck.get("last_pattern")
    return ResumedPatterns(count=int(ck["patterns"]), last=None if last is None else bytes.fromhex(last),
                           hits=frozenset(bytes.fromhex(k) for k in ck.get("data_patterns_found") or []))


def _is_count_only(summary: dict | None) -> bool:
    """True for the summary of a --count-only count (it names no pattern file)."""
    return summary is not None and "pattern_file" in summary and summary["pattern_file"] is None


@dataclass(frozen=True)
class EarlierRuns:
    """The enumeration seconds and the number of processes (runs) a count had before this one: 0 and 0 for a
    fresh count; from the checkpoint or the incomplete summary it resumes (None: not known, a state written
    before they were recorded). Seconds after a killed run's last checkpoint are not counted: that work is
    done again."""
    seconds: float
    runs: int

    def including(self, seconds: float) -> dict:
        """The checkpoint's and summary's fields for the count up to now, this process's `seconds` included."""
        return {"enumeration_seconds": round(self.seconds + seconds, 3), "runs": self.runs + 1}

    @staticmethod
    def of_summary(prev: dict | None) -> "EarlierRuns | None":
        """Those of an incomplete summary (regions_<domain>.json) a count goes on from."""
        t = (prev or {}).get("times") or {}
        s, r = t.get("enumeration_all_runs"), t.get("runs")
        if nonneg_num(s) is None and isinstance(r, int) and r >= 1:
            return EarlierRuns(float(s), r)
        first_run = ((prev or {}).get("stats") or {}).get("patterns_at_start") == 0
        if nonneg_num(t.get("enumeration")) is None and first_run:
            return EarlierRuns(float(t["enumeration"]), 1)          # a first run, written before these fields
        return None

    @staticmethod
    def of_checkpoint(ck: dict) -> "EarlierRuns | None":
        s, r = ck.get("enumeration_seconds"), ck.get("runs")
        return EarlierRuns(float(s), int(r)) if s is not None and r is not None else None


def _log(msg: str, quiet: bool = False) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


class _Progress:
    """Patterns found, elapsed time and rate on stderr (tqdm), or nothing when disabled."""

    def __init__(self, enabled: bool, start: int = 0):
        self.bar = None
        if enabled:

            self.bar = tqdm(desc="patterns", unit=" pat", initial=start, file=sys.stderr, mininterval=0.5,
                            dynamic_ncols=True, leave=False)

    def __call__(self, count: int) -> None:
        if self.bar is not None and count > self.bar.n:
            self.bar.update(count - self.bar.n)

    def expect(self, total: float | None) -> None:
        """Show an estimated total (a percentage and tqdm's time left); None keeps the bar as it is."""
        if self.bar is not None and total is not None:
            self.bar.total = max(int(round(total)), self.bar.n)
            self.bar.set_postfix_str("total estimated", refresh=False)
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _contradicting(rows: np.ndarray, fixed_bits: np.ndarray) -> np.ndarray:
    """Indices of the patterns (rows) that contradict a stable unit."""
    m = fixed_bits >= 0
    if rows.size == 0 or not m.any():
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.any(rows[:, m] != fixed_bits[m].astype(np.uint8), axis=1))


def _refuse_contradicting(path, n_bad: int, n_all: int, first: int) -> None:
    raise ToolError(f"--resume {path}: {n_bad} of its {n_all} patterns contradict the stable units of this "
                    f"net on this domain (first: pattern {first}); it was not written for this net/domain/tol — "
                    f"remove it or run without --resume")


def check_known_patterns(known: np.ndarray, fixed_bits: np.ndarray, path) -> None:
    """Refuse resumed patterns that contradict a stable unit (they cannot be patterns of this net/domain)."""
    bad = _contradicting(known, fixed_bits)
    if bad.size:
        _refuse_contradicting(path, bad.size, len(known), bad[0] + 1)


def scan_resumed_patterns(path, layer_sizes, fixed_bits: np.ndarray, watch=None,
                          max_bytes: int | None = None) -> ResumedPatterns:
    """The patterns an ordered count (the lp backend) wrote to `path` (its first max_bytes), read in blocks
    and never held: their number, the last one's key and the `watch`ed patterns among them. Checks each
    block as check_known_patterns does and that the patterns increase strictly (the order of the lp
    backend, which continues after the last one); ToolError naming the file otherwise."""
    count, n_bad, first_bad = 0, 0, 0
    last, hits, watched = None, set(), None
    for rows in iter_pattern_blocks(path, layer_sizes, max_bytes=max_bytes):
        bad = _contradicting(rows, fixed_bits)
        if bad.size:
            first_bad = first_bad or count + int(bad[0]) + 1
            n_bad += bad.size
        packed = np.ascontiguousarray(np.packbits(rows, axis=1))     # the keys of src.core.patterns, in rows
        nbytes = packed.shape[1]
        keys = packed.view(f"S{nbytes}").reshape(-1)                 # compare as bytes: lexicographic order
        worse = np.flatnonzero(keys[1:] <= keys[:-1]) + 1            # index in the block of a row not after its own
        if last is not None and packed[0].tobytes() <= last:
            worse = np.zeros(1, np.int64)
        if worse.size:
            at = count + int(worse[0]) + 1
            raise ToolError(f"--resume {path}: pattern {at} does not come after the one before it (the lp "
                            f"backend writes them strictly increasing); this file was not written by the count "
                            f"its frontier belongs to — remove it or run without --resume")
        if watch is not None and len(watch):
            if watched is None:
                watched = np.array(sorted(row_keys(watch)), f"S{nbytes}")
            for i in np.flatnonzero(np.isin(keys, watched)):
                hits.add(packed[i].tobytes())
        last = packed[-1].tobytes()
        count += len(rows)
    if n_bad:
        _refuse_contradicting(path, n_bad, count, first_bad)
    return ResumedPatterns(count=count, last=last, hits=frozenset(hits))


def _continues_in_order(resume_state: dict | None, backend: str) -> bool:
    """True when a resumed count goes on from the frontier of an ordered backend (`ordered_output`: the lp
    backend) with that backend: the patterns found so far then need not be read into memory
    (scan_resumed_patterns)."""
    first = backend_candidates(backend)[0]
    if resume_state is None or resume_state.get("frontier") is None or resume_state.get("backend") not in (None, first):
        return False
    try:
        klass = backend_class(first)
        klass.check_available()
    except ToolError:
        return False
    return klass.ordered_output


def _continue_in_partial(pattern_path: Path, partial_path: Path) -> int:
    """Copy the pattern file of a finished, incomplete count to the partial file that the resumed count
    appends to (the pattern file stays until the new one replaces it); returns the partial file's size."""
    with contextlib.suppress(FileNotFoundError):
        partial_path.unlink()
    shutil.copyfile(pattern_path, partial_path)
    with open(partial_path, "rb+") as fh:
        end = fh.seek(0, 2)
        if end and (fh.seek(end - 1), fh.read(1))[1] != b"\n":
            fh.write(b"\n")
        fh.flush()
        os.fsync(fh.fileno())
        return fh.tell()


def prev_complete(json_path, n_patterns: int, sha, tol: float, domain_name: str) -> bool:
    """True if json_path records a complete count of n_patterns for these weights, tol and domain."""
    if not Path(json_path).exists():
        return False
    prev = read_regions(json_path)
    return (prev.get("complete") is True and prev.get("count") == n_patterns
            and record_is_current(prev, sha, tol=tol, domain=domain_name))


def count_status(weights, box: Box, tol: float = DEFAULT_TOL, out_dir=None) -> tuple[str, Path]:
    """(status, summary path) of an earlier count with these arguments.

    status: "complete" (its summary says complete for these very weights (sha256), tol and domain,
    and the pattern file holds that many patterns, or the count kept none: --count-only), "incomplete"
    (a resumable earlier count of these weights: its summary, or the checkpoint of a count killed before it
    wrote one), "stale" (outputs of other weights or another tol) or "none".
    """
    weights = Path(weights)
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    json_path = out_dir / regions_file_name(box.name)
    pattern_path = out_dir / pattern_file_name(box.name)
    if not json_path.exists():
        ck_path = out_dir / checkpoint_file_name(box.name)
        current = output_is_current(ck_path, weights, tol=tol, domain=box.name, read=read_checkpoint)
        return ("incomplete" if current else "none"), json_path
    try:
        prev = read_regions(json_path)
    except ToolError:
        return "stale", json_path
    sha = file_sha256(weights)
    if not record_is_current(prev, sha, tol=tol):
        return "stale", json_path
    if prev.get("complete") is True and _is_count_only(prev) and prev_complete(json_path, prev["count"], sha, tol,
                                                                               box.name):
        return "complete", json_path
    if (prev.get("complete") is True and pattern_path.exists()
            and prev_complete(json_path, count_pattern_lines(pattern_path), sha, tol, box.name)):
        return "complete", json_path
    return "incomplete", json_path


def incomplete_count_state(weights, box: Box, tol: float = DEFAULT_TOL, out_dir=None, net: ReluNet | None = None,
                           flag: str = "--remaining") -> dict:
    """Where an incomplete lp count of these weights, tol and domain stands, read from its files (nothing is
    written): its checkpoint (a count running now, or killed) or else its frontier_<domain>.json and summary
    (a count stopped by a time limit or Ctrl-C). Returns {"found": patterns found so far, "frontier": the
    prefixes whose subtrees hold exactly the patterns not found yet, "source": the file read, "backend",
    "written", "started", "patterns_at_start"} (the last three from a checkpoint: None when unknown).
    One ToolError naming `flag` when there is no such count, when it is complete, or when its state has no
    frontier (a MILP backend's checkpoint holds patterns only)."""
    weights = Path(weights)
    net = load_net(weights) if net is None else net
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    sha = file_sha256(weights) if weights.is_file() else None
    ck_path = out_dir / checkpoint_file_name(box.name)
    fr_path = out_dir / frontier_file_name(box.name)
    json_path = out_dir / regions_file_name(box.name)
    if ck_path.exists():
        ck = _count_state_of(ck_path, read_checkpoint(ck_path), net, sha, tol, box.name, flag)
        if ck.get("frontier") is None:
            raise ToolError(f"{flag} {ck_path}: the count's backend ({ck['backend']}) keeps no search frontier "
                            f"(only --backend lp does), so what it has left cannot be estimated; --estimate N "
                            f"estimates the whole count")
        return {"found": int(ck["patterns"]), "frontier": list(ck["frontier"]), "source": ck_path,
                "backend": ck["backend"], "written": ck.get("written"), "started": ck.get("started"),
                "patterns_at_start": ck.get("patterns_at_start")}
    prev = read_regions(json_path) if json_path.exists() else None
    if prev is not None and record_is_current(prev, sha, tol=tol, domain=box) and prev.get("complete") is True:
        raise ToolError(f"{flag}: the count in {json_path} is complete ({prev['count']} regions); nothing is left "
                        f"to estimate")
    if not fr_path.exists():
        raise ToolError(f"{flag}: no incomplete lp count of {weights} on {box.name} in {out_dir} (neither "
                        f"{ck_path.name} nor {fr_path.name}); start one with count_linear_regions.py "
                        f"--checkpoint-every S, or use --estimate N for the whole count")
    fr = _count_state_of(fr_path, read_frontier(fr_path), net, sha, tol, box.name, flag)
    if prev is None or not record_is_current(prev, sha, tol=tol, domain=box):
        raise ToolError(f"{flag} {fr_path}: {json_path.name} beside it is missing or of another count, so the "
                        f"number of patterns found before the frontier is unknown")
    return {"found": int(prev["count"]), "frontier": list(fr["frontier"]), "source": fr_path,
            "backend": fr.get("backend", "lp"), "written": None, "started": None, "patterns_at_start": None}


def check_count_settings(tol, time_limit, threads, workers=1, checkpoint_every=None) -> None:
    if checkpoint_every is not None and not (math.isfinite(checkpoint_every) and checkpoint_every >= 0):
        raise ToolError(f"--checkpoint-every must be >= 0 seconds (0 = off), got {checkpoint_every}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise ToolError(f"--tol must be a finite number >= 0, got {tol}")
    if time_limit is not None and not (math.isfinite(time_limit) and time_limit > 0):
        raise ToolError(f"--time-limit must be > 0 seconds, got {time_limit}")
    if int(threads) < 1:
        raise ToolError(f"--threads must be >= 1, got {threads}")
    if int(workers) < 1:
        raise ToolError(f"--workers must be >= 1, got {workers}")


DATA_SHARE = 0.5    # at most this share of --time-limit goes to the data pass; the search gets the rest


def data_deadline(t_start: float, time_limit: float | None) -> float | None:
    """When the data pass must stop: it only adds a lower bound and stability witnesses, so under a
    time limit it may use at most DATA_SHARE of it (a loaded machine or a huge data set never leaves
    the search itself without time)."""
    return None if time_limit is None else t_start + DATA_SHARE * time_limit


def count_data(net: ReluNet, box: Box, tol: float, data_root=None, n_samples: int = N_DATA_SAMPLES, seed: int = 0,
               mnist: bool | None = None, deadline: float | None = None):
    """(DataPatterns of the MNIST images in the box and of n_samples seeded samples, notes).

    A 784-input net uses the MNIST training and test images that lie in the box when MNIST can
    be read (offline); otherwise, and for other nets, only the samples. mnist=False: only the samples.
    """
    notes = []
    try:
        points = data_points_for_box(box, data_root, n_samples=n_samples, seed=seed, mnist=mnist)
    except ToolError as e:
        points = data_points_for_box(box, data_root, n_samples=n_samples, seed=seed, mnist=False)
        notes.append(f"MNIST not used for data-first stability ({e})")
    data = data_patterns(net, points, tol, box, deadline=deadline)
    if data.stopped_by_time_limit:
        notes.append(f"the data pass used its share of the time limit ({DATA_SHARE:.0%}) and stopped after "
                     f"{data.n_points} points (sound: fewer patterns certified by data)")
    return data, notes


def count_run(weights, box: Box | None = None, *, backend: str = "auto", tol: float = DEFAULT_TOL,
                  time_limit: float | None = None, threads: int = 1, resume: bool = False, out_dir=None,
                  exact_stability: bool = False, progress: bool = True, net: ReluNet | None = None,
                  workers: int = 1, checkpoint_every: float | None = 60.0, ray_address: str | None = None,
                  data_root=None, data_samples: int = N_DATA_SAMPLES, mnist: bool | None = None,
                  keep_patterns: bool = True) -> dict:
    """Enumerate every feasible activation pattern of the net in `weights` on `box` (default [0,1]^n0).

    Returns the summary written to regions_<domain>.json (docs/formats.md). A time limit (wall
    clock for the whole count) or Ctrl-C ends the search early: what was found is written and the
    summary says complete: false (and "interrupted": true after Ctrl-C). resume=True continues from
    the patterns already in the pattern file (they become no-good cuts / are skipped).
    Every `checkpoint_every` seconds (0 or None: never) the patterns so far and the backend's
    frontier are made durable in checkpoint_<domain>.json, so that resume=True after the process
    was killed (SIGKILL included) loses at most that interval. workers > 1 or ray_address (or $RAY_ADDRESS)
    runs the lp search on Ray (src/parallel.py); an unreachable address fails before anything is written.
    keep_patterns=False (--count-only) counts with the lp backend without writing the pattern file: the
    checkpoint records the count, the last pattern, the data patterns found and the frontier (kilobytes where
    10^8 patterns take 6 GB), and an incomplete count keeps it for resume=True, which continues from it (or from
    the checkpoint of a count that kept its patterns: its partial file is read once, then removed).

    Data first: the patterns of the MNIST images in the box (784-input nets) and of data_samples
    seeded samples certify units unstable without an LP and give `lower_bound` (patterns known
    feasible) and `data_patterns`; `upper_bound` is Theorem 1 of Serra et al. (2018) and 2^unstable
    (src/counting/count_bounds.py). The time limit bounds every phase.
    """
    t_start = time.perf_counter()
    check_count_settings(tol, time_limit, threads, workers, checkpoint_every)
    check_address(ray_address)
    weights = Path(weights)
    if net is None:
        net = load_net(weights)
    box = count_domain(net, box, source=weights)
    if not keep_patterns:
        if backend not in ("auto", "lp"):
            raise ToolError(f"--count-only needs --backend lp (its ordered walk and frontier let the checkpoint "
                            f"stand in for the pattern file), not --backend {backend}")
        backend = "lp"
    if backend not in FALLBACK_CHOICES:
        get_backend(backend)          # unknown name / missing package: fail before any work
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    pattern_path = out_dir / pattern_file_name(box.name)
    json_path = out_dir / regions_file_name(box.name)
    frontier_path = out_dir / frontier_file_name(box.name)
    checkpoint_path = out_dir / checkpoint_file_name(box.name)
    partial_path = out_dir / partial_pattern_file_name(box.name)
    sha = file_sha256(weights) if weights.is_file() else None
    notes: list[str] = []
    for p in (pattern_path, json_path, frontier_path, checkpoint_path):
        remove_stale_temps(p)

    # ---- resume: where the patterns already found are (read after the stable units are known) -----------
    known_path, known_bytes = None, None     # the file and its checkpointed length
    resume_state = None
    resume_bytes = None
    resumed = None                           # the patterns before the frontier, when they are not read into memory
    earlier = EarlierRuns(0.0, 0) if not resume else None
    ck = None
    prev = read_regions(json_path) if resume and json_path.exists() else None    # the earlier run's summary
    if resume:
        if (_is_count_only(prev) and prev.get("complete") is True
                and record_is_current(prev, sha, tol=tol, domain=box.name)):
            _log(f"{json_path.name}: already complete ({prev['count']} regions, counted with --count-only); "
                 f"nothing to resume", not progress)
            return prev
    if resume and checkpoint_path.exists():
        ck = _usable_checkpoint(checkpoint_path, partial_path, net, sha, tol, box.name, keep_patterns)
        if ck is not None:
            earlier = EarlierRuns.of_checkpoint(ck)
            if ck.get("frontier") is not None:
                resume_state = {"backend": ck["backend"], "frontier": ck["frontier"]}
            if ck.get("bytes") is not None:
                known_path, known_bytes = partial_path, ck["bytes"]
                resume_bytes = ck["bytes"]
            elif ck["frontier"] is not None:
                resumed = checkpointed_patterns(ck)
            elif ck["patterns"]:
                raise ToolError(f"--resume {checkpoint_path}: it records {ck['patterns']} patterns but no frontier "
                                f"to continue from; remove it and count again")
            _log(f"resuming from the checkpoint {checkpoint_path.name} of {ck['written']} "
                 f"({ck['patterns']} patterns)", not progress)
    if not resume:
        for p in (checkpoint_path, partial_path):      # a fresh count discards an earlier one's state
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
    elif ck is None:
        if pattern_path.exists():
            sizes = read_pattern_header(pattern_path)
            if sizes != net.layer_sizes:
                raise ToolError(f"--resume {pattern_path}: the pattern file is for a net with n = {sizes}, but "
                                f"{weights} has n = {net.layer_sizes}; remove it or run without --resume")
            if prev is not None:
                _count_state_of(json_path, prev, net, sha, tol, box.name)
            earlier = EarlierRuns.of_summary(prev)
            if frontier_path.exists():
                resume_state = _count_state_of(frontier_path, read_frontier(frontier_path), net, sha, tol, box.name)
            elif prev is not None and prev.get("complete") is True and prev_complete(   # counts only then
                    json_path, count_patterns(pattern_path, net.layer_sizes), sha, tol, box.name):
                _log(f"{json_path.name}: already complete ({prev['count']} regions); nothing to resume", not progress)
                return prev
            known_path = pattern_path
            _log(f"resuming from {pattern_path}", not progress)
        else:
            earlier = EarlierRuns(0.0, 0)
            _log(f"--resume: no {pattern_path.name} in {out_dir} yet; starting from scratch", not progress)
    # an ordered backend continuing from its frontier never needs the known patterns in memory
    streamed = known_path is not None and _continues_in_order(resume_state, backend)

    # ---- data, bounds and stable units ----------------------------------------------------------
    t0 = time.perf_counter()
    deadline = None if time_limit is None else t_start + time_limit
    data, data_notes = count_data(net, box, tol, data_root, data_samples, mnist=mnist,
                                  deadline=data_deadline(t_start, time_limit))
    notes += data_notes
    candidates = backend_candidates(backend)
    stability = count_stability(net, box, backend=backend, tol=tol, exact=exact_stability, progress=progress,
                                data=data, deadline=deadline)
    if stability.stopped_by_time_limit:
        notes.append("the time limit cut the stability analysis short: some units left open are stable "
                     "(sound, but more patterns to search)")
    write_stability_files(out_dir, stability, box, weights, sha=sha)
    t_bounds = time.perf_counter() - t0
    fixed = stability.fixed_bits()
    known = None
    watch = None if data is None or not data.keys else data.patterns()
    if streamed:
        resumed = scan_resumed_patterns(known_path, net.layer_sizes, fixed, watch, max_bytes=known_bytes)
        if resume_bytes is None and keep_patterns:   # a finished, incomplete count's file: the new one continues a copy
            resume_bytes = _continue_in_partial(pattern_path, partial_path)
        _log(f"{resumed.count} patterns found before, continuing after the last one", not progress)
    elif known_path is not None and not keep_patterns:
        raise ToolError(f"--resume --count-only {known_path}: the count that wrote it left no lp frontier to continue "
                        f"from, so its patterns would have to be kept in memory and skipped; resume it without "
                        f"--count-only, or count again")
    elif known_path is not None:
        known = read_patterns(known_path, net.layer_sizes, allow_empty=True, max_bytes=known_bytes)
        check_known_patterns(known, fixed, known_path)
    problem = EnumerationProblem(net, box, stability, tol)
    model_size = formulation_size(net, stability, tol)      # only MILP backends build the MILP itself
    counts = stability.counts()
    _log(f"{net!r} on {box.name}: bounds in {t_bounds:.2f}s, unstable units per layer "
         f"{[c['unstable'] for c in counts]} of {net.hidden_sizes}; MILP {model_size['variables']} variables, "
         f"{model_size['constraints']} constraints, {model_size['binaries']} binaries", not progress)

    # ---- enumeration ----------------------------------------------------------------------------
    bar = _Progress(progress, resumed.count if resumed is not None else 0 if known is None else len(known))
    writer = PatternWriter(pattern_path, net.layer_sizes, partial=partial_path, resume_bytes=resume_bytes) \
        if keep_patterns else None
    interrupted = False
    t_enum0 = time.perf_counter()
    try:
        sink = PatternSink(writer, known, progress=bar, write_known=resume_bytes is None, flat_memory=True,
                           watch=watch, resumed=resumed)
        forecast = TotalForecast(net, box, stability, tol) if progress else None
        ckpt = Checkpointer(checkpoint_path, writer, sink, checkpoint_every or None,
                            {"weights_sha256": sha, "tol": float(tol), "domain": box.name,
                             "layer_sizes": net.layer_sizes},
                            on_saved=None if forecast is None else lambda fr, n: bar.expect(forecast(fr, n)),
                            earlier=earlier)

        def prepare(name, be, state):
            """The checkpoint hooks of this backend; the first checkpoint is the state it starts from."""
            ckpt.backend = name
            if checkpoint_every:
                ckpt.save(None if state is None else state.get("frontier"))
                if not keep_patterns:       # the checkpoint now stands in for the partial file of a resumed count
                    partial_path.unlink(missing_ok=True)
            sink.on_new = None if be.frontier_checkpoints else ckpt.on_new_pattern
            return {"checkpoint": ckpt} if be.frontier_checkpoints else {}

        def fallback(msg):
            nonlocal bar
            bar.close()
            print(msg, file=sys.stderr, flush=True)
            bar = _Progress(progress, len(sink))
            sink.progress = bar

        left = None if deadline is None else max(0.0, deadline - time.perf_counter())
        result, used, fell = run_backends(problem, sink, backend, time_limit=left, threads=threads,
                                          resume_state=resume_state, prepare=prepare, on_fallback=fallback,
                                          options=_parallel_options(workers, ray_address))
        notes += fell
    except KeyboardInterrupt:
        interrupted = True
        result = EnumerationResult(complete=False, stats={"status": "interrupted"}, interrupted=True)
        used = ckpt.backend or (candidates[0] if len(candidates) == 1 else "auto")
    except ClusterLost as e:           # the last node or this driver's raylet: one line, the checkpoint kept
        bar.close()
        if writer is not None:
            writer.abort(e)
        if getattr(e, "checkpoint_saved", False):
            what = (f"; {checkpoint_path} records the {len(sink)} patterns found so far and the subtrees left: "
                    f"rerun with --resume to continue (with or without Ray)")
        elif ckpt.saves:
            what = f"; rerun with --resume to continue from {checkpoint_path} (its last checkpoint)"
        else:
            what = "; no checkpoint was written: rerun the count"
        raise ClusterLost(e.cause, e.log_path, what) from None
    except BaseException as e:
        bar.close()
        if writer is not None:
            writer.abort(e)
        raise
    sink.on_new = None
    bar.close()
    t_enum = time.perf_counter() - t_enum0
    interrupted = interrupted or result.interrupted
    complete = bool(result.complete) and not interrupted

    # ---- frontier, patterns, summary (in this order: a kill between two steps leaves a resumable state)
    if not complete and result.frontier is not None and not keep_patterns:
        ckpt.on_saved = None
        ckpt.save(result.frontier, held=result.held)    # --count-only: the state --resume continues from
    elif not complete and result.frontier is not None:
        write_frontier(frontier_path, {"backend": used, "weights_sha256": sha, "tol": tol,
                                          "layer_sizes": net.layer_sizes, "frontier": result.frontier})
    if (complete or not keep_patterns) and frontier_path.exists():
        frontier_path.unlink()
    if writer is not None:
        writer.close()
    held = result.held if not keep_patterns and not complete else None     # counted by the checkpoint too
    count = len(sink) + (held.count if held is not None else 0)
    if not keep_patterns:
        notes.append("counted with --count-only: no pattern file kept")
    if not complete:
        why = "interrupted (Ctrl-C)" if interrupted else (
            "time limit reached" if time_limit is not None else f"solver stopped ({result.stats.get('status')})")
        again = "--resume --count-only" if not keep_patterns else "--resume"
        notes.append(f"incomplete: {why}; {count} patterns so far; rerun with {again} to continue")
    stats = dict(result.stats)
    n_new = count - sink.n_known
    stats.update(patterns_at_start=int(sink.n_known), new_patterns=int(n_new), threads=int(threads),
                 time_limit=time_limit,
                 ms_per_region=round(1000.0 * t_enum / n_new, 4) if n_new else None)
    extra = _data_patterns_missing(data, sink, held)
    if complete and extra:
        raise RuntimeError(f"{extra} patterns certified by data points were not enumerated by backend {used}: "
                           f"a bug in the backend (please report it with {weights})")
    summary = {
        "weights": str(weights), "weights_sha256": sha, "layer_sizes": net.layer_sizes, "domain": box.to_json(),
        "pattern_file": pattern_path.name if keep_patterns else None, "count": int(count), "complete": complete, "backend": used,
        "tol": float(tol),
        "lower_bound": int(count + extra), "upper_bound": upper_bounds(net, stability),
        "data_patterns": data.to_json(),
        "times": {"bounds": round(t_bounds, 4), "enumeration": round(t_enum, 4),
                  "total": round(time.perf_counter() - t_start, 4),
                  **({} if earlier is None else _all_runs(earlier.including(t_enum)))},
        "stable_units": [{"layer": l + 1, **c} for l, c in enumerate(counts)],
        "exact_stability": bool(stability.exact),
        "model_size": model_size, "stats": stats, "note": "; ".join(notes),
    }
    if interrupted:
        summary["interrupted"] = True
    summary["stats"]["checkpoints"] = ckpt.saves
    write_regions(json_path, summary)
    if complete or keep_patterns:
        ckpt.remove()
    if not keep_patterns:               # an earlier count's patterns: the summary now says there are none
        for p in (partial_path, pattern_path):
            p.unlink(missing_ok=True)
    return summary


# ---- steps that write a record beside a count, without enumerating (--estimate, --mipbound) -----------------
class SideRun:
    """What a step that writes one record into regions_<domain>.json without enumerating (`--estimate N`,
    `--mipbound`) computes first, as a count does: the checked settings and domain, the data patterns, the
    stable units (written like a count's: stable_units_<domain>.json, inactive_<domain>.dat)."""

    def __init__(self, weights, box: Box | None = None, *, tol: float = DEFAULT_TOL, time_limit: float | None = None,
                 out_dir=None, net: ReluNet | None = None, exact_stability: bool = False, progress: bool = True,
                 data_root=None, data_samples: int | None = None, mnist: bool | None = None, backend: str = "auto",
                 threads: int = 1):
        self.t_start = time.perf_counter()
        check_count_settings(tol, time_limit, threads=threads)
        self.weights = Path(weights)
        self.net = load_net(self.weights) if net is None else net
        self.box = count_domain(self.net, box, source=self.weights)
        self.tol = float(tol)
        self.out_dir = Path(out_dir) if out_dir is not None else self.weights.parent
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.json_path = self.out_dir / regions_file_name(self.box.name)
        self.sha = file_sha256(self.weights) if self.weights.is_file() else None
        self.deadline = None if time_limit is None else self.t_start + time_limit
        self.data, self.notes = count_data(self.net, self.box, tol, data_root,
                                           N_DATA_SAMPLES if data_samples is None else data_samples, mnist=mnist,
                                           deadline=data_deadline(self.t_start, time_limit))
        self.stability = count_stability(self.net, self.box, backend=backend, tol=tol, exact=exact_stability,
                                         progress=progress, data=self.data, deadline=self.deadline)
        write_stability_files(self.out_dir, self.stability, self.box, self.weights, sha=self.sha)
        self.t_bounds = time.perf_counter() - self.t_start

    def write(self, key: str, record: dict, found: set, backend: str, note: str) -> dict:
        """Write `record` under `key` into regions_<domain>.json: merged into the summary there when it is current
        (same weights, tol and domain), else into a new summary whose `count` is the number of distinct patterns
        `found` (keys, each certified feasible: a lower bound) with `complete: false`, `backend`, and `note` on
        why there is no enumeration. No pattern file. Returns the summary written."""
        prev = None
        if self.json_path.exists():
            try:
                prev = read_regions(self.json_path)
            except ToolError:
                prev = None
        if prev is not None and record_is_current(prev, self.sha, tol=self.tol, domain=self.box.name):
            summary = dict(prev, **{key: record})
        else:
            summary = {
                "weights": str(self.weights), "weights_sha256": self.sha, "layer_sizes": self.net.layer_sizes,
                "domain": self.box.to_json(), "count": int(len(found)), "complete": False, "backend": backend,
                "tol": self.tol, "lower_bound": lower_bound(self.data, found),
                "upper_bound": upper_bounds(self.net, self.stability), "data_patterns": self.data.to_json(),
                "times": {"bounds": round(self.t_bounds, 4), "enumeration": 0.0,
                          "total": round(time.perf_counter() - self.t_start, 4)},
                "stable_units": [{"layer": l + 1, **c} for l, c in enumerate(self.stability.counts())],
                "exact_stability": bool(self.stability.exact), "stats": {}, "note": "; ".join(self.notes + [note]),
                key: record,
            }
        write_regions(self.json_path, summary)
        return summary


def _parallel_options(workers: int, ray_address) -> dict:
    """The backend options --workers / --ray-address ask for (none by default: every backend runs)."""
    out = {}
    if int(workers) > 1:
        out["workers"] = int(workers)
    if ray_address:
        out["ray_address"] = ray_address
    return out


def _data_patterns_missing(data, sink: PatternSink, held=None) -> int:
    """How many data-certified patterns the sink does not hold (nor `held`, walk_driver.HeldPatterns)."""
    if data is None or not data.keys:
        return 0
    if held is not None and held.count:
        hits = sink.ordered_state(held.packed).hits
        return int(sum(1 for k in row_keys(data.patterns()) if k not in hits))
    return int(sum(1 for p in data.patterns() if p not in sink))


def _count_state_of(path: Path, state: dict, net: ReluNet, sha, tol, domain_name, flag: str = "--resume") -> dict:
    """`state`, read from a count's checkpoint, frontier file or summary at `path`, checked to belong to these
    weights, tol and domain (else one ToolError naming `flag` and the file)."""
    mismatch = record_mismatch(state, sha, tol=tol, domain=domain_name, layer_sizes=net.layer_sizes, missing_ok=True)
    if mismatch is None:
        return state
    kind, reason = mismatch
    if kind == "domain":
        raise ToolError(f"{flag} {path}: {reason}")
    if flag != "--resume":
        fix = "give the weights, --tol and domain of its count"
    else:
        fix = "use the same tol or run without --resume" if kind == "tol" else "remove it or run without --resume"
    raise ToolError(f"{flag} {path}: {reason}; {fix}")


def _usable_checkpoint(checkpoint_path: Path, partial_path: Path, net: ReluNet, sha, tol, domain_name,
                       keep_patterns: bool = True) -> dict | None:
    """The checkpoint of a killed count, when it belongs to these weights, tol and domain and its
    partial pattern file holds what it records (a --count-only checkpoint has none); None (with a notice)
    when it cannot be used."""
    ck = _count_state_of(checkpoint_path, read_checkpoint(checkpoint_path), net, sha, tol, domain_name)
    if ck.get("bytes") is None:
        if keep_patterns:
            raise ToolError(f"--resume {checkpoint_path}: this count keeps no pattern file (it was started with "
                            f"--count-only); resume it with --count-only, or remove the checkpoint and count again")
        return ck
    size = partial_path.stat().st_size if partial_path.exists() else -1
    if size < ck["bytes"]:
        print(f"notice: {checkpoint_path.name} refers to {ck['bytes']} bytes of {partial_path.name}, but "
              f"{'it is missing' if size < 0 else f'it has {size}'}; resuming from the pattern file instead",
              file=sys.stderr)
        return None
    return ck


def bounds_text(summary: dict) -> str:
    """`lower L ≤ regions ≤ upper U (…)` with the data patterns, when the summary has them."""
    if "upper_bound" not in summary:
        return ""
    ub = summary["upper_bound"]
    up = ub["upper_bound"]
    up_txt = up["value"] if len(up["value"]) <= 12 else f"10^{up['log10']:.1f}"
    data = summary.get("data_patterns") or {}
    src = ", ".join(f"{d['source']} {d['distinct_patterns']}" for d in data.get("sources", []))
    return (f"bounds: {summary['lower_bound']} <= regions <= {up_txt} (lower: patterns certified by the search and "
            f"by data points; upper: min of Theorem 1 = 10^{ub['theorem1']['log10']:.1f} and "
            f"2^unstable = 10^{ub['two_pow_unstable']['log10']:.1f}); data patterns: {src or 'none'}")


def _all_runs(spent: dict) -> dict:
    """The summary's "times" fields over every run of a resumed count."""
    return {"enumeration_all_runs": spent["enumeration_seconds"], "runs": spent["runs"]}


def final_line(summary: dict, out_dir=None) -> str:
    """The last line the CLI prints: the count, and whether it is complete (else the bounds known)."""
    name = summary["pattern_file"] or regions_file_name(summary["domain"]["name"])     # --count-only: no patterns
    where = name if out_dir is None else str(Path(out_dir) / name)
    t = summary["times"]["total"]
    runs = summary["times"].get("runs", 1)
    if summary["complete"]:
        over = f"; {summary['times']['enumeration_all_runs']:.2f}s of enumeration in {runs} runs" if runs > 1 else ""
        return (f"{summary['count']} linear regions (complete, backend {summary['backend']}, {t:.2f}s{over}): "
                f"{where}")
    why = "interrupted" if summary.get("interrupted") else "stopped early"
    b = bounds_text(summary)
    if summary["pattern_file"] is None:
        return (f"INCOMPLETE ({why}): {summary['count']} patterns found so far in {t:.2f}s (--count-only: not kept, "
                f"the checkpoint beside {where} records where the count stands); rerun with --resume --count-only "
                f"to continue" + (f"; {b}" if b else ""))
    return (f"INCOMPLETE ({why}): {summary['count']} patterns found so far in {t:.2f}s, written to {where}; "
            f"rerun with --resume to continue" + (f"; {b}" if b else ""))
