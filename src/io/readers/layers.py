"""Affine layers of feed-forward nets as maps on flattened tensors, and their composition into a ReluNet.

Pure numpy; the ONNX and PyTorch readers (onnx_model.py, torch_state.py) build these layers and call
`compose_net`. A per-sample tensor (no batch axis) of shape (C, H, W) is flattened in C order, index
(c * H + y) * W + x: torch's flatten order (nn.Flatten, x.flatten(1), ONNX Flatten axis=1), so the
units of a conv layer are its output neurons in the order (channel, row, column), and so is the input.

Every layer is an affine map y = A x + c of the flattened tensor, given by `apply(X)` (X A^T for a
batch X of flattened inputs, the linear part), `apply_t(Y)` (Y A, the transposed map) and `bias` (c):

  Dense(W, b)               Linear, Gemm, MatMul(+Add): A = W
  Conv2d(weight, bias, in_shape, stride, padding, dilation, groups)     zero padding
  AvgPool2d(in_shape, kernel, stride, padding, count_include_pad, divisor_override)
  ChannelAffine(scale, shift, shape)   x[c, ...] -> scale[c] x[c, ...] + shift[c]: BatchNorm in eval
                                       mode (`batchnorm` builds it from the running statistics)

`compose_net(items)` takes these layers and `Relu` markers in order, composes every chain of layers
between two ReLUs into one dense (W, b) (`compose`) and returns the ReluNet. The composed matrix is
built block by block, by passing blocks of unit vectors through the chain, forward from the input
side (columns, `apply`) or backward from the output side (rows, `apply_t`, the transposed map),
whichever has fewer; so nothing larger than the result is ever held (each block holds at most
BLOCK_ENTRIES floats per intermediate tensor). A layer of the ReluNet over MAX_DENSE_ENTRIES entries
is refused before anything is allocated.

Rounding: a chain of one Dense layer is returned as is (bit-identical). A chain of one Conv2d gives
its weights exactly (each entry of the dense matrix is one weight, or 0). Pooling (1/k) and
BatchNorm (gamma / sqrt(var + eps)) round once per entry, and composing layers computes the same
float64 sums as the forward pass through them (one rounding per product and sum).

The dense functions dense_affine, conv2d_affine, avgpool2d_affine and batchnorm_affine give one
layer's (matrix, bias) directly.
"""
from __future__ import annotations

import math

import numpy as np

from src.core.errors import ToolError
from src.core.network import ReluNet

MAX_DENSE_ENTRIES = 200_000_000     # largest dense matrix of one ReluNet layer (1.6 GB of float64)
BLOCK_ENTRIES = 1 << 22             # floats per intermediate tensor while composing (32 MB)


def _ints(v, n: int, name: str, label: str, minimum: int) -> tuple:
    """A tuple of n ints >= minimum from an int or a sequence of n ints."""
    vals = (v,) * n if isinstance(v, (int, np.integer)) else tuple(v)
    if len(vals) != n or not all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in vals):
        raise ToolError(f"{label}: {name}={_show(v)} is not {'an int or ' if n > 1 else ''}{n} int(s)")
    vals = tuple(int(x) for x in vals)
    if min(vals) < minimum:
        raise ToolError(f"{label}: {name}={list(vals)}; every value must be >= {minimum}")
    return vals


def _show(v) -> str:
    return str(list(v)) if isinstance(v, tuple) else str(v)


def _pads(padding, label: str) -> tuple:
    """(top, left, bottom, right) from an int, (ph, pw) or (top, left, bottom, right)."""
    vals = (padding,) if isinstance(padding, (int, np.integer)) else tuple(padding)
    if len(vals) == 1:
        vals = vals * 4
    elif len(vals) == 2:
        vals = (vals[0], vals[1], vals[0], vals[1])
    return _ints(vals, 4, "padding", label, 0)


def _shape(shape, rank: int | None, label: str, what: str) -> tuple:
    shape = tuple(int(s) for s in shape)
    if rank is not None and len(shape) != rank:
        raise ToolError(f"{label}: its input has shape {list(shape)} (per sample); {what}")
    if not shape or min(shape) < 1:
        raise ToolError(f"{label}: its input has shape {list(shape)}; every dimension must be >= 1")
    return _sized(shape, label)


def _sized(shape: tuple, label: str) -> tuple:
    """`shape`, refused when one sample of it would be over MAX_DENSE_ENTRIES values (before any allocation)."""
    n = math.prod(shape)
    if n > MAX_DENSE_ENTRIES:
        raise ToolError(f"{label}: a tensor of shape {list(shape)} has {_entries(n)} values per sample, over the "
                        f"limit of {_entries(MAX_DENSE_ENTRIES)}")
    return shape


def _out_size(n: int, pad: int, k_eff: int, stride: int) -> int:
    return (n + pad - k_eff) // stride + 1


class Layer:
    """An affine map of flattened tensors: in_shape -> out_shape, linear part `apply`, bias `bias`."""
    label: str
    in_shape: tuple
    out_shape: tuple
    bias: np.ndarray

    @property
    def n_in(self) -> int:
        return math.prod(self.in_shape)

    @property
    def n_out(self) -> int:
        return math.prod(self.out_shape)

    @property
    def work(self) -> int:
        """Floats per sample that `apply` holds at once (for the block size)."""
        return self.n_in + self.n_out

    def apply(self, X: np.ndarray) -> np.ndarray:       # pragma: no cover - abstract
        """X A^T: the linear part on a batch X (B, n_in) of flattened inputs."""
        raise NotImplementedError

    def apply_t(self, Y: np.ndarray) -> np.ndarray:     # pragma: no cover - abstract
        """Y A: the transposed linear part on a batch Y (B, n_out) (rows of the matrix, for `compose`)."""
        raise NotImplementedError

    def dense(self, limit: int | None = None):
        """(matrix, bias) of this layer alone."""
        return compose([self], limit=limit)


class Dense(Layer):
    """y = W x + b (Linear, Gemm, MatMul+Add); W is out x in."""

    def __init__(self, W, b=None, label: str = "Dense"):
        self.label = label
        self.W = np.asarray(W, dtype=np.float64)
        if self.W.ndim != 2:
            raise ToolError(f"{label}: the weight has shape {list(self.W.shape)}; need a 2-D matrix")
        self.bias = np.zeros(self.W.shape[0]) if b is None else np.asarray(b, dtype=np.float64).reshape(-1)
        if self.bias.shape != (self.W.shape[0],):
            raise ToolError(f"{label}: bias of shape {list(self.bias.shape)} for {self.W.shape[0]} outputs")
        self.in_shape, self.out_shape = (self.W.shape[1],), (self.W.shape[0],)

    def apply(self, X):
        return X @ self.W.T

    def apply_t(self, Y):
        return Y @ self.W


class Conv2d(Layer):
    """2-D convolution (cross-correlation, as torch and ONNX define it) with zero padding.

    weight: (C_out, C_in / groups, kh, kw); in_shape (C_in, H, W); padding an int, (ph, pw) or
    (top, left, bottom, right); stride and dilation an int or (sh, sw).
    out[o, y, x] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * in_padded[g * C_in/groups + c,
                   y * sh + i * dh, x * sw + j * dw], with g = o // (C_out / groups).
    """

    def __init__(self, weight, bias, in_shape, stride=1, padding=0, dilation=1, groups=1, label: str = "Conv2d"):
        self.label = label
        w = np.asarray(weight, dtype=np.float64)
        if w.ndim != 4:
            raise ToolError(f"{label}: the weight has shape {list(w.shape)}; need (C_out, C_in/groups, kh, kw)")
        self.in_shape = _shape(in_shape, 3, label, "a 2-D convolution needs (channels, height, width)")
        self.stride = _ints(stride, 2, "stride", label, 1)
        self.dilation = _ints(dilation, 2, "dilation", label, 1)
        self.pads = _pads(padding, label)
        self.groups = _ints(groups, 1, "groups", label, 1)[0]
        C, H, Wd = self.in_shape
        O, Cg, kh, kw = w.shape
        if min(w.shape) < 1:
            raise ToolError(f"{label}: the weight has shape {list(w.shape)}; every dimension must be >= 1")
        if C % self.groups or O % self.groups or Cg * self.groups != C:
            raise ToolError(f"{label}: the weight {list(w.shape)} with groups={self.groups} takes "
                            f"{Cg * self.groups} input channels (and needs C_out divisible by groups), "
                            f"but its input has {C} channels (shape {list(self.in_shape)})")
        pt, pl, pb, pr = self.pads
        self.k_eff = ((kh - 1) * self.dilation[0] + 1, (kw - 1) * self.dilation[1] + 1)
        OH = _out_size(H, pt + pb, self.k_eff[0], self.stride[0])
        OW = _out_size(Wd, pl + pr, self.k_eff[1], self.stride[1])
        if OH < 1 or OW < 1:
            raise ToolError(f"{label}: the kernel {kh}x{kw} (dilated {self.k_eff[0]}x{self.k_eff[1]}) does not fit "
                            f"the padded input {H + pt + pb}x{Wd + pl + pr}")
        self.weight = w
        self.out_shape = _sized((O, OH, OW), label)
        self.bias = np.zeros(O * OH * OW) if bias is None else \
            np.repeat(np.asarray(bias, dtype=np.float64).reshape(-1), OH * OW)
        if self.bias.shape != (O * OH * OW,):
            raise ToolError(f"{label}: bias of shape {list(np.shape(bias))} for {O} output channels")

    @property
    def work(self):
        C, H, W = self.in_shape
        pt, pl, pb, pr = self.pads
        return 2 * C * (H + pt + pb) * (W + pl + pr) + 2 * self.n_out

    def apply(self, X):
        B = X.shape[0]
        C, H, W = self.in_shape
        O, OH, OW = self.out_shape
        G = self.groups
        Cg, Og = C // G, O // G
        kh, kw = self.weight.shape[2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        pt, pl, pb, pr = self.pads
        x = X.reshape(B, C, H, W)
        if any(self.pads):
            xp = np.zeros((B, C, H + pt + pb, W + pl + pr))
            xp[:, :, pt:pt + H, pl:pl + W] = x
        else:
            xp = x
        xp = xp.reshape(B, G, Cg, xp.shape[2], xp.shape[3])
        w = self.weight.reshape(G, Og, Cg, kh, kw)
        out = np.zeros((G, Og, B * OH * OW))
        for i in range(kh):
            for j in range(kw):
                win = xp[:, :, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw]
                cols = np.ascontiguousarray(win.transpose(1, 2, 0, 3, 4)).reshape(G, Cg, B * OH * OW)
                out += np.matmul(w[:, :, :, i, j], cols)
        return out.reshape(O, B, OH * OW).transpose(1, 0, 2).reshape(B, O * OH * OW)

    def apply_t(self, Y):
        B = Y.shape[0]
        C, H, W = self.in_shape
        O, OH, OW = self.out_shape
        G = self.groups
        Cg, Og = C // G, O // G
        kh, kw = self.weight.shape[2:]
        (sh, sw), (dh, dw) = self.stride, self.dilation
        pt, pl, pb, pr = self.pads
        y = np.ascontiguousarray(Y.reshape(B, G, Og, OH * OW).transpose(1, 2, 0, 3)).reshape(G, Og, B * OH * OW)
        wt = self.weight.reshape(G, Og, Cg, kh, kw).transpose(0, 2, 1, 3, 4)     # (G, Cg, Og, kh, kw)
        xp = np.zeros((B, G, Cg, H + pt + pb, W + pl + pr))
        for i in range(kh):
            for j in range(kw):
                part = np.matmul(wt[:, :, :, i, j], y).reshape(G, Cg, B, OH, OW).transpose(2, 0, 1, 3, 4)
                xp[:, :, :, i * dh: i * dh + sh * (OH - 1) + 1: sh, j * dw: j * dw + sw * (OW - 1) + 1: sw] += part
        return np.ascontiguousarray(xp.reshape(B, C, H + pt + pb, W + pl + pr)[:, :, pt:pt + H, pl:pl + W]
                                    ).reshape(B, C * H * W)


class AvgPool2d(Layer):
    """2-D average pooling per channel; zero padding, floor rounding of the output size (ceil_mode off).

    The divisor of a window: divisor_override when given, else kh * kw with count_include_pad, else the
    number of the window's cells inside the (unpadded) input.
    """

    def __init__(self, in_shape, kernel, stride=None, padding=0, count_include_pad=True, divisor_override=None,
                 label: str = "AvgPool2d"):
        self.label = label
        self.in_shape = _shape(in_shape, 3, label, "2-D pooling needs (channels, height, width)")
        self.kernel = _ints(kernel, 2, "kernel", label, 1)
        self.stride = self.kernel if stride is None else _ints(stride, 2, "stride", label, 1)
        self.pads = _pads(padding, label)
        C, H, W = self.in_shape
        pt, pl, pb, pr = self.pads
        OH = _out_size(H, pt + pb, self.kernel[0], self.stride[0])
        OW = _out_size(W, pl + pr, self.kernel[1], self.stride[1])
        if OH < 1 or OW < 1:
            raise ToolError(f"{label}: the kernel {self.kernel[0]}x{self.kernel[1]} does not fit the padded input "
                            f"{H + pt + pb}x{W + pl + pr}")
        self.out_shape = _sized((C, OH, OW), label)
        if divisor_override is not None:
            d = float(divisor_override)
            if not (np.isfinite(d) and d != 0):
                raise ToolError(f"{label}: divisor_override={divisor_override} is not a nonzero number")
            self.divisor = np.full((OH, OW), d)
        elif count_include_pad:
            self.divisor = np.full((OH, OW), float(self.kernel[0] * self.kernel[1]))
        else:
            self.divisor = self._window_sums(np.ones((1, 1, H, W)))[0, 0]
            if not self.divisor.all():
                raise ToolError(f"{label}: a pooling window lies entirely in the padding "
                                f"(padding {list(self.pads)}, kernel {list(self.kernel)}); nothing to average")
        self.bias = np.zeros(self.n_out)

    def _window_sums(self, x):
        B, C, H, W = x.shape
        pt, pl, pb, pr = self.pads
        (kh, kw), (sh, sw) = self.kernel, self.stride
        _, OH, OW = self.out_shape
        if any(self.pads):
            xp = np.zeros((B, C, H + pt + pb, W + pl + pr))
            xp[:, :, pt:pt + H, pl:pl + W] = x
        else:
            xp = x
        out = np.zeros((B, C, OH, OW))
        for i in range(kh):
            for j in range(kw):
                out += xp[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw]
        return out

    @property
    def work(self):
        C, H, W = self.in_shape
        pt, pl, pb, pr = self.pads
        return C * (H + pt + pb) * (W + pl + pr) + 2 * self.n_out

    def apply(self, X):
        B = X.shape[0]
        return (self._window_sums(X.reshape(B, *self.in_shape)) / self.divisor).reshape(B, self.n_out)

    def apply_t(self, Y):
        B = Y.shape[0]
        C, H, W = self.in_shape
        _, OH, OW = self.out_shape
        pt, pl, pb, pr = self.pads
        (kh, kw), (sh, sw) = self.kernel, self.stride
        y = Y.reshape(B, C, OH, OW) / self.divisor
        xp = np.zeros((B, C, H + pt + pb, W + pl + pr))
        for i in range(kh):
            for j in range(kw):
                xp[:, :, i: i + sh * (OH - 1) + 1: sh, j: j + sw * (OW - 1) + 1: sw] += y
        return np.ascontiguousarray(xp[:, :, pt:pt + H, pl:pl + W]).reshape(B, self.n_in)


class ChannelAffine(Layer):
    """x[c, ...] -> scale[c] * x[c, ...] + shift[c] on a tensor of shape (C, ...): BatchNorm in eval mode."""

    def __init__(self, scale, shift, shape, label: str = "BatchNorm"):
        self.label = label
        self.in_shape = self.out_shape = _shape(shape, None, label, "")
        self.scale = np.asarray(scale, dtype=np.float64).reshape(-1)
        shift = np.asarray(shift, dtype=np.float64).reshape(-1)
        C = self.in_shape[0]
        if self.scale.shape != (C,) or shift.shape != (C,):
            raise ToolError(f"{label}: {self.scale.size} scales and {shift.size} shifts for an input of "
                            f"{C} channels (shape {list(self.in_shape)})")
        self.shift = shift
        self.bias = np.repeat(shift, self.n_in // C)

    def apply(self, X):
        B = X.shape[0]
        return (X.reshape(B, self.in_shape[0], -1) * self.scale[None, :, None]).reshape(B, self.n_in)

    apply_t = apply                 # diagonal


def batchnorm(mean, var, gamma, beta, eps, shape, label: str = "BatchNorm") -> ChannelAffine:
    """BatchNorm with fixed statistics (eval mode): y = gamma (x - mean) / sqrt(var + eps) + beta per channel,
    folded into scale = gamma / sqrt(var + eps), shift = beta - mean * scale. gamma/beta None: 1/0."""
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    var = np.asarray(var, dtype=np.float64).reshape(-1)
    gamma = np.ones_like(mean) if gamma is None else np.asarray(gamma, dtype=np.float64).reshape(-1)
    beta = np.zeros_like(mean) if beta is None else np.asarray(beta, dtype=np.float64).reshape(-1)
    if not (mean.shape == var.shape == gamma.shape == beta.shape):
        raise ToolError(f"{label}: mean, var, scale and bias have different lengths "
                        f"({mean.size}, {var.size}, {gamma.size}, {beta.size})")
    eps = float(eps)
    denom = var + eps
    if not np.isfinite(eps) or not (denom > 0).all():
        raise ToolError(f"{label}: var + eps must be > 0 (eps={eps}, smallest var {var.min() if var.size else 0})")
    scale = gamma / np.sqrt(denom)
    shift = beta - mean * scale
    if not (np.isfinite(scale).all() and np.isfinite(shift).all()):
        raise ToolError(f"{label}: the folded scale or shift overflows")
    return ChannelAffine(scale, shift, shape, label=label)


# ---- one layer's dense (matrix, bias) -----------------------------------------------------------------
def dense_affine(W, b=None):
    return Dense(W, b).dense()


def conv2d_affine(weight, bias, in_shape, stride=1, padding=0, dilation=1, groups=1):
    """(matrix, bias) of a Conv2d on flattened (C, H, W) inputs; the output shape is Conv2d(...).out_shape."""
    return Conv2d(weight, bias, in_shape, stride, padding, dilation, groups).dense()


def avgpool2d_affine(in_shape, kernel, stride=None, padding=0, count_include_pad=True, ceil_mode=False,
                     divisor_override=None):
    """(matrix, bias) of an AvgPool2d on flattened (C, H, W) inputs; ceil_mode=True is refused."""
    if ceil_mode:
        raise ToolError("AvgPool2d: ceil_mode=True is not supported (only floor rounding of the output size)")
    return AvgPool2d(in_shape, kernel, stride, padding, count_include_pad, divisor_override).dense()


def batchnorm_affine(mean, var, gamma, beta, eps, shape):
    """(matrix, bias) of an eval-mode BatchNorm on flattened inputs of `shape` (channels first)."""
    return batchnorm(mean, var, gamma, beta, eps, shape).dense()


# ---- composition ----------------------------------------------------------------------------------------
def _entries(n: int) -> str:
    return f"{n:,}"


def compose(layers, limit: int | None = None, what: str | None = None, direction: str = "auto"):
    """(W, b) of the affine map layers[-1] o ... o layers[0] (consecutive sizes must match).

    Refuses (ToolError naming `what`, default the layers) a W of more than `limit` entries before
    allocating it. W is built by blocks of columns (direction "forward": blocks of unit vectors, or of
    the first layer's columns when it is Dense, through every layer's `apply`) or of rows ("backward":
    unit rows, or the last Dense layer's rows, through `apply_t` from the last layer to the first);
    "auto" takes the side with fewer vectors to push (min(n_in, n_out)). Nothing larger than W is held:
    a block holds at most BLOCK_ENTRIES floats per intermediate tensor (one vector when that is more).
    """
    layers = list(layers)
    limit = MAX_DENSE_ENTRIES if limit is None else limit
    for a, b in zip(layers, layers[1:]):
        if a.n_out != b.n_in:
            raise ToolError(f"{b.label} takes {b.n_in} inputs (shape {list(b.in_shape)}) but {a.label} gives "
                            f"{a.n_out} (shape {list(a.out_shape)})")
    first, last = layers[0], layers[-1]
    n_in, n_out = first.n_in, last.n_out
    if n_in * n_out > limit:
        span = first.label if len(layers) == 1 else f"{first.label} .. {last.label}"
        raise ToolError(f"{what or span}: its dense matrix would be {n_out} x {n_in} = {_entries(n_out * n_in)} "
                        f"entries, over the limit of {_entries(limit)} (the net holds dense float64 matrices)")
    if len(layers) == 1 and isinstance(first, Dense):
        return first.W.copy(), first.bias.copy()
    b = first.bias.copy()
    for layer in layers[1:]:
        b = layer.apply(b[None, :])[0] + layer.bias
    forward = n_in <= n_out if direction == "auto" else direction == "forward"
    end = first if forward else last           # a Dense at the end we start from gives its columns/rows
    rest = list(layers if forward else reversed(layers))
    if isinstance(end, Dense):
        rest = rest[1:]
    width = max([layer.work for layer in rest] or [1])
    n = n_in if forward else n_out
    block = max(1, min(n, BLOCK_ENTRIES // max(width, 1)))
    W = np.empty((n_out, n_in))
    for j0 in range(0, n, block):
        j1 = min(n, j0 + block)
        if isinstance(end, Dense):
            X = np.ascontiguousarray(end.W[:, j0:j1].T) if forward else end.W[j0:j1]
        else:
            X = np.zeros((j1 - j0, n))
            X[np.arange(j1 - j0), np.arange(j0, j1)] = 1.0
        for layer in rest:
            X = layer.apply(X) if forward else layer.apply_t(X)
        if forward:
            W[:, j0:j1] = X.T
        else:
            W[j0:j1] = X
    return W, b


class Relu:
    """A ReLU between layers, named for error messages."""

    def __init__(self, label: str = "ReLU"):
        self.label = label


def compose_net(items, *, prefix: str = "", meta: dict | None = None, limit: int | None = None) -> ReluNet:
    """ReluNet from Layers and Relu markers in forward order: every chain of layers between two ReLUs
    becomes one layer (W, b); ReLUs with no layer between them are one ReLU (ReLU(ReLU(x)) = ReLU(x)).

    Refused (ToolError, prefixed by `prefix`): a ReLU before the first layer (a ReLU of the input), a
    ReLU at the end (the output layer must be linear), no layer at all, a layer over `limit` entries
    (default MAX_DENSE_ENTRIES, read when called).
    meta["layers"] lists, per ReluNet layer, the labels of the layers composed into it.
    """
    chains: list[list[Layer]] = [[]]
    last_relu = None
    for item in items:
        if isinstance(item, Relu):
            if not chains[0]:
                raise ToolError(f"{prefix}{item.label} comes before any affine layer; the net must start with an "
                                "affine layer (a ReLU of the input is not supported)")
            if chains[-1]:
                chains.append([])
            last_relu = item
        else:
            chains[-1].append(item)
    if not chains[0]:
        raise ToolError(f"{prefix}no affine layer: nothing to read as a net")
    if not chains[-1]:
        raise ToolError(f"{prefix}the net ends with a ReLU ({last_relu.label}); the output layer must be linear")
    ws, bs = [], []
    for k, chain in enumerate(chains):
        if ws and chain[0].n_in != ws[-1].shape[0]:
            raise ToolError(f"{prefix}{chain[0].label} takes {chain[0].n_in} inputs but the layer before it gives "
                            f"{ws[-1].shape[0]}")
        span = chain[0].label if len(chain) == 1 else f"{chain[0].label} .. {chain[-1].label}"
        try:
            W, b = compose(chain, limit=limit, what=f"layer {k + 1} of the net ({span})")
        except ToolError as e:
            raise ToolError(f"{prefix}{e}") from None
        ws.append(W)
        bs.append(b)
    meta = dict(meta or {})
    meta["layers"] = [[layer.label for layer in chain] for chain in chains]
    return ReluNet(ws, bs, meta=meta)
