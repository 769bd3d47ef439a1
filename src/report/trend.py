"""The trend verdict: does the number of regions fall as l1 grows, measure by measure."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field


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

    @property
    def shows(self) -> bool:
        """The trend shows when fewer-pairs are a strict majority of the decided pairs and outnumber more-pairs 2:1."""
        decided = self.fewer + self.more + self.equal
        return decided > 0 and self.fewer > decided / 2 and self.fewer >= 2 * self.more

    def summary(self) -> str:
        extra = "".join("\n" + t.summary() for t in self.sections if t.n_runs)
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


def l1_trend(records) -> TrendReport:
    """Judge 'fewer regions with stronger l1' from the counts, treating incomplete counts as lower bounds."""

    rep = TrendReport()
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
    return rep
