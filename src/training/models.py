"""The fcnn model zoo: fully connected ReLU nets for MNIST, by name.

Each hidden layer is Linear -> ReLU; with dropout p > 0 a Dropout(p) follows the last
hidden layer's ReLU (the authors' `_d` variants); then Linear(., 10). Weights are
Kaiming-normal (ReLU gain), biases zero. `mlp:W1-W2-...` gives any widths.
"""
from __future__ import annotations

import re

from src.core.errors import ToolError


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

_MLP = re.compile(r"^mlp:(\d+(?:-\d+)*)$")


def parse_arch(name: str) -> list[int]:
    """Hidden widths of a zoo name or of `mlp:W1-W2-...`; unknown names raise ToolError."""
    name = str(name).strip()
    if name in ARCHS:
        return list(ARCHS[name])
    m = _MLP.match(name)
    if m:
        widths = [int(t) for t in m.group(1).split("-")]
        if min(widths) < 1:
            raise ToolError(f"arch {name!r}: every width must be >= 1")
        return widths
    raise ToolError(f"unknown arch {name!r}; use mlp:W1-W2-... (e.g. mlp:8-8) or one of: {', '.join(ARCHS)}")


def build_model(arch, dropout: float = 0.0, n_inputs: int = 784, n_classes: int = 10, seed: int | None = None):
    """nn.Sequential of Linear -> ReLU per hidden layer (+ Dropout after the last), then Linear(., n_classes).

    `arch` is a name (see parse_arch) or a list of hidden widths. Kaiming-normal weights, zero
    biases; `seed` (optional) seeds a private generator so the init does not touch global RNG state.
    """
    import torch
    from torch import nn

    widths = parse_arch(arch) if isinstance(arch, str) else [int(w) for w in arch]
    if not widths or min(widths) < 1:
        raise ToolError(f"hidden widths must be positive, got {widths}")
    if not 0.0 <= float(dropout) < 1.0:
        raise ToolError(f"dropout must be in [0, 1), got {dropout}")
    layers: list = []
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
            if isinstance(m, nn.Linear):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu", generator=gen)
                nn.init.zeros_(m.bias)
    return model


def linear_weights(model) -> list:
    """The weight tensors of every nn.Linear (what the l1 penalty sums over)."""
    from torch import nn

    return [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
