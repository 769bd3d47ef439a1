"""Where parallel work runs: in this process (one worker) or on Ray (an embedded local Ray, or a cluster).

One layer for training and counting (docs/cluster.md):

* workers 1 and no address: in-process, Ray is not imported;
* workers N > 1 and no address: an embedded Ray on this machine with N CPUs, started here and shut
  down at the end (nothing to install or start by hand);
* an address (--ray-address ADDR, else the RAY_ADDRESS environment variable): join that cluster; at
  most N tasks run at once (N = the cluster's CPUs when --workers is 1).

A Ray session that is already connected in this process (a test fixture, a notebook) is reused and
left running. Every task runs with OMP_NUM_THREADS=1 and PYTHONPATH set to this repository, so
the workers need the repository and the .venv at the same path (or a runtime_env that provides them).
"""
from __future__ import annotations

import logging
import os
import socket
from pathlib import Path

from src.core.errors import ToolError

REPO_ROOT = Path(__file__).resolve().parents[1]

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

PROBE_TIMEOUT_S = 5.0

TASK_RETRIES = 3         # a task whose worker process dies runs again (on another worker)


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: the --ray-address value, else $RAY_ADDRESS, else None (no cluster)."""
    if address is not None and str(address).strip():
        return str(address).strip()
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return env or None


def _host_port(address: str):
    a = address
    for scheme in ("ray://", "http://", "https://"):
        if a.startswith(scheme):
            a = a[len(scheme):]
    a = a.split("/", 1)[0]
    host, sep, port = a.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def check_address(address: str | None) -> None:
    """Raise ToolError (one line, exit 2) unless a TCP connection to the cluster address succeeds.

    Called before any output file is written: ray.init on a dead address waits for minutes.
    'auto' (a cluster started on this machine by `ray start`) is checked by ray.init itself.
    """
    address = resolve_address(address)
    if address is None or address in ("auto", "local"):
        return
    hp = _host_port(address)
    if hp is None:
        raise ToolError(f"--ray-address {address}: cannot reach a Ray cluster there (expected HOST:PORT, "
                        f"e.g. 10.0.0.5:6379)")
    try:
        with socket.create_connection(hp, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as e:
        reason = e.strerror or e.__class__.__name__
        raise ToolError(f"--ray-address {address}: cannot reach a Ray cluster there ({reason})") from None


def runtime_env() -> dict:
    """The job's runtime_env: one BLAS/OpenMP thread per task and this repository importable."""
    env = {k: "1" for k in THREAD_VARS}
    path = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    return {"env_vars": env}


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ToolError("more than one worker (or --ray-address) needs the pip package ray==2.60.0 "
                        "(pip install -r requirements.txt)") from None
    return ray


def start_local(num_cpus: int):
    """Start an embedded Ray with num_cpus CPUs in this process (no dashboard, no usage stats)."""
    ray = _import_ray()
    ray.init(num_cpus=int(num_cpus), include_dashboard=False, runtime_env=runtime_env(), log_to_driver=False,
             logging_level=logging.WARNING, configure_logging=True)
    return ray


class Session:
    """Context manager: the execution backend for `workers` and `address` (see the module docstring).

    parallel: False for the in-process case. slots: how many tasks to keep running at once.
    started: whether this session connected Ray (and so disconnects it at the end).
    """

    def __init__(self, workers: int = 1, address: str | None = None):
        workers = int(workers)
        if workers < 1:
            raise ToolError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.address = resolve_address(address)
        self.parallel = workers > 1 or self.address is not None
        self.slots = workers
        self.started = False
        self.ray = None
        self._remote: dict = {}

    def __enter__(self):
        if not self.parallel:
            return self
        ray = self.ray = _import_ray()
        if ray.is_initialized():
            pass
        elif self.address is not None:
            check_address(self.address)
            try:
                ray.init(address=self.address, runtime_env=runtime_env(), log_to_driver=False,
                         logging_level=logging.WARNING)
            except Exception as e:          # ConnectionError, RuntimeError, ValueError from Ray
                raise ToolError(f"--ray-address {self.address}: cannot reach a Ray cluster there "
                                f"({str(e).splitlines()[0] if str(e) else e.__class__.__name__})") from None
            self.started = True
        else:
            start_local(self.workers)
            self.started = True
        if self.workers == 1:               # joined a cluster without --workers: use all of its CPUs
            self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        return self

    # ---- tasks (Ray only; retried on another worker when theirs dies) ----------------------------------
    def put(self, obj):
        """Store obj once in the cluster's object store; pass the handle to submit."""
        return self.ray.put(obj)

    def submit(self, fn, *args, num_cpus: float = 1, num_gpus: float = 0, retries: int = TASK_RETRIES):
        """Run fn(*args) as a Ray task (fn: a module-level function of this repository); returns a handle."""
        key = (fn, num_cpus, num_gpus, retries)
        remote = self._remote.get(key)
        if remote is None:
            remote = self._remote[key] = self.ray.remote(fn).options(
                num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries, retry_exceptions=False)
        return remote.remote(*args)

    def wait(self, handles, timeout: float | None = None) -> list:
        """The handles among `handles` that are finished (waits up to timeout seconds for at least one)."""
        if not handles:
            return []
        ready, _ = self.ray.wait(list(handles), num_returns=1, timeout=timeout)
        if ready:
            more, _ = self.ray.wait([h for h in handles if h not in ready], num_returns=len(handles) - len(ready),
                                    timeout=0)
            ready += more
        return ready

    def result(self, handle):
        """The value of a finished task (its exception is raised here)."""
        return self.ray.get(handle)

    def cancel(self, handles) -> None:
        """Stop tasks that are no longer wanted (their workers are killed)."""
        for h in handles:
            try:
                self.ray.cancel(h, force=True)
            except Exception:               # already finished or gone
                pass

    def __exit__(self, *exc):
        if self.started:
            self.ray.shutdown()
            self.started = False
        return False
