"""The ONNX writer: a ReluNet as a chain of Gemm and Relu nodes, readable by onnxruntime and Netron.

    python -m src.cli.onnx_export -w compressed_input_0_1.dat -o compressed.onnx [--float32]   (the command line)

The default element type is DOUBLE: the file holds the float64 weights bit for bit, and
onnxruntime's CPU kernels for Gemm and Relu accept double, so the exported net computes what
ReluNet.forward computes (the tests compare them with rtol = atol = 1e-12). --float32 (dtype=
"float32") rounds every weight to float32 for tools that take float only; its outputs then differ
from the float64 net by float32 rounding (a relative 1e-7 per operation, growing with depth and width).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.io.files import atomic_open

OPSET = 17          # Gemm-13, Relu-14: both typed for float and double

IR_VERSION = 8      # the IR version of opset 17; read by onnxruntime >= 1.11 and by Netron

INPUT, OUTPUT = "input", "output"


def to_onnx(net, dtype: str = "float64", doc: str = ""):
    """onnx.ModelProto of `net`: input [batch, n0] -> (Gemm -> Relu) per hidden layer -> Gemm -> output."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if dtype not in ("float64", "float32"):
        raise ValueError(f"dtype must be 'float64' or 'float32', got {dtype!r}")
    np_t, onnx_t = (np.float64, TensorProto.DOUBLE) if dtype == "float64" else (np.float32, TensorProto.FLOAT)
    nodes, inits = [], []
    cur = INPUT
    L = len(net.weights)
    for l, (w, b) in enumerate(zip(net.weights, net.biases), 1):
        last = l == L
        tag = "output" if last else f"layer{l}"
        inits.append(numpy_helper.from_array(np.asarray(w, dtype=np_t), name=f"W{l}"))
        inits.append(numpy_helper.from_array(np.asarray(b, dtype=np_t), name=f"b{l}"))
        gemm_out = OUTPUT if last else f"{tag}_preactivation"
        nodes.append(helper.make_node("Gemm", [cur, f"W{l}", f"b{l}"], [gemm_out], name=f"{tag}_gemm",
                                      transB=1))
        if not last:
            cur = f"{tag}_relu"
            nodes.append(helper.make_node("Relu", [gemm_out], [cur], name=cur))
    graph = helper.make_graph(
        nodes, "relu_net",
        [helper.make_tensor_value_info(INPUT, onnx_t, ["batch", net.n_inputs])],
        [helper.make_tensor_value_info(OUTPUT, onnx_t, ["batch", net.n_outputs])],
        initializer=inits,
        doc_string=f"ReLU net {'-'.join(map(str, net.layer_sizes))}; hidden layers Gemm+Relu, output Gemm (linear)")
    model = helper.make_model(graph, producer_name="relu-regions toolkit (src/io/readers/onnx_export.py)",
                              opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION,
                              doc_string=doc)
    helper.set_model_props(model, {"layer_sizes": "-".join(map(str, net.layer_sizes)), "dtype": dtype})
    onnx.checker.check_model(model)
    return model


def save_onnx(net, path, dtype: str = "float64", doc: str = "") -> Path:
    """Write `net` as ONNX to `path` atomically (a temp file renamed into place); returns the path."""
    model = to_onnx(net, dtype=dtype, doc=doc)
    try:
        data = model.SerializeToString()
    except ValueError as e:     # protobuf's 2 GB limit
        raise ToolError(f"{path}: the net is too large for a single ONNX file ({e})") from None
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fh.write(data)
    return path


def save_torch_onnx(model, path, input_shape) -> Path:
    """Write a trained torch nn.Sequential as ONNX to `path` atomically, in the model's own precision
    (torch.onnx.export, the TorchScript exporter: dynamo=False, no onnxscript needed; eval mode, so Dropout
    is dropped). A leading nn.Unflatten(1, (C, H, W)) is left out and the graph takes images: input `x`
    [batch, *shape after it] (the exporter would write the Unflatten as Shape/Concat/Reshape nodes, which
    no reader takes); otherwise input `x` [batch, *input_shape]. Output `y` [batch, n_classes].
    The file is read back by src.io.readers.onnx_model (Conv, AveragePool, Flatten, Gemm, Relu)."""
    import io
    import warnings

    import torch
    from torch import nn

    shape = tuple(int(s) for s in input_shape)
    if type(model) is nn.Sequential and len(model) and type(model[0]) is nn.Unflatten:
        shape = tuple(int(s) for s in model[0].unflattened_size)
        model = model[1:]
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")         # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (torch.zeros((1,) + shape, dtype=param.dtype, device=param.device),), buf,
                              dynamo=False, input_names=["x"], output_names=["y"], opset_version=OPSET,
                              dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}})
    finally:
        model.train(was_training)
    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fh.write(buf.getvalue())
    return path
