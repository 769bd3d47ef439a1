#!/usr/bin/env python
"""The wall time of a training sweep on k workers, from the runs of a measured sweep: each run's own
seconds (metrics.json) scheduled as the sweep schedules them (src.training.train.longest_first: the
longest run first, the next waiting run to the first free worker), plus the start-up the measured sweep
paid before its first run began (Ray, the workers importing torch). The measured sweep's own schedule
(start and end of every run, from its train.log) is printed beside it, so the model is checked against
the run it was built from before it is used for other k.

    python train_bulk_script.py -s 100 -a fcnn4b --workers 2 -q --models-dir /work/runs/sweep2w/models
    python benchmarks/bench_sweep.py --models-dir /work/runs/sweep2w/models --runs 100-111 \
        --started 2026-12-04T17:16:58 --ended 2026-12-04T18:20:00 --workers-list 1,2,4,12
"""
import argparse
import dataclasses
import datetime as dt
import heapq
import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.io.records import read_config, read_metrics  # noqa: E402
from src.training.train import TrainConfig, longest_first  # noqa: E402

STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] (.*)$")


def run_times(run_dir: Path) -> dict:
    """One run: its config, its own seconds (metrics.json) and its first/last log time stamps (train.log)."""
    cfg = read_config(run_dir / "config.json")
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(**{k: v for k, v in cfg.items() if k in fields})
    seconds = float(read_metrics(run_dir / "metrics.json")["seconds"])
    stamps = [dt.datetime.fromisoformat(m.group(1)) for line in (run_dir / "train.log").read_text().splitlines()
              if (m := STAMP.match(line))]
    return {"config": config, "seconds": seconds, "first": stamps[0], "last": stamps[-1]}


def makespan(seconds_in_order: list, k: int, startup: float) -> float:
    """List scheduling: each run, in order, to the worker free first; all workers free at `startup`."""
    free = [startup] * k
    for s in seconds_in_order:
        t = heapq.heappop(free)
        heapq.heappush(free, t + s)
    return max(free)


def parse_runs(text: str) -> list:
    a, _, b = text.partition("-")
    return list(range(int(a), int(b or a) + 1))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", required=True)
    p.add_argument("--runs", default="100-111", help="run ids A-B")
    p.add_argument("--started", required=True, help="when the measured sweep command started (ISO, UTC as the logs)")
    p.add_argument("--ended", help="when it ended (ISO): the measured wall time")
    p.add_argument("--workers-list", default="1,2,12")
    args = p.parse_args(argv)
    runs = {r: run_times(Path(args.models_dir) / f"fcnn_run_{r}") for r in parse_runs(args.runs)}
    started = dt.datetime.fromisoformat(args.started)
    order = longest_first([v["config"] for v in runs.values()])
    startup = (min(v["first"] for v in runs.values()) - started).total_seconds()
    print("| run | l1 | adv | dropout | starts after s | ends after s | own seconds |\n|---:|---:|---|---:|---:|---:|---:|")
    for c in order:
        v = runs[c.run_id]
        print(f"| {c.run_id} | {c.l1:g} | {c.adv} | {c.dropout:g} | {(v['first'] - started).total_seconds():.0f} | "
              f"{(v['last'] - started).total_seconds():.0f} | {v['seconds']:.0f} |")
    total = sum(v["seconds"] for v in runs.values())
    print(f"\nstart-up before the first run: {startup:.0f} s; the runs' own seconds: {total:.0f} s "
          f"(longest {max(v['seconds'] for v in runs.values()):.0f} s)\n")
    measured = None if not args.ended else (dt.datetime.fromisoformat(args.ended) - started).total_seconds()
    print("| workers | wall time (model) | measured |\n|---:|---:|---:|")
    for k in (int(x) for x in args.workers_list.split(",")):
        m = makespan([runs[c.run_id]["seconds"] for c in order], k, startup)
        print(f"| {k} | {m:.0f} s ({m / 60:.1f} min) | "
              f"{'' if measured is None or k != 2 else f'{measured:.0f} s ({measured / 60:.1f} min)'} |")
    print(json.dumps({"startup_s": startup, "own_seconds_total": total}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
