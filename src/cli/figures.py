"""The figure scripts of plots/: argparse for one figure, the input slice, and all figures at once."""
from __future__ import annotations

import argparse
import sys

from src.cli.results import add_min_accuracy_argument
from src.core.defaults import DEFAULT_DOMAIN, DEFAULT_MODELS_DIR
from src.core.errors import ToolError
from src.report.figures import FIGURES, draw, draw_all, draw_slice
from src.report.table import collect_results, load_runs, missing_report


def _formats(text) -> tuple[str, ...]:
    fmts = tuple(f.strip().lower().lstrip(".") for f in str(text).split(",") if f.strip())
    bad = [f for f in fmts if f not in ("png", "pdf", "svg")]
    if not fmts or bad:
        raise ToolError(f"--formats: {text!r}; give a comma list of png, pdf, svg")
    return fmts


def add_run_arguments(p, runs_required: bool = True, broken: bool = True) -> None:
    p.add_argument("--models-dir", default=DEFAULT_MODELS_DIR,
                   help=f"directory holding fcnn_run_<id>/ (default {DEFAULT_MODELS_DIR})")
    p.add_argument("--runs", required=runs_required, metavar="IDS",
                   help="run ids: a range 100-111, a list 100,103 or both (100-103,110)")
    p.add_argument("--domain", default=DEFAULT_DOMAIN,
                   help="domain name of the analysis files to read, e.g. input_0_1 or "
                        "center_test0_width_0.01 (default input_0_1)")
    p.add_argument("--out", default="plots/out", help="output directory (default plots/out)")
    p.add_argument("--formats", default="png,pdf", help="comma list of file formats (default png,pdf)")
    if broken:
        add_min_accuracy_argument(p)
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")


def add_slice_arguments(p, prefix: str = "") -> None:
    g = p.add_argument_group("input slice")
    g.add_argument(f"--{prefix}plane", choices=("images", "around", "random"), default="images",
                   help="images: the plane through three MNIST test images (--images); around: a test image "
                        "(--center-test-index) and two random directions (±--radius); random: three uniform random "
                        "points of [0,1]^n0 (no MNIST needed). Default images")
    g.add_argument(f"--{prefix}images", default="0,1,2", metavar="I,J,K",
                   help="three MNIST test indices for --plane images (default 0,1,2)")
    g.add_argument(f"--{prefix}center-test-index", type=int, default=0, metavar="K",
                   help="test image at the center for --plane around (default 0)")
    g.add_argument(f"--{prefix}radius", type=float, default=1.0, metavar="R",
                   help="half-width of the view in L2 units for --plane around (default 1)")
    g.add_argument(f"--{prefix}resolution", type=int, default=None, metavar="PX",
                   help="ignored: the slice is computed exactly as polygons (kept for older command lines)")
    g.add_argument(f"--{prefix}colour", choices=("pattern", "class"), default="pattern",
                   help="fill each linear region with its own colour (pattern) or by the predicted class (class; "
                        "exact decision boundaries). Default pattern")
    g.add_argument(f"--{prefix}seed", type=int, default=0, help="seed of random directions/points and colours")
    g.add_argument("--data-root", default="data", help="MNIST root (default data)")


def _slice_kw(args, prefix: str = "") -> dict:
    a = lambda k: getattr(args, prefix.replace("-", "_") + k)  # noqa: E731
    try:
        images = tuple(int(t) for t in a("images").split(","))
    except ValueError:
        raise ToolError(f"--{prefix}images: expected three integers like 0,1,2, got {a('images')!r}") from None
    if a("plane") == "images" and len(images) != 3:
        raise ToolError(f"--{prefix}images: give exactly three MNIST test indices, got {a('images')!r}")
    if a("radius") <= 0:
        raise ToolError(f"--{prefix}radius must be > 0")
    return {"mode": a("plane"), "images": images, "center_index": a("center_test_index"), "radius": a("radius"),
            "seed": a("seed"), "colour": a("colour"), "data_root": args.data_root}


FIGURE_HELP = {
    "regions": "Number of linear regions per run against l1, one series per (adversarial training, dropout); "
               "log scale; incomplete counts (regions_<domain>.json complete=false) drawn hollow with an "
               "upward arrow: they are lower bounds.",
    "stable_units": "Stably active (top) and stably inactive (bottom) units per hidden layer against l1, from "
                    "stable_units_<domain>.json (or the stable_units of regions_<domain>.json).",
    "accuracy_regions": "Test accuracy (metrics.json) against the number of linear regions; colour = l1, "
                        "marker = (adversarial training, dropout); incomplete counts as lower bounds.",
    "transform_sizes": "Hidden units and parameters (log10) of the two-hidden-layer nets: all 2^N patterns "
                       "(two_hidden_all_nodes.json), the feasible patterns, and the feasible patterns with "
                       "shared units (two_hidden_feasible_<domain>.json).",
    "segments": "Linear regions crossed per unit of L2 length along the segments between pairs of MNIST test "
                "images (segments.json of count_linear_regions.py --segments K: exact 1-D sections), one box "
                "per (adversarial training, dropout) group against l1.",
    "local_regions": "Exact region counts in L-inf boxes around MNIST test images (regions_sweep_*.json of "
                     "count_linear_regions.py --center-test-index A:B --width L; smallest width), one box per "
                     "(adversarial training, dropout) group against l1: the answer where global counts are out "
                     "of reach (fcnn4b).",
    "regions_ci": "The exact measures (local counts per box width, regions per unit of L2 length along segments) "
                  "against l1, one line per (adversarial training, dropout): per setting the median over the images "
                  "(segments) of its working runs, every seed pooled, with its percentile-bootstrap 95% interval; "
                  "the test accuracy in a panel beside them.",
    "paired_differences": "The pairs behind the verdict: per measure and factor (each l1 step, adversarial "
                          "training vs none, dropout vs none), log2(treated / baseline) at every image (segment) "
                          "of two runs of the same seed that differ in that factor, with fewer/n, the median ratio "
                          "and the Wilcoxon p.",
}


def figure_main(name: str, argv=None) -> int:
    """CLI of plots/plot_<name>.py: read the runs, draw one figure."""

    stem = FIGURES[name][0]
    p = argparse.ArgumentParser(description=FIGURE_HELP[name] + f" Writes <out>/{stem}.png and .pdf.")
    add_run_arguments(p)
    args = p.parse_args(argv)
    records = load_runs(args.models_dir, args.runs, args.domain, args.min_accuracy)
    _warn_missing(records, args.quiet)
    paths = draw(name, args.models_dir, args.runs, args.out, args.domain, _formats(args.formats), records=records)
    if not args.quiet:
        print("wrote " + ", ".join(map(str, paths)))
    return 0


def _warn_missing(records, quiet: bool) -> None:


    if quiet:
        return
    for line in missing_report(records):
        print(f"warning: {line}", file=sys.stderr)


def slice_main(argv=None) -> int:
    """CLI of plots/plot_input_slice.py."""

    p = argparse.ArgumentParser(description=(
        "Linear regions on a 2-D slice of input space, each region in its own colour (or coloured by the "
        "predicted class) with its boundaries. The regions are exact convex polygons: the plane is split "
        "layer by layer along each unit's zero line (src/sections/plane.py, docs/sections.md), and each polygon's "
        "interior point is checked by the forward pass. One panel per run with a weights.dat, or one panel "
        "for -w FILE. Writes <out>/input_slice.png and .pdf (or --name)."))
    add_run_arguments(p, runs_required=False, broken=False)
    p.add_argument("-w", "--weights", metavar="FILE", help="draw this weights.dat instead of --runs")
    p.add_argument("--name", default="input_slice", help="output file stem (default input_slice)")
    add_slice_arguments(p)
    args = p.parse_args(argv)
    if (args.weights is None) == (args.runs is None):
        raise ToolError("give either --runs IDS (with --models-dir) or -w/--weights FILE")
    paths, info = draw_slice(args.models_dir, args.runs, args.out, weights=args.weights, domain=args.domain,
                             stem=args.name, formats=_formats(args.formats), **_slice_kw(args))
    if not args.quiet:
        for i in info:
            print(f"{i['label']}: {i['regions_in_domain']} regions in the box, {i['regions_in_view']} in view")
        print("wrote " + ", ".join(map(str, paths)))
    return 0


def make_all_main(argv=None) -> int:
    """CLI of plots/make_all.py: every figure and the results table."""


    p = argparse.ArgumentParser(description=(
        "Draw every figure (regions_vs_l1, stable_units_vs_l1, accuracy_vs_regions, transform_sizes, "
        "segment_regions_vs_l1, local_regions_vs_l1, regions_ci_vs_l1, paired_differences, input_slice) for the "
        "runs into --out, and write the results table "
        "(results.csv, results.md). "
        "A figure whose input files are missing in every run is skipped with a message."))
    add_run_arguments(p)
    p.add_argument("--no-table", action="store_true", help="do not write results.csv / results.md")
    add_slice_arguments(p, prefix="slice-")
    args = p.parse_args(argv)
    fmts = _formats(args.formats)
    slice_kw = _slice_kw(args, prefix="slice-")
    records = load_runs(args.models_dir, args.runs, args.domain, args.min_accuracy)
    _warn_missing(records, args.quiet)
    log = (lambda m: None) if args.quiet else print
    done = draw_all(args.models_dir, args.runs, args.out, args.domain, fmts, slice_kw=slice_kw, log=log,
                    min_accuracy=args.min_accuracy)
    if not args.no_table:
        res = collect_results(args.models_dir, args.runs, args.out, args.domain, min_accuracy=args.min_accuracy)
        done["table"] = [res["csv"], res["md"]]
        log(res["trend"].summary())
    for name, v in done.items():
        if isinstance(v, list):
            log(f"{name}: " + ", ".join(map(str, v)))
    drawn = sum(isinstance(v, list) for k, v in done.items() if k != "table")
    if drawn == 0:
        raise ToolError(f"no figure could be drawn for runs {args.runs} in {args.models_dir}")
    return 0
