"""--count-only: an exact count that keeps no pattern file, only a checkpoint of kilobytes.

The count equals the brute-force set's size; a count killed with SIGKILL or stopped with Ctrl-C resumes from its
checkpoint (the count, the last pattern, the data patterns found, the frontier) to the same number; a count that
kept its patterns can go on without them; what cannot be continued is refused with one error line.
"""
import json
import os
import signal

import numpy as np
import pytest
from conftest import TOL, load_script, pause_env, random_net, reference, run_cli, spec, wait_for_pause

import src.counting.driver as driver
from src.core.box import Box
from src.core.errors import ToolError
from src.counting.driver import count_run
from src.counting.walk_driver import run_search
from src.io.files import file_sha256
from src.io.pattern_file import read_patterns, write_patterns
from src.io.records import read_checkpoint, write_checkpoint, write_frontier
from src.io.weights_file import save_net
from src.stability.interval import interval_bounds

CLI = "count_linear_regions.py"
SHAPE, SEED = [3, 8, 8, 1], 0              # 159 regions
DOMAIN = "input_0_1"
PATTERNS = f"activation_pattern_abhinav_{DOMAIN}.dat"
CHECKPOINT = f"checkpoint_{DOMAIN}.json"
SUMMARY = f"regions_{DOMAIN}.json"


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The pattern set of the count that keeps its patterns (16 units: beyond brute force, which checks the
    lp backend on smaller nets, and the net of `stopped` below here)."""
    d = tmp_path_factory.mktemp("reference")
    save_net(random_net(SHAPE, SEED), d / "weights.dat")
    s = count_run(d / "weights.dat", progress=False, checkpoint_every=0)
    out = {p.tobytes() for p in read_patterns(d / PATTERNS)}
    assert s["complete"] and len(out) == s["count"] == 159
    return out


def _run_dir(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    save_net(random_net(SHAPE, SEED), d / "weights.dat")
    return d


def _leftovers(d):
    return sorted(p.name for p in d.iterdir() if p.name.startswith((".", "checkpoint_", "frontier_", "activation_")))


def test_the_count_is_the_brute_force_count_and_no_pattern_file_is_written(tmp_path, ref):
    d = _run_dir(tmp_path)
    s = count_run(d / "weights.dat", progress=False, keep_patterns=False, checkpoint_every=1e-9)
    assert s["complete"] and s["count"] == len(ref) and s["pattern_file"] is None and s["backend"] == "lp"
    assert s["lower_bound"] == s["count"] and "--count-only" in s["note"]
    assert _leftovers(d) == []
    assert driver.count_status(d / "weights.dat", Box.uniform(3), TOL)[0] == "complete"
    line = driver.final_line(s, d)
    assert line.startswith(f"{len(ref)} linear regions (complete") and line.endswith(str(d / SUMMARY))


@pytest.mark.slow
def test_sigkill_twice_then_resume_gives_the_same_count(tmp_path, ref):
    """Killed with kill -9 at a checkpoint, twice: the checkpoint alone (no partial file) carries the count on."""
    d = _run_dir(tmp_path)
    saved, spent = 0, 0.0
    for k in range(2):
        marker = tmp_path / f"pause{k}.json"
        proc = run_cli(CLI, "-w", d / "weights.dat", "-q", "--count-only", "--checkpoint-every", "1e-9",
                       *(["--resume"] if k else []), env=pause_env(marker, f"patterns:{saved + 5}"), background=True)
        paused = wait_for_pause(proc, marker)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        ck = read_checkpoint(d / CHECKPOINT)
        assert ck["bytes"] is None and ck["patterns"] == paused["done"] >= saved + 5 and ck["frontier"]
        assert len(ck["last_pattern"]) == 4 and ck["runs"] == k + 1 and ck["enumeration_seconds"] >= spent
        assert _leftovers(d) == [CHECKPOINT]                  # no pattern file, partial or not
        saved, spent = ck["patterns"], ck["enumeration_seconds"]
    assert saved < len(ref)
    main = load_script(CLI).main
    r = run_cli(main, "-w", d / "weights.dat", "-q", "--resume")            # it keeps no patterns to resume from
    assert r.returncode == 2 and r.stderr.count("error:") == 1
    assert CHECKPOINT in r.stderr and "--count-only" in r.stderr
    r = run_cli(main, "-w", d / "weights.dat", "--remaining", "50")       # what it has left, from its checkpoint
    assert r.returncode == 0, r.stderr
    assert run_cli(main, "-w", d / "weights.dat", "--status").stdout.split()[0] == "incomplete"    # no summary yet
    assert run_cli(main, "-w", d / "weights.dat", "--status", "--tol", "1e-5").stdout.split()[0] == "none"
    r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--count-only", "--resume", "--checkpoint-every", "1e-9")
    assert r.returncode == 0, r.stderr
    s = json.loads((d / SUMMARY).read_text())
    assert s["complete"] and s["count"] == len(ref) and s["stats"]["patterns_at_start"] == saved
    assert s["times"]["runs"] == 3 and s["times"]["enumeration_all_runs"] >= spent
    assert _leftovers(d) == []
    assert run_cli(main, "-w", d / "weights.dat", "--status").stdout.split()[0] == "complete"


@pytest.mark.slow
def test_ctrl_c_keeps_the_checkpoint_and_resume_ends_once(tmp_path, ref):
    d = _run_dir(tmp_path)
    marker = tmp_path / "pause.json"
    proc = run_cli(CLI, "-w", d / "weights.dat", "--count-only", "--checkpoint-every", "1e-9",
                   env=pause_env(marker, "patterns:40"), background=True)
    wait_for_pause(proc, marker)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    s = json.loads((d / SUMMARY).read_text())
    ck = read_checkpoint(d / CHECKPOINT)
    assert not s["complete"] and s["interrupted"] and s["pattern_file"] is None
    assert ck["patterns"] == s["count"] >= 40 and ck["frontier"]        # the state the summary describes
    assert "--resume --count-only" in out and _leftovers(d) == [CHECKPOINT]
    main = load_script(CLI).main
    assert run_cli(main, "-w", d / "weights.dat", "--status").stdout.split()[0] == "incomplete"
    r = run_cli(main, "-w", d / "weights.dat", "-q", "--count-only", "--resume")
    assert r.returncode == 0, r.stderr
    s2 = json.loads((d / SUMMARY).read_text())
    assert s2["complete"] and s2["count"] == len(ref) and s2["stats"]["patterns_at_start"] == s["count"]
    r = run_cli(main, "-w", d / "weights.dat", "--count-only", "--resume")
    assert r.returncode == 0 and "already complete" in r.stderr
    assert json.loads((d / SUMMARY).read_text()) == s2


@pytest.fixture(scope="module")
def stopped():
    """The net of SHAPE, [3, 5, 4, 1]-sized for speed, walked until 7 patterns: (net, count, found, frontier)."""
    net = random_net([3, 5, 4, 1], seed=9, bias_scale=0.4)
    box = Box.uniform(3)
    found = []
    out = run_search(net, box, interval_bounds(net, box).fixed_bits(), TOL,
                     lambda b: found.append(np.asarray(b, np.uint8).copy()), stop_flag=lambda: len(found) >= 7)
    assert not out.complete
    return net, len(reference(spec([3, 5, 4, 1], 9, 0.4))), np.array(found), list(out.frontier)


@pytest.mark.parametrize("state", ["frontier file", "checkpoint"])
def test_a_count_that_kept_its_patterns_goes_on_without_them(tmp_path, stopped, monkeypatch, state):
    net, n_ref, found, frontier = stopped
    save_net(net, tmp_path / "weights.dat")
    meta = {"weights_sha256": file_sha256(tmp_path / "weights.dat"), "tol": TOL, "layer_sizes": net.layer_sizes}
    partial = tmp_path / f".{PATTERNS}.partial"
    if state == "frontier file":
        write_patterns(tmp_path / PATTERNS, net.layer_sizes, found)
        write_frontier(tmp_path / f"frontier_{DOMAIN}.json", {"backend": "lp", **meta, "frontier": frontier})
    else:
        write_patterns(partial, net.layer_sizes, found)
        write_checkpoint(tmp_path / CHECKPOINT, {"format": "region-count-checkpoint", **meta, "domain": DOMAIN,
                                                 "backend": "lp", "patterns": len(found),
                                                 "bytes": partial.stat().st_size, "frontier": frontier,
                                                 "written": "now"})
    first = []
    real_save = driver.Checkpointer.save

    def save(self, fr=None, held=None):
        real_save(self, fr, held)
        if not first:
            first.append((read_checkpoint(self.path), partial.exists()))
    monkeypatch.setattr(driver.Checkpointer, "save", save)
    monkeypatch.setattr(driver, "read_patterns", lambda *a, **k: pytest.fail("patterns read into memory"))
    s = count_run(tmp_path / "weights.dat", resume=True, progress=False, tol=TOL, keep_patterns=False,
                  checkpoint_every=1e-9)
    ck, partial_then = first[0]
    assert ck["bytes"] is None and ck["patterns"] == len(found) and ck["frontier"] == frontier
    assert bytes.fromhex(ck["last_pattern"]) == np.packbits(found[-1]).tobytes()
    assert s["complete"] and s["count"] == n_ref and s["stats"]["patterns_at_start"] == len(found)
    assert _leftovers(tmp_path) == []                       # the old pattern file, partial or not, is gone


def test_what_cannot_be_continued_without_patterns_is_refused(tmp_path, stopped):
    net, _, found, _ = stopped
    save_net(net, tmp_path / "weights.dat")
    write_patterns(tmp_path / PATTERNS, net.layer_sizes, found[::-1])     # no frontier: a MILP backend's file
    with pytest.raises(ToolError, match=f"{PATTERNS}.*no lp frontier.*without --count-only"):
        count_run(tmp_path / "weights.dat", resume=True, progress=False, tol=TOL, keep_patterns=False)
    with pytest.raises(ToolError, match="--count-only needs --backend lp.*--backend scip"):
        count_run(tmp_path / "weights.dat", progress=False, backend="scip", keep_patterns=False)
    main = load_script(CLI).main
    r = run_cli(main, "-w", tmp_path / "weights.dat", "--count-only", "--estimate", "10")
    assert r.returncode == 2 and "--count-only is a setting of the count" in r.stderr
    meta = {"weights_sha256": file_sha256(tmp_path / "weights.dat"), "tol": TOL, "layer_sizes": net.layer_sizes}
    ck = {"format": "region-count-checkpoint", **meta, "domain": DOMAIN, "backend": "lp", "patterns": 3,
          "bytes": None, "frontier": ["1"], "written": "now", "data_patterns_found": []}
    (tmp_path / CHECKPOINT).write_text(json.dumps(ck))
    with pytest.raises(ToolError, match=f"{CHECKPOINT}:.*last_pattern: missing"):
        count_run(tmp_path / "weights.dat", resume=True, progress=False, tol=TOL, keep_patterns=False)
    (tmp_path / CHECKPOINT).write_text(json.dumps(dict(ck, last_pattern="zz")))
    with pytest.raises(ToolError, match="last_pattern: expected 4 lowercase hex digits"):
        count_run(tmp_path / "weights.dat", resume=True, progress=False, tol=TOL, keep_patterns=False)


class HeldBackSession:
    """src.parallel.Session's part that the parallel walk uses, in this process, two slots; of the running slices
    the one submitted last finishes first, so later subtrees are done before earlier ones and their patterns
    are held behind them (deterministically, not by the timing of two workers)."""
    slots = 2

    def __init__(self):
        self.calls = {}

    def put(self, obj):
        return obj

    def submit(self, fn, *args):
        h = len(self.calls)
        self.calls[h] = (fn, args)
        return h

    def wait(self, handles, timeout=None):
        return [max(handles)]

    def result(self, h):
        fn, args = self.calls.pop(h)
        return fn(*args)

    def cancel(self, handles):
        for h in handles:
            self.calls.pop(h, None)


def test_held_patterns_and_their_frontier_are_exactly_what_was_not_emitted(monkeypatch):
    """At every checkpoint of a parallel walk: the patterns emitted, those held (found behind an unfinished
    earlier subtree) and those below the held state's frontier are the whole set, each once (what a --count-only
    checkpoint counts and resumes from)."""
    import src.counting.walk_driver as wd
    from src.counting.walk_driver import _run_parallel, make_engine
    from src.core.patterns import row_keys

    net = random_net(SHAPE, SEED)
    box = Box.uniform(3)
    fixed = interval_bounds(net, box).fixed_bits()
    full = []
    run_search(net, box, fixed, TOL, lambda b: full.append(np.asarray(b, np.uint8).copy()))
    full = set(row_keys(np.array(full)))
    monkeypatch.setattr(wd, "slice_seconds", lambda *a, **k: 0.002)      # many short slices, many held
    emitted, seen = [], []

    class Every:
        def due(self):
            return True

        def save(self, frontier, held=None):
            seen.append((list(emitted), held))
    options = wd.EngineOptions()
    eng = make_engine(net, box, fixed, TOL, options)
    out = _run_parallel(HeldBackSession(), eng, (net, box, fixed, TOL, options),
                        lambda b: emitted.append(np.asarray(b, np.uint8).copy()), None, None, None, Every(), None)
    assert out.complete and set(row_keys(np.array(emitted))) == full and len(emitted) == len(full)
    assert sum(1 for _, h in seen if h.count) >= 3                       # the order held patterns back
    for before, held in seen:
        below = []
        if held.frontier:
            run_search(net, box, fixed, TOL, lambda b: below.append(np.asarray(b, np.uint8).copy()),
                       roots=held.frontier)
        keys = row_keys(np.array(before)) + [r.tobytes() for rows in held.packed for r in rows] + \
            row_keys(np.array(below))
        assert len(keys) == len(full) and set(keys) == full


def test_a_parallel_count_only_checkpoint_keeps_what_was_found_ahead(tmp_path, ref, monkeypatch, default_sigint):
    """A --count-only checkpoint taken while patterns are held behind an unfinished subtree counts them and
    leaves them out of its frontier (a count that writes its patterns would walk them again): killed there
    (its copy resumed in another directory) or stopped with Ctrl-C later, the count ends exact."""
    import shutil

    import src.counting.walk_driver as wd

    class StoppedSession(HeldBackSession):
        parallel, answered = True, 0

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def wait(self, handles, timeout=None):
            self.answered += 1
            if self.answered == 3:
                os.kill(os.getpid(), signal.SIGINT)          # the walk's Ctrl-C flag: it stops soon
            return super().wait(handles)
    d = _run_dir(tmp_path)
    killed = tmp_path / "killed"
    monkeypatch.setattr(wd, "slice_seconds", lambda *a, **k: 0.002)
    monkeypatch.setattr(wd, "Session", lambda *a, **k: StoppedSession())
    real_save = driver.Checkpointer.save
    at_kill = []

    def save(self, fr=None, held=None):
        real_save(self, fr, held)
        if held is not None and held.count and not killed.exists():      # the state a kill -9 would leave
            shutil.copytree(d, killed)
            at_kill.append((len(self.sink), held.count))
    monkeypatch.setattr(driver.Checkpointer, "save", save)
    s = count_run(d / "weights.dat", progress=False, keep_patterns=False, workers=2, checkpoint_every=1e-9)
    monkeypatch.undo()
    assert s["interrupted"] and not s["complete"] and killed.exists()
    emitted, held = at_kill[0]
    assert read_checkpoint(killed / CHECKPOINT)["patterns"] == emitted + held           # the held ones count
    for run, count in ((d, s["count"]), (killed, None)):
        ck = read_checkpoint(run / CHECKPOINT)
        assert count is None or ck["patterns"] == count
        assert ck["patterns"] + len(_below(run, ck["frontier"])) == len(ref)     # each pattern counted once
        s2 = count_run(run / "weights.dat", progress=False, keep_patterns=False, resume=True)
        assert s2["complete"] and s2["count"] == len(ref) and _leftovers(run) == []


def _below(d, frontier):
    from src.io.readers import load_net
    net = load_net(d / "weights.dat")
    box = Box.uniform(3)
    found = []
    run_search(net, box, interval_bounds(net, box).fixed_bits(), TOL, found.append, roots=frontier)
    return found


@pytest.mark.slow
def test_two_ray_workers_count_the_same(tmp_path, ref, ray_session):
    d = _run_dir(tmp_path)
    s = count_run(d / "weights.dat", progress=False, keep_patterns=False, workers=2, checkpoint_every=1e-9)
    assert s["complete"] and s["count"] == len(ref) and s["stats"]["ray_nodes"] >= 1 and _leftovers(d) == []


def test_the_kept_state_of_the_1e8_count_belongs_to_its_net():
    """benchmarks/count_1e8/ (benchmarks/bench_count_1e8.py): the checkpoint (or final summary) names the weights
    kept beside it, so `bench_count_1e8.py run` can continue it on any machine."""
    from conftest import ROOT

    from src.io.readers import load_net
    from src.io.records import read_regions

    d = ROOT / "benchmarks" / "count_1e8"
    net = load_net(d / "weights.dat")
    state = read_checkpoint(d / CHECKPOINT) if (d / CHECKPOINT).exists() else read_regions(d / SUMMARY)
    assert state["weights_sha256"] == file_sha256(d / "weights.dat") and state["layer_sizes"] == [784, 15, 15, 10]
    assert net.layer_sizes == state["layer_sizes"] and state["tol"] == TOL
    if "bytes" in state:
        assert state["bytes"] is None and state["frontier"]
    else:
        assert state["complete"] and state["pattern_file"] is None
