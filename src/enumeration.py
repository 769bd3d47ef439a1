"""The contract between the region-counting driver and its exact enumeration backends.

A backend lists every feasible activation pattern of `problem.net` on `problem.box`:
a pattern S (uint8 over all hidden units, layer by layer) is feasible iff some x in the box
has g > tol on every unit with bit 1 and g <= 0 on every unit with bit 0. Stable units
(problem.stability) have their bit fixed. Backends are registered by name in BACKENDS and
imported lazily, so a missing solver package only matters when that backend is asked for.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import numpy as np

from .bounds import Stability
from .domain import Box
from .ioutils import ToolError
from .network import ReluNet


@dataclass
class EnumerationProblem:
    net: ReluNet
    box: Box
    stability: Stability
    tol: float = 1e-6


@dataclass
class EnumerationResult:
    complete: bool                      # False after a time limit or Ctrl-C
    stats: dict = field(default_factory=dict)   # backend-specific, JSON-serialisable
    frontier: list | None = None        # resumable state of an incomplete search (LP engine)


class BackendUnavailable(ToolError):
    """The backend's solver package is missing or unusable; the message says which package provides it."""


class PatternSink:
    """Receives patterns from a backend: de-duplicates, streams new ones to `writer`, counts.

    `known` holds patterns already found (from --resume): they are written again to the new
    file and count as found.
    """

    def __init__(self, writer=None, known: np.ndarray | None = None, progress=None):
        self.writer = writer
        self.progress = progress            # callable(count) or None
        self._seen: set[bytes] = set()
        self.known = np.zeros((0, 0), np.uint8) if known is None else np.asarray(known, np.uint8)
        for p in self.known:
            self.add(p)

    def add(self, pattern) -> bool:
        """Record one pattern; True if it was new."""
        p = np.asarray(pattern, dtype=np.uint8).reshape(-1)
        key = p.tobytes()
        if key in self._seen:
            return False
        self._seen.add(key)
        if self.writer is not None:
            self.writer.write(p)
        if self.progress is not None:
            self.progress(len(self._seen))
        return True

    def __len__(self) -> int:
        return len(self._seen)

    def __contains__(self, pattern) -> bool:
        return np.asarray(pattern, dtype=np.uint8).reshape(-1).tobytes() in self._seen

    def patterns(self) -> np.ndarray:
        """All recorded patterns as uint8 (P, N), sorted lexicographically."""
        if not self._seen:
            return np.zeros((0, 0), np.uint8)
        arr = np.array([np.frombuffer(k, np.uint8) for k in self._seen])
        return arr[np.lexsort(arr.T[::-1])]


class Backend:
    """Base class of enumeration backends."""

    name = "?"
    package = "?"   # pip package that provides the solver, for error messages

    @classmethod
    def check_available(cls) -> None:
        """Raise BackendUnavailable (naming the package) if the solver cannot be used."""

    def enumerate(self, problem: EnumerationProblem, sink: PatternSink, *, time_limit: float | None = None,
                  threads: int = 1, resume_state: dict | None = None) -> EnumerationResult:
        raise NotImplementedError


# name -> "module:Class", imported on demand
BACKENDS: dict[str, str] = {}


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ToolError(f"--backend {name!r}: unknown backend; choose from {', '.join(sorted(BACKENDS))} or auto")
    mod, cls = BACKENDS[name].split(":")
    klass = getattr(importlib.import_module(mod), cls)
    klass.check_available()
    return klass()
