"""ONNX (.onnx, the `onnx` package): a chain of Gemm / MatMul+Add / Relu / Flatten / Reshape / Identity.

The graph is followed from its single input to its single output; every node on the way must be one
of the supported ones, and the input's tensor must not branch (each value is used by one node):

  Gemm(A, B, C)   Y = alpha * A B' + beta * C with B' = B^T when transB=1; A is the input path
                  (transA must be 0), B and C are constants (initializers or Constant nodes),
                  C broadcast over the batch. Becomes W = alpha * B'^T, b = beta * C.
  MatMul(A, B)    A on the path, B a constant 2-D matrix; W = B^T, bias 0 until ...
  Add(Y, c)       ... an Add of a constant right after a MatMul (or a Gemm without C): the bias.
  Relu            the ReLU of a hidden layer (repeated Relus are one Relu).
  Flatten         axis=1: a no-op on the flat [batch, n] input (or row-major flattening of an image).
  Reshape         only to [batch, n] with batch given as 0 or -1: a no-op on a flat input (refused
                  when it would change the feature layout).
  Identity        a no-op.

Two affine nodes with no Relu between them are refused (merging them would not be exact), as are a
Relu before the first affine node and a Relu on the output. Constant nodes may supply constants.
Any other node -> ToolError `FILE: node 'NAME' (OpType) is not supported; supported: ...`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.core.network import ReluNet

SUPPORTED = "Gemm, MatMul+Add, Relu, Flatten, Reshape, Identity"

_DEFAULT_DOMAINS = ("", "ai.onnx")


class _Affine:
    def __init__(self, W, b, node, bias_open):
        self.W, self.b, self.node, self.bias_open = W, b, node, bias_open


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
    rank = len(dims) if dims is not None else None
    feat = None                     # number of features of the current [batch, n] tensor, when known
    if dims is not None and rank >= 2 and all(d.HasField("dim_value") for d in dims[1:]):
        feat = int(np.prod([d.dim_value for d in dims[1:]]))
    if rank is not None and rank < 2:
        fail(f"the input {x.name!r} has rank {rank}; need [batch, features]")

    cur = x.name                    # the tensor on the input's path
    used_by: dict[str, str] = {}    # path tensor -> the node that used it (to detect branches)
    path_names = {cur}
    ops: list = []                  # _Affine and "relu", in order
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
        pos = list(node.input).index(cur)
        t = node.op_type
        prev = ops[-1] if ops else None

        if t in ("Gemm", "MatMul", "Add") and not (2 <= len(node.input) <= (3 if t == "Gemm" else 2)):
            fail(f"{where}: {len(node.input)} inputs; not supported")
        if t in ("Gemm", "MatMul"):
            if pos != 0:
                fail(f"{where}: the input path must be the first operand (A), not operand {pos + 1}")
            if rank is not None and rank != 2:
                fail(f"{where}: its input has rank {rank}; put a Flatten before it")
            if isinstance(prev, _Affine):
                fail(f"{where} follows node {prev.node!r} ({'affine'}) without a Relu between them; "
                     "merging two affine layers would not be exact, so it is refused")
            B = const(node.input[1], where)
            if B.ndim != 2:
                fail(f"{where}: the weight {node.input[1]!r} has shape {list(B.shape)}; need a 2-D matrix")
            B = _weights(B, f"{source}: {where}: {node.input[1]!r}")
            if t == "Gemm":
                extra = set(attrs) - {"alpha", "beta", "transA", "transB"}
                if extra:
                    fail(f"{where}: attribute(s) {', '.join(sorted(extra))} not supported")
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
            if feat is not None and W.shape[1] != feat:
                fail(f"{where} takes {W.shape[1]} inputs but its input {cur!r} has {feat} features")
            if not np.isfinite(W).all() or not np.isfinite(b).all():
                fail(f"{where}: alpha/beta scaling overflows")
            ops.append(_Affine(W, b, label, bias_open=not has_c))
            feat, rank = W.shape[0], 2
        elif t == "Add":
            if not (isinstance(prev, _Affine) and prev.bias_open and last_node == prev.node):
                fail(f"{where} is supported only as the bias right after a MatMul (MatMul+Add)")
            other = node.input[1 - pos]
            c = _weights(const(other, where), f"{source}: {where}: {other!r}")
            prev.b = _bias(c, prev.W.shape[0], f"{source}: {where}: {other!r}")
            prev.bias_open = False
        elif t == "Relu":
            if prev is None:
                fail(f"{where} comes before any Gemm/MatMul; the net must start with an affine layer")
            if prev != "relu":
                ops.append("relu")
        elif t == "Flatten":
            axis = num("axis", 1, int)
            if not (axis == 1 or (rank == 2 and axis == -1)):
                fail(f"{where}: axis={axis}; only axis=1 (keep the batch, flatten the rest) is supported")
            rank = 2
        elif t == "Reshape":
            if len(node.input) != 2 or node.input[1] not in consts:
                fail(f"{where}: the target shape must be a constant")
            shape = const(node.input[1], where)
            if shape.dtype.kind not in "iu" or shape.ndim != 1:
                fail(f"{where}: the target shape {node.input[1]!r} is not a 1-D integer tensor")
            shape = [int(s) for s in shape]
            zero_ok = not num("allowzero", 0, int)
            ok = len(shape) == 2 and (
                (shape[0] in ((0, -1) if zero_ok else (-1,)) and shape[1] > 0 and (feat is None or shape[1] == feat))
                or (zero_ok and shape[0] == 0 and shape[1] == -1))
            if not ok:
                fail(f"{where}: reshape to {shape} would change the feature layout; only [0 or -1, n] "
                     "(or [0, -1]) reshapes to a flat [batch, n] tensor are supported")
            if shape[1] > 0:
                feat = shape[1]
            rank = 2
        elif t == "Identity":
            pass
        else:
            unsupported()
        if len(node.output) < 1 or not node.output[0]:
            fail(f"{where} has no output")
        if len([o for o in node.output if o]) != 1:
            fail(f"{where}: more than one output is not supported")
        cur = node.output[0]
        path_names.add(cur)
        last_node = label

    out = g.output[0].name
    if out != cur:
        if out in path_names:
            fail(f"the graph output {out!r} is not the end of the input's chain (which ends at {cur!r})")
        fail(f"the graph output {out!r} does not depend on the input {x.name!r} through supported nodes")
    if not ops:
        fail("no Gemm or MatMul node: the graph has no affine layer")
    if ops[-1] == "relu":
        fail(f"the graph ends with a Relu (node {last_node!r}); the output layer must be linear")
    layers = [o for o in ops if o != "relu"]
    return ReluNet([o.W for o in layers], [o.b for o in layers], meta={"format": "onnx"})
