"""Statistics of the verdict: bootstrap intervals of a median, the Wilcoxon signed-rank test, paired ratios.

Pure numpy (and the standard library's erfc); no file I/O. Conventions, stated once here and in docs/figures.md:

- `bootstrap_median_ci`: the *percentile* bootstrap. `n_boot` resamples of the values with replacement
  (numpy `default_rng(seed)`), the median of each, and the (1 - level)/2 and (1 + level)/2 quantiles of those
  medians (numpy's default linear interpolation).
- `wilcoxon_signed_rank`: paired, two-sided, zeros by **Pratt's method** (scipy's `zero_method="pratt"`): the
  zero differences take part in the ranking of |d| and then contribute to neither rank sum; the mean and the
  variance of the normal approximation are reduced by the zeros' share (Cureton 1967). The p-value is exact
  (the null distribution of the rank sum by counting sign assignments) when there are at most EXACT_MAX_N
  differences, none zero and no ties among |d|; else the normal approximation without continuity
  correction, with the tie correction sum(t^3 - t)/48 over the groups of equal non-zero |d|. This equals
  `scipy.stats.wilcoxon(a, b, zero_method="pratt", correction=False, method=<"exact" | "asymptotic">)`.
  When every difference is zero the test has nothing to rank: p = 1 (scipy returns nan).
- `median_ratio`: the median over the pairs with a > 0 of b / a (the median of the per-pair ratios, not the
  ratio of the medians): a paired effect size, 0.5 when b halves every a.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from src.core.errors import ToolError

EXACT_MAX_N = 50          # the exact null distribution up to this many differences (scipy's method="auto" limit)

_BOOT_CELLS = 4_000_000   # resampled values held in memory at once by the bootstrap


def _vector(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ToolError(f"{name}: expected a 1-D list of numbers, got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ToolError(f"{name}: values must be finite numbers")
    return x


# ---- medians with bootstrap intervals ----------------------------------------------------
@dataclass(frozen=True)
class MedianCI:
    """A sample median and its percentile-bootstrap interval."""

    median: float
    low: float
    high: float
    level: float


def bootstrap_median_ci(values, n_boot: int = 10000, seed: int = 0, level: float = 0.95) -> MedianCI:
    """The median of `values` and its percentile-bootstrap interval at `level` (see the module docstring)."""
    x = _vector(values, "bootstrap_median_ci")
    if x.size == 0:
        raise ToolError("bootstrap_median_ci: no values")
    if not 0 < level < 1:
        raise ToolError(f"bootstrap_median_ci: level must lie strictly between 0 and 1, got {level}")
    if int(n_boot) != n_boot or n_boot < 1:
        raise ToolError(f"bootstrap_median_ci: n_boot must be a positive integer, got {n_boot}")
    n_boot = int(n_boot)
    rng = np.random.default_rng(seed)
    chunk = max(1, _BOOT_CELLS // x.size)
    medians = np.empty(n_boot)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        medians[start:stop] = np.median(x[rng.integers(0, x.size, size=(stop - start, x.size))], axis=1)
    lo, hi = np.quantile(medians, [(1 - level) / 2, (1 + level) / 2])
    return MedianCI(float(np.median(x)), float(lo), float(hi), float(level))


# ---- the Wilcoxon signed-rank test -------------------------------------------------------
@dataclass(frozen=True)
class SignedRank:
    """The paired test of b against a on d = b - a."""

    n: int               # pairs, zero differences included
    n_zero: int          # pairs with b == a
    r_plus: float        # rank sum of the positive differences (b > a)
    r_minus: float       # rank sum of the negative differences (b < a)
    pvalue: float        # two-sided
    method: str          # "exact", "normal" or "all zero"

    @property
    def statistic(self) -> float:
        """min(r_plus, r_minus), the two-sided statistic scipy reports."""
        return min(self.r_plus, self.r_minus)

    @property
    def direction(self) -> int:
        """-1 when b tends to be below a (r_minus > r_plus), +1 above, 0 neither."""
        return int(np.sign(self.r_plus - self.r_minus))


def average_ranks(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ranks 1..n of x with ties given their average rank, sizes of the groups of equal values)."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    sizes = np.diff(np.r_[starts, xs.size])
    avg = starts + (sizes + 1) / 2.0                  # average of the ranks starts+1 .. starts+sizes
    ranks = np.empty(x.size)
    ranks[order] = np.repeat(avg, sizes)
    return ranks, sizes


def signed_rank_null_counts(n: int) -> np.ndarray:
    """c[k] = the number of subsets of {1..n} whose sum is k (k = 0..n(n+1)/2): the null distribution of the
    rank sum times 2^n."""
    c = np.zeros(n * (n + 1) // 2 + 1, dtype=np.int64)
    c[0] = 1
    for i in range(1, n + 1):
        c[i:] = c[i:] + c[:-i].copy()
    return c


def wilcoxon_signed_rank(a, b) -> SignedRank:
    """Two-sided Wilcoxon signed-rank test of the pairs (a_i, b_i), zeros by Pratt's method (module docstring)."""
    a, b = _vector(a, "wilcoxon_signed_rank a"), _vector(b, "wilcoxon_signed_rank b")
    if a.shape != b.shape:
        raise ToolError(f"wilcoxon_signed_rank: a and b must pair up, got {a.size} and {b.size} values")
    if a.size == 0:
        raise ToolError("wilcoxon_signed_rank: no pairs")
    d = b - a
    n = d.size
    zero = d == 0
    n_zero = int(zero.sum())
    ranks, sizes = average_ranks(np.abs(d))
    r_plus = float(ranks[d > 0].sum())
    r_minus = float(ranks[d < 0].sum())
    if n_zero == n:
        return SignedRank(n, n_zero, 0.0, 0.0, 1.0, "all zero")
    ties = np.any(sizes > 1)
    if n <= EXACT_MAX_N and n_zero == 0 and not ties:
        counts = signed_rank_null_counts(n).astype(np.float64)
        total = 2.0 ** n
        k = int(round(r_plus))
        cdf = counts[:k + 1].sum() / total             # P(W <= k)
        sf = counts[k:].sum() / total                  # P(W >= k)
        return SignedRank(n, n_zero, r_plus, r_minus, float(min(1.0, 2 * min(cdf, sf))), "exact")
    mean = (n * (n + 1) - n_zero * (n_zero + 1)) / 4.0
    var = n * (n + 1) * (2 * n + 1) - n_zero * (n_zero + 1) * (2 * n_zero + 1)
    if n_zero:                                         # the zeros form the lowest group; they are not ties
        sizes = sizes[1:]
    var = (var - np.sum(sizes.astype(np.float64) ** 3 - sizes) / 2.0) / 24.0
    z = (r_plus - mean) / math.sqrt(var)
    return SignedRank(n, n_zero, r_plus, r_minus, float(math.erfc(abs(z) / math.sqrt(2.0))), "normal")


# ---- effect sizes ------------------------------------------------------------------------
def pair_ratios(a, b) -> np.ndarray:
    """b_i / a_i over the pairs with a_i > 0 (the others are left out)."""
    a, b = _vector(a, "pair_ratios a"), _vector(b, "pair_ratios b")
    if a.shape != b.shape:
        raise ToolError(f"pair_ratios: a and b must pair up, got {a.size} and {b.size} values")
    keep = a > 0
    return b[keep] / a[keep]


def median_ratio(a, b) -> float:
    """The median over the pairs with a > 0 of b / a; nan when no pair has a > 0."""
    r = pair_ratios(a, b)
    return float(np.median(r)) if r.size else math.nan
