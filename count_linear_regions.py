#!/usr/bin/env python3
"""Count the linear regions of a trained ReLU net: list every feasible activation pattern exactly.

Example:
    python count_linear_regions.py -w forward_pass/activation_pattern/models/fcnn_run_100/weights.dat
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from src.cli.domain_args import add_domain_arguments  # noqa: E402
from src.io.domains import domains_from_args  # noqa: E402
from src.counting.problem import AUTO_ORDER, BACKENDS, MILP_ORDER, PACKAGES  # noqa: E402
from src.core.errors import ToolError  # noqa: E402
from src.cli.runner import run_main  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description="Enumerate every feasible activation pattern (= linear region) of the ReLU net in a "
                    "weights.dat file over an input box, exactly: by default with the LP region-tree search (--backend lp), or the "
                    "paper's MILP in one search tree with one lazy no-good cut per pattern (--backend milp). Writes activation_pattern_abhinav_<domain>.dat, "
                    "regions_<domain>.json, stable_units_<domain>.json and inactive_<domain>.dat next to the "
                    "weights (or in --out-dir).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("-w", "--weights", required=True, metavar="FILE", help="the net: weights.dat, a PyTorch state_dict (.pt/.pth) or ONNX (.onnx)")
    names = ", ".join(f"{n} ({PACKAGES.get(n, '?')})" for n in BACKENDS)
    p.add_argument("--backend", default="auto", metavar="NAME",
                   help=f"enumeration engine: auto, milp or one of {names}; auto tries {' then '.join(AUTO_ORDER)}, "
                        f"milp (the paper's one-tree MILP) tries {' then '.join(MILP_ORDER)} "
                        f"(Gurobi only when the model fits its licence)")
    p.add_argument("--tol", type=float, default=1e-6,
                   help="a unit with bit 1 needs g > tol somewhere in the region, a unit with bit 0 needs g <= 0")
    p.add_argument("--time-limit", type=float, default=None, metavar="S",
                   help="wall-clock limit in seconds for the whole count; what was found is written, "
                        "marked complete: false (continue with --resume)")
    p.add_argument("--threads", type=int, default=1, help="solver threads (Gurobi; SCIP's tree search is sequential)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="lp backend: enumerate prefix subtrees on N Ray workers, a local Ray started here unless "
                        "--ray-address is given (same patterns, sorted; docs/cluster.md)")
    p.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="lp backend: join the Ray cluster at HOST:PORT (default: $RAY_ADDRESS if set); with "
                        "--workers 1 every CPU of the cluster is used")
    p.add_argument("--resume", action="store_true",
                   help="continue an earlier count: from its last checkpoint after a kill, else from its pattern "
                        "file and frontier (known patterns become no-good cuts or are skipped)")
    p.add_argument("--checkpoint-every", type=float, default=60.0, metavar="S",
                   help="every S seconds make the patterns so far and the search frontier durable in "
                        "checkpoint_<domain>.json, so that --resume after a kill (even kill -9) loses at most S "
                        "seconds of work; 0 turns checkpoints off")
    p.add_argument("--count-only", action="store_true",
                   help="count without keeping the patterns: no activation_pattern file (10^8 patterns take 6 GB); "
                        "lp backend only; checkpoint_<domain>.json (kilobytes) records the count, the last pattern "
                        "and the frontier, and --resume --count-only continues from it, also from the checkpoint "
                        "of a count that kept its patterns (docs/counting.md)")
    p.add_argument("-o", "--out-dir", metavar="DIR", default=None,
                   help="where to write the outputs (default: the directory of the weights file)")
    p.add_argument("--exact-stability", action="store_true",
                   help="settle the units that LP bounds leave undecided with an exact MILP per unit")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress output on stderr")
    p.add_argument("--status", action="store_true",
                   help="only print 'STATUS PATH' of an earlier count with these arguments and exit: STATUS is "
                        "complete, incomplete, stale (other weights or tol) or none; PATH is its "
                        "regions_<domain>.json (used by count_linear_regions_script.sh)")
    p.add_argument("--save-each", action="store_true",
                   help="in a sweep of local boxes, also keep each domain's pattern file and JSON files")
    p.add_argument("--data-samples", type=int, default=100_000, metavar="N",
                   help="seeded uniform samples of the box whose patterns certify unstable units and give the "
                        "lower bound (besides the MNIST images in the box, for 784-input nets)")
    p.add_argument("--estimate", type=int, default=None, metavar="N",
                   help="instead of counting: estimate the number of regions with N Knuth probes of the lp "
                        "region tree and a 95%% interval (docs/counting.md, Estimates); writes the \"estimate\" "
                        "record into regions_<domain>.json and no pattern file")
    p.add_argument("--remaining", type=int, default=None, metavar="N",
                   help="instead of counting: for an incomplete --backend lp count of these arguments (running now, "
                        "killed, or stopped by --time-limit), estimate the regions it has still to find with N Knuth "
                        "probes below its frontier (checkpoint_<domain>.json, else frontier_<domain>.json), the "
                        "total with a 95%% interval, and when it should end at its own rate; reads its files, writes "
                        "nothing (docs/counting.md, What a count has left)")
    p.add_argument("--mipbound", action="store_true",
                   help="instead of counting: a probabilistic lower bound 'regions >= 2^r with probability p' by "
                        "MIPBound (Serra & Ramalingam, AAAI 2020): random XOR constraints on the MILP's binaries, "
                        "solved by SCIP (or --backend gurobi/milp); writes the \"mipbound\" record into "
                        "regions_<domain>.json and no pattern file (docs/counting.md, MIPBound); not with --estimate")
    p.add_argument("--xor-size", type=int, default=None, metavar="K",
                   help="--mipbound: units per XOR (default: half the unstable units, at most 32, which gives the most "
                        "distinct XORs; the bound is valid for any K, but short XORs spread the regions unevenly and "
                        "K near the number of unstable units repeats the same XORs: both give smaller bounds)")
    p.add_argument("--mipbound-trials", type=int, default=None, metavar="S",
                   help="--mipbound: trials per number of XORs (default 5); the bound 2^(r-1) holds with probability "
                        "1 - 2^-S (5: 0.969); each further trial halves the chance of a wrong bound and costs up to "
                        "one more MILP per number of XORs")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="seed of the --estimate and --remaining probes and the --mipbound XORs")
    add_domain_arguments(p, sweep=True)
    g = p.add_argument_group("exact sections, instead of the count (docs/sections.md)")
    g.add_argument("--slice", metavar="I,J,K",
                   help="exact 2-D section of the plane x = p_I + s(p_J - p_I) + t(p_K - p_I) through MNIST test "
                        "images I, J, K: writes slice_I_J_K.json")
    g.add_argument("--segments", metavar="K",
                   help="exact 1-D sections of K seeded pairs of MNIST test images: writes segments.json")
    g.add_argument("--segments-seed", metavar="S", default="0", help="seed of the --segments pairs")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from src.io.readers import load_net
    from src.counting.driver import count_run, count_status, final_line
    from src.counting.local_sweep import count_sweep, sweep_markdown, sweep_status, sweep_summary

    net = load_net(args.weights)
    domains, sweep = domains_from_args(args, net.n_inputs)
    box = domains[0][2]
    out_dir = args.out_dir if args.out_dir is not None else str(Path(args.weights).parent)
    if args.data_samples < 0:
        raise ToolError(f"--data-samples must be >= 0, got {args.data_samples}")
    if args.threads < 1:
        raise ToolError(f"--threads must be >= 1, got {args.threads}")
    if sweep and (args.slice is not None or args.segments is not None or args.resume):
        raise ToolError("a sweep of local boxes (a width list or --center-test-index A:B) counts from scratch; "
                        "it does not take --slice, --segments or --resume")
    if args.count_only and (sweep or args.slice is not None or args.segments is not None or args.estimate is not None
                            or args.mipbound or args.remaining is not None):
        raise ToolError("--count-only is a setting of the count of one box; it does not take a sweep, --slice, "
                        "--segments, --estimate, --mipbound or --remaining")
    if not args.mipbound and (args.xor_size is not None or args.mipbound_trials is not None):
        raise ToolError("--xor-size and --mipbound-trials are settings of --mipbound")
    if args.status:          # the state of the count's outputs (with --estimate or --mipbound too)
        status, path = sweep_status(args.weights, domains, out_dir) if sweep else \
            count_status(args.weights, box, args.tol, out_dir)
        print(f"{status} {path}")
        return 0
    if args.remaining is not None:
        if args.estimate is not None or args.mipbound:
            raise ToolError("--remaining estimates what an incomplete count has left; it does not take --estimate "
                            "or --mipbound")
        if sweep or args.slice is not None or args.segments is not None or args.resume:
            raise ToolError("--remaining reads one incomplete count of one box; it does not take a sweep, --slice, "
                            "--segments or --resume")
        from src.counting.estimate import estimate_remaining, remaining_lines

        rec = estimate_remaining(args.weights, box, probes=args.remaining, tol=args.tol, seed=args.seed,
                                 time_limit=args.time_limit, out_dir=out_dir, net=net, progress=not args.quiet)
        print("\n".join(remaining_lines(rec)))
        return 0
    if args.mipbound:
        if args.estimate is not None:
            raise ToolError("--mipbound and --estimate are two separate runs: give one of them")
        if sweep or args.slice is not None or args.segments is not None or args.resume:
            raise ToolError("--mipbound bounds one box from scratch; it does not take a sweep, --slice, "
                            "--segments or --resume")
        from src.counting.mipbound import mipbound_line, mipbound_run

        summary, path = mipbound_run(args.weights, box, trials=args.mipbound_trials, xor_size=args.xor_size,
                                     tol=args.tol, seed=args.seed, time_limit=args.time_limit, out_dir=out_dir,
                                     net=net, exact_stability=args.exact_stability, progress=not args.quiet,
                                     backend=args.backend, threads=args.threads, data_samples=args.data_samples)
        print(mipbound_line(summary["mipbound"], path, certified=summary.get("lower_bound")))
        return 130 if summary["mipbound"].get("stopped") == "interrupted" else 0
    if args.estimate is not None:
        if args.estimate < 1:
            raise ToolError(f"--estimate must be a number of probes >= 1, got {args.estimate}")
        if sweep or args.slice is not None or args.segments is not None or args.resume:
            raise ToolError("--estimate estimates one box from scratch; it does not take a sweep, --slice, "
                            "--segments or --resume")
        from src.counting.estimate import estimate_line, estimate_run

        summary, path = estimate_run(args.weights, box, probes=args.estimate, tol=args.tol, seed=args.seed,
                                     time_limit=args.time_limit, out_dir=out_dir, net=net,
                                     exact_stability=args.exact_stability, progress=not args.quiet,
                                     data_samples=args.data_samples)
        print(estimate_line(summary["estimate"], path))
        return 0
    if args.slice is not None or args.segments is not None:
        from src.sections.files import write_image_sections

        for f in write_image_sections(args.weights, net, box, out_dir, slice_images=args.slice,
                                      segments=args.segments, segments_seed=args.segments_seed):
            print(f.line)
        return 0
    if sweep:
        rows, paths = count_sweep(args.weights, domains, net=net, out_dir=out_dir, save_each=args.save_each,
                                  time_limit=args.time_limit, progress=not args.quiet, backend=args.backend,
                                  tol=args.tol, threads=args.threads, exact_stability=args.exact_stability,
                                  data_samples=args.data_samples)
        print(sweep_markdown(sweep_summary(rows)))
        print("wrote " + ", ".join(map(str, paths)))
        return 0
    summary = count_run(args.weights, box, backend=args.backend, tol=args.tol, time_limit=args.time_limit,
                            threads=args.threads, workers=args.workers, resume=args.resume, out_dir=args.out_dir,
                            exact_stability=args.exact_stability, progress=not args.quiet, net=net,
                            checkpoint_every=args.checkpoint_every, ray_address=args.ray_address,
                            data_samples=args.data_samples, keep_patterns=not args.count_only)
    print(final_line(summary, out_dir))
    return 130 if summary.get("interrupted") else 0


if __name__ == "__main__":
    run_main(main)
