"""ReluNet: the one network representation shared by every stage.

A feed-forward ReLU net as float64 numpy arrays: hidden layers l = 1..L with
h_l = ReLU(W_l h_{l-1} + b_l), then a linear output layer (W_{L+1}, b_{L+1}).
"""
from __future__ import annotations

import numpy as np


class ReluNet:
    """Weights W_l (out x in) and biases b_l, float64; the last layer is the linear output."""

    def __init__(self, weights, biases, meta: dict | None = None):
        if len(weights) != len(biases) or not weights:
            raise ValueError("need the same, positive number of weight matrices and bias vectors")
        self.weights = [np.ascontiguousarray(w, dtype=np.float64) for w in weights]
        self.biases = [np.ascontiguousarray(b, dtype=np.float64).reshape(-1) for b in biases]
        for l, (w, b) in enumerate(zip(self.weights, self.biases)):
            if w.ndim != 2 or w.shape[0] != b.shape[0]:
                raise ValueError(f"layer {l + 1}: weight {w.shape} does not match bias {b.shape}")
            if l and w.shape[1] != self.weights[l - 1].shape[0]:
                raise ValueError(f"layer {l + 1}: takes {w.shape[1]} inputs but layer {l} has {self.weights[l - 1].shape[0]} units")
        self.meta = dict(meta or {})

    # ---- shape -------------------------------------------------------------------------
    @property
    def layer_sizes(self) -> list[int]:
        """[n0, n1, ..., nL, m]: input size, hidden widths, output size."""
        return [self.weights[0].shape[1]] + [w.shape[0] for w in self.weights]

    @property
    def n_inputs(self) -> int:
        return self.weights[0].shape[1]

    @property
    def n_outputs(self) -> int:
        return self.weights[-1].shape[0]

    @property
    def hidden_sizes(self) -> list[int]:
        return [w.shape[0] for w in self.weights[:-1]]

    @property
    def n_hidden_layers(self) -> int:
        return len(self.weights) - 1

    @property
    def n_hidden_units(self) -> int:
        return sum(self.hidden_sizes)

    @property
    def n_params(self) -> int:
        return int(sum(w.size + b.size for w, b in zip(self.weights, self.biases)))

    def unit_index(self) -> list[tuple[int, int]]:
        """(layer, unit) for every hidden unit in pattern order; layer is 0-based."""
        return [(l, i) for l, n in enumerate(self.hidden_sizes) for i in range(n)]

    # ---- evaluation --------------------------------------------------------------------
    def _batch(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != self.n_inputs:
            raise ValueError(f"inputs must have {self.n_inputs} features, got shape {x.shape}")
        return x

    def preactivations(self, x) -> list[np.ndarray]:
        """Pre-activations g_l(x) of every hidden layer, each of shape (batch, n_l)."""
        h = self._batch(x)
        out = []
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            g = h @ w.T + b
            out.append(g)
            h = np.maximum(g, 0.0)
        return out

    def forward(self, x) -> np.ndarray:
        """Outputs (logits) of shape (batch, m)."""
        h = self._batch(x)
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            h = np.maximum(h @ w.T + b, 0.0)
        return h @ self.weights[-1].T + self.biases[-1]

    def patterns(self, x) -> np.ndarray:
        """Activation patterns, uint8 (batch, N): 1 where the pre-activation is > 0, layer by layer."""
        gs = self.preactivations(x)
        if not gs:
            return np.zeros((len(self._batch(x)), 0), dtype=np.uint8)
        return np.concatenate([(g > 0) for g in gs], axis=1).astype(np.uint8)

    def predict(self, x) -> np.ndarray:
        return self.forward(x).argmax(axis=1)

    def accuracy(self, x, y) -> float:
        return float((self.predict(x) == np.asarray(y)).mean())

    def split_pattern(self, pattern) -> list[np.ndarray]:
        """Cut a flat pattern of length N into per-layer pieces."""
        pattern = np.asarray(pattern)
        cuts = np.cumsum(self.hidden_sizes)[:-1]
        return np.split(pattern, cuts)

    def copy(self) -> "ReluNet":
        return ReluNet([w.copy() for w in self.weights], [b.copy() for b in self.biases], self.meta)

    def __repr__(self) -> str:
        return f"ReluNet({'-'.join(map(str, self.layer_sizes))})"
