"""Long work survives SIGKILL: real subprocesses killed at a seeded random moment, then resumed.

A count killed with kill -9 (as Slurm preemption or the OOM killer would) resumes from its last
checkpoint and ends with exactly the pattern set of an uninterrupted run, for every backend.
"""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import ROOT, random_net

from src.core.errors import ToolError
from src.counting.driver import count_run
from src.counting.problem import BACKENDS, get_backend
from src.io.pattern_file import read_patterns

PY = sys.executable
CLI = str(ROOT / "count_linear_regions.py")
ENV = dict(os.environ, OMP_NUM_THREADS="1")
# nets whose count takes a few seconds with each backend (lp is much faster per region)
NETS = {"lp": ([6, 20, 20, 1], 0), "gurobi": ([6, 10, 10, 1], 0), "scip": ([6, 10, 10, 1], 0)}
MILP_NET = ([6, 10, 10, 1], 0)          # a backend not listed above: the MILP-sized net
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
    random_net(sizes, seed).save(d / "weights.dat")
    s = count_run(d / "weights.dat", backend="lp", progress=False, checkpoint_every=0)
    assert s["complete"]
    return {p.tobytes() for p in read_patterns(d / f"activation_pattern_abhinav_{DOMAIN}.dat")}


def _start(run, backend, *extra):
    return subprocess.Popen([PY, CLI, "-w", str(run / "weights.dat"), "-q", "--backend", backend,
                             "--checkpoint-every", "0.25", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def _kill_at_random_moment(proc, run, rng, max_wait):
    """SIGKILL `proc` a seeded random time after its first checkpoint; asserts it was still running."""
    ck = run / f"checkpoint_{DOMAIN}.json"
    deadline = time.time() + 120
    while not ck.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    assert proc.poll() is None, "the count ended before it could be killed: use a bigger net"
    time.sleep(float(rng.uniform(0.2, max_wait)))
    assert proc.poll() is None, "the count ended before it could be killed: use a bigger net"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_sigkill_then_resume_gives_the_uninterrupted_set(tmp_path, backend):
    if not _available(backend):
        pytest.skip(f"backend {backend} unavailable")
    sizes, seed = NETS.get(backend, MILP_NET)
    ref = _reference(tmp_path, sizes, seed)
    run = tmp_path / "run"
    run.mkdir()
    random_net(sizes, seed).save(run / "weights.dat")
    rng = np.random.default_rng(sum(map(ord, backend)))
    kills = 2 if backend == "lp" else 1               # lp: killed again while resuming
    for _ in range(kills):
        proc = _start(run, backend, *(["--resume"] if _ else []))
        _kill_at_random_moment(proc, run, rng, max_wait=1.0)
        ck = json.loads((run / f"checkpoint_{DOMAIN}.json").read_text())
        assert ck["backend"] == backend and ck["bytes"] > 0
        assert (ck["frontier"] is not None) == (backend == "lp")
        assert (run / f".activation_pattern_abhinav_{DOMAIN}.dat.partial").stat().st_size >= ck["bytes"]
        saved = ck["patterns"]
    r = subprocess.run([PY, CLI, "-w", str(run / "weights.dat"), "-q", "--backend", backend, "--resume",
                        "--checkpoint-every", "0.25"], capture_output=True, text=True, env=ENV, timeout=300)
    assert r.returncode == 0, r.stderr
    s = json.loads((run / f"regions_{DOMAIN}.json").read_text())
    assert s["complete"] is True and s["count"] == len(ref)
    assert s["stats"]["patterns_at_start"] >= saved          # nothing checkpointed was lost
    got = read_patterns(run / f"activation_pattern_abhinav_{DOMAIN}.dat")
    assert len(got) == len(ref) and {p.tobytes() for p in got} == ref
    if backend == "lp":
        assert s["stats"]["resumed_from_frontier"] is True
    left = sorted(p.name for p in run.iterdir() if p.name.startswith(".") or p.name.startswith("checkpoint_"))
    assert left == [], left                                  # no temp, partial or checkpoint file remains


def test_stale_temp_files_of_a_killed_writer_are_removed(tmp_path):
    """A temp file whose writer (this host, a dead pid) was killed is removed by the next run."""
    random_net([3, 4, 4, 1], 0).save(tmp_path / "weights.dat")
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
    random_net([3, 4, 4, 1], 0).save(tmp_path / "weights.dat")
    ck = tmp_path / f"checkpoint_{DOMAIN}.json"
    ck.write_text("{}")
    (tmp_path / f".activation_pattern_abhinav_{DOMAIN}.dat.partial").write_text("n = [3, 4, 4, 1]\n")
    s = count_run(tmp_path / "weights.dat", backend="lp", progress=False)
    assert s["complete"] and not ck.exists()


def test_resume_refuses_a_checkpoint_of_other_weights(tmp_path):
    sizes = NETS["lp"][0]
    random_net(sizes, 0).save(tmp_path / "weights.dat")
    proc = _start(tmp_path, "lp")
    _kill_at_random_moment(proc, tmp_path, np.random.default_rng(0), max_wait=0.5)
    random_net(sizes, 1).save(tmp_path / "weights.dat")                      # retrained in between
    r = subprocess.run([PY, CLI, "-w", str(tmp_path / "weights.dat"), "-q", "--resume"],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --resume") and "checkpoint_input_0_1.json" in lines[0]
    assert not (tmp_path / f"regions_{DOMAIN}.json").exists()


def test_checkpoint_every_is_validated(tmp_path):
    random_net([3, 4, 4, 1], 0).save(tmp_path / "weights.dat")
    r = subprocess.run([PY, CLI, "-w", str(tmp_path / "weights.dat"), "-q", "--checkpoint-every", "-1"],
                       capture_output=True, text=True, env=ENV, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: --checkpoint-every must be >= 0 seconds (0 = off), got -1.0"]
    assert not (tmp_path / f"regions_{DOMAIN}.json").exists()


def test_output_files_get_the_umask_permissions(tmp_path):
    """Every output is 0666 & ~umask (here 0o022 -> 0o644), as a plain open() would create it."""
    random_net([3, 4, 4, 1], 0).save(tmp_path / "weights.dat")
    r = subprocess.run(["bash", "-c", f"umask 022 && exec {PY} {CLI} -w {tmp_path / 'weights.dat'} -q "
                                      f"-o {tmp_path / 'out' / 'sub'}"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    files = list((tmp_path / "out" / "sub").iterdir())
    assert len(files) >= 4
    for p in files:
        assert oct(p.stat().st_mode & 0o777) == oct(0o644), p.name
    assert oct((tmp_path / "out").stat().st_mode & 0o777) == oct(0o755)
    r = subprocess.run(["bash", "-c", f"umask 077 && exec {PY} {CLI} -w {tmp_path / 'weights.dat'} -q "
                                      f"-o {tmp_path / 'private'}"], capture_output=True, text=True, env=ENV)
    assert r.returncode == 0, r.stderr
    for p in (tmp_path / "private").iterdir():
        assert oct(p.stat().st_mode & 0o777) == oct(0o600), p.name


# ---- training ------------------------------------------------------------------------------------
TRAIN = str(ROOT / "train_bulk_script.py")
EPOCHS = 12             # short epochs: enough of them that the kill (at most 0.6 s after the first) lands mid-run
TRAIN_ARGS = ["-s", "3", "-a", "mlp:24", "--l1", "1e-4", "--adv", "pgd", "--adv-steps", "2", "--dropout", "0.3",
              "--epochs", str(EPOCHS), "--train-subset", "3000", "-q"]


def _train(models, *extra):
    return subprocess.Popen([PY, TRAIN, "--models-dir", str(models), *TRAIN_ARGS, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)


def test_sigkill_during_training_then_resume_gives_the_same_weights(tmp_path):
    ref = _train(tmp_path / "ref")
    out, err = ref.communicate(timeout=600)
    assert ref.returncode == 0, err
    run = tmp_path / "killed" / "fcnn_run_3"
    proc = _train(tmp_path / "killed")
    rng = np.random.default_rng(7)
    deadline = time.time() + 300
    while not (run / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(float(rng.uniform(0.0, 0.6)))
    assert proc.poll() is None, "training ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done = len(json.loads((run / "metrics.json").read_text())["epochs"])
    assert 1 <= done < EPOCHS
    r = subprocess.run([PY, TRAIN, "--models-dir", str(tmp_path / "killed"), *TRAIN_ARGS],
                       capture_output=True, text=True, env=ENV, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resume@" in r.stdout
    a = (tmp_path / "ref" / "fcnn_run_3" / "weights.dat").read_text().splitlines()[2:]
    b = (run / "weights.dat").read_text().splitlines()[2:]
    assert a == b                                            # bit-identical weights
    ma = json.loads((tmp_path / "ref" / "fcnn_run_3" / "metrics.json").read_text())
    mb = json.loads((run / "metrics.json").read_text())
    assert [e["loss"] for e in ma["epochs"]] == [e["loss"] for e in mb["epochs"]] and mb["complete"] is True
    assert not (run / "checkpoint.pt").exists()
    assert not [p.name for p in run.iterdir() if p.name.endswith(".tmp")]
