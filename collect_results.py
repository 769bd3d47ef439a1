#!/usr/bin/env python
"""The results table of a sweep: one row per run, as CSV and Markdown.

    python collect_results.py --models-dir forward_pass/activation_pattern/models --runs 100-111 [--out plots/out]
"""
from src.cli.results import collect_main
from src.cli.runner import run_main


def main(argv=None) -> int:
    return collect_main(argv)


if __name__ == "__main__":
    run_main(main)
