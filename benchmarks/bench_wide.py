"""Regions per second of the global count on a wide net: the lp walk of this checkout, the lp walk of an earlier
commit (a git worktree, same Python), and Gurobi, side by side in one run.

    python benchmarks/bench_wide.py [--time-limit 120] [--baseline 773b1cb] [--archs mlp:100-100]

Each row is a fresh `count_linear_regions.py -w NET --backend B --time-limit T --checkpoint-every 0` (1 thread),
as a user runs it; regions per second are the patterns found over the enumeration's own seconds (the record's
"stats"."seconds": the data pass and the bounds excluded, they are the same for every row). The walk's
counters (LPs per pattern, LP iterations per LP) come from the same record. Prints a Markdown table and writes
it to benchmarks/out/wide.md.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import train_nets  # noqa: E402
from src.io.records import read_regions  # noqa: E402


def worktree(commit: str) -> Path:
    """A checkout of `commit` (a git worktree in the temp folder, created once) whose scripts run with this
    Python."""
    path = Path(tempfile.gettempdir()) / f"relu_toolkit_baseline_{commit}"
    if not (path / "count_linear_regions.py").exists():
        subprocess.run(["git", "worktree", "add", "--detach", "-f", str(path), commit], cwd=ROOT, check=True,
                       capture_output=True)
    return path


def warm_up(root: Path) -> None:
    """Compile the walk of the checkout at `root` into its cache now, so that no row pays for it."""
    subprocess.run([sys.executable, "-c", "from src.counting.tree_walk import warm_up; warm_up()"], cwd=root,
                   check=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def count(root: Path, weights: Path, backend: str, T: float, out: Path) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    for f in out.glob("*"):
        f.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.monotonic()
    r = subprocess.run([sys.executable, "count_linear_regions.py", "-w", str(weights), "--backend", backend,
                        "--time-limit", str(T), "-q", "--out-dir", str(out), "--checkpoint-every", "0"],
                       capture_output=True, text=True, env=env, cwd=root)
    wall = time.monotonic() - t0
    if r.returncode != 0:
        raise SystemExit(f"{root} {backend}: exit {r.returncode}: {r.stderr.strip()[-400:]}")
    s = read_regions(out / "regions_input_0_1.json")
    st = s.get("stats") or {}
    secs = float(st.get("seconds") or s["times"]["enumeration"])
    return {"wall": wall, "patterns": int(s["count"]), "seconds": secs, "rate": s["count"] / max(secs, 1e-9),
            "lps_per_pattern": st.get("lps_per_pattern"), "iterations_per_lp": st.get("iterations_per_lp")}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--time-limit", type=float, default=120.0)
    p.add_argument("--baseline", default="773b1cb", help="earlier commit whose lp walk is measured beside ('' = none)")
    p.add_argument("--archs", default="mlp:100-100")
    p.add_argument("--backends", default="lp,gurobi")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--subset", type=int, default=10000)
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "out"))
    args = p.parse_args()
    work = Path(args.work)
    nets = train_nets(work, args.archs.split(","), [0.0], args.epochs, args.subset, seed=0)
    T = args.time_limit
    rows = [f"| net | walk | backend | wall s (limit {T:g}) | patterns | enumeration s | regions/s | LPs/pattern "
            "| LP iterations/LP | vs baseline lp | vs gurobi |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for arch, w in zip(args.archs.split(","), nets):
        runs = [("this checkout", ROOT, b) for b in args.backends.split(",")]
        if args.baseline:
            runs.insert(1, (args.baseline, worktree(args.baseline), "lp"))
        res = {}
        for root in {r[1] for r in runs}:
            warm_up(root)
        for label, root, b in runs:
            res[(label, b)] = count(root, w, b, T, work / "wide" / f"{arch.replace(':', '_')}_{b}_{label[:7]}")
            print(label, b, res[(label, b)], flush=True)
        base = res.get((args.baseline, "lp"))
        gur = res.get(("this checkout", "gurobi"))
        for (label, b), r in res.items():
            vb = f"{r['rate'] / base['rate']:.1f}x" if base and base["rate"] else "—"
            vg = f"{r['rate'] / gur['rate']:.1f}x" if gur and gur["rate"] else "—"
            rows.append(f"| {arch} | {label} | {b} | {r['wall']:.1f} | {r['patterns']:,} | {r['seconds']:.1f} "
                        f"| {r['rate']:.2f} | {r['lps_per_pattern'] or '—'} | {r['iterations_per_lp'] or '—'} "
                        f"| {vb} | {vg} |")
    text = "\n".join(rows) + "\n"
    (work / "wide.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
