"""Shared by the benchmarks: train (or reuse) small MNIST nets for timing runs."""
from __future__ import annotations

import sys
from pathlib import Path


def train_nets(work: Path, archs, l1s, epochs: int, subset: int, seed: int) -> list[Path]:
    """Train (or reuse) one small MNIST net per (arch, l1), 1 torch thread; returns their weights.dat paths."""
    import torch

    from src.training.train import TrainConfig, is_complete, train_run

    torch.set_num_threads(1)
    out = []
    for i, (arch, l1) in enumerate((a, l) for a in archs for l in l1s):
        d = Path(work) / "models" / f"{arch.replace(':', '_')}_l1_{l1:g}_e{epochs}_n{subset}_s{seed}"
        if not is_complete(d):
            print(f"training {arch} l1={l1:g} ({epochs} epochs on {subset or 60000} images) -> {d}", file=sys.stderr)
            cfg = TrainConfig(run_id=i, arch=arch, l1=l1, epochs=epochs, train_subset=subset, seed=seed, threads=1)
            train_run(cfg, d, quiet=True, bars=False)
        out.append(d / "weights.dat")
    return out
