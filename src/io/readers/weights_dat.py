"""The authors' weights.dat text format: a thin wrapper over src.io.weights_file (the one parser)."""
from __future__ import annotations

from pathlib import Path

from src.core.network import ReluNet
from src.io.weights_file import read_weights


def load(path):
    """ReluNet from weights.dat; a defect raises WeightsFormatError (a ToolError) naming FILE:LINE."""

    wf = read_weights(path)
    return ReluNet(wf.weights, wf.biases, meta={**wf.meta, "path": str(Path(path))})
