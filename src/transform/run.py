"""The transform step: read a net and its patterns, build the two-hidden-layer net, verify, write the files."""
from __future__ import annotations

import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.box import Box
from src.core.compare import RULE
from src.core.defaults import DEFAULT_TOL, DEFAULT_TRANSFORM_RTOL
from src.core.errors import ToolError
from src.core.patterns import pattern_keys
from src.io.current import record_is_current
from src.io.domains import DomainSpec, box_for, box_from_domain_name
from src.io.files import atomic_write_json, file_sha256
from src.io.pattern_file import read_patterns
from src.io.readers import load_net
from src.io.records import read_regions
from src.io.run_dir import domain_of_pattern_file, regions_file_name, two_hidden_file_names, two_hidden_tag
from src.transform.sizes import fmt_int, formula_sizes, memory_params, size_entry
from src.transform.two_hidden import (DEFAULT_BIG_M, DEFAULT_MAX_UNITS, SHARE_MODES, TwoHiddenNet, all_patterns,
                                      build_two_hidden, check_big_m, nonempty_patterns)
from src.transform.verify import _mnist_check, compare_on_points, verify_interior

DEFAULT_MAX_PARAMS = 100_000_000

DEFAULT_MAX_FILE_PARAMS = 50_000_000

VERIFIED_SETS = ("interior", "uniform", "mnist_test")   # the point sets of the verification, each with its "ok"


@dataclass
class TransformReport:
    """What `transform_run` did: the exit code of the script, the sizes, the .json record it wrote
    (None with size_only), the files, the built net, and the warning/error line for stderr."""

    exit_code: int                     # 0, or 1: the verification failed / incomplete list not written
    sizes: dict
    record: dict | None = None
    json_path: Path | None = None
    dat_path: Path | None = None       # the two-hidden-layer weights file, when written
    net: TwoHiddenNet | None = None
    message: str | None = None         # "warning: …" / "error: …" (the script prints it on stderr)


def output_paths(weights, tag: str, out=None) -> tuple[Path, Path]:
    dat = Path(out) if out else Path(weights).parent / two_hidden_file_names(tag)[0]
    return dat, dat.with_suffix(".json")


def _size_lines(sizes: dict) -> list[str]:
    lines = []
    for name in ("original", "naive", "shared_formula", "shared", "nonempty_formula", "built"):
        e = sizes.get(name)
        if e is None or (name == "shared" and e.get("counted") == "built" and "nonempty_formula" in sizes):
            continue
        label = e.get("label") or ("trie" if name == "shared_formula" or e.get("counted") == "formula"
                                   and name == "shared" else ("built" if name == "shared" else name))
        widths = ", ".join(fmt_int(v) for v in e["layer_sizes"])
        extra = f"  [{e['counted']}]" if "counted" in e else ""
        lines.append(f"  {label:8s} n = [{widths}]  params = {fmt_int(e['params'])}{extra}")
    return lines


def check_pattern_sidecar(pattern_path, weights_path, domain_name, n_patterns: int) -> str | None:
    """Check a pattern file against the regions_<domain>.json written beside it by the count.

    Raises ToolError when the count was made for other weights (sha256) or the summary does not
    describe this file; returns why the list is incomplete (the count stopped early), else None.
    Without a summary (files of the authors' own tools) a one-line notice says it was not checked.
    """

    pattern_path = Path(pattern_path)
    side = pattern_path.parent / regions_file_name(domain_name) if domain_name else None
    if side is None or not side.is_file():
        print(f"notice: no regions_<domain>.json beside {pattern_path}: it could not be checked against "
              f"{weights_path} (weights, completeness)", file=sys.stderr)
        return None
    summary = read_regions(side)
    sha = file_sha256(weights_path)
    if summary.get("weights_sha256") and not record_is_current(summary, sha):
        raise ToolError(f"-i {pattern_path}: made for other weights than -w {weights_path} "
                        f"({side.name} records sha256 {summary['weights_sha256'][:12]}…, the weights have "
                        f"{sha[:12]}…)")
    if summary.get("pattern_file") not in (None, pattern_path.name) or summary["count"] != n_patterns:
        raise ToolError(f"-i {pattern_path}: {side.name} beside it records {summary['count']} patterns in "
                        f"{summary.get('pattern_file')}, the file holds {n_patterns}; count again")
    if not summary["complete"]:
        return f"the count that wrote it stopped early ({side.name} says complete: false)"
    return None


def transform_run(weights, patterns=None, *, output=None, domain: DomainSpec | Box | None = None,
                  big_m: float = DEFAULT_BIG_M, share: str = "full", allow_incomplete: bool = False,
                  size_only: bool = False, max_units: int = DEFAULT_MAX_UNITS, max_params: int = DEFAULT_MAX_PARAMS,
                  max_file_params: int = DEFAULT_MAX_FILE_PARAMS, verify: bool = True, verify_points: int = 10000,
                  verify_patterns: int = 0, rtol: float = DEFAULT_TRANSFORM_RTOL, tol: float = DEFAULT_TOL, seed: int = 0,
                  mnist: bool = True, data_root=None, progress: bool = True, say=None) -> TransformReport:
    """The transformation step (transform_networks_using_all_nodes.py): read the net in `weights`, build
    the two-hidden-layer net from all 2^N patterns (patterns=None) or from the pattern file `patterns`,
    verify it and write two_hidden_<tag>.dat / .json beside the weights (or at `output`).

    domain: a DomainSpec (default [0,1]^n0; then a pattern file named for another domain sets it) or a
    Box. share: "full", "trie" or "none" (module docstring). Nets over max_units / max_params are not
    built (their sizes go to the .json, exit code 0); size_only prints the sizes and writes nothing.
    say(line) receives the report lines (the script prints them); notes and warnings go to stderr.
    Returns a TransformReport; bad input raises ToolError before anything is written.
    """

    say = say or (lambda line: None)
    M = _check_settings(share, big_m, max_units, max_params, max_file_params, verify_points, verify_patterns,
                        rtol, tol, output)
    spec = domain if domain is not None else DomainSpec()
    net = load_net(weights)
    if net.n_hidden_layers < 1:
        raise ToolError(f"{weights}: the network has no hidden layer; there is nothing to transform")
    box = box_for(spec, net.n_inputs, data_root)   # data_root None: the repository's data/
    N, m = net.n_hidden_units, net.n_outputs

    if patterns:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            P = read_patterns(patterns, net.layer_sizes)
        for w in caught:
            print(f"warning: {w.message}", file=sys.stderr)
        mode = "feasible"
        file_domain = domain_of_pattern_file(patterns)
        if file_domain and file_domain != box.name and isinstance(spec, DomainSpec) and spec.is_default:
            named = box_from_domain_name(file_domain, net.n_inputs, data_root)
            if named is not None:
                box = named
                print(f"note: domain {box.name} taken from the name of {patterns}", file=sys.stderr)
        domain_name = file_domain or box.name
        if file_domain and file_domain != box.name:
            print(f"warning: {patterns} is named for domain '{file_domain}' but the flags give "
                  f"'{box.name}'; K, the box bounds and the verification use the flags' box",
                  file=sys.stderr)
        tag = two_hidden_tag("feasible", domain_name)
        formulas = formula_sizes(net.layer_sizes, P)
        list_problem = check_pattern_sidecar(patterns, weights, file_domain, len(P))
    else:
        P = None
        list_problem = None
        mode = "all"
        tag = two_hidden_tag("all", box.name)
        formulas = formula_sizes(net.layer_sizes, None)
    dat_path, json_path = output_paths(weights, tag, output)
    sizes = {"original": size_entry(net.layer_sizes), "naive": formulas["naive"], "shared": formulas["shared"]}
    plan = formulas["naive"] if share == "none" else formulas["shared"]
    n_pat = formulas["patterns"]
    head = (f"{net!r}: {N} hidden units, {'all 2^%d = %s' % (N, fmt_int(n_pat)) if mode == 'all' else n_pat} "
            f"patterns, domain {box.name}, big-M {M:g}, sharing: {share}")
    say(head)
    reason = None
    nonempty_info = None
    if mode == "all" and share == "full":
        # full sharing leaves out the patterns that are provably empty on D: grow them through the trie
        P, nonempty_info = nonempty_patterns(net, box, max_units // (m + 1), max_params)
        if P is None:
            reason = (f"at least {fmt_int(nonempty_info['patterns'])} prefixes (up to hidden layer "
                      f"{nonempty_info['layer']}) are not provably empty on D by the box bounds of each trie "
                      f"node, more than --max-units / --max-params allow")
            say(f"patterns not provably empty on D: at least {fmt_int(nonempty_info['patterns'])} "
                f"(counted up to hidden layer {nonempty_info['layer']})")
        else:
            f2 = formula_sizes(net.layer_sizes, P)["shared"]
            f2["note"] = ("prefix trie over the patterns not provably empty on D (box bounds per trie node); "
                          "no dropping of stable violation units, no merging (the built net is at most this large)")
            f2["label"] = "nonempty"
            sizes["nonempty_formula"] = plan = f2
            say(f"patterns not provably empty on D (box bounds per trie node): {len(P)} of 2^{N}")
    if size_only:
        say("sizes (by formula; not built):")
        for line in _size_lines(sizes):
            say(line)
        say(f"  note: {formulas['shared']['note']}")
        return TransformReport(0, sizes)

    units = plan["layer_sizes"][1] + plan["layer_sizes"][2]
    mem = memory_params(plan, N)
    if reason:
        pass
    elif units > max_units:
        reason = (f"it would have {fmt_int(units)} hidden units, more than --max-units {max_units}")
    elif mem > max_params:
        reason = (f"building it would hold {fmt_int(mem)} numbers (dense layer 1 + sparse layers 2, 3), "
                  f"more than --max-params {max_params}")
    record = {"weights": str(weights), "weights_sha256": file_sha256(weights), "mode": mode,
              "pattern_file": str(patterns) if patterns else None,
              "patterns_sha256": file_sha256(patterns) if patterns else None,
              "domain": box.to_json(), "patterns": n_pat, "big_m": M, "band_width": None,
              "built": False, "shared": share != "none", "share": share, "sizes": sizes,
              "build_seconds": None, "verification": None}
    if nonempty_info is not None:
        record["nonempty_patterns"] = nonempty_info
    if patterns and domain_name != box.name:
        record["pattern_domain"] = domain_name
    if reason:
        say(f"not built: {reason}. Sizes it would have (by formula):")
        for line in _size_lines(sizes):
            say(line)
        say(f"  note: {formulas['shared']['note']}")
        record["not_built_reason"] = reason
        atomic_write_json(json_path, record)
        say(f"wrote {json_path}")
        return TransformReport(0, sizes, record, json_path)

    if P is None:
        P = all_patterns(N)
    res = build_two_hidden(net, box, P, M, share=share, progress=progress)
    two = res.net
    built = res.size_entry()
    if share == "none":
        sizes["built"] = built
    else:
        sizes["shared"] = built
        sizes["shared_formula"] = formulas["shared"]
    record.update(built=True, band_width=res.band_width, u_max=res.u_max, build_seconds=round(res.seconds, 3))
    say(f"built in {res.seconds:.2f} s: band width {res.band_width:.3g} (max u = {res.u_max:.4g}); "
        f"{len(res.pruned)} patterns left out as empty on D, {res.dropped_units} stable violation units "
        f"dropped, {res.merged_units} equal units merged")
    for line in _size_lines(sizes):
        say(line)
    if "nonempty_formula" in sizes:
        say(f"  {'built':8s} n = [{', '.join(map(str, built['layer_sizes']))}]  params = {built['params']}  [built]")

    ok, failed, accuracy = True, [], None
    if verify:
        ver = _verification(net, two, box, P, res.band_width, keys=pattern_keys(P) if mode == "feasible" else None,
                            rtol=rtol, tol=tol, verify_points=verify_points, verify_patterns=verify_patterns,
                            seed=seed, mnist=mnist, data_root=data_root, progress=progress)
        ok, failed = ver["ok"], [k for k in VERIFIED_SETS if (ver.get(k) or {}).get("ok") is False]
        accuracy = (ver.get("mnist_test") or {}).get("accuracy_transformed")
        record["verification"] = ver
        for line in _verification_lines(ver):
            say(line)

    ver = record.get("verification") or {}
    missing = sum(int((ver.get(k) or {}).get("missing_pattern") or 0) for k in ("uniform", "mnist_test"))
    checked = sum(int((ver.get(k) or {}).get("points") or 0) for k in ("uniform", "mnist_test"))
    if missing:
        found = (f"{missing} of the {checked} test and random points ({100.0 * missing / checked:.2f} %) have an "
                 f"activation pattern that is not in the list")
        list_problem = found if list_problem is None else f"{list_problem}; {found}"
    record["equivalent"] = bool(ok and list_problem is None)
    if list_problem is not None:
        record["incomplete_list"] = list_problem
    record["weights_file"] = None
    if not ok:
        record["weights_file_note"] = ("not written: the interior-point check failed" if "interior" in failed else
                                       "not written: the verification failed (outputs differ outside the band)")
    elif list_problem is not None and not allow_incomplete:
        record["weights_file_note"] = "not written: the pattern list is incomplete (--allow-incomplete writes it)"
    elif two.n_params > max_file_params:
        note = (f"not written: the dense weights.dat would hold {fmt_int(two.n_params)} numbers, more than "
                f"--max-file-params {max_file_params}")
        record["weights_file_note"] = note
        say(note)
    else:
        two.save(dat_path, model_path=str(weights), accuracy=accuracy)
        record["weights_file"] = str(dat_path)
        say(f"wrote {dat_path}")
    atomic_write_json(json_path, record)
    say(f"wrote {json_path}")
    report = TransformReport(0, sizes, record, json_path, Path(record["weights_file"]) if record["weights_file"]
                             else None, two)
    if ok and list_problem is not None:
        what = "written as asked (--allow-incomplete)" if allow_incomplete else \
            "no .dat written (--allow-incomplete writes it anyway)"
        report.message = (f"{'warning' if allow_incomplete else 'error'}: the pattern list is incomplete, so the net "
                          f"is NOT equivalent to {weights} (\"equivalent\": false): {list_problem}; {what}")
        report.exit_code = 0 if allow_incomplete else 1
    elif not ok:
        report.message = "error: " + "; ".join(_failure_text(record["verification"], k, rtol) for k in failed)
        report.exit_code = 1
    return report


def _check_settings(share, big_m, max_units, max_params, max_file_params, verify_points, verify_patterns,
                    rtol, tol, output) -> float:
    """The step's settings, checked before anything is read or written; returns big-M."""
    if share not in SHARE_MODES:
        raise ToolError(f"share must be one of {', '.join(SHARE_MODES)}, got {share!r}")
    M = check_big_m(big_m)
    for flag, v in (("--max-units", max_units), ("--max-params", max_params),
                    ("--max-file-params", max_file_params)):
        if v < 0:
            raise ToolError(f"{flag} must be >= 0, got {v}")
    if verify_points < 0 or verify_patterns < 0:
        raise ToolError("--verify-points and --verify-patterns must be >= 0")
    if not (rtol > 0 and tol >= 0):
        raise ToolError("--rtol must be > 0 and --tol >= 0")
    if output and Path(output).suffix == ".json":
        raise ToolError(f"-o {output}: give the path of the weights file (.dat); the .json goes beside it")
    return M


def _verification(net, two, box, P, band_width, *, keys, rtol, tol, verify_points, verify_patterns, seed, mnist,
                  data_root, progress) -> dict:
    """The verification record of a built net: interior points of its patterns, seeded points of the box and
    (for a 784-input net) the MNIST test images inside it, each under the one rule (src/core/compare.py).

    A mismatch outside the band anywhere fails it (`ok` false); the points of a pattern missing from an
    incomplete list (keys) are not held to the rule: they make the list incomplete (reported by the caller).
    """
    t0 = time.perf_counter()
    ver = {"rtol": rtol, "band_width": band_width, "criterion": RULE}
    ver["interior"] = verify_interior(net, two, box, P, band_width, tol=tol, rtol=rtol,
                                      limit=verify_patterns, seed=seed, progress=progress)
    if verify_points:
        X = box.sample(verify_points, np.random.default_rng(seed))
        ver["uniform"] = compare_on_points(net, two, X, band_width, keys, rtol)
        ver["uniform"]["seed"] = seed
    if net.n_inputs == 784 and mnist:
        ver["mnist_test"] = _mnist_check(net, two, box, band_width, keys, rtol, data_root)
    ver["seconds"] = round(time.perf_counter() - t0, 3)
    ver["ok"] = not any((ver.get(k) or {}).get("ok") is False for k in VERIFIED_SETS)
    return ver


def _failure_text(ver: dict, name: str, rtol: float) -> str:
    r = ver[name]
    if name == "interior":
        return (f"interior-point check failed for {r['failures']} patterns (outputs differ by more than rtol "
                f"{rtol:g} at points outside the band); first: {r['failed_patterns'][:5]}")
    k = r.get("known") or r
    what = "uniform points" if name == "uniform" else "MNIST test images"
    return (f"{k['mismatch_outside_band']} of the {r['points']} {what} outside the band have outputs that differ "
            f"by more than rtol {rtol:g} (max abs error there {k['max_abs_error_outside_band']:.3g})")


def _verification_lines(ver: dict) -> list[str]:
    it = ver["interior"]
    lines = [f"verify interior: {it['with_interior_point']}/{it['sampled']} patterns have an interior point "
             f"({it['no_interior_point']} none), {it['in_band']} in the band, {it['failures']} failures, "
             f"max rel error {_g(it['max_rel_error'])}  -> {'OK' if it['ok'] else 'FAILED'}"]
    for name in ("uniform", "mnist_test"):
        r = ver.get(name)
        if r is None:
            continue
        if "skipped" in r:
            lines.append(f"verify {name}: skipped ({r['skipped']})")
            continue
        if "points" not in r:
            lines.append(f"verify {name}: no image lies in the domain")
            continue
        k = r["known"] or {}
        s = (f"verify {name}: {r['points']} points, max abs error {_g(k.get('max_abs_error'))}, "
             f"match {_pct(k.get('fraction_match'))}, argmax agreement {_pct(k.get('argmax_agreement'))}, "
             f"{r['in_band']} in the band, {k.get('mismatch_outside_band', 0)} mismatches outside it")
        if r["missing_pattern"]:
            s += (f"; {r['missing_pattern']} points have a pattern missing from the list "
                  f"(there: match {_pct(r['missing']['fraction_match'])}, "
                  f"argmax {_pct(r['missing']['argmax_agreement'])})")
        if "accuracy_original" in r:
            s += f"; test accuracy {r['accuracy_original']:.4f} -> {r['accuracy_transformed']:.4f}"
        lines.append(s)
    return lines


def _g(v):
    return "n/a" if v is None else f"{v:.3g}"


def _pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}%"
