#!/usr/bin/env python
"""Exact region enumeration: every available backend on the same trained nets, in one run.

For each net: regions, seconds (enumeration only, bounds excluded: they are shared), ms per
region, the solver's own statistics, and whether all backends returned the identical pattern
set. Nets are either trained here (tiny MNIST nets via src.training.train: --archs x --l1s, few
epochs on a subset; cached in --work-dir and reused) or taken from --models-dir (every
fcnn_run_*/weights.dat there). A backend that hits --time-limit is reported as incomplete and
its set is compared as a subset. Results also go to <work-dir>/bench_enumeration.json.

    python benchmarks/bench_enumeration.py                          # train + count the default nets
    python benchmarks/bench_enumeration.py --models-dir forward_pass/activation_pattern/models
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from src.counting.problem import BACKENDS, BackendUnavailable, get_backend  # noqa: E402
from benchmarks.common import train_nets  # noqa: E402
from src.io.files import atomic_write_json  # noqa: E402
from src.io.pattern_file import read_patterns  # noqa: E402
from src.counting.driver import count_run  # noqa: E402
from src.io.readers import load_net

DEFAULT_ARCHS = "mlp:6-6,fcnn4c,mlp:8-8"
DEFAULT_L1S = "0,0.0005"


def available_backends(names) -> list[str]:
    ok = []
    for n in names:
        try:
            get_backend(n)
            ok.append(n)
        except BackendUnavailable as e:
            print(f"skipping backend {n}: {e}", file=sys.stderr)
    return ok


def pattern_keys(path, layer_sizes) -> set[bytes]:
    pats = read_patterns(path, layer_sizes, allow_empty=True)
    return {p.tobytes() for p in pats}


def bench_net(weights: Path, backends, work: Path, time_limit, threads: int) -> dict:
    net = load_net(weights)
    tag = weights.parent.name
    row = {"net": tag, "layer_sizes": net.layer_sizes, "backends": {}}
    sets = {}
    for b in backends:
        out = work / "counts" / tag / b
        t0 = time.perf_counter()
        try:
            s = count_run(weights, backend=b, time_limit=time_limit, threads=threads, out_dir=out, progress=False)
        except BackendUnavailable as e:       # e.g. the model is too large for Gurobi's pip licence
            print(f"  {tag}: {b} refused: {e}", file=sys.stderr)
            row["backends"][b] = {"refused": str(e)}
            continue
        wall = time.perf_counter() - t0
        n_new = s["stats"].get("new_patterns", s["count"])
        enum_s = s["times"]["enumeration"]
        row["backends"][b] = {"count": s["count"], "complete": s["complete"], "enum_seconds": enum_s,
                              "bounds_seconds": s["times"]["bounds"], "wall_seconds": round(wall, 3),
                              "ms_per_region": round(1000 * enum_s / n_new, 3) if n_new else None,
                              "nodes": s["stats"].get("nodes"), "model_size": s["model_size"],
                              "stable_units": s["stable_units"]}
        sets[b] = (pattern_keys(out / s["pattern_file"], net.layer_sizes), s["complete"])
        r = row["backends"][b]
        print(f"  {tag:40s} {b:7s} {s['count']:8d} regions  complete={s['complete']!s:5s}  "
              f"{enum_s:8.2f} s  {r['ms_per_region'] or float('nan'):8.3f} ms/region", file=sys.stderr)
    row["identical"] = compare_sets(sets)
    return row


def compare_sets(sets: dict) -> str:
    """'yes' if all complete sets are equal (and incomplete ones are subsets of them), 'subset' if only one
    is complete and the others lie inside it, 'DIFFER' on any contradiction, '-' if nothing to compare."""
    complete = [v for v, c in sets.values() if c]
    partial = [v for v, c in sets.values() if not c]
    if not complete:
        return "-"
    ref = complete[0]
    if any(v != ref for v in complete[1:]) or any(not v <= ref for v in partial):
        return "DIFFER"
    if len(complete) >= 2:
        return "yes"
    return "subset" if partial else "-"


def print_table(rows, backends) -> None:
    hdr = f"{'net':42s} {'sizes':>18s} " + " ".join(f"{b + ' regions':>15s} {b + ' s':>9s} {b + ' ms/reg':>11s}"
                                                       for b in backends) + "  identical"
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        cells = []
        for b in backends:
            x = r["backends"].get(b)
            if x is None or "refused" in x:
                cells.append(f"{'refused' if x else '-':>15s} {'':>9s} {'':>11s}")
            else:
                cnt = f"{x['count']}{'' if x['complete'] else '+'}"
                ms = "-" if x["ms_per_region"] is None else f"{x['ms_per_region']:.3f}"
                cells.append(f"{cnt:>15s} {x['enum_seconds']:9.2f} {ms:>11s}")
        sizes = "-".join(map(str, r["layer_sizes"]))
        print(f"{r['net']:42s} {sizes:>18s} " + " ".join(cells) + f"  {r['identical']}")
    if len(backends) >= 2:
        a, b = backends[0], backends[1]
        for r in rows:
            x, y = r["backends"].get(a, {}), r["backends"].get(b, {})
            if x.get("complete") and y.get("complete") and x["enum_seconds"] > 0:
                print(f"{r['net']}: {b} / {a} time ratio {y['enum_seconds'] / x['enum_seconds']:.2f}")
    print("('+' after a count: stopped by --time-limit, a lower bound; 'identical' compares complete sets)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", help="use every fcnn_run_*/weights.dat in DIR instead of training nets")
    p.add_argument("--archs", default=DEFAULT_ARCHS, help="comma-separated archs to train (src/training/models.py names)")
    p.add_argument("--l1s", default=DEFAULT_L1S, help="comma-separated l1 strengths to train with")
    p.add_argument("--epochs", type=int, default=1, help="training epochs per net")
    p.add_argument("--train-subset", type=int, default=10000, help="first N MNIST training images (0 = all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated backends (unavailable ones are skipped)")
    p.add_argument("--time-limit", type=float, default=120.0, help="seconds per count (per backend and net)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work-dir", default="benchmarks/out/enumeration", help="trained nets, outputs and results JSON")
    args = p.parse_args(argv)

    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    if args.models_dir:
        nets = sorted(Path(args.models_dir).glob("fcnn_run_*/weights.dat"))
        if not nets:
            print(f"error: no fcnn_run_*/weights.dat in {args.models_dir}", file=sys.stderr)
            return 2
    else:
        archs = [a.strip() for a in args.archs.split(",") if a.strip()]
        l1s = [float(x) for x in args.l1s.split(",") if x.strip()]
        nets = train_nets(work, archs, l1s, args.epochs, args.train_subset, args.seed)
    backends = available_backends([b.strip() for b in args.backends.split(",") if b.strip()])
    rows = []
    t0 = time.perf_counter()
    for w in nets:
        rows.append(bench_net(w, backends, work, args.time_limit, args.threads))
    print_table(rows, backends)
    res = {"nets": rows, "backends": backends, "time_limit": args.time_limit, "threads": args.threads,
           "seconds": round(time.perf_counter() - t0, 2), "cpu_count": os.cpu_count()}
    atomic_write_json(work / "bench_enumeration.json", res)
    print(f"results: {work / 'bench_enumeration.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
