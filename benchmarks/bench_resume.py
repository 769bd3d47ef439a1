#!/usr/bin/env python
"""Resuming a large lp count: what `--resume` costs before it enumerates again, with the patterns found so far
held in memory (read_patterns + PatternSink(known=...): the path of the MILP backends, and of the lp backend
before 2026-12-04) against streamed from the file (scan_resumed_patterns: the lp backend continuing from its
frontier). Synthetic pattern files of the 784-15-15-10 net of the 10^8-region count (30 units, the writer's
layout, strictly increasing), P patterns each; every case runs in its own process, which reports its seconds
and peak memory (ru_maxrss).

    python benchmarks/bench_resume.py                                   # 10^6 both ways, 10^7 streamed
    python benchmarks/bench_resume.py --sizes 1e6,4e6 --stream-sizes 1e6,1e7,1e8 --dir /scratch/resume
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

SIZES = [784, 15, 15, 10]
UNITS = 30


def write_file(path: Path, n: int, block: int = 1_000_000) -> None:
    """n patterns: the bits of 10 k + 3 (k = 0..n-1, first unit most significant), one line each."""
    from src.io.pattern_file import _header
    with open(path, "wb") as fh:
        fh.write(_header(SIZES).encode())
        for a in range(0, n, block):
            k = np.arange(a, min(n, a + block), dtype=np.int64) * 10 + 3
            bits = ((k[:, None] >> np.arange(UNITS - 1, -1, -1)) & 1).astype(np.uint8)
            line = np.full((len(k), 2 * UNITS), 32, np.uint8)
            line[:, 0::2] = bits + 48
            line[:, -1] = 10
            fh.write(line.tobytes())


def one_case(path: str, how: str) -> dict:
    """Run in a child process: the resume's reading of `path` one way; seconds and peak RSS."""
    from src.counting.driver import check_known_patterns, scan_resumed_patterns
    from src.counting.problem import PatternSink
    from src.io.pattern_file import read_patterns
    fixed = np.full(UNITS, -1)
    t = time.perf_counter()
    if how == "in memory":
        known = read_patterns(path, SIZES, allow_empty=True)
        check_known_patterns(known, fixed, path)
        sink = PatternSink(None, known, flat_memory=True)
        sink.start_backend(True)
        n = len(sink)
    else:
        n = scan_resumed_patterns(path, SIZES, fixed).count
    secs = time.perf_counter() - t
    return {"how": how, "patterns": n, "seconds": round(secs, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="1e6", help="P of the cases run both ways (comma-separated)")
    p.add_argument("--stream-sizes", default="1e6,1e7", help="P of the cases streamed only")
    p.add_argument("--dir", default="benchmarks/out/resume", help="where the synthetic files go (P x 60 bytes)")
    p.add_argument("--case", nargs=2, metavar=("FILE", "HOW"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.case:
        print(json.dumps(one_case(*args.case)))
        return 0
    work = Path(args.dir)
    work.mkdir(parents=True, exist_ok=True)
    both = [int(float(s)) for s in args.sizes.split(",") if s]
    stream = [int(float(s)) for s in args.stream_sizes.split(",") if s]
    print("| patterns | file GB | resume reads them | seconds | peak memory MB |\n|---:|---:|---|---:|---:|")
    for n in sorted(set(both) | set(stream)):
        f = work / f"patterns_{n}.dat"
        if not f.exists() or f.stat().st_size < n * 2 * UNITS:
            write_file(f, n)
        for how in (["in memory"] if n in both else []) + (["streamed"] if n in stream or n in both else []):
            r = subprocess.run([sys.executable, __file__, "--case", str(f), how], capture_output=True, text=True,
                               check=True, cwd=ROOT)
            row = json.loads(r.stdout.strip().splitlines()[-1])
            assert row["patterns"] == n, row
            print(f"| {n:,} | {f.stat().st_size / 1e9:.2f} | {how} | {row['seconds']} | {row['peak_rss_mb']:,} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
