"""Shared test helpers, one home each:

- the catalogue of tiny nets for exactness checks against the brute force: `NetSpec`, `CATALOGUE`,
  `nets(family)`, the hand-built `degenerate_nets()` and `duplicate_units_net()`, all built by `random_net`;
- the brute-force oracle (tests/bruteforce.py: `brute_force_patterns`, `sampled_patterns`, imported here)
  and `reference`, its per-session cache (a net shared by several tests is brute-forced once);
- `run_cli`, the one way to run a script or a CLI entry point and get its exit code and output
  (`load_script` imports a script, to call its main directly);
- the kill tests' deterministic pause (src/core/fault_hooks.py): `pause_env`, `wait_for_pause`;
- fixtures: `rng`, `ray_session`.

Tests marked `slow` (pytest.ini) are left out by `make test-fast`.
"""
import contextlib
import functools
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")
# A suite started in the background of a script (`make test &`, `nohup ... &`) inherits SIGINT ignored, and so
# would every count it starts: the Ctrl-C tests would signal a process that cannot hear it. Caught here, SIGINT
# is back to its default in each child (exec resets a caught signal, not an ignored one).
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

from bruteforce import brute_force_patterns, sampled_patterns  # noqa: E402,F401 (the oracle, re-exported)

from src.core.box import Box  # noqa: E402
from src.core.fault_hooks import PAUSE_AFTER, PAUSE_MARKER  # noqa: E402
from src.core.network import ReluNet  # noqa: E402

TOL = 1e-6
PY = sys.executable


# ---- the catalogue of tiny nets -----------------------------------------------------------------------
def random_net(sizes, seed=0, bias_scale=0.5, shift=0.0):
    """A random ReluNet with the given layer sizes [n0, n1, ..., m]; `shift` is added to every hidden
    bias afterwards (strongly negative/positive: stable units)."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [bias_scale * rng.normal(size=o) for o in sizes[1:]]
    for b in bs[:-1]:
        b += shift
    return ReluNet(ws, bs)


class NetSpec(NamedTuple):
    """A net of the catalogue: random_net(sizes, seed, bias_scale, shift), or the hand-built net `name`."""
    sizes: tuple = ()
    seed: int = 0
    bias_scale: float = 0.5
    shift: float = 0.0
    name: str = ""

    def net(self) -> ReluNet:
        if self.name:
            return _HAND_BUILT[self.name]()
        return random_net(list(self.sizes), self.seed, self.bias_scale, self.shift)

    @property
    def n_hidden(self) -> int:
        return self.net().n_hidden_units if self.name else sum(self.sizes[1:-1])

    def __str__(self) -> str:
        if self.name:
            return self.name
        s = f"{'-'.join(map(str, self.sizes))}_seed{self.seed}"
        if self.bias_scale != 0.5:
            s += f"_bias{self.bias_scale:g}"
        return s + (f"_shift{self.shift:g}" if self.shift else "")


def spec(sizes, seed=0, bias_scale=0.5, shift=0.0) -> NetSpec:
    return NetSpec(tuple(sizes), int(seed), float(bias_scale), float(shift))


def net_of(ws, bs):
    """A ReluNet from nested lists of weights and biases."""
    return ReluNet([np.asarray(w, float) for w in ws], [np.asarray(b, float) for b in bs])


def _through_points(ws, rng, lo=0.0, hi=1.0, keep=()):
    """Biases that make every unit's hyperplane pass through a random point of the box (so it cuts it);
    units listed in `keep` ((layer, unit, bias)) get the given bias instead."""
    bs = []
    for l, w in enumerate(ws):
        w = np.asarray(w, float)
        pts = lo + (hi - lo) * rng.random((w.shape[0], ws[0].shape[1]))
        h = pts
        for wp, bp in zip(ws[:l], bs):
            h = np.maximum(h @ np.asarray(wp, float).T + bp, 0.0)
        b = -np.einsum("ij,ij->i", w, h) if l < len(ws) - 1 else np.zeros(w.shape[0])
        for (kl, ku, kb) in keep:
            if kl == l:
                b[ku] = kb
        bs.append(b)
    return bs


def degenerate_nets() -> dict:
    """Hand-built nets with degenerate arrangements (2-3 inputs), by name."""
    rng = np.random.default_rng(3)
    out = {}
    # duplicate units: identical and positively scaled copies, in both layers
    W1 = rng.normal(size=(3, 2))
    W1 = np.vstack([W1, W1[0], 2.0 * W1[1]])
    W2 = rng.normal(size=(3, 5))
    W2 = np.vstack([W2, W2[2]])
    bs = _through_points([W1, W2, np.ones((1, 4))], rng)
    bs[0][3], bs[0][4] = bs[0][0], 2.0 * bs[0][1]
    bs[1][3] = bs[1][2]
    out["duplicates"] = net_of([W1, W2, np.ones((1, 4))], bs)
    # zero rows: a dead unit (g = 0 <= 0), a constant active unit, zero columns and a zero row in layer 2
    W1 = np.vstack([rng.normal(size=(3, 2)), np.zeros((2, 2))])
    W2 = np.vstack([np.c_[rng.normal(size=(2, 3)), np.zeros((2, 2))], np.zeros((1, 5))])
    bs = _through_points([W1, W2, np.ones((1, 3))], rng, keep=((0, 3, 0.0), (0, 4, 0.7), (1, 2, -0.3)))
    out["zero_rows"] = net_of([W1, W2, np.ones((1, 3))], bs)
    # zero bias through the box corner x = 0 (weights >= 0), and a unit through the corner x = 1
    pos = np.abs(rng.normal(size=(3, 2)))
    W1 = np.vstack([pos, [[1.0, 1.0]]])
    W2 = rng.normal(size=(3, 4))
    bs = _through_points([W1, W2, np.ones((1, 3))], rng, keep=((0, 0, 0.0), (0, 1, 0.0), (0, 2, 0.0), (0, 3, -2.0),
                                                              (1, 0, 0.0)))
    out["corner"] = net_of([W1, W2, np.ones((1, 3))], bs)
    # layer-2 units whose inputs are all dead on part of the box: constant rows after a 0-pattern
    out["dead_then_const"] = net_of([[[1.0, -1.0], [-1.0, 1.0]], [[1.0, 1.0], [2.0, -1.0], [0.0, 0.0], [1.0, -2.0]],
                                   np.ones((1, 4))], [[0.0, 0.0], [0.0, 0.5, -0.1, 0.0], [0.0]])
    # strongly positive / negative biases: stable units mixed with unstable ones
    W1, W2 = rng.normal(size=(5, 3)), rng.normal(size=(4, 5))
    bs = _through_points([W1, W2, np.ones((1, 4))], rng, keep=((0, 0, 5.0), (0, 1, -5.0), (1, 0, -9.0), (1, 1, 9.0)))
    out["stable_mix"] = net_of([W1, W2, np.ones((1, 4))], bs)
    # hyperplanes through one common point (0.5, 0.5) of the box, then a layer through one common point too
    ang = np.array([0.0, 0.7, 1.9, 2.6])
    Wc = np.c_[np.cos(ang), np.sin(ang)]
    out["concurrent"] = net_of([Wc, rng.normal(size=(3, 4)), np.ones((1, 3))], [-Wc @ [0.5, 0.5], np.zeros(3), [0.0]])
    return out


def duplicate_units_net() -> ReluNet:
    """Duplicate hidden units (identical rows): symmetric solutions must all be listed."""
    net = random_net([2, 3, 3, 1], seed=11)
    w, b = net.weights, net.biases
    w0 = np.vstack([w[0], w[0][:1]])
    b0 = np.concatenate([b[0], b[0][:1]])
    w1 = np.hstack([w[1], np.zeros((3, 1))])
    w1 = np.vstack([w1, w1[:1]])
    b1 = np.concatenate([b[1], b[1][:1]])
    w2 = np.hstack([w[2], np.zeros((1, 1))])
    return ReluNet([w0, w1, w2], [b0, b1, b[2]])


DEGENERATE = ["concurrent", "corner", "dead_then_const", "duplicates", "stable_mix", "zero_rows"]
_HAND_BUILT = {name: functools.partial(lambda n: degenerate_nets()[n], name) for name in DEGENERATE}
_HAND_BUILT["duplicate_units"] = duplicate_units_net

_SHAPES_WALK = [[2, 3, 3, 1], [3, 4, 3, 1], [2, 4, 4, 1], [3, 3, 2, 2, 1], [2, 8, 1], [3, 2, 2, 2, 2, 1]]
_ARCHS_STABILITY = [[2, 3, 3, 1], [2, 4, 3, 2, 1], [3, 5, 5, 1], [3, 4, 3, 2, 1]]
_ARCHS_MILP = [[2, 3, 3, 1], [2, 4, 3, 2, 1], [3, 5, 5, 1]]
_SHAPES_REGION_BOUNDS = [[2, 3, 3, 1], [2, 4, 3, 1], [3, 4, 3, 1], [2, 3, 2, 2, 1], [3, 5, 4, 1], [2, 2, 2, 2, 2, 1]]

# Each family is the list of nets one group of tests checks; a net in several families is one NetSpec.
CATALOGUE: dict[str, list[NetSpec]] = {
    # every backend through both drivers (test_backend_conformance.py) and the file driver's tests
    "tiny": [spec(s, seed) for s in ([2, 3, 3, 1], [3, 4, 3, 2, 1], [2, 5, 5, 1]) for seed in range(3)]
            + [spec([3, 4, 3, 2, 1], 4, 3.0), spec([2, 5, 5, 1], 5, 2.5), spec([3, 3, 3, 1], 6, 4.0),
               spec([3, 5, 4, 1], 9, 0.4), NetSpec(name="duplicate_units")],
    # hand-built degenerate arrangements (every backend, and the region walk with every unit open)
    "degenerate": [NetSpec(name=n) for n in DEGENERATE],
    # the region walk against the brute force (test_lp_enum.py)
    "walk": [spec(s, 100 * seed + len(s), scale) for seed in range(3) for s in _SHAPES_WALK
             for scale in (0.1, 0.6, 2.0)],
    # certified bounds of a count (test_count_bounds.py)
    "count_bounds": [spec([2, 3, 3, 1], 0), spec([3, 4, 3, 2, 1], 1), spec([2, 5, 5, 1], 5, 2.5),
                     spec([3, 5, 4, 1], 9, 0.4)],
    # stable units against exact per-region LPs (test_bounds.py)
    "stability": [spec(a, s) for a in _ARCHS_STABILITY for s in range(3)]
                 + [spec(a, s, shift=sh) for a in _ARCHS_STABILITY for s in (3, 4) for sh in (-1.0, 1.0)],
    # the lean MILP formulation (test_milp_formulation.py)
    "milp": [spec(a, s) for a in _ARCHS_MILP for s in range(3)]
            + [spec(a, s, shift=sh) for a in _ARCHS_MILP for s in (5, 6) for sh in (-1.5, 1.5)],
    # region-count bounds sandwiching the brute force (test_region_bounds.py)
    "region_bounds": [spec(s, seed, shift=sh) for s in _SHAPES_REGION_BOUNDS for seed in range(3)
                      for sh in (0.0, -0.6)],
    # plane sections: 2-input nets (brute force) and 3-input nets (sampling only) (test_sections.py)
    "sections": [spec([2, 4, 3, 2], 0), spec([2, 5, 4, 2], 1), spec([2, 4, 3, 2, 2], 2), spec([3, 5, 4, 2], 3),
                 spec([3, 8, 8, 6, 2], 4)],
}


SLOW_HIDDEN = 7       # nets with this many hidden units or more (2^N >= 128 brute-force LPs) are marked slow


def nets(family: str) -> list:
    """The nets of one family of the catalogue, to parametrize with (ids=str): those with SLOW_HIDDEN hidden
    units or more are marked slow (`make test-fast` leaves them out). CATALOGUE[family] is the plain list."""
    return [pytest.param(s, marks=pytest.mark.slow) if s.n_hidden >= SLOW_HIDDEN else s for s in CATALOGUE[family]]


def catalogue_net(name: str) -> NetSpec:
    """The catalogue's net with this name (str(spec))."""
    for family in CATALOGUE.values():
        for s in family:
            if str(s) == name:
                return s
    raise KeyError(name)


# ---- the brute-force oracle, cached for the session -------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _reference(s: NetSpec, lo: tuple, hi: tuple, tol: float) -> frozenset:
    return frozenset(brute_force_patterns(s.net(), Box(np.array(lo), np.array(hi), "reference"), tol))


def reference(s: NetSpec, box: Box | None = None, tol: float = TOL) -> set:
    """Every feasible pattern of the catalogue net `s` on `box` (default [0,1]^n0), by the brute force;
    computed once per session."""
    if box is None:
        box = Box.uniform(s.net().n_inputs)
    return set(_reference(s, tuple(map(float, box.lo)), tuple(map(float, box.hi)), float(tol)))


@functools.lru_cache(maxsize=None)
def sampled_reference(s: NetSpec, n_points: int = 100_000, seed: int = 1) -> frozenset:
    """The patterns seen at n_points seeded random points of [0,1]^n0 (a subset of `reference`)."""
    net = s.net()
    return frozenset(sampled_patterns(net, Box.uniform(net.n_inputs), n_points, seed))


def as_set(patterns) -> set:
    """A collection of 0/1 patterns as a set of int tuples."""
    return {tuple(int(v) for v in p) for p in patterns}


# ---- running scripts and entry points ------------------------------------------------------------------
class SaveRecorder:
    """A count's checkpoint that is always due: each save records (patterns in `found` then, the frontier), for
    tests that every frontier holds exactly the patterns not yet emitted."""

    def __init__(self, found: list):
        self.found, self.saves = found, []

    def due(self) -> bool:
        return True

    def save(self, frontier, held=None) -> None:
        self.saves.append((len(self.found), list(frontier)))


def cli_env(env: dict | None = None) -> dict:
    """This process's environment with OMP_NUM_THREADS=1 and `env` applied (a None value removes a variable)."""
    out = dict(os.environ, OMP_NUM_THREADS="1")
    for k, v in (env or {}).items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = str(v)
    return out


def run_cli(target, *args, cwd=ROOT, env: dict | None = None, timeout: float = 600, background: bool = False):
    """Run a script or a CLI entry point; returns a subprocess.CompletedProcess (returncode, stdout, stderr).

    target: a script path (relative to the repository root, or absolute; *.py runs with this interpreter,
    anything else is executed) run as a subprocess in `cwd` with cli_env(env); or a callable main(argv),
    run in this process as the scripts run it (src/cli/runner.run_main: a ToolError is one `error:` line and
    exit 2, Ctrl-C exit 130) with its stdout/stderr captured. background=True (scripts only): start it and
    return the subprocess.Popen (text pipes) without waiting.
    """
    argv = [str(a) for a in args]
    if callable(target):
        from src.cli.runner import run_main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                run_main(target, argv)
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        return subprocess.CompletedProcess([getattr(target, "__module__", "main"), *argv], code, out.getvalue(),
                                           err.getvalue())
    script = Path(target) if Path(target).is_absolute() else ROOT / target
    cmd = ([PY] if script.suffix == ".py" else []) + [str(script), *argv]
    if background:
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
                                env=cli_env(env))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=cli_env(env), timeout=timeout)


def load_script(path):
    """A script of the repository (a path relative to the root) imported as a module, to call its main here."""
    import importlib.util

    name = "script_" + str(path).replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ---- kill tests: the deterministic pause of src/core/fault_hooks.py ---------------------------------------
def pause_env(marker, after: str) -> dict:
    """The environment that makes a count ("patterns:K") or a training ("epochs:K") pause once at a known
    point and write `marker` (see src/core/fault_hooks.py)."""
    return {PAUSE_AFTER: after, PAUSE_MARKER: str(marker)}


def wait_for_pause(proc, marker, timeout: float = 300) -> dict:
    """Wait until the process tree of `proc` has paused at its pause point; the marker's record (pid, kind,
    done, after). Fails (and kills proc) when proc ends first or nothing pauses within `timeout`."""
    marker = Path(marker)
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the process ended (exit {proc.returncode}) before its pause point:\n{out[-2000:]}"
                        f"\n{err[-2000:]}")
        if time.time() > deadline:
            proc.kill()
            proc.communicate()
            pytest.fail(f"no pause within {timeout} s")
        time.sleep(0.02)
    assert proc.poll() is None, "the process ended at its pause point"
    return json.loads(marker.read_text())


# ---- fixtures ---------------------------------------------------------------------------------------------
@pytest.fixture
def default_sigint():
    """Python's own Ctrl-C handler for the test, whatever pytest inherited: a suite started in the background
    (nohup, `cmd &` in a script) inherits SIGINT ignored, and a test of handler restoration must know the
    handler it started with."""

    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield signal.default_int_handler
    signal.signal(signal.SIGINT, before)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def ray_session():
    """One embedded Ray with 2 CPUs shared by the tests of a module that ask for it; shut down after them."""
    from src.parallel import _import_ray, start_local

    leftover = _import_ray()
    if leftover.is_initialized():   # an earlier module of this xdist worker left Ray connected (seen once in a
        leftover.shutdown()         # fresh-clone run: "Maybe you called ray.init twice"; its origin not found)
    ray = start_local(2)
    yield ray
    ray.shutdown()
