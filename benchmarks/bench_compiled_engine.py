#!/usr/bin/env python
"""The compiled engine of `--backend lp` (src/counting/tree_walk.py) against Gurobi's one-tree MILP, in one run, on
trained MNIST nets over [0,1]^784 (same stable units; bounds excluded from the in-process rows).

Part 1 (--small, default mlp:8-8): both to completion; identical sets required.
Part 2 (--large, default mlp:12-12, 2.1 million regions): the compiled engine counts everything through
the command line (count_linear_regions.py, one core, patterns streamed to disk) while its resident memory
is sampled: memory flat in the count means the same RSS when the pattern file holds 10 % and 100 % of the
patterns. Gurobi runs under --gurobi-limit: its cost per region is measured on the regions it found (a
subset of the compiled engine's), a lower bound of the ratio since Gurobi's cost per region grows with
the count (its lazy cuts pile up).

The HiGHS engine that the compiled one replaced was compared in the same way at commit 30f600c (it was
removed in the next commit; `git checkout 30f600c` and run this script there for that comparison).

    python benchmarks/bench_compiled_engine.py                         # about 12 minutes
    python benchmarks/bench_compiled_engine.py --skip-large            # part 1 only (about 5 minutes)
"""
import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.common import train_nets  # noqa: E402
from src.stability.analyse import analyse_stability  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.counting.problem import BackendUnavailable, EnumerationProblem, PatternSink, get_backend  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
from src.counting.walk_driver import run_search  # noqa: E402
from src.io.pattern_file import read_patterns  # noqa: E402
from src.io.readers import load_net


def timed(fn):
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t, time.process_time() - c


def run_engine(problem, time_limit=None):
    """(patterns as an (n, N) uint8 array in emission order, complete, stats, wall s, CPU s)."""
    rows = []
    out, wall, cpu = timed(lambda: run_search(problem.net, problem.box, problem.stability.fixed_bits(), problem.tol,
                                              lambda b: rows.append(b.astype(np.uint8)), time_limit=time_limit))
    pats = np.array(rows, np.uint8).reshape(len(rows), problem.net.n_hidden_units)
    return pats, out.complete, dict(out.stats), wall, cpu


def run_gurobi(problem, time_limit):
    be = get_backend("gurobi")
    be.check_problem(problem)
    sink = PatternSink()
    res, wall, cpu = timed(lambda: be.enumerate(problem, sink, time_limit=time_limit, threads=1))
    return sink.patterns(), res.complete, dict(res.stats), wall, cpu


def row(name, pats, complete, stats, wall, cpu):
    n = len(pats)
    lps = stats.get("lps")
    return {"engine": name, "regions": n, "complete": bool(complete), "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "ms_per_region_cpu": round(1000 * cpu / n, 4) if n else None,
            "lps_per_region": round(lps / n, 3) if lps and n else None}


def print_table(title, rows, ref):
    print(f"\n## {title}\n")
    print("| engine | regions | wall s | CPU s | ms/region (CPU) | LPs/region | CPU ms/region ÷ compiled's |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        ratio = r["ms_per_region_cpu"] / ref["ms_per_region_cpu"] if r["ms_per_region_cpu"] else None
        lb = "≥ " if not r["complete"] else ""
        print(f"| {r['engine']} | {r['regions']}{'' if r['complete'] else '+'} | {r['wall_s']} | {r['cpu_s']} | "
              f"{r['ms_per_region_cpu']} | {r['lps_per_region'] or '-'} | "
              f"{'-' if ratio is None or r is ref else f'{lb}{ratio:.1f}x'} |")


def problem_for(weights):
    net = load_net(weights)
    box = Box.uniform(net.n_inputs)
    return EnumerationProblem(net, box, analyse_stability(net, box, tol=1e-6, progress=False), 1e-6)


def cli_count(weights, expected=None):
    """The count through the command line in a child process, its resident memory sampled every 0.2 s with the
    size of its partial pattern file: (wall s, CPU s, peak RSS MiB, [(pattern bytes, RSS MiB)], last line)."""
    import tempfile

    partial = Path(weights).parent / ".activation_pattern_abhinav_input_0_1.dat.partial"
    cmd = [sys.executable, str(ROOT / "count_linear_regions.py"), "-w", str(weights), "-q", "--backend", "lp"]
    samples = []
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        t = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            try:
                rss = next(int(x.split()[1]) for x in open(f"/proc/{proc.pid}/status") if x.startswith("VmRSS"))
                samples.append((partial.stat().st_size if partial.exists() else 0, rss / 1024))
            except (OSError, StopIteration):
                pass
            time.sleep(0.2)
        wall = time.perf_counter() - t
        code = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if code != 0:
            raise SystemExit(f"count failed ({code}): {err.read().strip()}")
        last = (out.read().strip().splitlines() or [""])[-1]
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024, samples, last


def rss_at(samples, share):
    """RSS (MiB) at the first sample whose pattern file holds at least `share` of the final bytes."""
    total = max(b for b, _ in samples) if samples else 0
    return next((r for b, r in samples if total and b >= share * total), None)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", default="mlp:8-8", help="net of part 1 (every engine to completion)")
    p.add_argument("--large", default="mlp:12-12", help="net of part 2 (>= 10^6 regions)")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--gurobi-limit", type=float, default=300.0, help="seconds for Gurobi in part 2")
    p.add_argument("--skip-large", action="store_true")
    p.add_argument("--work-dir", default="benchmarks/out/lp_engine")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    result = {"date": time.strftime("%Y-%m-%d"), "load_avg_start": os.getloadavg()}
    try:
        get_backend("gurobi")
        gurobi = True
    except BackendUnavailable as e:
        print(f"Gurobi skipped: {e}", file=sys.stderr)
        gurobi = False

    (small,) = train_nets(work, [args.small], [0.0], args.epochs, 0, 0)
    prob = problem_for(small)
    new = run_engine(prob)
    rows = [row("compiled", *new)]
    same = None
    if gurobi:
        g = run_gurobi(prob, None)
        rows.append(row("gurobi one-tree MILP", *g))
        same = {q.tobytes() for q in g[0]} == {q.tobytes() for q in new[0]}
    print_table(f"{small.parent.name}: both to completion (identical sets: {same})", rows, rows[0])
    result["small"] = {"net": small.parent.name, "identical": same, "rows": rows}

    if not args.skip_large:
        (large,) = train_nets(work, [args.large], [0.0], args.epochs, 0, 0)
        wall, cpu, rss, samples, line = cli_count(large)
        pats = read_patterns(large.parent / "activation_pattern_abhinav_input_0_1.dat")
        n = len(pats)
        r10, r50, r100 = rss_at(samples, 0.1), rss_at(samples, 0.5), rss_at(samples, 1.0)
        print(f"\ncompiled, command line, one core: {n} regions in {wall:.1f} s (CPU {cpu:.1f} s), peak RSS "
              f"{rss:.0f} MiB (the data-first stability pass); during the count RSS {r10:.0f} MiB at 10 % of the "
              f"pattern file, {r50:.0f} at 50 %, {r100:.0f} at 100 %: {line}", file=sys.stderr)
        prob = problem_for(large)
        ref = {"engine": "compiled (command line: start-up, data, bounds, count, files)", "regions": n,
               "complete": True, "wall_s": round(wall, 1), "cpu_s": round(cpu, 1),
               "ms_per_region_cpu": round(1000 * cpu / n, 4), "lps_per_region": None}
        rows = [ref]
        subset = None
        if gurobi:
            g = run_gurobi(prob, args.gurobi_limit)
            rows.append(row("gurobi one-tree MILP, time-limited", *g))
            allp = {q.tobytes() for q in pats}
            subset = all(q.tobytes() in allp for q in g[0])
        print_table(f"{large.parent.name}: {n} regions (Gurobi's inside them: {subset})", rows, ref)
        print(f"\nResident memory of the command line while it counts: {r10:.0f} MiB when the pattern file holds "
              f"10 % of its patterns, {r50:.0f} MiB at 50 %, {r100:.0f} MiB at 100 % (peak {rss:.0f} MiB, reached "
              f"in the data-first stability pass before the count)")
        result["large"] = {"net": large.parent.name, "regions": n, "wall_s": wall, "cpu_s": cpu, "peak_rss_mib": rss,
                           "rss_mib_at_10_50_100_percent": [r10, r50, r100], "gurobi_subset": subset, "rows": rows}
    result["load_avg_end"] = os.getloadavg()
    atomic_write_json(work / "bench_compiled_engine.json", result)
    print(f"\nload average at start {result['load_avg_start']}, at end {result['load_avg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
