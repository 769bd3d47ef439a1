#!/usr/bin/env python
"""The LP region-tree engine (backend 'lp') against the MILP backends, in one run, plus a scaling table.

Part 1 (comparison): for each trained MNIST net (--archs x --l1s) every available backend of
--backends counts the regions on [0,1]^784 with the same stable units (bounds computed once per
net and excluded from the times). Per backend: regions, wall seconds, CPU seconds (this
process), ms per region (wall and CPU), and for 'lp' also LPs per region and ms per LP; then the
time ratio of each MILP backend to 'lp' and whether all complete sets are identical. A backend
stopped by --time-limit is marked '+' (its count is a lower bound, its set is compared as a subset).

Part 2 (scaling, 'lp' only): regions vs seconds for growing nets (--scaling-archs x
--scaling-l1s), each capped by --scaling-time-limit and --max-regions (then marked '+').

Nets are trained here with src.training.train (few epochs; cached in --work-dir and reused). The
machine is shared: CPU seconds are the steadier number when it is loaded; --workers adds rows for
the lp backend with that many processes (wall time only).

    python benchmarks/bench_lp_engine.py                                   # defaults: about 5 minutes
    python benchmarks/bench_lp_engine.py --archs mlp:6-6 --l1s 0 --skip-scaling   # quick look (30 s)
    python benchmarks/bench_lp_engine.py --archs mlp:8-8 --l1s 0 --backends lp,gurobi --time-limit 500 --skip-scaling
        # ~14k regions, lp vs Gurobi (about 3 minutes)
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from src.stability.analyse import analyse_stability  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.counting.problem import BackendUnavailable, EnumerationProblem, PatternSink, get_backend  # noqa: E402
from benchmarks.common import train_nets  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
from src.counting.walk_driver import run_search  # noqa: E402
from src.io.readers import load_net


def run_backend(name, problem, time_limit, workers=1, max_regions=None) -> dict:
    """Count with one backend into a fresh sink; wall and CPU seconds, the sink and the stats."""
    sink = PatternSink()
    t0, c0 = time.perf_counter(), time.process_time()
    if name == "lp":
        stop = None if max_regions is None else (lambda: len(sink) >= max_regions)
        out = run_search(problem.net, problem.box, problem.stability.fixed_bits(), problem.tol,
                         lambda b: sink.add(b.astype(np.uint8)), time_limit=time_limit, workers=workers,
                         stop_flag=stop)
        complete, stats = out.complete, dict(out.stats)
    else:
        be = get_backend(name)
        be.check_problem(problem)
        res = be.enumerate(problem, sink, time_limit=time_limit, threads=1)
        complete, stats = res.complete, dict(res.stats)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(sink)
    row = {"backend": name if workers == 1 else f"{name} x{workers}", "regions": n, "complete": bool(complete),
           "wall_s": round(wall, 3), "cpu_s": round(cpu, 3) if workers == 1 else None,
           "ms_per_region_wall": round(1000 * wall / n, 4) if n else None,
           "ms_per_region_cpu": round(1000 * cpu / n, 4) if n and workers == 1 else None}
    if name == "lp":
        lps = stats.get("lps", 0)
        row.update(lps=lps, lps_per_region=round(lps / n, 3) if n else None,
                   ms_per_lp=round(1000 * stats.get("lp_seconds", 0.0) / lps, 4) if lps else None,
                   iterations_per_lp=round(stats.get("lp_iterations", 0) / lps, 2) if lps else None)
    return {"row": row, "sink": sink}


def compare(results) -> str:
    """'yes' when every complete set is equal and every incomplete one lies inside it."""
    sets = [(r["sink"].patterns(), r["row"]["complete"]) for r in results]
    keys = [({p.tobytes() for p in s}, c) for s, c in sets]
    complete = [k for k, c in keys if c]
    if not complete:
        return "-"
    ref = complete[0]
    if any(k != ref for k in complete[1:]) or any(not k <= ref for k, c in keys if not c):
        return "DIFFER"
    return "yes" if len(complete) >= 2 else ("subset" if len(keys) > 1 else "-")


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def print_rows(title, rows):
    print(f"\n## {title}\n")
    print("| net | backend | regions | wall s | CPU s | ms/region (wall) | ms/region (CPU) | LPs/region | ms/LP | iters/LP |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for net, r in rows:
        cnt = f"{r['regions']}{'' if r['complete'] else '+'}"
        print(f"| {net} | {r['backend']} | {cnt} | {r['wall_s']:.2f} | {fmt(r['cpu_s'], '.2f')} | "
              f"{fmt(r['ms_per_region_wall'], '.3f')} | {fmt(r['ms_per_region_cpu'], '.3f')} | "
              f"{fmt(r.get('lps_per_region'), '.3f')} | {fmt(r.get('ms_per_lp'), '.3f')} | "
              f"{fmt(r.get('iterations_per_lp'), '.1f')} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="mlp:6-6,mlp:7-7", help="comma-separated archs for the comparison")
    p.add_argument("--l1s", default="0,0.0005", help="comma-separated l1 strengths (comparison and scaling)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs per net")
    p.add_argument("--train-subset", type=int, default=0, help="first N MNIST training images (0 = all 60000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", default="lp,gurobi,scip", help="backends to compare (unavailable ones are skipped)")
    p.add_argument("--time-limit", type=float, default=60.0, help="seconds per backend and net in the comparison")
    p.add_argument("--workers", default="", help="also run lp with these worker counts, e.g. 2 (comma-separated)")
    p.add_argument("--scaling-archs", default="mlp:6-6,mlp:8-8,mlp:10-10,mlp:12-12", help="archs of the scaling table")
    p.add_argument("--scaling-l1s", default=None, help="l1 strengths of the scaling table (default: --l1s)")
    p.add_argument("--scaling-time-limit", type=float, default=20.0, help="seconds per net in the scaling table")
    p.add_argument("--max-regions", type=int, default=100_000, help="stop a scaling run after this many regions")
    p.add_argument("--skip-scaling", action="store_true", help="only the comparison")
    p.add_argument("--skip-compare", action="store_true", help="only the scaling table")
    p.add_argument("--work-dir", default="benchmarks/out/lp_engine", help="trained nets and the results JSON")
    args = p.parse_args(argv)

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    l1s = [float(x) for x in args.l1s.split(",") if x.strip()]
    backends = []
    for b in [b.strip() for b in args.backends.split(",") if b.strip()]:
        try:
            get_backend(b)
            backends.append(b)
        except BackendUnavailable as e:
            print(f"skipping backend {b}: {e}", file=sys.stderr)
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    out = {"cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "compare": [], "scaling": []}

    def problem_for(weights):
        net = load_net(weights)
        box = Box.uniform(net.n_inputs)
        t = time.perf_counter()
        st = analyse_stability(net, box, tol=1e-6, progress=False)
        return EnumerationProblem(net, box, st, 1e-6), time.perf_counter() - t

    if not args.skip_compare:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        rows, ratios = [], []
        for w in train_nets(work, archs, l1s, args.epochs, args.train_subset, args.seed):
            problem, tb = problem_for(w)
            tag = w.parent.name
            res = []
            for b in backends:
                try:
                    r = run_backend(b, problem, args.time_limit)
                except BackendUnavailable as e:
                    print(f"  {tag}: {b} refused: {e}", file=sys.stderr)
                    continue
                res.append(r)
                print(f"  {tag} {r['row']['backend']}: {r['row']['regions']} regions "
                      f"complete={r['row']['complete']} {r['row']['wall_s']:.2f}s", file=sys.stderr)
            for k in workers:
                if k > 1 and "lp" in backends:
                    r = run_backend("lp", problem, args.time_limit, workers=k)
                    res.append(r)
            same = compare(res)
            lp = next((r["row"] for r in res if r["row"]["backend"] == "lp"), None)
            for r in res:
                rows.append((tag, r["row"]))
                x = r["row"]
                if lp and x is not lp and lp["complete"] and x["complete"] and lp["wall_s"] > 0:
                    ratios.append((tag, x["backend"], x["regions"], x["wall_s"] / lp["wall_s"],
                                   (x["cpu_s"] / lp["cpu_s"]) if x["cpu_s"] and lp["cpu_s"] else None))
            out["compare"].append({"net": tag, "bounds_s": round(tb, 3), "identical": same,
                                   "rows": [r["row"] for r in res]})
            print(f"  {tag}: identical sets: {same}", file=sys.stderr)
        print_rows("Comparison (same nets, same stable units; bounds excluded)", rows)
        print("\n| net | backend | regions | time / lp time (wall) | (CPU) |\n|---|---|---:|---:|---:|")
        for tag, b, n, rw, rc in ratios:
            print(f"| {tag} | {b} | {n} | {rw:.1f}x | {fmt(rc, '.1f')}{'x' if rc else ''} |")
        print("\n| net | identical sets |\n|---|---|")
        for c in out["compare"]:
            print(f"| {c['net']} | {c['identical']} |")

    if not args.skip_scaling:
        s_l1s = l1s if args.scaling_l1s is None else [float(x) for x in args.scaling_l1s.split(",") if x.strip()]
        archs = [a.strip() for a in args.scaling_archs.split(",") if a.strip()]
        rows = []
        for w in train_nets(work, archs, s_l1s, args.epochs, args.train_subset, args.seed):
            problem, tb = problem_for(w)
            r = run_backend("lp", problem, args.scaling_time_limit, max_regions=args.max_regions)["row"]
            r["unstable"] = [c["unstable"] for c in problem.stability.counts()]
            rows.append((w.parent.name, r))
            out["scaling"].append({"net": w.parent.name, **r})
            print(f"  scaling {w.parent.name}: {r['regions']} regions in {r['wall_s']:.1f}s", file=sys.stderr)
        print_rows(f"Scaling of the lp backend (cap: {args.scaling_time_limit:g} s or {args.max_regions} regions, "
                   f"'+' = capped)", rows)
    out["load_avg_end"] = os.getloadavg()
    atomic_write_json(work / "bench_lp_engine.json", out)
    print(f"\nload average at start {out['load_avg_start']}, at end {out['load_avg_end']} "
          f"({os.cpu_count()} CPUs); results: {work / 'bench_lp_engine.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
