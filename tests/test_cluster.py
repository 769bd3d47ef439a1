"""A real two-node Ray cluster on this machine (`ray start --head`, then `ray start --address`, one CPU each)
and the faults of docs/cluster.md: a count spread over both nodes, a node killed mid-count and mid-sweep, the
last node lost (one `error:` line, the checkpoint, --resume with and without Ray), and stale state (a dead
cluster's files, a stale RAY_ADDRESS, a port in use).

One cluster per module (the fixture `cluster`), in a private --temp-dir with token authentication (a private
token file through RAY_AUTH_TOKEN_PATH), so nothing of it touches /tmp/ray or ~/.ray. Every process it starts
is killed by its session id at the end, also when a test fails. Kills are triggered by the fault hook of
src/core/fault_hooks.py: a node started with RELU_TOOLKIT_PAUSE_AFTER in its environment pauses its workers
at a known point (a slice of >= K patterns, an epoch), the count's driver pauses at a checkpoint.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import pause_env, random_net, run_cli, wait_for_pause
from local_cluster import RAY, Cluster, _children, _free_port, _kill_session

from src.core.fault_hooks import HOLD_WHILE
from src.counting.driver import count_run
from src.io.weights_file import save_net

pytestmark = pytest.mark.slow

NET = ([6, 16, 14, 1], 3)               # about 21,000 regions: a few seconds of lp work per CPU
DOMAIN = "input_0_1"
PATTERNS = f"activation_pattern_abhinav_{DOMAIN}.dat"
CHECKPOINT = f"checkpoint_{DOMAIN}.json"
CLI = "count_linear_regions.py"
HEAD_HOLD = "hold-head"                  # while this file (in the cluster's root) exists, the head holds its slices


@pytest.fixture(scope="module")
def cluster():
    root = Path(tempfile.mkdtemp(prefix="rtk-ray-", dir="/tmp"))     # short: Ray's socket paths have a limit
    c = Cluster(root)
    try:
        c.start("head", env={HOLD_WHILE: str(c.root / HEAD_HOLD)})    # idle until a test creates the file
        c.start("node2")
        yield c
    finally:
        c.close()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The net's pattern file counted by one worker in this process (no Ray)."""
    d = tmp_path_factory.mktemp("reference")
    save_net(random_net(NET[0], seed=NET[1], bias_scale=0.4), d / "weights.dat")
    s = count_run(d / "weights.dat", backend="lp", progress=False, checkpoint_every=0)
    assert s["complete"] and s["count"] > 10000
    return d


def _run_dir(tmp_path, reference, name="run") -> Path:
    d = tmp_path / name
    d.mkdir()
    shutil.copy(reference / "weights.dat", d / "weights.dat")
    return d


def _same_patterns(d: Path, reference: Path) -> bool:
    return (d / PATTERNS).read_bytes() == (reference / PATTERNS).read_bytes()


def _summary(d: Path) -> dict:
    return json.loads((d / f"regions_{DOMAIN}.json").read_text())


# ---- the two-node cluster ----------------------------------------------------------------------------------
def test_a_count_through_the_address_is_identical(tmp_path, cluster, reference):
    """--ray-address with --workers 1: slices on every CPU of the cluster. (Whether node2 returns slices of so
    short a count depends on how fast its worker starts on this loaded machine; the next test makes a node2
    worker hold a slice, deterministically.)"""
    d = _run_dir(tmp_path, reference)
    r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--ray-address", cluster.address, "--checkpoint-every", "0",
                env=cluster.driver_env(), timeout=600)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                                   # nothing of Ray in the terminal
    s = _summary(d)
    assert s["complete"] and s["stats"]["workers"] == 1 and s["stats"]["tasks"] > 1    # slices on the cluster
    assert _same_patterns(d, reference)


def test_a_node_killed_mid_count_the_other_finishes_it(tmp_path, cluster, reference):
    """node2's workers pause before handing back their first slice (the fault hook of walk_slice, armed on
    node2's `ray start` only): the count cannot end while that slice is held. The head's workers hold every
    slice below the root until node2 has paused (the hold file of the head's `ray start`), so the head cannot
    finish the count alone: with the head's one CPU busy, Ray must place a slice on node2. node2 is killed
    there (raylet first, then every process of it), so the slice is lost in flight: Ray runs it again on the
    head, which finishes the count with the identical pattern file."""
    if cluster.alive("node2"):
        cluster.kill("node2")
    marker = tmp_path / "node2-paused.json"
    cluster.start("node2", env=pause_env(marker, "patterns:0"))
    d = _run_dir(tmp_path, reference)
    hold = cluster.root / HEAD_HOLD
    hold.write_text("")
    proc = run_cli(CLI, "-w", d / "weights.dat", "-q", "--ray-address", cluster.address, "--workers", "2",
                   "--checkpoint-every", "1", env=cluster.driver_env(), background=True)
    try:
        paused = wait_for_pause(proc, marker, timeout=300)
        hold.unlink()
        assert paused["pid"] in _children(cluster.raylet("node2"), "")       # a worker of node2
        cluster.kill("node2")
        out, err = proc.communicate(timeout=600)
    finally:
        hold.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert err == ""
    s = _summary(d)
    assert s["complete"] and s["stats"]["ray_nodes"] >= 1 and s["stats"]["nodes"] > 1
    assert _same_patterns(d, reference)


def test_a_sweep_through_the_address_survives_a_killed_node(tmp_path, cluster):
    """Two runs on the two nodes; node2's run pauses after its epoch 2 and node2 is killed there: the run is
    trained again on the head from its epoch-2 checkpoint (train.log says so) and both runs complete."""
    import src.training.train as training

    if cluster.alive("node2"):
        cluster.kill("node2")
    marker = tmp_path / "node2-paused.json"
    cluster.start("node2", env=pause_env(marker, "epochs:2"))
    models = tmp_path / "models"
    proc = run_cli("train_bulk_script.py", "-s", "0", "--l1", "0", "--adv", "none", "--dropout", "0,0.3", "-a",
                   "mlp:16", "--epochs", "3", "--train-subset", "1000", "--seed", "1", "-q", "--models-dir", models,
                   "--ray-address", cluster.address, env=cluster.driver_env(), background=True)
    try:
        paused = wait_for_pause(proc, marker, timeout=600)
        assert paused["pid"] in _children(cluster.raylet("node2"), "")
        cluster.kill("node2")
        out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    logs = {}
    for i in (0, 1):
        run = models / f"fcnn_run_{i}"
        assert training.is_complete(run)
        assert len(json.loads((run / "metrics.json").read_text())["epochs"]) == 3
        logs[i] = (run / "train.log").read_text()
    assert sum("resuming after epoch 2" in log for log in logs.values()) == 1


# ---- stale state: the embedded Ray starts anyway, or one line says what to do -----------------------------
@pytest.fixture(scope="module")
def dead_head():
    """A head started by `ray start --head` in a private RAY_TMPDIR and killed with SIGKILL: its
    ray_current_cluster file stays, naming an address where nothing listens."""
    root = Path(tempfile.mkdtemp(prefix="rtk-dead-", dir="/tmp"))
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    proc = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
                             f"--temp-dir={root / 'ray'}", "--disable-usage-stats", "--block"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, start_new_session=True)
    try:
        current = root / "ray" / "ray_current_cluster"
        deadline = time.time() + 120
        while not current.exists():
            assert proc.poll() is None and time.time() < deadline, "the head did not start"
            time.sleep(0.2)
        _kill_session(proc.pid)
        proc.wait(timeout=60)
        address = current.read_text().strip()
        assert address.endswith(f":{port}")
        yield root, address
    finally:
        _kill_session(proc.pid)
        shutil.rmtree(root, ignore_errors=True)


def test_losing_the_last_node_one_line_then_resume(tmp_path, cluster, dead_head, reference):
    """The head is the last node (node2 is gone): its raylet is killed while the driver pauses at a checkpoint.
    One `error:` line naming what happened and the checkpoint, exit 2, Ray's messages in the log file it names;
    --resume finishes the count without Ray and, from a copy of the same state, on an embedded Ray started
    among stale state: RAY_TMPDIR points Ray at the dead head's temp dir, whose ray_current_cluster names a
    dead GCS (ray.init without address='local' tried to join it: "When connecting to an existing cluster,
    num_cpus ... must not be provided"), and the dashboard agent's default port 52365 is taken. Both resumed
    pattern files are identical to the reference."""
    if cluster.alive("node2"):
        cluster.kill("node2")
    cluster.wait_cpus(1)
    d = _run_dir(tmp_path, reference)
    marker = tmp_path / "driver-paused.json"
    proc = run_cli(CLI, "-w", d / "weights.dat", "-q", "--ray-address", cluster.address, "--workers", "2",
                   "--checkpoint-every", "0.5", env=cluster.driver_env(**pause_env(marker, "patterns:2000")),
                   background=True)
    try:
        paused = wait_for_pause(proc, marker, timeout=300)
        assert paused["pid"] == proc.pid
        os.kill(cluster.raylet("head"), signal.SIGKILL)
        proc.send_signal(signal.SIGUSR1)                  # ends the pause (and asks for a checkpoint)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = err.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1, err
    ck = json.loads((d / CHECKPOINT).read_text())
    assert lines[0].startswith("error: the Ray cluster was lost (the raylet of this driver's node died)")
    assert f"{d / CHECKPOINT} records the {ck['patterns']} patterns found so far" in lines[0]
    assert "rerun with --resume" in lines[0]
    assert ck["patterns"] >= paused["done"] >= 2000
    log = Path(lines[0].rsplit("Ray's messages: ", 1)[1])
    assert "raylet" in log.read_text().lower()
    log.unlink()
    copy = tmp_path / "copy"
    shutil.copytree(d, copy)
    r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--resume", env={"RAY_ADDRESS": None}, timeout=600)
    assert r.returncode == 0, r.stderr
    assert _summary(d)["complete"] and _same_patterns(d, reference)

    root, address = dead_head
    held = socket.socket()
    try:
        held.bind(("0.0.0.0", 52365))
        held.listen(1)
    except OSError:                                       # taken already (another Ray on this machine)
        held.close()
        held = None
    try:
        r = run_cli(CLI, "-w", copy / "weights.dat", "-q", "--resume", "--workers", "2",
                    env={"RAY_TMPDIR": root, "RAY_ADDRESS": None}, timeout=600)
    finally:
        if held is not None:
            held.close()
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""                                 # no "Token authentication is enabled" warning
    assert (root / "ray" / "ray_current_cluster").read_text().strip() == address
    s = _summary(copy)
    assert s["complete"] and s["stats"]["patterns_at_start"] == ck["patterns"] and _same_patterns(copy, reference)


def test_a_stale_ray_address_one_line_or_local(tmp_path, dead_head):
    """RAY_ADDRESS of the dead head: one line saying so and what to do; --ray-address local runs here."""
    _, address = dead_head
    d = tmp_path / "net"
    d.mkdir()
    save_net(random_net([3, 8, 6, 1], seed=5, bias_scale=0.4), d / "weights.dat")
    before = sorted(p.name for p in d.iterdir())
    r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--workers", "2", env={"RAY_ADDRESS": address}, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: RAY_ADDRESS={address} (from the environment): cannot reach a Ray cluster "
                               f"there (Connection refused); unset RAY_ADDRESS (or pass --ray-address local)")
    assert sorted(p.name for p in d.iterdir()) == before
    r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--workers", "2", "--ray-address", "local",
                "--checkpoint-every", "0", env={"RAY_ADDRESS": address}, timeout=600)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    s = _summary(d)
    assert s["complete"] and s["stats"]["tasks"] > 1           # on Ray, not in this process
    ref = count_run(d / "weights.dat", backend="lp", progress=False, checkpoint_every=0, out_dir=tmp_path / "ref")
    assert ref["count"] == s["count"]
    assert (tmp_path / "ref" / PATTERNS).read_bytes() == (d / PATTERNS).read_bytes()


def test_an_address_where_something_else_listens_one_line(tmp_path):
    """ray.init waits forever on a port that accepts connections but is not a Ray GCS; the count says so."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        port = s.getsockname()[1]
        d = tmp_path / "net"
        d.mkdir()
        save_net(random_net([2, 3, 1], seed=0), d / "weights.dat")
        t = time.time()
        r = run_cli(CLI, "-w", d / "weights.dat", "-q", "--ray-address", f"127.0.0.1:{port}", timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"error: --ray-address 127.0.0.1:{port}: cannot reach a Ray cluster there (a program "
                               f"listens on that port, but it does not answer as a Ray cluster's GCS")
    assert time.time() - t < 60
    assert sorted(p.name for p in d.iterdir()) == ["weights.dat"]
