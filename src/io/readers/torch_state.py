"""PyTorch: a state_dict file (.pt/.pth) of Linear layers, and an nn.Sequential in the Python API.

Security: files are read only with torch.load(path, map_location="cpu", weights_only=True), which
unpickles tensors and plain containers and nothing else; a pickled model (torch.save(model)) is
refused, never unpickled.

State-dict rules (the keys of model.state_dict() of an MLP, in their order):
  * every 2-D tensor whose key ends in "weight" is one Linear layer W (out x in), in key order;
  * "<prefix>bias" (1-D, length out) is its bias; a missing bias means zeros;
  * every other tensor (a 4-D Conv weight, a BatchNorm buffer, a 1-D weight, ...) is refused;
  * the layers must chain: in-features of each layer = out-features of the one before;
  * the net is Linear -> ReLU -> ... -> Linear: a ReLU after every layer but the last (a state_dict
    does not record activations; this is the fcnn zoo's layout, src/training/models.py).
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.core.network import ReluNet

SUPPORTED_MODULES = "Linear, ReLU, Flatten, Dropout, Identity (nested Sequential)"


def _guess(shape) -> str:
    return {1: "a bias or normalisation vector", 3: "a Conv1d weight?", 4: "a Conv2d weight?",
            5: "a Conv3d weight?"}.get(len(shape), "not a Linear weight")


def _shape(t) -> str:
    return "x".join(map(str, tuple(t.shape))) or "scalar"


def _array(t, where: str) -> np.ndarray:
    """float64 copy of a torch tensor or numpy array (exact for every float type)."""
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a requirement
        torch = None
    if torch is not None and isinstance(t, torch.Tensor):
        if not (t.is_floating_point()):
            raise ToolError(f"{where}: dtype {str(t.dtype).replace('torch.', '')} is not a floating-point type")
        a = t.detach().to("cpu", torch.float64).numpy().copy()
    elif isinstance(t, np.ndarray):
        if t.dtype.kind != "f":
            raise ToolError(f"{where}: dtype {t.dtype} is not a floating-point type")
        a = t.astype(np.float64)
    else:
        raise ToolError(f"{where}: a {type(t).__name__}, not a tensor; save model.state_dict()")
    if not np.isfinite(a).all():
        raise ToolError(f"{where}: contains NaN or infinite values")
    return a


def from_state_dict(state_dict, source: str = "state_dict"):
    """ReluNet from a state_dict of Linear layers (rules in the module docstring).

    `source` names the file (or object) in error messages: `SOURCE: 'KEY' ...`.
    """

    if not isinstance(state_dict, Mapping):
        raise ToolError(f"{source}: a {type(state_dict).__name__}, not a state_dict; "
                        "save model.state_dict() with torch.save(model.state_dict(), FILE)")
    keys = list(state_dict)
    for k in keys:
        if not isinstance(k, str):
            raise ToolError(f"{source}: key {k!r} is not a string; not a state_dict")
    layers = []                     # (weight key, prefix)
    used = set()
    for k in keys:
        t = state_dict[k]
        shape = getattr(t, "shape", None)
        if shape is None:
            raise ToolError(f"{source}: {k!r} is a {type(t).__name__}, not a tensor; "
                            "save model.state_dict() with torch.save(model.state_dict(), FILE)")
        if k.endswith("weight") and len(shape) == 2:
            layers.append((k, k[: -len("weight")]))
            used.add(k)
    for k, prefix in layers:
        bkey = prefix + "bias"
        if bkey in state_dict:
            used.add(bkey)
    for k in keys:
        if k not in used:
            t = state_dict[k]
            raise ToolError(f"{source}: {k!r} ({_shape(t)}, {_guess(tuple(t.shape))}) is not part of a Linear "
                            f"layer; supported: Linear layers only (2-D '.weight', 1-D '.bias')")
    if not layers:
        raise ToolError(f"{source}: no Linear layer (no 2-D '.weight' tensor)")
    ws, bs = [], []
    for j, (k, prefix) in enumerate(layers):
        w = _array(state_dict[k], f"{source}: {k!r}")
        if j and w.shape[1] != ws[-1].shape[0]:
            raise ToolError(f"{source}: {k!r} has shape {_shape(w)}, so it takes {w.shape[1]} inputs, but the "
                            f"layer before ({layers[j - 1][0]!r}) has {ws[-1].shape[0]} outputs")
        bkey = prefix + "bias"
        if bkey in state_dict:
            b = _array(state_dict[bkey], f"{source}: {bkey!r}")
            if b.shape != (w.shape[0],):
                raise ToolError(f"{source}: {bkey!r} has shape {_shape(b)}, but {k!r} has {w.shape[0]} outputs")
        else:
            b = np.zeros(w.shape[0])
        ws.append(w)
        bs.append(b)
    return ReluNet(ws, bs, meta={"format": "state_dict"})


def load(path):
    """ReluNet from a .pt/.pth file holding a state_dict of Linear layers (weights_only=True)."""

    import torch

    path = Path(path)
    if not path.is_file():
        raise ToolError(f"{path}: {'not a file' if path.exists() else 'file not found'}")
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ToolError(f"{path}: not a state_dict of tensors (torch.load with weights_only=True refused it; "
                        "a pickled model is never unpickled here): save model.state_dict() with "
                        "torch.save(model.state_dict(), FILE)") from None
    except Exception as e:
        raise ToolError(f"{path}: not a readable PyTorch file ({e.__class__.__name__})") from None
    net = from_state_dict(sd, source=str(path))
    net.meta["path"] = str(path)
    return net

# ---- nn.Sequential (Python API) ----------------------------------------------------------


def _flat_modules(module, name=""):
    """(qualified name, module) of the leaves of nested nn.Sequential containers, in order."""
    from torch import nn

    if type(module) is nn.Sequential:
        for child_name, child in module.named_children():
            yield from _flat_modules(child, f"{name}.{child_name}" if name else child_name)
    else:
        yield name or type(module).__name__, module


def from_torch_module(module):
    """ReluNet from an nn.Sequential (nested Sequentials fine) of Linear / ReLU / Flatten / Dropout / Identity.

    The structure must be Linear, ReLU, Linear, ReLU, ..., Linear: an affine layer first and last,
    and a ReLU between any two Linear layers. Two Linear layers without a ReLU between them are
    refused, not merged: their product W2 W1 is not exactly representable in float64, and
    every count made on the merged net would be of a different net. Repeated ReLUs are one ReLU
    (ReLU(ReLU(x)) = ReLU(x)); Dropout is the identity (the net is read as in eval mode);
    Flatten (start_dim=1, end_dim=-1) is a no-op on the flat [batch, n] input that ReluNet takes
    (a Flatten first makes an image input row-major flat, which is the same thing).
    Module types are matched exactly (a subclass may change forward) and refused otherwise.
    """
    from torch import nn


    if not isinstance(module, nn.Module):
        raise ToolError(f"a {type(module).__name__}, not an nn.Module")
    if type(module) is not nn.Sequential and type(module) is not nn.Linear:
        raise ToolError(f"a {type(module).__name__}, not an nn.Sequential; supported: {SUPPORTED_MODULES}")
    ws, bs = [], []
    relu_pending = False            # a ReLU has been seen since the last Linear
    last_linear = None
    for name, m in _flat_modules(module):
        kind = type(m)
        if kind is nn.Linear:
            if ws and not relu_pending:
                raise ToolError(f"layer {name!r} (Linear) follows layer {last_linear!r} (Linear) without a ReLU "
                                "between them; merging two Linear layers would not be exact, so it is refused")
            w = _array(m.weight, f"layer {name!r} (Linear) weight")
            b = _array(m.bias, f"layer {name!r} (Linear) bias") if m.bias is not None else np.zeros(w.shape[0])
            if ws and w.shape[1] != ws[-1].shape[0]:
                raise ToolError(f"layer {name!r} (Linear) takes {w.shape[1]} inputs but layer {last_linear!r} "
                                f"has {ws[-1].shape[0]} outputs")
            ws.append(w)
            bs.append(b)
            relu_pending, last_linear = False, name
        elif kind is nn.ReLU:
            if not ws:
                raise ToolError(f"layer {name!r} (ReLU) comes before any Linear layer; the net must start "
                                "with a Linear layer")
            relu_pending = True
        elif kind is nn.Flatten:
            if (m.start_dim, m.end_dim) != (1, -1):
                raise ToolError(f"layer {name!r} (Flatten) has start_dim={m.start_dim}, end_dim={m.end_dim}; "
                                "only Flatten(1, -1) is supported")
        elif kind in (nn.Dropout, nn.Identity):
            continue
        else:
            raise ToolError(f"layer {name!r} ({kind.__name__}) is not supported; supported: {SUPPORTED_MODULES}")
    if not ws:
        raise ToolError("no Linear layer in the module")
    if relu_pending:
        raise ToolError(f"the module ends with a ReLU after layer {last_linear!r}; the last layer must be "
                        "Linear (the linear output layer)")
    return ReluNet(ws, bs, meta={"format": "torch.nn.Sequential"})
