"""A local multi-node Ray cluster for the tests and benchmarks (tests/test_cluster.py, benchmarks/bench_cluster.py):
`ray start --head` and `ray start --address` on this machine, one CPU per node, in a private --temp-dir with a
private token file (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN_PATH), so that nothing of it touches /tmp/ray or
~/.ray. Each node is a `ray start --block` in a session of its own; `close` (and `kill`) end every process of
that session by its id, orphans included.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RAY = str(Path(sys.executable).parent / "ray")


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _session_pids(sid: int) -> list[int]:
    """The processes of session `sid` (a `ray start --block` started with start_new_session and what it spawned,
    which keep the session id when they are orphaned)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


def _kill_session(sid: int) -> None:
    for pid in _session_pids(sid):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _children(pid: int, name: str) -> list[int]:
    """Child processes of pid whose command line contains `name`."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                if ppid == pid and name in (d / "cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(d.name))
            except (OSError, IndexError, ValueError):
                pass
    return out


class Cluster:
    """A Ray head and worker nodes on this machine, one CPU each, in a private temp dir."""

    def __init__(self, root: Path, cpus_per_node: int = 1):
        self.root = Path(root)
        self.cpus_per_node = int(cpus_per_node)
        self.temp = root / "ray"
        (root / "token").write_text(os.urandom(16).hex())
        self.env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="token",
                        RAY_AUTH_TOKEN_PATH=str(root / "token"), OMP_NUM_THREADS="1")
        for k in ("RAY_ADDRESS", "RELU_TOOLKIT_PAUSE_AFTER", "RELU_TOOLKIT_PAUSE_MARKER", "RELU_TOOLKIT_HOLD_WHILE"):
            self.env.pop(k, None)
        self.nodes: dict[str, subprocess.Popen] = {}
        self.address = None

    def driver_env(self, **extra) -> dict:
        """The environment of a driver (changes to os.environ; None removes): the token file only (RAY_AUTH_MODE unset: the toolkit enables token
        authentication when it finds a token, as `ray start --head` does)."""
        return {"RAY_AUTH_TOKEN_PATH": self.env["RAY_AUTH_TOKEN_PATH"], "RAY_AUTH_MODE": None, "RAY_ADDRESS": None,
                **extra}

    def start(self, name: str, env: dict | None = None, timeout: float = 120) -> None:
        if name == "head":
            port = _free_port()
            args = ["--head", f"--port={port}", "--include-dashboard=false"]
        else:
            args = [f"--address={self.address}"]
        log = open(self.root / f"{name}.log", "a")
        proc = subprocess.Popen([RAY, "start", *args, f"--num-cpus={self.cpus_per_node}", f"--temp-dir={self.temp}",
                                 "--disable-usage-stats", "--block"], stdout=log, stderr=subprocess.STDOUT,
                                env={**self.env, **(env or {})}, start_new_session=True, cwd=ROOT)
        self.nodes[name] = proc
        deadline = time.time() + timeout
        while not _children(proc.pid, "raylet/raylet"):
            assert proc.poll() is None, (self.root / f"{name}.log").read_text()[-3000:]
            assert time.time() < deadline, f"node {name} did not start"
            time.sleep(0.2)
        if name == "head":
            self.address = f"127.0.0.1:{port}"
        self.wait_cpus(self.cpus_per_node * len([p for p in self.nodes.values() if p.poll() is None]), timeout)

    def cpus(self) -> float:
        r = subprocess.run([RAY, "status", f"--address={self.address}"], capture_output=True, text=True,
                           env=self.env, timeout=60)
        for line in r.stdout.splitlines():
            if line.strip().endswith(" CPU") and "/" in line:
                return float(line.split("/")[1].split()[0])
        return 0.0

    def alive(self, name: str) -> bool:
        return name in self.nodes and self.nodes[name].poll() is None

    def wait_cpus(self, n: int, timeout: float = 120) -> None:
        deadline = time.time() + timeout
        while self.cpus() != n:
            assert time.time() < deadline, f"the cluster never had {n} CPUs"
            time.sleep(0.5)

    def raylet(self, name: str) -> int:
        pids = _children(self.nodes[name].pid, "raylet/raylet")
        assert len(pids) == 1
        return pids[0]

    def kill(self, name: str) -> None:
        """Lose node `name`: SIGKILL its raylet, then every process of it."""
        os.kill(self.raylet(name), signal.SIGKILL)
        _kill_session(self.nodes[name].pid)
        self.nodes[name].wait(timeout=60)

    def close(self) -> None:
        for proc in self.nodes.values():
            _kill_session(proc.pid)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
