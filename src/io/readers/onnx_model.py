"""ONNX (.onnx, the `onnx` package): a feed-forward chain of affine nodes and Relus, read as a ReluNet.

The graph is followed from its single input to its single output; every node on the way must be one
of the supported ones, and the input's tensor must not branch (each value is used by one node). The
per-sample shape of the tensor on the path is tracked from the graph input's dims ([batch, n] for a
flat input, [batch, C, H, W] for an image); every affine node becomes a layer of
src/io/readers/layers.py, and every chain of them between two Relus is composed into one layer of
the ReluNet (layers.compose_net). Tensors are flattened in C order (channel, row, column).

  Gemm(A, B, C)   Y = alpha * A B' + beta * C with B' = B^T when transB=1; A is the input path
                  (transA must be 0, A flat), B and C constants (initializers or Constant nodes), C
                  broadcast over the batch. Becomes W = alpha * B'^T, b = beta * C.
  MatMul(A, B)    A on the (flat) path, B a constant 2-D matrix; W = B^T, bias 0 until ...
  Add(Y, c)       ... an Add of a constant right after a MatMul (or a Gemm without C): the bias.
  Conv            2-D (input [batch, C, H, W]): strides, pads, dilations, group, kernel_shape;
                  auto_pad NOTSET or VALID; W and the optional B constants.
  AveragePool     2-D: kernel_shape, strides, pads, count_include_pad; ceil_mode=0, dilations 1.
  BatchNormalization   inference form (one output, training_mode=0): folded with its statistics.
  Relu            the ReLU of a hidden layer (repeated Relus are one Relu).
  Flatten         axis=1: keep the batch, flatten the rest (C order).
  Reshape         only to [batch, n] with batch given as 0 or -1 (a flattening or a no-op; refused
                  when it would change the feature layout).
  Dropout, Identity   no-ops (Dropout as in inference; a constant training_mode must be false).

A Relu before the first affine node and a Relu on the output are refused. Any other node ->
ToolError `FILE: node 'NAME' (OpType) is not supported; supported: ...`; an Add of two computed
tensors (a residual connection) and any other branch are refused with one line naming the node.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.io.readers.layers import (AvgPool2d, Conv2d, Dense, Relu, batchnorm,
                                   compose_net)

SUPPORTED = ("Gemm, MatMul+Add, Conv, AveragePool, BatchNormalization, Relu, Flatten, Reshape, Dropout, "
             "Identity")

_DEFAULT_DOMAINS = ("", "ai.onnx")


def _node_label(node, i: int) -> str:
    return node.name or (f"#{i} -> {node.output[0]}" if node.output else f"#{i}")


def _op_label(node) -> str:
    op = node.op_type if node.domain in _DEFAULT_DOMAINS else f"{node.domain}.{node.op_type}"
    return op if op.isprintable() else repr(op)[1:-1]      # one line, whatever the file holds


def load(path):
    """ReluNet from an .onnx file (rules in the module docstring); one-line ToolError on any defect."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise ToolError(f"{path}: {'not a file' if path.exists() else 'file not found'}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as e:
        raise ToolError(f"{path}: not a valid ONNX file ({e.__class__.__name__})") from None
    if not model.HasField("graph") or not len(model.graph.node):
        raise ToolError(f"{path}: not a valid ONNX file (no graph or no nodes)")
    try:
        if any(onnx.external_data_helper.uses_external_data(t) for t in model.graph.initializer):
            onnx.external_data_helper.load_external_data_for_model(model, str(path.parent))
    except Exception as e:
        raise ToolError(f"{path}: cannot read the external data of the model ({e.__class__.__name__}: "
                        f"{str(e).splitlines()[0][:200] if str(e) else ''})") from None
    try:
        return from_onnx_model(model, source=str(path))
    except ToolError:
        raise
    except Exception as e:      # a damaged model that slipped past the checks above: still one line
        msg = str(e).splitlines()[0][:200] if str(e) else ""
        raise ToolError(f"{path}: malformed ONNX model ({e.__class__.__name__}: {msg})") from None


def _to_array(tensor, where: str) -> np.ndarray:
    from onnx import numpy_helper

    try:
        return np.asarray(numpy_helper.to_array(tensor))
    except Exception as e:
        raise ToolError(f"{where}: unreadable tensor ({e.__class__.__name__})") from None


def _weights(a: np.ndarray, where: str) -> np.ndarray:
    if a.dtype.kind in "iubcOSU":
        raise ToolError(f"{where}: dtype {a.dtype} is not a floating-point type")
    a = np.asarray(a, dtype=np.float64)
    if not np.isfinite(a).all():
        raise ToolError(f"{where}: contains NaN or infinite values")
    return a


def _bias(c: np.ndarray, n: int, where: str) -> np.ndarray:
    """A constant added to a [batch, n] tensor, as a length-n vector (broadcast over the batch only)."""
    if c.ndim > 2 or (c.ndim == 2 and c.shape[0] != 1) or (c.ndim >= 1 and c.shape[-1] not in (1, n)):
        raise ToolError(f"{where}: a constant of shape {list(c.shape)} cannot be a bias of {n} units "
                        "(it must broadcast over the batch: [], [n], [1, n])")
    return np.broadcast_to(c.reshape(-1) if c.ndim else c, (n,)).astype(np.float64)


def _shape_text(shape) -> str:
    return "[batch, " + ", ".join(map(str, shape)) + "]" if shape is not None else "an unknown shape"


def from_onnx_model(model, source: str = "model"):
    """ReluNet from an onnx.ModelProto; `source` names the file in error messages."""
    from onnx import helper

    g = model.graph

    def fail(msg):
        raise ToolError(f"{source}: {msg}")

    consts: dict[str, object] = {init.name: init for init in g.initializer}   # converted lazily
    for sp in g.sparse_initializer:
        consts[sp.values.name] = None                                      # refused when used

    def const(name, where) -> np.ndarray:
        v = consts[name]
        if v is None:
            fail(f"{where}: sparse initializer {name!r} is not supported")
        if not isinstance(v, np.ndarray):
            v = consts[name] = _to_array(v, f"{source}: {where}: initializer {name!r}")
        return v

    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        fail(f"the graph has {len(inputs)} inputs ({', '.join(repr(i.name) for i in inputs) or 'none'}); "
             "need exactly one")
    if len(g.output) != 1:
        fail(f"the graph has {len(g.output)} outputs; need exactly one")
    x = inputs[0]
    dims = list(x.type.tensor_type.shape.dim) if x.type.tensor_type.HasField("shape") else None
    rank = len(dims) if dims is not None else None     # rank of the path's tensor, batch included; None: unknown
    shape = None                    # its per-sample shape (no batch), when known
    if dims is not None and rank >= 2 and all(d.HasField("dim_value") and d.dim_value > 0 for d in dims[1:]):
        shape = tuple(int(d.dim_value) for d in dims[1:])
    if rank is not None and rank < 2:
        fail(f"the input {x.name!r} has rank {rank}; need [batch, features] or [batch, channels, height, width]")
    input_shape = shape

    cur = x.name                    # the tensor on the input's path
    used_by: dict[str, str] = {}    # path tensor -> the node that used it (to detect branches)
    path_names = {cur}
    items: list = []                # layers.Layer and layers.Relu, in order
    open_bias = None                # (Dense, node label): a MatMul/Gemm whose bias an Add right after may give
    last_node = None

    for i, node in enumerate(g.node):
        label = _node_label(node, i)
        op = _op_label(node)
        where = f"node {label!r} ({op})"

        def unsupported():
            fail(f"{where} is not supported; supported: {SUPPORTED}")

        on_path = [n for n in node.input if n in path_names]
        if not on_path:
            if node.op_type == "Constant" and node.domain in _DEFAULT_DOMAINS and len(node.output) == 1:
                attr = {a.name: a for a in node.attribute}
                if "value" in attr:
                    consts[node.output[0]] = attr["value"].t
                elif attr.keys() & {"value_float", "value_floats", "value_int", "value_ints"}:
                    a = next(iter(attr.values()))
                    consts[node.output[0]] = np.asarray(helper.get_attribute_value(a))
                else:
                    unsupported()
                continue
            if node.op_type == "Identity" and node.domain in _DEFAULT_DOMAINS and node.input \
                    and node.input[0] in consts:
                consts[node.output[0]] = consts[node.input[0]]
                continue
            unsupported()
        if node.domain not in _DEFAULT_DOMAINS:
            unsupported()
        if node.op_type == "Add" and len(on_path) == 2:
            fail(f"{where} is not supported: it adds two tensors computed from the input (a residual connection: "
                 f"the graph branches); supported: {SUPPORTED}")
        for n in on_path:
            if n != cur or n in used_by:
                first = used_by.get(n)
                fail(f"{where}: the graph branches at {n!r}" + (f" (also used by node {first!r})" if first else "")
                     + "; only a chain from the input to the output is supported")
            used_by[n] = label
        if len(on_path) != 1:
            unsupported()
        for n in node.input:
            if n and n not in path_names and n not in consts:
                fail(f"{where} reads {n!r}, which no initializer, Constant node or earlier node defines")
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}

        def num(name, default, kind):
            v = attrs.get(name, default)
            if isinstance(v, (bytes, str, list)) or v is None:
                fail(f"{where}: attribute {name} is not a number")
            return kind(v)

        def ints(name, default, n):
            v = attrs.get(name, default)
            if not isinstance(v, list) or len(v) != n or not all(isinstance(e, int) for e in v):
                fail(f"{where}: attribute {name}={v!r}; need {n} integers")
            return [int(e) for e in v]

        def only(allowed):
            extra = set(attrs) - set(allowed)
            if extra:
                fail(f"{where}: attribute(s) {', '.join(sorted(extra))} not supported")

        def image_shape(what):
            if shape is None or len(shape) != 3:
                fail(f"{where}: its input has {_shape_text(shape) if shape is not None else 'an unknown shape'}; "
                     f"{what} needs [batch, channels, height, width] with known sizes")
            return shape

        def auto_pad():
            ap = attrs.get("auto_pad", b"NOTSET")
            ap = ap.decode("utf-8", "replace") if isinstance(ap, bytes) else str(ap)
            if ap not in ("NOTSET", "VALID"):
                fail(f"{where}: auto_pad={ap!r} is not supported; only NOTSET (explicit pads) and VALID")
            if ap == "VALID" and any(attrs.get("pads", [0])):
                fail(f"{where}: auto_pad='VALID' with nonzero pads")
            return ap

        def layer(make):
            try:
                return make()
            except ToolError as e:
                fail(str(e))

        pos = list(node.input).index(cur)
        t = node.op_type
        n_inputs = {"Gemm": (2, 3), "MatMul": (2, 2), "Add": (2, 2), "Conv": (2, 3), "AveragePool": (1, 1),
                    "BatchNormalization": (5, 5)}.get(t)
        if n_inputs and not (n_inputs[0] <= len(node.input) <= n_inputs[1]):
            fail(f"{where}: {len(node.input)} inputs; not supported")
        if t in ("Conv", "BatchNormalization") and pos != 0:
            fail(f"{where}: the input path must be the first operand (X), not operand {pos + 1}")
        outputs = [o for o in node.output if o]
        if len(node.output) < 1 or not node.output[0]:
            fail(f"{where} has no output")
        if len(outputs) != 1 and not (t == "Dropout" and len(node.output) == 2):
            if t == "BatchNormalization":
                fail(f"{where}: {len(outputs)} outputs (the training form, which updates running statistics); "
                     "only the inference form with one output is supported")
            fail(f"{where}: more than one output is not supported")

        if t in ("Gemm", "MatMul"):
            if pos != 0:
                fail(f"{where}: the input path must be the first operand (A), not operand {pos + 1}")
            if rank is not None and rank != 2:
                fail(f"{where}: its input has rank {rank}; put a Flatten before it")
            B = const(node.input[1], where)
            if B.ndim != 2:
                fail(f"{where}: the weight {node.input[1]!r} has shape {list(B.shape)}; need a 2-D matrix")
            B = _weights(B, f"{source}: {where}: {node.input[1]!r}")
            if t == "Gemm":
                only({"alpha", "beta", "transA", "transB"})
                if num("transA", 0, int) != 0:
                    fail(f"{where}: transA=1 on the input path is not supported")
                alpha = num("alpha", 1.0, float)
                beta = num("beta", 1.0, float)
                W = (B if num("transB", 0, int) else B.T)
                W = np.ascontiguousarray(W * alpha if alpha != 1.0 else W)
                has_c = len(node.input) > 2 and node.input[2] != ""
                if has_c:
                    c = _weights(const(node.input[2], where), f"{source}: {where}: {node.input[2]!r}")
                    b = _bias(c, W.shape[0], f"{source}: {where}: C {node.input[2]!r}")
                    b = b * beta if beta != 1.0 else b.copy()
                else:
                    b = np.zeros(W.shape[0])
            else:
                W, b, has_c = np.ascontiguousarray(B.T), np.zeros(B.shape[1]), False
            if shape is not None and W.shape[1] != shape[0]:
                fail(f"{where} takes {W.shape[1]} inputs but its input {cur!r} has {shape[0]} features")
            if not np.isfinite(W).all() or not np.isfinite(b).all():
                fail(f"{where}: alpha/beta scaling overflows")
            dense = Dense(W, b, label=where)
            items.append(dense)
            open_bias = None if has_c else (dense, label)
            shape, rank = (W.shape[0],), 2
        elif t == "Add":
            if open_bias is None or last_node != open_bias[1]:
                fail(f"{where} is supported only as the bias right after a MatMul (MatMul+Add)")
            other = node.input[1 - pos]
            dense = open_bias[0]
            c = _weights(const(other, where), f"{source}: {where}: {other!r}")
            dense.bias = _bias(c, dense.W.shape[0], f"{source}: {where}: {other!r}")
            open_bias = None
        elif t == "Conv":
            only({"auto_pad", "dilations", "group", "kernel_shape", "pads", "strides"})
            in_shape = image_shape("a 2-D Conv")
            K = const(node.input[1], where)
            if K.ndim != 4:
                fail(f"{where}: the weight {node.input[1]!r} has shape {list(K.shape)}; a 2-D Conv needs "
                     "[C_out, C_in/group, kh, kw]")
            K = _weights(K, f"{source}: {where}: {node.input[1]!r}")
            if "kernel_shape" in attrs and ints("kernel_shape", None, 2) != list(K.shape[2:]):
                fail(f"{where}: kernel_shape={attrs['kernel_shape']} but the weight has shape {list(K.shape)}")
            auto_pad()
            pads = ints("pads", [0, 0, 0, 0], 4)          # [top, left, bottom, right]
            bias = None
            if len(node.input) > 2 and node.input[2] != "":
                bias = _weights(const(node.input[2], where), f"{source}: {where}: {node.input[2]!r}")
                if bias.shape != (K.shape[0],):
                    fail(f"{where}: the bias {node.input[2]!r} has shape {list(bias.shape)}; need [{K.shape[0]}]")
            strides, dilations, group = ints("strides", [1, 1], 2), ints("dilations", [1, 1], 2), num("group", 1, int)
            conv = layer(lambda: Conv2d(K, bias, in_shape, strides, pads, dilations, group, label=where))
            items.append(conv)
            shape, rank = conv.out_shape, 4
        elif t == "AveragePool":
            only({"auto_pad", "ceil_mode", "count_include_pad", "dilations", "kernel_shape", "pads", "strides"})
            in_shape = image_shape("a 2-D AveragePool")
            if num("ceil_mode", 0, int) != 0:
                fail(f"{where}: ceil_mode=1 is not supported; only ceil_mode=0 (floor)")
            if "dilations" in attrs and ints("dilations", None, 2) != [1, 1]:
                fail(f"{where}: dilations={attrs['dilations']} are not supported; only 1")
            if "kernel_shape" not in attrs:
                fail(f"{where}: no kernel_shape")
            auto_pad()
            kernel, strides, pads = ints("kernel_shape", None, 2), ints("strides", [1, 1], 2), ints("pads", [0] * 4, 4)
            include_pad = bool(num("count_include_pad", 0, int))
            pool = layer(lambda: AvgPool2d(in_shape, kernel, strides, pads, include_pad, label=where))
            items.append(pool)
            shape, rank = pool.out_shape, 4
        elif t == "BatchNormalization":
            only({"epsilon", "momentum", "training_mode", "spatial", "is_test"})
            if num("training_mode", 0, int) != 0:
                fail(f"{where}: training_mode=1 is not supported (it normalises by the batch's statistics); "
                     "export the model in eval mode")
            if num("spatial", 1, int) != 1:
                fail(f"{where}: spatial=0 is not supported")
            scale, beta, mean, var = (_weights(const(n, where), f"{source}: {where}: {n!r}") for n in node.input[1:])
            if shape is None and rank in (None, 2):
                shape = (mean.size,)
            if shape is None:
                fail(f"{where}: its input has an unknown shape (rank {rank}); need known sizes")
            eps = num("epsilon", 1e-5, float)
            bn = layer(lambda: batchnorm(mean, var, scale, beta, eps, shape, label=where))
            items.append(bn)
        elif t == "Relu":
            only(())
            items.append(Relu(where))
        elif t == "Flatten":
            axis = num("axis", 1, int)
            if not (axis == 1 or (rank == 2 and axis == -1)):
                fail(f"{where}: axis={axis}; only axis=1 (keep the batch, flatten the rest) is supported")
            if shape is not None:
                shape = (math.prod(shape),)
            rank = 2
        elif t == "Reshape":
            if len(node.input) != 2 or node.input[1] not in consts:
                fail(f"{where}: the target shape must be a constant")
            target = const(node.input[1], where)
            if target.dtype.kind not in "iu" or target.ndim != 1:
                fail(f"{where}: the target shape {node.input[1]!r} is not a 1-D integer tensor")
            target = [int(s) for s in target]
            feat = math.prod(shape) if shape is not None else None
            zero_ok = not num("allowzero", 0, int)
            ok = len(target) == 2 and (
                (target[0] in ((0, -1) if zero_ok else (-1,)) and target[1] > 0 and (feat is None or target[1] == feat))
                or (zero_ok and target[0] == 0 and target[1] == -1))
            if not ok:
                fail(f"{where}: reshape to {target} would change the feature layout; only [0 or -1, n] "
                     "(or [0, -1]) reshapes to a flat [batch, n] tensor are supported")
            if target[1] > 0:
                shape = (target[1],)
            elif shape is not None:
                shape = (feat,)
            rank = 2
        elif t == "Dropout":
            if len(node.input) > 2 and node.input[2]:
                mode = const(node.input[2], where)
                if mode.size != 1 or bool(mode.reshape(-1)[0]):
                    fail(f"{where}: training_mode is true; only inference (a no-op) is supported")
        elif t == "Identity":
            pass
        else:
            unsupported()
        cur = node.output[0]
        path_names.add(cur)
        last_node = label

    out = g.output[0].name
    if out != cur:
        if out in path_names:
            fail(f"the graph output {out!r} is not the end of the input's chain (which ends at {cur!r})")
        fail(f"the graph output {out!r} does not depend on the input {x.name!r} through supported nodes")
    if not any(not isinstance(it, Relu) for it in items):
        fail("no Gemm, MatMul, Conv, AveragePool or BatchNormalization node: the graph has no affine layer")
    meta = {"format": "onnx"}
    if input_shape is not None:
        meta["input_shape"] = list(input_shape)
    return compose_net(items, prefix=f"{source}: ", meta=meta)
