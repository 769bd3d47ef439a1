"""Activation-pattern files: `activation_pattern_abhinav_<domain>.dat`.

First line `n = [784, 100, 100, 10]`, then one line per pattern: space-separated 0/1 over all
hidden units, layer by layer. Written atomically (streamed to a temp file, renamed at the end).
"""
from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np

from .ioutils import ToolError, atomic_open


def pattern_file_name(domain_name: str) -> str:
    return f"activation_pattern_abhinav_{domain_name}.dat"


def _header(layer_sizes) -> str:
    return f"n = [{', '.join(map(str, layer_sizes))}]\n"


class PatternWriter:
    """Stream patterns to `path` through a temp file; `close()` renames it into place.

    Use as a context manager: on an exception the temp file is removed and `path` is untouched.
    """

    def __init__(self, path, layer_sizes):
        self.path = Path(path)
        self.n_units = int(sum(layer_sizes[1:-1]))
        self._ctx = atomic_open(self.path, "w")
        self._fh = self._ctx.__enter__()
        self._fh.write(_header(layer_sizes))
        self.count = 0

    def write(self, pattern) -> None:
        p = np.asarray(pattern).reshape(-1)
        if p.size != self.n_units:
            raise ValueError(f"pattern has {p.size} bits, expected {self.n_units}")
        self._fh.write(" ".join("1" if v else "0" for v in p.tolist()) + "\n")
        self.count += 1

    def write_many(self, patterns) -> None:
        for p in patterns:
            self.write(p)

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)

    def abort(self, exc=None) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            try:
                raise exc or RuntimeError("aborted")
            except BaseException as e:
                try:
                    ctx.__exit__(type(e), e, e.__traceback__)
                except BaseException:
                    pass

    def __enter__(self):
        return self

    def __exit__(self, et, ev, tb):
        if et is None:
            self.close()
        else:
            self.abort(ev)
        return False


def write_patterns(path, layer_sizes, patterns) -> None:
    with PatternWriter(path, layer_sizes) as w:
        w.write_many(patterns)


_HEADER = re.compile(r"^\s*n\s*=\s*\[(.*)\]\s*;?\s*$")


def read_pattern_header(path) -> list[int]:
    path = Path(path)
    try:
        with open(path) as fh:
            first = fh.readline()
    except (FileNotFoundError, IsADirectoryError):
        raise ToolError(f"{path}: pattern file not found") from None
    if not first.strip():
        raise ToolError(f"{path}: empty pattern file (expected a first line 'n = [...]')")
    m = _HEADER.match(first)
    if not m:
        raise ToolError(f"{path}:1: expected 'n = [n0, n1, ..., m]', got {first.strip()[:60]!r}")
    try:
        return [int(t) for t in m.group(1).replace(",", " ").split()]
    except ValueError:
        raise ToolError(f"{path}:1: 'n = [...]' must list integers") from None


def read_patterns(path, layer_sizes=None, dedupe: bool = True, allow_empty: bool = False) -> np.ndarray:
    """Patterns of a file as uint8 (P, N), in file order.

    Checks the header against `layer_sizes` (when given), the token count and that every
    token is 0 or 1. Duplicates are dropped with a warning. An empty list is an error unless
    allow_empty.
    """
    path = Path(path)
    sizes = read_pattern_header(path)
    if layer_sizes is not None and list(layer_sizes) != sizes:
        raise ToolError(f"{path}: pattern file is for a net with n = {sizes}, "
                        f"but the network has n = {list(layer_sizes)}")
    n_units = sum(sizes[1:-1])
    rows = []
    with open(path) as fh:
        fh.readline()
        for lineno, line in enumerate(fh, 2):
            toks = line.split()
            if not toks:
                continue
            if len(toks) != n_units:
                raise ToolError(f"{path}:{lineno}: {len(toks)} values, expected {n_units} (one per hidden unit of n = {sizes})")
            row = np.fromiter((t == "1" for t in toks), dtype=np.uint8, count=n_units)
            if not all(t in ("0", "1") for t in toks):
                bad = next(t for t in toks if t not in ("0", "1"))
                raise ToolError(f"{path}:{lineno}: tokens must be 0 or 1, got {bad[:20]!r}")
            rows.append(row)
    if not rows:
        if allow_empty:
            return np.zeros((0, n_units), dtype=np.uint8)
        raise ToolError(f"{path}: no patterns in the file (only the header)")
    pats = np.vstack(rows)
    if dedupe:
        _, first = np.unique(pats, axis=0, return_index=True)
        if first.size < len(pats):
            warnings.warn(f"{path}: {len(pats) - first.size} duplicate patterns dropped", stacklevel=2)
            pats = pats[np.sort(first)]
    return pats
