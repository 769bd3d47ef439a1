"""The Ray execution layer (src/parallel.py): dynamic splitting of the region count, the sweep as Ray
tasks, a worker process killed by its pid mid-count and mid-sweep, an unreachable cluster address.

The tests that need Ray share one embedded Ray with 2 CPUs (the module-scoped fixture ray_session); the
killed sweep runs in a subprocess with a Ray of its own, whose worker pauses after a known epoch
(src/core/fault_hooks.py) and is killed there.
"""
import json
import os
import signal
import socket
import threading
import time

import numpy as np
import pytest
import torch
from conftest import SaveRecorder, pause_env, random_net, run_cli, wait_for_pause

from src.core.box import Box
from src.counting.driver import count_run
from src.counting.walk_driver import OrderedWork, run_search
from src.stability.interval import interval_bounds
from src.io.weights_file import save_net

TOL = 1e-6
KILL_NET = ([6, 24, 16, 1], 3)          # about 44,000 regions, ~5 s of lp work on one core
CKPT_NET = ([6, 16, 14, 1], 3)          # about 21,000 regions, ~1.5 s


def _cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])          # utime + stime


def _busy(pid, seconds=0.3, ticks=3):
    """Is process pid computing (at least `ticks` clock ticks of CPU in `seconds`)? False when it is gone."""
    try:
        a = _cpu_ticks(pid)
        time.sleep(seconds)
        return _cpu_ticks(pid) - a >= ticks
    except (FileNotFoundError, ProcessLookupError):
        return False


def _patterns(net, box, fixed, **kw):
    found = []
    out = run_search(net, box, fixed, TOL, lambda b: found.append(tuple(int(v) for v in b)), **kw)
    return found, out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---- the ordered queue of the dynamic splitting (no Ray) ------------------------------------------------
def test_ordered_work_emits_in_order_whatever_order_slices_finish():
    rng = np.random.default_rng(0)
    work = OrderedWork([""])
    out = []
    emit = out.extend
    leaves = []
    for _ in range(60):                              # random slices: each finishes a random running item
        running = []
        while len(running) < 3 and (group := work.take(int(rng.integers(1, 3)))):
            running.append(group)
        if not running:
            break
        for it in rng.permutation(len(running)):
            group = running[it]
            p = group[0].prefix
            rest = [g.prefix for g in group[1:]]         # a slice of two roots finishes the first one only
            if len(p) >= 6:                          # a leaf subtree: its patterns, nothing left
                pats = [p + "a", p + "b"]
                work.finish(group, pats, 2, rest)
                leaves += pats
            else:                                    # one pattern, then the rest split in two
                work.finish(group, [p + "-"], 1, [p + "0", p + "1"] + rest)
                leaves.append(p + "-")
            fr = work.frontier()
            assert fr == sorted(fr) and all(not b.startswith(a) for a, b in zip(fr, fr[1:]))
        work.flush(emit)
    assert out == sorted(out) and len(out) == len(set(out)) and not work.items
    assert sorted(leaves) == out


def test_ordered_work_frontier_covers_unflushed_patterns():
    work = OrderedWork(["0", "1"])
    a, b = work.take(), work.take()
    assert work.take() == [] and a[0].prefix == "0" and b[0].prefix == "1"
    work.finish(b, ["1x"], 1, ["11"])                # the later subtree finishes first: held back
    out = []
    work.flush(out.extend)
    assert out == [] and work.frontier() == ["0", "1"]   # "1" is re-walked on resume, "11" is inside it
    work.finish(a, ["0x"], 1, [])
    work.flush(out.extend)
    assert out == ["0x", "1x"] and work.frontier() == ["11"]
    c = work.take()
    work.finish(c, [], 0, ["11"])                    # no progress: waits again with a longer slice
    assert c[0].state == "todo" and c[0].grow == 2.0 and work.frontier() == ["11"]
    work = OrderedWork(["00", "01", "10", "11"])
    g = work.take(3)                                 # three consecutive subtrees in one slice
    assert [x.prefix for x in g] == ["00", "01", "10"] and work.take(3)[0].prefix == "11"
    work.finish(g, ["00x", "01x"], 2, ["0110", "0111", "10"])
    assert work.frontier() == ["00", "01", "10", "11"]   # nothing emitted yet: "11" still runs
    out = []
    assert work.flush(out.extend) == 2 and out == ["00x", "01x"]
    assert work.frontier() == ["0110", "0111", "10", "11"]


def test_ordered_work_splits_the_shortest_waiting_prefix_until_enough_wait():
    """split(): children in place (order kept), the stable bit only where one is fixed, never past a full
    pattern, nothing running or done is touched."""
    work = OrderedWork([""])
    assert work.split(4, 5) == 3 and [it.prefix for it in work.items] == ["00", "01", "10", "11"]
    work.take(2)
    assert work.split(3, 5) == 1                              # "10" (the shortest waiting, first) is split
    assert [it.prefix for it in work.items] == ["00", "01", "100", "101", "11"]
    assert [it.state for it in work.items] == ["run", "run", "todo", "todo", "todo"]
    fixed = np.array([-1, -1, 1, 0, -1], np.int8)             # units 2 and 3 are stable (on, off)
    work = OrderedWork(["01"])
    assert work.split(2, 5, fixed) == 3 and [it.prefix for it in work.items] == ["01100", "01101"]
    work = OrderedWork(["0110", "11111"])
    assert work.split(10, 5) == 1 and [it.prefix for it in work.items] == ["01100", "01101", "11111"]
    assert work.split(10, 5) == 0                             # only full patterns wait: nothing to split
    fr = work.frontier()
    assert fr == sorted(fr)


# ---- unreachable cluster (no Ray started) -------------------------------------------------------------------
@pytest.mark.slow
def test_unreachable_address_one_line_exit_2_nothing_written(tmp_path):
    port = _free_port()
    w = tmp_path / "net"
    w.mkdir()
    save_net(random_net([2, 3, 1], seed=0), w / "weights.dat")
    before = sorted(p.name for p in w.iterdir())
    out = tmp_path / "out"
    r = run_cli("count_linear_regions.py", "-w", w / "weights.dat", "-q", "--workers", "2", "--ray-address",
                f"127.0.0.1:{port}", "-o", out, timeout=120, env={"RAY_ADDRESS": None})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert r.stderr.startswith(f"error: --ray-address 127.0.0.1:{port}: cannot reach a Ray cluster there (")
    assert not out.exists() and sorted(p.name for p in w.iterdir()) == before
    models = tmp_path / "models"
    r = run_cli("train_bulk_script.py", "--models-dir", models, "-a", "mlp:4", "--epochs", "1", "--ray-address",
                f"127.0.0.1:{port}", timeout=120, env={"RAY_ADDRESS": f"127.0.0.1:{port}"})
    assert r.returncode == 2 and r.stderr.count("\n") == 1
    assert r.stderr.startswith(f"error: --ray-address 127.0.0.1:{port}: cannot reach a Ray cluster there (")
    assert not models.exists()


# ---- counting on Ray ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_two_workers_write_the_same_files(tmp_path, ray_session):
    files = {}
    for workers in (1, 2):
        d = tmp_path / f"w{workers}"
        d.mkdir()
        save_net(random_net([3, 8, 6, 1], seed=5, bias_scale=0.4), d / "weights.dat")
        s = count_run(d / "weights.dat", backend="lp", workers=workers, progress=False, checkpoint_every=0)
        assert s["complete"] and s["count"] > 50
        files[workers] = (d / "activation_pattern_abhinav_input_0_1.dat").read_bytes()
    assert files[1] == files[2]


@pytest.mark.slow
def test_checkpoints_with_two_workers_are_consistent(ray_session):
    """Every checkpoint's frontier holds exactly the patterns not emitted when it was saved."""
    net = random_net(*CKPT_NET[:1], seed=CKPT_NET[1], bias_scale=0.4)
    box = Box.uniform(CKPT_NET[0][0])
    fixed = interval_bounds(net, box).fixed_bits()
    full, _ = _patterns(net, box, fixed)
    found = []
    every = SaveRecorder(found)
    out = run_search(net, box, fixed, TOL, lambda b: found.append(tuple(int(v) for v in b)), workers=2,
                     checkpoint=every)
    saves = every.saves
    assert out.complete and found == full and out.tasks > 2
    assert len(saves) >= 3
    for k in sorted({0, len(saves) // 2, len(saves) - 1}):
        n, frontier = saves[k]
        rest, o = _patterns(net, box, fixed, roots=frontier)
        assert o.complete and found[:n] + rest == full, k


@pytest.mark.slow
def test_a_worker_killed_mid_count_loses_nothing(ray_session):
    net = random_net(*KILL_NET[:1], seed=KILL_NET[1], bias_scale=0.4)
    box = Box.uniform(KILL_NET[0][0])
    fixed = interval_bounds(net, box).fixed_bits()
    full, _ = _patterns(net, box, fixed)
    events, killed = [], {}

    def killer():
        while not killed and not done.is_set():
            for pid in {e["pid"] for e in list(events)}:
                if _busy(pid):                       # mid-slice: computing right now
                    os.kill(pid, signal.SIGKILL)
                    killed.update(pid=pid, at=time.time())
                    return
            time.sleep(0.05)

    done = threading.Event()
    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        found, out = _patterns(net, box, fixed, workers=2, trace=events.append)
    finally:
        done.set()
        t.join()
    assert killed, "no worker could be killed mid-slice: the count was too short"
    assert out.complete and found == full                 # identical and complete: nothing lost or repeated
    late = [e for e in events if e["returned"] > killed["at"] + 0.5]
    assert late and all(e["pid"] != killed["pid"] for e in late)


@pytest.mark.slow
def test_the_cli_joins_a_running_cluster_by_its_address(tmp_path, ray_session):
    """--ray-address with --workers 1: the count runs on every CPU of that cluster (here this module's)."""
    addr = ray_session.get_runtime_context().gcs_address
    net = random_net([3, 5, 4, 1], seed=9, bias_scale=0.4)
    files = []
    for extra in ([], ["--ray-address", addr]):
        d = tmp_path / ("joined" if extra else "alone")
        d.mkdir()
        save_net(net, d / "weights.dat")
        r = run_cli("count_linear_regions.py", "-w", d / "weights.dat", "-q", "--checkpoint-every", "0", *extra,
                    timeout=300)
        assert r.returncode == 0, r.stderr
        s = json.loads((d / "regions_input_0_1.json").read_text())
        assert s["complete"] and (s["stats"]["tasks"] > 1) == bool(extra)     # slices on Ray only when joined
        files.append((d / "activation_pattern_abhinav_input_0_1.dat").read_bytes())
    assert files[0] == files[1]


# ---- training on Ray ------------------------------------------------------------------------------------
SWEEP = ["-s", "0", "--l1", "0", "--adv", "none", "--dropout", "0,0.3", "-a", "mlp:32", "--epochs", "4",
         "--train-subset", "3000", "--seed", "1", "-q"]
KILL_AFTER = 2                  # the first run to finish its epoch 2 pauses there and its worker is killed


@pytest.mark.slow
def test_sweep_on_two_workers_survives_a_killed_worker(tmp_path):
    import src.training.train as training

    models = tmp_path / "models"
    marker = tmp_path / "pause.json"
    proc = run_cli("train_bulk_script.py", *SWEEP, "--models-dir", models, "--workers", "2",
                   env=pause_env(marker, f"epochs:{KILL_AFTER}"), background=True)
    paused = wait_for_pause(proc, marker, timeout=600)
    assert paused["pid"] != proc.pid and paused["done"] == KILL_AFTER     # a Ray worker paused, not the driver
    killed = [d for d in sorted(models.glob("fcnn_run_*"))
              if f" pid {paused['pid']} " in (d / "train.log").read_text().splitlines()[0]]
    assert len(killed) == 1
    d = killed[0]
    assert len(json.loads((d / "metrics.json").read_text())["epochs"]) == KILL_AFTER
    os.kill(paused["pid"], signal.SIGKILL)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    for i in (0, 1):
        run = models / f"fcnn_run_{i}"
        assert training.is_complete(run)
        assert json.loads((run / "config.json").read_text())["threads"] == 1
    log = (d / "train.log").read_text()
    assert f"resuming after epoch {KILL_AFTER}" in log
    assert len(json.loads((d / "metrics.json").read_text())["epochs"]) == 4
    # the retried run ends with the weights of an uninterrupted one
    cfg = json.loads((d / "config.json").read_text())
    ref = training.TrainConfig(**{k: v for k, v in cfg.items() if k != "versions"})
    training.train_run(ref, tmp_path / "reference", quiet=True, bars=False)
    a = torch.load(d / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "reference" / "model.pt", weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
