#!/usr/bin/env python
"""Training throughput: in-memory batching (src.training.train) vs a plain DataLoader loop.

Same model (default fcnn4b), same SGD step, 1 torch thread, measured in one run:
  in-memory   : whole training set as one tensor, batches sliced from a seeded permutation
                (src.training.train.train_epoch, the code the sweep runs)
  dataloader  : DataLoader(TensorDataset(X, y), batch_size, shuffle=True), num_workers=0
  dl-mnist    : DataLoader(torchvision MNIST with ToTensor), the usual tutorial loop
Prints samples/s of each and the ratios (target: in-memory >= 3x the DataLoader), then the
epoch time of the model on 1 thread: a full epoch (60000 images) is measured unless
--epoch-batches N limits it to N batches and extrapolates (said so in the output).
"""
import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from src.io.mnist import ensure_mnist, load_mnist_tensors  # noqa: E402
from src.training.models import build_model  # noqa: E402
from src.training.train import TrainConfig, train_epoch  # noqa: E402


def step(model, opt, xb, yb):
    loss = F.nll_loss(F.log_softmax(model(xb), dim=1), yb)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_loader(loader, model, opt, n_batches, flatten=False):
    it = iter(loader)
    xb, yb = next(it)  # warm-up (worker-less, but first batch pays allocation)
    step(model, opt, xb.view(len(xb), -1) if flatten else xb, yb)
    seen, t = 0, time.perf_counter()
    for _ in range(n_batches):
        try:
            xb, yb = next(it)
        except StopIteration:
            it = iter(loader)
            xb, yb = next(it)
        step(model, opt, xb.view(len(xb), -1) if flatten else xb, yb)
        seen += len(xb)
    return seen / (time.perf_counter() - t)


def bench_inmemory(model, opt, X, y, cfg, n_batches):
    n = n_batches * cfg.batch_size
    gen = torch.Generator().manual_seed(0)
    train_epoch(model, opt, X[:cfg.batch_size], y[:cfg.batch_size], cfg, gen)  # warm-up
    # train_epoch walks a permutation of the rows it is given: give it a random n-row slice of the full set
    idx = torch.randperm(len(X), generator=gen)[:n]
    Xs, ys = X[idx], y[idx]
    t = time.perf_counter()
    train_epoch(model, opt, Xs, ys, cfg, gen)
    return n / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="fcnn4b")
    ap.add_argument("--batches", type=int, default=150, help="batches timed per method")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epoch-batches", type=int, default=0,
                    help="time only N batches of the epoch and extrapolate (0 = full epoch)")
    ap.add_argument("--no-mnist-loader", action="store_true", help="skip the torchvision-MNIST DataLoader variant")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ensure_mnist()
    X, y = load_mnist_tensors("train")
    cfg = TrainConfig(run_id=0, arch=args.arch, batch_size=args.batch_size, epochs=1, threads=args.threads)

    def fresh():
        m = build_model(args.arch, seed=0)
        return m, torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9)

    print(f"{args.arch}, batch {args.batch_size}, {args.threads} thread(s), {args.batches} batches per method, "
          f"torch {torch.__version__}")
    res = {}
    m, o = fresh()
    res["in-memory"] = bench_inmemory(m, o, X, y, cfg, args.batches)
    m, o = fresh()
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y), batch_size=args.batch_size, shuffle=True)
    res["dataloader"] = bench_loader(dl, m, o, args.batches)
    if not args.no_mnist_loader:
        from src.io.torchvision_compat import import_torchvision

        tv = import_torchvision()
        ds = tv.datasets.MNIST(str(ensure_mnist().parent.parent), train=True, download=False,
                               transform=tv.transforms.ToTensor())
        m, o = fresh()
        res["dl-mnist"] = bench_loader(torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True),
                                       m, o, args.batches, flatten=True)
    for k, v in res.items():
        print(f"  {k:<11} {v:10.0f} samples/s")
    # the data path alone (no model step): what the batching itself costs
    t = time.perf_counter()
    perm = torch.randperm(len(X), generator=torch.Generator().manual_seed(2))
    for i in range(0, len(X), args.batch_size):
        idx = perm[i:i + args.batch_size]
        xb, yb = X[idx], y[idx]
    data_mem = len(X) / (time.perf_counter() - t)
    t = time.perf_counter()
    for xb, yb in dl:
        pass
    data_dl = len(X) / (time.perf_counter() - t)
    print(f"  data path only (one epoch, no model step): in-memory {data_mem:.0f} samples/s, "
          f"DataLoader(TensorDataset) {data_dl:.0f} samples/s ({data_mem / data_dl:.1f}x)")
    print(f"ratio in-memory / DataLoader(TensorDataset): {res['in-memory'] / res['dataloader']:.2f}x (target >= 3x)")
    if "dl-mnist" in res:
        print(f"ratio in-memory / DataLoader(MNIST, ToTensor): {res['in-memory'] / res['dl-mnist']:.2f}x")

    m, o = fresh()
    n_total = len(X)
    gen = torch.Generator().manual_seed(1)
    if args.epoch_batches:
        n = min(args.epoch_batches * args.batch_size, n_total)
        t = time.perf_counter()
        train_epoch(m, o, X[:n], y[:n], cfg, gen)
        secs = (time.perf_counter() - t) * n_total / n
        how = f"extrapolated from {n} of {n_total} images"
    else:
        t = time.perf_counter()
        train_epoch(m, o, X, y, cfg, gen)
        secs = time.perf_counter() - t
        how = "measured on the full epoch"
    print(f"{args.arch} epoch time on {args.threads} thread(s): {secs:.2f} s ({how}); "
          f"120 epochs ~ {120 * secs / 60:.1f} min without adversarial training")
    # PGD costs (steps + 1) forward/backward passes per batch: measure a slice of it too
    pcfg = TrainConfig(run_id=0, arch=args.arch, batch_size=args.batch_size, epochs=1, adv="pgd")
    n = min(20 * args.batch_size, n_total)
    t = time.perf_counter()
    train_epoch(m, o, X[:n], y[:n], pcfg, gen)
    psecs = (time.perf_counter() - t) * n_total / n
    print(f"{args.arch} PGD-{pcfg.adv_steps} epoch time: {psecs:.2f} s (extrapolated from {n} images); "
          f"120 epochs ~ {120 * psecs / 60:.1f} min")


if __name__ == "__main__":
    main()
