"""Does `--time-limit T` hold on wide nets, for every backend? Wall time of whole count commands.

    python benchmarks/bench_time_limit.py [--time-limit 30] [--epochs 2] [--subset 10000] [--backends lp,gurobi,scip]

Trains (or reuses) MNIST nets with wide layers, 784-100-100-10, 784-200-200-10 and the seed's fcnn4b
(784-100-100-100-100-10), and runs `count_linear_regions.py -w NET --backend B --time-limit T` on each,
as a user would (a fresh process: start-up, data pass, bounds, enumeration, files). The criterion of
the count is T + max(5 s, 10 %) for the whole command. Prints a Markdown table (and writes it to
benchmarks/out/time_limit.md).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import train_nets  # noqa: E402
from src.io.records import read_regions  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=30.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--backends", default="lp,gurobi,scip")
    p.add_argument("--archs", default="mlp:100-100,mlp:200-200,fcnn4b")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "out"))
    args = p.parse_args()
    work = Path(args.work)
    nets = train_nets(work, args.archs.split(","), [0.0], args.epochs, args.subset, seed=0)
    T = args.time_limit
    bound = T + max(5.0, 0.1 * T)
    rows = ["| net | backend | wall s (limit %g, bound %g) | holds | patterns found | complete |" % (T, bound),
            "|---|---|---|---|---|---|"]
    for arch, w in zip(args.archs.split(","), nets):
        for b in args.backends.split(","):
            out = work / "time_limit" / f"{arch.replace(':', '_')}_{b}"
            out.mkdir(parents=True, exist_ok=True)
            env = {**os.environ, "OMP_NUM_THREADS": "1"}
            t0 = time.monotonic()
            r = subprocess.run([sys.executable, str(ROOT / "count_linear_regions.py"), "-w", str(w), "--backend", b,
                                "--time-limit", str(T), "-q", "--out-dir", str(out), "--checkpoint-every", "0"],
                               capture_output=True, text=True, env=env, cwd=ROOT)
            wall = time.monotonic() - t0
            try:
                s = read_regions(out / "regions_input_0_1.json")
                found, complete = s["count"], s["complete"]
            except Exception as e:  # noqa: BLE001 (reported in the table)
                found, complete = f"no summary ({r.returncode}: {r.stderr.strip()[-80:] or e})", None
            rows.append(f"| {arch} | {b} | {wall:.1f} | {'yes' if wall <= bound else 'NO'} | {found} | {complete} |")
            print(rows[-1], flush=True)
    text = "\n".join(rows) + "\n"
    (work / "time_limit.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
