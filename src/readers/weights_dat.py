"""The authors' weights.dat text format: a thin wrapper over src.weights_io (the one parser)."""
from __future__ import annotations

from pathlib import Path

from ..weights_io import read_weights


def load(path):
    """ReluNet from weights.dat; a defect raises WeightsFormatError (a ToolError) naming FILE:LINE."""
    from ..network import ReluNet

    wf = read_weights(path)
    return ReluNet(wf.weights, wf.biases, meta={**wf.meta, "path": str(Path(path))})
