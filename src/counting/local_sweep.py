"""Counts over many local boxes (widths x test images): one run per box and the sweep table."""
from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.driver import count_run
from src.io.files import file_sha256, read_json
from src.io.sweep_table import rows_csv
from src.io.sweep_table import sweep_stem as sweep_stem_of
from src.io.sweep_table import write_sweep_table


# ---- exact local counts: a sweep over boxes around test images ------------------------------------
def count_sweep(weights, domains, *, net: ReluNet, out_dir=None, save_each: bool = False,
                time_limit: float | None = None, progress: bool = True, **count_options) -> tuple[list[dict], list[Path]]:
    """Exact region counts on every local box of `domains` ([(center, width, Box)]), one row each.

    The time limit bounds the whole sweep: each count gets what is left, and domains not reached
    are listed with count None. With save_each every domain's files stay in out_dir; else only the
    sweep table `regions_sweep_<centers>_width_<widths>.{json,csv,md}` is written there.
    """


    weights = Path(weights)
    out_dir = Path(out_dir) if out_dir is not None else weights.parent
    t0 = time.perf_counter()
    rows = []
    for center, width, box in tqdm(domains, desc="local boxes", disable=not progress, file=sys.stderr):
        left = None if time_limit is None else time_limit - (time.perf_counter() - t0)
        if left is not None and left <= 0:
            rows.append({"center": center, "width": width, "domain": box.name, "count": None, "complete": False,
                         "lower_bound": None, "seconds": 0.0, "note": "not reached (time limit)"})
            continue
        with contextlib.nullcontext(out_dir) if save_each else tempfile.TemporaryDirectory() as where:
            s = count_run(weights, box, net=net, out_dir=where, time_limit=left, progress=False,
                              checkpoint_every=0, **count_options)
        rows.append({"center": center, "width": width, "domain": box.name, "count": s["count"],
                     "complete": s["complete"], "lower_bound": s["lower_bound"],
                     "upper_bound_log10": round(s["upper_bound"]["upper_bound"]["log10"], 4),
                     "unstable": sum(c["unstable"] for c in s["stable_units"]), "seconds": s["times"]["total"]})
    return rows, write_count_sweep(out_dir, weights, net, rows)


def sweep_summary(rows: list[dict]) -> list[dict]:
    """Per width: boxes, complete counts, mean / median / min / max of the complete counts, time."""
    out = []
    for w in sorted({r["width"] for r in rows}):
        rs = [r for r in rows if r["width"] == w]
        c = [r["count"] for r in rs if r["complete"]]
        out.append({"width": w, "boxes": len(rs), "complete": len(c),
                    "mean": float(np.mean(c)) if c else None, "median": float(np.median(c)) if c else None,
                    "min": min(c) if c else None, "max": max(c) if c else None,
                    "seconds": round(sum(r["seconds"] for r in rs), 3)})
    return out


def sweep_stem(domains) -> str:
    """regions_sweep_<first center>[_to_<last>]_width_<w1>_<w2>... for [(center, width, box)] or rows."""
    return sweep_stem_of("regions", domains)


def sweep_status(weights, domains, out_dir=None) -> tuple[str, Path]:
    """("complete" when the sweep table of these weights has every box counted completely, else "none", path)."""
    weights = Path(weights)
    path = (Path(out_dir) if out_dir is not None else weights.parent) / f"{sweep_stem(domains)}.json"
    if path.is_file():
        try:
            prev = read_json(path)
        except ToolError:
            return "none", path
        rows = prev.get("rows") or []
        if prev.get("weights_sha256") == file_sha256(weights) and len(rows) == len(domains) and \
                all(r.get("complete") for r in rows):
            return "complete", path
    return "none", path


def write_count_sweep(out_dir: Path, weights: Path, net: ReluNet, rows: list[dict]) -> list[Path]:
    """regions_sweep_<centers>_width_<widths>.json / .csv / .md (atomic)."""
    summary = sweep_summary(rows)
    record = {"weights": str(weights), "weights_sha256": file_sha256(weights), "layer_sizes": net.layer_sizes,
              "rows": rows, "summary": summary}
    cols = ["center", "width", "count", "complete", "lower_bound", "upper_bound_log10", "unstable", "seconds"]
    paths = write_sweep_table(out_dir, sweep_stem(rows), record, rows_csv(rows, cols), sweep_markdown(summary) + "\n")
    return [paths["json"], paths["csv"], paths["md"]]


def sweep_markdown(summary: list[dict]) -> str:
    def f(v):
        return "–" if v is None else (f"{v:g}" if isinstance(v, float) else str(v))
    lines = ["| width | boxes | complete | mean | median | min | max | seconds |", "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {f(s['width'])} | {s['boxes']} | {s['complete']} | {f(s['mean'])} | {f(s['median'])} | "
              f"{f(s['min'])} | {f(s['max'])} | {f(s['seconds'])} |" for s in summary]
    return "\n".join(lines)
