"""PyTorch: a state_dict file (.pt/.pth) of Linear layers, and an nn.Sequential in the Python API.

from_torch_module reads an nn.Sequential of Linear, Conv2d, AvgPool2d, BatchNorm1d/2d, ReLU,
Flatten, Unflatten (flat rows to images), Dropout and Identity (rules in its docstring and
docs/readers.md): each chain of affine layers between two ReLUs is composed into one layer of the
ReluNet (src/io/readers/layers.py).

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

A state_dict of a conv net records no layer types, strides or paddings; the zoo's own runs keep them
in config.json beside model.pt: `load` rebuilds the run's model from its "arch" and "dropout"
(src/training/models.build_model), loads the state_dict into it strictly and reads the module.
"""
from __future__ import annotations

import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.core.network import ReluNet
from src.io.readers.layers import AvgPool2d, Conv2d, Dense, Relu, batchnorm, compose_net

SUPPORTED_MODULES = ("Linear, Conv2d, AvgPool2d, BatchNorm1d, BatchNorm2d, ReLU, Flatten, Unflatten, Dropout, "
                     "Identity (nested Sequential)")


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
            conv = len(tuple(t.shape)) >= 3
            raise ToolError(f"{source}: {k!r} ({_shape(t)}, {_guess(tuple(t.shape))}) is not part of a Linear "
                            f"layer; supported: Linear layers only (2-D '.weight', 1-D '.bias')"
                            + ("; a state_dict records no layer types, strides or paddings: a zoo run's model.pt is read "
                               "with the config.json beside it (its weights.dat and model.onnx hold the same net); read any other "
                               "conv net from its ONNX export, "
                               "or with from_torch_module in Python" if conv else ""))
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
    conv = isinstance(sd, Mapping) and any(len(tuple(getattr(t, "shape", ()))) >= 3 for t in sd.values())
    config = path.parent / "config.json"
    if conv and config.is_file():
        net = _from_zoo_run(path, sd, config)
    else:
        net = from_state_dict(sd, source=str(path))
    net.meta["path"] = str(path)
    return net


def _from_zoo_run(path: Path, state_dict, config: Path) -> ReluNet:
    """The net of a zoo run's model.pt: its model rebuilt from config.json, the state_dict loaded strictly."""
    import torch

    from src.io.records import read_config
    from src.training.models import build_model

    cfg = read_config(config)
    arch = cfg.get("arch")
    if not isinstance(arch, str):
        raise ToolError(f"{config}: no 'arch' to rebuild the conv net of {path.name} from")
    model = build_model(arch, dropout=float(cfg.get("dropout", 0.0)), seed=0)   # seeded: no global RNG use
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip() if str(e).strip() else e.__class__.__name__
        raise ToolError(f"{path}: does not fit the architecture {arch!r} of {config} ({first})") from None
    with torch.no_grad():
        net = from_torch_module(model.double().eval())
    net.meta.update({"format": "zoo run (model.pt + config.json)", "arch": arch})
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


def _module_items(module, input_shape):
    """(layers.Layer / layers.Relu items, the per-sample input shape or None) of an nn.Sequential's leaves."""
    from torch import nn

    if input_shape is not None:
        if isinstance(input_shape, (int, np.integer)):
            input_shape = (input_shape,)
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise ToolError(f"input_shape={input_shape!r} is not a tuple of ints") from None
        if not shape or min(shape) < 1 or len(shape) > 3:
            raise ToolError(f"input_shape={input_shape!r}: need the per-sample shape, without the batch: "
                            "(features,) or (channels, height, width)")
    else:
        shape = None                # a flat input whose size the first Linear (or BatchNorm1d) gives
    input_given = shape
    items = []
    for name, m in _flat_modules(module):
        kind = type(m)
        where = f"layer {name!r} ({kind.__name__})"

        def need_image(what):
            if shape is None or len(shape) != 3:
                have = f"an input of shape {list(shape)}" if shape is not None else "no input shape"
                raise ToolError(f"{where}: {what} needs a (channels, height, width) input, and there is {have}; "
                                "give it as from_torch_module(module, input_shape=(C, H, W))")
            return shape

        if kind is nn.Linear:
            if shape is not None and len(shape) != 1:
                raise ToolError(f"{where}: its input has shape {list(shape)}; a Linear acts on flat inputs only, "
                                "put an nn.Flatten() before it")
            w = _array(m.weight, f"{where} weight")
            b = _array(m.bias, f"{where} bias") if m.bias is not None else None
            if shape is not None and w.shape[1] != shape[0]:
                raise ToolError(f"{where} takes {w.shape[1]} inputs but its input has {shape[0]} features")
            items.append(Dense(w, b, label=where))
            shape = (w.shape[0],)
        elif kind is nn.Conv2d:
            in_shape = need_image("a Conv2d")
            if m.padding_mode != "zeros":
                raise ToolError(f"{where}: padding_mode={m.padding_mode!r} is not supported; only 'zeros'")
            pad = m.padding
            if isinstance(pad, str):        # 'valid' or 'same' (stride 1): torch pads 'same' with the extra on the end
                pad = (0, 0) if pad == "valid" else None
                if pad is None:
                    tot = [d * (k - 1) for d, k in zip(m.dilation, m.kernel_size)]
                    pad = (tot[0] // 2, tot[1] // 2, tot[0] - tot[0] // 2, tot[1] - tot[1] // 2)
            w = _array(m.weight, f"{where} weight")
            b = _array(m.bias, f"{where} bias") if m.bias is not None else None
            conv = Conv2d(w, b, in_shape, m.stride, pad, m.dilation, m.groups, label=where)
            items.append(conv)
            shape = conv.out_shape
        elif kind is nn.AvgPool2d:
            in_shape = need_image("an AvgPool2d")
            if m.ceil_mode:
                raise ToolError(f"{where}: ceil_mode=True is not supported; only ceil_mode=False (floor)")
            pool = AvgPool2d(in_shape, m.kernel_size, m.stride if m.stride else None, m.padding, m.count_include_pad,
                             m.divisor_override, label=where)
            items.append(pool)
            shape = pool.out_shape
        elif kind in (nn.BatchNorm1d, nn.BatchNorm2d):
            if kind is nn.BatchNorm2d:
                need_image("a BatchNorm2d")
            elif shape is None:
                shape = (m.num_features,)
            elif len(shape) not in (1, 2):
                raise ToolError(f"{where}: its input has shape {list(shape)}; a BatchNorm1d needs (C,) or (C, L)")
            if shape[0] != m.num_features:
                raise ToolError(f"{where} has {m.num_features} features but its input has {shape[0]} channels "
                                f"(shape {list(shape)})")
            if m.running_mean is None or m.running_var is None:
                raise ToolError(f"{where}: no running statistics (track_running_stats=False): it normalises by the "
                                "batch's statistics, which is not an affine map of one input")
            gamma = _array(m.weight, f"{where} weight") if m.weight is not None else None
            beta = _array(m.bias, f"{where} bias") if m.bias is not None else None
            items.append(batchnorm(_array(m.running_mean, f"{where} running_mean"),
                                   _array(m.running_var, f"{where} running_var"), gamma, beta, m.eps, shape,
                                   label=where))
        elif kind is nn.ReLU:
            items.append(Relu(where))
        elif kind is nn.Unflatten:        # flat rows -> images: the flattened tensor is the same (C order)
            size = tuple(m.unflattened_size)
            if m.dim not in (1, -1) or (shape is not None and len(shape) != 1) or \
                    not all(isinstance(v, int) and v >= 1 for v in size):
                have = f"shape {list(shape)}" if shape is not None else "a flat input"
                raise ToolError(f"{where}: Unflatten(dim={m.dim}, {list(size)}) of {have} is not supported; "
                                "only Unflatten(1, (C, H, W)) of a flat input")
            if shape is None:
                shape = input_given = (math.prod(size),)
            if shape[0] != math.prod(size):
                raise ToolError(f"{where}: Unflatten to {list(size)} ({math.prod(size)} values) of an input of "
                                f"{shape[0]} features")
            shape = size
        elif kind is nn.Flatten:
            if (m.start_dim, m.end_dim) != (1, -1):
                raise ToolError(f"{where} has start_dim={m.start_dim}, end_dim={m.end_dim}; "
                                "only Flatten(1, -1) is supported")
            if shape is not None:
                shape = (math.prod(shape),)
        elif kind in (nn.Dropout, nn.Identity):
            continue
        else:
            raise ToolError(f"{where} is not supported; supported: {SUPPORTED_MODULES}")
    return items, input_given


def from_torch_module(module, input_shape=None):
    """ReluNet from an nn.Sequential (nested Sequentials fine) of the layers in SUPPORTED_MODULES.

    input_shape: the per-sample input shape without the batch, (C, H, W) for an image; needed when
    the first layer is a Conv2d, AvgPool2d or BatchNorm2d (a flat input's size comes from the first
    Linear). The input is flattened in C order (channel, row, column), as nn.Flatten does.

    Every chain of affine layers (Linear, Conv2d with zero padding, AvgPool2d, BatchNorm1d/2d with
    their running statistics, as in eval mode) between two ReLUs is composed into one layer of the
    ReluNet (src/io/readers/layers.py); Flatten reshapes, Dropout and Identity are no-ops (eval
    mode); Unflatten(1, (C, H, W)) of a flat input is a reshape too (the zoo's CNNs start with it, so
    that they take flat 784-pixel rows; the ReluNet's input is then that flat row); repeated ReLUs are
    one ReLU. The net must start with an affine layer and end with one (the linear output layer).
    Module types are matched exactly (a subclass may change forward) and anything else is refused:
    `layer 'NAME' (Type) is not supported; supported: ...`.
    """
    from torch import nn

    if not isinstance(module, nn.Module):
        raise ToolError(f"a {type(module).__name__}, not an nn.Module")
    if type(module) is not nn.Sequential and type(module) not in _leaf_types():
        raise ToolError(f"a {type(module).__name__}, not an nn.Sequential; supported: {SUPPORTED_MODULES}")
    items, shape = _module_items(module, input_shape)
    meta = {"format": "torch.nn.Sequential"}
    if shape is not None:
        meta["input_shape"] = list(shape)
    return compose_net(items, meta=meta)


def _leaf_types():
    from torch import nn

    return (nn.Linear, nn.Conv2d, nn.AvgPool2d, nn.BatchNorm1d, nn.BatchNorm2d)
