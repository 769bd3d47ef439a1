"""`collect_results.py`: the results table of a sweep, as CSV and Markdown, and the trend verdict."""
from __future__ import annotations

import argparse
import sys

from src.core.defaults import DEFAULT_DOMAIN, DEFAULT_MODELS_DIR
from src.report.table import NEAR_CHANCE_ACCURACY, collect_results, missing_report, rows_to_markdown


def add_min_accuracy_argument(p) -> None:
    p.add_argument("--min-accuracy", type=float, default=NEAR_CHANCE_ACCURACY, metavar="A",
                   help=f"a run whose test accuracy is below A is broken: drawn as a grey x, named in the table and "
                        f"left out of the verdict, like a net constant on the domain (default {NEAR_CHANCE_ACCURACY:g}: "
                        f"chance on 10 classes is 0.1)")


def collect_main(argv=None) -> int:
    """CLI of collect_results.py."""

    p = argparse.ArgumentParser(description=(
        "One row per run (arch, l1, adv, dropout, test accuracy, stable units, regions and whether the count "
        "is complete, sizes of the two-hidden-layer nets, compression), written as <out>/<stem>.csv and "
        "<out>/<stem>.md. Everything is read from the run directories' JSON files (docs/formats.md); a run "
        "with missing files is listed in the 'missing' column and on stderr, not dropped."))
    p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR),
                   help=f"directory holding fcnn_run_<id>/ (default {DEFAULT_MODELS_DIR})")
    p.add_argument("--runs", required=True, metavar="IDS", help="run ids: 100-111, 100,103 or 100-103,110")
    p.add_argument("--domain", default=DEFAULT_DOMAIN, help="domain name of the analysis files (default input_0_1)")
    p.add_argument("--out", default="plots/out", help="output directory (default plots/out)")
    p.add_argument("--stem", default="results", help="output file stem (default results)")
    add_min_accuracy_argument(p)
    p.add_argument("--print", dest="print_table", action="store_true", help="also print the Markdown table")
    p.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    args = p.parse_args(argv)
    res = collect_results(args.models_dir, args.runs, args.out, args.domain, args.stem,
                          min_accuracy=args.min_accuracy)
    if not args.quiet:
        for line in missing_report(res["records"]):
            print(f"warning: {line}", file=sys.stderr)
        if args.print_table:
            print(rows_to_markdown(res["rows"]))
        print(res["trend"].summary())
        print(f"wrote {res['csv']} and {res['md']} ({len(res['rows'])} runs)")
    return 0
