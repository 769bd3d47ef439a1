"""`train_bulk_script.py`: argparse for the regularisation sweep, one call to train_sweep."""
from __future__ import annotations

import argparse

from src.core.defaults import DEFAULT_MODELS_DIR
from src.training.train import ADV_METHODS, RECIPE_ATTACK, RECIPES, train_sweep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_bulk_script.py",
        description="Train a sweep of MNIST models (MLPs, CNNs): one run per (l1, adv, dropout) combination, "
                    "ids START, START+1, ... in the order l1 (outer), adv, dropout (inner), repeated per seed "
                    "with --seeds (outermost). Each run goes to "
                    "MODELS_DIR/fcnn_run_<id>/ (config.json, model.pt, model.onnx, weights.dat (the dense "
                    "equivalent), metrics.json, train.log). "
                    "Complete runs are skipped on re-run.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("sweep")
    g.add_argument("-s", "--start", type=int, default=100, help="id of the first run")
    g.add_argument("-a", "--arch", default="fcnn4b",
                   help="zoo name (fcnn1 ... fcnn6b, cnn_tiny, cnn_small), mlp:W1-W2-... or cnn:L1-L2-... "
                        "(e.g. cnn:c4k5s3-c8k3s2-fc32; grammar in docs/training.md)")
    g.add_argument("--l1", default="0,2e-4,1e-3", help="comma-separated l1 coefficients lambda (loss += lambda*sum|W|)")
    g.add_argument("--adv", default=argparse.SUPPRESS,
                   help="comma-separated adversarial settings: none, pgd, fgsm (default: none,<--adv-method>)")
    g.add_argument("--dropout", default="0,0.3", help="comma-separated dropout p after the last hidden layer")
    g.add_argument("--models-dir", default=str(DEFAULT_MODELS_DIR), help="where the run directories go")
    g.add_argument("--force", action="store_true", help="retrain runs that are already complete")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, default=120, help="training epochs")
    t.add_argument("--seed", type=int, default=argparse.SUPPRESS,
                   help="seed of init, batch order, dropout and attacks, the same for every run (default: 0)")
    t.add_argument("--seeds", default=argparse.SUPPRESS, metavar="LIST",
                   help="comma-separated seeds, e.g. 0,1,2: the whole sweep once per seed, the N combinations "
                        "for the first seed get ids START..START+N-1, for the second START+N..START+2N-1, ...; "
                        "not with --seed")
    t.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--batch-size", type=int, default=128, help="mini-batch size")
    t.add_argument("--lr-step", type=int, default=50, help="StepLR step (epochs)")
    t.add_argument("--lr-gamma", type=float, default=0.1, help="StepLR factor")
    t.add_argument("--train-subset", type=int, default=0, help="train on the first N training images only (0 = all 60000)")
    a = p.add_argument_group("adversarial training")
    a.add_argument("--recipe", choices=RECIPES, default="seed",
                   help="how adversarial batches are trained on. seed: each batch is replaced by its PGD batch "
                        "(random start, gradient recomputed every step, attacked in eval mode; eps 0.1, 10 steps "
                        "of 0.02) and one SGD step is taken on it, l1 over every layer. authors: the authors' "
                        "later code (ExactCompression train_fcnn.py): one SGD step on the clean batch (l1 over "
                        "every layer), then one on its adversarial batch made from that step's input gradient "
                        "(signed steps of 0.1 projected on the eps 0.15 ball and [0, 1]: FGSM at 0.15), l1 over "
                        "the first layer only. Without adversarial training both are the same. "
                        "docs/training.md compares them")
    a.add_argument("--adv-method", choices=ADV_METHODS, default="pgd",
                   help="method used by the default --adv list (fgsm: one step of --adv-eps; not with "
                        "--recipe authors)")
    a.add_argument("--adv-eps", type=float, default=argparse.SUPPRESS,
                   help=f"L_inf radius epsilon (default: {RECIPE_ATTACK['seed']['adv_eps']:g} with --recipe seed, "
                        f"{RECIPE_ATTACK['authors']['adv_eps']:g} with --recipe authors)")
    a.add_argument("--adv-steps", type=int, default=argparse.SUPPRESS,
                   help=f"attack steps (default: {RECIPE_ATTACK['seed']['adv_steps']} PGD steps with --recipe seed, "
                        f"at most {RECIPE_ATTACK['authors']['adv_steps']} fixed-gradient steps with --recipe authors)")
    a.add_argument("--adv-step-size", type=float, default=argparse.SUPPRESS,
                   help=f"attack step size (default: {RECIPE_ATTACK['seed']['adv_step_size']:g} with --recipe seed, "
                        f"{RECIPE_ATTACK['authors']['adv_step_size']:g} with --recipe authors)")
    r = p.add_argument_group("resources")
    r.add_argument("--workers", type=int, default=1, metavar="N",
                   help="train N runs at once as Ray tasks (a local Ray started here unless --ray-address is "
                        "given; 1 = one after the other in this process; docs/cluster.md)")
    r.add_argument("--jobs", type=int, default=None, metavar="N", help="deprecated name of --workers")
    r.add_argument("--ray-address", metavar="ADDR", default=None,
                   help="train on the Ray cluster at HOST:PORT (default: $RAY_ADDRESS if set); with --workers 1 "
                        "every CPU of the cluster is used")
    r.add_argument("--threads", type=int, default=1, help="torch threads per run")
    r.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"), help="training device")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars or per-epoch messages")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    train_sweep(args.start, args.arch, args.l1, getattr(args, "adv", None), args.dropout, models_dir=args.models_dir,
                force=args.force, epochs=args.epochs, seed=getattr(args, "seed", None),
                seeds=getattr(args, "seeds", None), recipe=args.recipe, lr=args.lr, momentum=args.momentum,
                batch_size=args.batch_size, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
                train_subset=args.train_subset, adv_method=args.adv_method, adv_eps=getattr(args, "adv_eps", None),
                adv_steps=getattr(args, "adv_steps", None), adv_step_size=getattr(args, "adv_step_size", None),
                workers=args.workers, jobs=args.jobs,
                ray_address=args.ray_address, threads=args.threads, device=args.device, quiet=args.quiet)
    return 0
