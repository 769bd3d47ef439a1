#!/usr/bin/env python
"""Lossless compression of a trained ReLU net on an input domain via its stable units.

    python compress_network.py -w runs/fcnn_run_104/weights.dat
    python compress_network.py -w runs/fcnn_run_104/weights.dat --center-test-index 0 --width 0.01
    python compress_network.py -w .../weights.dat --center-test-index 0:100 --width 0.001,0.01,0.05

Stably inactive units are deleted, linearly dependent stably active units are folded into the
next layer, layers without unstable units are merged into the next one. The compressed net is
verified against the original (random points of the domain, and the MNIST test set when the
domain contains it); a mismatch exits with status 1.
"""
from __future__ import annotations

import argparse
import sys

from src.cli.domain_args import add_domain_arguments
from src.cli.runner import run_main
from src.compress.lossless import DEFAULT_RANK_TOL
from src.compress.run import compress_run
from src.core.defaults import DEFAULT_POINTS, DEFAULT_RTOL
from src.io.domains import DomainSpec


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-w", "--weights", required=True, metavar="FILE", help="the net: weights.dat, a PyTorch state_dict (.pt/.pth) or ONNX (.onnx)")
    add_domain_arguments(p, sweep=True)
    g = p.add_argument_group("output")
    g.add_argument("-o", "--output", metavar="FILE",
                   help="compressed weights file (single domain; default compressed_<domain>.dat next to "
                        "the input); the JSON report goes to the same name with .json")
    g.add_argument("--out-dir", metavar="DIR",
                   help="directory for every output (default: the directory of --weights)")
    g.add_argument("--save-each", action="store_true",
                   help="in a sweep, also write each domain's compressed net, JSON and stability files")
    g.add_argument("--no-stability-files", action="store_true",
                   help="do not write stable_units_<domain>.json / inactive_<domain>.dat")
    s = p.add_argument_group("stability and compression")
    s.add_argument("--tol", type=float, default=1e-6,
                   help="a unit is stably active when its pre-activation is > TOL on the whole domain (default 1e-6)")
    s.add_argument("--no-exact", action="store_true",
                   help="skip the exact MILP tier: interval + LP bounds only (sound, may find fewer stable units)")
    s.add_argument("--time-limit", type=float, default=None, metavar="SEC",
                   help="cap on the stability analysis per domain (seconds); units still undecided stay "
                        "ReLUs (the result stays lossless, `exact` becomes false in the JSON)")
    s.add_argument("--rank-tol", type=float, default=DEFAULT_RANK_TOL,
                   help=f"relative rank tolerance of the pivoted QR that picks the active basis (default {DEFAULT_RANK_TOL:g})")
    v = p.add_argument_group("verification")
    v.add_argument("--no-verify", action="store_true", help="skip the check of the compressed net against the original")
    v.add_argument("--verify-points", type=int, default=DEFAULT_POINTS,
                   help=f"random points of the domain to compare on (default {DEFAULT_POINTS})")
    v.add_argument("--rtol", type=float, default=DEFAULT_RTOL,
                   help=f"allowed |f - f'| / max(1, |f|) per output (default {DEFAULT_RTOL:g})")
    v.add_argument("--seed", type=int, default=0, help="seed of the random verification points (default 0)")
    p.add_argument("--data-root", metavar="DIR", default=None,
                   help="MNIST root (default <repo>/data; built offline on first use)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or summary")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    report = compress_run(
        args.weights, domain=DomainSpec.from_args(args), output=args.output, out_dir=args.out_dir,
        save_each=args.save_each, stability_files=not args.no_stability_files, tol=args.tol, exact=not args.no_exact,
        time_limit=args.time_limit, rank_tol=args.rank_tol, verify=not args.no_verify,
        verify_points=args.verify_points, rtol=args.rtol, seed=args.seed, data_root=args.data_root,
        progress=not args.quiet)
    if report.error:
        print(f"error: {report.error}", file=sys.stderr)
    elif not args.quiet:
        for line in report.lines:
            print(line)
    return report.exit_code


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
