"""Synthetic run directories in the layout of docs/formats.md, for the plot and results tests."""
import json
from pathlib import Path

import numpy as np

from src.core.network import ReluNet
from src.io.readers import load_net
from src.io.weights_file import save_net

DOMAIN = {"name": "input_0_1", "n": 784, "lo": 0.0, "hi": 1.0}


def _dump(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


def write_run(models_dir, run_id, l1, adv, dropout, *, hidden=(8, 8), seed=0, count=None, complete=True,
              files=("config", "metrics", "regions", "stable", "two_all", "two_feasible", "compressed", "weights"),
              n0=784, train_seed=0, accuracy=None):
    """One fcnn_run_<id>/ with the requested files; values derived from l1 so trends are visible. `train_seed` is
    the seed of config.json (seed only seeds the fixture's values); `accuracy` overrides the test accuracy."""
    rng = np.random.default_rng(seed + run_id)
    d = Path(models_dir) / f"fcnn_run_{run_id}"
    d.mkdir(parents=True, exist_ok=True)
    hidden = list(hidden)
    sizes = [n0] + hidden + [10]
    N = sum(hidden)
    if count is None:
        count = int(2000 / (1 + 3000 * l1) + rng.integers(0, 50))
    inactive = [min(h, int(h * min(1.0, 400 * l1)) + int(rng.integers(0, 2))) for h in hidden]
    active = [min(h - i, int(rng.integers(0, 2))) for h, i in zip(hidden, inactive)]
    counts = [{"layer": l + 1, "active": a, "inactive": i, "unstable": h - a - i}
              for l, (h, a, i) in enumerate(zip(hidden, active, inactive))]
    if "config" in files:
        _dump(d / "config.json", {"run_id": run_id, "arch": "mlp:" + "-".join(map(str, hidden)),
                                  "hidden_sizes": hidden, "l1": l1, "adv": adv, "adv_eps": 0.1, "adv_steps": 10,
                                  "adv_step_size": 0.02, "dropout": dropout, "epochs": 1, "seed": train_seed, "lr": 0.01,
                                  "momentum": 0.9, "batch_size": 128, "lr_step": 50, "lr_gamma": 0.1,
                                  "train_subset": 1000, "device": "cpu", "threads": 1,
                                  "versions": {"python": "3", "torch": "2", "numpy": "1"}})
    if "metrics" in files:
        acc = 0.9 - 20 * l1 - (0.05 if adv != "none" else 0.0) if accuracy is None else accuracy
        _dump(d / "metrics.json", {"epochs": [{"epoch": 1, "loss": 0.5, "train_acc": acc, "test_acc": acc,
                                               "seconds": 1.0}],
                                   "test_accuracy": acc, "train_accuracy": acc, "seconds": 1.0, "complete": True})
    if "stable" in files:
        _dump(d / "stable_units_input_0_1.json",
              {"weights": str(d / "weights.dat"), "domain": DOMAIN, "tol": 1e-6, "exact": False,
               "tiers": [{"tier": "interval", "settled": 3, "seconds": 0.01}], "counts": counts,
               "layers": [{"layer": c["layer"], "active": [], "inactive": [], "unstable": [],
                           "lower": [], "upper": []} for c in counts]})
    if "regions" in files:
        _dump(d / "regions_input_0_1.json",
              {"weights": str(d / "weights.dat"), "layer_sizes": sizes, "domain": DOMAIN,
               "pattern_file": "activation_pattern_abhinav_input_0_1.dat", "count": count, "complete": complete,
               "backend": "scip", "tol": 1e-6, "times": {"bounds": 0.1, "enumeration": 2.0, "total": 2.1},
               "stable_units": counts, "model_size": {"variables": 900, "constraints": 60, "binaries": 16},
               "stats": {}, "note": "" if complete else "time limit"})
    orig_params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:]))
    if "two_all" in files:
        P = 2 ** N
        h1, h2 = P * (N + 10), P * 11
        params = (n0 + 1) * h1 + (h1 + 1) * h2 + (h2 + 1) * 10
        _dump(d / "two_hidden_all_nodes.json",
              {"weights": str(d / "weights.dat"), "mode": "all", "pattern_file": None, "domain": DOMAIN,
               "patterns": P, "big_m": 1e6, "band_width": 1e-6, "built": False, "shared": True,
               "sizes": {"original": {"layer_sizes": sizes, "params": orig_params},
                         "naive": {"layer_sizes": [n0, h1, h2, 10], "params": params},
                         "shared": {"layer_sizes": [n0, h1 // 3, h2, 10], "params": params // 3}},
               "build_seconds": 0.0, "verification": {}})
    if "two_feasible" in files:
        P = count
        h1, h2 = P * (N + 10), P * 11
        sh1 = max(1, h1 // 4)
        _dump(d / "two_hidden_feasible_input_0_1.json",
              {"weights": str(d / "weights.dat"), "mode": "feasible",
               "pattern_file": "activation_pattern_abhinav_input_0_1.dat", "domain": DOMAIN,
               "patterns": P, "big_m": 1e6, "band_width": 1e-6, "built": True, "shared": True,
               "sizes": {"original": {"layer_sizes": sizes, "params": orig_params},
                         "naive": {"layer_sizes": [n0, h1, h2, 10],
                                   "params": (n0 + 1) * h1 + (h1 + 1) * h2 + (h2 + 1) * 10},
                         "shared": {"layer_sizes": [n0, sh1, h2, 10],
                                    "params": (n0 + 1) * sh1 + (sh1 + 1) * h2 + (h2 + 1) * 10}},
               "build_seconds": 0.3, "verification": {"max_rel_error": 1e-12, "ok": True}})
    if "compressed" in files:
        after = [c["unstable"] + c["active"] for c in counts]
        _dump(d / "compressed_input_0_1.json",
              {"weights": str(d / "weights.dat"), "domain": DOMAIN, "units_before": hidden, "units_after": after,
               "removed": {"inactive": sum(inactive), "folded_active": 0, "collapsed_layers": 0},
               "params_before": orig_params, "params_after": orig_params - 785 * sum(inactive), "tiers": [],
               "times": {}, "verification": {"points": 10000, "max_abs_error": 0.0, "max_rel_error": 0.0,
                                             "test_accuracy_original": 0.9, "test_accuracy_compressed": 0.9,
                                             "ok": True, "passed": True}})
    if "weights" in files:
        ws = [rng.normal(size=(o, i)) * np.sqrt(2.0 / i) * (1 - min(0.9, 300 * l1))
              for i, o in zip(sizes[:-1], sizes[1:])]
        bs = [0.1 * rng.normal(size=o) for o in sizes[1:]]
        save_net(ReluNet(ws, bs), d / "weights.dat")
    return d


SWEEP = [(l1, adv, p) for l1 in (0.0, 2e-4, 1e-3) for adv in ("none", "pgd") for p in (0.0, 0.3)]


def write_sweep(models_dir, start=100, hidden=(8, 8), incomplete=(101,), n0=784):
    """12 runs start..start+11 in the order l1 (outer), adv, dropout (inner)."""
    for k, (l1, adv, p) in enumerate(SWEEP):
        rid = start + k
        write_run(models_dir, rid, l1, adv, p, hidden=hidden, complete=rid not in incomplete, n0=n0)
    return [start + k for k in range(len(SWEEP))]


def write_local_counts(run_dir, n_boxes: int = 2, width: float = 0.01, seed: int = 0) -> None:
    """A real regions_sweep_*.json for the run's weights.dat: exact counts in local boxes around seeded
    uniform random points standing in for MNIST test images (used by the plot tests)."""
    from src.core.box import Box
    from src.counting.local_sweep import count_sweep

    run_dir = Path(run_dir)
    net = load_net(run_dir / "weights.dat")
    X = np.random.default_rng(seed).random((n_boxes, net.n_inputs))
    domains = [(f"test{k}", width, Box.around(x, width, f"test{k}")) for k, x in enumerate(X)]
    count_sweep(run_dir / "weights.dat", domains, net=net, progress=False, backend="lp", data_samples=200,
                mnist=False)


def write_local_table(run_dir, counts: dict, width=0.01, name: str = "regions_sweep_synthetic") -> None:
    """A regions_sweep_*.json with the given exact counts {center: count} at a width or each of a tuple of widths
    (the rows of src.counting.local_sweep.count_sweep; count None = a box not counted completely)."""
    widths = width if isinstance(width, (tuple, list)) else (width,)
    rows = [{"center": c, "width": w, "domain": f"center_{c}_width_{w:g}", "count": n,
             "complete": n is not None, "lower_bound": n, "upper_bound_log10": 3.0, "unstable": 4, "seconds": 0.1}
            for w in widths for c, n in counts.items()]
    _dump(Path(run_dir) / f"{name}.json", {"weights": str(Path(run_dir) / "weights.dat"), "rows": rows, "summary": []})


def write_segment_table(run_dir, segments: dict, seed: int = 0) -> None:
    """A segments.json with the given segments {(from, to): (regions crossed, L2 length)} (the record of
    src.sections.files.image_segments_record, without breakpoints)."""
    segs = [{"from": i, "to": j, "regions": r, "breakpoints": [], "length": length,
             "regions_per_unit_length": r / length, "unverified": 0} for (i, j), (r, length) in segments.items()]
    _dump(Path(run_dir) / "segments.json", {"weights": str(Path(run_dir) / "weights.dat"), "pairs": len(segs),
                                            "seed": seed, "tolerance": 1e-9, "seconds": 0.1, "summary": {},
                                            "segments": segs})
