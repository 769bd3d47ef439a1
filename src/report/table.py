"""Collect run directories into rows: one per run, read only from the files in docs/formats.md.

A run directory `fcnn_run_<id>/` holds `config.json`, `metrics.json`, and per domain
`regions_<domain>.json`, `stable_units_<domain>.json`, `two_hidden_all_nodes.json` (for another
domain than input_0_1: `two_hidden_all_nodes_<domain>.json`, as the transformation names it),
`two_hidden_feasible_<domain>.json`, `compressed_<domain>.json`, and optionally the exact sections
of count_linear_regions.py --slice / --segments (`slice_I_J_K[_<domain>].json`, `segments.json`;
docs/sections.md). Settings (arch, l1, adv, dropout) come from config.json, never from the run
id. A missing or unreadable file is recorded in `RunRecord.missing` / `problems` and the run is
still collected.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.core.defaults import DEFAULT_DOMAIN
from src.core.errors import ToolError
from src.io.files import atomic_write_text
from src.io.run_dir import (CONFIG, METRICS, RUN_PREFIX, SEGMENTS, compressed_file_names, regions_file_name, run_path,
                            stable_units_file_name, two_hidden_file_names, two_hidden_tag)
from src.report.trend import l1_trend


# ---- run ids -------------------------------------------------------------------------
def parse_runs(text: str) -> list[int]:
    """'100-111' or '100,103,105-107' -> sorted unique ids."""
    if text is None or not str(text).strip():
        raise ToolError("--runs: empty; give ids like 100-111 or 100,103,105-107")
    ids: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)\s*(?:-|\.\.|:)\s*(\d+)", part)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if b < a:
                raise ToolError(f"--runs: range {part!r} ends before it starts")
            ids.update(range(a, b + 1))
        elif re.fullmatch(r"\d+", part):
            ids.add(int(part))
        else:
            raise ToolError(f"--runs: cannot read {part!r}; give ids like 100-111 or 100,103,105-107")
    return sorted(ids)



# ---- one run -------------------------------------------------------------------------

# A run whose test accuracy is below this is broken: chance on the 10 MNIST classes is 0.1, and a constant net that
# always answers the most frequent test class (1) scores 0.1135; every net of this project that trained at all
# scores above 0.7 (the demo's 0.70-0.89), so 0.2 parts collapsed nets from weak ones with room on both sides.
NEAR_CHANCE_ACCURACY = 0.2


def broken_reason(test_accuracy, stable_counts, min_accuracy: float = NEAR_CHANCE_ACCURACY) -> str | None:
    """Why a run is broken, or None: a test accuracy below `min_accuracy` (near chance), or a hidden layer whose
    every unit is stably inactive on the domain (what follows it sees a constant, so the net is constant there:
    one region, whatever its size). `stable_counts` as RunRecord.stable_counts() gives them (or None)."""
    if test_accuracy is not None and test_accuracy < min_accuracy:
        return f"test accuracy {test_accuracy:.4g}, near chance (< {min_accuracy:g})"
    for c in stable_counts or []:
        width = c["active"] + c["inactive"] + c["unstable"]
        if width and c["inactive"] == width:
            return f"layer {c['layer']}: all {width} hidden units stably inactive, the net is constant on the domain"
    return None


@dataclass
class RunRecord:
    """Everything read from one run directory (None where the file is absent)."""

    run_id: int
    path: Path
    domain: str = DEFAULT_DOMAIN
    config: dict | None = None
    metrics: dict | None = None
    regions: dict | None = None
    stable: dict | None = None
    two_hidden_all: dict | None = None
    two_hidden_feasible: dict | None = None
    compressed: dict | None = None
    slice: dict | None = None           # slice_I_J_K[_<domain>].json (optional)
    slice_name: str | None = None       # its stem, e.g. slice_0_1_2
    segments: dict | None = None        # segments.json (optional)
    local: dict | None = None           # the newest regions_sweep_*.json: exact counts on local boxes (optional)
    local_name: str | None = None       # its stem
    missing: list[str] = field(default_factory=list)    # expected files that are absent
    problems: list[str] = field(default_factory=list)   # files present but unreadable / incomplete
    min_accuracy: float = NEAR_CHANCE_ACCURACY          # the near-chance threshold of `broken`

    # convenience accessors (None when unknown) ---------------------------------------
    @property
    def l1(self):
        return _num(self.config, "l1")

    @property
    def adv(self):
        v = (self.config or {}).get("adv")
        return None if v is None else str(v)

    @property
    def dropout(self):
        return _num(self.config, "dropout")

    @property
    def arch(self):
        return (self.config or {}).get("arch")

    @property
    def seed(self):
        """The training seed of config.json (None when absent)."""
        return (self.config or {}).get("seed")

    @property
    def broken(self) -> str | None:
        """Why the run is broken (near-chance accuracy, or constant on the domain), or None: `broken_reason`."""
        return broken_reason(self.test_accuracy, self.stable_counts(), self.min_accuracy)

    @property
    def hidden_sizes(self) -> list[int] | None:
        hs = (self.config or {}).get("hidden_sizes")
        if hs is None and self.regions and self.regions.get("layer_sizes"):
            hs = self.regions["layer_sizes"][1:-1]
        return None if hs is None else [int(h) for h in hs]

    @property
    def test_accuracy(self):
        return _num(self.metrics, "test_accuracy")

    @property
    def region_count(self):
        """The count when complete; else the best certified lower bound (patterns found, or lower_bound
        with the data-certified patterns, whichever is larger)."""
        if self.regions is None:
            return None
        c = _int_or_none(self.regions.get("count"))
        lb = _int_or_none(self.regions.get("lower_bound"))
        if c is not None and lb is not None and not self.regions.get("complete"):
            return max(c, lb)
        return c

    @property
    def regions_complete(self):
        return None if self.regions is None else bool(self.regions.get("complete"))

    @property
    def regions_bounds(self) -> tuple[int, float] | None:
        """(certified lower bound, log10 of the upper bound) of the count, when regions_<domain>.json has them."""
        r = self.regions or {}
        try:
            return int(r["lower_bound"]), float(r["upper_bound"]["upper_bound"]["log10"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def regions_estimate(self) -> tuple[float, float, float | None] | None:
        """(estimate, 95 % interval low, high or None) of `--estimate N`, when regions_<domain>.json has one."""
        e = (self.regions or {}).get("estimate")
        try:
            lo, hi = e["ci95"]
            return float(e["value"]), float(lo), None if hi is None else float(hi)
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def regions_mipbound(self) -> tuple[float, float] | None:
        """(r, p) of `--mipbound`: at least 2^r regions with probability p, when regions_<domain>.json has it."""
        m = (self.regions or {}).get("mipbound")
        try:
            return float(m["log2_lower"]), float(m["probability"])
        except (KeyError, TypeError, ValueError):
            return None

    @property
    def local_widths(self) -> list[float]:
        """The box widths of the sweep, ascending."""
        rows = (self.local or {}).get("rows") or []
        return sorted({r.get("width") for r in rows
                       if isinstance(r.get("width"), (int, float)) and not isinstance(r.get("width"), bool)})

    def local_counts_by_center(self, width) -> dict:
        """{center: exact count} of the complete local boxes of that width (the key that pairs two runs' boxes)."""
        return {r.get("center"): int(r["count"]) for r in (self.local or {}).get("rows") or []
                if r.get("width") == width and r.get("complete") and isinstance(r.get("count"), int)
                and not isinstance(r.get("count"), bool) and isinstance(r.get("center"), str)}

    def _local_counts(self) -> list[int]:
        """Exact counts of the complete local boxes of the smallest width of the sweep."""
        w = self.local_width
        return [int(r["count"]) for r in (self.local or {}).get("rows") or [] if w is not None
                and r.get("width") == w and r.get("complete") and isinstance(r.get("count"), int)]

    @property
    def local_width(self):
        widths = self.local_widths
        return widths[0] if widths else None

    @property
    def local_median(self):
        """Median exact region count over the local boxes of the smallest width (None without a sweep)."""
        c = self._local_counts()
        return _median(c) if c else None

    @property
    def local_iqr(self):
        c = self._local_counts()
        return (float(np.percentile(c, 25)), float(np.percentile(c, 75))) if c else None

    @property
    def slice_regions(self):
        """Exact number of linear regions in the box on the run's slice plane (None without a slice file)."""
        return None if self.slice is None else _int_or_none(self.slice.get("regions_in_box"))

    @property
    def segment_values(self) -> list[float]:
        """Regions crossed per unit of L2 length, one value per segment of segments.json."""
        out = []
        for s in (self.segments or {}).get("segments") or []:
            try:
                v = float(s.get("regions_per_unit_length", s["regions"] / s["length"]))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                continue
            if math.isfinite(v):
                out.append(v)
        return out

    @property
    def segment_values_by_pair(self) -> dict:
        """{(from, to): regions crossed per unit of L2 length} for the segments of segments.json with their test-image
        endpoints (the key that pairs two runs' segments)."""
        out = {}
        for s in (self.segments or {}).get("segments") or []:
            try:
                key = (int(s["from"]), int(s["to"]))
                v = float(s.get("regions_per_unit_length", s["regions"] / s["length"]))
            except (KeyError, TypeError, ValueError, ZeroDivisionError):
                continue
            if math.isfinite(v):
                out[key] = v
        return out

    @property
    def segment_regions_median(self):
        """Median number of linear regions crossed per segment of segments.json."""
        vals = [s["regions"] for s in (self.segments or {}).get("segments") or [] if isinstance(s.get("regions"), int)]
        return _median(vals) if vals else None

    @property
    def segment_pairs_key(self):
        """(seed, pairs): runs whose segments.json were drawn alike are comparable."""
        s = self.segments or {}
        return (s.get("seed"), s.get("pairs"))

    @property
    def group(self) -> tuple[str, float]:
        """(adv, dropout): the series a run belongs to in the figures."""
        return (self.adv or "?", self.dropout if self.dropout is not None else float("nan"))

    def stable_counts(self) -> list[dict] | None:
        """Per hidden layer {'layer', 'active', 'inactive', 'unstable'}: stable_units json, else regions json."""
        src = None
        if self.stable and self.stable.get("counts"):
            src = self.stable["counts"]
        elif self.regions and self.regions.get("stable_units"):
            src = self.regions["stable_units"]
        if src is None:
            return None
        out = []
        for k, c in enumerate(src):
            out.append({"layer": int(c.get("layer", k + 1)), "active": int(c["active"]),
                        "inactive": int(c["inactive"]), "unstable": int(c["unstable"])})
        return out


def _num(d, key):
    if not d or d.get(key) is None:
        return None
    try:
        return float(d[key])
    except (TypeError, ValueError):
        return None


def _median(vals) -> float:

    return float(statistics.median(vals))


def _int_or_none(v):
    try:
        return None if v is None else int(v)
    except (TypeError, ValueError):
        return None


def _read_optional(path: Path, rec: RunRecord, required: bool = True):
    """The JSON at path, or None (noting it as missing / unreadable on the record)."""
    if not path.is_file():
        if required:
            rec.missing.append(path.name)
        return None
    try:
        with open(path) as fh:
            return json.load(fh)
    except (OSError, json.JSONDecodeError) as e:
        rec.problems.append(f"{path.name}: unreadable ({e.__class__.__name__}: {e})")
        return None


def load_run(path, domain: str = DEFAULT_DOMAIN, run_id: int | None = None,
             min_accuracy: float = NEAR_CHANCE_ACCURACY) -> RunRecord:
    """Read one run directory. Never raises for missing/broken files; records them instead. A run whose test
    accuracy is below `min_accuracy` is `broken` (RunRecord.broken)."""
    path = Path(path)
    if run_id is None:
        m = re.search(r"(\d+)$", path.name)
        run_id = int(m.group(1)) if m else -1
    rec = RunRecord(run_id=run_id, path=path, domain=domain, min_accuracy=_check_min_accuracy(min_accuracy))
    if not path.is_dir():
        rec.missing.append("<run directory>")
        return rec
    rec.config = _read_optional(path / CONFIG, rec)
    rec.metrics = _read_optional(path / METRICS, rec)
    if rec.metrics is not None and not rec.metrics.get("complete"):
        rec.problems.append("metrics.json: training not complete")
    rec.regions = _read_optional(path / regions_file_name(domain), rec)
    rec.stable = _read_optional(path / stable_units_file_name(domain), rec)
    rec.two_hidden_all = _read_optional(path / two_hidden_file_names(two_hidden_tag("all", domain))[1], rec)
    rec.two_hidden_feasible = _read_optional(
        path / two_hidden_file_names(two_hidden_tag("feasible", domain))[1], rec)
    rec.compressed = _read_optional(path / compressed_file_names(domain)[1], rec)
    if rec.regions is not None and not rec.regions.get("complete"):
        rec.problems.append(f"{regions_file_name(domain)}: count incomplete (lower bound)")
    rec.slice_name = _slice_file_stem(path, domain)
    if rec.slice_name is not None:
        rec.slice = _read_optional(path / f"{rec.slice_name}.json", rec, required=False)
    rec.segments = _read_optional(path / SEGMENTS, rec, required=False)
    sweeps = sorted(path.glob("regions_sweep_*.json"))
    if sweeps:
        tables = [(t, p) for p in sweeps if (t := _read_optional(p, rec, required=False)) is not None]
        if tables:
            rec.local, best = max(tables, key=lambda tp: (tp[1].stat().st_mtime, tp[1].name))   # the newest
            rec.local_name = best.stem
    return rec


def _slice_file_stem(path: Path, domain: str) -> str | None:
    """The run's slice file for the domain: slice_0_1_2 if present, else the lowest image indices."""
    suffix = "" if domain == DEFAULT_DOMAIN else "_" + re.escape(domain)
    found = []
    for p in path.glob("slice_*.json"):
        m = re.fullmatch(r"slice_(\d+)_(\d+)_(\d+)" + suffix, p.stem)
        if m:
            found.append((tuple(int(g) for g in m.groups()) != (0, 1, 2), tuple(int(g) for g in m.groups()), p.stem))
    return min(found)[2] if found else None


def _check_min_accuracy(value) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = math.nan
    if not 0 <= v <= 1:
        raise ToolError(f"--min-accuracy: {value!r}; give a test accuracy between 0 and 1 "
                        f"(default {NEAR_CHANCE_ACCURACY:g})")
    return v


def load_runs(models_dir, runs, domain: str = DEFAULT_DOMAIN,
              min_accuracy: float = NEAR_CHANCE_ACCURACY) -> list[RunRecord]:
    """RunRecords for the ids in `runs` (a list or a '100-111' string), in id order; `min_accuracy`: load_run."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise ToolError(f"--models-dir {models_dir}: not a directory")
    _check_min_accuracy(min_accuracy)
    ids = parse_runs(runs) if isinstance(runs, str) else sorted(runs)
    recs = [load_run(run_path(models_dir, i), domain, i, min_accuracy) for i in ids]
    if all("<run directory>" in r.missing for r in recs):
        raise ToolError(f"--models-dir {models_dir}: none of the runs {_ids_text(ids)} exist "
                        f"(looked for {RUN_PREFIX}<id>/)")
    return recs


def _ids_text(ids) -> str:
    ids = list(ids)
    if len(ids) > 2 and ids == list(range(ids[0], ids[-1] + 1)):
        return f"{ids[0]}-{ids[-1]}"
    return ",".join(map(str, ids))

# ---- sizes that may be astronomically large ------------------------------------------


def log10_size(value) -> float | None:
    """log10 of a size stored as an int (any size), float, numeric string, or {'log10': x}."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, dict):
        for k in ("log10", "log10_value"):
            if k in value:
                return float(value[k])
        for k in ("value", "exact", "int"):
            if k in value:
                return log10_size(value[k])
        return None
    if isinstance(value, int):
        return -math.inf if value == 0 else math.log10(value) if value > 0 else None
    if isinstance(value, float):
        return -math.inf if value == 0 else math.log10(value) if value > 0 and math.isfinite(value) else None
    if isinstance(value, str):
        s = value.strip().replace("_", "")
        if re.fullmatch(r"\d+", s):
            return log10_size(int(s))
        m = re.fullmatch(r"10\^\s*([0-9.eE+-]+)", s)
        if m:
            return float(m.group(1))
        try:
            return log10_size(float(s))
        except ValueError:
            return None
    return None


def size_log10(d: dict | None, key: str) -> float | None:
    """log10 of d[key]; falls back to sibling keys '<key>_log10' / 'log10_<key>'."""
    if not d:
        return None
    for k in (f"{key}_log10", f"log10_{key}"):
        if d.get(k) is not None:
            return float(d[k])
    if key in d:
        return log10_size(d[key])
    if isinstance(d.get("log10"), dict) and key in d["log10"]:
        return float(d["log10"][key])
    return None


def two_hidden_sizes(th: dict | None, which: str) -> dict | None:
    """{'hidden_log10': log10(H1+H2), 'params_log10': …, 'H1': int|None, 'H2': …, 'params': int|None}
    for sizes[which] of a two_hidden json (which = original / naive / shared)."""
    if not th or not isinstance(th.get("sizes"), dict) or not isinstance(th["sizes"].get(which), dict):
        return None
    s = th["sizes"][which]
    out = {"params_log10": size_log10(s, "params"), "params": _exact_int(s.get("params")),
           "hidden_log10": None, "H1": None, "H2": None}
    ls = s.get("layer_sizes")
    if isinstance(ls, list) and len(ls) >= 3:
        hidden = ls[1:-1]
        ints = [_exact_int(h) for h in hidden]
        if all(v is not None for v in ints):
            tot = sum(ints)
            out["hidden_log10"] = log10_size(tot)
            if len(ints) == 2:
                out["H1"], out["H2"] = ints
        else:
            logs = [log10_size(h) for h in hidden]
            if all(v is not None for v in logs):
                out["hidden_log10"] = _log10_sum(logs)
    if out["hidden_log10"] is None:
        lh = size_log10(s, "hidden_units") if ("hidden_units" in s or "hidden_units_log10" in s) else None
        if lh is None and isinstance(s.get("layer_sizes_log10"), list):
            lh = _log10_sum(s["layer_sizes_log10"][1:-1])
        out["hidden_log10"] = lh
    return out


def _exact_int(v):
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, str) and re.fullmatch(r"\s*\d+\s*", v):
        return int(v)
    if isinstance(v, float) and v.is_integer() and abs(v) < 2 ** 53:
        return int(v)
    return None


def _log10_sum(logs) -> float:
    m = max(logs)
    if m == -math.inf:
        return -math.inf
    return m + math.log10(sum(10 ** (x - m) for x in logs))


def fmt_size(log10v: float | None, exact: int | None = None) -> str:
    """Exact integer when small enough to read, else '10^x'."""
    if exact is not None and exact < 10 ** 9:
        return str(exact)
    if log10v is None:
        return ""
    if log10v == -math.inf:
        return "0"
    if log10v < 9:
        return str(round(10 ** log10v))
    return f"10^{log10v:.1f}"


# ---- rows ----------------------------------------------------------------------------
COLUMNS = [
    "run", "arch", "hidden_sizes", "l1", "adv", "dropout", "epochs", "test_accuracy", "broken",
    "stable_active", "stable_inactive", "unstable", "stable_total",
    "regions", "regions_complete", "regions_backend", "regions_seconds", "regions_lower", "regions_upper_log10",
    "regions_estimate", "regions_estimate_ci95", "regions_mipbound",
    "local_boxes", "local_width", "local_median", "local_iqr",
    "slice_images", "slice_regions_in_box", "slice_regions_in_view",
    "segments", "segment_regions_median", "segment_regions_per_length_median",
    "feasible_patterns", "two_hidden_all_params_log10", "two_hidden_feasible_naive_params",
    "two_hidden_feasible_shared_params", "two_hidden_feasible_shared_layers", "two_hidden_verified",
    "compressed_units_before", "compressed_units_after", "compressed_params_before",
    "compressed_params_after", "compression_ratio", "compression_verified",
    "missing",
]


def _round_sig(v: float, digits: int = 4):
    """v to `digits` significant digits: an int below 10^9, else '10^x'."""
    if v >= 1e9:
        return fmt_size(math.log10(v))
    return int(float(f"{v:.{digits}g}")) if v >= 10 ** (digits - 1) else float(f"{v:.{digits}g}")


def _per_layer(vals) -> str:
    """Per-layer values written like hidden sizes: '5-0-2'."""
    return "-".join(str(v) for v in vals)


def _verification_ok(ver) -> str:
    """'yes' / 'no' / '' from a verification record: its "ok" (files of earlier versions: "passed")."""
    if not isinstance(ver, dict) or not ver:
        return ""
    for k in ("ok", "passed"):
        if isinstance(ver.get(k), bool):
            return "yes" if ver[k] else "no"
    return "?"


def record_row(rec: RunRecord) -> dict:
    """One table row (plain str/int/float values; '' where unknown)."""
    cfg = rec.config or {}
    row = {c: "" for c in COLUMNS}
    row["run"] = rec.run_id
    row["arch"] = cfg.get("arch", "")
    hs = rec.hidden_sizes
    row["hidden_sizes"] = "-".join(map(str, hs)) if hs else ""
    for k in ("l1", "dropout"):
        v = getattr(rec, k)
        row[k] = "" if v is None else v
    row["adv"] = rec.adv or ""
    row["epochs"] = cfg.get("epochs", "")
    acc = rec.test_accuracy
    row["test_accuracy"] = "" if acc is None else round(acc, 4)
    row["broken"] = rec.broken or ""
    sc = rec.stable_counts()
    if sc:
        row["stable_active"] = _per_layer(c["active"] for c in sc)
        row["stable_inactive"] = _per_layer(c["inactive"] for c in sc)
        row["unstable"] = _per_layer(c["unstable"] for c in sc)
        row["stable_total"] = sum(c["active"] + c["inactive"] for c in sc)
    if rec.regions is not None:
        row["regions"] = "" if rec.region_count is None else rec.region_count
        row["regions_complete"] = "yes" if rec.regions_complete else "no"
        row["regions_backend"] = rec.regions.get("backend", "")
        t = (rec.regions.get("times") or {}).get("total")
        row["regions_seconds"] = "" if t is None else round(float(t), 2)
        b = rec.regions_bounds
        if b is not None:
            row["regions_lower"], row["regions_upper_log10"] = b[0], round(b[1], 2)
        e = rec.regions_estimate
        if e is not None:
            row["regions_estimate"] = _round_sig(e[0])
            row["regions_estimate_ci95"] = f"{_round_sig(e[1])}-{'?' if e[2] is None else _round_sig(e[2])}"
        m = rec.regions_mipbound
        if m is not None:
            row["regions_mipbound"] = f">= 2^{m[0]:g} (p {m[1]:g})"
    if rec.local is not None:
        row["local_boxes"] = len(rec.local.get("rows") or [])
        row["local_width"] = "" if rec.local_width is None else rec.local_width
        med, iqr = rec.local_median, rec.local_iqr
        row["local_median"] = "" if med is None else med
        row["local_iqr"] = "" if iqr is None else f"{iqr[0]:g}-{iqr[1]:g}"
    if rec.slice is not None:
        row["slice_images"] = ",".join(rec.slice_name.split("_")[1:4])
        row["slice_regions_in_box"] = "" if rec.slice_regions is None else rec.slice_regions
        v = _int_or_none(rec.slice.get("regions_in_view"))
        row["slice_regions_in_view"] = "" if v is None else v
    if rec.segments is not None:
        row["segments"] = len((rec.segments.get("segments") or []))
        med = rec.segment_regions_median
        row["segment_regions_median"] = "" if med is None else med
        vals = rec.segment_values
        if vals:
            row["segment_regions_per_length_median"] = round(_median(vals), 4)
    th_all, th_f = rec.two_hidden_all, rec.two_hidden_feasible
    if th_all:
        s = two_hidden_sizes(th_all, "naive") or two_hidden_sizes(th_all, "shared")
        if s and s["params_log10"] is not None:
            row["two_hidden_all_params_log10"] = round(s["params_log10"], 2)
    if th_f:
        row["feasible_patterns"] = th_f.get("patterns", "")
        for which in ("naive", "shared"):
            s = two_hidden_sizes(th_f, which)
            if s:
                row[f"two_hidden_feasible_{which}_params"] = (s["params"] if s["params"] is not None else
                                                             "" if s["params_log10"] is None
                                                             else f"10^{s['params_log10']:.3f}")
                if which == "shared" and s["H1"] is not None:
                    row["two_hidden_feasible_shared_layers"] = f"{s['H1']}-{s['H2']}"
        row["two_hidden_verified"] = _verification_ok(th_f.get("verification"))
    cp = rec.compressed
    if cp:
        ub, ua = cp.get("units_before"), cp.get("units_after")
        row["compressed_units_before"] = _per_layer(ub) if isinstance(ub, list) else ""
        row["compressed_units_after"] = _per_layer(ua) if isinstance(ua, list) else ""
        pb, pa = _int_or_none(cp.get("params_before")), _int_or_none(cp.get("params_after"))
        row["compressed_params_before"] = "" if pb is None else pb
        row["compressed_params_after"] = "" if pa is None else pa
        if pb and pa is not None:
            row["compression_ratio"] = round(pa / pb, 4)
        row["compression_verified"] = _verification_ok(cp.get("verification"))
    notes = (["missing: " + ", ".join(rec.missing)] if rec.missing else []) + list(rec.problems)
    row["missing"] = "; ".join(notes)
    return row


def collect_rows(records) -> list[dict]:
    return [record_row(r) for r in records]


def rows_to_csv(rows, columns=COLUMNS) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in columns})
    return buf.getvalue()


# shorter headers for the Markdown table
MD_HEADERS = {
    "run": "run", "arch": "arch", "hidden_sizes": "hidden", "l1": "l1", "adv": "adv", "dropout": "dropout",
    "epochs": "epochs", "test_accuracy": "test acc", "broken": "broken", "stable_active": "stable active",
    "stable_inactive": "stable inactive", "unstable": "unstable", "stable_total": "stable total",
    "regions": "regions", "regions_complete": "complete", "regions_backend": "backend",
    "regions_seconds": "count s", "regions_lower": "lower bound", "regions_upper_log10": "log10 upper bound",
    "regions_estimate": "estimate", "regions_estimate_ci95": "estimate 95% CI", "regions_mipbound": "MIPBound",
    "slice_images": "slice images", "slice_regions_in_box": "slice regions (box)",
    "slice_regions_in_view": "slice regions (view)", "segments": "segments",
    "segment_regions_median": "regions / segment (median)",
    "segment_regions_per_length_median": "regions / L2 length (median)",
    "feasible_patterns": "patterns used",
    "two_hidden_all_params_log10": "log10 params (all 2^N)",
    "two_hidden_feasible_naive_params": "params feasible naive",
    "two_hidden_feasible_shared_params": "params feasible shared",
    "two_hidden_feasible_shared_layers": "H1-H2 shared", "two_hidden_verified": "2-layer verified",
    "compressed_units_before": "units", "compressed_units_after": "units compressed",
    "compressed_params_before": "params", "compressed_params_after": "params compressed",
    "compression_ratio": "params ratio", "compression_verified": "compress verified",
    "missing": "missing / notes",
}


def rows_to_markdown(rows, columns=COLUMNS) -> str:
    def cell(v):
        if isinstance(v, int) and not isinstance(v, bool) and v >= 10 ** 9:
            v = fmt_size(log10_size(v))
        s = "" if v is None else str(v)
        return s.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(MD_HEADERS.get(c, c) for c in columns) + " |",
             "|" + "|".join("---" for _ in columns) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(cell(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def missing_report(records) -> list[str]:
    """One line per run with absent or unreadable files."""
    out = []
    for r in records:
        notes = (["missing " + ", ".join(r.missing)] if r.missing else []) + r.problems
        if notes:
            out.append(f"run {r.run_id} ({r.path}): " + "; ".join(notes))
    return out

# ---- driver --------------------------------------------------------------------------


def collect_results(models_dir, runs, out_dir, domain: str = DEFAULT_DOMAIN, stem: str = "results",
                    quiet: bool = False, min_accuracy: float = NEAR_CHANCE_ACCURACY) -> dict:
    """Write <out_dir>/<stem>.csv and .md; return {'rows', 'csv', 'md', 'records', 'trend'}. Runs below
    `min_accuracy` or constant on the domain are named in the `broken` column and left out of the verdict."""
    records = load_runs(models_dir, runs, domain, min_accuracy)
    rows = collect_rows(records)
    out_dir = Path(out_dir)
    csv_path, md_path = out_dir / f"{stem}.csv", out_dir / f"{stem}.md"
    trend = l1_trend(records)
    atomic_write_text(csv_path, rows_to_csv(rows))
    md = (f"# Results: {Path(models_dir)} runs {_ids_text(r.run_id for r in records)} (domain {domain})\n\n"
          + rows_to_markdown(rows) + "\n" + trend.summary() + "\n")
    atomic_write_text(md_path, md)
    return {"rows": rows, "csv": csv_path, "md": md_path, "records": records, "trend": trend}
