"""Resuming a count with the lp backend at any size.

Continuing from its frontier (frontier_<domain>.json after a time limit or Ctrl-C, or a checkpoint after a
kill), the count never reads the patterns found so far into memory: it streams the file once in blocks
(src.counting.driver.scan_resumed_patterns: how many, the last one, the data-certified ones among them,
checked against the stable units and the lp order) and appends after them. Without a frontier (a
pattern file of another backend, or whose summary was lost) the walk starts again and skips the known
patterns. Kills with real signals: tests/test_kill_resume.py.
"""
import numpy as np
import pytest
from conftest import TOL, as_set, random_net, reference, spec

import src.counting.driver as driver
from src.core.box import Box
from src.core.errors import ToolError
from src.counting.driver import count_run, scan_resumed_patterns
from src.counting.walk_driver import run_search
from src.io.files import file_sha256
from src.io.pattern_file import iter_pattern_blocks, read_patterns, write_patterns
from src.io.records import write_checkpoint, write_frontier
from src.io.weights_file import save_net
from src.stability.interval import interval_bounds

SHAPE, SEED, BIAS = [3, 5, 4, 1], 9, 0.4
PATTERNS = "activation_pattern_abhinav_input_0_1.dat"


@pytest.fixture(scope="module")
def stopped(tmp_path_factory):
    """The net, its brute-force set, and an lp walk stopped after 7 patterns: (found in order, frontier)."""
    net = random_net(SHAPE, seed=SEED, bias_scale=BIAS)
    box = Box.uniform(SHAPE[0])
    found = []
    out = run_search(net, box, interval_bounds(net, box).fixed_bits(), TOL,
                     lambda b: found.append(np.asarray(b, np.uint8).copy()), stop_flag=lambda: len(found) >= 7)
    assert not out.complete and len(found) == 7
    ref = reference(spec(SHAPE, SEED, BIAS))
    assert len(ref) > 20
    return net, ref, np.array(found), list(out.frontier)


def _no_reading_into_memory(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the resumed lp count read the known patterns into memory")
    monkeypatch.setattr(driver, "read_patterns", refuse)


def _meta(tmp_path, net):
    return {"weights_sha256": file_sha256(tmp_path / "weights.dat"), "tol": TOL, "layer_sizes": net.layer_sizes}


@pytest.mark.parametrize("state", ["frontier file", "checkpoint"])
def test_lp_resume_streams_the_known_patterns(tmp_path, stopped, monkeypatch, state):
    net, ref, found, frontier = stopped
    save_net(net, tmp_path / "weights.dat")
    meta = _meta(tmp_path, net)
    if state == "frontier file":             # a count that ended at a time limit
        write_patterns(tmp_path / PATTERNS, net.layer_sizes, found)
        write_frontier(tmp_path / "frontier_input_0_1.json", {"backend": "lp", **meta, "frontier": frontier})
    else:                                    # a count killed after a checkpoint (+ a half-written line after it)
        partial = tmp_path / f".{PATTERNS}.partial"
        write_patterns(partial, net.layer_sizes, found)
        size = partial.stat().st_size
        with open(partial, "a") as fh:
            fh.write("1 0 1")
        write_checkpoint(tmp_path / "checkpoint_input_0_1.json",
                         {"format": "region-count-checkpoint", **meta, "domain": "input_0_1", "backend": "lp",
                          "patterns": len(found), "bytes": size, "frontier": frontier, "written": "now"})
    _no_reading_into_memory(monkeypatch)
    saved = []
    real_save = driver.Checkpointer.save

    def save(self, frontier=None, held=None):
        real_save(self, frontier, held)
        saved.append(driver.read_checkpoint(self.path))
    monkeypatch.setattr(driver.Checkpointer, "save", save)
    s = count_run(tmp_path / "weights.dat", backend="lp", resume=True, progress=False, tol=TOL, checkpoint_every=1e-9)
    monkeypatch.undo()
    # the resumed count's first checkpoint holds the known patterns, and says so (it said 0 before they
    # were counted from the start); the rate of --remaining starts there
    assert saved[0]["patterns"] == saved[0]["patterns_at_start"] == len(found) and saved[0]["frontier"] == frontier
    assert all(c["patterns_at_start"] == len(found) and c["started"] == saved[0]["started"] for c in saved)
    assert [c["patterns"] for c in saved] == sorted(c["patterns"] for c in saved)
    pats = read_patterns(tmp_path / PATTERNS, net.layer_sizes, dedupe=False)
    assert s["complete"] and s["count"] == len(ref) == len(pats) and as_set(pats) == ref
    assert np.array_equal(pats[:len(found)], found)              # the known ones kept, in place
    assert s["stats"]["patterns_at_start"] == len(found) and s["stats"]["resumed_from_frontier"]
    assert not list(tmp_path.glob(".*")) and not (tmp_path / "frontier_input_0_1.json").exists()


@pytest.mark.parametrize("every", [1, 3, 100])
def test_lp_resume_without_a_frontier_skips_the_known_patterns(tmp_path, stopped, every):
    """A pattern file without frontier (another backend's, or its summary lost): the walk starts again."""
    net, ref, _, _ = stopped
    save_net(net, tmp_path / "weights.dat")
    part = np.array(sorted(ref)[::every], np.uint8)[::-1]          # any order, as a MILP backend writes them
    write_patterns(tmp_path / PATTERNS, net.layer_sizes, part)
    s = count_run(tmp_path / "weights.dat", backend="lp", resume=True, progress=False, tol=TOL)
    pats = read_patterns(tmp_path / PATTERNS, net.layer_sizes, dedupe=False)
    assert s["complete"] and as_set(pats) == ref and len(pats) == len(ref)
    assert s["stats"]["patterns_at_start"] == len(part) and s["stats"]["new_patterns"] == len(ref) - len(part)


def test_scan_counts_and_finds_the_watched_patterns(tmp_path):
    rng = np.random.default_rng(0)
    keys = np.unique(rng.integers(0, 2 ** 19, 5000))
    pats = ((keys[:, None] >> np.arange(18, -1, -1)) & 1).astype(np.uint8)       # 19 bits: 3 bytes, zeros inside
    write_patterns(tmp_path / "p.dat", [2, 10, 9, 1], pats)
    absent = int(np.setdiff1d(np.arange(2 ** 19), keys)[0])
    watch = np.vstack([pats[[0, 17, 4000, -1]], (absent >> np.arange(18, -1, -1)) & 1])
    got = scan_resumed_patterns(tmp_path / "p.dat", [2, 10, 9, 1], np.full(19, -1), watch)
    assert got.count == len(pats) and got.last == np.packbits(pats[-1]).tobytes()
    assert got.hits == {np.packbits(p).tobytes() for p in pats[[0, 17, 4000, -1]]}
    small = [b for b in iter_pattern_blocks(tmp_path / "p.dat", chunk_bytes=1000)]
    assert len(small) > 50 and np.array_equal(np.concatenate(small), pats)


def test_scan_refuses_a_file_out_of_order_or_against_the_stable_units(tmp_path):
    pats = np.array([[0, 0, 1], [0, 1, 0], [0, 1, 0], [1, 0, 0]], np.uint8)
    write_patterns(tmp_path / "p.dat", [2, 3, 1], pats)
    with pytest.raises(ToolError, match=r"p\.dat: pattern 3 does not come after"):
        scan_resumed_patterns(tmp_path / "p.dat", [2, 3, 1], np.full(3, -1))
    write_patterns(tmp_path / "q.dat", [2, 3, 1], pats[[0, 1, 3]])
    with pytest.raises(ToolError, match=r"q\.dat: 2 of its 3 patterns contradict .*first: pattern 2"):
        scan_resumed_patterns(tmp_path / "q.dat", [2, 3, 1], np.array([-1, -1, 1]))


@pytest.mark.parametrize("text", [
    "n = [2, 3, 1]\n1 0 1\n0\t1 1\n\n1 1 1\r\n0 0 0\n",       # tabs, a blank line, CRLF: line by line
    "n = [2, 3, 1]\n" + "1 0 1\n0 1 1\n" * 40 + "0 0 0",       # the writer's layout, no final newline
])
def test_blocks_equal_the_whole_file_at_any_block_size(tmp_path, text):
    (tmp_path / "p.dat").write_bytes(text.encode())
    whole = read_patterns(tmp_path / "p.dat", dedupe=False)
    for size in (1, 5, 7, 64, 1 << 20):
        got = np.concatenate(list(iter_pattern_blocks(tmp_path / "p.dat", chunk_bytes=size)))
        assert np.array_equal(got, whole), size


def test_block_errors_name_the_line(tmp_path):
    (tmp_path / "p.dat").write_text("n = [2, 3, 1]\n" + "1 0 1\n" * 30 + "1 0 2\n" + "0 0 0\n" * 5)
    for size in (8, 1 << 20):
        with pytest.raises(ToolError, match=r"p\.dat:32: tokens must be 0 or 1"):
            list(iter_pattern_blocks(tmp_path / "p.dat", chunk_bytes=size))
    with pytest.raises(ToolError, match=r"p\.dat:3: the checkpointed part ends inside a line"):
        list(iter_pattern_blocks(tmp_path / "p.dat", max_bytes=len("n = [2, 3, 1]\n1 0 1\n1 0"), chunk_bytes=4))


def test_the_time_of_every_run_adds_up(tmp_path):
    """A count stopped twice with Ctrl-C and resumed to the end: its summary gives the enumeration seconds of all
    three runs and their number (the kills of tests/test_kill_resume.py check the same through checkpoints); a
    summary that does not say how long its earlier runs took gives no total."""
    import json
    import os
    import signal

    from conftest import pause_env, run_cli, wait_for_pause

    from src.io.records import read_regions, write_regions

    net = random_net([3, 8, 8, 1], 0)                       # 159 regions
    save_net(net, tmp_path / "weights.dat")
    cli, js = "count_linear_regions.py", tmp_path / "regions_input_0_1.json"
    spent = []
    for k, after in enumerate((40, 41)):      # the second run pauses at its first checkpoint with a new pattern
        marker = tmp_path / f"pause{k}.json"
        proc = run_cli(cli, "-w", tmp_path / "weights.dat", "-q", "--checkpoint-every", "1e-9",
                       *(["--resume"] if k else []), env=pause_env(marker, f"patterns:{after}"), background=True)
        wait_for_pause(proc, marker)
        os.kill(proc.pid, signal.SIGINT)
        proc.communicate(timeout=120)
        assert proc.returncode == 130
        t = read_regions(js)["times"]
        spent.append(t["enumeration"])
        assert t["runs"] == k + 1 and abs(t["enumeration_all_runs"] - sum(spent)) < 0.01
    r = run_cli(cli, "-w", tmp_path / "weights.dat", "-q", "--resume")
    assert r.returncode == 0, r.stderr
    s = read_regions(js)
    t = s["times"]
    assert s["complete"] and s["count"] == 159 and t["runs"] == 3
    assert abs(t["enumeration_all_runs"] - sum(spent) - t["enumeration"]) < 0.01
    assert "of enumeration in 3 runs" in r.stdout
    # the summary of an interrupted second run written before these fields: the earlier time is unknown
    fresh = tmp_path / "legacy"
    fresh.mkdir()
    save_net(net, fresh / "weights.dat")
    s = count_run(fresh / "weights.dat", backend="lp", progress=False, time_limit=1e-9, checkpoint_every=0)
    assert not s["complete"] and s["times"]["runs"] == 1
    legacy = json.loads((fresh / "regions_input_0_1.json").read_text())
    for key in ("enumeration_all_runs", "runs"):
        del legacy["times"][key]
    legacy["stats"]["patterns_at_start"] = 5
    write_regions(fresh / "regions_input_0_1.json", legacy)
    s = count_run(fresh / "weights.dat", backend="lp", progress=False, resume=True, checkpoint_every=0)
    assert s["complete"] and "runs" not in s["times"] and "enumeration_all_runs" not in s["times"]


def test_a_frontier_file_or_summary_of_other_weights_or_tol_is_refused(tmp_path):
    """--resume and --remaining check the frontier file itself (it names its weights and tol), and --resume the
    summary beside it: one error line naming the file, exit 2, nothing written."""
    from conftest import run_cli

    from src.io.records import read_frontier, read_regions, write_regions

    save_net(random_net(SHAPE, SEED, BIAS), tmp_path / "weights.dat")
    s = count_run(tmp_path / "weights.dat", backend="lp", progress=False, time_limit=1e-9, checkpoint_every=0)
    fr_path = tmp_path / "frontier_input_0_1.json"
    assert not s["complete"] and fr_path.exists()
    good = read_frontier(fr_path)
    for change, words in (({"tol": 1e-3}, "--tol 0.001"), ({"weights_sha256": "0" * 64}, "other weights")):
        write_frontier(fr_path, {**good, **change})
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        for flag in (["--resume"], ["--remaining", "20"]):
            r = run_cli("count_linear_regions.py", "-w", tmp_path / "weights.dat", "-q", *flag, timeout=120)
            lines = r.stderr.strip().splitlines()
            assert r.returncode == 2 and len(lines) == 1, (flag, r.stderr)
            assert lines[0].startswith(f"error: {flag[0]} {fr_path}") and words in lines[0], lines[0]
            assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_frontier(fr_path, good)
    js = tmp_path / "regions_input_0_1.json"                # the summary beside it is held to the same rule
    summary = read_regions(js)
    for change, words in (({"tol": 1e-3}, "--tol 0.001"), ({"weights_sha256": "0" * 64}, "other weights")):
        write_regions(js, {**summary, **change})
        before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
        r = run_cli("count_linear_regions.py", "-w", tmp_path / "weights.dat", "-q", "--resume", timeout=120)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1, r.stderr
        assert lines[0].startswith(f"error: --resume {js}") and words in lines[0], lines[0]
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    write_regions(js, summary)
    r = run_cli("count_linear_regions.py", "-w", tmp_path / "weights.dat", "-q", "--resume", timeout=120)
    assert r.returncode == 0, r.stderr
    assert as_set(read_patterns(tmp_path / PATTERNS)) == reference(spec(SHAPE, SEED, BIAS))
