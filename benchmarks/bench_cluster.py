#!/usr/bin/env python
"""A two-node Ray cluster on this machine counts a trained MNIST net; one node is killed mid-count.

1. The net: `benchmarks/common.train_nets` (default mlp:12-12 = 784-12-12-10, 3 epochs on 10,000 images).
2. The reference: `count_linear_regions.py --workers 1` (in-process, no Ray), timed.
3. A cluster of two nodes (`ray start --head`, `ray start --address`, --cpus-per-node each; tests/local_cluster.py:
   private temp dir, private token), then `count_linear_regions.py --ray-address ADDR --workers 2
   --checkpoint-every 5`. When its checkpoint file shows --kill-at of the reference's patterns (a progress
   trigger, not a timer), node2 is killed (SIGKILL to its raylet, then every process of the node); the head
   finishes the count.
4. The pattern file is compared byte for byte with the reference's.

    python benchmarks/bench_cluster.py                          # about 15 minutes on 2 cores
    python benchmarks/bench_cluster.py --arch mlp:10-10         # a smaller net (784-10-10-10)

Prints one JSON record (also written to --out).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.common import train_nets  # noqa: E402
from local_cluster import Cluster  # noqa: E402

DOMAIN = "input_0_1"
PATTERNS = f"activation_pattern_abhinav_{DOMAIN}.dat"


def _count(weights: Path, out: Path, *args, env=None):
    """The count CLI; (wall seconds, its summary, the Popen result)."""
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, str(ROOT / "count_linear_regions.py"), "-w", str(weights), "-o", str(out),
                        "-q", *args], capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"count failed ({r.returncode}): {r.stderr[-2000:]}")
    return wall, json.loads((out / f"regions_{DOMAIN}.json").read_text()), r


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mlp:12-12")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--subset", type=int, default=10000, help="training images (0: all 60,000)")
    p.add_argument("--work", type=Path, default=ROOT / "benchmarks" / "out" / "cluster", help="nets and counts go here")
    p.add_argument("--kill-at", type=float, default=0.4, help="kill node2 when the checkpoint holds this "
                                                              "fraction of the reference's patterns")
    p.add_argument("--cpus-per-node", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also write the JSON record here")
    a = p.parse_args(argv)

    weights = train_nets(a.work, [a.arch], [0.0], a.epochs, a.subset, seed=0)[0]
    runs = a.work / "counts" / weights.parent.name
    shutil.rmtree(runs, ignore_errors=True)
    rec = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "arch": a.arch, "epochs": a.epochs,
           "subset": a.subset, "load_at_start": os.getloadavg()}

    wall, ref, _ = _count(weights, runs / "reference", "--checkpoint-every", "0", env=dict(os.environ, RAY_ADDRESS=""))
    assert ref["complete"]
    rec["reference"] = {"wall_s": round(wall, 1), "regions": ref["count"], "layer_sizes": ref["layer_sizes"]}
    print(f"reference (1 worker, no Ray): {ref['count']} regions in {wall:.1f} s", file=sys.stderr)

    root = Path(tempfile.mkdtemp(prefix="rtk-bench-", dir="/tmp"))
    cluster = Cluster(root, cpus_per_node=a.cpus_per_node)
    try:
        t0 = time.perf_counter()
        cluster.start("head")
        cluster.start("node2")
        rec["cluster_start_s"] = round(time.perf_counter() - t0, 1)
        out = runs / "cluster"
        out.mkdir(parents=True)
        env = dict(os.environ)
        for k, v in cluster.driver_env().items():
            if v is None:
                env.pop(k, None)
            else:
                env[k] = v
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, str(ROOT / "count_linear_regions.py"), "-w", str(weights), "-o",
                                 str(out), "-q", "--ray-address", cluster.address, "--workers",
                                 str(2 * a.cpus_per_node), "--checkpoint-every", "5"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
        ck = out / f"checkpoint_{DOMAIN}.json"
        target = int(a.kill_at * ref["count"])
        killed = None
        while proc.poll() is None and killed is None:
            try:
                done = json.loads(ck.read_text())["patterns"]
            except (OSError, ValueError, KeyError):
                done = 0
            if done >= target:
                cluster.kill("node2")
                killed = {"after_s": round(time.perf_counter() - t0, 1), "checkpoint_patterns": done}
                print(f"node2 killed after {killed['after_s']} s at a checkpoint of {done} patterns",
                      file=sys.stderr)
            time.sleep(0.5)
        so, se = proc.communicate()
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"cluster count failed ({proc.returncode}): {se[-2000:]}")
        s = json.loads((out / f"regions_{DOMAIN}.json").read_text())
        same = (out / PATTERNS).read_bytes() == (runs / "reference" / PATTERNS).read_bytes()
        rec["cluster"] = {"wall_s": round(wall, 1), "regions": s["count"], "complete": s["complete"],
                          "nodes_that_returned_slices": s["stats"].get("nodes"), "slices": s["stats"].get("tasks"),
                          "node2_killed": killed, "stderr": se, "identical_pattern_file": same,
                          "speed_up_vs_reference": round(rec["reference"]["wall_s"] / wall, 2)}
    finally:
        cluster.close()
        shutil.rmtree(root, ignore_errors=True)
    text = json.dumps(rec, indent=2)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0 if rec["cluster"]["identical_pattern_file"] and killed else 1


if __name__ == "__main__":
    sys.exit(main())
