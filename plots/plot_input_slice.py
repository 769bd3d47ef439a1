#!/usr/bin/env python
"""Linear regions on a 2-D slice of input space, exactly (convex polygons from src/sections/plane.py).

    python plots/plot_input_slice.py --models-dir forward_pass/activation_pattern/models --runs 100-111
    python plots/plot_input_slice.py -w forward_pass/activation_pattern/models/fcnn_run_100/weights.dat --images 0,1,2
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from src.cli.runner import run_main  # noqa: E402
from src.cli.figures import slice_main  # noqa: E402


def main(argv=None) -> int:
    return slice_main(argv)


if __name__ == "__main__":
    run_main(main)
