#!/usr/bin/env python3
"""Turn a ReLU net into an equivalent net with two hidden layers, built from activation patterns.

Examples:
    python transform_networks_using_all_nodes.py -w forward_pass/activation_pattern/models/fcnn_run_100/weights.dat
    python transform_networks_using_all_nodes.py -w .../fcnn_run_100/weights.dat \\
        -i .../fcnn_run_100/activation_pattern_abhinav_input_0_1.dat
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from src.io.domains import DomainSpec  # noqa: E402
from src.cli.domain_args import add_domain_arguments  # noqa: E402
from src.cli.runner import run_main  # noqa: E402
from src.transform.two_hidden import DEFAULT_BIG_M, DEFAULT_MAX_UNITS
from src.transform.run import DEFAULT_MAX_FILE_PARAMS, DEFAULT_MAX_PARAMS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Build the two-hidden-layer net of Kumar, Serra & Ramalingam (2019) from activation "
                    "patterns: without -i from all 2^N patterns of the N hidden units, with -i from the "
                    "feasible patterns listed in a pattern file. Layer 1 holds violation units "
                    "ReLU(-sigma g_{l,i}) and value units ReLU(F_k x + e_k + K), layer 2 gates each pattern's "
                    "outputs with big-M; identical units are shared through a prefix trie. Writes "
                    "two_hidden_all_nodes.dat / two_hidden_feasible_<domain>.dat (weights.dat format) and a "
                    ".json with sizes, M, band width, build time and the verification, next to the weights "
                    "(or at -o). Nets too large to build get their exact sizes printed instead (exit 0).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-w", "--weights", required=True, metavar="FILE", help="the net: weights.dat, a PyTorch state_dict (.pt/.pth) or ONNX (.onnx)")
    p.add_argument("-i", "--patterns", metavar="FILE", default=None,
                   help="use only the patterns in this activation_pattern_abhinav_<domain>.dat file; "
                        "without -i all 2^N patterns are used")
    p.add_argument("--allow-incomplete", action="store_true",
                   help="write the net even when the pattern list is incomplete (its count stopped early, or "
                        "test/random points have patterns missing from it); the .json still says "
                        "\"equivalent\": false")
    p.add_argument("-o", "--output", metavar="FILE", default=None,
                   help="write the new net here (the .json goes beside it, same stem); without -o: "
                        "two_hidden_<all_nodes|feasible_<domain>>.dat next to the weights")
    p.add_argument("--big-m", type=float, default=DEFAULT_BIG_M, metavar="M",
                   help="the big-M of layer 2; the net is exact wherever every hidden pre-activation of the "
                        "original net has |g| > max(1, max u)/M (the band width, reported)")
    share = p.add_mutually_exclusive_group()
    share.add_argument("--no-share", action="store_true",
                       help="build the naive net: |P|(N+m) units in layer 1, |P|(m+1) in layer 2")
    share.add_argument("--trie-only", action="store_true",
                       help="share violation units through the prefix trie only (no dropping of stable units, "
                            "no merging of equal units): the sizes then equal the formula")
    p.add_argument("--size-only", action="store_true", help="print the sizes (by formula) and stop; writes nothing")
    p.add_argument("--max-units", type=int, default=DEFAULT_MAX_UNITS,
                   help="do not build nets with more hidden units than this (the sizes are printed, exit 0)")
    p.add_argument("--max-params", type=int, default=DEFAULT_MAX_PARAMS,
                   help="do not build nets whose dense layer 1 plus sparse layers 2-3 hold more numbers")
    p.add_argument("--max-file-params", type=int, default=DEFAULT_MAX_FILE_PARAMS,
                   help="write the dense weights.dat only up to this many parameters (the .json always)")
    v = p.add_argument_group("verification (float64)")
    v.add_argument("--no-verify", action="store_true", help="skip the verification")
    v.add_argument("--verify-points", type=int, default=10000,
                   help="uniform random points of the domain to compare the nets on")
    v.add_argument("--verify-patterns", type=int, default=0, metavar="K",
                   help="check the interior point (one LP each) of a seeded sample of K patterns; 0 = all")
    v.add_argument("--rtol", type=float, default=1e-6,
                   help="outputs match when max|y_new - y| <= rtol * max(1, max|y|)")
    v.add_argument("--tol", type=float, default=1e-6,
                   help="a pattern has an interior point when its LP margin min|g| exceeds this")
    v.add_argument("--seed", type=int, default=0, help="seed of the random points and the pattern sample")
    v.add_argument("--no-mnist", action="store_true", help="skip the MNIST test images (784-input nets)")
    v.add_argument("--data-root", default=None, metavar="DIR", help="MNIST root; without it the repository's data/")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars on stderr")
    add_domain_arguments(p)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from src.transform.run import transform_run

    report = transform_run(
        args.weights, args.patterns, output=args.output, domain=DomainSpec.from_args(args), big_m=args.big_m,
        share="none" if args.no_share else ("trie" if args.trie_only else "full"),
        allow_incomplete=args.allow_incomplete, size_only=args.size_only, max_units=args.max_units,
        max_params=args.max_params, max_file_params=args.max_file_params, verify=not args.no_verify,
        verify_points=args.verify_points, verify_patterns=args.verify_patterns, rtol=args.rtol, tol=args.tol,
        seed=args.seed, mnist=not args.no_mnist, data_root=args.data_root, progress=not args.quiet, say=print)
    if report.message:
        print(report.message, file=sys.stderr)
    return report.exit_code


if __name__ == "__main__":
    run_main(main)
