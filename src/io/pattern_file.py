"""Activation-pattern files: `activation_pattern_abhinav_<domain>.dat`.

First line `n = [784, 100, 100, 10]`, then one line per pattern: space-separated 0/1 over all
hidden units, layer by layer. Written atomically (streamed to a temp file, renamed at the end).
"""
from __future__ import annotations

import contextlib
import os
import re
import warnings
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.io.files import atomic_open, create_new_file


def _header(layer_sizes) -> str:
    return f"n = [{', '.join(map(str, layer_sizes))}]\n"


class PatternWriter:
    """Stream patterns to `path`; `close()` puts the file in place atomically.

    Without `partial`: through a temp file, removed on error (path is untouched).
    With `partial` (a checkpointed count): into that file, which `sync()` makes durable and
    which is kept on error for --resume; `resume_bytes` appends to an existing partial file cut
    back to that offset (its patterns are kept, no header is written). Use as a context manager.
    """

    def __init__(self, path, layer_sizes, partial=None, resume_bytes: int | None = None):
        self.path = Path(path)
        self.n_units = int(sum(layer_sizes[1:-1]))
        self.partial = None if partial is None else Path(partial)
        self.count = 0
        self._ctx = None
        if self.partial is None:
            self._ctx = atomic_open(self.path, "w")
            self._fh = self._ctx.__enter__()
            self._fh.write(_header(layer_sizes))
        elif resume_bytes is not None:
            os.truncate(self.partial, resume_bytes)
            self._fh = open(self.partial, "a")
        else:
            self.partial.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.partial)
            self._fh = create_new_file(self.partial, "w")
            self._fh.write(_header(layer_sizes))

    def write(self, pattern) -> None:
        p = np.asarray(pattern).reshape(-1)
        if p.size != self.n_units:
            raise ValueError(f"pattern has {p.size} bits, expected {self.n_units}")
        self._fh.write(" ".join("1" if v else "0" for v in p.tolist()) + "\n")
        self.count += 1

    def write_many(self, patterns) -> None:
        for p in patterns:
            self.write(p)

    def sync(self) -> int:
        """Make everything written so far durable; returns the file's size in bytes."""
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return self._fh.tell()

    def close(self) -> None:
        if self._ctx is not None:
            ctx, self._ctx = self._ctx, None
            ctx.__exit__(None, None, None)
        elif self.partial is not None and not self._fh.closed:
            self.sync()
            self._fh.close()
            os.replace(self.partial, self.path)

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
        elif self.partial is not None and not self._fh.closed:
            with contextlib.suppress(OSError):
                self._fh.close()            # the partial file stays: a checkpoint may refer to it

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

MAX_UNITS = 10 ** 6

_SEP = re.compile(r"[ \t]+")


def _decode(path, raw: bytes, lineno: int) -> str:
    try:
        return raw.decode("ascii")
    except UnicodeDecodeError as e:
        raise ToolError(f"{path}:{lineno}: not a text line (byte {raw[e.start]:#04x} at column {e.start + 1})") from None


def _tokens(line: str) -> list[str]:
    """Space- or tab-separated tokens of one line (a trailing CR, as in CRLF files, is allowed)."""
    line = line.strip(" \t\r")
    return _SEP.split(line) if line else []


def _parse_header(path, first: bytes) -> list[int]:
    text = _decode(path, first, 1)
    if not text.strip():
        raise ToolError(f"{path}:1: empty pattern file (expected a first line 'n = [...]')")
    m = _HEADER.match(text)
    if not m:
        raise ToolError(f"{path}:1: expected 'n = [n0, n1, ..., m]', got {text.strip()[:60]!r}")
    try:
        sizes = [int(t) for t in m.group(1).replace(",", " ").split()]
    except ValueError:
        raise ToolError(f"{path}:1: 'n = [...]' must list integers") from None
    if len(sizes) < 2 or min(sizes) < 1:
        raise ToolError(f"{path}:1: 'n = [...]' must list at least two positive sizes, got {sizes}")
    if sum(sizes[1:-1]) > MAX_UNITS:
        raise ToolError(f"{path}:1: 'n = [...]' describes {sum(sizes[1:-1])} hidden units, more than {MAX_UNITS}")
    return sizes


def read_pattern_header(path) -> list[int]:
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            first = fh.readline()
    except (FileNotFoundError, IsADirectoryError):
        raise ToolError(f"{path}: pattern file not found") from None
    return _parse_header(path, first)


CHUNK_BYTES = 1 << 26        # bytes of a pattern file parsed at a time: memory stays flat however large the file


def _parse_block(path, block: bytes, n_units: int, sizes, lineno: int) -> np.ndarray:
    """The patterns of `block` (whole lines of a pattern file; its first line is line lineno + 1) as uint8 rows.

    The writer's own layout (n tokens of one character, single spaces, "\n") is parsed with array
    operations; anything else (tabs, CRLF, blank lines) line by line, with the same checks."""
    a = np.frombuffer(block, np.uint8)
    width = 2 * n_units
    if a.size and a.size % width == 0:
        m = a.reshape(-1, width)
        bits = m[:, 0:width - 1:2]
        if (m[:, -1] == 10).all() and (m[:, 1:width - 1:2] == 32).all() and ((bits == 48) | (bits == 49)).all():
            return bits - np.uint8(48)
    rows = []
    for k, raw in enumerate(block.split(b"\n"), lineno + 1):
        toks = _tokens(_decode(path, raw, k))
        if not toks:
            continue
        if len(toks) != n_units:
            raise ToolError(f"{path}:{k}: {len(toks)} values, expected {n_units} (one per hidden unit of n = {sizes})")
        if not all(t in ("0", "1") for t in toks):
            bad = next(t for t in toks if t not in ("0", "1"))
            raise ToolError(f"{path}:{k}: tokens must be 0 or 1, got {bad[:20]!r}")
        rows.append(np.fromiter((t == "1" for t in toks), dtype=np.uint8, count=n_units))
    return np.vstack(rows) if rows else np.zeros((0, n_units), np.uint8)


def iter_pattern_blocks(path, layer_sizes=None, max_bytes: int | None = None, chunk_bytes: int = CHUNK_BYTES):
    """The patterns of a file as uint8 blocks (rows, N), in file order, about `chunk_bytes` of the file at a
    time (memory flat in the file's size; duplicates are kept).

    Checks the header against `layer_sizes` (when given), the token count and that every token is 0 or
    1, naming the line. max_bytes: read only that many bytes (a checkpointed partial file), which must
    end with a whole line.
    """
    path = Path(path)
    sizes = read_pattern_header(path)
    if layer_sizes is not None and list(layer_sizes) != sizes:
        raise ToolError(f"{path}:1: pattern file is for a net with n = {sizes}, "
                        f"but the network has n = {list(layer_sizes)}")
    n_units = sum(sizes[1:-1])
    with open(path, "rb") as fh:
        header = fh.readline()
        left = None if max_bytes is None else max_bytes - len(header)
        if left is not None and left < 0:
            raise ToolError(f"{path}:1: the checkpointed part ends inside a line")
        lineno, rest = 1, b""
        while True:
            buf = fh.read(chunk_bytes if left is None else min(chunk_bytes, left))
            if not buf:
                break
            if left is not None:
                left -= len(buf)
            data = rest + buf
            cut = data.rfind(b"\n") + 1
            block, rest = data[:cut], data[cut:]
            if block:
                rows = _parse_block(path, block, n_units, sizes, lineno)
                lineno += block.count(b"\n")
                if len(rows):
                    yield rows
        if rest:
            if max_bytes is not None:
                raise ToolError(f"{path}:{lineno + 1}: the checkpointed part ends inside a line")
            rows = _parse_block(path, rest, n_units, sizes, lineno)
            if len(rows):
                yield rows


def count_patterns(path, layer_sizes=None) -> int:
    """The number of patterns in a file (checked as iter_pattern_blocks does; duplicates counted)."""
    return sum(len(rows) for rows in iter_pattern_blocks(path, layer_sizes))


def count_pattern_lines(path) -> int:
    """The number of patterns in a file (its non-empty lines after the header), without parsing or checking them:
    a cheap look at whether a summary's count still matches its file (`count_patterns` checks every line)."""
    n = 0
    with open(path, "rb") as fh:
        fh.readline()
        for line in fh:
            n += bool(line.strip())
    return n


def read_patterns(path, layer_sizes=None, dedupe: bool = True, allow_empty: bool = False,
                  max_bytes: int | None = None) -> np.ndarray:
    """Patterns of a file as uint8 (P, N), in file order.

    Checks the header against `layer_sizes` (when given), the token count and that every
    token is 0 or 1. Duplicates are dropped with a warning. An empty list is an error unless
    allow_empty. max_bytes: read only that many bytes (a checkpointed partial file).
    Holds every pattern: a count's resume streams the file with iter_pattern_blocks instead.
    """
    path = Path(path)
    blocks = list(iter_pattern_blocks(path, layer_sizes, max_bytes=max_bytes))
    if not blocks:
        if allow_empty:
            return np.zeros((0, sum(read_pattern_header(path)[1:-1])), dtype=np.uint8)
        raise ToolError(f"{path}:1: no patterns in the file (only the header)")
    pats = blocks[0] if len(blocks) == 1 else np.concatenate(blocks)
    if dedupe:
        _, first = np.unique(pats, axis=0, return_index=True)
        if first.size < len(pats):
            warnings.warn(f"{path}: {len(pats) - first.size} duplicate patterns dropped", stacklevel=2)
            pats = pats[np.sort(first)]
    return pats
