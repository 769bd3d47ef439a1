"""Long work survives SIGKILL: real subprocesses killed with a real signal at a known point, then resumed.

Each process pauses at a deterministic point (src/core/fault_hooks.py: at its first checkpoint of K
patterns or more, or after the checkpoint of epoch K) and writes a marker file; the test kills it there.
A count killed with kill -9 (as Slurm preemption or the OOM killer would) resumes from its last checkpoint
and ends with exactly the pattern set of an uninterrupted run, for every backend; so does a training.
"""
import json
import os
import signal
import subprocess

import pytest
from conftest import PY, pause_env, random_net, run_cli, wait_for_pause

from src.core.errors import ToolError
from src.counting.driver import count_run
from src.counting.problem import BACKENDS, get_backend
from src.io.pattern_file import read_patterns
from src.io.weights_file import save_net

CLI = "count_linear_regions.py"
NET = ([3, 8, 8, 1], 0)                 # 159 regions: small, the pause point decides where the kill lands
FIRST, MORE = 5, 5                      # pause at >= 5 checkpointed patterns; a resumed lp count at >= 5 more
EVERY = "1e-9"                          # a checkpoint at every chance: the pause point is a count, not a time
DOMAIN = "input_0_1"


def _available(name):
    try:
        get_backend(name)
        return True
    except ToolError:
        return False


def _reference(tmp_path, sizes, seed):
    d = tmp_path / "reference"
    d.mkdir()
    save_net(random_net(sizes, seed), d / "weights.dat")
    s = count_run(d / "weights.dat", backend="lp", progress=False, checkpoint_every=0)
    assert s["complete"]
    return {p.tobytes() for p in read_patterns(d / f"activation_pattern_abhinav_{DOMAIN}.dat")}


def _start(run, backend, marker, after, *extra):
    """The count CLI on run/weights.dat, pausing at its first checkpoint of >= `after` patterns."""
    return run_cli(CLI, "-w", run / "weights.dat", "-q", "--backend", backend, "--checkpoint-every", EVERY, *extra,
                   env=pause_env(marker, f"patterns:{after}"), background=True)


def _kill_at_pause(proc, marker) -> dict:
    """SIGKILL `proc` where it paused (still running there); the pause record."""
    paused = wait_for_pause(proc, marker)
    assert paused["pid"] == proc.pid and paused["kind"] == "patterns"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    return paused


@pytest.mark.slow
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sigkill_then_resume_gives_the_uninterrupted_set(tmp_path, backend):
    if not _available(backend):
        pytest.skip(f"backend {backend} unavailable")
    sizes, seed = NET
    ref = _reference(tmp_path, sizes, seed)
    run = tmp_path / "run"
    run.mkdir()
    save_net(random_net(sizes, seed), run / "weights.dat")
    kills = 2 if backend == "lp" else 1               # lp: killed again while resuming
    saved, spent = 0, 0.0
    for k in range(kills):
        after = FIRST if k == 0 else saved + MORE
        proc = _start(run, backend, tmp_path / f"pause{k}.json", after, *(["--resume"] if k else []))
        paused = _kill_at_pause(proc, tmp_path / f"pause{k}.json")
        ck = json.loads((run / f"checkpoint_{DOMAIN}.json").read_text())
        assert ck["backend"] == backend and ck["bytes"] > 0
        assert ck["patterns"] == paused["done"] >= after          # killed right after this checkpoint
        assert (ck["frontier"] is not None) == (backend == "lp")
        assert (run / f".activation_pattern_abhinav_{DOMAIN}.dat.partial").stat().st_size >= ck["bytes"]
        assert ck["runs"] == k + 1 and ck["enumeration_seconds"] >= spent     # the time of every run so far
        saved, spent = ck["patterns"], ck["enumeration_seconds"]
    assert saved < len(ref)                                  # the kills landed mid-count
    r = run_cli(CLI, "-w", run / "weights.dat", "-q", "--backend", backend, "--resume", "--checkpoint-every", EVERY,
                timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / f"regions_{DOMAIN}.json").read_text())
    assert s["complete"] is True and s["count"] == len(ref)
    assert s["stats"]["patterns_at_start"] >= saved          # nothing checkpointed was lost
    t = s["times"]
    assert t["runs"] == kills + 1 and t["enumeration_all_runs"] >= spent + t["enumeration"] - 1e-3
    got = read_patterns(run / f"activation_pattern_abhinav_{DOMAIN}.dat")
    assert len(got) == len(ref) and {p.tobytes() for p in got} == ref
    if backend == "lp":
        assert s["stats"]["resumed_from_frontier"] is True
    left = sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name.startswith("checkpoint_"))
    assert left == [], left                                  # no temp, partial or checkpoint file remains


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    """A temp file whose writer (this host, a dead pid) was killed is removed by the next run."""
    save_net(random_net([3, 4, 4, 1], 0), tmp_path / "weights.dat")
    dead = subprocess.Popen([PY, "-c", "pass"])
    dead.wait()
    from src.io.files import _HOST
    stale = tmp_path / f".regions_{DOMAIN}.json.{_HOST}.{dead.pid}.0123abcd.tmp"
    legacy = tmp_path / f".activation_pattern_abhinav_{DOMAIN}.dat.k2j4_9zq.tmp"
    alive = tmp_path / f".regions_{DOMAIN}.json.{_HOST}.{os.getpid()}.89abcdef.tmp"
    other_host = tmp_path / f".regions_{DOMAIN}.json.otherhost.{dead.pid}.01234567.tmp"
    for p in (stale, legacy, alive, other_host):
        p.write_text("half")
    count_run(tmp_path / "weights.dat", backend="lp", progress=False)
    assert not stale.exists() and not legacy.exists()
    assert alive.exists() and other_host.exists()            # a live writer and other hosts are left alone


def test_fresh_count_discards_an_old_checkpoint(tmp_path):
    save_net(random_net([3, 4, 4, 1], 0), tmp_path / "weights.dat")
    ck = tmp_path / f"checkpoint_{DOMAIN}.json"
    ck.write_text("{}")
    (tmp_path / f".activation_pattern_abhinav_{DOMAIN}.dat.partial").write_text("n = [3, 4, 4, 1]\n")
    s = count_run(tmp_path / "weights.dat", backend="lp", progress=False)
    assert s["complete"] and not ck.exists()


@pytest.mark.slow
def test_resume_refuses_a_checkpoint_of_other_weights(tmp_path):
    sizes = NET[0]
    save_net(random_net(sizes, 0), tmp_path / "weights.dat")
    _kill_at_pause(_start(tmp_path, "lp", tmp_path / "pause.json", FIRST), tmp_path / "pause.json")
    save_net(random_net(sizes, 1), tmp_path / "weights.dat")                      # retrained in between
    r = run_cli(CLI, "-w", tmp_path / "weights.dat", "-q", "--resume", timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume") and "checkpoint_input_0_1.json" in lines[0]
    assert not (tmp_path / f"regions_{DOMAIN}.json").exists()


def test_checkpoint_every_is_validated(tmp_path):
    save_net(random_net([3, 4, 4, 1], 0), tmp_path / "weights.dat")
    r = run_cli(CLI, "-w", tmp_path / "weights.dat", "-q", "--checkpoint-every", "-1", timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --checkpoint-every must be >= 0 seconds (0 = off), got -1.0"]
    assert not (tmp_path / f"regions_{DOMAIN}.json").exists()


def _with_umask(mask, *args):
    old = os.umask(mask)                     # the CLI process inherits it
    try:
        return run_cli(CLI, *args, timeout=120)
    finally:
        os.umask(old)


@pytest.mark.slow
def test_output_files_get_the_umask_permissions(tmp_path):
    """Every output is 0666 & ~umask (here 0o022 -> 0o644), as a plain open() would create it."""
    save_net(random_net([3, 4, 4, 1], 0), tmp_path / "weights.dat")
    r = _with_umask(0o022, "-w", tmp_path / "weights.dat", "-q", "-o", tmp_path / "out" / "sub")
    assert r.returncode == 0, r.stderr
    files = list((tmp_path / "out" / "sub").iterdir())
    assert len(files) >= 4
    for p in files:
        assert oct(p.stat().st_mode & 0o777) == oct(0o644), p.name
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == oct(0o755)
    r = _with_umask(0o077, "-w", tmp_path / "weights.dat", "-q", "-o", tmp_path / "private")
    assert r.returncode == 0, r.stderr
    for p in (tmp_path / "private").iterdir():
        assert oct(p.stat().st_mode & 0o777) == oct(0o600), p.name


# ---- training ------------------------------------------------------------------------------------
TRAIN = "train_bulk_script.py"
EPOCHS, KILL_AFTER = 4, 2               # killed right after the checkpoint of epoch 2
TRAIN_ARGS = ["-s", "3", "-a", "mlp:24", "--l1", "1e-4", "--adv", "pgd", "--adv-steps", "2", "--dropout", "0.3",
              "--epochs", str(EPOCHS), "--train-subset", "1000", "-q"]


@pytest.mark.slow
def test_sigkill_during_training_then_resume_gives_the_same_weights(tmp_path):
    r = run_cli(TRAIN, "--models-dir", tmp_path / "ref", *TRAIN_ARGS)
    assert r.returncode == 0, r.stderr
    run = tmp_path / "killed" / "fcnn_run_3"
    marker = tmp_path / "pause.json"
    proc = run_cli(TRAIN, "--models-dir", tmp_path / "killed", *TRAIN_ARGS,
                   env=pause_env(marker, f"epochs:{KILL_AFTER}"), background=True)
    paused = wait_for_pause(proc, marker)
    assert paused["pid"] == proc.pid and paused["kind"] == "epochs" and paused["done"] == KILL_AFTER
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    done = len(json.loads((run / "metrics.json").read_text())["epochs"])
    assert done == KILL_AFTER < EPOCHS and (run / "checkpoint.pt").exists()
    r = run_cli(TRAIN, "--models-dir", tmp_path / "killed", *TRAIN_ARGS)
    assert r.returncode == 0, r.stderr
    assert f"resume@{KILL_AFTER}" in r.stdout
    a = (tmp_path / "ref" / "fcnn_run_3" / "weights.dat").read_text().splitlines()[2:]
    b = (run / "weights.dat").read_text().splitlines()[2:]
    assert a == b                                            # bit-identical weights
    ma = json.loads((tmp_path / "ref" / "fcnn_run_3" / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert [e["loss"] for e in ma["epochs"]] == [e["loss"] for e in mb["epochs"]] and mb["complete"] is True
    assert not (run / "checkpoint.pt").exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
