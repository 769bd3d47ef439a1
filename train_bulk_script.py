#!/usr/bin/env python
"""Train a regularisation sweep of fcnn MNIST models (see --help), e.g.

    python train_bulk_script.py -s 100 -a fcnn4b

creates forward_pass/activation_pattern/models/fcnn_run_100 ... fcnn_run_111.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from src.cli.runner import run_main  # noqa: E402
from src.cli.train import main  # noqa: E402

if __name__ == "__main__":
    run_main(main)
