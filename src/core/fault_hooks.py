"""A deterministic pause point for kill tests (standard library only; does nothing unless asked).

The kill tests kill a real count or training process with a real signal and check that it resumes.
Instead of sizing the work so that a timed kill lands mid-run, they ask the process to stop at a
known point through two environment variables:

  RELU_TOOLKIT_PAUSE_AFTER=patterns:K   pause at the first pattern checkpoint holding >= K patterns
  RELU_TOOLKIT_PAUSE_AFTER=epochs:K     pause after the checkpoint of epoch K (or later) of a training
  RELU_TOOLKIT_PAUSE_MARKER=PATH        the marker file written when the process pauses

`pause_point(kind, done)` is called where progress has just been made durable (the count driver's
checkpoint, a training epoch's checkpoint). When RELU_TOOLKIT_PAUSE_AFTER names `kind` and `done`
>= K, it writes PATH (JSON: pid, kind, done, after) and blocks until a signal arrives, also one sent the
moment PATH appears (the handlers are watched from before it is written): SIGKILL or
SIGTERM end the process there; a signal whose handler returns (Ctrl-C while the region walk holds
SIGINT, say) ends the pause and the process carries on and sees it; a handler that raises
(KeyboardInterrupt) raises from here. The pause happens at most once per marker file: when PATH
already exists (another process, or an earlier run that was killed, paused there) it does nothing,
so a resumed or retried run is not stopped again. Without both variables it does nothing.

A second, independent hook holds work back without stopping it:

  RELU_TOOLKIT_HOLD_WHILE=PATH          `hold_point()` waits (polling, 0.05 s) as long as PATH exists

It lets a test keep one node's workers busy (so that Ray must place work on another node) until the
test removes PATH. Without the variable, or while PATH does not exist, it returns at once.
"""
from __future__ import annotations

import json
import os
import signal
import threading
import time

PAUSE_AFTER = "RELU_TOOLKIT_PAUSE_AFTER"
PAUSE_MARKER = "RELU_TOOLKIT_PAUSE_MARKER"
HOLD_WHILE = "RELU_TOOLKIT_HOLD_WHILE"
KINDS = ("patterns", "epochs")


def _threshold(kind: str) -> int | None:
    """K when $RELU_TOOLKIT_PAUSE_AFTER is `kind:K`, else None (a malformed value is an error)."""
    spec = os.environ.get(PAUSE_AFTER, "").strip()
    if not spec:
        return None
    name, sep, k = spec.partition(":")
    if not sep or name not in KINDS or not k.strip().isdigit():
        raise ValueError(f"${PAUSE_AFTER}={spec!r}: expected patterns:K or epochs:K (K >= 0)")
    return int(k) if name == kind else None


def _claim(marker: str, record: dict) -> bool:
    """Write the marker atomically, only if it does not exist yet; True when this process wrote it."""
    tmp = f"{marker}.{os.getpid()}.tmp"
    with open(tmp, "w") as fh:
        json.dump(record, fh)
        fh.flush()
        os.fsync(fh.fileno())
    try:
        os.link(tmp, marker)                 # fails if the marker exists: one pause per marker file
        return True
    except FileExistsError:
        return False
    finally:
        os.unlink(tmp)


def pause_point(kind: str, done: int) -> None:
    """Pause here when $RELU_TOOLKIT_PAUSE_AFTER is `kind:K` with done >= K (see the module docstring)."""
    k = _threshold(kind)
    marker = os.environ.get(PAUSE_MARKER, "").strip()
    if k is None or not marker or int(done) < k or os.path.exists(marker):
        return
    if threading.current_thread() is not threading.main_thread():
        if _claim(marker, {"pid": os.getpid(), "kind": kind, "done": int(done), "after": k}):
            while True:                      # another thread cannot receive signals: wait to be killed
                time.sleep(3600)
        return
    # The handlers are wrapped before the marker exists: a signal sent as soon as it appears may arrive before
    # the wait begins (signal.pause() would then wait for a second one, for ever); the flag sees it either way.
    seen: list[int] = []
    wrapped = {}
    for sig in signal.valid_signals():
        try:
            handler = signal.getsignal(sig)
        except (OSError, ValueError):
            continue
        if callable(handler):
            def note(signum, frame, handler=handler):
                seen.append(signum)
                handler(signum, frame)       # may raise (KeyboardInterrupt): the pause ends with it
            wrapped[sig] = handler
            signal.signal(sig, note)
    try:
        if _claim(marker, {"pid": os.getpid(), "kind": kind, "done": int(done), "after": k}):
            while not seen:
                time.sleep(0.01)
    finally:
        for sig, handler in wrapped.items():
            signal.signal(sig, handler)


def hold_point() -> None:
    """Wait while the file named by $RELU_TOOLKIT_HOLD_WHILE exists (see the module docstring)."""
    path = os.environ.get(HOLD_WHILE, "").strip()
    while path and os.path.exists(path):
        time.sleep(0.05)
