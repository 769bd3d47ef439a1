"""Regions of one small CNN on one box by relucent 1.0 and by this project: the same region sets, and the
ratio of their times (issue 22).

    python benchmarks/bench_relucent.py [--radius 0.007] [--seed 0] [--repeats 3] [--relucent-python PY]

The net: `cnn:c2k3s2p1-fc6` of the zoo grammar (src/training/models.py) on a 1x8x8 input, 2 outputs:
Conv2d(1, 2, 3x3, stride 2, padding 1) -> ReLU -> Flatten -> Linear(32, 6) -> ReLU -> Linear(6, 2), 38 hidden
units; Kaiming weights (--seed) and biases N(0, 0.1^2) (seed + 1), so that no hyperplane passes through the
box's centre. The padding gives the border positions of a channel other thresholds than the inner ones;
still, the count grows steeply with the radius (benchmarks/README.md), so keep it small. The box:
[-r, r]^64, centred at the origin, because relucent restricts a search to the cube [-r, r]^d
(cube_mode="intersect": the cells of R^d that meet the cube; relucent has no other box). Each tool gets the
CNN itself: relucent.convert(Conv2d, ...) in relucent's own virtual environment (relucent 1.0 needs numpy
>= 2; benchmarks/relucent_worker.py, requirements in benchmarks/requirements-relucent.txt), and this
project's from_torch_module -> Analysis(net, box).count_regions(backend="lp") here.

Compared: the sets of activation patterns (relucent's sign sequence +1/-1 as 1/0; its neuron order, the
converted Linear layers' outputs in torch's flatten order (channel, row, column), then the fc layer, is
checked against this project's order on 200 random points of the box first), and the median of the repeats
of each tool's enumeration time (relucent: convert + Complex.bfs with nworkers=1, certification on, its
default; this project: stable units + the count, one thread). Prints a Markdown table and writes it to
benchmarks/out/relucent.md.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from src.analysis import Analysis  # noqa: E402
from src.core.box import Box  # noqa: E402
from src.io.readers.torch_state import from_torch_module  # noqa: E402
from src.training.models import build_model  # noqa: E402

ARCH, INPUT_SHAPE, N_CLASSES = "cnn:c2k3s2p1-fc6", (1, 8, 8), 2


def bench_model(seed: int = 0, bias_std: float = 0.1):
    import torch

    model = build_model(ARCH, n_inputs=int(np.prod(INPUT_SHAPE)), n_classes=N_CLASSES, input_shape=INPUT_SHAPE,
                        seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for m in model:
            if hasattr(m, "bias") and m.bias is not None:
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * bias_std)
    return model.double().eval()


def bits(rows) -> set:
    return {"".join(map(str, map(int, r))) for r in rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--radius", type=float, default=0.007, help="the box [-r, r]^64")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--relucent-python", default=str(ROOT / "benchmarks/.venv-relucent/bin/python"),
                   help="the Python of a virtual environment with relucent 1.0 (benchmarks/requirements-relucent.txt)")
    p.add_argument("--out", default=str(ROOT / "benchmarks/out/relucent.md"))
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    model = bench_model(a.seed)
    net = from_torch_module(model)
    n = net.n_inputs
    box = Box.uniform(n, -a.radius, a.radius)
    pts = box.sample(200, np.random.default_rng(a.seed + 2))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        torch.save(model.float().state_dict(), tmp / "model.pt")   # build_model's dtype; the worker widens it
        model = model.double()
        job = {"arch": ARCH, "n_inputs": n, "n_classes": N_CLASSES, "input_shape": list(INPUT_SHAPE),
               "state_dict": str(tmp / "model.pt"), "radius": a.radius, "repeats": a.repeats, "points": pts.tolist()}
        # the float32 round trip must not change the net: the weights are drawn in float32 (build_model)
        assert all(np.array_equal(w, w.astype(np.float32)) for w in net.weights + net.biases)
        (tmp / "job.json").write_text(json.dumps(job))
        t0 = time.perf_counter()
        r = subprocess.run([a.relucent_python, str(ROOT / "benchmarks/relucent_worker.py"), str(tmp / "job.json"),
                            str(tmp / "out.json")], capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if r.returncode != 0:
            print(r.stdout[-3000:], r.stderr[-3000:], file=sys.stderr)
            return 1
        rel = json.loads((tmp / "out.json").read_text())
    # the unit order: relucent's sign sequences of the same points against this project's patterns
    ours_pts = ["".join(map(str, row)) for row in net.patterns(pts).astype(int)]
    order_ok = ours_pts == rel["point_ss"]
    ours_runs, ours = [], None
    for _ in range(a.repeats):
        t0 = time.perf_counter()
        c = Analysis(net, box).count_regions(backend="lp")
        ours_runs.append(time.perf_counter() - t0)
        found = bits(c.patterns)
        assert c.complete and (ours is None or found == ours)
        ours = found
    theirs = set(rel["cells"])
    t_rel = statistics.median(r["convert_s"] + r["search_s"] for r in rel["runs"])
    t_ours = statistics.median(ours_runs)
    rows = [
        ("net", f"`{ARCH}` on 1x8x8, 2 outputs: {net.layer_sizes} (dense), seed {a.seed}"),
        ("box", f"[-{a.radius:g}, {a.radius:g}]^{n}"),
        ("unit order (200 points of the box)", "identical" if order_ok else "DIFFERENT"),
        ("regions: relucent / this project", f"{len(theirs)} / {len(ours)}"),
        ("identical region sets", "yes" if theirs == ours else
         f"no: {len(theirs - ours)} only relucent, {len(ours - theirs)} only here"),
        ("relucent 1.0 (convert + bfs, 1 worker), median s", f"{t_rel:.2f} (runs: "
         + ", ".join(f"{r['convert_s'] + r['search_s']:.2f}" for r in rel["runs"]) + ")"),
        ("this project (stable units + lp count, 1 thread), median s", f"{t_ours:.3f} (runs: "
         + ", ".join(f"{t:.3f}" for t in ours_runs) + ")"),
        ("time ratio relucent / this project", f"{t_rel / t_ours:.0f}x"),
        ("relucent complete / verified", f"{rel['runs'][0]['complete']} / {rel['runs'][0]['verified']}"),
        ("versions", f"relucent {rel['versions']['relucent']} (numpy {rel['versions']['numpy']}, torch "
         f"{rel['versions']['torch']}); here numpy {np.__version__}, torch {torch.__version__}, "
         f"Python {platform.python_version()}"),
        ("worker wall (process start, imports, all repeats)", f"{wall:.1f} s"),
    ]
    table = "\n".join(["| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows])
    print(table)
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(table + "\n")
    return 0 if order_ok and theirs == ours else 1


if __name__ == "__main__":
    sys.exit(main())
