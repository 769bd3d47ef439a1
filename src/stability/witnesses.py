"""Witnesses: points of the box whose exact forward pass certifies units unstable.

Data first (points of the box: MNIST images inside it and seeded samples, recorded in chunked
forward passes) and local search (projected gradient ascent / descent of one unit's g).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from src.core.box import Box
from src.core.network import ReluNet
from src.io.mnist import load_mnist_arrays
from src.stability.record import Stability, _record_witnesses

N_WITNESS_SAMPLES = 2048


def witness_points(box: Box, n: int = N_WITNESS_SAMPLES, seed: int = 0) -> np.ndarray:
    """Points of the box used as witnesses: its center, both corners, and n seeded uniform samples."""
    rng = np.random.default_rng(seed)
    return np.vstack([(box.lo + box.hi) / 2, box.lo, box.hi, box.sample(n, rng)])


CHUNK = 8192                # rows per batched forward pass (bounds memory: CHUNK x width float64 per layer)

N_DATA_SAMPLES = 100_000    # default number of seeded uniform samples of the box


@dataclass(frozen=True, eq=False)
class SeededSamples:
    """n uniform samples of `box` from np.random.default_rng(seed), produced chunk by chunk.

    The chunks concatenate to box.sample(n, np.random.default_rng(seed)) whatever the chunk size,
    so n = 100,000 points of [0,1]^784 never sit in memory at once.
    """

    box: Box
    n: int
    seed: int = 0

    def __len__(self) -> int:
        return int(self.n)

    def chunks(self, size: int = CHUNK):
        rng = np.random.default_rng(self.seed)
        for start in range(0, int(self.n), size):
            yield self.box.sample(min(size, int(self.n) - start), rng)


def iter_chunks(points, size: int = CHUNK):
    """float64 chunks (<= size rows) of an array of points or of a SeededSamples."""
    if isinstance(points, SeededSamples):
        yield from points.chunks(size)
        return
    x = np.asarray(points)
    if x.ndim == 1:
        x = x[None, :]
    for start in range(0, len(x), size):
        yield np.asarray(x[start:start + size], np.float64)


def mnist_points_in_box(box: Box, data_root=None) -> dict[str, np.ndarray]:
    """{"train": X, "test": X}: the MNIST images (float32 in [0,1], read-only) that lie in the box.

    For [0,1]^784 these are all 60,000 + 10,000 images (no copy); for a local box the few inside
    it (the center image of `Box.around(test_image(k), ...)` always is). Loaded with
    src.io.mnist.load_mnist_arrays (offline; raises ToolError without MNIST). Needs a 784-input box.
    """

    if box.n != 784:
        raise ValueError(f"MNIST images have 784 pixels, the box has {box.n} inputs")
    out = {}
    for split in ("train", "test"):
        X, _ = load_mnist_arrays(split, root=data_root)
        inside = np.ones(len(X), bool)
        for start in range(0, len(X), CHUNK):
            inside[start:start + CHUNK] = box.contains(np.asarray(X[start:start + CHUNK], np.float64))
        out[split] = X if inside.all() else X[inside]
    return out


def data_points_for_box(box: Box, data_root=None, n_samples: int = N_DATA_SAMPLES, seed: int = 0,
                        mnist: bool | None = None) -> dict:
    """Points of the box by source: {"train": ..., "test": ..., "samples": SeededSamples}.

    "train"/"test": MNIST images inside the box (`mnist_points_in_box`), only when mnist is True,
    or None (the default) and the box has 784 inputs; "samples": n_samples seeded uniform samples.
    Feed it to analyse_stability(data=...) and src.counting.count_bounds.data_patterns.
    """
    use_mnist = box.n == 784 if mnist is None else bool(mnist)
    out = mnist_points_in_box(box, data_root) if use_mnist else {}
    out["samples"] = SeededSamples(box, int(n_samples), int(seed))
    return out


def record_points(st: Stability, net: ReluNet, box: Box, points, deadline: float | None = None,
                  chunk: int = CHUNK) -> int:
    """Record witnesses at the given points that lie in the box, in batched chunked forward passes.

    points: an array (n, n0), a SeededSamples, or a dict of those (e.g. `data_points_for_box`);
    or an object with per-layer witness_min / witness_max of g over points of this box and an
    n_points count (src.counting.count_bounds.DataPatterns), merged without a forward pass.
    Points outside the box are dropped (not clipped). Stops between chunks once the deadline has
    passed (fewer witnesses: still sound). Returns the number of points used.
    """
    if hasattr(points, "witness_min") and hasattr(points, "witness_max"):
        if points.witness_min is None:
            return 0
        if st.witness_min is None:
            st.witness_min = [w.copy() for w in points.witness_min]
            st.witness_max = [w.copy() for w in points.witness_max]
        else:
            for l in range(len(st.witness_min)):
                st.witness_min[l] = np.minimum(st.witness_min[l], points.witness_min[l])
                st.witness_max[l] = np.maximum(st.witness_max[l], points.witness_max[l])
        for l in range(len(st.lower)):
            st.upper[l] = np.maximum(st.upper[l], st.witness_max[l])
            st.lower[l] = np.minimum(st.lower[l], st.witness_min[l])
        return int(points.n_points)
    sources = points.values() if isinstance(points, dict) else [points]
    used = 0
    for src in sources:
        for x in iter_chunks(src, chunk):
            if deadline is not None and time.perf_counter() > deadline:
                return used
            x = x[box.contains(x)]
            if len(x):
                _record_witnesses(st, net, box, x)
                used += len(x)
    return used


def _unit_gradient(net: ReluNet, x: np.ndarray, layer: int, unit: int):
    """(g, dg/dx) of one unit at a batch of points (the gradient of the linear piece at each point)."""
    h, masks = x, []
    for l in range(layer):
        g = h @ net.weights[l].T + net.biases[l]
        m = g > 0
        masks.append(m)
        h = np.where(m, g, 0.0)
    w = net.weights[layer][unit]
    val = h @ w + net.biases[layer][unit]
    d = np.broadcast_to(w, h.shape)
    for l in range(layer - 1, -1, -1):
        d = (d * masks[l]) @ net.weights[l]
    return val, d


def _pgd(net: ReluNet, box: Box, layer: int, unit: int, sgn: float, x: np.ndarray, steps: int, a0: float,
         a1: float):
    """Projected normalised-gradient ascent of sgn * g from every row of x; (best values, best points)."""
    width = box.hi - box.lo
    x = np.clip(x, box.lo, box.hi)
    best = np.full(len(x), -np.inf)
    bx = x.copy()
    for k in range(steps + 1):
        val, d = _unit_gradient(net, x, layer, unit)
        val = sgn * val
        imp = val > best
        best[imp], bx[imp] = val[imp], x[imp]
        if k == steps:
            break
        a = a0 * (a1 / a0) ** (k / max(steps - 1, 1))
        d = sgn * d
        scale = np.abs(d).max(axis=1, keepdims=True)
        x = np.clip(x + a * width * d / np.where(scale > 0, scale, 1.0), box.lo, box.hi)
    return best, bx


def ascent_witnesses(net: ReluNet, box: Box, layer: int, unit: int, sense: str, starts: np.ndarray,
                     target: float | None = None, rounds: int = 4, steps: int = 150,
                     step0: tuple = (1.0, 0.3), step1: float = 1e-3, seed: int = 0) -> np.ndarray:
    """Local search for witnesses of one unit: projected gradient ascent of g ('max') or descent ('min').

    Each round runs, from every start, normalised-gradient steps a * (hi - lo) * grad / max|grad|
    (a decaying geometrically from each step0 to step1), projected onto the box; the next round
    restarts from the best points, noisy copies of them and fresh samples (basin hopping). Stops
    once a point reaches `target` (g > target for 'max', g <= target for 'min'). Returns the best
    points found. A heuristic that can only certify: only the exact forward pass at them is trusted.
    """
    sgn = 1.0 if sense == "max" else -1.0
    rng = np.random.default_rng(seed)
    starts = np.atleast_2d(np.asarray(starts, np.float64))
    k = max(len(starts), 8)
    found = []
    for _ in range(rounds):
        vals, pts = [], []
        for a0 in step0:
            v, p = _pgd(net, box, layer, unit, sgn, starts, steps, a0, step1)
            vals.append(v)
            pts.append(p)
        vals, pts = np.concatenate(vals), np.vstack(pts)
        order = np.argsort(-vals)[:k]
        found.append(pts[order])
        if target is not None and (vals[order[0]] > target if sense == "max" else -vals[order[0]] <= target):
            break
        best = pts[order[: k // 2]]
        noisy = np.clip(best + rng.normal(scale=0.3, size=best.shape) * (box.hi - box.lo), box.lo, box.hi)
        starts = np.vstack([best, noisy, box.sample(k // 2, rng)])
    return np.vstack(found)


def _search_witnesses(st: Stability, net: ReluNet, box: Box, l: int, units, rng, deadline: float | None,
                      rounds: int = 1) -> int:
    """A short local search (`ascent_witnesses`) for the missing side of each unit, before any LP.

    For a unit no witness has shown with g > 0 it looks for one ('max'), for one never seen with
    g <= tol it looks for that ('min'), starting from the best of the box's witness points and
    fresh samples. Found points are recorded as witnesses (facts: only the forward pass at them
    counts). Returns the number of searches run (stops at the deadline).
    """
    pool = witness_points(box)
    g = net.preactivations(pool)[l]
    runs = 0
    for i in units:
        i = int(i)
        if st.witness_max[l][i] <= 0:
            sense, target, sgn = "max", 0.0, 1.0
        elif st.witness_min[l][i] > st.tol:
            sense, target, sgn = "min", st.tol, -1.0
        else:
            continue
        if deadline is not None and time.perf_counter() >= deadline:
            break
        top = pool[np.argsort(-sgn * g[:, i])[:16]]
        pts = ascent_witnesses(net, box, l, i, sense, np.vstack([top, box.sample(16, rng)]), target=target,
                               rounds=rounds, seed=int(rng.integers(2**31)))
        _record_witnesses(st, net, box, pts)
        runs += 1
    return runs
