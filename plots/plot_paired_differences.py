#!/usr/bin/env python
"""The paired differences per factor behind the verdict (log2 treated / baseline per image or segment).

    python plots/plot_paired_differences.py --models-dir forward_pass/activation_pattern/models --runs 100-111 [--out plots/out]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.cli.runner import run_main  # noqa: E402
from src.cli.figures import figure_main  # noqa: E402


def main(argv=None) -> int:
    return figure_main("paired_differences", argv)


if __name__ == "__main__":
    run_main(main)
