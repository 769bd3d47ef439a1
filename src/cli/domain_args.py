"""The input-domain flags shared by the scripts (--lo/--hi, --center, --center-test-index, --width)."""
from __future__ import annotations

import argparse


def add_domain_arguments(parser: argparse.ArgumentParser, width_help: str | None = None, sweep: bool = False) -> None:
    """--lo/--hi, --center, --center-test-index, --width; with sweep, a list of widths and a range A:B of
    test images name several local boxes (domains_from_args)."""
    g = parser.add_argument_group("input domain (default: the box [0,1]^n0)")
    g.add_argument("--lo", type=float, default=0.0, help="lower end of the input box (default 0)")
    g.add_argument("--hi", type=float, default=1.0, help="upper end of the input box (default 1)")
    g.add_argument("--center", metavar="FILE",
                   help="local box around the point in FILE (one line of n0 comma-separated values)")
    g.add_argument("--center-test-index", metavar="K",
                   help="local box around the K-th MNIST test image (0..9999)"
                        + ("; A:B runs a sweep over the test images A..B-1" if sweep else ""))
    g.add_argument("--width", metavar="L",
                   help=width_help or ("half-width of the local box: [c-L, c+L] ∩ [lo,hi]"
                                       + ("; a comma-separated list L1,L2,... runs a sweep" if sweep else "")))
