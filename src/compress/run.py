"""The compression step (compress_network.py): stable units, compression, verification, files.

For one domain or a sweep of local domains: the stable units (a current stable_units_<domain>.json
through src.stability.files.reusable_stability, else src.stability.analyse.analyse_stability), the
compression (src.compress.lossless.compress, whose docstring has the math), the verification
against the original (`verify`, the rule of src.core.compare), and the JSON/CSV/Markdown output.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from src.compress.lossless import DEFAULT_RANK_TOL, Compression, compress
from src.core.box import Box
from src.core.compare import RULE, compare_nets
from src.core.defaults import DEFAULT_POINTS, DEFAULT_RTOL, DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.io.domains import DomainSpec, domains_for
from src.io.files import atomic_write_json, file_sha256
from src.io.mnist import load_mnist_arrays
from src.io.readers import load_net
from src.io.run_dir import compressed_file_names
from src.io.sweep_table import rows_csv, sweep_stem, write_sweep_table
from src.io.weights_file import save_net
from src.stability.analyse import analyse_stability
from src.stability.files import reusable_stability, write_stability_files


class VerificationError(Exception):
    """The compressed net differs from the original on the domain (a bug, not a user error)."""


def verify(original: ReluNet, compressed: ReluNet, box: Box, points: int = DEFAULT_POINTS, seed: int = 0,
           rtol: float = DEFAULT_RTOL, test_set=None) -> dict:
    """Compare outputs on `points` uniform samples of the box (plus its two corners) and on the
    test set (x, y) when given, by the one rule of src.core.compare (no band: every point is held to it).
    `passed` (= `ok`) iff every point agrees and the test accuracies are identical.

    The record: the point sets' `compare_nets` records under "uniform" and "test_set", and the summary
    keys of docs/formats.md (points, max_abs_error, max_rel_error over both sets; test_*)."""
    rng = np.random.default_rng(seed)
    x = np.vstack([box.sample(points, rng), box.lo[None], box.hi[None]]) if points > 0 else np.zeros((0, box.n))
    res = {"points": int(len(x)), "seed": int(seed), "rtol": rtol, "band_width": 0.0, "criterion": RULE}
    failures = []
    res["uniform"] = u = compare_nets(original, compressed, x, rtol=rtol)
    max_abs, max_rel = u["max_abs_error"], u["max_rel_error"]
    if not u["ok"]:
        failures.append(f"max relative error {max_rel:.3g} > {rtol:g} on {len(x)} points of the domain")
    if test_set is not None:
        xt, yt = test_set
        res["test_set"] = t = compare_nets(original, compressed, np.asarray(xt, dtype=np.float64), rtol=rtol,
                                           labels=yt)
        acc_o, acc_c = t["accuracy_a"], t["accuracy_b"]
        res.update(test_points=t["points"], test_max_abs_error=t["max_abs_error"],
                   test_max_rel_error=t["max_rel_error"], test_accuracy_original=acc_o,
                   test_accuracy_compressed=acc_c, test_predictions_differ=t["argmax_differ"])
        max_abs, max_rel = max(max_abs, t["max_abs_error"]), max(max_rel, t["max_rel_error"])
        if not t["ok"]:
            failures.append(f"max relative error {t['max_rel_error']:.3g} > {rtol:g} on the {t['points']} test images")
        if acc_o != acc_c:
            failures.append(f"test accuracy {acc_c:.4f} differs from the original's {acc_o:.4f}")
    res["max_abs_error"] = max_abs
    res["max_rel_error"] = max_rel
    res["ok"] = res["passed"] = not failures      # "ok": the key of every verification record (transform too)
    if failures:
        res["failures"] = failures
    return res

# ---- one domain --------------------------------------------------------------------------


def stability_on(net: ReluNet, box: Box, tol: float = DEFAULT_TOL, exact: bool = True, progress=None,
                 time_limit: float | None = None):
    """Stable units on the box: src.stability.analyse.analyse_stability (interval -> LP -> MILP when exact)."""

    return analyse_stability(net, box, tol=tol, exact=exact, progress=progress, time_limit=time_limit,
                             stability_only=True)   # only the stable sets matter here


def compression_json(comp: Compression, stability, box: Box, weights_path, times: dict,
                     verification: dict | None) -> dict:
    """The `compressed_<domain>.json` record (docs/formats.md) plus per-layer detail."""
    return {
        "weights": str(weights_path), "weights_sha256": file_sha256(weights_path) if Path(weights_path).is_file() else None,
        "domain": box.to_json(),
        "layer_sizes_before": [comp.net.n_inputs] + comp.units_before + [comp.net.n_outputs],
        "layer_sizes_after": comp.net.layer_sizes,
        "units_before": comp.units_before, "units_after": comp.units_after,
        "removed": comp.removed, "collapsed_layers": comp.collapsed, "affine": comp.is_affine,
        "params_before": comp.params_before, "params_after": comp.params_after,
        "tol": float(stability.tol), "exact": bool(getattr(stability, "exact", False)),
        "tiers": list(getattr(stability, "tiers", []) or []),
        "per_layer": comp.per_layer, "times": times, "verification": verification,
    }


def test_set_for(box: Box, data_root=None):
    """The MNIST test set when the box is 784-dimensional and contains every test image, else None."""
    if box.n != 784:
        return None

    x, y = load_mnist_arrays("test", root=data_root)
    if not box.contains(x).all():
        return None
    return x, y


def compress_on_domain(net: ReluNet, box: Box, *, tol: float = DEFAULT_TOL, exact: bool = True,
                       rank_tol: float = DEFAULT_RANK_TOL, verify_points: int = DEFAULT_POINTS,
                       rtol: float = DEFAULT_RTOL, do_verify: bool = True, test_set=None,
                       seed: int = 0, time_limit: float | None = None, progress=None, stability=None):
    """Stability -> compression -> verification on one box. Returns (stability, Compression, times,
    verification or None); raises VerificationError when the compressed net differs. A given `stability`
    (sound for the box, e.g. src.stability.files.reusable_stability) is used instead of computing it."""
    t0 = time.perf_counter()
    st = stability if stability is not None else stability_on(net, box, tol=tol, exact=exact, progress=progress,
                                                              time_limit=time_limit)
    t1 = time.perf_counter()
    comp = compress(net, st, rank_tol=rank_tol)
    t2 = time.perf_counter()
    ver = None
    if do_verify:
        ver = verify(net, comp.net, box, points=verify_points, seed=seed, rtol=rtol, test_set=test_set)
    t3 = time.perf_counter()
    times = {"stability": t1 - t0, "compression": t2 - t1, "verification": t3 - t2, "total": t3 - t0}
    if ver is not None and not ver["passed"]:
        raise VerificationError(f"domain {box.name}: compressed net differs from the original: "
                                + "; ".join(ver["failures"]))
    return st, comp, times, ver

# ---- sweep over local boxes ----------------------------------------------------------------


def sweep_row(center: str, width: float, box: Box, st, comp: Compression, times: dict, ver) -> dict:
    """One table row: units left per layer, layers collapsed, parameters, time."""
    row = {"center": center, "width": width, "domain": box.name}
    for l, n in enumerate(comp.units_after, 1):
        row[f"units_L{l}"] = n
    row.update(exact=bool(st.exact), units_left=sum(comp.units_after), layers_collapsed=len(comp.collapsed), affine=comp.is_affine,
               inactive=comp.removed["inactive"], folded_active=comp.removed["folded_active"],
               merged_active=comp.removed["merged_active"], params_before=comp.params_before,
               params_after=comp.params_after, seconds=round(times["total"], 4),
               max_rel_error=None if ver is None else ver["max_rel_error"])
    return row


def sweep_tables(rows: list[dict], units_before: list[int]) -> tuple[str, str]:
    """(CSV text, Markdown text) of the sweep rows, Markdown with a per-width summary."""
    md = ["| center | width | units left per layer (of " + "-".join(map(str, units_before))
          + ") | layers collapsed | params after | params before | exact | seconds |",
          "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        units = "-".join(str(r[f"units_L{l}"]) for l in range(1, len(units_before) + 1))
        md.append(f"| {r['center']} | {r['width']:g} | {units} | {r['layers_collapsed']}"
                  f"{' (affine)' if r['affine'] else ''} | {r['params_after']} | {r['params_before']} | "
                  f"{'yes' if r['exact'] else 'no'} | {r['seconds']:.3g} |")
    md += ["", "exact = no: the stability analysis stopped early (--time-limit); undecided units stay ReLUs.",
           "", "Mean per width:", "", "| width | images | mean units left per layer | mean layers collapsed "
           "| affine | mean params after |", "|---|---|---|---|---|---|"]
    for width in sorted({r["width"] for r in rows}):
        rs = [r for r in rows if r["width"] == width]
        units = "-".join(f"{np.mean([r[f'units_L{l}'] for r in rs]):.1f}" for l in range(1, len(units_before) + 1))
        md.append(f"| {width:g} | {len(rs)} | {units} | {np.mean([r['layers_collapsed'] for r in rs]):.2f} "
                  f"| {sum(r['affine'] for r in rs)}/{len(rs)} | {np.mean([r['params_after'] for r in rs]):.0f} |")
    return rows_csv(rows), "\n".join(md) + "\n"


def write_sweep(out_dir, stem: str, rows: list[dict], units_before: list[int], meta: dict) -> list[Path]:
    """Write <stem>.csv, <stem>.md and <stem>.json into out_dir (src.io.sweep_table); returns the paths."""
    csv_text, md_text = sweep_tables(rows, units_before)
    paths = write_sweep_table(out_dir, stem, {**meta, "rows": rows}, csv_text, md_text)
    return [paths["csv"], paths["md"], paths["json"]]


@dataclass
class CompressReport:
    """What `compress_run` did. One domain: box, stability, compression, times, verification and the
    compressed net's file; a sweep: its table rows. `files`: every file written; `lines`: the summary the
    script prints (unless -q); `error`: why it failed (verification), with exit_code 1."""

    exit_code: int = 0
    error: str | None = None
    box: Box | None = None
    stability: object = None
    compression: Compression | None = None
    times: dict | None = None
    verification: dict | None = None
    dat_path: Path | None = None
    rows: list[dict] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _summary(box: Box, comp: Compression, st, times: dict, ver) -> str:
    tiers = ", ".join(f"{t['tier']} {t['settled']} in {t['seconds']:.2f}s" for t in (st.tiers or []))
    lines = [f"domain {box.name}: units per layer {'-'.join(map(str, comp.units_before))} -> "
             f"{'-'.join(map(str, comp.units_after))}"
             + (" (affine)" if comp.is_affine else ""),
             f"  removed: {comp.removed}",
             f"  params {comp.params_before} -> {comp.params_after}; layers {comp.net.layer_sizes}",
             f"  stability tiers: {tiers or 'n/a'}; total {times['total']:.2f}s"]
    if not st.exact and any(t["tier"] == "milp" for t in st.tiers):
        lines.append("  note: some units stayed undecided (time limit or solver margin); they are kept as ReLUs")
    if ver is not None:
        s = f"  verified on {ver['points']} points: max rel error {ver['max_rel_error']:.3g}"
        if "test_accuracy_original" in ver:
            s += (f"; test accuracy {ver['test_accuracy_original']:.4f} (original) = "
                  f"{ver['test_accuracy_compressed']:.4f} (compressed)")
        lines.append(s)
    return "\n".join(lines)


def compress_run(weights, *, domain: DomainSpec | Box | None = None, output=None, out_dir=None,
                 save_each: bool = False, stability_files: bool = True, tol: float = DEFAULT_TOL, exact: bool = True,
                 time_limit: float | None = None, rank_tol: float = DEFAULT_RANK_TOL, verify: bool = True,
                 verify_points: int = DEFAULT_POINTS, rtol: float = DEFAULT_RTOL, seed: int = 0, data_root=None,
                 progress: bool = True) -> CompressReport:
    """The compression step (compress_network.py) on the net in `weights`.

    domain: a DomainSpec (default [0,1]^n0; a width list or a test-image range A:B is a sweep) or a Box.
    One domain: compressed_<domain>.dat / .json in out_dir (default: beside the weights) or at `output`,
    plus stable_units_<domain>.json / inactive_<domain>.dat unless stability_files=False. A sweep: the
    table compress_sweep_<centers>_width_<widths>.csv/.md/.json (save_each: each domain's files too).
    A verification failure returns exit_code 1 and writes nothing more; bad input raises ToolError.
    """


    for name, v in (("tol", tol), ("rank_tol", rank_tol), ("rtol", rtol)):
        if not (np.isfinite(v) and v >= 0):
            raise ToolError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v:g}")
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise ToolError(f"--time-limit must be > 0 seconds, got {time_limit:g}")
    if verify_points < 0:
        raise ToolError(f"--verify-points must be >= 0, got {verify_points}")
    weights_path = Path(weights)
    net = load_net(weights_path)
    if net.n_hidden_layers == 0:
        raise ToolError(f"{weights_path}: the net has no hidden layer, nothing to compress")
    domains, sweep = domains_for(domain, net.n_inputs, data_root)
    out_dir = Path(out_dir) if out_dir else weights_path.parent
    if sweep and output:
        raise ToolError("-o/--output names one compressed net; a sweep writes a table (use --out-dir)")
    opts = dict(tol=tol, exact=exact, rank_tol=rank_tol, verify_points=verify_points,
                rtol=rtol, do_verify=verify, seed=seed, time_limit=time_limit)
    test_cache = {}
    report = CompressReport()
    sha = file_sha256(weights_path)
    reused: dict[str, Path] = {}      # domain name -> the stable_units file whose stable units were used

    def test_set(box):
        if not verify:
            return None
        if "t" not in test_cache and box.n == 784:
            test_cache["t"] = test_set_for(Box.uniform(784), data_root)
        t = test_cache.get("t")
        return t if t is not None and box.contains(t[0]).all() else None

    def stored(box, where):
        """The stable units of an earlier step in `where` (stable_units_<domain>.json), when reusable."""
        found = reusable_stability(where, box, weights_path, net.hidden_sizes, tol, exact, sha)
        if found is not None:
            reused[box.name] = found[1]
        return None if found is None else found[0]

    def save(box, st, comp, times, ver, output=None):
        dat = Path(output) if output else out_dir / compressed_file_names(box.name)[0]
        acc = None if ver is None else ver.get("test_accuracy_compressed")
        save_net(comp.net, dat, model_path=str(weights_path), accuracy=acc)
        record = compression_json(comp, st, box, weights_path, times, ver)
        if box.name in reused:
            record["stability_file"] = str(reused[box.name])
        atomic_write_json(dat.with_suffix(".json"), record)
        report.files += [dat, dat.with_suffix(".json")]
        if stability_files and box.name not in reused:
            report.files += list(write_stability_files(out_dir if not output else dat.parent, st, box,
                                                       weights_path, sha))
        return dat

    if not sweep:
        _, _, box = domains[0]
        try:
            st, comp, times, ver = compress_on_domain(net, box, test_set=test_set(box), progress=progress,
                                                      stability=stored(box, Path(output).parent if output
                                                                       else out_dir), **opts)
        except VerificationError as e:
            return CompressReport(1, f"verification failed: {e}", box)
        dat = save(box, st, comp, times, ver, output)
        report.box, report.stability, report.compression, report.times, report.verification = box, st, comp, times, ver
        report.dat_path = dat
        report.lines = [_summary(box, comp, st, times, ver), f"wrote {dat} and {dat.with_suffix('.json')}"]
        if box.name in reused:
            report.lines.insert(1, f"  stable units read from {reused[box.name]} (same weights, domain and tol)")
        return report

    rows = []
    for name, width, box in tqdm(domains, desc="domains", disable=not progress, file=sys.stderr):
        try:
            st, comp, times, ver = compress_on_domain(net, box, test_set=test_set(box), stability=stored(box, out_dir),
                                                      **opts)
        except VerificationError as e:
            return CompressReport(1, f"verification failed: {e}", box)
        if save_each:
            save(box, st, comp, times, ver)
        rows.append(sweep_row(name, width, box, st, comp, times, ver))
    stem = sweep_stem("compress", domains)
    meta = {"weights": str(weights_path), "layer_sizes": net.layer_sizes, "tol": tol,
            "exact": exact, "verified": verify,
            "verify_points": verify_points if verify else 0}
    paths = write_sweep(out_dir, stem, rows, net.hidden_sizes, meta)
    report.rows = rows
    report.files += paths
    report.lines = [sweep_tables(rows, net.hidden_sizes)[1], "wrote " + ", ".join(map(str, paths))]
    return report
