"""Lossless compression of a ReLU net on a domain, given which hidden units are stable there.

Math (pure numpy, `compress`): for hidden layer l, processed first to last on the partly
compressed net (W_l has one row per original unit of layer l, W_{l+1} one column per unit):

* stably inactive unit j (g_j <= 0 on the domain, so h_j = 0): delete row j of (W_l, b_l) and
  column j of W_{l+1};
* layer with no unstable unit left (every remaining unit active, h = g): the layer is affine,
  merge it into the next one: W_{l+1} <- W_{l+1}[:, A] W_l[A], b_{l+1} <- W_{l+1}[:, A] b_l[A] + b_{l+1}
  (A = active units; this is W_{l+1} diag(s) W_l with s the 0/1 stable pattern);
* otherwise, the stably active units S: pick a basis B of the row space of W_l[S] by QR with
  column pivoting (rank tolerance `rank_tol`, relative to the largest pivot); each other
  j in S \\ B has w_j = alpha_j^T W_B, hence h_j = alpha_j^T h_B + (b_j - alpha_j^T b_B) because
  every unit of S is active (h = g) on the whole domain; fold it into the next layer
  (W_{l+1}[:, B] += W_{l+1}[:, j] alpha_j^T, b_{l+1} += W_{l+1}[:, j] (b_j - alpha_j^T b_B)) and delete it.

Merging or folding never changes the pre-activation of any remaining unit as a function of
the input on the domain, so the Stability computed on the original net stays valid for every
later layer. When every hidden layer is merged away the result is one affine map.

The rest of the module runs the whole step for one domain or a sweep of local domains:
stability (src.bounds.analyse_stability), compression, verification, JSON/CSV/Markdown output.
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.linalg

from .verification import relative_errors
from .domain import DomainSpec, domains_for, domains_from_args, parse_index_spec, parse_widths  # noqa: F401  (their home is src/domain.py)
from .bounds import reusable_stability, write_stability_files
from .geometry import advance
from .layout import compressed_file_names
from .domain import Box, parse_width
from .ioutils import ToolError, atomic_write_json, atomic_write_text, file_sha256
from .network import ReluNet

DEFAULT_RANK_TOL = 1e-9
DEFAULT_RTOL = 1e-9
DEFAULT_POINTS = 10_000


class VerificationError(Exception):
    """The compressed net differs from the original on the domain (a bug, not a user error)."""


# ---- pure math ---------------------------------------------------------------------------
def active_basis(rows: np.ndarray, rank_tol: float = DEFAULT_RANK_TOL):
    """Split the rows of `rows` (k x d) into a basis B of their span and the rest F.

    Returns (B, F, alpha): index arrays into the rows (B ascending) and alpha (|F| x |B|) with
    rows[F] ~= alpha @ rows[B]. B comes from QR with column pivoting of rows^T; a pivot counts
    when |R_ii| > rank_tol * |R_00|. A row whose residual ||rows[j] - alpha_j rows[B]|| exceeds
    rank_tol * |R_00| is moved into B (never folded), so every fold is exact to that tolerance.
    """
    rows = np.asarray(rows, dtype=np.float64)
    k = rows.shape[0]
    if k == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros((0, 0))
    norms = np.linalg.norm(rows, axis=1)
    scale = float(norms.max())
    if scale == 0.0:  # every row is zero: h_j = b_j is a constant, fold all
        return np.zeros(0, int), np.arange(k), np.zeros((k, 0))
    if rows.shape[1] == 0:
        return np.zeros(0, int), np.arange(k), np.zeros((k, 0))
    _, r, piv = scipy.linalg.qr(rows.T, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    rank = int(np.sum(diag > rank_tol * diag[0]))
    basis = set(piv[:rank].tolist())
    while True:
        B = np.array(sorted(basis), dtype=int)
        F = np.array([j for j in range(k) if j not in basis], dtype=int)
        if F.size == 0:
            return B, F, np.zeros((0, B.size))
        if B.size == 0:
            alpha = np.zeros((F.size, 0))
            resid = norms[F]
        else:
            sol, *_ = np.linalg.lstsq(rows[B].T, rows[F].T, rcond=None)
            alpha = sol.T
            resid = np.linalg.norm(rows[F] - alpha @ rows[B], axis=1)
        bad = resid > rank_tol * scale
        if not bad.any():
            return B, F, alpha
        basis.update(F[bad].tolist())


@dataclass
class Compression:
    """A compressed net and what was removed, per original hidden layer (1-based in JSON)."""

    net: ReluNet
    units_before: list[int]
    units_after: list[int]              # units left per original hidden layer (0 when collapsed)
    kept: list[np.ndarray]              # original indices of the units left, per hidden layer
    collapsed: list[int]                # 1-based original layers merged into their successor
    per_layer: list[dict] = field(default_factory=list)  # inactive/folded_active/merged_active/unstable
    params_before: int = 0

    @property
    def params_after(self) -> int:
        return self.net.n_params

    @property
    def removed(self) -> dict:
        return {"inactive": sum(d["inactive"] for d in self.per_layer),
                "folded_active": sum(d["folded_active"] for d in self.per_layer),
                "merged_active": sum(d["merged_active"] for d in self.per_layer),
                "collapsed_layers": len(self.collapsed)}

    @property
    def is_affine(self) -> bool:
        return self.net.n_hidden_layers == 0


def _masks(stability, net: ReluNet):
    act, inact = stability.active, stability.inactive
    if len(act) != net.n_hidden_layers:
        raise ValueError(f"stability has {len(act)} hidden layers, the net {net.n_hidden_layers}")
    for l, (a, i, n) in enumerate(zip(act, inact, net.hidden_sizes)):
        if a.shape != (n,) or i.shape != (n,):
            raise ValueError(f"stability layer {l + 1} has {a.shape[0]} units, the net {n}")
        if np.any(a & i):
            raise ValueError(f"stability layer {l + 1}: a unit is both active and inactive")
    return act, inact


def compress(net: ReluNet, stability, rank_tol: float = DEFAULT_RANK_TOL) -> Compression:
    """Remove stably inactive units, fold linearly dependent stably active ones, merge linear layers.

    `stability` (src.bounds.Stability) must be sound for the domain of interest; the result equals
    `net` on that domain (up to float rounding, and up to rank_tol for folds).
    """
    active, inactive = _masks(stability, net)
    L = net.n_hidden_layers
    Ws = [w.copy() for w in net.weights]
    bs = [b.copy() for b in net.biases]
    out_w, out_b = [], []            # surviving hidden layers of the compressed net
    kept, collapsed, per_layer = [], [], []
    for l in range(L):
        a, i = active[l], inactive[l]
        u = ~(a | i)
        rec = {"layer": l + 1, "units": int(a.size), "inactive": int(i.sum()), "active": int(a.sum()),
               "unstable": int(u.sum()), "folded_active": 0, "merged_active": 0}
        W, b, Wn, bn = Ws[l], bs[l], Ws[l + 1], bs[l + 1]
        if not u.any():
            # affine layer -> merge into layer l+1
            Ws[l + 1], bs[l + 1] = advance(W, b, Wn, bn, a)     # h = diag(a) (W z + b) on the domain
            rec["merged_active"] = int(a.sum())
            collapsed.append(l + 1)
            kept.append(np.zeros(0, int))
            per_layer.append(rec)
            continue
        S = np.flatnonzero(a)
        Bl, Fl, alpha = active_basis(W[S], rank_tol)
        B, F = S[Bl], S[Fl]
        if F.size:
            WF = Wn[:, F]
            bn = bn + WF @ (b[F] - alpha @ b[B])
            Wn = Wn.copy()
            Wn[:, B] += WF @ alpha
        keep = np.sort(np.concatenate([np.flatnonzero(u), B]))
        rec["folded_active"] = int(F.size)
        out_w.append(W[keep])
        out_b.append(b[keep])
        Ws[l + 1] = Wn[:, keep]
        bs[l + 1] = bn
        kept.append(keep)
        per_layer.append(rec)
    out_w.append(Ws[L])
    out_b.append(bs[L])
    cnet = ReluNet(out_w, out_b, meta={"compressed_from": net.meta.get("path", "")})
    return Compression(net=cnet, units_before=list(net.hidden_sizes), units_after=[int(k.size) for k in kept],
                       kept=kept, collapsed=collapsed, per_layer=per_layer, params_before=net.n_params)


# ---- verification ------------------------------------------------------------------------


def verify(original: ReluNet, compressed: ReluNet, box: Box, points: int = DEFAULT_POINTS, seed: int = 0,
           rtol: float = DEFAULT_RTOL, test_set=None) -> dict:
    """Compare outputs on `points` uniform samples of the box (plus its two corners) and on the
    test set (x, y) when given; `passed` iff every relative error (relative_errors) <= rtol and the
    test accuracies are identical."""
    rng = np.random.default_rng(seed)
    x = np.vstack([box.sample(points, rng), box.lo[None], box.hi[None]]) if points > 0 else np.zeros((0, box.n))
    res = {"points": int(len(x)), "seed": int(seed), "rtol": rtol,
           "criterion": "|f(x) - f'(x)| <= rtol * max(1, |f(x)|) for every output"}
    max_abs = max_rel = 0.0
    failures = []
    if len(x):
        a, c = original.forward(x), compressed.forward(x)
        max_abs = float(np.abs(a - c).max())
        max_rel = float(relative_errors(a, c).max())
        if not max_rel <= rtol:
            failures.append(f"max relative error {max_rel:.3g} > {rtol:g} on {len(x)} points of the domain")
    if test_set is not None:
        xt, yt = test_set
        xt = np.asarray(xt, dtype=np.float64)
        a, c = original.forward(xt), compressed.forward(xt)
        t_abs, t_rel = float(np.abs(a - c).max()), float(relative_errors(a, c).max())
        acc_o = float((a.argmax(1) == yt).mean())
        acc_c = float((c.argmax(1) == yt).mean())
        res.update(test_points=int(len(xt)), test_max_abs_error=t_abs, test_max_rel_error=t_rel,
                   test_accuracy_original=acc_o, test_accuracy_compressed=acc_c,
                   test_predictions_differ=int((a.argmax(1) != c.argmax(1)).sum()))
        max_abs, max_rel = max(max_abs, t_abs), max(max_rel, t_rel)
        if not t_rel <= rtol:
            failures.append(f"max relative error {t_rel:.3g} > {rtol:g} on the {len(xt)} test images")
        if acc_o != acc_c:
            failures.append(f"test accuracy {acc_c:.4f} differs from the original's {acc_o:.4f}")
    res["max_abs_error"] = max_abs
    res["max_rel_error"] = max_rel
    res["ok"] = res["passed"] = not failures      # "ok": the key of every verification record (transform too)
    if failures:
        res["failures"] = failures
    return res


# ---- one domain --------------------------------------------------------------------------
def stability_on(net: ReluNet, box: Box, tol: float = 1e-6, exact: bool = True, progress=None,
                 time_limit: float | None = None):
    """Stable units on the box: src.bounds.analyse_stability (interval -> LP -> MILP when exact)."""
    from .bounds import analyse_stability

    return analyse_stability(net, box, tol=tol, exact=exact, progress=progress, time_limit=time_limit,
                             stability_only=True)   # only the stable sets matter here


def compression_json(comp: Compression, stability, box: Box, weights_path, times: dict,
                     verification: dict | None) -> dict:
    """The `compressed_<domain>.json` record (docs/formats.md) plus per-layer detail."""
    return {
        "weights": str(weights_path), "domain": box.to_json(),
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
    from .data import load_mnist_arrays

    x, y = load_mnist_arrays("test", root=data_root)
    if not box.contains(x).all():
        return None
    return x, y


def compress_on_domain(net: ReluNet, box: Box, *, tol: float = 1e-6, exact: bool = True,
                       rank_tol: float = DEFAULT_RANK_TOL, verify_points: int = DEFAULT_POINTS,
                       rtol: float = DEFAULT_RTOL, do_verify: bool = True, test_set=None,
                       seed: int = 0, time_limit: float | None = None, progress=None, stability=None):
    """Stability -> compression -> verification on one box. Returns (stability, Compression, times,
    verification or None); raises VerificationError when the compressed net differs. A given `stability`
    (sound for the box, e.g. src.bounds.reusable_stability) is used instead of computing it."""
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
    cols = list(rows[0].keys())
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
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
    return buf.getvalue(), "\n".join(md) + "\n"


def write_sweep(out_dir, stem: str, rows: list[dict], units_before: list[int], meta: dict) -> list[Path]:
    """Write <stem>.csv, <stem>.md and <stem>.json into out_dir; returns the paths."""
    out_dir = Path(out_dir)
    csv_text, md_text = sweep_tables(rows, units_before)
    paths = [out_dir / f"{stem}.csv", out_dir / f"{stem}.md", out_dir / f"{stem}.json"]
    atomic_write_text(paths[0], csv_text)
    atomic_write_text(paths[1], md_text)
    atomic_write_json(paths[2], {**meta, "rows": rows})
    return paths


# ---- the step (compress_network.py) ---------------------------------------------------------
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
                 save_each: bool = False, stability_files: bool = True, tol: float = 1e-6, exact: bool = True,
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
    import sys

    from tqdm import tqdm

    for name, v in (("tol", tol), ("rank_tol", rank_tol), ("rtol", rtol)):
        if not (np.isfinite(v) and v >= 0):
            raise ToolError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {v:g}")
    if time_limit is not None and not (np.isfinite(time_limit) and time_limit > 0):
        raise ToolError(f"--time-limit must be > 0 seconds, got {time_limit:g}")
    if verify_points < 0:
        raise ToolError(f"--verify-points must be >= 0, got {verify_points}")
    weights_path = Path(weights)
    from .readers import load_net   # weights.dat, .pt/.pth state_dict or .onnx
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
        comp.net.save(dat, model_path=str(weights_path), accuracy=acc)
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
    centers = sorted({n for n, _, _ in domains}, key=lambda s: (len(s), s))
    label = centers[0] if len(centers) == 1 else f"{centers[0]}_to_{centers[-1]}"
    widths = sorted({w for _, w, _ in domains})
    stem = f"compress_sweep_{label}_width_{'_'.join(f'{w:g}' for w in widths)}"
    meta = {"weights": str(weights_path), "layer_sizes": net.layer_sizes, "tol": tol,
            "exact": exact, "verified": verify,
            "verify_points": verify_points if verify else 0}
    paths = write_sweep(out_dir, stem, rows, net.hidden_sizes, meta)
    report.rows = rows
    report.files += paths
    report.lines = [sweep_tables(rows, net.hidden_sizes)[1], "wrote " + ", ".join(map(str, paths))]
    return report
