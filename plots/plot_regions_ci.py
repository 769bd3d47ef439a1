#!/usr/bin/env python
"""The exact measures against l1 with bootstrap 95% intervals, seeds pooled, accuracy beside them.

    python plots/plot_regions_ci.py --models-dir forward_pass/activation_pattern/models --runs 100-111 [--out plots/out]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.cli.runner import run_main  # noqa: E402
from src.cli.figures import figure_main  # noqa: E402


def main(argv=None) -> int:
    return figure_main("regions_ci", argv)


if __name__ == "__main__":
    run_main(main)
