#!/usr/bin/env python
"""Every figure and the results table for a sweep.

    python plots/make_all.py --models-dir forward_pass/activation_pattern/models --runs 100-111 [--out plots/out]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.cli.runner import run_main  # noqa: E402
from src.cli.figures import make_all_main  # noqa: E402


def main(argv=None) -> int:
    return make_all_main(argv)


if __name__ == "__main__":
    run_main(main)
