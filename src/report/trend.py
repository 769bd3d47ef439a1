"""The trend verdict: does the number of regions fall as l1 grows, measure by measure; paired tests per factor.

Broken runs (RunRecord.broken: near-chance accuracy, or constant on the domain) are left out of every count and
test here and named in the verdict. The paired tests (`factor_verdicts`) compare two runs that differ in one
factor (an l1 step, adversarial training against none, dropout against none) on the same test images (exact
local counts) or the same segments, with the statistics of src/report/stats.py.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from src.report.stats import MedianCI, SignedRank, bootstrap_median_ci, pair_ratios, wilcoxon_signed_rank

ALPHA = 0.05              # a seed counts for a factor when its own test points the pooled way with p below this

N_BOOT = 10000            # bootstrap resamples of the interval of a median ratio

P_FLOOR = 1e-6            # p-values below this are written "p < 1e-6"


# ---- the paper's trend ---------------------------------------------------------------
@dataclass
class TrendReport:
    """Pairs of runs in the same (adv, dropout) group with l1_a < l1_b, judged on region counts."""

    fewer: int = 0            # count_b < count_a, established (count_b complete)
    more: int = 0             # count_b > count_a, established (count_a complete)
    equal: int = 0
    undetermined: int = 0     # lower bounds that cannot be ordered
    medians: dict = field(default_factory=dict)    # l1 -> median count (lower bounds included)
    groups: dict = field(default_factory=dict)     # (adv, dropout) -> [(l1, count, complete)]
    n_runs: int = 0
    sections: list = field(default_factory=list)   # SectionTrend of the exact slice / segment measures
    left_out: list = field(default_factory=list)   # [(run id, why it is broken)]: not judged
    paired: list = field(default_factory=list)     # [(PairedMeasure, [FactorVerdict])]: paired tests per factor

    @property
    def shows(self) -> bool:
        """The trend shows when fewer-pairs are a strict majority of the decided pairs and outnumber more-pairs 2:1."""
        decided = self.fewer + self.more + self.equal
        return decided > 0 and self.fewer > decided / 2 and self.fewer >= 2 * self.more

    def summary(self) -> str:
        extra = "".join("\n" + t.summary() for t in self.sections if t.n_runs)
        if self.left_out:
            extra += "\n" + left_out_text(self.left_out)
        if any(v for _, v in self.paired):
            extra += "\n" + paired_text(self.paired)
        if self.n_runs == 0:
            return "trend: no runs with both config.json and a region count; nothing to judge." + extra
        med = ", ".join(f"l1={_g(k)}: {v:g}" for k, v in sorted(self.medians.items()))
        decided = self.fewer + self.more + self.equal
        verdict = ("SHOWS the paper's trend (fewer linear regions with stronger l1)" if self.shows
                   else "does NOT show the paper's trend (fewer linear regions with stronger l1)")
        text = (f"trend over {self.n_runs} runs: median regions by l1: {med}.\n"
                f"Pairs within the same (adv, dropout) group, weaker vs stronger l1: "
                f"{self.fewer} fewer, {self.more} more, {self.equal} equal, "
                f"{self.undetermined} undetermined (incomplete counts are lower bounds) "
                f"of {decided + self.undetermined}.\n"
                f"This sweep {verdict}.")
        return text + extra


@dataclass
class SectionTrend:
    """The same l1 pairs judged on an exact section measure (no lower bounds: every pair is decided)."""

    name: str
    fewer: int = 0
    more: int = 0
    equal: int = 0
    medians: dict = field(default_factory=dict)    # l1 -> median of the measure
    n_runs: int = 0
    kind: str = "Exact sections"
    adv_fewer: int = 0        # adversarially trained run below its adv = none twin (same l1, dropout)
    adv_more: int = 0
    adv_equal: int = 0

    @property
    def agrees(self) -> bool:
        """Same rule as TrendReport.shows."""
        decided = self.fewer + self.more + self.equal
        return decided > 0 and self.fewer > decided / 2 and self.fewer >= 2 * self.more

    def summary(self) -> str:
        med = ", ".join(f"l1={_g(k)}: {v:g}" for k, v in sorted(self.medians.items()))
        word = "agrees with" if self.agrees else "does NOT agree with"
        adv = self.adv_fewer + self.adv_more + self.adv_equal
        adv_txt = (f" Adversarial training vs none (same l1, dropout): {self.adv_fewer} fewer, {self.adv_more} more, "
                   f"{self.adv_equal} equal." if adv else "")
        return (f"{self.kind}, {self.name} ({self.n_runs} runs): median by l1: {med}; pairs weaker vs stronger "
                f"l1: {self.fewer} fewer, {self.more} more, {self.equal} equal; this measure {word} the trend."
                + adv_txt)


def section_trend(records, name: str, value, key, kind: str = "Exact sections") -> SectionTrend:
    """Pairs within (adv, dropout) groups and equal key (same plane / same segment pairs), l1_a < l1_b."""

    rep = SectionTrend(name, kind=kind)
    records = _working(records)
    groups: dict = {}
    by_l1: dict = {}
    for r in records:
        v = value(r)
        if getattr(r, "l1", None) is None or v is None:
            continue
        rep.n_runs += 1
        groups.setdefault((r.group, key(r)), []).append((r.l1, v))
        by_l1.setdefault(r.l1, []).append(v)
    rep.medians = {k: float(statistics.median(v)) for k, v in by_l1.items()}
    for items in groups.values():
        items.sort()
        for i, (la, va) in enumerate(items):
            for lb, vb in items[i + 1:]:
                if lb > la:
                    rep.fewer += vb < va
                    rep.more += vb > va
                    rep.equal += vb == va
    # adversarial training: runs with adv != none against the run with adv = none of the same l1 and dropout
    plain = {(r.l1, r.dropout, key(r)): value(r) for r in records
             if getattr(r, "adv", None) == "none" and value(r) is not None}
    for r in records:
        v = value(r)
        if getattr(r, "adv", None) not in (None, "none") and v is not None:
            base = plain.get((r.l1, r.dropout, key(r)))
            if base is not None:
                rep.adv_fewer += v < base
                rep.adv_more += v > base
                rep.adv_equal += v == base
    return rep


def _g(x) -> str:
    return f"{x:g}"


def fmt_l1(v) -> str:
    """An l1 coefficient as the figures and the verdict write it: 0, 2e-4, 1e-3, 0.0015 -> 1.5e-3."""
    if v == 0:
        return "0"
    s = f"{v:.0e}" if f"{v:.0e}" == f"{v:.1e}".replace(".0e", "e") else f"{v:g}"
    m, e = s.split("e") if "e" in s else (s, None)
    return f"{m}e{int(e)}" if e is not None else s


def _working(records) -> list:
    """The records that are not broken (RunRecord.broken; objects without the attribute count as working)."""
    return [r for r in records if not getattr(r, "broken", None)]


def left_out_records(records) -> list[tuple]:
    """[(run id, why)] of the broken records, in the given order."""
    return [(r.run_id, r.broken) for r in records if getattr(r, "broken", None)]


def left_out_text(left_out) -> str:
    """'left out: run 108 (test accuracy 0.1135, near chance (< 0.2)), run 110 (...).'"""
    return ("left out: " + ", ".join(f"run {rid} ({why})" for rid, why in left_out)
            + ". These runs are broken and take no part in the verdict.")


def l1_trend(records) -> TrendReport:
    """Judge 'fewer regions with stronger l1' from the counts, treating incomplete counts as lower bounds."""

    rep = TrendReport()
    rep.left_out = left_out_records(records)
    records = _working(records)
    by_group: dict = {}
    by_l1: dict = {}
    for r in records:
        if r.l1 is None or r.region_count is None:
            continue
        rep.n_runs += 1
        by_group.setdefault(r.group, []).append((r.l1, r.region_count, bool(r.regions_complete)))
        by_l1.setdefault(r.l1, []).append(r.region_count)
    rep.groups = {k: sorted(v) for k, v in by_group.items()}
    rep.medians = {k: float(statistics.median(v)) for k, v in by_l1.items()}
    for items in rep.groups.values():
        for i, (la, ca, oka) in enumerate(items):
            for lb, cb, okb in items[i + 1:]:
                if lb <= la:
                    continue
                if oka and okb:
                    if cb < ca:
                        rep.fewer += 1
                    elif cb > ca:
                        rep.more += 1
                    else:
                        rep.equal += 1
                elif okb and cb < ca:      # ca is a lower bound of the true count, still > cb
                    rep.fewer += 1
                elif oka and cb > ca:      # cb is a lower bound, already above ca
                    rep.more += 1
                else:
                    rep.undetermined += 1
    rep.sections = [
        section_trend(records, "median region count in the local boxes around test images",
                      lambda r: getattr(r, "local_median", None), lambda r: getattr(r, "local_name", None),
                      kind="Exact local counts"),
        section_trend(records, "regions in the box on the slice plane", lambda r: getattr(r, "slice_regions", None),
                      lambda r: getattr(r, "slice_name", None)),
        section_trend(records, "median regions crossed per segment between test images",
                      lambda r: getattr(r, "segment_regions_median", None),
                      lambda r: getattr(r, "segment_pairs_key", None)),
    ]
    rep.paired = [(m, factor_verdicts(records, m)) for m in paired_measures(records)]
    return rep


# ---- paired tests per factor ---------------------------------------------------------------
@dataclass(frozen=True)
class PairedMeasure:
    """A measure taken at keyed places of a run (test images, segments): `values(record)` -> {key: value}."""

    name: str
    unit: str                          # what a key is, plural: "images", "segments"
    values: Callable = field(compare=False)


def paired_measures(records) -> list[PairedMeasure]:
    """The exact local counts, one measure per box width (keyed by the test image, `local_counts_by_center`), and
    the regions per unit of L2 length along segments (keyed by their two test images, `segment_values_by_pair`)."""
    widths = sorted({w for r in records for w in (getattr(r, "local_widths", None) or [])})
    out = [PairedMeasure(f"exact local counts in boxes of width {w:g} around test images", "images",
                         lambda r, w=w: r.local_counts_by_center(w)) for w in widths]
    if any(getattr(r, "segment_values_by_pair", None) for r in records):
        out.append(PairedMeasure("regions crossed per unit of L2 length along segments between test images",
                                 "segments", lambda r: r.segment_values_by_pair))
    return out


def _same_run_kind(r) -> tuple:
    """What two runs must share beyond the other factors: architecture and training seed."""
    hs = getattr(r, "hidden_sizes", None)
    return (getattr(r, "arch", None), None if hs is None else tuple(hs), getattr(r, "seed", None))


def factor_pairs(records) -> list[tuple[str, str, list]]:
    """[(factor, label, [(baseline run, treated run)])]: runs of the same architecture and seed that differ in one
    factor: each step between neighbouring l1 values (same adv, dropout), each adversarial training against
    none (same l1, dropout), each dropout p > 0 against dropout 0 (same l1, adv). Broken runs are left out."""
    recs = [r for r in _working(records) if r.l1 is not None and r.adv is not None and r.dropout is not None]
    index: dict = {}
    for r in sorted(recs, key=lambda r: r.run_id):
        index.setdefault((_same_run_kind(r), r.l1, r.adv, r.dropout), []).append(r)

    def pairs(change):
        """Runs paired by changing their settings (l1, adv, dropout) with change (None: not a baseline)."""
        out = []
        for (kind, l1, adv, p), runs in index.items():
            to = change(l1, adv, p)
            if to is not None:
                out += [(a, b) for a in runs for b in index.get((kind,) + to, [])]
        return sorted(out, key=lambda ab: (ab[0].run_id, ab[1].run_id))

    out = []
    l1s = sorted({r.l1 for r in recs})
    for lo, hi in zip(l1s, l1s[1:]):
        out.append(("l1", f"l1 {fmt_l1(hi)} vs {fmt_l1(lo)}",
                    pairs(lambda l1, adv, p, lo=lo, hi=hi: (hi, adv, p) if l1 == lo else None)))
    for a in sorted({r.adv for r in recs} - {"none"}):
        out.append(("adv", f"{a.upper()} vs none",
                    pairs(lambda l1, adv, p, a=a: (l1, a, p) if adv == "none" else None)))
    for q in sorted({r.dropout for r in recs if r.dropout > 0}):
        out.append(("dropout", f"dropout {q:g} vs none",
                    pairs(lambda l1, adv, p, q=q: (l1, adv, q) if p == 0 else None)))
    return [t for t in out if t[2]]


@dataclass
class FactorVerdict:
    """One factor on one measure: the paired values of every run pair, pooled over seeds, and the seeds one by one."""

    measure: str
    unit: str
    factor: str                 # "l1", "adv", "dropout"
    label: str                  # e.g. "l1 2e-4 vs 0"
    n: int                      # pairs (run pair x key), all seeds
    fewer: int                  # treated < baseline
    more: int
    equal: int
    ratio: float                # median over the pairs of treated / baseline (stats.median_ratio)
    ratio_ci: MedianCI | None   # its percentile-bootstrap interval
    test: SignedRank            # the pooled test
    seeds: int                  # seeds with pairs
    seeds_holding: int          # seeds whose own test points the pooled way with p < ALPHA
    run_pairs: list = field(default_factory=list)   # [(baseline run id, treated run id)]
    a: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)   # baseline values
    b: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)   # treated values

    def summary(self) -> str:
        """'l1 2e-4 vs 0: fewer regions in 93/100 images, median ratio 0.41 (95% CI 0.38-0.45), p < 1e-6,
        3/3 seeds' ('of 4 run pairs' after the unit when several run pairs share a seed)."""
        unit = self.unit + (f" of {len(self.run_pairs)} run pairs" if len(self.run_pairs) > 1 else "")
        ratio = "median ratio " + ("n/a" if math.isnan(self.ratio) else _sig(self.ratio))
        if self.ratio_ci is not None:
            ratio += f" (95% CI {_sig(self.ratio_ci.low)}-{_sig(self.ratio_ci.high)})"
        d = self.test.direction
        shift = (f"no shift (fewer regions in {self.fewer}/{self.n}, more in {self.more}/{self.n} {unit})" if d == 0
                 else f"{'fewer' if d < 0 else 'more'} regions in {self.fewer if d < 0 else self.more}/{self.n} {unit}")
        return f"{self.label}: {shift}, {ratio}, {fmt_p(self.test.pvalue)}, {self.seeds_holding}/{self.seeds} seeds"


def _sig(x: float) -> str:
    return f"{x:.2g}"


def fmt_p(p: float) -> str:
    """'p < 1e-6' below P_FLOOR, else 'p = 0.0032' / 'p = 1.9e-6' (two significant digits)."""
    if p < P_FLOOR:
        return f"p < {P_FLOOR:.0e}".replace("e-0", "e-")
    s = f"{p:.2g}"
    if "e" in s:
        m, e = s.split("e")
        s = f"{m}e{int(e)}"
    return f"p = {s}"


def factor_verdicts(records, measure: PairedMeasure, n_boot: int = N_BOOT, alpha: float = ALPHA) -> list[FactorVerdict]:
    """A FactorVerdict per factor (factor_pairs) on `measure`: every run pair contributes its values at the keys
    both runs have; the test, the counts and the ratio pool all seeds; `seeds_holding` counts the seeds whose own
    test (their run pairs pooled) has the pooled direction and p < alpha. Broken runs are left out."""
    recs = [r for r in _working(records) if measure.values(r)]
    out = []
    for factor, label, pairs in factor_pairs(recs):
        by_seed: dict = {}
        run_pairs = []
        for ra, rb in pairs:
            va, vb = measure.values(ra), measure.values(rb)
            keys = sorted(set(va) & set(vb))
            if not keys:
                continue
            run_pairs.append((ra.run_id, rb.run_id))
            a_s, b_s = by_seed.setdefault(ra.seed, ([], []))
            a_s += [va[k] for k in keys]
            b_s += [vb[k] for k in keys]
        if not run_pairs:
            continue
        seeds = sorted(by_seed, key=str)
        a = np.concatenate([by_seed[s][0] for s in seeds]).astype(np.float64)
        b = np.concatenate([by_seed[s][1] for s in seeds]).astype(np.float64)
        test = wilcoxon_signed_rank(a, b)
        ratios = pair_ratios(a, b)
        holding = 0
        for s in seeds:
            t = wilcoxon_signed_rank(*by_seed[s])
            holding += t.pvalue < alpha and t.direction == test.direction != 0
        out.append(FactorVerdict(
            measure.name, measure.unit, factor, label, int(a.size), int(np.sum(b < a)), int(np.sum(b > a)),
            int(np.sum(b == a)), float(np.median(ratios)) if ratios.size else math.nan,
            bootstrap_median_ci(ratios, n_boot=n_boot) if ratios.size else None, test, len(seeds), int(holding),
            run_pairs, a, b))
    return out


def paired_text(paired) -> str:
    """The paired-test block of the verdict: a header, then per measure its name and one sentence per factor."""
    lines = ["Paired tests per factor (same test images / same segments; Wilcoxon signed-rank, two-sided, zeros by "
             "Pratt; median ratio = median over the pairs of treated / baseline, with its 95% percentile-bootstrap "
             f"interval; p pools all seeds; a seed counts when its own test points the same way with p < {ALPHA:g}):"]
    for m, verdicts in paired:
        if verdicts:
            lines.append(f"  {m.name}:")
            lines += [f"    {v.summary()}" for v in verdicts]
    return "\n".join(lines)
