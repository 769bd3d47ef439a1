"""The relucent side of bench_relucent.py, run in relucent's own virtual environment (relucent 1.0 needs
numpy >= 2, this project pins numpy 1.26; benchmarks/requirements-relucent.txt).

    python benchmarks/relucent_worker.py JOB.json OUT.json

JOB.json: {"arch", "n_inputs", "n_classes", "input_shape", "state_dict" (a .pt file of the model's tensors,
read with weights_only=True), "radius", "repeats", "points" (a list of input rows)}. The model is rebuilt
with src.training.models.build_model (the same code as the project side), its leading Unflatten left out
(relucent reads Conv2d, AvgPool2d, Linear, ReLU, Flatten, Dropout). relucent.convert, then per repeat a
fresh Complex and bfs(cube_radius=radius, cube_mode="intersect", nworkers=1): the cells of the input space
that meet the cube [-radius, radius]^n. OUT.json: the seconds of each repeat (convert and search), the cells'
sign sequences as 0/1 strings (+1 -> 1, -1 -> 0; relucent's neuron order), the sign sequences of the given
points (to check the unit order against the project's), the search results and versions.
"""
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(job_path, out_path):
    import numpy as np
    import relucent
    import torch

    from src.training.models import build_model

    job = json.loads(Path(job_path).read_text())
    model = build_model(job["arch"], n_inputs=job["n_inputs"], n_classes=job["n_classes"],
                        input_shape=tuple(job["input_shape"]))
    model.load_state_dict(torch.load(job["state_dict"], map_location="cpu", weights_only=True))
    model = model.double().eval()
    body = model[1:]                            # without the Unflatten: relucent takes (C, H, W) inputs
    runs, cells = [], None
    for _ in range(int(job["repeats"])):
        t0 = time.perf_counter()
        net = relucent.convert(body, input_shape=tuple(job["input_shape"]))
        t1 = time.perf_counter()
        cx = relucent.Complex(net)
        res = cx.bfs(cube_radius=float(job["radius"]), cube_mode="intersect", nworkers=1, verbose=0)
        t2 = time.perf_counter()
        ss = [np.asarray(p.ss_np).reshape(-1) for p in cx]
        if any((s == 0).any() for s in ss):
            raise SystemExit("relucent returned a cell with a zero sign (a lower-dimensional cell)")
        found = sorted("".join("1" if v > 0 else "0" for v in s) for s in ss)
        if cells is not None and found != cells:
            raise SystemExit("relucent found different cells on two repeats")
        cells = found
        runs.append({"convert_s": t1 - t0, "search_s": t2 - t1, "cells": len(found), "complete": res.complete,
                     "verified": res.verified, "bad_shi_computations": len(res.bad_shi_computations)})
    pts = np.asarray(job["points"], dtype=np.float64)
    point_ss = np.asarray(cx.point2ss(pts)).reshape(len(pts), -1)     # the converted net takes flat rows
    Path(out_path).write_text(json.dumps({
        "runs": runs, "cells": cells,
        "point_ss": ["".join("1" if v > 0 else "0" if v < 0 else "?" for v in row) for row in point_ss],
        "versions": {"relucent": relucent.__version__, "torch": torch.__version__, "numpy": np.__version__,
                     "python": sys.version.split()[0]}}))


if __name__ == "__main__":
    main(*sys.argv[1:3])
