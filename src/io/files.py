"""Atomic file writes (temp file + rename, stale temps of killed writers removed), strict JSON and UTF-8 readers, sha256."""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import secrets
import socket
from pathlib import Path

import numpy as np

from src.core.errors import ToolError

_HOST = "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"

_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.[0-9a-f]{8}\.tmp$")

_LEGACY_TEMP = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")   # mkstemp names of earlier versions


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(path) -> list[Path]:
    """Remove the temp files of `path` left by killed writers on this host; returns what was removed.

    A temp file is `.<name>.<host>.<pid>.<token>.tmp`: it is stale when <host> is this host and
    process <pid> no longer exists. Temp files in the format of earlier versions (mkstemp's
    `.<name>.XXXXXXXX.tmp`, no pid) are always stale. Writers on other hosts are left alone.
    """
    path = Path(path)
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for e in entries:
        if not (e.name.startswith("." + path.name + ".") and e.name.endswith(".tmp")):
            continue
        m = _TEMP.match(e.name)
        if m and m.group("name") == path.name:
            if m.group("host") != _HOST or _pid_alive(int(m.group("pid"))):
                continue
        elif not ((m2 := _LEGACY_TEMP.match(e.name)) and m2.group("name") == path.name):
            continue
        with contextlib.suppress(FileNotFoundError):
            os.unlink(e.path)
            removed.append(Path(e.path))
    return removed


def create_new_file(path, mode: str = "w", **kwargs):
    """Open a new file for writing with the permissions a plain open() gives (0666 & ~umask).

    Fails if `path` exists (O_EXCL), so that two writers never share a temp file.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        return open(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """Open a temp file next to `path`; rename it onto `path` only if the block succeeds.

    The file gets the permissions of a plain open() under the umask. Stale temp files of the
    same target left by killed processes on this host are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    while True:
        tmp = path.parent / f".{path.name}.{_HOST}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            fh = create_new_file(tmp, mode, **kwargs)
            break
        except FileExistsError:
            continue
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def file_sha256(path) -> str:
    """The sha256 hex digest of a file's bytes (the `weights_sha256` of the records)."""

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def atomic_write_text(path, text: str) -> None:
    with atomic_open(path, "w") as fh:
        fh.write(text)


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default, allow_nan=False) + "\n")


def _json_default(o):

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.bool_):
        return bool(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


class _BadNumber(ValueError):
    def __init__(self, token: str):
        super().__init__(token)
        self.token = token


def _reject_constant(token: str):
    raise _BadNumber(token)


def _finite_float(token: str) -> float:
    v = float(token)
    if not math.isfinite(v):
        raise _BadNumber(token)
    return v


def line_of(text: str, needle: str) -> int:
    """1-based line of the first occurrence of `needle` in `text` (1 when absent)."""
    i = text.find(needle)
    return 1 if i < 0 else text.count("\n", 0, i) + 1


def read_utf8(path, what: str = "file", error=ToolError) -> str:
    """The text of a UTF-8 file; a missing, unreadable or non-UTF-8 file raises `error` naming file (and line)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except (IsADirectoryError, PermissionError) as e:
        raise error(f"{path}: cannot read {what} ({e.__class__.__name__})") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte {raw[e.start]:#04x})") from None


def read_json_text(path) -> tuple[object, str]:
    """(value, text) of a strict JSON file: UTF-8, finite numbers only (no NaN, Infinity, 1e999).

    Every defect raises ToolError `FILE:LINE: what is wrong`.
    """
    path = Path(path)
    text = read_utf8(path)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float), text
    except _BadNumber as e:
        raise ToolError(f"{path}:{line_of(text, e.token)}: not a finite number: {e.token[:40]!r}") from None
    except json.JSONDecodeError as e:
        raise ToolError(f"{path}:{e.lineno}: not valid JSON ({e.msg}, column {e.colno})") from None
    except RecursionError:
        raise ToolError(f"{path}:1: not valid JSON (nested too deeply)") from None


def read_json(path):
    """Read a strict JSON file, raising ToolError naming the file (and line) when missing or malformed."""
    return read_json_text(path)[0]
