"""A global estimate of the number of linear regions with a 95 % interval: Knuth's estimator of the number
of leaves of the region tree the lp walk explores (docs/counting.md, "Estimates").

The tree: depth-first over the units not proven stable (`Stability.fixed_bits() == -1`), in layer order; a
node is a prefix (bits of the decided unstable units), a child (unit u set to b) exists iff the prefix plus
that bit is feasible by the definition (some x in the box with g > tol on the decided 1-units and g <= 0 on
the decided 0-units; the stable units take their fixed bits); the leaves at full depth are the regions.

A child is decided by the project's own certified tests. The first levels (the strata, below) are expanded
here: the point carried by the node (verified by the exact forward pass `ReluNet.preactivations`) decides
the child on its side of unit u for free; the other child is decided by the definition's LP
(`src.counting.feasibility_lp.prefix_margin_point`, feasible iff t > tol), whose point is checked by the
forward pass before it is carried further. The probes below them are dives of the compiled lp walk itself
(`CompiledSearch.dive`): the same tree, decided by the walk's tests (carried points, segments, its margin LP
with a dual certificate, the exact LP when that is inconclusive), each leaf checked by the exact forward
pass; on a 400-unit net a probe costs seconds where 784-variable HiGHS LPs at every level cost minutes.

The estimator (stratified Knuth): the first levels of the tree are expanded exactly, breadth first, while
the level holds at most `probes // 4` nodes (the strata; a tree that is a path, or small enough, is counted
exactly); the probes are dealt round-robin over a seeded permutation of the strata; each probe walks from
its stratum to a leaf choosing uniformly among the feasible children, and its value is the product of the
branching counts, 2^(nodes with two feasible children) (0 at a dead end). The estimate is the sum over strata of the mean of their probes; the
95 % interval is the normal one with the stratified variance (sum of s_v^2 / n_v, each s_v^2 at least the
pooled relative variance of the strata times the stratum's mean^2), taken on the log scale (delta method) and clipped to the certified bounds: the distinct regions the probes reached (each
certified feasible) and 2^(unstable units). Seeded and deterministic (the time limit only changes how many
probes run).

The same estimator below given roots (the frontier of an incomplete count: `estimate_regions(roots=...)`)
takes the roots' subtrees as its strata and deals its probes in proportion to their estimates
(`_next_stratum`). The file steps `--estimate N` and `--remaining N` are in src/counting/estimate.py.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import check_prefixes
from src.counting.feasibility_lp import prefix_margin_point
from src.counting.tree_walk import EngineOptions, make_engine
from src.stability.record import Stability

Z95 = 1.959963984540054          # the 97.5 % quantile of the standard normal
MEMO_LIMIT = 100_000             # decided nodes kept (with their points) for later probes


@dataclass
class RegionEstimate:
    """An estimate of the number of linear regions: value, its 95 % interval (hi None: unknown), the probes
    done, the seconds; `patterns`: the distinct full patterns the probes certified (a lower bound)."""
    method: str
    value: float | None
    ci95: tuple
    probes: int
    seconds: float
    requested: int = 0
    strata: int = 1
    strata_depth: int = 0
    unstable_units: int = 0
    seed: int = 0
    stopped: str | None = None
    exact: bool = False
    patterns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    stats: dict = field(default_factory=dict)

    @property
    def lower_bound(self) -> int:
        return int(len(self.patterns))

    def to_json(self) -> dict:
        lo, hi = self.ci95
        out = {"method": self.method, "value": None if self.value is None else float(self.value),
               "ci95": [float(lo), None if hi is None else float(hi)], "probes": int(self.probes),
               "seconds": round(float(self.seconds), 4), "requested": int(self.requested), "seed": int(self.seed),
               "strata": int(self.strata), "strata_depth": int(self.strata_depth),
               "unstable_units": int(self.unstable_units), "certified_patterns": self.lower_bound,
               "exact": bool(self.exact), "stats": dict(self.stats)}
        if self.stopped:
            out["stopped"] = self.stopped
        return out

    def summary(self) -> str:
        lo, hi = self.ci95
        v = "?" if self.value is None else f"{self.value:.4g}"
        h = "?" if hi is None else f"{hi:.4g}"
        stop = f", stopped: {self.stopped}" if self.stopped else ""
        return (f"~{v} linear regions (95% CI [{lo:.4g}, {h}], {self.method}, {self.probes} probes, "
                f"{self.seconds:.2f} s{stop}; {self.lower_bound} certified)")


class _Tree:
    """The region tree of the lp walk, its nodes decided once (memoised) by points and the definition's LP."""

    def __init__(self, net: ReluNet, box: Box, stability: Stability, tol: float):
        self.net, self.box, self.tol = net, box, float(tol)
        self.fixed = stability.fixed_bits().astype(np.int8)
        self.order = np.flatnonzero(self.fixed < 0)
        self.depth = int(len(self.order))
        self.memo: dict = {}
        self.stats = {"nodes": 0, "lps": 0, "lp_feasible": 0, "point_certified": 0, "unverified_points": 0}

    def certify(self, x, bits, rows):
        """All pre-activations at x (clipped to the box) when x realises `bits` on the `rows` and on the stable
        units by the exact forward pass, else None."""
        g = np.concatenate([a[0] for a in self.net.preactivations(x[None, :])])
        need = rows | (self.fixed >= 0)
        ok = np.where(bits[need] == 1, g[need] > self.tol, g[need] <= 0)
        return g if bool(np.all(ok)) else None

    def root(self):
        x = 0.5 * (self.box.lo + self.box.hi)
        return (b"", x, self.certify(x, self.fixed, np.zeros(len(self.fixed), bool)))

    def children(self, node):
        """[(child node), ...] of the feasible children of `node` = (prefix bytes, point, g or None)."""
        key, x, g = node
        hit = self.memo.get(key)
        if hit is not None:
            return hit
        d = len(key)
        u = int(self.order[d])
        bits = self.fixed.copy()
        bits[self.order[:d]] = np.frombuffer(key, np.uint8)
        rows = np.zeros(len(bits), bool)
        rows[self.order[:d + 1]] = True
        out = []
        for b in (0, 1):
            ck = key + bytes([b])
            if g is not None and ((g[u] > self.tol) if b else (g[u] <= 0)):
                self.stats["point_certified"] += 1
                out.append((ck, x, g))
                continue
            bits[u] = b
            self.stats["lps"] += 1
            xb, t = prefix_margin_point(self.net, self.box, bits, rows)
            if xb is None or not t > self.tol:
                continue
            self.stats["lp_feasible"] += 1
            xb = np.clip(np.asarray(xb, np.float64), self.box.lo, self.box.hi)
            gb = self.certify(xb, bits, rows)
            if gb is None:
                self.stats["unverified_points"] += 1     # feasible by the definition; the point is not carried
            out.append((ck, xb, gb))
        self.stats["nodes"] += 1
        if len(self.memo) < MEMO_LIMIT:
            self.memo[key] = out
        return out

    def walk_prefix(self, key: bytes) -> str:
        """The prefix string of the lp walk (over all hidden units, stable ones at their bit) of node `key`."""
        if not key:
            return ""
        end = int(self.order[len(key) - 1]) + 1
        bits = self.fixed[:end].copy()
        bits[self.order[:len(key)]] = np.frombuffer(key, np.uint8)
        return "".join("1" if b == 1 else "0" for b in bits)

    def pattern(self, key: bytes) -> np.ndarray:
        bits = self.fixed.copy()
        bits[self.order] = np.frombuffer(key, np.uint8)
        return bits.astype(np.uint8)


def _interval(mean: float, var: float, lower: int, upper: float) -> tuple:
    """The 95 % interval of a positive estimate with variance `var`: normal on the log scale (delta method,
    lognormal: mean * exp(+-1.96 sqrt(log(1 + var/mean^2)))), clipped to [lower, upper]."""
    if mean <= 0:
        return (float(lower), float(max(lower, 0)) if var == 0 else None)
    s = math.sqrt(math.log1p(var / mean ** 2))
    lo, hi = mean * math.exp(-Z95 * s), mean * math.exp(Z95 * s)
    return (float(max(lo, lower)), float(min(max(hi, lower), upper)))


def _check_roots(roots, n_hidden: int) -> list[str]:
    """The prefixes of `roots` (strings of 0/1 of at most n_hidden bits, in strict lexicographic order, none a
    prefix of the next: disjoint subtrees), else one ToolError."""
    out = check_prefixes(list(roots) if isinstance(roots, (list, tuple)) else roots, n_hidden, "roots of the estimate")
    for k in range(1, len(out)):
        if out[k - 1] >= out[k] or out[k].startswith(out[k - 1]):
            raise ToolError(f"roots of the estimate, items {k - 1} and {k} ({out[k - 1][:40]!r}, {out[k][:40]!r}): "
                            f"not disjoint subtrees in lexicographic order")
    return out


def estimate_regions(net: ReluNet, box: Box, stability: Stability, *, probes: int, tol: float = DEFAULT_TOL,
                     seed: int = 0, deadline: float | None = None, strata: int | None = None,
                     roots=None) -> RegionEstimate:
    """Knuth's estimate (stratified) of the number of feasible activation patterns of `net` on `box`, with a
    95 % interval (the module's docstring). probes >= 1 walks from a stratum to a leaf; deadline (a
    time.perf_counter() value) stops early: fewer probes, `stopped = "time limit"`. strata: the most nodes of
    the exactly expanded levels (default probes // 4).

    roots (prefix strings over all hidden units, as the lp walk's frontier lists them): estimate only the
    patterns below them, these subtrees being the strata (no level is expanded): the regions an incomplete
    count has still to find when `roots` is its frontier (`estimate_remaining`)."""
    if not (isinstance(probes, (int, np.integer)) and not isinstance(probes, bool) and probes >= 1):
        raise ToolError(f"the number of probes must be an integer >= 1, got {probes!r}")
    t0 = time.perf_counter()
    tree = _Tree(net, box, stability, tol)
    D = tree.depth
    upper = float(2.0 ** D)
    cap = max(1, int(probes) // 4) if strata is None else max(1, int(strata))
    rng = np.random.default_rng(seed)
    late = (lambda: False) if deadline is None else (lambda: time.perf_counter() >= deadline)

    def result(method, value, ci, done, leaves, stopped=None, exact=False, n_strata=1, depth=0):
        keys = sorted(set(leaves))
        pats = np.array([tree.pattern(k) for k in keys], np.uint8).reshape(len(keys), net.n_hidden_units)
        return RegionEstimate(method, value, ci, done, time.perf_counter() - t0, int(probes), n_strata, depth, D,
                              int(seed), stopped, exact, pats, dict(tree.stats, memo=len(tree.memo)))

    if roots is not None:
        prefixes = _check_roots(roots, net.n_hidden_units)
        if not prefixes:
            return result("exact (no subtree left)", 0.0, (0.0, 0.0), 0, [], exact=True, n_strata=0)
        # a root's subtree holds at most 2^(its undecided unstable units) patterns
        upper = float(sum(2.0 ** int(np.sum(tree.order >= len(p))) for p in prefixes))
        return _probe_strata(tree, prefixes, "below the given roots", probes, seed, rng, deadline, upper, result, 0,
                             proportional=True)

    # ---- the first levels, exactly ----------------------------------------------------------------
    level, depth, stopped = [tree.root()], 0, None
    while depth < D and level:
        if late():
            stopped = "time limit"
            break
        nxt = []
        for node in level:
            if late():
                stopped = "time limit"
                break
            nxt += tree.children(node)
        if stopped or len(nxt) > cap:
            break
        level, depth = nxt, depth + 1
    if depth == D and stopped is None:
        n = len(level)
        return result("exact (tree enumerated)", float(n), (float(n), float(n)), 0, [k for k, _, _ in level],
                      exact=True, n_strata=n, depth=D)
    if not level:
        return result("exact (tree enumerated)", 0.0, (0.0, 0.0), 0, [], exact=True, n_strata=0, depth=depth)

    return _probe_strata(tree, [tree.walk_prefix(node[0]) for node in level], f"at depth {depth} of {D}", probes,
                         seed, rng, deadline, upper, result, depth)


def _next_stratum(done: int, perm, sums, counts) -> int:
    """The stratum of probe number `done` when strata differ in size by orders of magnitude (the subtrees of
    a frontier): two rounds in the order `perm` (every stratum gets the two probes its variance needs), then
    each probe to the stratum furthest below its share of the probes, the shares proportional to the
    strata's estimates so far (sums / counts of their probes' values: Neyman's allocation when the strata
    have one coefficient of variation; a stratum whose probes all ended at a dead end has an empty subtree
    and gets no more). Ties: `perm` order."""
    S = len(perm)
    if done < 2 * S:
        return int(perm[done % S])
    means = (sums / counts)[perm]
    if not means.sum() > 0:
        return int(perm[done % S])
    return int(perm[int(np.argmax(means / means.sum() * (done + 1) - counts[perm]))])


def _probe_strata(tree: _Tree, prefixes: list, where: str, probes: int, seed: int, rng, deadline, upper: float,
                  result, depth: int, proportional: bool = False) -> RegionEstimate:
    """The probes of `estimate_regions`, dealt round-robin over a seeded permutation of the strata (the
    subtrees below `prefixes`, walk prefix strings), or `proportional`ly to their estimates so far
    (`_next_stratum`), and the stratified estimate with its interval (`result` builds the RegionEstimate;
    a deadline already passed gives no probe and no value)."""
    net, stopped = tree.net, None
    late = (lambda: False) if deadline is None else (lambda: time.perf_counter() >= deadline)
    S = len(prefixes)
    perm = rng.permutation(S)
    values: list[list[float]] = [[] for _ in range(S)]
    sums, counts = np.zeros(S), np.zeros(S)
    leaves = []
    done = 0
    # no eager settlement on a dive: on one path an eager LP can save at most the one LP it anticipates
    # (fcnn4b, a near-chance run: 345 nodes in 90 s without, 204 with)
    engine = make_engine(net, tree.box, tree.fixed, tree.tol, EngineOptions(seed=seed, eager=False))
    dive_deadline = None if deadline is None else time.monotonic() + (deadline - time.perf_counter())
    while done < probes:
        if late():
            stopped = "time limit"
            break
        v = _next_stratum(done, perm, sums, counts) if proportional else int(perm[done % S])
        k, leaf = engine.dive(prefixes[v], rng.random(net.n_hidden_units), dive_deadline)
        if k is None:                  # the deadline fell inside this probe: it is dropped, unfinished
            stopped = "time limit"
            break
        for name, c in engine.stats.items():
            tree.stats[f"walk_{name}"] = tree.stats.get(f"walk_{name}", 0) + c
        values[v].append(0.0 if leaf is None else math.ldexp(1.0, k))
        sums[v] += values[v][-1]
        counts[v] += 1
        if leaf is not None:
            leaves.append(bytes(leaf[tree.order].astype(np.uint8)))
        done += 1
    lower = len(set(leaves))
    method = f"stratified Knuth ({S} strata {where}), log-normal 95% interval"
    if done == 0:
        return result(method, None, (float(lower), upper), 0, leaves, stopped, n_strata=S, depth=depth)
    n = np.array([len(x) for x in values])
    if np.all(n >= 2):
        means = np.array([np.mean(x) for x in values], float)
        s2 = np.array([np.var(x, ddof=1) for x in values], float)
        # a stratum whose few probes happen to agree has s^2 = 0 though its subtree is not a path: each
        # stratum's variance is at least the pooled relative variance of all strata times its mean^2
        pos = means > 0
        cv2 = float(np.sum(((n - 1) * s2)[pos] / means[pos] ** 2) / max(1, np.sum((n - 1)[pos])))
        var = float(np.sum(np.maximum(s2, cv2 * means ** 2) / n))
        mean = float(means.sum())
    else:
        # fewer than two probes in some stratum (a time limit, or few probes): the strata probed are a
        # uniform random subset (the permutation), so S * (their mean) is unbiased; its variance between strata
        covered = [np.mean(x) for x in values if x]
        Y = S * np.array(covered, float)
        mean = float(Y.mean())
        if len(Y) < 2:
            return result(method, mean, (float(lower), upper), done, leaves, stopped, n_strata=S, depth=depth)
        var = float(np.var(Y, ddof=1) / len(Y))
        method += ", between-strata variance"
    return result(method, mean, _interval(mean, var, lower, upper), done, leaves, stopped, n_strata=S, depth=depth)


FORECAST_EVERY = 600.0      # seconds between two forecasts of a running count's total (its progress bar)
FORECAST_SECONDS = 3.0      # the most one forecast may take: its probes stop there
FORECAST_PROBES = 2000


class TotalForecast:
    """The expected total of a running lp count, for its progress bar: called with the frontier each time the
    count saves a checkpoint; at most every `every` seconds it returns the patterns found plus Knuth's
    estimate below that frontier (`estimate_regions(roots=frontier)`, stopped after `seconds`), else None.
    It shows no total when the probes did not reach every subtree of the frontier twice: the between-strata
    estimate of a few subtrees, unbiased but sized by chance, once showed 512 regions left of 10^7.
    Display only: it writes nothing, and a frontier it cannot use turns it off instead of failing the count."""

    def __init__(self, net: ReluNet, box: Box, stability: Stability, tol: float = DEFAULT_TOL, *,
                 every: float | None = None, seconds: float | None = None, probes: int = FORECAST_PROBES,
                 seed: int = 0):
        self.net, self.box, self.stability, self.tol = net, box, stability, float(tol)
        self.every = FORECAST_EVERY if every is None else float(every)
        self.seconds = FORECAST_SECONDS if seconds is None else float(seconds)
        self.probes, self.seed = int(probes), int(seed)
        self.off = False
        self._next = time.monotonic() + self.every

    def __call__(self, frontier, found: int) -> float | None:
        if self.off or frontier is None or time.monotonic() < self._next:
            return None
        try:
            est = estimate_regions(self.net, self.box, self.stability, probes=self.probes, tol=self.tol,
                                   seed=self.seed, deadline=time.perf_counter() + self.seconds, roots=list(frontier))
        except ToolError:
            self.off = True
            return None
        self._next = time.monotonic() + self.every
        if est.value is None or est.probes < 2 * est.strata:
            return None        # some subtree of the frontier had fewer than two probes (a busy machine): no total
        return int(found) + float(est.value)
