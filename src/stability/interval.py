"""The interval tier: interval arithmetic through the hidden layers (pure numpy; exact for layer 1)."""
from __future__ import annotations

import numpy as np

from src.core.affine import box_bounds
from src.core.box import Box
from src.core.network import ReluNet
from src.stability.record import Stability


def interval_bounds(net: ReluNet, box: Box) -> Stability:
    """Interval arithmetic through the hidden layers (sound, loose)."""
    if net.n_hidden_layers == 0:
        return Stability([], [])
    lo, up = _interval_affine(net.weights[0], net.biases[0], box.lo, box.hi)
    lowers, uppers = [lo], [up]
    for layer in range(1, net.n_hidden_layers):
        lo, up = _interval_layer(net, layer, lo, up)
        lowers.append(lo)
        uppers.append(up)
    return Stability(lowers, uppers)


def _interval_affine(w: np.ndarray, b: np.ndarray, lo_h: np.ndarray, hi_h: np.ndarray):
    """Bounds of w h + b for h in the box [lo_h, hi_h]."""
    return box_bounds(w, b, lo_h, hi_h)


def _interval_layer(net: ReluNet, layer: int, lo_prev: np.ndarray, up_prev: np.ndarray):
    """Interval bounds of layer `layer` from bounds of the previous layer's pre-activations."""
    return _interval_affine(net.weights[layer], net.biases[layer], np.maximum(lo_prev, 0.0), np.maximum(up_prev, 0.0))
