"""MIPBound: a probabilistic lower bound on the number of linear regions by random XOR (parity) constraints on the
MILP of the net (Serra & Ramalingam, "Empirical Bounds on Linear Regions of Deep Rectifier Networks", AAAI 2020;
docs/counting.md, "MIPBound").

The solution set. N = the number of feasible activation patterns of the net on the box (the definition of
docs/counting.md, tolerance tol). Stable units have the same bit in every feasible pattern, so N is the number
of distinct assignments of the U unstable units' bits among the feasible patterns: the binaries z of the lean
MILP of src/stability/milp.py.

The test. A trial with r XORs draws r constraints  z_{i_1} xor ... xor z_{i_k} = b, each over k distinct
unstable units chosen uniformly (k = the XOR size) with a parity bit b uniform in {0, 1}, all independent,
and asks whether some feasible pattern satisfies all r (the MILP with the XORs; src/counting/backends/xor_milp.py).

The theorem (the lower bound of MBound, Gomes, Sabharwal & Selman, "Model Counting: A New Strategy for
Obtaining Good Bounds", AAAI 2006, on which MIPBound is built; the MIPBound paper's own text could not be read
where this was written, so this is the statement implemented, with its proof). If N < 2^(r - alpha), one trial with r XORs is
satisfiable with probability < 2^-alpha, so all of S independent trials are with probability < 2^(-alpha S).
Proof: a fixed pattern satisfies one XOR with probability exactly 1/2 whatever its units (b is uniform and
independent of them), r independent XORs with probability 2^-r; the expected number of feasible patterns
satisfying them is N 2^-r < 2^-alpha, and P(at least one) <= that expectation (Markov). Only the first moment
is used, so the lower bound holds for XORs of ANY size k >= 1 (long XORs are needed only for MBound's upper
bounds, which need pairwise independence); short XORs are cheaper to solve but spread the patterns less
evenly, so that trials fail earlier and the bound comes out smaller, never wrong.

The procedure (this module). For r = 1, 2, ...: run the S trials with r XORs (each trial's XORs drawn from its
own seeded generator, (seed, r, trial)); stop at the first r at which some trial is not certified satisfiable
(proved infeasible, a point that does not verify, a time limit or a solver that gives up). r* = the last r at
which all S were. Claim: N >= 2^(r* - alpha) with probability >= 1 - 2^(-alpha S) (default alpha = 1, S = 5:
N >= 2^(r* - 1) with probability >= 31/32 = 0.969). Why the data-dependent stop is fine: let r0 be the
smallest r >= 1 with N < 2^(r - alpha), a number fixed by N alone; the claim is false only if r* >= r0, which
needs all S trials at r0 satisfiable, of probability < 2^(-alpha S) by the theorem. `log2_lower` = r* - alpha,
clipped at 0 (N is an integer: N > 0 means N >= 1), None when nothing is known (no r completed and no
pattern certified). r stops at U + alpha (no claim beyond 2^U).

Certification (the count's rule for a point, never the solver's word): a trial is satisfied only by a
pattern certified feasible by a point of the box pushed through the exact forward pass
(`src.counting.count_bounds.data_patterns`: every unit has g > tol or g <= 0; the pattern is bit 1 iff g > tol)
that satisfies the trial's XORs. The solver's point is tried first (clipped to the box), then the max-margin
point of the LP of the solver's pattern (`src.counting.feasibility_lp.max_margin_point`, two-sided, then the
definition's one-sided LP); if none verifies the trial counts as not satisfied (conservative: it can only lower
r*). Infeasible trials need no certificate (they only lower r*). A trial already satisfied by a pattern certified
earlier (a previous trial's, or the `known` ones of the caller, e.g. the count's data patterns) needs no solve.
The distinct patterns the solves certified are a certified lower bound on N (probability 1): `patterns_found`.

Seeded and deterministic: a time limit only changes how far r gets.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from src.core.box import Box
from src.core.defaults import DEFAULT_TOL
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import pattern_keys, patterns_of_keys
from src.counting.count_bounds import data_patterns
from src.counting.driver import SideRun
from src.counting.feasibility_lp import max_margin_point
from src.counting.problem import ProblemTooLarge
from src.stability.milp import build_formulation
from src.stability.record import Stability

DEFAULT_TRIALS = 5          # S: with alpha = 1 the bound holds with probability 1 - 2^-5 = 0.969
DEFAULT_ALPHA = 1.0         # the bound is 2^(r* - alpha)
XOR_SIZE_CAP = 32           # the default XOR size: half the unstable units, at most this many
SOLVERS = ("scip", "gurobi")


def default_xor_size(n_unstable: int) -> int:
    """Half the unstable units (rounded up), at least 1 and at most XOR_SIZE_CAP."""
    return int(max(1, min(XOR_SIZE_CAP, math.ceil(n_unstable / 2))))


def mipbound_probability(trials: int, alpha: float = DEFAULT_ALPHA) -> float:
    """The probability with which N >= 2^(r* - alpha) holds: 1 - 2^(-alpha * trials)."""
    return 1.0 - 2.0 ** (-float(alpha) * int(trials))


def draw_xors(seed: int, r: int, trial: int, n_units: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The r XORs of one trial: (A, b), A uint8 (r, n_units) with k ones per row (units chosen uniformly without
    replacement), b uint8 (r,) uniform; from the generator seeded with (seed, r, trial)."""
    rng = np.random.default_rng([int(seed), int(r), int(trial)])
    A = np.zeros((r, n_units), np.uint8)
    for j in range(r):
        A[j, rng.choice(n_units, size=k, replace=False)] = 1
    b = rng.integers(0, 2, size=r).astype(np.uint8)
    return A, b


def satisfies(bits: np.ndarray, A: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per row of bits (P, n_units) over the unstable units: does it satisfy every XOR (A, b)?"""
    bits = np.atleast_2d(np.asarray(bits, np.uint8))
    ok = np.ones(bits.shape[0], bool)
    for row, bj in zip(A, b):
        cols = np.flatnonzero(row)
        parity = np.bitwise_xor.reduce(bits[:, cols], axis=1) if cols.size else np.zeros(bits.shape[0], np.uint8)
        ok &= parity == bj
    return ok


def certify_point(net: ReluNet, box: Box, tol: float, x) -> np.ndarray | None:
    """The pattern (uint8 over all hidden units) certified by the point x clipped to the box, by the count's rule
    for a point (`data_patterns`: every g > tol or <= 0, by the exact forward pass), else None."""
    x = np.clip(np.asarray(x, np.float64).reshape(1, -1), box.lo, box.hi)
    keys = data_patterns(net, {"mipbound": x}, tol, box).keys
    return patterns_of_keys(keys, net.n_hidden_units)[0] if keys else None


@dataclass
class MipBound:
    """The MIPBound of the number of regions: N >= 2^log2_lower with probability >= `probability`
    (None: nothing known); `patterns`: the distinct patterns the solves certified (N >= len, certain);
    `per_r`: per number of XORs r, the trials satisfied and how."""
    log2_lower: float | None
    probability: float
    xor_size: int
    trials: int
    alpha: float = DEFAULT_ALPHA
    r_max_tried: int = 0
    unstable_units: int = 0
    seed: int = 0
    solver: str = "scip"
    seconds: float = 0.0
    stopped: str | None = None
    per_r: list = field(default_factory=list)
    patterns: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.uint8))
    stats: dict = field(default_factory=dict)
    notes: list = field(default_factory=list)

    @property
    def patterns_found(self) -> int:
        return int(len(self.patterns))

    def to_json(self) -> dict:
        out = {"log2_lower": None if self.log2_lower is None else float(self.log2_lower),
               "probability": float(self.probability), "xor_size": int(self.xor_size), "trials": int(self.trials),
               "alpha": float(self.alpha), "r_max_tried": int(self.r_max_tried),
               "unstable_units": int(self.unstable_units), "patterns_found": self.patterns_found,
               "seed": int(self.seed), "solver": self.solver, "seconds": round(float(self.seconds), 4),
               "per_r": [dict(x) for x in self.per_r], "stats": dict(self.stats),
               "method": "MIPBound (Serra & Ramalingam, AAAI 2020): the lower bound of MBound (Gomes, Sabharwal & "
                         "Selman, AAAI 2006) with random XORs on the MILP's binaries"}
        if self.notes:
            out["note"] = "; ".join(self.notes)
        if self.stopped:
            out["stopped"] = self.stopped
        return out

    def summary(self) -> str:
        return mipbound_line(self.to_json())


def mipbound_line(record: dict, path=None, certified: int | None = None) -> str:
    """The last line `count_linear_regions.py --mipbound` prints; certified: the certified lower bound of the summary
    (data points and solves; the count when there is one), else the patterns the solves certified."""
    what = (f"regions >= 2^{record['log2_lower']:g} with probability {record['probability']:.4g}"
            if record["log2_lower"] is not None else "no MIPBound (no number of XORs completed)")
    stop = f", stopped: {record['stopped']}" if record.get("stopped") else ""
    where = "" if path is None else f": {path}"
    sure = (f"{record['patterns_found']} patterns certified" if certified is None
            else f"certified: regions >= {certified}")
    return (f"{what} (MIPBound: {record['trials']} trials, XORs of {record['xor_size']} units, "
            f"{record['seconds']:.2f} s{stop}; {sure}){where}")


def _check_settings(trials, xor_size, alpha, seed) -> None:
    if isinstance(trials, bool) or not isinstance(trials, (int, np.integer)) or trials < 1:
        raise ToolError(f"--mipbound-trials must be an integer >= 1, got {trials!r}")
    if xor_size is not None and (isinstance(xor_size, bool) or not isinstance(xor_size, (int, np.integer))
                                 or xor_size < 1):
        raise ToolError(f"--xor-size must be an integer >= 1, got {xor_size!r}")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not (math.isfinite(alpha) and alpha > 0):
        raise ToolError(f"alpha must be a number > 0, got {alpha!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ToolError(f"--seed must be an integer >= 0, got {seed!r}")


def solver_chain(backend: str) -> list[str]:
    """The MILP solvers `--backend` means for MIPBound: auto and scip: SCIP; gurobi and milp: Gurobi, then SCIP
    when Gurobi's size-limited licence refuses the model."""
    chains = {"auto": ["scip"], "scip": ["scip"], "gurobi": ["gurobi", "scip"], "milp": ["gurobi", "scip"]}
    if backend not in chains:
        raise ToolError(f"--mipbound solves MILPs: --backend must be auto or scip (SCIP, the default), gurobi or "
                        f"milp (Gurobi, SCIP when its licence is too small), got {backend!r}")
    return chains[backend]


def mipbound(net: ReluNet, box: Box, stability: Stability, *, trials: int = DEFAULT_TRIALS,
             xor_size: int | None = None, alpha: float = DEFAULT_ALPHA, tol: float = DEFAULT_TOL, seed: int = 0,
             deadline: float | None = None, backend: str = "auto", threads: int = 1, known=None,
             progress=None) -> MipBound:
    """The MIPBound of the number of feasible patterns of `net` on `box` (the module's docstring), starting from
    `stability`. trials: S; xor_size: k (None: `default_xor_size`; at most the unstable units); alpha: the bound
    is 2^(r* - alpha) with probability 1 - 2^(-alpha S); deadline: a time.perf_counter() value (each MILP gets
    the time left; `stopped = "time limit"`); backend: auto/scip, gurobi/milp (`solver_chain`); known: patterns
    (uint8 (P, N)) already certified feasible, which may satisfy trials without a solve; progress: callable(str)
    told one line per number of XORs."""
    _check_settings(trials, xor_size, alpha, seed)
    chain = solver_chain(backend)
    t0 = time.perf_counter()
    form = build_formulation(net, box, stability, tol)
    unst = form.unstable_units
    U = int(len(unst))
    k = default_xor_size(U) if xor_size is None else int(min(int(xor_size), max(U, 1)))
    p = mipbound_probability(trials, alpha)
    res = MipBound(None, 0.0, k, int(trials), float(alpha), 0, U, int(seed), chain[0])
    stats = {"solves": 0, "feasible": 0, "infeasible": 0, "unknown": 0, "free": 0, "certified_by_solver_point": 0,
             "certified_by_lp_point": 0, "unverified": 0, "solver_seconds": 0.0}
    late = (lambda: False) if deadline is None else (lambda: time.perf_counter() >= deadline)
    found: set[bytes] = set()
    used: list[str] = []                             # the solvers that answered, in order
    known_bits = np.zeros((0, U), np.uint8)
    if known is not None and len(known):
        known_bits = np.asarray(known, np.uint8)[:, unst]

    def finish(r_star: int):
        res.solver = "+".join(used) if used else chain[0]
        res.patterns = patterns_of_keys(found, net.n_hidden_units)
        if r_star >= 1:
            res.log2_lower, res.probability = max(r_star - float(alpha), 0.0), p
        elif found or len(known_bits):
            res.log2_lower, res.probability = 0.0, 1.0        # a certified pattern: N >= 1 for sure
        stats["solver_seconds"] = round(stats["solver_seconds"], 4)
        res.stats, res.seconds = stats, time.perf_counter() - t0
        return res

    if U == 0:
        # every unit stable: the whole box is one region (the fixed pattern), certified by any point of the box
        pat = certify_point(net, box, tol, 0.5 * (box.lo + box.hi))
        if pat is not None:
            found.add(pattern_keys(pat[None, :]).pop())
        res.notes.append("every hidden unit is stable: one region")
        return finish(0)

    if k > math.ceil(U / 2) and k > 1:
        res.notes.append(f"XORs of {k} of the {U} unstable units have few distinct supports (k = U: all the same), "
                         f"which makes trials fail early and the bound small; the default is half of them")
    f_min = float(tol) + max(float(tol), 1e-7)       # f >= f_min > tol: 1-units with a margin above tol
    solvers: dict = {}

    def solver():
        name = chain[0]
        if name not in solvers:
            from src.counting.backends.xor_milp import ADAPTERS

            solvers[name] = ADAPTERS[name](form, f_min, threads=threads)
        return solvers[name]

    def solve(A, b):
        xors = [(form.z_index[unst[np.flatnonzero(row)]], int(bj)) for row, bj in zip(A, b)]
        while True:
            left = None if deadline is None else max(0.0, deadline - time.perf_counter())
            try:
                ans = solver().solve(xors, left)
            except ProblemTooLarge as e:
                if len(chain) == 1:
                    raise
                msg = f"{e}; falling back to {chain[1].upper()}"
                res.notes.append(msg)
                if progress is not None:
                    progress(msg)
                chain.pop(0)
                continue
            if chain[0] not in used:
                used.append(chain[0])
            return ans

    def certify(ans, A, b):
        """A pattern certified by a point that satisfies the XORs, or None."""
        z = form.pattern_from_solution(ans.values)
        x = ans.values[np.maximum(form.input_index, 0)]
        x = np.where(form.input_index >= 0, x, 0.5 * (box.lo + box.hi))   # dropped inputs: any value does
        candidates = [("certified_by_solver_point", lambda: x)]
        for two_sided in (True, False):
            candidates.append(("certified_by_lp_point", lambda ts=two_sided: max_margin_point(net, box, z, ts)[0]))
        for how, point in candidates:
            pt = point()
            if pt is None:
                continue
            pat = certify_point(net, box, tol, pt)
            if pat is not None and satisfies(pat[unst], A, b)[0]:
                stats[how] += 1
                return pat
        return None

    found_bits = np.zeros((0, U), np.uint8)
    r_star, r = 0, 1
    r_cap = U + int(math.ceil(alpha))
    while r <= r_cap:
        sat, free, ran = 0, 0, 0
        t_r = time.perf_counter()
        for trial in range(int(trials)):
            if late():
                res.stopped = "time limit"
                break
            ran += 1
            A, b = draw_xors(seed, r, trial, U, k)
            if satisfies(known_bits, A, b).any() or satisfies(found_bits, A, b).any():
                sat += 1
                free += 1
                stats["free"] += 1
                continue
            ans = solve(A, b)
            stats["solves"] += 1
            stats["solver_seconds"] += ans.seconds
            stats[ans.status] += 1
            if ans.status == "feasible":
                pat = certify(ans, A, b)
                if pat is not None:
                    found.add(pattern_keys(pat[None, :]).pop())
                    found_bits = np.vstack([found_bits, pat[unst][None, :]])
                    sat += 1
                    continue
                stats["unverified"] += 1
                break
            if ans.status == "unknown":
                res.stopped = ("time limit" if late() else "interrupted" if ans.detail in ("userinterrupt", "interrupted")
                               else f"solver stopped ({ans.detail})")
            break
        res.r_max_tried = r
        res.per_r.append({"xors": r, "trials_run": ran, "satisfied": sat, "without_solve": free,
                          "seconds": round(time.perf_counter() - t_r, 4)})
        if progress is not None:
            progress(f"MIPBound: {r} XORs of {k} units: {sat} of {trials} trials satisfied"
                     + (f" (stopped after trial {ran})" if sat < trials else "")
                     + f", {time.perf_counter() - t0:.1f} s")
        if sat < trials:
            break
        r_star, r = r, r + 1
    return finish(r_star)


def mipbound_run(weights, box: Box | None = None, *, trials: int | None = None, xor_size: int | None = None,
                 tol: float = DEFAULT_TOL, seed: int = 0, time_limit: float | None = None, out_dir=None,
                 net: ReluNet | None = None, exact_stability: bool = False, progress: bool = True,
                 backend: str = "auto", threads: int = 1, data_root=None, data_samples: int | None = None,
                 mnist: bool | None = None):
    """`count_linear_regions.py --mipbound`: the stable units and data patterns as a count computes them (the
    stable units written like a count's), the MIPBound (the data patterns may satisfy trials without a solve),
    and its `"mipbound"` record in regions_<domain>.json: merged into the summary of the same weights, tol and
    domain when there is one, else a new summary whose `count` is the number of distinct patterns the solves
    certified (`complete: false`). Writes no pattern file. Returns (the summary written, its path)."""
    trials = DEFAULT_TRIALS if trials is None else trials
    _check_settings(trials, xor_size, DEFAULT_ALPHA, seed)
    chain = solver_chain(backend)
    run = SideRun(weights, box, tol=tol, time_limit=time_limit, out_dir=out_dir, net=net,
                  exact_stability=exact_stability, progress=progress, data_root=data_root, data_samples=data_samples,
                  mnist=mnist, backend=chain[0], threads=threads)
    say = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else None
    mb = mipbound(run.net, run.box, run.stability, trials=int(trials), xor_size=xor_size, tol=tol, seed=int(seed),
                  deadline=run.deadline, backend=backend, threads=threads, known=run.data.patterns(), progress=say)
    found = pattern_keys(mb.patterns)
    summary = run.write("mipbound", mb.to_json(), found, "mipbound",
                        f"no enumeration (--mipbound): count = the {len(found)} distinct patterns the MIPBound solves "
                        f"certified, a lower bound")
    return summary, run.json_path
