"""The contract between the region-counting driver and its exact enumeration backends.

A backend lists every feasible activation pattern of `problem.net` on `problem.box`:
a pattern S (uint8 over all hidden units, layer by layer) is feasible iff some x in the box
has g > tol on every unit with bit 1 and g <= 0 on every unit with bit 0. Stable units
(problem.stability) have their bit fixed. Backends are registered by name in BACKENDS and
imported lazily, so a missing solver package only matters when that backend is asked for.

Contract of `Backend.enumerate(problem, sink, time_limit=, threads=, resume_state=)`:
- every feasible pattern goes to `sink.add` (repeats are fine: the sink de-duplicates);
  patterns already in `sink.known` (from --resume) count as found and need not be found again;
- returns EnumerationResult(complete=True) only when the search proved that no other pattern
  exists; a time limit or Ctrl-C returns complete=False (never raises KeyboardInterrupt after
  patterns were streamed, so that the driver can write what was found);
- `frontier` (JSON-serialisable) is the backend's own resumable state of an incomplete search;
  the driver writes it to `frontier_<domain>.json` and hands it back as `resume_state` on
  --resume (`resume_state` is None when there is none: then the backend must still produce
  every pattern that is not in `sink.known`);
- checkpoints: a backend with `frontier_checkpoints = True` gets `checkpoint=` (an object with
  due() and save(frontier)) and calls save with its resumable frontier at consistent points when
  due; for the others the sink saves one after a new pattern when due (frontier None: the patterns,
  which become no-good cuts on --resume, are the whole state);
- a backend that cannot run this problem (e.g. a licence size limit) raises BackendUnavailable
  (ProblemTooLarge for size limits), with a one-line message saying why and what to do.
"""
from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import pattern_key, pattern_keys, patterns_of_keys
from src.stability import milp
from src.stability.record import Stability


@dataclass
class EnumerationProblem:
    net: ReluNet
    box: Box
    stability: Stability
    tol: float = DEFAULT_TOL
    _formulation: object = field(default=None, repr=False, compare=False)

    def formulation(self):
        """The lean MILP of src/stability/milp.py for this problem, built once and cached."""
        if self._formulation is None:
            self._formulation = milp.build_formulation(self.net, self.box, self.stability, self.tol)
        return self._formulation


@dataclass
class EnumerationResult:
    complete: bool                      # False after a time limit or Ctrl-C
    stats: dict = field(default_factory=dict)   # backend-specific, JSON-serialisable
    frontier: list | None = None        # resumable state of an incomplete search (LP engine)
    interrupted: bool = False           # True when the search stopped because of Ctrl-C
    held: object = None                 # lp on workers: patterns found, not emitted (walk_driver.HeldPatterns)


class BackendUnavailable(ToolError):
    """The backend's solver package is missing or unusable; the message says which package provides it."""


class ProblemTooLarge(BackendUnavailable):
    """The solver is installed but refuses this problem (e.g. Gurobi's size-limited pip licence)."""


@dataclass(frozen=True)
class ResumedPatterns:
    """What an ordered count needs of the patterns a resumed count already wrote, without holding them:
    how many, the last one's key (they are strictly increasing) and the keys of the watched patterns
    among them (src.counting.driver.scan_resumed_patterns reads them off the file in blocks)."""
    count: int
    last: bytes | None
    hits: frozenset = frozenset()


class PatternSink:
    """Receives patterns from a backend: de-duplicates, streams new ones to `writer`, counts.

    `known` holds patterns already found (from --resume): they are written again to the new
    file and count as found. With flat_memory=True (the file driver), a backend whose output is
    ordered (`Backend.ordered_output`: strictly increasing, lexicographic) is de-duplicated against
    the last pattern only, so memory stays flat in the count; membership is then answered only for
    the patterns listed in `watch` (the data-certified ones), and patterns() is not available.
    `resumed` (instead of `known`): the summary of the patterns an ordered backend already wrote before
    the frontier it continues from; only an ordered backend can then run (flat memory at any count).
    """

    def __init__(self, writer=None, known: np.ndarray | None = None, progress=None, write_known: bool = True,
                 flat_memory: bool = False, watch=None, resumed: ResumedPatterns | None = None):
        if resumed is not None and (known is not None or not flat_memory):
            raise ValueError("resumed= replaces known= and needs flat_memory=True")
        self.writer = writer
        self.progress = progress            # callable(count) or None
        self.on_new = None                  # callable() after each new pattern (checkpoints), or None
        self._seen: set[bytes] = set()         # pattern keys (src.core.patterns)
        self._skip: set[bytes] = set()         # ordered, no frontier: the known keys, emitted again and skipped
        self._n_units = 0
        self.flat_memory = flat_memory
        self._ordered = False
        self._last: bytes | None = None
        self._n = 0
        self._watch = None if watch is None else pattern_keys(watch)
        self._hits: set[bytes] = set()
        self._resumed = resumed
        self.known = np.zeros((0, 0), np.uint8) if known is None else np.asarray(known, np.uint8)
        w, self.writer = self.writer, (self.writer if write_known else None)
        for p in self.known:
            self.add(p)
        self.writer = w
        self.n_known = len(self._seen) if resumed is None else resumed.count

    def start_backend(self, ordered: bool, continues: bool = True) -> None:
        """Told by run_backends before a backend runs: switch to ordered streaming when it applies.

        continues: the backend goes on from the frontier of the count that found the known patterns,
        so all it emits comes after them; otherwise it emits them again and they are skipped."""
        if self._resumed is not None and not (ordered and continues):
            raise RuntimeError("a count resumed without its patterns in memory needs the ordered backend that "
                               "wrote them, continuing from its frontier")
        if not (ordered and self.flat_memory) or self._ordered:
            return
        self._ordered = True
        if self._resumed is not None:
            self._n, self._last = self._resumed.count, self._resumed.last
            self._hits = set(self._resumed.hits) & (self._watch or set())
            return
        self._n = len(self._seen)
        if self._watch is not None:
            self._hits = self._watch & self._seen
        if continues:
            self._last = max(self._seen) if self._seen else None
        else:
            self._skip = self._seen
        self._seen = set()

    def add(self, pattern) -> bool:
        """Record one pattern; True if it was new."""
        p = np.asarray(pattern, dtype=np.uint8).reshape(-1)
        key = pattern_key(p)
        self._n_units = len(p)
        if self._ordered:
            if self._last is not None and key <= self._last:
                if key == self._last:
                    return False
                raise RuntimeError("an ordered backend emitted a pattern out of lexicographic order (a bug)")
            self._last = key
            if key in self._skip:
                return False
            self._n += 1
            if self._watch is not None and key in self._watch:
                self._hits.add(key)
        else:
            if key in self._seen:
                return False
            self._seen.add(key)
        if self.writer is not None:
            self.writer.write(p)
        if self.progress is not None:
            self.progress(len(self))
        if self.on_new is not None:
            self.on_new()
        return True

    def ordered_state(self, held_packed=()) -> ResumedPatterns:
        """Where an ordered count stands: the patterns so far, the last one's key and the watched ones found, all
        that resuming it needs of them (a --count-only count keeps this in its checkpoint instead of a file).
        held_packed: packbits rows of patterns found but not emitted (walk_driver.HeldPatterns), counted here
        and left out of the frontier that goes with this state; `last` stays the last one emitted."""
        if self._ordered and not self._skip:
            n, hits = self._n, set(self._hits)
            for rows in held_packed:
                n += len(rows)
                if self._watch:
                    hits.update(k for k in (r.tobytes() for r in rows) if k in self._watch)
            return ResumedPatterns(count=n, last=self._last, hits=frozenset(hits))
        if held_packed and any(len(rows) for rows in held_packed):
            raise RuntimeError("held patterns belong to an ordered walk")
        if self._ordered:
            raise RuntimeError("a walk that skips known patterns cannot be continued after its last one")
        if self._resumed is not None:
            return self._resumed
        if self._seen:
            raise RuntimeError("the patterns of an unordered backend have no ordered state")
        return ResumedPatterns(count=0, last=None)

    def __len__(self) -> int:
        if self._ordered:
            return self._n
        # resumed: the patterns written before the frontier count from the start (the first checkpoint is saved
        # before start_backend)
        return self._resumed.count if self._resumed is not None else len(self._seen)

    def __contains__(self, pattern) -> bool:
        key = pattern_key(pattern)
        if not self._ordered:
            return key in self._seen
        if self._watch is None or key not in self._watch:
            raise ValueError("an ordered sink answers membership only for its watched patterns")
        return key in self._hits

    def patterns(self) -> np.ndarray:
        """All recorded patterns as uint8 (P, N), sorted lexicographically."""
        if self._ordered:
            raise RuntimeError("an ordered sink keeps no patterns: read them from the pattern file")
        if not self._seen:
            return np.zeros((0, 0), np.uint8)
        return patterns_of_keys(self._seen, self._n_units)


@dataclass(frozen=True)
class Option:
    """One option a backend declares: its default, a check (None when fine, else what is wrong) and help."""
    default: object
    help: str
    check: Callable[[object], str | None] | None = None


def positive_int(v) -> str | None:
    return None if isinstance(v, int) and not isinstance(v, bool) and v >= 1 else f"must be an integer >= 1, got {v!r}"


class Backend:
    """Base class of enumeration backends.

    A backend declares its options in `options` (name -> Option); `get_backend(name, **options)`
    passes them to the constructor, which checks them and sets them as attributes.
    `uses_milp`: the backend solves the MILP of src/stability/milp.py (only those build it).
    `ordered_output`: its patterns arrive in lexicographic order (the file driver then keeps none in memory).
    """

    name = "?"
    package = "?"   # pip package that provides the solver, for error messages
    frontier_checkpoints = False    # True: enumerate() takes checkpoint= and saves its frontier itself
    uses_milp = False
    ordered_output = False          # True: patterns come strictly increasing (lexicographic), none repeated
    options: dict[str, Option] = {}

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise ToolError(f"backend {self.name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                            f"{', '.join(self.options) or 'none'}")
        for key, opt in self.options.items():
            value = options.get(key, opt.default)
            msg = opt.check(value) if opt.check is not None else None
            if msg:
                raise ToolError(f"backend {self.name!r} option {key}: {msg}")
            setattr(self, key, value)

    @classmethod
    def check_available(cls) -> None:
        """Raise BackendUnavailable (naming the package) if the solver cannot be used."""

    def check_problem(self, problem: EnumerationProblem) -> None:
        """Raise ProblemTooLarge if this backend cannot take `problem` (checked before enumerate)."""

    def enumerate(self, problem: EnumerationProblem, sink: PatternSink, *, time_limit: float | None = None,
                  threads: int = 1, resume_state: dict | None = None) -> EnumerationResult:
        raise NotImplementedError


# name -> "module:Class", imported on demand
BACKENDS: dict[str, str] = {
    "gurobi": "src.counting.backends.gurobi:GurobiBackend",
    "scip": "src.counting.backends.scip:ScipBackend",
    "lp": "src.counting.backends.lp:LpBackend",
}

# name -> the pip package that provides its solver (for "which package provides what" messages)
PACKAGES: dict[str, str] = {"gurobi": "gurobipy", "scip": "pyscipopt", "lp": "numba"}

# The order in which `--backend auto` tries backends: the first one that is available and accepts
# the problem wins. "lp" comes first: its pattern sets equal the brute force and both MILP backends
# in the tests (tests/test_lp_enum.py) and it is the fastest; Gurobi falls through to SCIP when its
# licence is too small for the model.
AUTO_ORDER: tuple[str, ...] = ("lp", "gurobi", "scip")

# `--backend milp`: the paper's method (one MILP search tree), Gurobi when its licence fits, else SCIP
MILP_ORDER: tuple[str, ...] = ("gurobi", "scip")

FALLBACK_CHOICES = {"auto": AUTO_ORDER, "milp": MILP_ORDER}


def packages_line() -> str:
    """One line naming the backends and the pip package behind each."""
    return "backends and the pip packages that provide them: " + ", ".join(
        f"{name} ({PACKAGES.get(name, '?')})" for name in BACKENDS)


def get_backend(name: str, **options) -> Backend:
    """An instance of the named backend with `options` (see its `options`), after check_available();
    ToolError for unknown names and options."""
    if name not in BACKENDS:
        raise ToolError(f"--backend {name!r}: unknown backend; choose auto, milp or one of {', '.join(BACKENDS)} "
                        f"({packages_line()})")
    mod, cls = BACKENDS[name].split(":")
    try:
        module = importlib.import_module(mod)
    except ModuleNotFoundError as e:
        if e.name == mod:
            raise BackendUnavailable(f"backend {name!r} is not part of this checkout ({mod} is missing); "
                                     f"{packages_line()}") from None
        raise BackendUnavailable(f"backend {name!r} needs the pip package {PACKAGES.get(name, e.name)!r} "
                                 f"(import of {e.name!r} failed); {packages_line()}") from None
    klass = getattr(module, cls)
    klass.check_available()
    return klass(**options)


def backend_class(name: str):
    """The class registered under `name`, without checking that its solver is available."""
    mod, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(mod), cls)


def backend_candidates(name: str) -> list[str]:
    """The backends `--backend name` tries, in order (auto / milp: their fallback lists)."""
    return list(FALLBACK_CHOICES.get(name, (name,)))


def run_backends(problem: EnumerationProblem, sink: PatternSink, backend: str = "auto", *,
                 time_limit: float | None = None, threads: int = 1, resume_state: dict | None = None,
                 options: dict | None = None, prepare=None, on_fallback=None) -> tuple[EnumerationResult, str, list]:
    """Enumerate with `backend`, or for auto / milp the first candidate that is available and accepts
    the problem. Returns (result, name of the backend used, notes on fallbacks taken).

    options: offered to every candidate; each takes the ones it declares. resume_state goes only to a
    backend of the same name (or one without a name). prepare(name, backend, state) -> extra keyword
    arguments of enumerate (the count driver's checkpoint hooks); on_fallback(message) is told
    when a licence-size limit makes it fall back.
    """
    candidates = backend_candidates(backend)
    options = dict(options or {})
    if backend in FALLBACK_CHOICES:
        known = set().union(*(backend_class(n).options for n in candidates))
        unknown = sorted(set(options) - known)
        if unknown:
            raise ToolError(f"--backend {backend}: no candidate ({', '.join(candidates)}) has option "
                            f"{', '.join(map(repr, unknown))}")
    t0 = time.perf_counter()
    notes, reasons = [], []
    for i, name in enumerate(candidates):
        nxt = candidates[i + 1] if i + 1 < len(candidates) else None
        try:
            declared = backend_class(name).options if name in BACKENDS and backend in FALLBACK_CHOICES else options
            be = get_backend(name, **{k: v for k, v in options.items() if k in declared})
            be.check_problem(problem)
            state = resume_state if resume_state is None or resume_state.get("backend") in (None, name) else None
            kw = prepare(name, be, state) if prepare is not None else {}
            sink.start_backend(be.ordered_output, continues=state is not None and state.get("frontier") is not None)
            left = None if time_limit is None else max(0.0, time_limit - (time.perf_counter() - t0))
            return be.enumerate(problem, sink, time_limit=left, threads=int(threads), resume_state=state, **kw), \
                name, notes
        except BackendUnavailable as e:
            if backend not in FALLBACK_CHOICES:
                raise
            reasons.append(f"{name}: {e}")
            if nxt is None:
                raise ToolError(f"no backend could count this net ({'; '.join(reasons)}); {packages_line()}") from None
            if isinstance(e, ProblemTooLarge):
                msg = f"{e}; falling back to {nxt.upper() if nxt == 'scip' else nxt}"
                notes.append(msg)
                if on_fallback is not None:
                    on_fallback(msg)
            else:
                notes.append(f"backend {name} unavailable ({e}); using {nxt}")
    raise AssertionError("unreachable")
