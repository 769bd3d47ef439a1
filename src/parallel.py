"""Where parallel work runs: in this process (one worker) or on Ray (an embedded local Ray, or a cluster).

One layer for training and counting (docs/cluster.md):

* workers 1 and no address: in-process, Ray is not imported;
* workers N > 1 and no address: an embedded Ray on this machine with N CPUs, started here and shut
  down at the end (nothing to install or start by hand). It is always a new instance of its own:
  files a dead cluster left behind (/tmp/ray/ray_current_cluster) are not read;
* an address (--ray-address ADDR, else the RAY_ADDRESS environment variable): join that cluster; at
  most N tasks run at once (N = the cluster's CPUs when --workers is 1). `--ray-address local` is the
  embedded Ray whatever RAY_ADDRESS says.

Ray's own messages (its logging, the cluster's error messages such as "Raylet is terminated") go to a
log file (`Session.log_path`), not to the terminal; it is removed when the session ends cleanly. A
task that fails because its node, its raylet or the cluster was lost (after Ray's retries on other
workers) raises `ClusterLost`, a ToolError: one line, no Ray traceback.

A Ray session that is already connected in this process (a test fixture, a notebook) is reused and
left running. Every task runs with OMP_NUM_THREADS=1 and PYTHONPATH set to this repository, so
the workers need the repository and the .venv at the same path (or a runtime_env that provides them).
"""
from __future__ import annotations

import logging
import os
import socket
import sys
import tempfile
import threading
from pathlib import Path

from src.core.errors import ToolError

REPO_ROOT = Path(__file__).resolve().parents[1]

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

PROBE_TIMEOUT_S = 5.0

TASK_RETRIES = 3         # a task whose worker process dies runs again (on another worker)

LOCAL = "local"          # --ray-address local: the embedded Ray, whatever RAY_ADDRESS says

WATCH_EVERY_S = 0.5      # how often the driver checks that its raylet and the cluster's GCS still listen


class ClusterLost(ToolError):
    """The Ray cluster (or the node this driver is attached to) was lost while tasks ran.

    cause: what happened, in a few words; log_path: the file that holds Ray's own messages.
    """

    def __init__(self, cause: str, log_path=None, what: str = ""):
        self.cause, self.log_path = cause, log_path
        log = f"; Ray's messages: {log_path}" if log_path else ""
        super().__init__(f"the Ray cluster was lost ({cause}){what}{log}")


def resolve_address(address: str | None) -> str | None:
    """The cluster to join: the --ray-address value, else $RAY_ADDRESS, else None (no cluster).

    'local' (as the flag or in RAY_ADDRESS) means no cluster: the embedded Ray of this machine."""
    if address is not None and str(address).strip():
        a = str(address).strip()
        return None if a == LOCAL else a
    env = os.environ.get("RAY_ADDRESS", "").strip()
    return None if env in ("", LOCAL) else env


def _from_env(address) -> bool:
    """Was the address to join taken from $RAY_ADDRESS (no --ray-address given)?"""
    return not (address is not None and str(address).strip())


def _unreachable(address: str, reason: str, hint: str = "", from_env: bool = False) -> ToolError:
    """The one line for a cluster address that cannot be joined; a stale RAY_ADDRESS is named as such."""
    if from_env:
        return ToolError(f"RAY_ADDRESS={address} (from the environment): cannot reach a Ray cluster there "
                         f"({reason}){hint}; unset RAY_ADDRESS (or pass --ray-address local) to run on this machine")
    return ToolError(f"--ray-address {address}: cannot reach a Ray cluster there ({reason}){hint}")


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
    env = _from_env(address)
    address = resolve_address(address)
    if address is None or address == "auto":
        return
    hp = _host_port(address)
    if hp is None:
        raise _unreachable(address, "expected HOST:PORT, e.g. 10.0.0.5:6379", from_env=env)
    try:
        with socket.create_connection(hp, timeout=PROBE_TIMEOUT_S) as sock:
            grpc = _speaks_grpc(sock)
    except OSError as e:
        raise _unreachable(address, e.strerror or e.__class__.__name__, from_env=env) from None
    if not grpc:                            # ray.init would wait there forever
        raise _unreachable(address, "a program listens on that port, but it does not answer as a Ray cluster's "
                                    "GCS (gRPC) does: is it the head's port (6379 unless `ray start --head --port` "
                                    "said otherwise)?", from_env=env)


_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _speaks_grpc(sock) -> bool:
    """Does the server on `sock` answer an HTTP/2 preface with a SETTINGS frame, as every gRPC server (a Ray
    GCS, a Ray client server) does? Ray's own connection attempt to anything else never ends."""
    try:
        sock.settimeout(PROBE_TIMEOUT_S)
        sock.sendall(_HTTP2_PREFACE)
        head = b""
        while len(head) < 9:
            chunk = sock.recv(9 - len(head))
            if not chunk:
                return False
            head += chunk
    except OSError:
        return False
    return head[3] == 0x04                  # frame type SETTINGS


def runtime_env() -> dict:
    """The job's runtime_env: one BLAS/OpenMP thread per task and this repository importable. A kill test's
    pause at the count's checkpoints asked of this driver (patterns:K, src/core/fault_hooks.py) is this
    driver's: its tasks do not inherit it (a pause of one node's slices is set on that node's `ray start`
    instead); a training pause (epochs:K) is for the tasks, which train."""
    from src.core.fault_hooks import PAUSE_AFTER

    env = {k: "1" for k in THREAD_VARS}
    path = os.environ.get("PYTHONPATH", "")
    env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + path if path else "")
    if os.environ.get(PAUSE_AFTER, "").strip().startswith("patterns"):
        env[PAUSE_AFTER] = ""
    return {"env_vars": env}


def _import_ray():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    try:
        import ray
    except ImportError:
        raise ToolError("more than one worker (or --ray-address) needs the pip package ray==2.60.0 "
                        "(pip install -r requirements.txt)") from None
    return ray


# ---- Ray's own messages: into a log file, not the terminal ----------------------------------------------
class RayLog:
    """While active, Ray's Python logging and the cluster's error messages that Ray prints on the driver's
    stdout/stderr ("(raylet) Raylet is terminated ...") go to `path` instead of the terminal."""

    def __init__(self, path=None):
        self.path = Path(path) if path is not None else \
            Path(tempfile.gettempdir()) / f"relu-toolkit-ray-{os.getpid()}.log"
        self._fh = None
        self._saved = None

    def __enter__(self):
        self._fh = open(self.path, "a", buffering=1, encoding="utf-8", errors="replace")
        handler = logging.StreamHandler(self._fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
        self._handler = handler
        logger = logging.getLogger("ray")
        self._saved = (logger.handlers[:], logger.propagate, logger.level, None)
        self._last_resort = logging.lastResort
        logging.lastResort = handler        # ray.init(configure_logging=False) empties the "ray" logger
        self.attach()
        self._c_stderr = _CStderr(self._fh)
        try:                                # the driver's printer of cluster errors and worker output
            import ray._private.worker as rw

            fh = self._fh

            def to_log(data, ignore_prefix=False):
                for line in data.get("lines", []):
                    fh.write(f"({data.get('pid', 'ray')}) {line}\n")

            self._saved = self._saved[:3] + ((rw, rw.print_to_stdstream),)
            rw.print_to_stdstream = to_log
        except (ImportError, AttributeError):
            pass
        return self

    def restore_c_stderr(self) -> None:
        self._c_stderr.restore()

    def attach(self) -> None:
        """(Again) send the "ray" logger to the log file only."""
        logger = logging.getLogger("ray")
        logger.handlers[:] = [self._handler]
        logger.propagate = False
        logger.setLevel(logging.INFO)

    def close(self, keep: bool) -> None:
        if self._fh is None:
            return
        self._c_stderr.restore()
        logging.lastResort = self._last_resort
        handlers, propagate, level, printer = self._saved
        logger = logging.getLogger("ray")
        logger.handlers[:] = handlers
        logger.propagate, logger.level = propagate, level
        if printer is not None:
            printer[0].print_to_stdstream = printer[1]
        self._fh.close()
        self._fh = None
        if not keep:
            try:
                self.path.unlink()
            except OSError:
                pass

    def __exit__(self, *exc):
        self.close(keep=exc[0] is not None)
        return False


class _CStderr:
    """Point the C library's `stderr` (FILE *) at the log file while Ray's core worker starts in this process:
    its logger keeps that stream for its messages of level ERROR ("Attempting to recover 1 lost objects ...").
    File descriptor 2, and so Python's sys.stderr (progress bars, error lines), stay on the terminal."""

    def __init__(self, fh):
        self._var = self._old = self._file = None
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            libc.fdopen.restype = ctypes.c_void_p
            libc.fdopen.argtypes = [ctypes.c_int, ctypes.c_char_p]
            var = ctypes.c_void_p.in_dll(libc, "stderr")
            new = libc.fdopen(os.dup(fh.fileno()), b"a")
            if new:
                libc.setvbuf.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_size_t]
                libc.setvbuf(new, None, 1, 0)          # line buffered
                self._var, self._old, self._file = var, var.value, new
                var.value = new
        except (OSError, AttributeError, ValueError):  # not glibc: C-level messages stay on stderr
            pass

    def restore(self) -> None:
        """Give the C library its stderr back (the file stays open: Ray's logger may still hold it)."""
        if self._var is not None:
            self._var.value = self._old
            self._var = None


def start_local(num_cpus: int):
    """Start an embedded Ray with num_cpus CPUs in this process (no dashboard, no usage stats).

    address='local' makes it a new instance whatever RAY_ADDRESS or a dead cluster's
    /tmp/ray/ray_current_cluster say."""
    ray = _import_ray()
    ray.init(address=LOCAL, num_cpus=int(num_cpus), include_dashboard=False, runtime_env=runtime_env(),
             log_to_driver=False, logging_level=logging.WARNING, configure_logging=False)
    return ray


def _use_token_if_available() -> None:
    """Joining a cluster by its address: send Ray's auth token when one is available (~/.ray/auth_token,
    RAY_AUTH_TOKEN_PATH or RAY_AUTH_TOKEN) and RAY_AUTH_MODE does not say otherwise, as `ray start --head`
    does. A cluster without token authentication accepts it too."""
    if os.environ.get("RAY_AUTH_MODE"):
        return
    try:
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    except (ImportError, AttributeError):
        pass


def _auth_hint() -> str:
    if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
        return ("; if the cluster uses token authentication, check that this driver has its token "
                "(docs/cluster.md)")
    return ("; if the cluster uses token authentication, give this driver its token (RAY_AUTH_MODE=token and "
            "~/.ray/auth_token or RAY_AUTH_TOKEN_PATH; docs/cluster.md)")


def current_node() -> str:
    """The Ray node id of this process (inside a Ray task), else this machine's host name."""
    ray = sys.modules.get("ray")
    if ray is not None:
        try:
            return ray.get_runtime_context().get_node_id()
        except Exception:               # not in a Ray worker
            pass
    return socket.gethostname()


def _listening(hp, timeout: float = 2.0) -> bool | None:
    """True if a TCP connection to (host, port) succeeds, False if refused (nothing listens), None if unsure."""
    try:
        with socket.create_connection(hp, timeout=timeout):
            return True
    except ConnectionRefusedError:
        return False
    except OSError:
        return None


class _Watchdog(threading.Thread):
    """Notices, within about a second, that the raylet of this driver's node or the cluster's GCS stopped
    listening. Ray itself notices only when the node misses its heartbeats (15-30 s), and its core worker
    may then end this process at once ("The connection to the plasma store is failed. Terminate the
    process.", exit 1, no word to the user); the driver stops using Ray before that."""

    def __init__(self, ray):
        super().__init__(name="relu-toolkit-ray-watchdog", daemon=True)
        node = ray._private.worker._global_node
        self.targets = [("the raylet of this driver's node died", (node.node_ip_address, int(node.node_manager_port))),
                        ("the cluster's head (its GCS) stopped answering", _host_port(node.gcs_address))]
        self.reason = None
        self._stop_event = threading.Event()

    def run(self):
        unsure = 0
        while not self._stop_event.wait(WATCH_EVERY_S):
            for what, hp in self.targets:
                up = _listening(hp)
                unsure = unsure + 1 if up is None else 0
                if up is False or unsure >= 5:
                    self.reason = what
                    return

    def stop(self):
        self._stop_event.set()


def _lost_cause(e: BaseException) -> str:
    name = e.__class__.__name__
    words = {"LocalRayletDiedError": "the raylet of this driver's node died",
             "NodeDiedError": "a node died", "OwnerDiedError": "a task's owner died",
             "ObjectLostError": "a task's result was lost with its node",
             "ObjectReconstructionFailedError": "a task's result was lost and could not be rebuilt",
             "WorkerCrashedError": f"a task's worker died {TASK_RETRIES + 1} times",
             "RaySystemError": "Ray's system failed", "RpcError": "Ray could not reach its cluster",
             "GetTimeoutError": "Ray did not answer"}
    first = (str(e).strip().splitlines() or [""])[0][:160]
    return f"{words.get(name, name)}: {name}" + (f": {first}" if first and name not in words else "")


class Session:
    """Context manager: the execution backend for `workers` and `address` (see the module docstring).

    parallel: False for the in-process case. slots: how many tasks to keep running at once.
    started: whether this session connected Ray (and so disconnects it at the end).
    log_path: where Ray's own messages go while the session runs (None in-process).
    """

    def __init__(self, workers: int = 1, address: str | None = None, log_path=None):
        workers = int(workers)
        if workers < 1:
            raise ToolError(f"--workers must be >= 1, got {workers}")
        self.workers = workers
        self.address = resolve_address(address)
        self._address_from_env = _from_env(address)
        self.parallel = workers > 1 or self.address is not None
        self.slots = workers
        self.started = False
        self.ray = None
        self._remote: dict = {}
        self._log = RayLog(log_path) if self.parallel else None
        self.log_path = None if self._log is None else self._log.path
        self.lost = False
        self._watchdog = None

    def __enter__(self):
        if not self.parallel:
            return self
        ray = self.ray = _import_ray()
        self._log.__enter__()
        try:
            if ray.is_initialized():
                pass
            elif self.address is not None:
                check_address(None if self._address_from_env else self.address)
                _use_token_if_available()
                try:
                    ray.init(address=self.address, runtime_env=runtime_env(), log_to_driver=False,
                             logging_level=logging.WARNING, configure_logging=False)
                except Exception as e:          # ConnectionError, RuntimeError, ValueError from Ray
                    reason = str(e).splitlines()[0] if str(e) else e.__class__.__name__
                    raise _unreachable(self.address, reason, _auth_hint(), self._address_from_env) from None
                self.started = True
            else:
                start_local(self.workers)
                self.started = True
            self._log.attach()
            self._log.restore_c_stderr()
            try:
                self._watchdog = _Watchdog(ray)
                self._watchdog.start()
            except (AttributeError, TypeError, ValueError):      # Ray's internals moved: no watchdog
                self._watchdog = None
            if self.workers == 1:               # joined a cluster without --workers: use all of its CPUs
                self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        except BaseException:
            self._shutdown()
            self._log.close(keep=True)
            raise
        return self

    # ---- tasks (Ray only; retried on another worker when theirs dies) ----------------------------------
    def _lost(self, e: BaseException) -> ClusterLost:
        self.lost = True
        return ClusterLost(_lost_cause(e), self.log_path)

    def _check(self) -> None:
        if self._watchdog is not None and self._watchdog.reason is not None:
            self.lost = True
            raise ClusterLost(self._watchdog.reason, self.log_path)

    def _guard(self, fn, *args, **kw):
        """fn(*args) with Ray's system failures (node, raylet, cluster lost) turned into ClusterLost; an
        exception raised by the task's own code (RayTaskError) goes through unchanged."""
        ray = self.ray
        self._check()
        try:
            return fn(*args, **kw)
        except ray.exceptions.RayTaskError:
            raise
        except (ray.exceptions.RayError, ConnectionError) as e:
            raise self._lost(e) from None

    def put(self, obj):
        """Store obj once in the cluster's object store; pass the handle to submit."""
        return self._guard(self.ray.put, obj)

    def submit(self, fn, *args, num_cpus: float = 1, num_gpus: float = 0, retries: int = TASK_RETRIES):
        """Run fn(*args) as a Ray task (fn: a module-level function of this repository); returns a handle."""
        key = (fn, num_cpus, num_gpus, retries)
        remote = self._remote.get(key)
        if remote is None:
            remote = self._remote[key] = self.ray.remote(fn).options(
                num_cpus=num_cpus, num_gpus=num_gpus, max_retries=retries, retry_exceptions=False)
        return self._guard(remote.remote, *args)

    def wait(self, handles, timeout: float | None = None) -> list:
        """The handles among `handles` that are finished (waits up to timeout seconds for at least one)."""
        if not handles:
            return []
        ready, _ = self._guard(self.ray.wait, list(handles), num_returns=1, timeout=timeout)
        if ready:
            more, _ = self._guard(self.ray.wait, [h for h in handles if h not in ready],
                                  num_returns=len(handles) - len(ready), timeout=0)
            ready += more
        return ready

    def result(self, handle):
        """The value of a finished task (its exception is raised here; a lost cluster: ClusterLost)."""
        return self._guard(self.ray.get, handle)

    def cancel(self, handles) -> None:
        """Stop tasks that are no longer wanted (their workers are killed)."""
        if self.lost:
            return
        for h in handles:
            try:
                self.ray.cancel(h, force=True)
            except Exception:               # already finished or gone
                pass

    def _shutdown(self) -> None:
        if self._watchdog is not None:
            self._watchdog.stop()
        if not self.started:
            return
        self.started = False
        try:
            self.ray.shutdown()
        except Exception:                   # nothing left to disconnect from
            pass

    def _abandon(self) -> None:
        """After a lost cluster: ray.shutdown() would talk to the dead raylet, and Ray's core worker ends the
        process when it cannot (exit 1). Kill what this session started instead (an embedded Ray's processes)
        and keep Ray's exit hook from trying again."""
        import atexit

        rw = self.ray._private.worker
        node = getattr(rw, "_global_node", None)
        if node is not None and getattr(node, "head", False):
            try:
                node.kill_all_processes(check_alive=False, allow_graceful=False)
            except Exception:
                pass
        atexit.unregister(rw.shutdown)

    def __exit__(self, *exc):
        if not self.parallel:
            return False
        self._shutdown()
        self._log.close(keep=exc[0] is not None or self.lost)
        return False
