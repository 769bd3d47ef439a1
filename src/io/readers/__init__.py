"""Readers of networks in several formats, all giving the one representation, ReluNet.

    load_net(path)            weights.dat (.dat), a PyTorch state_dict (.pt/.pth) or ONNX (.onnx),
                              picked by the file's suffix
    torch_state.from_torch_module(module, input_shape=None)   an nn.Sequential of Linear / Conv2d /
                              AvgPool2d / BatchNorm1d/2d / ReLU / Flatten / Dropout / Identity
    torch_state.from_state_dict(sd)         an in-memory state_dict of Linear layers
    onnx_export.save_onnx(net, path)        the writer: a ReluNet as ONNX (Gemm + Relu, float64 by default)
    onnx_export.save_torch_onnx(model, path, input_shape)   a trained nn.Sequential as ONNX (training's model.onnx)
    layers                    the affine layers (Dense, Conv2d, AvgPool2d, BatchNorm) as maps of flattened
                              tensors and compose_net, which composes each chain between two ReLUs

Anything a reader cannot represent as a ReluNet is refused with a ToolError of one line naming the
file and the layer or node (and its type). docs/readers.md describes the rules and how to add a reader.
"""
from __future__ import annotations

from pathlib import Path

from src.core.errors import ToolError
from src.io.readers import onnx_model, torch_state, weights_dat

# suffix (lower case) -> reader; one entry per format, see docs/readers.md "Adding a reader"
READERS = {
    ".dat": weights_dat.load,
    ".pt": torch_state.load,
    ".pth": torch_state.load,
    ".onnx": onnx_model.load,
}

FORMATS_HELP = "the net: weights.dat, a PyTorch state_dict (.pt/.pth) or ONNX (.onnx)"


def load_net(path):
    """The ReluNet in `path`, read by the reader of its suffix; ToolError (one line) on any defect."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        shown = path.suffix or "no suffix"
        raise ToolError(f"{path}: unknown network format ({shown}); accepted: "
                        ".dat (weights.dat), .pt/.pth (PyTorch state_dict), .onnx (ONNX)")
    return reader(path)

