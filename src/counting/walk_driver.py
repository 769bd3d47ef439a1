"""Driving the exact region-tree walk (src/counting/tree_walk.py): time limits, Ctrl-C, checkpoints, and time slices of
prefix subtrees on Ray workers (src/parallel.py) with dynamic splitting.

The walk (docs/lp-engine.md) emits every feasible pattern in lexicographic order. A time limit, a stop
request or Ctrl-C stops it and returns the unexplored frontier: a list of prefixes ("0110..." over the
first k hidden units, pattern order) whose subtrees hold exactly the patterns not yet emitted. Passing
it back as `roots` continues the search. With workers > 1 (or a Ray cluster) workers walk prefix
subtrees in time slices and hand back the unexplored rest, which is queued again (dynamic splitting);
the patterns are emitted in lexicographic order (the order of the sequential walk) whatever the number
of workers.
"""
from __future__ import annotations

import os
import signal
import socket
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np

from src.core.fault_hooks import hold_point, pause_point
from src.core.patterns import check_prefixes
from src.counting.tree_walk import EngineOptions, make_engine
from src.parallel import ClusterLost, Session, current_node


def merge_stats(total: dict, part: dict) -> dict:
    for k, v in part.items():
        total[k] = total.get(k, 0) + v
    return total


# ---- the driver: sequential or parallel, time limit, Ctrl-C -------------------------------------------


@dataclass
class SearchOutcome:
    complete: bool
    frontier: list
    stats: dict
    interrupted: bool = False
    tasks: int = 1
    held: "HeldPatterns | None" = None      # a parallel walk that stopped: what it found but had not emitted


@dataclass(frozen=True)
class HeldPatterns:
    """What a parallel walk has found but not emitted, held behind an earlier subtree still being walked (the
    emission is lexicographic): the patterns (packbits rows, one array per finished slice) and the prefixes
    of every subtree not finished. With the patterns emitted, they are the whole tree: `frontier` holds
    exactly the patterns neither emitted nor in `packed`. A count that keeps no pattern file (--count-only)
    counts these now, so that a stop loses no finished slice; one that writes its patterns in order cannot."""
    frontier: list
    packed: list

    @property
    def count(self) -> int:
        return sum(len(p) for p in self.packed)


class _SigintFlag:
    """While active (main thread only), Ctrl-C sets a flag (and an optional event) instead of raising."""

    def __init__(self, event=None):
        self.hit = False
        self.event = event
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True
        if self.event is not None:
            self.event.set()

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGINT, self._old)
        return False


class _CheckpointSignal:
    """While active (main thread only), SIGUSR1 asks for a checkpoint now (`kill -USR1 PID`, or Slurm's
    `--signal=USR1@SECONDS` before a job's end); it also ends a kill test's pause (src/core/fault_hooks.py)."""

    def __init__(self):
        self.hit = False
        self._old = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGUSR1"):
            self._old = signal.signal(signal.SIGUSR1, self._handler)
        return self

    def _handler(self, signum, frame):
        self.hit = True

    def take(self) -> bool:
        hit, self.hit = self.hit, False
        return hit

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGUSR1, self._old)
        return False


# ---- parallel: time slices of prefix subtrees (src/parallel.py runs them), dynamic splitting ----------
SLICE_MIN = 0.1          # seconds of a slice while fewer subtrees wait than there are workers (split fast)

SLICE_SHORT = 0.5        # ... while fewer than 4 per worker wait

SLICE_LONG = 2.0         # ... while more wait (least overhead per pattern)

SLICE_SHARE = 0.02       # ... and never more than this share of the time the count has run (but >= SLICE_MIN):
                         # the last slices, which leave workers idle at the end, stay short in a short count

STOP_WAIT = 60.0         # after a stop, how long running slices may take to hand back their state


def slice_seconds(waiting: int, workers: int, elapsed: float | None = None) -> float:
    """Length of the next slice: short while few subtrees wait (they split into more), long when many do;
    at most SLICE_SHARE of `elapsed` (the seconds the count has run) when given, and never under SLICE_MIN."""
    if waiting < workers:
        return SLICE_MIN
    s = SLICE_SHORT if waiting < 4 * workers else SLICE_LONG
    if elapsed is not None:
        s = min(s, max(SLICE_MIN, SLICE_SHARE * elapsed))
    return s


_ENGINE: dict = {}       # per worker process: the engine of the current problem (token -> CompiledSearch)


def walk_slice(problem, token: str, prefixes: list, seconds: float) -> dict:
    """Walk the subtrees of `prefixes` (in order) for at most `seconds` (checked at node entries) here.

    problem = (net, box, fixed_bits, tol, options); the engine is built once per token and process.
    Returns the patterns found (packbits rows, lexicographic order), the unexplored frontier of the
    subtrees (prefixes in order; empty when they are done), the stats and where and how long it ran.
    A worker whose environment asks for it (RELU_TOOLKIT_PAUSE_AFTER=patterns:K, src/core/fault_hooks.py;
    e.g. set on one node's `ray start`) pauses before handing back a slice of >= K patterns, so that a
    test can kill that node while the slice is in flight. A worker whose environment names a hold file
    (RELU_TOOLKIT_HOLD_WHILE) keeps a slice below the root while that file exists, so that a test can make
    Ray place the next slices on another node.
    """
    eng = _ENGINE.get(token)
    if eng is None:
        _ENGINE.clear()
        eng = _ENGINE[token] = make_engine(*problem)
    found = []
    w0, t0 = time.time(), time.monotonic()
    _, frontier = eng.run(lambda bits: found.append(bits.copy()), roots=list(prefixes), deadline=t0 + seconds)
    pats = np.array(found, np.uint8).reshape(len(found), eng.N)
    pause_point("patterns", len(found))     # kill tests only: a worker whose slice found >= K patterns pauses
    if prefixes != [""]:
        hold_point()                         # kill tests only: hold while $RELU_TOOLKIT_HOLD_WHILE exists
    return {"prefixes": list(prefixes), "packed": np.packbits(pats, axis=1), "n": len(found),
            "frontier": list(frontier), "stats": eng.stats, "seconds": time.monotonic() - t0, "start": w0,
            "pid": os.getpid(), "host": socket.gethostname(), "node": current_node()}


class _Item:
    __slots__ = ("prefix", "state", "packed", "grow", "roots")

    def __init__(self, prefix, state="todo", packed=None, roots=None):
        self.prefix, self.state, self.packed, self.grow = prefix, state, packed, 1.0
        self.roots = roots if roots is not None else [prefix]


class OrderedWork:
    """The unfinished part of a parallel walk: disjoint prefix subtrees in lexicographic order.

    Each item waits (todo), runs, or is done: a done item holds the patterns one slice found below its
    roots; they are emitted once every earlier item is emitted. A finished slice replaces its items (one,
    or a run of consecutive small ones) by the patterns it found followed by its unexplored frontier
    (smaller subtrees, queued in place).
    """

    def __init__(self, roots):
        self.items = [_Item(p) for p in roots]

    def take(self, most: int = 1) -> list:
        """The first waiting item and up to most-1 waiting items right after it (now running); [] if none."""
        for k, it in enumerate(self.items):
            if it.state == "todo":
                group = [it]
                while len(group) < most and k + len(group) < len(self.items) and \
                        self.items[k + len(group)].state == "todo":
                    group.append(self.items[k + len(group)])
                for g in group:
                    g.state = "run"
                return group
        return []

    def waiting(self) -> int:
        return sum(1 for it in self.items if it.state == "todo")

    def split(self, target: int, n_units: int, fixed=None) -> int:
        """While fewer than `target` items wait, replace the shortest waiting prefix by its children (in
        place, so the order stays lexicographic): both bits, or only the stable bit where fixed[j] >= 0 (the
        other child is empty). Nothing is decided here: a child whose region is empty costs its slice one
        LP. Workers that would otherwise wait for a running slice to hand back its frontier get work at
        once. Returns how many items were split."""
        splits = 0
        while self.waiting() < target:
            cands = [(len(it.prefix), k) for k, it in enumerate(self.items)
                     if it.state == "todo" and len(it.prefix) < n_units]
            if not cands:
                break
            _, k = min(cands)
            p = self.items[k].prefix
            j = len(p)
            bits = "01" if fixed is None or fixed[j] < 0 else str(int(fixed[j]))
            self.items[k:k + 1] = [_Item(p + b) for b in bits]
            splits += 1
        return splits

    def _index(self, item) -> int:
        return next(k for k, it in enumerate(self.items) if it is item)

    def release(self, group) -> None:
        """Running items whose slice was abandoned: they wait again, nothing of them is kept."""
        for it in group:
            it.state = "todo"

    def finish(self, group, packed, n: int, frontier) -> None:
        """The slice of `group` (consecutive items) found n patterns (packed) and left `frontier`."""
        roots = [it.prefix for it in group]
        if n == 0 and list(frontier) == roots:        # no progress: the slice was too short
            for it in group:
                it.state = "todo"
            group[0].grow *= 2.0
            return
        new = [_Item(roots[0], "done", packed, roots)] if n else []
        new += [_Item(p) for p in frontier]
        k = self._index(group[0])
        self.items[k:k + len(group)] = new

    def flush(self, emit_packed) -> int:
        """Emit the done items at the front (in order); returns how many pattern rows were emitted."""
        k = 0
        rows = 0
        while k < len(self.items) and self.items[k].state == "done":
            emit_packed(self.items[k].packed)
            rows += len(self.items[k].packed)
            k += 1
        del self.items[:k]
        return rows

    def held(self) -> HeldPatterns:
        """The patterns of the done items (after flush: all held behind an unfinished one) and the prefixes of
        the items not done, in order."""
        return HeldPatterns([it.prefix for it in self.items if it.state != "done"],
                            [it.packed for it in self.items if it.state == "done"])

    def frontier(self) -> list[str]:
        """The prefixes whose subtrees hold exactly the patterns not yet emitted (after flush)."""
        out, cover = [], ()
        for it in self.items:
            if cover and it.prefix.startswith(cover):
                continue
            if it.state == "done":
                out += it.roots
                cover = tuple(it.roots)
            else:
                out.append(it.prefix)
                cover = ()
        return out


def group_size(waiting: int, workers: int) -> int:
    """How many consecutive waiting subtrees one slice takes: one while fewer wait than twice the workers,
    else each worker's share (up to 64): a slice hands back dozens of small sibling subtrees, and one
    round trip each would cost more than their walk (the replay of a 10-minute trace, benchmarks/README.md:
    the median slice of one subtree took 5-16 ms against 7 ms of overhead per slice)."""
    return max(1, min(64, waiting // workers))


def _run_parallel(session, eng, problem, emit, roots, t_end, stop_flag, checkpoint, trace) -> SearchOutcome:
    """The walk as time slices on `session` (src.parallel.Session), emitted in lexicographic order.

    The checkpoint (when given) is saved whenever it is due or SIGUSR1 asks, with the frontier this driver
    holds: the patterns emitted so far and every subtree not yet emitted (running, waiting, or done but held
    back behind an earlier one). When the cluster is lost (src.parallel.ClusterLost: the last node, the
    raylet of this driver's node), the patterns that can be emitted are, the checkpoint is saved once more
    with that frontier, and ClusterLost is raised with `patterns_kept` (patterns before the frontier) and
    `checkpoint_saved` set: nothing but the running slices is lost.
    """
    work = OrderedWork([""] if roots is None else roots)
    t_start = time.monotonic()
    token = uuid.uuid4().hex
    n_units = eng.N
    stats: dict = {}
    running: dict = {}
    slices = 0
    emitted = 0
    ray_nodes: set = set()

    def emit_packed(packed):
        nonlocal emitted
        for row in np.unpackbits(packed, axis=1, count=n_units).astype(np.int8):
            emit(row)
            emitted += 1

    with _SigintFlag() as sig, _CheckpointSignal() as ask:
        stop_at = None
        try:
            data = session.put(problem)
            while True:
                if stop_at is None and (sig.hit or (stop_flag is not None and stop_flag())
                                        or (t_end is not None and time.monotonic() >= t_end)):
                    stop_at = time.monotonic()
                if stop_at is None and len(running) < session.slots:
                    work.split(session.slots - len(running), n_units, eng.fixed)   # no worker waits for a split
                while stop_at is None and len(running) < session.slots:
                    waiting = work.waiting()
                    group = work.take(group_size(waiting, session.slots))
                    if not group:
                        break
                    s = slice_seconds(waiting - len(group), session.slots, time.monotonic() - t_start) \
                        * group[0].grow
                    if t_end is not None:
                        s = max(0.0, min(s, t_end - time.monotonic()))
                    h = session.submit(walk_slice, data, token, [it.prefix for it in group], s)
                    running[h] = (group, time.time())
                if not running:
                    break
                if stop_at is not None and time.monotonic() > stop_at + STOP_WAIT:
                    session.cancel(list(running))
                    for group, _ in running.values():
                        work.release(group)
                    running.clear()
                    break
                for h in session.wait(list(running), timeout=0.2):
                    group, dispatched = running.pop(h)
                    r = session.result(h)
                    work.finish(group, r["packed"], r["n"], r["frontier"])
                    merge_stats(stats, r["stats"])
                    ray_nodes.add(r.get("node", r["host"]))
                    slices += 1
                    if trace is not None:
                        trace({**r, "dispatched": dispatched, "returned": time.time()})
                work.flush(emit_packed)
                if checkpoint is not None and (ask.take() or checkpoint.due()):
                    checkpoint.save(work.frontier(), held=work.held())
        except ClusterLost as lost:
            running.clear()                  # nothing of it comes back; its subtrees stay in the frontier
            work.flush(emit_packed)
            lost.patterns_kept = emitted
            lost.checkpoint_saved = False
            if checkpoint is not None:
                checkpoint.save(work.frontier(), held=work.held())
                lost.checkpoint_saved = True
            raise
        finally:
            if running:                      # an error: abandon what still runs
                session.cancel(list(running))
        work.flush(emit_packed)
    frontier = work.frontier()
    complete = not frontier
    stats["ray_nodes"] = len(ray_nodes)          # stats["nodes"] stays the tree nodes entered, summed over slices
    return SearchOutcome(complete, frontier, stats, interrupted=sig.hit and not complete, tasks=slices,
                         held=None if complete else work.held())


def run_search(net, box, fixed_bits, tol, emit, *, roots=None, time_limit=None, workers: int = 1,
               options: EngineOptions | None = None, stop_flag=None, checkpoint=None, ray_address=None,
               trace=None) -> SearchOutcome:
    """Enumerate every feasible pattern below `roots` (None = the whole tree), streaming them to emit(bits).

    Stops at the time limit, on Ctrl-C (then interrupted=True) or when the callable stop_flag() turns true
    (checked in this process), with complete=False and the unexplored frontier. checkpoint (see
    CompiledSearch.run) receives the frontier of the patterns emitted so far whenever it is due.

    workers > 1 or a Ray address (src/parallel.py) walks the tree in time slices of prefix subtrees on Ray
    workers; a slice hands back its patterns and the unexplored rest of its subtree, which is queued again.
    The emission order is lexicographic either way. trace(event), when given, gets every finished slice
    (prefix, seconds, frontier, n, packed, pid, host, node (the Ray node id), start, dispatched, returned).
    A lost cluster raises src.parallel.ClusterLost after a last checkpoint (see _run_parallel).
    """

    options = options or EngineOptions()
    t_end = None if time_limit is None else time.monotonic() + max(0.0, float(time_limit))
    fixed = np.asarray(fixed_bits, np.int8)
    eng = make_engine(net, box, fixed, tol, options)
    if roots is not None:
        roots = check_prefixes(roots, eng.N)  # a prefix contradicting a stable unit has an empty subtree
    with Session(max(1, int(workers)), ray_address) as session:
        if session.parallel:
            return _run_parallel(session, eng, (net, box, fixed, tol, options), emit, roots, t_end, stop_flag,
                                 checkpoint, trace)
    with _SigintFlag() as sig:
        complete, frontier = eng.run(emit, roots=roots, deadline=t_end, checkpoint=checkpoint,
                                     stop_flag=lambda: sig.hit or (stop_flag is not None and stop_flag()))
    return SearchOutcome(complete, frontier, eng.stats, interrupted=sig.hit and not complete)
