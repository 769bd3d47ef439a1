"""Command lines: argparse, one library call, printing and exit codes."""
