"""`python -m src.cli.onnx_export -w NET -o NET.onnx`: export a net (any readable format) to ONNX."""
from __future__ import annotations

import argparse
from pathlib import Path

from src.cli.runner import run_main
from src.core.errors import ToolError
from src.io.readers import FORMATS_HELP, load_net
from src.io.readers.onnx_export import save_onnx


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m src.cli.onnx_export",
                                description="Export a net (any readable format) to ONNX.")
    p.add_argument("-w", "--weights", required=True, metavar="FILE", help=FORMATS_HELP)
    p.add_argument("-o", "--output", required=True, metavar="FILE.onnx", help="the ONNX file to write")
    p.add_argument("--float32", action="store_true", help="write float32 weights (default: float64, exact)")
    args = p.parse_args(argv)
    if Path(args.output).suffix.lower() != ".onnx":
        raise ToolError(f"-o {args.output}: the output must end in .onnx")
    net = load_net(args.weights)
    out = save_onnx(net, args.output, dtype="float32" if args.float32 else "float64",
                    doc=f"exported from {args.weights}")
    print(f"wrote {out} ({net!r}, {'float32' if args.float32 else 'float64'})")
    return 0


if __name__ == "__main__":
    run_main(main)
