"""A deterministic pause point for kill tests (standard library only; does nothing unless asked).

The kill tests kill a real count or training process with a real signal and check that it resumes.
Instead of sizing the work so that a timed kill lands mid-run, they ask the process to stop at a
known point through two environment variables:

  RELU_TOOLKIT_PAUSE_AFTER=patterns:K   pause at the first pattern checkpoint holding >= K patterns
  RELU_TOOLKIT_PAUSE_AFTER=epochs:K     pause after the checkpoint of epoch K (or later) of a training
  RELU_TOOLKIT_PAUSE_MARKER=PATH        the marker file written when the process pauses

`pause_point(kind, done)` is called where progress has just been made durable (the count driver's
checkpoint, a training epoch's checkpoint). When RELU_TOOLKIT_PAUSE_AFTER names `kind` and `done`
>= K, it writes PATH (JSON: pid, kind, done, after) and blocks until a signal arrives (SIGINT, SIGTERM,
SIGHUP, SIGQUIT, SIGUSR1/2, SIGALRM, also one sent the moment PATH appears: they are blocked from before
it is written, then taken with sigwait and sent again to meet their handler): SIGKILL or
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
_WAKE = ("SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")     # the signals that end a pause


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
    # The signals that end a pause are blocked before the marker exists: one sent the moment it appears is then
    # held until sigwait takes it (signal.pause() waited for a second one, for ever, when the first came before
    # it began); sent again once unblocked, it meets its handler, a Python or a solver's C handler (SCIP's
    # Ctrl-C), or its default action.
    wake = {getattr(signal, name) for name in _WAKE if hasattr(signal, name)}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wake)
    got = None
    try:
        if _claim(marker, {"pid": os.getpid(), "kind": kind, "done": int(done), "after": k}):
            got = signal.sigwait(wake)
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    if got is not None:
        os.kill(os.getpid(), got)            # its handler runs now (and raises what it raises)
        time.sleep(0)


def hold_point() -> None:
    """Wait while the file named by $RELU_TOOLKIT_HOLD_WHILE exists (see the module docstring)."""
    path = os.environ.get(HOLD_WHILE, "").strip()
    while path and os.path.exists(path):
        time.sleep(0.05)
