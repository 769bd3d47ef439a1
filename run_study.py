#!/usr/bin/env python
"""Reproduce the study in one command: train the sweep, measure every run, test each factor, draw, report.

    python run_study.py --recipe medium --workers 2                       # about an hour on 2 cores
    python run_study.py --recipe full --models-dir /work/runs/full4b/models --out plots/out/study_full
    python run_study.py --recipe full --seeds 0,1,2 --workers 8           # the seed's recipe, three seeds

Killed or stopped by a phase's time limit, the same command continues where it stopped. docs/paper.md.
"""
import argparse
import shlex
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from src.cli.runner import run_main  # noqa: E402
from src.core.defaults import DEFAULT_MODELS_DIR  # noqa: E402
from src.core.errors import ToolError  # noqa: E402
from src.report.study import RECIPES, Study, paper_answer, recipe_from, run_study, verdict_lines  # noqa: E402


def _ints(text, flag):
    try:
        v = tuple(int(t) for t in str(text).split(","))
    except ValueError:
        raise ToolError(f"{flag}: expected comma-separated integers, got {text!r}") from None
    return v


def _floats(text, flag):
    try:
        return tuple(float(t) for t in str(text).split(","))
    except ValueError:
        raise ToolError(f"{flag}: expected comma-separated numbers, got {text!r}") from None


def _limit(text, flag):
    """A phase's time limit: seconds > 0, or 'none' (None)."""
    if str(text).lower() == "none":
        return None
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or v == float("inf"):
        raise ToolError(f"{flag} must be > 0 seconds or none, got {text!r}")
    return v


def _rd(field: str) -> str:
    """' (X / Y / Z)': a recipe field's value in the recipes full, medium and tiny."""
    def f(v):
        if v is None:
            return "auto" if field == "widths" else "none"
        if isinstance(v, tuple):
            return ",".join(f"{x:g}" for x in v)
        return f"{v:g}" if isinstance(v, float) else str(v)
    return " (" + " / ".join(f(getattr(RECIPES[n], field)) for n in ("full", "medium", "tiny")) + ")"


# the recipe fields a flag overrides: (flag, metavar, type, help)
OVERRIDES = [
    ("--arch", None, str, "zoo name or mlp:W1-W2-..."),
    ("--epochs", None, int, "training epochs"),
    ("--l1", None, str, "comma list of l1 coefficients"),
    ("--adv", None, str, "comma list of none, pgd, fgsm"),
    ("--dropout", None, str, "comma list of dropout p"),
    ("--seeds", None, str, "training seeds, e.g. 0,1,2 (run ids seed-major)"),
    ("--train-subset", "N", int, "first N training images (0 = all)"),
    ("--adv-eps", "EPS", float, "attack radius; none: the training recipe's"),
    ("--images", "K", int, "local boxes around test images 0..K-1"),
    ("--segments", "M", int, "segments between test images"),
    ("--widths", "L1,L2|auto", str, "the two box widths (auto: the pilot)"),
    ("--width-candidates", "L,...", str, "the pilot's widths, growing"),
    ("--pilot-images", "P", int, "test images of the pilot"),
    ("--handful", "H", int, "the pilot's target: regions the median pilot box holds at the first width"),
    ("--box-time-limit", "S", float, "seconds per local box"),
    ("--local-time-limit", "S|none", str, "seconds for all local boxes"),
    ("--pilot-time-limit", "S|none", str, "seconds for the pilot"),
    ("--global-time-limit", "S", float, "seconds of the global count, per run"),
    ("--estimate", "N", int, "probes of the estimate (0: none)"),
    ("--estimate-time-limit", "S", float, "seconds of the estimate, per run"),
    ("--min-accuracy", "A", float, "a run below this test accuracy is broken"),
]


def build_parser() -> argparse.ArgumentParser:
    m, f = RECIPES["medium"], RECIPES["full"]
    p = argparse.ArgumentParser(
        description="The study of issue 21 in one command: train the l1 x adversarial training x dropout sweep "
                    "(per seed), measure every run (exact 1-D sections along M segments between test images, a "
                    "time-limited global count with the stable units and an estimate, exact local counts in boxes "
                    "around K test images at two widths chosen by a pilot), then the paired tests per factor "
                    "(Wilcoxon signed-rank, median ratios with bootstrap intervals, seeds), the figures and "
                    "<out>/report.md. Every phase skips outputs that are current, so the same command resumes a "
                    "killed or time-limited study. Recipes: "
                    f"full = the seed's ({f.epochs} epochs, K={f.images}, M={f.segments}, --estimate {f.estimate}); "
                    "medium = about 20 minutes per seed on 2 idle cores (1 h 39 min for one seed on a loaded machine) "
                    f"({m.epochs} epochs, K={m.images}, M={m.segments}, no estimate, the local phase limited to "
                    f"{m.local_time_limit:g} s); tiny = the test's (mlp:6-6, "
                    "about a minute). Any field of the recipe can be overridden by its flag. docs/paper.md.")
    p.add_argument("--recipe", default="medium", choices=list(RECIPES),
                   help="the starting settings (default medium)")
    p.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR),
                   help=f"where the run directories are (or go) (default {DEFAULT_MODELS_DIR})")
    p.add_argument("--out", default=None, help="report, table and figures (default plots/out/study_<recipe>)")
    p.add_argument("-s", "--start", type=int, default=100, help="id of the first run; ids seed-major (default 100)")
    p.add_argument("--workers", type=int, default=1,
                   help="train and measure on N Ray workers (a local Ray started here); 1 (default): in this process")
    p.add_argument("--ray-address", default=None, help="join this Ray cluster (also $RAY_ADDRESS)")
    p.add_argument("--no-train", action="store_true",
                   help="do not train: measure the runs whose training is complete (e.g. while a sweep trains)")
    p.add_argument("--formats", default="png,pdf",
                   help="figure formats: a comma list of png, pdf, svg (default png,pdf)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, only errors and the last lines")
    g = p.add_argument_group("recipe overrides (default: the recipe's; shown as full / medium / tiny)")
    for flag, metavar, typ, text in OVERRIDES:
        g.add_argument(flag, type=typ, default=None, metavar=metavar, help=text + _rd(flag[2:].replace("-", "_")))
    g.add_argument("--training-recipe", choices=("seed", "authors"), default=None,
                   help="train_sweep's recipe: the seed's PGD, or the authors' later code's attack and l1"
                        + _rd("training_recipe"))
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    over = {"arch": args.arch, "epochs": args.epochs, "l1": args.l1, "adv": args.adv, "dropout": args.dropout,
            "train_subset": args.train_subset, "training_recipe": args.training_recipe, "adv_eps": args.adv_eps,
            "images": args.images, "segments": args.segments, "pilot_images": args.pilot_images,
            "handful": args.handful, "box_time_limit": args.box_time_limit,
            "global_time_limit": args.global_time_limit, "estimate": args.estimate,
            "estimate_time_limit": args.estimate_time_limit, "min_accuracy": args.min_accuracy}
    if args.seeds is not None:
        over["seeds"] = _ints(args.seeds, "--seeds")
    if args.widths is not None and args.widths != "auto":
        over["widths"] = _floats(args.widths, "--widths")
    if args.width_candidates is not None:
        over["width_candidates"] = _floats(args.width_candidates, "--width-candidates")
    recipe = recipe_from(args.recipe, **over)
    for k in ("local_time_limit", "pilot_time_limit"):
        if getattr(args, k) is not None:
            recipe = replace(recipe, **{k: _limit(getattr(args, k), "--" + k.replace("_", "-"))})
    if args.widths == "auto":
        recipe = replace(recipe, widths=None)
    if args.workers < 1:
        raise ToolError(f"--workers must be >= 1, got {args.workers}")
    from src.cli.figures import _formats
    formats = _formats(args.formats)
    out = Path(args.out) if args.out else Path("plots/out") / f"study_{recipe.name}"
    study = Study(recipe, models_dir=args.models_dir, out=out, start=args.start, workers=args.workers,
                  ray_address=args.ray_address, train=not args.no_train, quiet=args.quiet, formats=formats,
                  command="python run_study.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None
                                                                                      else sys.argv[1:])))
    res = run_study(study)
    if res is not None:
        print("\n".join(paper_answer(res["trend"])))
        if not args.quiet:
            print("\n".join(verdict_lines(res["trend"])))
    print(f"report: {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    run_main(main)
