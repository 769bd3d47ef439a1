#!/usr/bin/env python3
"""Benchmark of the two-hidden-layer transformation: build time, units, shared vs naive size, throughput.

Patterns: those of a trained net (or, without one, a seeded random 784-16-16-10 net; the output says
which) at MNIST images and at random perturbations of them, clipped to [0,1]; the pattern of a
point of D is feasible, so these are feasible patterns. For each count (10^3, 10^4, 10^5 by
default) the first that many distinct patterns are used: sizes by formula (naive and trie), the
full-sharing build (when it fits --build-max), and the new net's evaluation speed on MNIST test
images next to the original net's, with the fraction of images where both agree to 1e-6.

    python benchmarks/bench_transform.py [-w weights.dat] [--counts 1000,10000,100000]
"""
import argparse
import glob
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from src.core.box import Box  # noqa: E402
from src.core.network import ReluNet  # noqa: E402
from src.transform.two_hidden import build_two_hidden  # noqa: E402
from src.transform.sizes import formula_sizes, fmt_int, memory_params  # noqa: E402
from src.io.readers import load_net


def pick_net(weights):
    if weights:
        return load_net(weights), f"trained: {weights}"
    found = sorted(glob.glob(str(ROOT / "forward_pass/activation_pattern/models/fcnn_run_*/weights.dat")))
    nets = [(load_net(f), f) for f in found]
    nets = [(n, f) for n, f in nets if n.n_hidden_units <= 64]
    if nets:
        n, f = min(nets, key=lambda t: t[0].n_hidden_units)
        return n, f"trained: {f}"
    rng = np.random.default_rng(0)
    sizes = [784, 16, 16, 10]
    ws = [rng.normal(scale=1 / np.sqrt(i), size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [0.1 * rng.normal(size=o) for o in sizes[1:]]
    return ReluNet(ws, bs), "random 784-16-16-10 (seed 0; no trained net with <= 64 hidden units found)"


def collect_patterns(net, want, seed=0, max_points=3_000_000):
    """Distinct patterns in order of discovery at MNIST images, then at points between two random
    images (x_a + t (x_b - x_a), t ~ U(0,1)) plus uniform noise, clipped to [0,1]^784."""
    from src.io.mnist import load_mnist_arrays

    X = np.vstack([load_mnist_arrays("train")[0], load_mnist_arrays("test")[0]]).astype(np.float64)
    rng = np.random.default_rng(seed)
    seen, order = set(), []
    B, used = X, 0
    while True:
        packed = np.packbits(net.patterns(B), axis=1)
        _, first = np.unique(packed, axis=0, return_index=True)
        for j in np.sort(first):
            k = packed[j].tobytes()
            if k not in seen:
                seen.add(k)
                order.append(k)
        used += len(B)
        if len(order) >= want or used >= max_points:
            break
        a, b = rng.integers(0, len(X), size=(2, 50_000))
        t = rng.random((50_000, 1))
        B = np.clip(X[a] + t * (X[b] - X[a]) + rng.uniform(-0.1, 0.1, size=(50_000, X.shape[1])), 0.0, 1.0)
    N = net.n_hidden_units
    P = np.unpackbits(np.frombuffer(b"".join(order), dtype=np.uint8).reshape(len(order), -1), axis=1)[:, :N]
    return P, used


def throughput(f, X, budget=3.0):
    """Points per second of f on X: doubling slices of X until one takes `budget` seconds (or all of X)."""
    n = min(64, len(X))
    while True:
        t0 = time.perf_counter()
        f(X[:n])
        dt = time.perf_counter() - t0
        if dt >= budget or n == len(X):
            return n / dt
        n = min(len(X), 2 * n)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-w", "--weights", default=None, help="a trained net (default: the smallest trained "
                    "fcnn_run_* with <= 64 hidden units, else a random 784-16-16-10 net)")
    ap.add_argument("--counts", default="1000,10000,100000", help="pattern counts")
    ap.add_argument("--build-max", type=int, default=100_000_000,
                    help="build only when the trie-formula net holds at most this many numbers")
    ap.add_argument("--eval-points", type=int, default=2000, help="MNIST test images for the throughput")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (set through threadpoolctl if present)")
    args = ap.parse_args()
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    except ImportError:
        pass
    counts = [int(c) for c in args.counts.split(",")]
    net, what = pick_net(args.weights)
    print(f"net: {net!r}, {what}")
    t0 = time.perf_counter()
    P_all, used = collect_patterns(net, max(counts))
    print(f"collected {len(P_all)} distinct patterns at {used} points in {time.perf_counter() - t0:.1f} s")
    from src.io.mnist import load_mnist_arrays

    Xt = load_mnist_arrays("test")[0][:args.eval_points].astype(np.float64)
    box = Box.uniform(net.n_inputs)
    orig_rate = throughput(net.forward, Xt)
    print(f"original net: {orig_rate:,.0f} points/s")
    hdr = (f"{'patterns':>9} {'formula s':>9} {'build s':>8} {'H1 built':>9} {'(viol+val)':>15} {'H2':>8} "
           f"{'H1 naive':>10} {'H1 naive/built':>14} {'params naive/built':>18} {'nnz built':>11} {'nnz naive/built':>15} "
           f"{'points/s':>9} {'match':>7}")
    print(hdr)
    for k in counts:
        if k > len(P_all):
            print(f"{k:>9} only {len(P_all)} distinct patterns were found; skipped")
            continue
        P = P_all[:k]
        t0 = time.perf_counter()
        f = formula_sizes(net.layer_sizes, P)
        tf = time.perf_counter() - t0
        naive, trie = f["naive"], f["shared"]
        mem = memory_params(trie, net.n_hidden_units)
        if mem > args.build_max:
            print(f"{k:>9} {tf:>9.2f} {'-':>8} {'-':>9} {'':>15} {trie['layer_sizes'][2]:>8} "
                  f"{naive['layer_sizes'][1]:>10} trie formula: H1 {trie['layer_sizes'][1]}, "
                  f"ratio {naive['layer_sizes'][1] / trie['layer_sizes'][1]:.2f}; not built "
                  f"({fmt_int(mem)} numbers > --build-max {args.build_max}, ~{8 * mem / 1e9:.1f} GB)")
            continue
        res = build_two_hidden(net, box, P, share="full")
        two = res.net
        h1 = two.layer_sizes[1]
        n0, N, m = net.n_inputs, net.n_hidden_units, net.n_outputs
        h1n, h2n = naive["layer_sizes"][1:3]
        naive_nnz = h1n * (n0 + 1) + k * (m * (1 + N) + N) + h2n + 2 * k * m + m   # structural, naive net
        rate = throughput(two.forward, Xt)
        keys = {p.tobytes() for p in np.packbits(P, axis=1)}
        known = np.array([p.tobytes() in keys for p in np.packbits(net.patterns(Xt), axis=1)])
        y0, y1 = net.forward(Xt[known]), two.forward(Xt[known])
        match = float((np.abs(y1 - y0).max(1) <= 1e-6 * np.maximum(1, np.abs(y0).max(1))).mean()) if known.any() else float("nan")
        print(f"{k:>9} {tf:>9.2f} {res.seconds:>8.2f} {h1:>9} "
              f"{'(' + str(sum(res.violation_units)) + '+' + str(res.value_units) + ')':>15} {two.layer_sizes[2]:>8} "
              f"{naive['layer_sizes'][1]:>10} {naive['layer_sizes'][1] / h1:>14.2f} "
              f"{naive['params'] / two.n_params:>18.2f} {two.nonzeros:>11} {naive_nnz / two.nonzeros:>15.2f} {rate:>9,.0f} "
              f"{match:>7.4f}  ({known.sum()} of {len(Xt)} images have a listed pattern; band {res.band_width:.2g})")
        del res, two


if __name__ == "__main__":
    main()
