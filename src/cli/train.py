"""`train_bulk_script.py`: argparse for the regularisation sweep, one call to train_sweep."""
from __future__ import annotations

import argparse

from src.core.defaults import DEFAULT_MODELS_DIR
from src.training.train import ADV_METHODS, train_sweep


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train_bulk_script.py",
        description="Train a sweep of MNIST models (MLPs, CNNs): one run per (l1, adv, dropout) combination, "
                    "ids START, START+1, ... in the order l1 (outer), adv, dropout (inner). Each run goes to "
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
    t.add_argument("--seed", type=int, default=0, help="seed of init, batch order, dropout and attacks (same for every run)")
    t.add_argument("--lr", type=float, default=0.01, help="SGD learning rate")
    t.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    t.add_argument("--batch-size", type=int, default=128, help="mini-batch size")
    t.add_argument("--lr-step", type=int, default=50, help="StepLR step (epochs)")
    t.add_argument("--lr-gamma", type=float, default=0.1, help="StepLR factor")
    t.add_argument("--train-subset", type=int, default=0, help="train on the first N training images only (0 = all 60000)")
    a = p.add_argument_group("adversarial training")
    a.add_argument("--adv-method", choices=ADV_METHODS, default="pgd",
                   help="method used by the default --adv list (fgsm at --adv-eps 0.15 reproduces the authors)")
    a.add_argument("--adv-eps", type=float, default=0.1, help="L_inf radius epsilon")
    a.add_argument("--adv-steps", type=int, default=10, help="PGD steps")
    a.add_argument("--adv-step-size", type=float, default=0.02, help="PGD step size")
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
                force=args.force, epochs=args.epochs, seed=args.seed, lr=args.lr, momentum=args.momentum,
                batch_size=args.batch_size, lr_step=args.lr_step, lr_gamma=args.lr_gamma,
                train_subset=args.train_subset, adv_method=args.adv_method, adv_eps=args.adv_eps,
                adv_steps=args.adv_steps, adv_step_size=args.adv_step_size, workers=args.workers, jobs=args.jobs,
                ray_address=args.ray_address, threads=args.threads, device=args.device, quiet=args.quiet)
    return 0
