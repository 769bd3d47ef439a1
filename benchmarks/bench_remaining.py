#!/usr/bin/env python
"""`--remaining N` (src/counting/knuth.py: estimate_regions(roots=frontier)) against the truth: one exact count
of the compiled lp walk on an MNIST net trained here (benchmarks/common.train_nets) over [0,1]^784 records its
real frontier when 10 %, 50 % and 90 % of the regions are found (the checkpoint hook, as a running count saves
it); the regions left below each frontier are then known exactly, and the estimate of them is run for
--seeds seeds: its coverage, its spread and its time.

    python benchmarks/bench_remaining.py                                 # 784-10-10-10, a few minutes
    python benchmarks/bench_remaining.py --arch mlp:8-8 --probes 200,2000 --seeds 10
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import train_nets  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.counting.knuth import estimate_regions  # noqa: E402
from src.counting.walk_driver import run_search  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
from src.io.readers import load_net  # noqa: E402
from src.stability.analyse import analyse_stability  # noqa: E402


class FrontierAt:
    """A checkpoint object for the walk: due once the count reaches each threshold; keeps (found, frontier)."""

    def __init__(self, thresholds, count):
        self.todo, self.count, self.saved = sorted(thresholds), count, []

    def due(self) -> bool:
        return bool(self.todo) and self.count() >= self.todo[0]

    def save(self, frontier) -> None:
        self.saved.append((self.count(), list(frontier)))
        while self.todo and self.count() >= self.todo[0]:
            self.todo.pop(0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mlp:10-10")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--subset", type=int, default=10000, help="training images (0: all 60,000)")
    p.add_argument("--fractions", default="0.1,0.5,0.9", help="where the frontier is taken (share of the regions)")
    p.add_argument("--probes", default="400,2000")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--work-dir", default="benchmarks/out/remaining")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    w = train_nets(work, [args.arch], [0.0], args.epochs, args.subset, 0)[0]
    net = load_net(w)
    box = Box.uniform(net.n_inputs)
    st = analyse_stability(net, box, tol=1e-6, progress=False)
    fixed = st.fixed_bits()
    # a first count gives the truth, a second one the frontiers at the shares of it (the walk is deterministic)
    n = [0]
    t = time.perf_counter()
    out = run_search(net, box, fixed, 1e-6, lambda b: n.__setitem__(0, n[0] + 1))
    t_exact = time.perf_counter() - t
    truth = n[0]
    assert out.complete
    print(f"{'-'.join(map(str, net.layer_sizes))}: {truth:,} regions in {t_exact:.1f} s", file=sys.stderr, flush=True)
    n[0] = 0
    ck = FrontierAt([max(1, int(float(f) * truth)) for f in args.fractions.split(",")], lambda: n[0])
    run_search(net, box, fixed, 1e-6, lambda b: n.__setitem__(0, n[0] + 1), checkpoint=ck)
    rows = []
    for found, frontier in ck.saved:
        left = truth - found
        for probes in (int(x) for x in args.probes.split(",")):
            ests = [estimate_regions(net, box, st, probes=probes, tol=1e-6, seed=s, roots=frontier)
                    for s in range(args.seeds)]
            cov = sum(e.ci95[0] <= left <= (e.ci95[1] if e.ci95[1] is not None else np.inf) for e in ests)
            ratio = [e.value / left for e in ests]
            r = {"net": "-".join(map(str, net.layer_sizes)), "regions": truth, "exact_s": round(t_exact, 1),
                 "found": found, "left": left, "subtrees": len(frontier), "probes": probes,
                 "coverage": f"{cov}/{len(ests)}", "ratio_min": round(min(ratio), 3),
                 "ratio_median": round(float(np.median(ratio)), 3), "ratio_max": round(max(ratio), 3),
                 "ci_width_rel_median": round(float(np.median([(e.ci95[1] - e.ci95[0]) / left for e in ests])), 3),
                 "seconds_median": round(float(np.median([e.seconds for e in ests])), 2)}
            rows.append(r)
            print(r, file=sys.stderr, flush=True)
    print(f"\n{rows[0]['net']}: {truth:,} regions, exact count {t_exact:.1f} s (one core)\n")
    print("| found | left (exact) | subtrees | probes | coverage | estimate/left min · median · max | "
          "CI width/left (median) | seconds (median) |")
    print("|---:|---:|---:|---:|---:|---|---:|---:|")
    for r in rows:
        print(f"| {r['found']:,} | {r['left']:,} | {r['subtrees']} | {r['probes']} | {r['coverage']} | "
              f"{r['ratio_min']} · {r['ratio_median']} · {r['ratio_max']} | {r['ci_width_rel_median']} | "
              f"{r['seconds_median']} |")
    atomic_write_json(work / "bench_remaining.json", {"date": time.strftime("%Y-%m-%d"), "args": vars(args),
                                                      "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
