"""Input domains as the scripts name them: the box [lo,hi]^n0, or a local box [c-L, c+L] ∩ [lo,hi]
around the point of a center file or an MNIST test image (`DomainSpec`, `box_for`, `domains_from_args`).

`Box` and the domain names every output file carries (`input_0_1`, `input_<lo>_<hi>`,
`center_<name>_width_<L>`) live in src/core/box.py; the flags in src/cli/domain_args.py.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.box import Box, check_box, parse_domain_name
from src.core.errors import ToolError
from src.io.mnist import load_mnist_arrays


def read_center_file(path, n_inputs: int) -> np.ndarray:
    """The authors' center format: one line of n0 comma-separated values."""
    path = Path(path)
    try:
        text = path.read_text()
    except (FileNotFoundError, IsADirectoryError):
        raise ToolError(f"--center {path}: file not found") from None
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("//")]
    if len(lines) != 1:
        raise ToolError(f"--center {path}: expected one line of {n_inputs} comma-separated values, found {len(lines)} lines")
    toks = [t for t in lines[0].replace(",", " ").split()]
    try:
        vals = np.array([float(t) for t in toks])
    except ValueError as e:
        raise ToolError(f"--center {path}: {e}") from None
    if vals.size != n_inputs:
        raise ToolError(f"--center {path}: has {vals.size} values but the network has {n_inputs} inputs")
    return vals


def test_image(index: int, data_root="data") -> np.ndarray:
    """The index-th MNIST test image as float64 in [0,1]."""

    x, _ = load_mnist_arrays("test", root=data_root)
    if not 0 <= index < len(x):
        raise ToolError(f"--center-test-index {index}: out of range, the MNIST test set has {len(x)} images (0..{len(x) - 1})")
    return x[index].astype(np.float64)


def check_lo_hi(lo: float, hi: float) -> None:
    """The --lo/--hi flags name a box: lo < hi."""
    if not hi > lo:
        raise ToolError(f"--lo/--hi: need lo < hi, got lo={lo:g}, hi={hi:g}")


def parse_width(text) -> float:
    try:
        w = float(text)
    except (TypeError, ValueError):
        raise ToolError(f"--width: not a number: {text!r}") from None
    if not np.isfinite(w) or w <= 0:
        raise ToolError(f"--width must be > 0, got {text}")
    return w


def box_from_domain_name(name: str, n_inputs: int, data_root=None) -> Box | None:
    """The box a domain name stands for, when the name alone fixes it: `input_<lo>_<hi>` or
    `center_test<K>_width_<L>` (a 784-input net; MNIST test image K); else None."""
    parsed = parse_domain_name(name)
    try:
        if parsed and parsed[0] == "uniform":
            return Box.uniform(n_inputs, parsed[1], parsed[2])
        if parsed and parsed[0] == "local" and n_inputs == 784 and re.fullmatch(r"test\d+", parsed[1]):
            k = int(parsed[1][4:])
            return Box.around(test_image(k, data_root), parsed[2], f"test{k}")
    except ToolError:
        return None
    return None


@dataclass(frozen=True)
class DomainSpec:
    """The input domain as add_domain_arguments' flags name it, before the net is known: the box
    [lo,hi]^n0, or the local box of half-width `width` around the point in the file `center` or around
    MNIST test image `center_test_index` (a sweep when width lists several values or the index is A:B).
    Steps take it as `domain=` and resolve it with `box_for` / `domains_for`."""

    lo: float = 0.0
    hi: float = 1.0
    center: str | None = None
    center_test_index: str | int | None = None
    width: str | float | None = None

    @classmethod
    def from_args(cls, args) -> "DomainSpec":
        return cls(args.lo, args.hi, args.center, args.center_test_index, args.width)

    @property
    def is_default(self) -> bool:
        """True for [0,1]^n0 named by no flag at all."""
        return (self.lo == 0.0 and self.hi == 1.0 and self.center is None and self.center_test_index is None
                and self.width is None)


def box_for(domain: "DomainSpec | Box | None", n_inputs: int, data_root=None) -> Box:
    """The one box a DomainSpec names (None: [0,1]^n0); a Box is checked against the net's inputs."""
    if isinstance(domain, Box):
        return check_box(domain, n_inputs)
    return box_from_args(domain or DomainSpec(), n_inputs, data_root)


def domains_for(domain: "DomainSpec | Box | None", n_inputs: int, data_root=None) -> tuple[list[tuple], bool]:
    """[(center label, width, Box)] a DomainSpec names and whether it is a sweep (domains_from_args)."""
    if isinstance(domain, Box):
        return [(None, None, check_box(domain, n_inputs))], False
    return domains_from_args(domain or DomainSpec(), n_inputs, data_root)


def box_from_args(args, n_inputs: int, data_root="data") -> Box:
    """The domain named by add_domain_arguments' flags."""
    if args.center and args.center_test_index is not None:
        raise ToolError("give either --center or --center-test-index, not both")
    if args.center is None and args.center_test_index is None:
        if args.width is not None:
            raise ToolError("--width needs --center or --center-test-index")
        check_lo_hi(args.lo, args.hi)
        return Box.uniform(n_inputs, args.lo, args.hi)
    if args.width is None:
        raise ToolError("--center/--center-test-index needs --width L")
    width = parse_width(args.width)
    if args.center:
        c = read_center_file(args.center, n_inputs)
        name = Path(args.center).stem
    else:
        try:
            k = int(args.center_test_index)
        except ValueError:
            raise ToolError(f"--center-test-index: not an integer: {args.center_test_index!r}") from None
        if n_inputs != 784:
            raise ToolError(f"--center-test-index needs a 784-input (MNIST) network, this one has {n_inputs} inputs")
        c = test_image(k, data_root)
        name = f"test{k}"
    return Box.around(c, width, name, args.lo, args.hi)


def parse_index_spec(text) -> tuple[list[int], bool]:
    """`K` -> ([K], False); `A:B` -> (A..B-1, True). Indices must lie in 0..9999 (MNIST test set)."""
    s = str(text).strip()
    is_range = ":" in s
    parts = s.split(":") if is_range else [s]
    if len(parts) > 2:
        raise ToolError(f"--center-test-index: expected K or A:B, got {text!r}")
    try:
        vals = [int(p) for p in parts]
    except ValueError:
        raise ToolError(f"--center-test-index: expected an integer K or a range A:B of integers, got {text!r}") from None
    for v in vals:
        if not 0 <= v <= (10000 if is_range else 9999):
            raise ToolError(f"--center-test-index {text}: {v} is out of range, the MNIST test set has "
                            "10000 images (0..9999; a range A:B stops before B <= 10000)")
    if is_range:
        a, b = vals
        if b <= a:
            raise ToolError(f"--center-test-index {text}: empty range, need A < B (A:B means A..B-1)")
        return list(range(a, b)), True
    return vals, False


def parse_widths(text) -> list[float]:
    """`L` or `L1,L2,...`: each a finite number > 0."""
    toks = [t.strip() for t in str(text).split(",")]
    if not toks or any(t == "" for t in toks):
        raise ToolError(f"--width: expected L or a comma-separated list L1,L2,..., got {text!r}")
    return [parse_width(t) for t in toks]


def domains_from_args(args, n_inputs: int, data_root=None) -> tuple[list[tuple], bool]:
    """[(center label, width, Box)] named by add_domain_arguments' flags, and whether it is a sweep:
    --width may list several values and --center-test-index may be a range A:B."""
    if args.center and args.center_test_index is not None:
        raise ToolError("give either --center or --center-test-index, not both")
    if args.center is None and args.center_test_index is None:
        return [(None, None, box_from_args(args, n_inputs))], False
    if args.width is None:
        raise ToolError("--center/--center-test-index needs --width L (or a list L1,L2,...)")
    widths = parse_widths(args.width)
    check_lo_hi(args.lo, args.hi)
    if args.center:
        centers = [(Path(args.center).stem, read_center_file(args.center, n_inputs))]
        is_range = False
    else:
        idx, is_range = parse_index_spec(args.center_test_index)
        if n_inputs != 784:
            raise ToolError(f"--center-test-index needs a 784-input (MNIST) network, this one has {n_inputs} inputs")
        centers = [(f"test{k}", test_image(k, data_root)) for k in idx]
    out = [(name, w, Box.around(c, w, name, args.lo, args.hi)) for name, c in centers for w in widths]
    return out, is_range or len(out) > 1
