#!/usr/bin/env python
"""`--estimate N` (src/counting/knuth.py) beside the exact count of the compiled lp walk, on MNIST nets trained
here (benchmarks/common.train_nets) over [0,1]^784: the estimate, its 95 % interval and time for one seed, then
the coverage of the interval and the spread of the estimate over --seeds seeds.

    python benchmarks/bench_estimate.py                                  # 784-6-6-10 and 784-8-8-10, a few minutes
    python benchmarks/bench_estimate.py --archs mlp:8-8 --probes 200 --seeds 10
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="mlp:6-6,mlp:8-8")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--subset", type=int, default=10000, help="training images (0: all 60,000)")
    p.add_argument("--probes", type=int, default=100)
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--work-dir", default="benchmarks/out/estimate")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    rows = []
    for w in train_nets(work, args.archs.split(","), [0.0], args.epochs, args.subset, 0):
        net = load_net(w)
        box = Box.uniform(net.n_inputs)
        st = analyse_stability(net, box, tol=1e-6, progress=False)
        n = [0]
        t = time.perf_counter()
        out = run_search(net, box, st.fixed_bits(), 1e-6, lambda b: n.__setitem__(0, n[0] + 1))
        t_exact = time.perf_counter() - t
        truth = n[0]
        ests = [estimate_regions(net, box, st, probes=args.probes, tol=1e-6, seed=s) for s in range(args.seeds)]
        cov = sum(e.ci95[0] <= truth <= (e.ci95[1] if e.ci95[1] is not None else np.inf) for e in ests)
        ratio = [e.value / truth for e in ests]
        e0 = ests[0]
        r = {"net": "-".join(map(str, net.layer_sizes)), "unstable": e0.unstable_units, "exact": truth,
             "exact_complete": bool(out.complete), "exact_s": round(t_exact, 2), "probes": args.probes,
             "estimate_seed0": round(e0.value, 1), "ci95_seed0": [round(v, 1) for v in e0.ci95],
             "strata": e0.strata, "estimate_s_mean": round(float(np.mean([e.seconds for e in ests])), 2),
             "strata_lps": int(e0.stats["lps"]),
             "walk_lps_per_probe": round(e0.stats.get("walk_lps", 0) / max(1, e0.probes), 2),
             "coverage": f"{cov}/{len(ests)}", "ratio_min": round(min(ratio), 3), "ratio_median":
             round(float(np.median(ratio)), 3), "ratio_max": round(max(ratio), 3),
             "ci_width_rel_median": round(float(np.median([(e.ci95[1] - e.ci95[0]) / truth for e in ests])), 3)}
        rows.append(r)
        print(r, file=sys.stderr, flush=True)
    print("\n| net | unstable | exact count | exact s | probes | estimate (seed 0) [95% CI] | strata | "
          "estimate s | strata LPs | walk LPs/probe | coverage | estimate/exact min · median · max | CI width/exact (median) |")
    print("|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|---:|")
    for r in rows:
        print(f"| {r['net']} | {r['unstable']} | {r['exact']:,} | {r['exact_s']} | {r['probes']} | "
              f"{r['estimate_seed0']:,} [{r['ci95_seed0'][0]:,}, {r['ci95_seed0'][1]:,}] | {r['strata']} | "
              f"{r['estimate_s_mean']} | {r['strata_lps']} | {r['walk_lps_per_probe']} | {r['coverage']} | {r['ratio_min']} · "
              f"{r['ratio_median']} · {r['ratio_max']} | {r['ci_width_rel_median']} |")
    atomic_write_json(work / "bench_estimate.json", {"date": time.strftime("%Y-%m-%d"), "args": vars(args),
                                                     "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
