"""The model zoo for MNIST, by name: fully connected ReLU nets (fcnn*, `mlp:...`) and small CNNs (cnn_*, `cnn:...`).

MLP: each hidden layer is Linear -> ReLU; with dropout p > 0 a Dropout(p) follows the last
hidden layer's ReLU (the authors' `_d` variants); then Linear(., 10). `mlp:W1-W2-...` gives any widths.

CNN (`cnn:L1-L2-...`, grammar in CNN_GRAMMAR and docs/training.md): nn.Unflatten(1, (1, 28, 28)) first
(every model takes the flat 784-pixel rows that training feeds it), then per token a Conv2d -> ReLU
(`c<C>k<K>[s<S>][p<P>]`), an AvgPool2d (`avg<K>[s<S>]`, no ReLU: it is composed into the next layer) or a
Linear -> ReLU (`fc<W>`, an nn.Flatten before the first), the same Dropout after the last hidden ReLU,
then (Flatten and) Linear(., 10). The ReLU layers' sizes (C * OH * OW units for a conv, W for fc) are
the hidden sizes of the net's dense equivalent (src.io.readers.torch_state.from_torch_module), which
is what config.json's hidden_sizes and weights.dat hold.

Weights of Linear and Conv2d are Kaiming-normal (fan-in, ReLU gain), biases zero.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass

from src.core.errors import ToolError
from src.io.readers.layers import MAX_DENSE_ENTRIES


def _rep(width: int, depth: int) -> list[int]:
    return [width] * depth


# name -> hidden widths (the seed's zoo)
ARCHS: dict[str, list[int]] = {
    "fcnn1": [10], "fcnn1a": [30], "fcnn1b": [15], "fcnn1c": [200], "fcnn1d": [500],
    "fcnn1e": [3000], "fcnn1f": [10000],
    "fcnn2": _rep(25, 2), "fcnn2a": _rep(50, 2), "fcnn2b": _rep(100, 2), "fcnn2c": _rep(200, 2),
    "fcnn2d": _rep(400, 2), "fcnn2e": _rep(800, 2), "fcnn2f": _rep(1600, 2), "fcnn2g": [900, 500],
    "fcnn2h": _rep(1000, 2),
    "fcnn3": _rep(25, 3), "fcnn3a": _rep(50, 3), "fcnn3b": _rep(100, 3), "fcnn3c": _rep(200, 3),
    "fcnn4": _rep(25, 4), "fcnn4a": _rep(50, 4), "fcnn4b": _rep(100, 4), "fcnn4c": [5, 5, 5, 10],
    "fcnn4d": [5, 10, 5, 10], "fcnn4e": [5, 10, 10, 10], "fcnn4f": _rep(10, 4), "fcnn4g": [5, 7, 10, 10],
    "fcnn4h": [10, 5, 10, 10], "fcnn4i": [7, 7, 10, 10], "fcnn4j": [8, 8, 10, 10], "fcnn4l": [10, 9, 8, 7],
    "fcnn4m": _rep(20, 4), "fcnn4n": _rep(30, 4),
    "fcnn5": _rep(25, 5), "fcnn5a": _rep(50, 5), "fcnn5b": _rep(100, 5), "fcnn5c": [10, 10, 5, 5, 5],
    "fcnn6": _rep(5, 6), "fcnn6a": [5, 5, 5, 10, 10, 10], "fcnn6b": _rep(8, 6),
}

# name -> its cnn: spec (hidden sizes of the dense equivalent in the comment)
CNN_ARCHS: dict[str, str] = {
    "cnn_tiny": "cnn:c4k7s7-fc16",            # 4x4x4 = 64, 16: 80 units
    "cnn_small": "cnn:c4k5s3-c8k3s2-fc32",    # 4x8x8 = 256, 8x3x3 = 72, 32: 360 units
}

INPUT_SHAPE = (1, 28, 28)          # MNIST, per sample (channels, height, width)

CNN_GRAMMAR = ("cnn:L1-L2-... with L = c<C>k<K>[s<S>][p<P>] (Conv2d, C channels, kernel K, stride S = 1, "
               "zero padding P = 0; then ReLU) | avg<K>[s<S>] (AvgPool2d, stride S = K; no ReLU) | fc<W> "
               "(Linear, W units; then ReLU; no c or avg after an fc); e.g. cnn:c4k5s3-c8k3s2-fc32")

_MLP = re.compile(r"^mlp:(\d+(?:-\d+)*)$")

_CONV = re.compile(r"^c(\d+)k(\d+)(?:s(\d+))?(?:p(\d+))?$")

_POOL = re.compile(r"^avg(\d+)(?:s(\d+))?$")

_FC = re.compile(r"^fc(\d+)$")


@dataclass(frozen=True)
class Conv:
    """`c<C>k<K>[s<S>][p<P>]`: Conv2d(., C, K, stride S, padding P) -> ReLU."""
    channels: int
    kernel: int
    stride: int = 1
    padding: int = 0


@dataclass(frozen=True)
class Pool:
    """`avg<K>[s<S>]`: AvgPool2d(K, stride S), no ReLU."""
    kernel: int
    stride: int


@dataclass(frozen=True)
class Fc:
    """`fc<W>`: Linear(., W) -> ReLU."""
    width: int


@dataclass(frozen=True)
class CnnSpec:
    """A parsed `cnn:` arch: its layers, per-sample input shape and every layer's output shape."""
    name: str
    layers: tuple
    input_shape: tuple
    shapes: tuple                       # output shape of each layer: (C, H, W) or (W,)

    @property
    def hidden_sizes(self) -> list[int]:
        """Units of each ReLU layer (C * H * W of a conv, W of an fc): the dense equivalent's hidden sizes."""
        return [math.prod(s) for l, s in zip(self.layers, self.shapes) if not isinstance(l, Pool)]


def is_cnn(arch) -> bool:
    """True for a CNN zoo name or a `cnn:` spec."""
    return isinstance(arch, str) and (arch.strip() in CNN_ARCHS or arch.strip().startswith("cnn:"))


def parse_cnn(name: str, input_shape=INPUT_SHAPE, n_classes: int = 10) -> CnnSpec:
    """The layers of a CNN zoo name or `cnn:...` spec with the shape after each; ToolError naming the token
    on a syntax error, a layer that does not fit its input, or a dense layer over the readers' size limit."""
    name = str(name).strip()
    text = CNN_ARCHS.get(name, name)
    where = f"arch {name!r}" + (f" ({text})" if text != name else "")
    if not text.startswith("cnn:") or not text[4:]:
        raise ToolError(f"{where}: expected {CNN_GRAMMAR}")
    shape = tuple(int(s) for s in input_shape)
    layers, shapes = [], []
    for tok in text[4:].split("-"):
        if (m := _CONV.match(tok)) or (m := _POOL.match(tok)):
            is_conv = tok.startswith("c")
            if len(shape) != 3:
                raise ToolError(f"{where}: {tok!r} follows an fc layer; c and avg layers come before every fc")
            if is_conv:
                c, k = int(m.group(1)), int(m.group(2))
                st = int(m.group(3)) if m.group(3) is not None else 1
                p = int(m.group(4)) if m.group(4) is not None else 0
                layer, out_c, sizes = Conv(c, k, st, p), c, (c, k, st)
            else:
                k = int(m.group(1))
                st = int(m.group(2)) if m.group(2) is not None else k
                layer, out_c, p, sizes = Pool(k, st), shape[0], 0, (k, st)
            if min(sizes) < 1:
                raise ToolError(f"{where}: {tok!r}: channels, kernel and stride must be >= 1")
            h, w = ((n + 2 * p - k) // st + 1 for n in shape[1:])
            if min(h, w) < 1:
                raise ToolError(f"{where}: {tok!r} gets a {shape[1]}x{shape[2]} input (padding {p}), smaller "
                                f"than its kernel {k}")
            shape = (out_c, h, w)
        elif (m := _FC.match(tok)):
            if int(m.group(1)) < 1:
                raise ToolError(f"{where}: {tok!r}: the width must be >= 1")
            layer = Fc(int(m.group(1)))
            shape = (layer.width,)
        else:
            raise ToolError(f"{where}: bad layer {tok!r}; expected {CNN_GRAMMAR}")
        layers.append(layer)
        shapes.append(shape)
    if not any(not isinstance(l, Pool) for l in layers):
        raise ToolError(f"{where}: no hidden layer (only avg pooling); expected {CNN_GRAMMAR}")
    spec = CnnSpec(name, tuple(layers), tuple(int(s) for s in input_shape), tuple(shapes))
    # the dense equivalent: one matrix per ReLU layer (pooling composed into the next), refused by the
    # reader over MAX_DENSE_ENTRIES: say so now, not after training
    n_in = math.prod(spec.input_shape)
    for k, units in enumerate(spec.hidden_sizes + [n_classes], 1):
        if n_in * units > MAX_DENSE_ENTRIES:
            raise ToolError(f"{where}: layer {k} of its dense equivalent would be {units} x {n_in} = "
                            f"{units * n_in:,} entries, over the limit of {MAX_DENSE_ENTRIES:,}; use fewer "
                            "channels or a larger stride")
        n_in = units
    return spec


def parse_arch(name: str) -> list[int]:
    """Hidden widths of a zoo name, of `mlp:W1-W2-...` or of `cnn:...` (the hidden sizes of the CNN's dense
    equivalent); unknown names raise ToolError."""
    name = str(name).strip()
    if name in ARCHS:
        return list(ARCHS[name])
    if is_cnn(name):
        return parse_cnn(name).hidden_sizes
    m = _MLP.match(name)
    if m:
        widths = [int(t) for t in m.group(1).split("-")]
        if min(widths) < 1:
            raise ToolError(f"arch {name!r}: every width must be >= 1")
        return widths
    raise ToolError(f"unknown arch {name!r}; use mlp:W1-W2-... (e.g. mlp:8-8), {CNN_GRAMMAR}, or one of: "
                    f"{', '.join(list(ARCHS) + list(CNN_ARCHS))}")


def build_model(arch, dropout: float = 0.0, n_inputs: int = 784, n_classes: int = 10, seed: int | None = None,
                input_shape=INPUT_SHAPE):
    """The nn.Sequential of `arch`: a zoo name, `mlp:...`, `cnn:...` (see the module docstring) or a list of
    hidden widths (an MLP). Every model takes flat rows of n_inputs values (a CNN unflattens them to
    input_shape, whose size must be n_inputs). Dropout(p) after the last hidden ReLU when p > 0.

    Kaiming-normal weights, zero biases; `seed` (optional) seeds a private generator so the init does
    not touch global RNG state.
    """
    import torch
    from torch import nn

    if not 0.0 <= float(dropout) < 1.0:
        raise ToolError(f"dropout must be in [0, 1), got {dropout}")
    layers: list = []
    if is_cnn(arch):
        spec = parse_cnn(arch, input_shape, n_classes)
        if math.prod(spec.input_shape) != n_inputs:
            raise ToolError(f"arch {arch!r}: input shape {list(spec.input_shape)} has {math.prod(spec.input_shape)} "
                            f"values, not n_inputs = {n_inputs}")
        layers.append(nn.Unflatten(1, spec.input_shape))
        shape = spec.input_shape
        last = max(i for i, l in enumerate(spec.layers) if not isinstance(l, Pool))
        for i, (l, out) in enumerate(zip(spec.layers, spec.shapes)):
            if isinstance(l, Conv):
                layers += [nn.Conv2d(shape[0], l.channels, l.kernel, stride=l.stride, padding=l.padding,
                                     device="meta"), nn.ReLU()]
            elif isinstance(l, Pool):
                layers.append(nn.AvgPool2d(l.kernel, stride=l.stride))
            else:
                if len(shape) == 3:
                    layers.append(nn.Flatten())
                layers += [nn.Linear(math.prod(shape), l.width, device="meta"), nn.ReLU()]
            if dropout > 0 and i == last:
                layers.append(nn.Dropout(float(dropout)))
            shape = out
        if len(shape) == 3:
            layers.append(nn.Flatten())
        prev = math.prod(shape)
    else:
        widths = parse_arch(arch) if isinstance(arch, str) else [int(w) for w in arch]
        if not widths or min(widths) < 1:
            raise ToolError(f"hidden widths must be positive, got {widths}")
        prev = n_inputs
        for i, w in enumerate(widths):
            layers += [nn.Linear(prev, w, device="meta"), nn.ReLU()]  # meta: no default init, no RNG use
            if dropout > 0 and i == len(widths) - 1:
                layers.append(nn.Dropout(float(dropout)))
            prev = w
    layers.append(nn.Linear(prev, n_classes, device="meta"))
    model = nn.Sequential(*layers).to_empty(device="cpu")
    gen = None if seed is None else torch.Generator().manual_seed(int(seed))
    with torch.no_grad():
        for m in model:
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                nn.init.zeros_(m.bias)
    return model


def linear_weights(model) -> list:
    """The weight tensors of every nn.Linear and nn.Conv2d (the linear parts of the affine layers), what the
    l1 penalty sums over; biases excluded. A conv weight counts once per parameter, not once per position
    it is applied at (the l1 of the trained parameters, not of the dense equivalent's matrix)."""
    from torch import nn

    return [m.weight for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
