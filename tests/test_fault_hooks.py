"""The kill tests' pause point (src/core/fault_hooks.py): inert unless asked, pauses once per marker file,
until a signal; the hold point waits while its file exists."""
import json
import signal

import pytest
from conftest import ROOT, pause_env, run_cli, wait_for_pause

from src.core.fault_hooks import HOLD_WHILE, PAUSE_AFTER, PAUSE_MARKER, hold_point, pause_point


def test_inert_unless_both_variables_ask_for_this_kind(monkeypatch, tmp_path):
    marker = tmp_path / "paused.json"
    monkeypatch.delenv(PAUSE_AFTER, raising=False)
    monkeypatch.setenv(PAUSE_MARKER, str(marker))
    pause_point("patterns", 10 ** 6)                       # no PAUSE_AFTER
    monkeypatch.setenv(PAUSE_AFTER, "patterns:3")
    monkeypatch.delenv(PAUSE_MARKER)
    pause_point("patterns", 10 ** 6)                       # no marker named
    monkeypatch.setenv(PAUSE_MARKER, str(marker))
    pause_point("epochs", 10 ** 6)                         # another kind
    pause_point("patterns", 2)                             # not there yet
    marker.write_text("{}")
    pause_point("patterns", 3)                             # paused once already (the marker exists)
    assert marker.read_text() == "{}" and [p.name for p in tmp_path.iterdir()] == ["paused.json"]


@pytest.mark.parametrize("spec", ["patterns", "patterns:", "pattern:3", "epochs:-1", "epochs:x"])
def test_a_malformed_request_is_an_error(monkeypatch, tmp_path, spec):
    monkeypatch.setenv(PAUSE_AFTER, spec)
    monkeypatch.setenv(PAUSE_MARKER, str(tmp_path / "paused.json"))
    with pytest.raises(ValueError, match=PAUSE_AFTER):
        pause_point("epochs", 1)


def test_pauses_once_until_a_signal(tmp_path):
    """A real process: it pauses at the first point past K, a signal whose handler returns ends the pause,
    and the next point does not pause again."""
    script = tmp_path / "paused.py"
    script.write_text(f"""import signal, sys
sys.path.insert(0, {str(ROOT)!r})
from src.core.fault_hooks import pause_point
signal.signal(signal.SIGUSR1, lambda *a: None)
for epoch in range(1, 5):
    pause_point("epochs", epoch)
    print("after", epoch, flush=True)
""")
    marker = tmp_path / "paused.json"
    proc = run_cli(script, env=pause_env(marker, "epochs:2"), background=True)
    paused = wait_for_pause(proc, marker, timeout=60)
    assert paused == {"pid": proc.pid, "kind": "epochs", "done": 2, "after": 2}
    assert json.loads(marker.read_text()) == paused
    proc.send_signal(signal.SIGUSR1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["after", "1", "after", "2", "after", "3", "after", "4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["paused.json", "paused.py"]


def test_a_signal_sent_the_moment_the_marker_appears_ends_the_pause(tmp_path):
    """The race of a kill test: the test signals as soon as it sees the marker, which may be before the process
    waits. Here the signal is sent right after the marker is written, before the wait; the pause must still end
    (signal.pause() waited for a second signal for ever: a Ctrl-C test hung under load)."""
    script = tmp_path / "raced.py"
    script.write_text(f"""import os, signal, sys
sys.path.insert(0, {str(ROOT)!r})
import src.core.fault_hooks as hooks
claim = hooks._claim
def claim_then_signal(marker, record):
    won = claim(marker, record)
    os.kill(os.getpid(), signal.SIGUSR1)
    return won
hooks._claim = claim_then_signal
handled = []
signal.signal(signal.SIGUSR1, lambda *a: handled.append(1))
hooks.pause_point("patterns", 5)
print("after", len(handled), signal.getsignal(signal.SIGUSR1).__name__, flush=True)
""")
    proc = run_cli(script, env=pause_env(tmp_path / "paused.json", "patterns:5"), background=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert out.split() == ["after", "1", "<lambda>"]          # handled once, the handler given back


def test_holds_while_its_file_exists(monkeypatch, tmp_path):
    """Inert without the variable or the file; with both it returns only once another thread removes the file."""
    import threading

    hold = tmp_path / "hold"
    monkeypatch.delenv(HOLD_WHILE, raising=False)
    hold.write_text("")
    hold_point()                                           # no variable
    monkeypatch.setenv(HOLD_WHILE, str(tmp_path / "absent"))
    hold_point()                                           # no file
    monkeypatch.setenv(HOLD_WHILE, str(hold))
    released = threading.Event()
    t = threading.Thread(target=lambda: (hold_point(), released.set()))
    t.start()
    assert not released.wait(0.3)                          # still held while the file exists
    hold.unlink()
    assert released.wait(30)
    t.join()
