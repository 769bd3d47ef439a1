#!/usr/bin/env python
"""`make demo`: train a small 12-run sweep, count regions, compress, transform, draw, tabulate, judge the trend.

    python demo.py                      # defaults: mlp:6-6, runs 900-911, outputs in plots/out/demo/
    python demo.py --help               # every flag
"""
import os

# --jobs steps run at once (in this process and its workers, which inherit this): one BLAS thread
# each, as the scripts' own processes had (set before numpy is imported)
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

from src.cli.demo import main  # noqa: E402
from src.cli.runner import run_main  # noqa: E402

if __name__ == "__main__":
    run_main(main)
