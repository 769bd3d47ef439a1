#!/usr/bin/env python
"""The exact count of the 784-15-15-10 MNIST net (113,330,235 regions, issue 23), carried across machines.

The count took 5.1 h of enumeration on two cores (complete 2026-12-05; its summary regions_input_0_1.json is
kept), longer than one machine is held here. It ran with `--count-only`, so its whole state was
checkpoint_input_0_1.json (about 1 KB: the count, the last pattern, the data patterns found, the frontier) and
it lives in this repository beside the net (benchmarks/count_1e8/): `run` continues it on
any machine, `save` copies the state reached back for a commit.

    python benchmarks/bench_count_1e8.py run                  # resume the count (Ctrl-C: stop and keep its state)
    python benchmarks/bench_count_1e8.py save                 # copy its checkpoint (or final summary) back here
    python benchmarks/bench_count_1e8.py status               # the state here and in the work directory

The net: `TrainConfig(arch="mlp:15-15", epochs=3, train_subset=0 (all 60,000), seed=0, threads=1)`
(benchmarks/README.md, "The exact count of the 784-15-15-10 net"); weights.dat is kept, not retrained, because
training on another CPU may give other floats and the checkpoint names the weights by sha256.
"""
import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.io.files import atomic_write_text, file_sha256  # noqa: E402

STATE = ROOT / "benchmarks" / "count_1e8"
WEIGHTS = "weights.dat"
CHECKPOINT = "checkpoint_input_0_1.json"
SUMMARY = "regions_input_0_1.json"


def _json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _complete(d: Path) -> dict | None:
    s = _json(d / SUMMARY)
    return s if s is not None and s.get("complete") is True and s.get("pattern_file") is None else None


def _patterns(ck: dict | None) -> int:
    return -1 if ck is None else int(ck["patterns"])


def _copy(src: Path, dst: Path) -> None:
    atomic_write_text(dst, src.read_text())


def describe(d: Path) -> str:
    s, ck = _complete(d), _json(d / CHECKPOINT)
    if s is not None:
        t = s["times"]
        return (f"{d}: complete, {s['count']:,} regions, {t.get('enumeration_all_runs', t['enumeration']):,.0f} s "
                f"of enumeration in {t.get('runs', 1)} runs")
    if ck is not None:
        return (f"{d}: {ck['patterns']:,} patterns at {ck['written']}, {ck.get('enumeration_seconds', 0):,.0f} s "
                f"of enumeration in {ck.get('runs', '?')} runs, {len(ck['frontier'] or [])} subtrees left")
    return f"{d}: no state"


def run(work: Path, workers: int, every: float) -> int:
    if _complete(STATE) is not None:
        print(describe(STATE))
        return 0
    work.mkdir(parents=True, exist_ok=True)
    if not (work / WEIGHTS).exists():
        shutil.copyfile(STATE / WEIGHTS, work / WEIGHTS)
    elif file_sha256(work / WEIGHTS) != file_sha256(STATE / WEIGHTS):
        sys.exit(f"error: {work / WEIGHTS} is not the net of {STATE / WEIGHTS}; give another --work-dir")
    here, kept = _json(work / CHECKPOINT), _json(STATE / CHECKPOINT)
    if _complete(work) is None and _patterns(kept) > _patterns(here):
        _copy(STATE / CHECKPOINT, work / CHECKPOINT)            # the state reached on another machine
        print(f"continuing from {STATE / CHECKPOINT} ({kept['patterns']:,} patterns)", file=sys.stderr)
    argv = [sys.executable, str(ROOT / "count_linear_regions.py"), "-w", str(work / WEIGHTS), "--count-only",
            "--resume", "--workers", str(workers), "--checkpoint-every", str(every)]
    print(" ".join(argv), file=sys.stderr, flush=True)
    os.chdir(ROOT)
    os.execv(sys.executable, argv)


def save(work: Path) -> int:
    s = _complete(work)
    if s is not None:
        _copy(work / SUMMARY, STATE / SUMMARY)
        (STATE / CHECKPOINT).unlink(missing_ok=True)
    elif (work / CHECKPOINT).exists():
        if _patterns(_json(work / CHECKPOINT)) < _patterns(_json(STATE / CHECKPOINT)):
            sys.exit(f"error: {work / CHECKPOINT} is behind {STATE / CHECKPOINT}; nothing saved")
        _copy(work / CHECKPOINT, STATE / CHECKPOINT)
    else:
        sys.exit(f"error: {work} holds no checkpoint or complete summary of the count")
    print(describe(STATE))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("step", choices=["run", "save", "status"])
    p.add_argument("--work-dir", type=Path, default=ROOT / "benchmarks" / "out" / "count_1e8",
                   help="where the count runs (its stable units, summary and checkpoint)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--checkpoint-every", type=float, default=120.0)
    a = p.parse_args(argv)
    if a.step == "run":
        return run(a.work_dir, a.workers, a.checkpoint_every)
    if a.step == "save":
        return save(a.work_dir)
    print(describe(STATE))
    print(describe(a.work_dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
