#!/usr/bin/env python
"""`make demo`: train a small 12-run sweep, count regions, compress, transform, draw, tabulate, judge the trend.

    python demo.py                      # defaults: mlp:6-6, runs 900-911, outputs in plots/out/demo/
    python demo.py --help               # every flag
"""
from src.ioutils import run_main
from src.demo import main

if __name__ == "__main__":
    run_main(main)
