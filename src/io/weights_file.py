"""Read and write the authors' `weights.dat` text format.

Layout::

    //Model path = <path>
    //Classification accuracy = 97.50%
    levels = 3;
    n = [784, 100, 100, 10];
    W = [
    w,w,w,...          <- row 0 of W_1 (shape out x in), values comma-separated
    ,w,w,...           <- every later line starts with a comma: one flat row-major list
    ];
    B = [
    b,b,...            <- all biases of layer 1
    ,b,b,...           <- layer 2, ...
    ];

`levels` counts Linear layers (the output layer included). Values are written as the
shortest round-trip decimal (`repr`), so read(write(net)) is bit-exact.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.io.files import atomic_open, read_utf8


class WeightsFormatError(ToolError):
    """A defect in a weights.dat file; the message names the file and line."""


@dataclass
class WeightsFile:
    layer_sizes: list[int]
    weights: list[np.ndarray]
    biases: list[np.ndarray]
    meta: dict = field(default_factory=dict)


_LEVELS = re.compile(r"^levels\s*=\s*(\S+?)\s*;?$")

_SIZES = re.compile(r"^n\s*=\s*\[(.*)\]\s*;?$")

_BLOCK = re.compile(r"^([WB])\s*=\s*\[(.*)$")

_META = re.compile(r"^//\s*(Model path|Classification accuracy)\s*=\s*(.*)$")


def read_weights(path) -> WeightsFile:
    """Parse a weights.dat file; any defect raises WeightsFormatError with file and line."""
    path = Path(path)
    text = read_utf8(path, "weights file", WeightsFormatError)

    def fail(lineno, msg):
        raise WeightsFormatError(f"{path}:{lineno}: {msg}")

    meta: dict = {}
    levels = sizes = None
    blocks: dict[str, list[float]] = {}
    block_line: dict[str, int] = {}
    current = None  # name of the open block
    lines = text.splitlines()
    for lineno, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("//"):
            m = _META.match(line)
            if m:
                meta["model_path" if m.group(1) == "Model path" else "accuracy"] = m.group(2).strip()
            continue
        if current is None:
            if (m := _LEVELS.match(line)):
                try:
                    levels = int(m.group(1))
                except ValueError:
                    fail(lineno, f"levels must be an integer, got {m.group(1)!r}")
                if levels < 1:
                    fail(lineno, f"levels must be >= 1, got {levels}")
                continue
            if (m := _SIZES.match(line)):
                try:
                    sizes = [int(t) for t in m.group(1).replace(",", " ").split()]
                except ValueError:
                    fail(lineno, f"n must list integers, got [{m.group(1)}]")
                if len(sizes) < 2 or min(sizes) < 1:
                    fail(lineno, f"n must list at least two positive sizes, got {sizes}")
                continue
            if (m := _BLOCK.match(line)):
                current = m.group(1)
                if current in blocks:
                    fail(lineno, f"second '{current} = [' block")
                blocks[current] = []
                block_line[current] = lineno
                line = m.group(2)
            else:
                fail(lineno, f"unexpected line {raw.strip()[:60]!r} (expected levels, n, W or B)")
        elif _BLOCK.match(line) or _SIZES.match(line) or _LEVELS.match(line):
            fail(lineno, f"unexpected {line[:20]!r}: the '{current} = [' block of line {block_line[current]} is not closed with '];'")
        # inside a block: values up to an optional closing '];'
        closing = "]" in line
        if closing:
            body, _, rest = line.partition("]")
            if rest.strip() not in ("", ";"):
                fail(lineno, f"unexpected text after ']': {rest.strip()[:40]!r}")
        else:
            body = line
        for tok in body.replace(",", " ").split():
            try:
                v = float(tok)
            except ValueError:
                fail(lineno, f"not a number: {tok[:40]!r}")
            if "_" in tok or not np.isfinite(v):
                fail(lineno, f"value must be a finite decimal number, got {tok[:40]!r}")
            blocks[current].append(v)
        if closing:
            current = None
    end = max(len(lines), 1)
    if current is not None:
        fail(block_line[current], f"'{current} = [' block is never closed with '];'")
    if sizes is None:
        fail(end, "missing 'n = [...];' line")
    if levels is None:
        fail(end, "missing 'levels = ...;' line")
    if levels != len(sizes) - 1:
        fail(end, f"levels = {levels} but n = {sizes} describes {len(sizes) - 1} layers")
    for name in ("W", "B"):
        if name not in blocks:
            fail(end, f"missing '{name} = [' block")
    n_w = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
    n_b = sum(sizes[1:])
    if len(blocks["W"]) != n_w:
        fail(block_line["W"], f"W has {len(blocks['W'])} values but n = {sizes} needs {n_w}")
    if len(blocks["B"]) != n_b:
        fail(block_line["B"], f"B has {len(blocks['B'])} values but n = {sizes} needs {n_b}")
    flat_w = np.asarray(blocks["W"], dtype=np.float64)
    flat_b = np.asarray(blocks["B"], dtype=np.float64)
    weights, biases = [], []
    iw = ib = 0
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        weights.append(flat_w[iw:iw + n_in * n_out].reshape(n_out, n_in).copy())
        biases.append(flat_b[ib:ib + n_out].copy())
        iw += n_in * n_out
        ib += n_out
    return WeightsFile(sizes, weights, biases, meta)


def _row_texts(w):
    """The rows of one weight matrix as text: dense arrays value by value (repr); scipy sparse matrices
    streamed row by row with their zeros written as `0` (no dense copy)."""
    if hasattr(w, "tocsr"):
        mat = w.tocsr()
        mat.sort_indices()
        n_cols = mat.shape[1]
        for r in range(mat.shape[0]):
            toks = ["0"] * n_cols
            lo, hi = mat.indptr[r], mat.indptr[r + 1]
            for j, v in zip(mat.indices[lo:hi].tolist(), mat.data[lo:hi].tolist()):
                if v != 0.0:
                    toks[j] = repr(v)
            yield ",".join(toks)
    else:
        for row in np.asarray(w, dtype=np.float64).tolist():
            yield ",".join(map(repr, row))


def write_weights(path, weights, biases, model_path: str = "", accuracy: float | None = None) -> None:
    """Write weights/biases atomically to `path`: W_l of shape out x in, dense arrays or scipy sparse
    matrices (streamed). The only writer of the format."""
    sizes = [weights[0].shape[1]] + [w.shape[0] for w in weights]
    acc = "n/a" if accuracy is None else f"{100.0 * accuracy:.2f}%"
    with atomic_open(path, "w") as fh:
        fh.write(f"//Model path = {model_path}\n")
        fh.write(f"//Classification accuracy = {acc}\n")
        fh.write(f"levels = {len(weights)};\n")
        fh.write(f"n = [{', '.join(map(str, sizes))}];\n")
        fh.write("W = [\n")
        first = True
        for w in weights:
            for text in _row_texts(w):
                fh.write(("" if first else ",") + text + "\n")
                first = False
        fh.write("];\nB = [\n")
        for i, b in enumerate(biases):
            fh.write(("" if i == 0 else ",") + ",".join(map(repr, np.asarray(b, np.float64).tolist())) + "\n")
        fh.write("];\n")


def save_net(net, path, model_path: str = "", accuracy: float | None = None) -> None:
    """Write a ReluNet as weights.dat, atomically (a bit-exact round trip through src.io.readers.load_net)."""
    write_weights(path, net.weights, net.biases, model_path=model_path, accuracy=accuracy)
