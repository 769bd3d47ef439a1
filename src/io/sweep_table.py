"""Sweep tables: one row per local box (center x width) of a count or compression sweep, as JSON, CSV and Markdown.

`<kind>_sweep_<first center>[_to_<last>]_width_<w1>_<w2>...` names the three files (kind: regions or
compress); the JSON holds the step's metadata and the rows, the CSV the rows, the Markdown a table the
step composes. All three are written atomically.
"""
from __future__ import annotations

import csv
import io
from pathlib import Path

from src.io.files import atomic_write_json, atomic_write_text


def sweep_stem(kind: str, pairs) -> str:
    """The file stem of a sweep over (center, width) pairs (or rows / domains holding them)."""
    pairs = [(d["center"], d["width"]) if isinstance(d, dict) else (d[0], d[1]) for d in pairs]
    centers = sorted({c for c, _ in pairs}, key=lambda s: (len(s), s))
    label = centers[0] if len(centers) == 1 else f"{centers[0]}_to_{centers[-1]}"
    return f"{kind}_sweep_{label}_width_{'_'.join(f'{w:g}' for w in sorted({w for _, w in pairs}))}"


def rows_csv(rows: list[dict], columns=None) -> str:
    """The rows as CSV (columns: the given ones, default the first row's keys; None as an empty cell)."""
    cols = list(columns) if columns is not None else list(rows[0].keys()) if rows else []
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n", extrasaction="ignore")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def write_sweep_table(out_dir, stem: str, record: dict, csv_text: str, markdown: str) -> dict[str, Path]:
    """Write <stem>.json (record), <stem>.csv and <stem>.md into out_dir; returns {"json", "csv", "md"} paths."""
    out_dir = Path(out_dir)
    paths = {"json": out_dir / f"{stem}.json", "csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md"}
    atomic_write_json(paths["json"], record)
    atomic_write_text(paths["csv"], csv_text)
    atomic_write_text(paths["md"], markdown)
    return paths
