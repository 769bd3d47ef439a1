#!/usr/bin/env python
"""Tiered exact stability (interval -> LP -> MILP for the undecided units) vs one exact MILP per unit.

For each net and domain, in the same run: the time of src.stability.analyse_stability(exact=True) and of
src.stability.exact_stability_per_unit (the naive reference), and whether their stable sets agree.
Target: >= 20x faster with identical sets.

Nets: --weights FILE ... ; else from --models-dir (first complete run of fcnn2b with l1 = 0 and of
fcnn4b with l1 > 0, by config.json); else trained briefly with src.training.train into --work-dir (reused
when already complete): fcnn2b and fcnn4b (l1 = --l1), --epochs on the first --train-subset images.

Both methods are capped (--tiered-time-limit, --ref-time-limit): a capped reference gives a lower
bound on the speed-up (">= X") and its sets are compared only where it decided; the summary says so.
Each row also runs data-first stability (analyse_stability(data=...): MNIST images in the box plus
--samples seeded samples, see docs/stability.md) and compares its stable sets with the tiers'.

--targets: the fcnn4b stability targets instead (benchmarks/README.md): fcnn4b with l1 = 0 and l1 = 1e-3 (trained with
benchmarks/common.train_nets, --target-epochs on --target-subset images) on [0,1]^784; for each,
today's tiers (no data, tight LP bounds) and data-first, with and without the exact MILP tier,
their times, ratio and whether the stable sets are identical.

    python benchmarks/bench_stability.py --domains test0:0.005,test0:0.01 --ref-time-limit 120
    python benchmarks/bench_stability.py --targets
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from src.core.errors import ToolError  # noqa: E402
from src.io.files import atomic_write_json, atomic_write_text  # noqa: E402
from src.cli.runner import run_main  # noqa: E402
from src.io.readers import load_net


def parse_domains(text: str) -> list[tuple[str, int | None, float | None]]:
    """`input` (the box [0,1]^784) or `testK:W` (local box around test image K, half-width W)."""
    out = []
    for tok in [t.strip() for t in text.split(",") if t.strip()]:
        if tok == "input":
            out.append(("input_0_1", None, None))
            continue
        if not tok.startswith("test") or ":" not in tok:
            raise ToolError(f"--domains: expected 'input' or 'testK:W', got {tok!r}")
        k, w = tok[4:].split(":", 1)
        try:
            k, w = int(k), float(w)
        except ValueError:
            raise ToolError(f"--domains: expected 'input' or 'testK:W', got {tok!r}") from None
        if not 0 <= k <= 9999 or not w > 0:
            raise ToolError(f"--domains {tok}: need 0 <= K <= 9999 and W > 0")
        out.append((tok, k, w))
    if not out:
        raise ToolError("--domains: empty")
    return out


def make_box(spec, data_root=None):
    from src.core.box import Box
    from src.io.domains import test_image

    _, k, w = spec
    return Box.uniform(784) if k is None else Box.around(test_image(k, data_root), w, f"test{k}")


def find_in_models_dir(models_dir: Path) -> list[tuple[str, Path]]:
    """(label, weights path) for the first complete fcnn2b run (l1 = 0) and fcnn4b run (l1 > 0)."""
    from src.training.train import is_complete

    want = {"fcnn2b": lambda l1: l1 == 0, "fcnn4b": lambda l1: l1 > 0}
    found = {}
    for cfg_path in sorted(models_dir.glob("*/config.json")):
        run = cfg_path.parent
        try:
            cfg = json.loads(cfg_path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        arch, l1 = cfg.get("arch"), float(cfg.get("l1", 0.0))
        if arch in want and arch not in found and want[arch](l1) and is_complete(run) \
                and (run / "weights.dat").exists():
            found[arch] = (f"{arch} l1={l1:g} ({run.name})", run / "weights.dat")
    if not found:
        raise ToolError(f"--models-dir {models_dir}: no complete fcnn2b (l1 = 0) or fcnn4b (l1 > 0) run")
    return list(found.values())


def train_nets(work_dir: Path, epochs: int, subset: int, l1: float, quiet: bool) -> list[tuple[str, Path]]:
    from src.training.train import TrainConfig, is_complete, train_run

    out = []
    for rid, arch, reg in ((0, "fcnn2b", 0.0), (1, "fcnn4b", l1)):
        run = work_dir / f"fcnn_run_{rid}"
        cfg = TrainConfig(run_id=rid, arch=arch, l1=reg, epochs=epochs, train_subset=subset, threads=1)
        if not is_complete(run) or json.loads((run / "config.json").read_text()).get("l1") != reg \
                or json.loads((run / "config.json").read_text()).get("epochs") != epochs:
            t0 = time.perf_counter()
            m = train_run(cfg, run, quiet=True, bars=not quiet)
            if not quiet:
                print(f"trained {arch} l1={reg:g}: test accuracy {m['test_accuracy']:.4f} "
                      f"({time.perf_counter() - t0:.1f}s)", file=sys.stderr)
        out.append((f"{arch} l1={reg:g} ({epochs} ep, {subset or 60000} imgs)", run / "weights.dat"))
    return out


def compare(st, ref) -> dict:
    """Agreement of two Stability results, unit by unit."""
    def kinds(s):
        return np.concatenate([np.where(a, 1, np.where(i, 0, -1)) for a, i in zip(s.active, s.inactive)])

    a, b = kinds(st), kinds(ref)
    both = (a >= 0) & (b >= 0)
    return {"identical": bool(np.array_equal(a, b)), "contradictions": int((both & (a != b)).sum()),
            "stable_tiered": int((a >= 0).sum()), "stable_reference": int((b >= 0).sum()),
            "only_tiered": int(((a >= 0) & (b < 0)).sum()), "only_reference": int(((b >= 0) & (a < 0)).sum())}


def data_first(net, box, args, exact: bool, time_limit: float):
    """(Stability, seconds for the data, seconds for the analysis) of data-first stability."""
    from src.stability.analyse import analyse_stability
    from src.stability.witnesses import data_points_for_box

    t0 = time.perf_counter()
    data = data_points_for_box(box, data_root=args.data_root, n_samples=args.samples)
    t_data = time.perf_counter() - t0
    t0 = time.perf_counter()
    st = analyse_stability(net, box, tol=args.tol, exact=exact, progress=not args.quiet, time_limit=time_limit,
                           data=data)
    return st, t_data, time.perf_counter() - t0


def bench_one(net, box, args) -> dict:
    from src.stability.analyse import analyse_stability
    from src.stability.exact import exact_stability_per_unit

    progress = not args.quiet
    t0 = time.perf_counter()
    st = analyse_stability(net, box, tol=args.tol, exact=True, progress=progress, time_limit=args.tiered_time_limit)
    t_tiered = time.perf_counter() - t0
    df, t_data, t_df = data_first(net, box, args, True, args.tiered_time_limit)
    cmp_df = compare(df, st)
    t0 = time.perf_counter()
    ref = exact_stability_per_unit(net, box, tol=args.tol, progress=progress, time_limit=args.ref_time_limit,
                                   early_stop=not args.ref_optimal)
    t_ref = time.perf_counter() - t0
    cmp = compare(st, ref)
    row = {"domain": box.name, "units": int(net.n_hidden_units),
           "tiered_seconds": round(t_tiered, 3), "tiered_exact": bool(st.exact), "tiers": st.tiers,
           "reference": "per-unit MILP to optimality" if args.ref_optimal else "per-unit MILP, early-stopped",
           "reference_seconds": round(t_ref, 3), "reference_finished": bool(ref.exact),
           "reference_solves": int(ref.tiers[-1].get("solves", 0)),
           "speedup": round(t_ref / t_tiered, 2) if t_tiered > 0 else None,
           "speedup_is_lower_bound": not ref.exact, **cmp,
           "counts_tiered": st.counts(), "counts_reference": ref.counts(),
           "data_first_seconds": round(t_df, 3), "data_seconds": round(t_data, 3), "data_first_exact": bool(df.exact),
           "data_first_tiers": df.tiers, "data_first_identical_to_tiered": cmp_df["identical"],
           "data_first_contradictions": cmp_df["contradictions"],
           "tiered_over_data_first": round(t_tiered / t_df, 2) if t_df > 0 else None}
    if st.exact and ref.exact:
        row["verdict"] = "identical" if cmp["identical"] else "DIFFERENT"
    else:
        row["verdict"] = ("agree where both decided" if cmp["contradictions"] == 0 else "CONTRADICTION") \
            + (" (reference capped)" if not ref.exact else "") + (" (tiered capped)" if not st.exact else "")
    return row


def markdown(rows) -> str:
    lines = ["| net | domain | tiered s (interval/lp/milp settled) | exact | per-unit MILP s | speed-up | stable sets "
             "| data-first s (+ data s) | tiered / data-first | data-first sets |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        tiers = "/".join(str(t["settled"]) for t in r["tiers"])
        ref = f"{r['reference_seconds']:.1f}" + ("" if r["reference_finished"] else f" (capped, {r['reference_solves']} solves)")
        sp = ("≥ " if r["speedup_is_lower_bound"] else "") + f"{r['speedup']:.1f}x"
        dfs = "identical to tiered" if r["data_first_identical_to_tiered"] else \
            f"DIFFERENT ({r['data_first_contradictions']} contradictions)"
        lines.append(f"| {r['net']} | {r['domain']} | {r['tiered_seconds']:.2f} ({tiers}) | {r['tiered_exact']} "
                     f"| {ref} | {sp} | {r['verdict']}: {r['stable_tiered']} vs {r['stable_reference']} stable "
                     f"| {r['data_first_seconds']:.2f} (+ {r['data_seconds']:.2f}) | {r['tiered_over_data_first']:.1f}x "
                     f"| {dfs} |")
    return "\n".join(lines) + "\n"


def bench_targets(args) -> list[dict]:
    """The fcnn4b targets: today's tiers vs data-first on [0,1]^784, without and with the MILP tier."""
    from benchmarks.common import train_nets as train_shared
    from src.stability.analyse import analyse_stability
    from src.core.box import Box

    paths = train_shared(Path(args.work_dir), ["fcnn4b"], [0.0, 1e-3], args.target_epochs, args.target_subset, 0)
    box = Box.uniform(784)
    rows = []
    for l1, path in zip((0.0, 1e-3), paths):
        net = load_net(path)
        for exact in (False, True):
            t0 = time.perf_counter()
            today = analyse_stability(net, box, tol=args.tol, exact=exact, progress=not args.quiet,
                                      time_limit=args.tiered_time_limit)
            t_today = time.perf_counter() - t0
            df, t_data, t_df = data_first(net, box, args, exact, args.tiered_time_limit)
            cmp = compare(df, today)
            row = {"net": f"fcnn4b l1={l1:g} ({args.target_epochs} ep, {args.target_subset} imgs)", "weights": str(path),
                   "exact": exact, "today_seconds": round(t_today, 3), "today_exact": bool(today.exact),
                   "today_capped": today.stopped_by_time_limit, "today_lps": today.tiers[1].get("lps"),
                   "data_first_seconds": round(t_df, 3), "data_seconds": round(t_data, 3),
                   "data_first_exact": bool(df.exact), "data_first_lps": df.tiers[1].get("lps"),
                   "data_points": df.tiers[0].get("data_points"), "ratio": round(t_today / t_df, 2),
                   "counts_data_first": df.counts(), "tiers_today": today.tiers, "tiers_data_first": df.tiers, **cmp}
            rows.append(row)
            if not args.quiet:
                print(markdown_targets([row]).splitlines()[-1], file=sys.stderr)
    return rows


def markdown_targets(rows) -> str:
    lines = ["| net | MILP tier | today s (LPs) | data-first s (LPs) + data s | ratio | stable units (today / data-first) "
             "| exact (today / data-first) | stable sets |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cap = " (capped)" if r["today_capped"] else ""
        lines.append(f"| {r['net']} | {'yes' if r['exact'] else 'no'} | {r['today_seconds']:.1f}{cap} ({r['today_lps']}) "
                     f"| {r['data_first_seconds']:.2f} ({r['data_first_lps']}) + {r['data_seconds']:.2f} "
                     f"| {r['ratio']:.1f}x | {r['stable_reference']} / {r['stable_tiered']} "
                     f"| {r['today_exact']} / {r['data_first_exact']} "
                     f"| {'identical' if r['identical'] else 'DIFFERENT'} |")
    return "\n".join(lines) + "\n"


def build_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", nargs="+", metavar="FILE", help="nets to benchmark (weights.dat)")
    p.add_argument("--models-dir", metavar="DIR", help="pick fcnn2b (l1=0) and fcnn4b (l1>0) runs from here")
    p.add_argument("--work-dir", default="/tmp/bench_stability_models", metavar="DIR",
                   help="where to train the nets when neither --weights nor --models-dir is given")
    p.add_argument("--epochs", type=int, default=2, help="training epochs (default 2)")
    p.add_argument("--train-subset", type=int, default=10000, help="first N training images (default 10000)")
    p.add_argument("--l1", type=float, default=2e-4, help="l1 weight of the fcnn4b net (default 2e-4)")
    p.add_argument("--domains", default="test0:0.005",
                   help="comma-separated: 'input' ([0,1]^784) and/or 'testK:W' (default test0:0.005)")
    p.add_argument("--tol", type=float, default=1e-6, help="activity threshold (default 1e-6)")
    p.add_argument("--tiered-time-limit", type=float, default=120.0, help="cap per tiered run, s (default 120)")
    p.add_argument("--ref-time-limit", type=float, default=120.0, help="cap per reference run, s (default 120)")
    p.add_argument("--ref-optimal", action="store_true",
                   help="solve every reference MILP to optimality (default: stop once the sign is decided)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "out" / "bench_stability"), metavar="STEM",
                   help="write STEM.json and STEM.md (default benchmarks/out/bench_stability)")
    p.add_argument("--data-root", default=None, help="MNIST root (default <repo>/data)")
    p.add_argument("--samples", type=int, default=10000,
                   help="seeded samples of the box for data-first stability, besides MNIST (default 10000)")
    p.add_argument("--targets", action="store_true", help="run the fcnn4b stability targets (see above)")
    p.add_argument("--target-epochs", type=int, default=1, help="--targets: training epochs (default 1)")
    p.add_argument("--target-subset", type=int, default=5000, help="--targets: first N training images (default 5000)")
    p.add_argument("-q", "--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    torch.set_num_threads(1)

    for name in ("tiered_time_limit", "ref_time_limit"):
        if not getattr(args, name) > 0:
            raise ToolError(f"--{name.replace('_', '-')} must be > 0")
    if args.targets:
        rows = bench_targets(args)
        md = markdown_targets(rows)
        print(md)
        out = Path(args.out + "_targets")
        atomic_write_json(out.with_suffix(".json"), {"rows": rows, "args": vars(args)})
        atomic_write_text(out.with_suffix(".md"), md)
        return 1 if any(not r["identical"] for r in rows) else 0
    domains = parse_domains(args.domains)
    if args.weights:
        nets = [(Path(w).parent.name or w, Path(w)) for w in args.weights]
    elif args.models_dir:
        nets = find_in_models_dir(Path(args.models_dir))
    else:
        nets = train_nets(Path(args.work_dir), args.epochs, args.train_subset, args.l1, args.quiet)
    rows = []
    for label, path in nets:
        net = load_net(path)
        for spec in domains:
            box = make_box(spec, args.data_root)
            row = {"net": label, "weights": str(path), "layer_sizes": net.layer_sizes, **bench_one(net, box, args)}
            rows.append(row)
            if not args.quiet:
                print(markdown([row]).splitlines()[-1], file=sys.stderr)
    md = markdown(rows)
    print(md)
    out = Path(args.out)
    atomic_write_json(out.with_suffix(".json"), {"rows": rows, "args": vars(args)})
    atomic_write_text(out.with_suffix(".md"), md)
    bad = [r for r in rows if r["contradictions"] or r["verdict"] == "DIFFERENT" or r["data_first_contradictions"]
           or (r["tiered_exact"] and r["data_first_exact"] and not r["data_first_identical_to_tiered"])]
    return 1 if bad else 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
