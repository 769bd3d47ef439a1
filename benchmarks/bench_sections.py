#!/usr/bin/env python3
"""Time of exact sections (src/sections/plane.py) on fcnn4b (784-100-100-100-100-10).

Nets: a randomly initialised fcnn4b (Kaiming-normal weights, biases 0.1·N(0,1), seed --seed) and
fcnn4b trained briefly with src.training.train (--epochs on the first --train-subset images, one net per
--l1; cached in --work-dir and reused), unless --no-train. For each net: the plane through MNIST
test images --images (the view of count_linear_regions.py --slice: the images and the box section,
padded by 12%), with its polygon and region counts, and --segments seeded pairs of test images.
Results also go to <work-dir>/bench_sections.json.

    python benchmarks/bench_sections.py [--images 0,1,2] [--segments 100] [--l1 0,1e-4] [--no-train]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import train_nets  # noqa: E402
from src.sections.plane import default_view, plane_section, plane_through
from src.sections.files import seeded_pairs, segments_summary
from src.sections.segments import segment_sections
from src.io.mnist import load_mnist_arrays  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
from src.cli.runner import run_main  # noqa: E402
from src.training.models import parse_arch  # noqa: E402
from src.core.network import ReluNet  # noqa: E402
from src.io.readers import load_net


def random_fcnn4b(seed: int) -> ReluNet:
    sizes = [784] + parse_arch("fcnn4b") + [10]
    rng = np.random.default_rng(seed)
    ws = [rng.normal(scale=np.sqrt(2.0 / i), size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [0.1 * rng.normal(size=o) for o in sizes[1:]]
    return ReluNet(ws, bs)


def measure(net: ReluNet, X, images, n_segments: int, seed: int) -> dict:
    box = Box.uniform(784)
    plane = plane_through(X[list(images)].astype(np.float64))
    view = default_view(plane, box, [[0, 0], [1, 0], [0, 1]])
    t0 = time.perf_counter()
    sec = plane_section(net, plane, view, box)
    t_plane = time.perf_counter() - t0
    pairs = seeded_pairs(len(X), n_segments, seed)
    t0 = time.perf_counter()
    segs = segment_sections(net, X[[i for i, _ in pairs]].astype(np.float64),
                                     X[[j for _, j in pairs]].astype(np.float64))
    t_seg = time.perf_counter() - t0
    summ = segments_summary(segs)
    return {"polygons": sec.n_polygons, "regions_in_box": sec.regions_in_box, "regions_in_view": sec.regions_in_view,
            "unverified": len(sec.unverified), "slivers_dropped": sec.slivers_dropped,
            "plane_seconds": round(t_plane, 3), "segments": n_segments, "segments_seconds": round(t_seg, 3),
            "median_regions_per_segment": summ["median_regions"],
            "median_regions_per_unit_length": summ["median_regions_per_unit_length"],
            "segments_unverified": summ["unverified"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default="0,1,2", help="three MNIST test indices for the plane (default 0,1,2)")
    p.add_argument("--segments", type=int, default=100, help="seeded pairs of test images (default 100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random net and of the pairs")
    p.add_argument("--l1", default="0", help="comma list of l1 values of the trained nets (default 0)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--no-train", action="store_true", help="only the randomly initialised net")
    p.add_argument("--work-dir", default="benchmarks/out/sections", help="trained nets and the results JSON")
    args = p.parse_args(argv)
    images = [int(t) for t in args.images.split(",")]
    X, _ = load_mnist_arrays("test")
    nets = [(f"fcnn4b random init (seed {args.seed})", random_fcnn4b(args.seed))]
    if not args.no_train:
        l1s = [float(v) for v in args.l1.split(",")]
        for l1, w in zip(l1s, train_nets(Path(args.work_dir), ["fcnn4b"], l1s, args.epochs, args.train_subset,
                                          args.seed)):
            nets.append((f"fcnn4b trained {args.epochs} ep. on {args.train_subset}, l1={l1:g}", load_net(w)))
    rows = []
    print(f"plane through test images {args.images}; {args.segments} seeded segments (seed {args.seed})")
    print(f"{'net':<44} {'polygons':>8} {'in box':>7} {'in view':>7} {'unver.':>6} {'plane s':>8} "
          f"{'seg s':>6} {'regions/seg':>11} {'per L2':>7}")
    for name, net in nets:
        r = {"net": name, **measure(net, X, images, args.segments, args.seed)}
        rows.append(r)
        print(f"{name:<44} {r['polygons']:>8} {r['regions_in_box']:>7} {r['regions_in_view']:>7} "
              f"{r['unverified'] + r['segments_unverified']:>6} {r['plane_seconds']:>8.2f} "
              f"{r['segments_seconds']:>6.2f} {r['median_regions_per_segment']:>11g} "
              f"{r['median_regions_per_unit_length']:>7.3g}")
    atomic_write_json(Path(args.work_dir) / "bench_sections.json",
                      {"images": images, "segments": args.segments, "seed": args.seed, "rows": rows})
    return 0


if __name__ == "__main__":
    run_main(main)
