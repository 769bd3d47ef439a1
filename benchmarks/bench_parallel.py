#!/usr/bin/env python
"""Parallel counting and training on Ray (src/parallel.py), and a replay of the dynamic splitting at scale.

Part 1 (count): an lp count of a trained MNIST net (--arch, default mlp:12-12: about 10^5 regions) with
--workers 1 (in-process) and --workers 2 (an embedded Ray, started once and timed separately): wall
seconds, the speed-up with and without Ray's start-up, and whether the emitted pattern sequences
(= the pattern files) are identical (sha256 over the rows in emission order).

Part 2 (sweep): --sweep-runs short training runs with --workers 1 and with --workers 2 (same Ray).

Part 3 (replay): a third count with --workers 2 and short time slices (--trace-slice) records every
slice (prefixes, seconds, frontier, patterns). The measured slices give each pattern a cost (the
seconds of the slice that found it, shared by its patterns); on that cost model the count is
replayed with 16, 64 and 256 simulated workers: the dynamic splitting (the scheduler of
src/counting/walk_driver.py: OrderedWork, waiting prefixes split while workers are free, the first
waiting subtree(s) next, slices of slice_seconds() at the simulated clock, a slice stops before the
first pattern past its time and hands back that pattern and the right siblings on its path) against
the static cut of earlier versions (the tree cut at the first depth
with >= 8 subtrees per worker, handed out in order to the next free worker). Every dispatch costs
the per-slice overhead measured in part 3. Reported: busy and idle fraction of the workers and the
speed-up over the sum of all slice times (the sequential work).

    python benchmarks/bench_parallel.py                       # about 10 minutes on 2 cores
    python benchmarks/bench_parallel.py --skip-sweep --time-limit 120
    python benchmarks/bench_parallel.py --trace-only --weights W --time-limit 660   # a long trace of a big count
    python benchmarks/bench_parallel.py --replay-only         # replay the recorded trace (slices.json) again

The trace is written to <work-dir>/slices.json (JSON, the patterns as hex of their packed rows).
"""
import argparse
import bisect
import heapq
import os
import json
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from benchmarks.common import train_nets  # noqa: E402
from src.stability.analyse import analyse_stability  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
import src.counting.walk_driver as lp_enum  # noqa: E402
from src.counting.walk_driver import OrderedWork, run_search  # noqa: E402
from src.core.network import ReluNet  # noqa: E402
from src.io.readers import load_net


def count(net, box, fixed, workers, time_limit, trace=None):
    """One count; wall seconds, regions, complete, the rows in emission order, slices."""
    rows = []

    def emit(bits):
        rows.append(np.packbits(bits.astype(np.uint8)).tobytes())

    t0 = time.perf_counter()
    out = run_search(net, box, fixed, 1e-6, emit, workers=workers, time_limit=time_limit, trace=trace)
    wall = time.perf_counter() - t0
    return {"workers": workers, "wall_s": wall, "regions": len(rows), "complete": out.complete,
            "regions_per_s": len(rows) / wall, "slices": out.tasks, "rows": rows}


def same_file(a, b) -> bool:
    """Identical pattern files; for counts stopped by --time-limit: one sequence is a prefix of the other
    (both are the lexicographic order of the sequential walk)."""
    n = min(len(a["rows"]), len(b["rows"]))
    if a["complete"] and b["complete"]:
        return a["rows"] == b["rows"]
    return a["rows"][:n] == b["rows"][:n] and (len(a["rows"]) <= len(b["rows"]) or not a["complete"])


# ---- replay -----------------------------------------------------------------------------------------------
class CostModel:
    """The measured slices as a cost per pattern: the patterns in lexicographic order (= the order of the
    sequential walk) and the seconds of the slice that found each one, shared by its patterns (the time
    of slices that found none is spread over all)."""

    def __init__(self, events, n_units: int):
        rows, cost = [], []
        for e in events:
            if e["n"]:
                bits = np.unpackbits(e["packed"], axis=1, count=n_units)
                rows += ["".join("1" if b else "0" for b in r) for r in bits]
                cost.append(np.full(e["n"], e["seconds"] / e["n"]))
        c = np.concatenate(cost)
        total = sum(e["seconds"] for e in events)
        order = np.argsort(np.array(rows))
        self.P = [rows[k] for k in order]
        self.c = c[order] * (total / c.sum())
        self.C = np.r_[0.0, np.cumsum(self.c)]
        self.total = float(self.C[-1])
        self.n_units = n_units

    def walk_group(self, prefixes: list, seconds: float):
        """One slice over consecutive prefixes (as walk_slice): each walked in turn until the time is used;
        the frontier is the unfinished rest of the one it stopped in, then the prefixes not started."""
        used, n = 0.0, 0
        for i, p in enumerate(prefixes):
            u, m, fr = self.walk(p, max(0.0, seconds - used)) if used < seconds or i == 0 else (0.0, 0, [p])
            used, n = used + u, n + m
            if fr:
                return used, n, fr + list(prefixes[i + 1:])
        return used, n, []

    def range(self, prefix: str):
        return bisect.bisect_left(self.P, prefix), bisect.bisect_left(self.P, prefix + "2")

    def cost(self, prefix: str) -> float:
        lo, hi = self.range(prefix)
        return float(self.C[hi] - self.C[lo])

    def walk(self, prefix: str, seconds: float):
        """One slice below prefix: (seconds used, patterns found, frontier), stopping before the first pattern
        past the slice (at least one pattern per slice); the frontier is that pattern and the non-empty
        right siblings on its path, as the engine's walk returns it."""
        lo, hi = self.range(prefix)
        j = int(np.searchsorted(self.C, self.C[lo] + seconds, side="right")) - 1
        j = min(max(j, lo + 1), hi)
        used = float(self.C[j] - self.C[lo])
        if j == hi:
            return used, j - lo, []
        q = self.P[j]
        fr = [q]
        for t in range(len(q) - 1, len(prefix) - 1, -1):
            if q[t] == "0":
                sib = q[:t] + "1"
                a, b = self.range(sib)
                if b > a:
                    fr.append(sib)
        return used, j - lo, fr


def _group_before(waiting: int, workers: int) -> int:
    """group_size() before 2026-12-04 (for the ablation): groups only once 4 subtrees per worker wait."""
    return max(1, min(64, waiting // (4 * workers)))


VARIANTS = {                             # name: (split waiting prefixes, SLICE_SHARE, group size rule)
    "dynamic": (True, lp_enum.SLICE_SHARE, lp_enum.group_size),
    "dynamic, no split": (False, lp_enum.SLICE_SHARE, lp_enum.group_size),
    "dynamic, groups as before": (True, lp_enum.SLICE_SHARE, _group_before),
    "dynamic before 2026-12-04": (False, None, _group_before),
}


def replay_dynamic(model: CostModel, k: int, overhead: float, variant: str = "dynamic") -> dict:
    """k simulated workers under the scheduler of src/counting/walk_driver.py (_run_parallel): OrderedWork,
    waiting prefixes split while workers would wait (OrderedWork.split), the first waiting subtree (or a
    group of consecutive ones, group_size()) next, slices of slice_seconds() at the simulated clock.
    `variant` (VARIANTS) turns one of these off, for the ablation (--variants)."""
    split, share, group_rule = VARIANTS[variant]
    work = OrderedWork([""])
    clock, heap, free, seq, slices = 0.0, [], k, 0, 0
    while True:
        if free and split:
            work.split(free, model.n_units)
        while free:
            waiting = work.waiting()
            group = work.take(group_rule(waiting, k))
            if not group:
                break
            s = lp_enum.slice_seconds(waiting - len(group), k, clock if share else None) * group[0].grow
            used, n, fr = model.walk_group([it.prefix for it in group], s)
            heapq.heappush(heap, (clock + overhead + used, seq, group, n, fr))
            seq += 1
            slices += 1
            free -= 1
        if not heap:
            break
        clock, _, group, n, fr = heapq.heappop(heap)
        free += 1
        work.finish(group, np.zeros((n, 1), np.uint8), n, fr)
        work.flush(lambda rows: None)
    return _row(variant, k, model.total, clock, tasks=slices)


def replay_static(model: CostModel, k: int, overhead: float, per_worker: int = 8) -> dict:
    """The static cut of earlier versions: the subtrees at the first depth with >= per_worker*k of them,
    handed out in order to the next free worker."""
    depth = 1
    while depth < len(model.P[0]) and len({p[:depth] for p in model.P}) < per_worker * k:
        depth += 1
    keys = sorted({p[:depth] for p in model.P})
    heap = [0.0] * k
    for key in keys:
        heapq.heappush(heap, heapq.heappop(heap) + overhead + model.cost(key))
    return _row("static", k, model.total, max(heap), tasks=len(keys), depth=depth)


def _row(kind, k, busy, makespan, **extra):
    return {"scheduler": kind, "workers": k, "busy_s": busy, "makespan_s": makespan,
            "busy_fraction": busy / (k * makespan) if makespan else 1.0,
            "idle_fraction": 1 - busy / (k * makespan) if makespan else 0.0,
            "speedup": busy / makespan if makespan else float(k), **extra}


def sweep(models_dir, workers, runs, epochs, subset):
    from src.training.train import run_sweep, sweep_configs

    l1s = [0.0, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2][:runs]
    configs = sweep_configs(0, "mlp:32", l1s, ["none"], [0.0], epochs=epochs, train_subset=subset, threads=1)
    t0 = time.perf_counter()
    with open(os.devnull, "w") as devnull:
        run_sweep(configs, models_dir, workers=workers, force=True, quiet=True, out=devnull)
    return time.perf_counter() - t0


def print_replay(events, overhead, n_units, sim_workers, variants=("dynamic",)) -> list:
    model = CostModel(events, n_units)
    sims = []
    for k in sim_workers:
        sims += [replay_dynamic(model, k, overhead, v) for v in variants] + [replay_static(model, k, overhead)]
    print(f"\n## Replay of {len(events)} recorded slices ({model.total:.1f} s of work, {len(model.P)} patterns, "
          f"overhead {1000 * overhead:.0f} ms per slice)\n")
    print("| simulated workers | scheduler | busy | idle | speed-up | makespan s (ideal) |\n"
          "|---:|---|---:|---:|---:|---:|")
    for r in sims:
        extra = f" ({r['tasks']} subtrees at depth {r['depth']})" if r["scheduler"] == "static" else \
            f" ({r['tasks']} slices)"
        print(f"| {r['workers']} | {r['scheduler']}{extra} | {100 * r['busy_fraction']:.1f}% | "
              f"{100 * r['idle_fraction']:.1f}% | {r['speedup']:.1f}x | {r['makespan_s']:.2f} "
              f"({model.total / r['workers']:.2f}) |")
    return sims


TRACE = "slices.json"


def _problem(args, work: Path):
    """(weights path, net, box, stable bits) of the count: --weights, or the net trained for --arch."""
    if args.weights:
        w = Path(args.weights)
    else:
        w = train_nets(work, [args.arch], [args.l1], args.epochs, args.train_subset, args.seed)[0]
    net = load_net(w)
    box = Box.uniform(net.n_inputs)
    fixed = analyse_stability(net, box, tol=1e-6, progress=False).fixed_bits()
    print(f"net {w}: {net.hidden_sizes}, {int((fixed < 0).sum())} unstable units", file=sys.stderr)
    return w, net, box, fixed


def traced_count(net, box, fixed, slice_s: float, time_limit):
    """A --workers 2 count (Ray already up) whose slices all last slice_s seconds, every slice recorded."""
    events = []
    old = lp_enum.SLICE_MIN, lp_enum.SLICE_SHORT, lp_enum.SLICE_LONG
    lp_enum.SLICE_MIN = lp_enum.SLICE_SHORT = lp_enum.SLICE_LONG = slice_s
    try:
        traced = count(net, box, fixed, 2, time_limit, trace=events.append)
    finally:
        lp_enum.SLICE_MIN, lp_enum.SLICE_SHORT, lp_enum.SLICE_LONG = old
    print(f"  traced (slices of {slice_s:g}s): {traced['regions']} regions, {traced['slices']} slices in "
          f"{traced['wall_s']:.1f}s", file=sys.stderr)
    return traced, events


def save_trace(path: Path, events, n_units: int) -> float:
    """The recorded slices as JSON (patterns as hex of their packed rows); returns the median overhead per
    slice (dispatch to return, minus the slice's own seconds)."""
    overhead = float(np.median([e["returned"] - e["dispatched"] - e["seconds"] for e in events]))
    keep = ("prefixes", "n", "frontier", "seconds", "start", "dispatched", "returned", "pid", "host")
    rows = [{**{k: e[k] for k in keep if k in e}, "packed": np.asarray(e["packed"], np.uint8).tobytes().hex()}
            for e in events]
    atomic_write_json(path, {"n_units": n_units, "overhead": overhead, "events": rows})
    return overhead


def load_trace(path: Path) -> dict:
    """What save_trace wrote, with each slice's packed rows as a uint8 array again."""
    rec = json.loads(Path(path).read_text())
    width = (rec["n_units"] + 7) // 8
    for e in rec["events"]:
        e["packed"] = np.frombuffer(bytes.fromhex(e["packed"]), np.uint8).reshape(-1, width)
    return rec


def trace_only(args, work: Path, sim_workers) -> int:
    """--trace-only: the traced count alone (the long trace of a big count) and its replay."""
    from src.parallel import start_local

    w, net, box, fixed = _problem(args, work)
    ray = start_local(2)
    try:
        traced, events = traced_count(net, box, fixed, args.trace_slice, args.time_limit)
    finally:
        ray.shutdown()
    overhead = save_trace(work / TRACE, events, net.n_hidden_units)
    print(f"\n## Traced count ({w}: {traced['regions']} regions in {traced['wall_s']:.1f} s, "
          f"{'complete' if traced['complete'] else 'stopped by --time-limit'})")
    sims = print_replay(events, overhead, net.n_hidden_units, sim_workers)
    atomic_write_json(work / "bench_parallel_trace.json",
                      {"date": time.strftime("%Y-%m-%d %H:%M"), "weights": str(w), "load_avg_end": os.getloadavg(),
                       "traced": {x: v for x, v in traced.items() if x != "rows"}, "overhead_per_slice_s": overhead,
                       "replay": sims})
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mlp:12-12", help="net of the count (trained with benchmarks/common.train_nets)")
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=None, help="cap of each count (then marked incomplete)")
    p.add_argument("--trace-slice", type=float, default=0.1, help="slice seconds of the recorded count")
    p.add_argument("--sim-workers", default="16,64,256")
    p.add_argument("--sweep-runs", type=int, default=4)
    p.add_argument("--sweep-epochs", type=int, default=2)
    p.add_argument("--sweep-subset", type=int, default=20000)
    p.add_argument("--skip-sweep", action="store_true")
    p.add_argument("--replay-only", action="store_true", help="only replay the slices recorded by an earlier run")
    p.add_argument("--variants", action="store_true",
                   help="with --replay-only: also replay the scheduler without each of its parts (ablation)")
    p.add_argument("--weights", default=None, help="count this weights file instead of training --arch")
    p.add_argument("--trace-only", action="store_true",
                   help="only the traced count (--workers 2, --trace-slice slices, up to --time-limit) and its replay")
    p.add_argument("--work-dir", default="benchmarks/out/parallel")
    args = p.parse_args(argv)
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    sim_workers = [int(x) for x in args.sim_workers.split(",") if x.strip()]
    if args.replay_only:
        rec = load_trace(work / TRACE)
        print_replay(rec["events"], rec["overhead"], rec["n_units"], sim_workers,
                     tuple(VARIANTS) if args.variants else ("dynamic",))
        return 0
    if args.trace_only:
        return trace_only(args, work, sim_workers)
    res = {"cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg(), "date": time.strftime("%Y-%m-%d")}

    w, net, box, fixed = _problem(args, work)

    one = count(net, box, fixed, 1, args.time_limit)
    print(f"  workers 1: {one['regions']} regions in {one['wall_s']:.1f}s", file=sys.stderr)
    from src.parallel import start_local

    t0 = time.perf_counter()
    ray = start_local(2)
    res["ray_startup_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()            # first tasks: worker processes start and import the engine
        tiny = ReluNet([np.array([[1.0, -1.0]]), np.ones((1, 1))], [np.zeros(1), np.zeros(1)])
        run_search(tiny, Box.uniform(2), np.full(1, -1, np.int8), 1e-6, lambda b: None, workers=2)
        res["ray_warmup_s"] = time.perf_counter() - t0
        two = count(net, box, fixed, 2, args.time_limit)
        print(f"  workers 2: {two['regions']} regions in {two['wall_s']:.1f}s (Ray start-up "
              f"{res['ray_startup_s']:.1f}s)", file=sys.stderr)
        traced, events = traced_count(net, box, fixed, args.trace_slice, args.time_limit)
        if not args.skip_sweep:
            t1 = sweep(work / "sweep1", 1, args.sweep_runs, args.sweep_epochs, args.sweep_subset)
            t2 = sweep(work / "sweep2", 2, args.sweep_runs, args.sweep_epochs, args.sweep_subset)
            res["sweep"] = {"runs": args.sweep_runs, "workers1_s": t1, "workers2_s": t2, "ratio": t1 / t2}
    finally:
        ray.shutdown()
    overhead = save_trace(work / TRACE, events, net.n_hidden_units)

    cap = "" if one["complete"] else f", capped at {args.time_limit:g} s per count: speed-up = ratio of regions/s"
    print(f"\n## Count ({w.parent.name}: {max(one['regions'], two['regions'])} regions{cap})\n")
    print("| run | wall s | regions | regions/s | speed-up | identical pattern file |\n|---|---:|---:|---:|---:|---|")
    print(f"| --workers 1 (in-process) | {one['wall_s']:.1f} | {one['regions']} | {one['regions_per_s']:.0f} | 1.00x "
          f"| reference |")
    for r, name in ((two, f"--workers 2 (Ray up, {two['slices']} slices)"),
                    (traced, f"--workers 2, {args.trace_slice:g} s slices (traced, {traced['slices']} slices)")):
        print(f"| {name} | {r['wall_s']:.1f} | {r['regions']} | {r['regions_per_s']:.0f} | "
              f"{r['regions_per_s'] / one['regions_per_s']:.2f}x | {'yes' if same_file(one, r) else 'NO'} |")
    e2e = two["wall_s"] + res["ray_startup_s"] + res["ray_warmup_s"]
    print(f"| --workers 2 including Ray start-up ({res['ray_startup_s']:.1f} s ray.init + "
          f"{res['ray_warmup_s']:.1f} s first tasks) | {e2e:.1f} | {two['regions']} | {two['regions'] / e2e:.0f} | "
          f"{two['regions'] / e2e / one['regions_per_s']:.2f}x | |")
    if "sweep" in res:
        s = res["sweep"]
        print(f"\n## Sweep ({s['runs']} runs of mlp:32, {args.sweep_epochs} epochs on {args.sweep_subset} images)\n")
        print("| workers | wall s | speed-up |\n|---|---:|---:|")
        print(f"| 1 | {s['workers1_s']:.1f} | 1.00x |\n| 2 | {s['workers2_s']:.1f} | {s['ratio']:.2f}x |")
    sims = print_replay(events, overhead, net.n_hidden_units, sim_workers)
    res.update(identical=same_file(one, two) and same_file(one, traced), overhead_per_slice_s=overhead, replay=sims,
               load_avg_end=os.getloadavg(),
               **{k: {x: v for x, v in r.items() if x != "rows"} for k, r in
                  (("count_workers1", one), ("count_workers2", two), ("traced", traced))})
    atomic_write_json(work / "bench_parallel.json", res)
    print(f"\nload average at start {tuple(round(x, 2) for x in res['load_avg_start'])}, at end "
          f"{tuple(round(x, 2) for x in res['load_avg_end'])} ({os.cpu_count()} CPUs); "
          f"results: {work / 'bench_parallel.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
