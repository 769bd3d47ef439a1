"""The paper's figures from run directories (matplotlib Agg; every figure as PNG and PDF).

Figures (file stems in the output directory):
- `regions_vs_l1`: linear regions per run against l1, one series per (adv, dropout), log scale;
  incomplete counts drawn hollow with an upward arrow (lower bounds).
- `stable_units_vs_l1`: stably active / stably inactive units per hidden layer against l1.
- `accuracy_vs_regions`: test accuracy against the number of regions.
- `transform_sizes`: size of the two-hidden-layer nets (all 2^N patterns, feasible patterns
  naive, feasible patterns with shared units) in hidden units and parameters, log10 scale.
- `input_slice`: a 2-D plane of input space, each linear region (an exact convex polygon,
  src/sections/plane.py) in its own colour or coloured by predicted class, with its boundaries.
- `segment_regions_vs_l1`: linear regions crossed per unit of L2 length along segments between
  pairs of test images (segments.json, exact 1-D sections), against l1.
- `local_regions_vs_l1`: exact region counts on local boxes around test images (the newest
  regions_sweep_*.json), against l1.
All run settings come from the files in docs/formats.md (src.report.table), never from run ids.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from src.core.box import Box
from src.core.defaults import DEFAULT_DOMAIN
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.io.files import atomic_open
from src.io.mnist import load_mnist_arrays
from src.io.readers import load_net
from src.report.table import NEAR_CHANCE_ACCURACY, RunRecord, load_runs, two_hidden_sizes
from src.report.trend import fmt_l1
from src.sections.plane import PlaneSection, class_pieces, default_view, orthonormal_plane, plane_section

os.environ.setdefault("MPLBACKEND", "Agg")

matplotlib.use("Agg", force=True)

FORMATS = ("png", "pdf")

DPI = 200

# paper-size styling: a 7-inch wide figure (two-column width) with 9-10 pt text
STYLE = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "legend.fontsize": 8, "figure.titlesize": 10.5, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.5, "axes.spines.top": False, "axes.spines.right": False,
    "pdf.fonttype": 42, "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
}

ADV_COLOURS = {"none": "#1f77b4", "pgd": "#d62728", "fgsm": "#2ca02c"}

EXTRA_COLOURS = ["#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]

DROPOUT_MARKERS = ["o", "s", "D", "^", "v", "P"]

DROPOUT_LINES = ["-", "--", ":", "-."]


def save(fig, out_base, formats=FORMATS) -> list[Path]:
    """Write fig to out_base.<fmt> for each format; return the paths."""
    out_base = Path(out_base)
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in formats:
        p = out_base.with_suffix("." + fmt)
        with atomic_open(p, "wb") as fh:
            fig.savefig(fh, dpi=DPI, format=fmt)
        paths.append(p)
    plt.close(fig)
    return paths

# ---- series styling ------------------------------------------------------------------


class GroupStyle:
    """Colour by adversarial training, marker and line style by dropout; one entry per (adv, dropout)."""

    def __init__(self, records):
        advs = sorted({r.adv or "?" for r in records}, key=lambda a: (a != "none", a))
        drops = sorted({r.dropout for r in records if r.dropout is not None})
        extra = iter(EXTRA_COLOURS * 3)
        self.colour = {a: ADV_COLOURS.get(a) or next(extra) for a in advs}
        self.drop_index = {d: i for i, d in enumerate(drops)}
        self.groups = sorted({r.group for r in records},
                             key=lambda g: (g[0] != "none", g[0], g[1] if g[1] == g[1] else -1))

    def kw(self, group) -> dict:
        adv, drop = group
        i = self.drop_index.get(drop, 0)
        return {"color": self.colour.get(adv, "k"), "marker": DROPOUT_MARKERS[i % len(DROPOUT_MARKERS)],
                "linestyle": DROPOUT_LINES[i % len(DROPOUT_LINES)]}

    @staticmethod
    def label(group) -> str:
        adv, drop = group
        a = "no adv. training" if adv == "none" else f"adv. {adv.upper()}"
        d = "?" if drop != drop else f"{drop:g}"
        return f"{a}, dropout {d}"

    def offsets(self, width: float = 0.24) -> dict:
        """Small horizontal offsets per group so points at the same l1 do not overlap."""
        n = len(self.groups)
        if n <= 1:
            return {g: 0.0 for g in self.groups}
        return {g: -width / 2 + width * i / (n - 1) for i, g in enumerate(self.groups)}


def _l1_axis(ax, l1_values):
    """Equally spaced categorical l1 axis (l1 = 0 has no place on a log axis)."""
    ax.set_xticks(range(len(l1_values)))
    ax.set_xticklabels([fmt_l1(v) for v in l1_values])
    ax.set_xlim(-0.5, len(l1_values) - 0.5)
    ax.set_xlabel("l1 regularisation λ (equally spaced)")
    ax.grid(False, axis="x")


def _domain_label(records) -> str:
    """'[0, 1]^784' from the domain block of the analysis JSONs, else the domain name."""
    for r in records:
        for j in (r.regions, r.stable, r.compressed):
            d = (j or {}).get("domain") or {}
            if "lo" in d and "hi" in d and "n" in d:
                return f"[{d['lo']:g}, {d['hi']:g}]$^{{{d['n']}}}$"
            if d.get("name"):
                return str(d["name"])
    return records[0].domain if records else DEFAULT_DOMAIN


def _log_axis(axis):
    """Readable log-axis labels: 1-2-5 ticks as plain numbers (10^k beyond a million), no minor labels."""

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(
        lambda v, _: (f"{v:,.0f}" if v < 1e6 else f"$10^{{{math.log10(v):.0f}}}$"
                      if abs(math.log10(v) - round(math.log10(v))) < 1e-9 else "")))
    axis.set_minor_formatter(NullFormatter())


def _usable(records, need) -> tuple[list, list]:
    good, skipped = [], []
    for r in records:
        (good if need(r) else skipped).append(r)
    return good, skipped


def _ids(recs) -> str:
    return ", ".join(str(r.run_id) for r in recs[:12]) + (" …" if len(recs) > 12 else "")


def _skipped_note(fig, skipped, what, broken=()):
    """A grey note under the figure, right-aligned: the broken runs drawn apart and the runs not shown (no `what`)."""
    lines = []
    if broken:
        lines.append(f"grey x: broken run{'s' if len(broken) > 1 else ''} {_ids(broken)} (see the results table), "
                     f"left out of every line and box")
    if skipped:
        lines.append(f"not shown (no {what}): runs {_ids(skipped)}")
    if lines:
        fig.text(0.99, -0.03, "\n".join(lines), ha="right", va="top", fontsize=7, color="0.4")   # below it all


# broken runs (RunRecord.broken: near-chance accuracy or a constant net) are drawn apart, left out of the lines
BROKEN_STYLE = {"marker": "x", "color": "0.45", "markersize": 6, "markeredgewidth": 1.4, "linestyle": "none"}


def _split_broken(recs) -> tuple[list, list]:
    """(working runs, broken runs)."""
    return [r for r in recs if not r.broken], [r for r in recs if r.broken]


def _broken_handle() -> Line2D:
    return Line2D([], [], **BROKEN_STYLE, label="broken (left out)")


def _group_handles(style, good, **kw) -> list:
    """Legend entries of the groups that have a working run."""
    drawn = {r.group for r in good}
    return [Line2D([], [], **style.kw(g), label=style.label(g), **kw) for g in style.groups if g in drawn]

# ---- figure 1: regions vs l1 ---------------------------------------------------------


def plot_regions_vs_l1(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """Number of linear regions against l1, per (adv, dropout); hollow + arrow = lower bound; for an incomplete
    count, a diamond with an error bar = the `--estimate` and its 95 % interval, a dash = the `--mipbound` bound;
    broken runs a grey x, left out of the median lines."""
    recs, skipped = _usable(records, lambda r: r.l1 is not None and r.region_count is not None)
    if not recs:
        raise ToolError("regions figure: no run has both config.json and regions_<domain>.json")
    good, broken = _split_broken(recs)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        style = GroupStyle(recs)
        l1s = sorted({r.l1 for r in recs})
        xpos = {v: i for i, v in enumerate(l1s)}
        off = style.offsets()
        ymax = max(max(r.region_count, 1) for r in recs)
        ests = {id(r): r.regions_estimate for r in good if r.regions_estimate and not r.regions_complete}
        mips = {id(r): 2.0 ** r.regions_mipbound[0] for r in good if r.regions_mipbound and not r.regions_complete}
        ymax = max([ymax] + [e[2] or e[0] for e in ests.values()] + list(mips.values()))
        any_incomplete = False
        for r in broken:
            ax.plot(xpos[r.l1] + off[r.group], max(r.region_count, 1), **BROKEN_STYLE, zorder=3)
        for g in style.groups:
            pts = sorted([r for r in good if r.group == g], key=lambda r: r.l1)
            if not pts:
                continue
            kw = style.kw(g)
            xs = [xpos[r.l1] + off[g] for r in pts]
            ys = [max(r.region_count, 1) for r in pts]
            # line through the median count per l1
            med = {}
            for r in pts:
                med.setdefault(r.l1, []).append(max(r.region_count, 1))
            ax.plot([xpos[v] + off[g] for v in sorted(med)], [np.median(med[v]) for v in sorted(med)],
                    color=kw["color"], linestyle=kw["linestyle"], linewidth=1.2, alpha=0.8, zorder=2)
            for x, y, r in zip(xs, ys, pts):
                if r.regions_complete:
                    ax.plot(x, y, marker=kw["marker"], color=kw["color"], markersize=6.5,
                            markeredgecolor="k", markeredgewidth=0.5, linestyle="none", zorder=3)
                else:
                    any_incomplete = True
                    ax.plot(x, y, marker=kw["marker"], markerfacecolor="white", markeredgecolor=kw["color"],
                            markeredgewidth=1.6, markersize=7, linestyle="none", zorder=3)
                    ax.annotate("", xy=(x, y * 2.6), xytext=(x, y * 1.18),
                                arrowprops=dict(arrowstyle="-|>", color=kw["color"], lw=1.4,
                                                mutation_scale=9), zorder=3)
                e = ests.get(id(r))
                if e is not None:           # an estimate: a small diamond with its 95 % interval, beside
                    lo_e, hi_e = max(e[1], 1), e[2] if e[2] is not None else e[0] * 10
                    ax.errorbar(x + 0.07, e[0], yerr=[[e[0] - lo_e], [hi_e - e[0]]], fmt="D", markersize=4,
                                color=kw["color"], markerfacecolor="white", elinewidth=1.0, capsize=2.5, zorder=4)
                if id(r) in mips:           # MIPBound: a bar under which the count lies with probability 1 - p
                    ax.plot([x - 0.09, x + 0.09], [mips[id(r)]] * 2, color=kw["color"], lw=2.0,
                            solid_capstyle="butt", zorder=4)
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        lo = min([max(r.region_count, 1) for r in recs] + [max(e[1], 1) for e in ests.values()])
        ax.set_ylim(max(lo / 2.5, 0.6), ymax * (4.5 if any_incomplete else 2.0))
        _l1_axis(ax, l1s)
        ax.set_ylabel("number of linear regions")
        ax.set_title(title or f"Linear regions on {_domain_label(recs)}")
        handles = _group_handles(style, good, markersize=6, markeredgecolor="k", markeredgewidth=0.5)
        if broken:
            handles.append(_broken_handle())
        if any_incomplete:
            handles.append(Line2D([], [], marker="$\\uparrow$", color="0.2", markersize=9, linestyle="none",
                                  label="hollow + arrow: incomplete\ncount (lower bound)"))
        if ests:
            handles.append(Line2D([], [], marker="D", color="0.2", markerfacecolor="white", markersize=5,
                                  linestyle="none", label="diamond + bar: estimate\n(--estimate, 95% CI)"))
        if mips:
            handles.append(Line2D([], [], color="0.2", lw=2.0, label="dash: MIPBound lower\nbound (--mipbound)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _skipped_note(fig, skipped, "region count", broken)
        return save(fig, out_base, formats)

# ---- figure 2: stable units vs l1 ----------------------------------------------------


def plot_stable_units_vs_l1(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """Stably active (top row) and stably inactive (bottom row) units per hidden layer against l1; broken runs a
    grey x, left out of the median lines."""
    recs, skipped = _usable(records, lambda r: r.l1 is not None and r.stable_counts())
    if not recs:
        raise ToolError("stable-units figure: no run has both config.json and stable_units_<domain>.json "
                        "(or stable_units in regions_<domain>.json)")
    good, broken = _split_broken(recs)
    n_layers = max(len(r.stable_counts()) for r in recs)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(2, n_layers, figsize=(max(2.0 * n_layers + 1.8, 5.2), 4.4),
                                 sharex=True, squeeze=False)
        style = GroupStyle(recs)
        l1s = sorted({r.l1 for r in recs})
        xpos = {v: i for i, v in enumerate(l1s)}
        off = style.offsets()
        for l in range(n_layers):
            widths = sorted({c["active"] + c["inactive"] + c["unstable"]
                             for r in recs for c in r.stable_counts()[l:l + 1]})
            for row, kind in enumerate(("active", "inactive")):
                ax = axes[row, l]
                for r in broken:
                    if len(r.stable_counts()) > l:
                        ax.plot(xpos[r.l1] + off[r.group], r.stable_counts()[l][kind], **BROKEN_STYLE)
                for g in style.groups:
                    kw = style.kw(g)
                    pts = sorted([r for r in good if r.group == g and len(r.stable_counts()) > l],
                                 key=lambda r: r.l1)
                    if not pts:
                        continue
                    med = {}
                    for r in pts:
                        med.setdefault(r.l1, []).append(r.stable_counts()[l][kind])
                    ax.plot([xpos[v] + off[g] for v in sorted(med)], [np.median(med[v]) for v in sorted(med)],
                            color=kw["color"], linestyle=kw["linestyle"], linewidth=1.0, alpha=0.8)
                    ax.plot([xpos[r.l1] + off[g] for r in pts], [r.stable_counts()[l][kind] for r in pts],
                            marker=kw["marker"], color=kw["color"], markersize=5, markeredgecolor="k",
                            markeredgewidth=0.4, linestyle="none")
                top = max(widths) if widths else 1
                ax.axhline(top, color="0.5", linewidth=0.8, linestyle=":")
                ax.set_ylim(-0.04 * top, top * 1.08)
                _l1_axis(ax, l1s)
                if row == 0:
                    ax.set_xlabel("")
                    w = "/".join(map(str, widths))
                    ax.set_title(f"layer {l + 1} ({w} units)")
                else:
                    ax.set_xlabel("l1 λ")
                if l == 0:
                    ax.set_ylabel(f"stably {kind} units")
        handles = _group_handles(style, good, markersize=5, markeredgecolor="k", markeredgewidth=0.4)
        if broken:
            handles.append(_broken_handle())
        handles.append(Line2D([], [], color="0.5", linestyle=":", label="layer width"))
        fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 3), frameon=False,
                   bbox_to_anchor=(0.5, -0.02))
        fig.suptitle(title or f"Stable units per hidden layer on {_domain_label(recs)}")
        fig.tight_layout(rect=(0, 0.08 + 0.03 * ((len(handles) - 1) // 3), 1, 1))
        _skipped_note(fig, skipped, "stable units", broken)
        return save(fig, out_base, formats)


# ---- figure 3: accuracy vs regions ---------------------------------------------------
GROUP_MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*"]


def plot_accuracy_vs_regions(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """Test accuracy against the number of linear regions; colour = l1, marker = (adv, dropout); broken runs a
    grey x."""
    recs, skipped = _usable(records, lambda r: r.test_accuracy is not None and r.region_count is not None)
    if not recs:
        raise ToolError("accuracy figure: no run has both metrics.json (test_accuracy) and regions_<domain>.json")
    good, broken = _split_broken(recs)
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        style = GroupStyle(recs)
        marker = {g: GROUP_MARKERS[i % len(GROUP_MARKERS)] for i, g in enumerate(style.groups)}
        l1s = sorted({r.l1 for r in good if r.l1 is not None})
        cmap = matplotlib.colormaps["viridis"]
        colour = {v: cmap(0.9 * i / max(len(l1s) - 1, 1)) for i, v in enumerate(l1s)}
        any_incomplete = False
        for r in broken:
            ax.plot(max(r.region_count, 1), 100 * r.test_accuracy, **BROKEN_STYLE, zorder=3)
        for r in good:
            c = colour.get(r.l1, "0.5")
            m = marker[r.group]
            x, y = max(r.region_count, 1), 100 * r.test_accuracy
            if r.regions_complete:
                ax.plot(x, y, marker=m, color=c, markersize=7, markeredgecolor="k", markeredgewidth=0.5,
                        linestyle="none", zorder=3, alpha=0.9)
            else:
                any_incomplete = True
                ax.plot(x, y, marker=m, markerfacecolor="white", markeredgecolor=c, markeredgewidth=1.8,
                        markersize=7.5, linestyle="none", zorder=3)
                ax.annotate("", xy=(x * 2.6, y), xytext=(x * 1.15, y),
                            arrowprops=dict(arrowstyle="-|>", color=c, lw=1.4, mutation_scale=9))
        ax.set_xscale("log")
        _log_axis(ax.xaxis)
        xs = [max(r.region_count, 1) for r in recs]
        ax.set_xlim(min(xs) / 1.6, max(xs) * (5 if any_incomplete else 1.6))
        ys = [100 * r.test_accuracy for r in recs]
        pad = max(0.5, 0.08 * (max(ys) - min(ys)))
        ax.set_ylim(min(ys) - pad, min(100.0, max(ys) + pad))
        ax.set_xlabel(f"number of linear regions on {_domain_label(recs)}")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(title or "Test accuracy against number of linear regions")
        handles = [Line2D([], [], marker=marker[g], color="0.55", markeredgecolor="k", markeredgewidth=0.5,
                          markersize=6.5, linestyle="none", label=style.label(g)) for g in style.groups
                   if any(r.group == g for r in good)]
        handles += [Line2D([], [], marker="o", color=colour[v], markeredgecolor="k", markeredgewidth=0.5,
                           markersize=6.5, linestyle="none", label=f"l1 λ = {fmt_l1(v)}") for v in l1s]
        if broken:
            handles.append(_broken_handle())
        if any_incomplete:
            handles.append(Line2D([], [], marker="$\\rightarrow$", color="0.2", markersize=9, linestyle="none",
                                  label="hollow + arrow: incomplete\ncount (lower bound)"))
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _skipped_note(fig, skipped, "accuracy or region count", broken)
        return save(fig, out_base, formats)


# ---- figure 4: sizes of the two-hidden-layer nets ------------------------------------
SIZE_BARS = [  # (json, sizes key, label, colour, hatch)
    ("all", "naive", "all $2^N$ patterns", "#7f7f7f", None),
    ("feasible", "naive", "feasible patterns", "#ff7f0e", None),
    ("feasible", "shared", "feasible, shared units", "#2ca02c", None),
]


def _run_label(r: RunRecord) -> str:
    adv = r.adv or "?"
    d = "?" if r.dropout is None else f"{r.dropout:g}"
    l1 = "?" if r.l1 is None else fmt_l1(r.l1)
    return f"{r.run_id}\nλ={l1}\n{adv}, p={d}"


def plot_transform_sizes(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """log10 of hidden units and parameters of the 2-hidden-layer nets: all 2^N vs feasible vs shared."""
    recs, skipped = _usable(records, lambda r: r.two_hidden_all is not None or r.two_hidden_feasible is not None)
    if not recs:
        raise ToolError("transform-sizes figure: no run has two_hidden_all_nodes.json or "
                        "two_hidden_feasible_<domain>.json")
    with plt.rc_context(STYLE):
        width_in = min(7.2, max(5.2, 0.55 * len(recs) + 1.6))
        fig, axes = plt.subplots(2, 1, figsize=(width_in, 5.4), sharex=True)
        nb = len(SIZE_BARS)
        bw = 0.8 / nb
        x = np.arange(len(recs))
        for ax, key, ylabel in ((axes[0], "hidden_log10", "hidden units $H_1+H_2$"),
                                (axes[1], "params_log10", "parameters")):
            top = 1.0
            for k, (which, size_key, label, colour, _) in enumerate(SIZE_BARS):
                vals, hatches = [], []
                for r in recs:
                    th = r.two_hidden_all if which == "all" else r.two_hidden_feasible
                    s = two_hidden_sizes(th, size_key)
                    v = None if s is None else s[key]
                    vals.append(np.nan if v is None else max(v, 0.0))
                    hatches.append(bool(th) and th.get("built") is False)
                xs = x - 0.4 + bw * (k + 0.5)
                bars = ax.bar(xs, vals, bw * 0.95, color=colour, edgecolor="k", linewidth=0.4, label=label)
                for b, h, v in zip(bars, hatches, vals):
                    if h:
                        b.set_hatch("///")
                        b.set_facecolor("white")
                        b.set_edgecolor(colour)
                    if v == v:
                        top = max(top, v)
                        if v >= 6:
                            ax.text(b.get_x() + b.get_width() / 2, v, f"{v:.0f}", ha="center", va="bottom",
                                    fontsize=6, color="0.2", rotation=90)
            # the original net, for scale
            orig = []
            for r in recs:
                s = two_hidden_sizes(r.two_hidden_feasible or r.two_hidden_all, "original")
                v = None if s is None else s[key]
                if key == "hidden_log10" and v is None and r.hidden_sizes:
                    v = math.log10(max(sum(r.hidden_sizes), 1))
                orig.append(np.nan if v is None else v)
            ax.hlines(orig, x - 0.45, x + 0.45, colors="k", linewidth=1.4, label="original net", zorder=4)
            ax.set_ylim(0, top * 1.18 + 0.5)
            ax.set_ylabel(f"{ylabel}\n(log$_{{10}}$)")
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"$10^{{{v:.0f}}}$"))
            ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True, nbins=6))
            ax.grid(False, axis="x")
        axes[1].set_xticks(x)
        axes[1].set_xticklabels([_run_label(r) for r in recs], fontsize=6.5 if len(recs) <= 10 else 5.8)
        axes[1].set_xlabel("run")
        handles, labels = axes[0].get_legend_handles_labels()
        if any(r.two_hidden_all and r.two_hidden_all.get("built") is False for r in recs):
            handles.append(Patch(facecolor="white", edgecolor="0.3", hatch="///"))
            labels.append("hatched: sizes only (net not built)")
        fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, bbox_to_anchor=(0.5, 0.985))
        fig.suptitle(title or "Size of the equivalent net with two hidden layers", y=1.03)
        fig.tight_layout(rect=(0, 0, 1, 0.93))
        _skipped_note(fig, skipped, "two_hidden json")
        return save(fig, out_base, formats)

# ---- figure 5: a 2-D slice of input space (exact polygons) ---------------------------


def region_colours(k: int, seed: int = 0) -> np.ndarray:
    """k distinct-looking RGB colours (random hues, moderate saturation)."""
    rng = np.random.default_rng(seed)
    golden = 0.618033988749895
    h = (rng.random() + golden * np.arange(k)) % 1.0
    h = h[rng.permutation(k)]
    s = 0.35 + 0.4 * rng.random(k)
    v = 0.78 + 0.2 * rng.random(k)
    return matplotlib.colors.hsv_to_rgb(np.stack([h, s, v], axis=1))


CLASS_COLOURS = matplotlib.colormaps["tab10"].colors


def _wash(rgb, inside) -> np.ndarray:
    """Colours of polygons outside the box washed out towards white."""
    rgb = np.asarray(rgb, np.float64)
    return np.where(np.asarray(inside)[:, None], rgb, 0.3 * rgb + 0.7)


def _render_section(ax, section: PlaneSection, net: ReluNet, marks, seed: int = 0, colour: str = "pattern"):
    """Draw the polygons of an exact plane section (PolyCollection): fill by region or by predicted class,
    region boundaries dark (grey outside the box), the box boundary dashed."""

    inside = section.in_box
    if colour == "class":
        pieces = class_pieces(net, section)
        face = _wash([CLASS_COLOURS[k % 10] for _, k, _ in pieces], [inside[p] for _, _, p in pieces])
        polys = [v for v, _, _ in pieces]
    else:
        ids = section.region_ids()
        face = _wash(region_colours(int(ids.max()) + 1 if len(ids) else 0, seed)[ids], inside)
        polys = section.vertices
    ax.add_collection(PolyCollection(polys, facecolors=face, edgecolors="none", linewidths=0, zorder=1))
    edge = np.where(inside[:, None], np.array([[0.12, 0.12, 0.12, 1.0]]), np.array([[0.55, 0.55, 0.55, 1.0]]))
    lw = 0.35 if section.n_polygons < 2000 else 0.12          # thin boundaries where regions are dense
    ax.add_collection(PolyCollection(section.vertices, facecolors="none", edgecolors=edge,
                                     linewidths=lw, zorder=2))
    s0, s1, t0, t1 = section.view
    if len(section.box_polygon):
        bp = np.vstack([section.box_polygon, section.box_polygon[:1]])
        ax.plot(bp[:, 0], bp[:, 1], color="k", linewidth=0.9, linestyle="--", zorder=3)
    for (a, b, text) in marks:
        ax.plot(a, b, marker="o", markersize=5, markerfacecolor="k", markeredgecolor="white",
                markeredgewidth=1.0, zorder=5)
        right = a > (s0 + s1) / 2          # label towards the inside, above/below away from the middle
        up = b >= (t0 + t1) / 2
        ax.annotate(text, (a, b), xytext=(-3 if right else 3, 5 if up else -5), textcoords="offset points",
                    ha="right" if right else "left", va="bottom" if up else "top", fontsize=6.5, zorder=6,
                    bbox=dict(boxstyle="round,pad=0.12", fc="white", ec="none", alpha=0.8))
    ax.set_xlim(s0, s1)
    ax.set_ylim(t0, t1)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.grid(False)
    for sp in ax.spines.values():
        sp.set_visible(True)
        sp.set_color("0.4")
        sp.set_linewidth(0.6)


def slice_plane(mode: str, n_inputs: int, images=(0, 1, 2), center_index: int = 0, radius: float = 1.0,
                seed: int = 0, data_root="data", margin: float = 0.12):
    """(plane with an orthonormal basis, view (a0, a1, b0, b1), marks, description) for mode
    'images' | 'around' | 'random'."""
    rng = np.random.default_rng(seed)
    if mode in ("images", "around"):
        if n_inputs != 784:
            raise ToolError(f"input slice --plane {mode}: needs a 784-input (MNIST) network, this one has "
                            f"{n_inputs} inputs; use --plane random")
        X, y = load_mnist_arrays("test", root=data_root)
        idx = list(images) if mode == "images" else [center_index]
        for i in idx:
            if not 0 <= i < len(X):
                raise ToolError(f"input slice: test index {i} out of range 0..{len(X) - 1}")
        pts = X[idx].astype(np.float64)
        labels = [f"#{i} ({int(y[i])})" for i in idx]
    if mode == "images":
        if len(images) != 3:
            raise ToolError("--images: give exactly three MNIST test indices, e.g. 0,1,2")
        plane = orthonormal_plane(points=pts)
        desc = "plane through MNIST test images " + ", ".join(map(str, images)) + " (marked #index (digit))"
    elif mode == "random":
        pts = rng.random((3, n_inputs))
        plane = orthonormal_plane(points=pts)
        labels = ["p0", "p1", "p2"]
        desc = f"plane through three uniform random points of [0,1]^{n_inputs} (seed {seed})"
    elif mode == "around":
        if radius <= 0:
            raise ToolError("--radius must be > 0")
        plane = orthonormal_plane(center=pts[0], directions=rng.normal(size=(2, n_inputs)))
        desc = (f"plane through MNIST test image {center_index} along two random directions (seed {seed}), "
                f"±{radius:g} in L2")
        return plane, (-radius, radius, -radius, radius), [(0.0, 0.0, labels[0])], desc
    else:
        raise ToolError(f"--plane {mode!r}: choose images, around or random")
    coords = plane.coordinates(pts)
    view = default_view(plane, Box.uniform(n_inputs), coords, margin)
    return plane, view, [(c[0], c[1], t) for c, t in zip(coords, labels)], desc


def plot_input_slice(nets: list[tuple[str, ReluNet]], out_base, mode: str = "images", images=(0, 1, 2),
                     center_index: int = 0, radius: float = 1.0, seed: int = 0, colour: str = "pattern",
                     data_root="data", title: str | None = None, formats=FORMATS):
    """One panel per (label, net): the exact linear regions on a 2-D plane of input space (src/sections/plane.py)."""
    if not nets:
        raise ToolError("input slice: no network to draw (no weights.dat found)")
    if colour not in ("pattern", "class"):
        raise ToolError(f"input slice: colour {colour!r}; choose pattern or class")
    n0 = nets[0][1].n_inputs
    if any(net.n_inputs != n0 for _, net in nets):
        raise ToolError("input slice: the networks have different input sizes; draw them separately")
    plane, view, marks, desc = slice_plane(mode, n0, images, center_index, radius, seed, data_root)
    box = Box.uniform(n0)
    k = len(nets)
    ncol = 1 if k == 1 else 2 if k <= 4 else 3 if k <= 9 else 4
    nrow = math.ceil(k / ncol)
    panel = 4.6 if k == 1 else 7.0 / ncol
    aspect = min(1.6, max(0.4, (view[3] - view[2]) / (view[1] - view[0])))
    title_h = 0.45 if k > 1 else 0.35
    info = []
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(panel * ncol, (panel * aspect + title_h) * nrow + 0.8),
                                 squeeze=False)
        for ax, (label, net) in zip(axes.ravel(), nets):
            sec = plane_section(net, plane, view, box)
            _render_section(ax, sec, net, marks, seed, colour)
            ax.set_title(f"{label}\n{sec.regions_in_box} regions in the box, {sec.regions_in_view} in view",
                         fontsize=6.8 if k > 4 else 8 if k > 1 else 9.5)
            info.append({"label": label, "regions_in_domain": sec.regions_in_box,
                         "regions_in_view": sec.regions_in_view, "polygons": sec.n_polygons,
                         "unverified": len(sec.unverified), "seconds": sec.seconds})
        for ax in axes.ravel()[k:]:
            ax.axis("off")
        if colour == "class":
            handles = [Patch(facecolor=CLASS_COLOURS[c % 10], edgecolor="none", label=str(c))
                       for c in range(nets[0][1].n_outputs)]
            fig.legend(handles=handles, title="predicted class", loc="center left", bbox_to_anchor=(1.0, 0.5),
                       frameon=False, fontsize=7)
        fig.suptitle(title or f"Linear regions on a 2-D slice: {desc}", fontsize=9.5)
        unverified = sum(i["unverified"] for i in info)
        fill = ("Fill: predicted class (exact decision boundaries)" if colour == "class"
                else "Fill: one colour per linear region")
        fig.text(0.5, 0.005, "Exact: every linear region on the plane is a convex polygon, found by splitting "
                 "the plane layer by layer along each unit's zero line;\nevery polygon's interior point is checked by the "
                 f"forward pass ({unverified} unverified). {fill}; dark lines: region boundaries.\n"
                 "Washed out, beyond the dashed line: outside the box [0,1]^n0. "
                 "Axes: orthonormal coordinates in the plane, equal scale (L2 distance in pixel units).",
                 ha="center", va="bottom", fontsize=6.5, color="0.3")
        fig.tight_layout(rect=(0, 0.05 if k > 1 else 0.07, 1, 0.97))
        paths = save(fig, out_base, formats)
    return paths, info

# ---- figure 6: regions crossed along segments between test images --------------------


def _group_boxplots(ax, recs, values):
    """Per (adv, dropout) group, a box plot against l1 of the values(run) of its working runs, joined by the
    medians; a broken run is a grey x at the median of its values. Draws the l1 axis and returns the GroupStyle
    (for the legend)."""
    style = GroupStyle(recs)
    l1s = sorted({r.l1 for r in recs})
    xpos = {v: i for i, v in enumerate(l1s)}
    off = style.offsets(0.5)
    width = 0.5 / max(len(style.groups), 1) * 0.85
    good, broken = _split_broken(recs)
    for r in broken:
        ax.plot(xpos[r.l1] + off[r.group], np.median(values(r)), **BROKEN_STYLE, zorder=4)
    for g in style.groups:
        kw = style.kw(g)
        per_l1 = {}
        for r in good:
            if r.group == g:
                per_l1.setdefault(r.l1, []).extend(values(r))
        if not per_l1:
            continue
        xs = [xpos[v] + off[g] for v in sorted(per_l1)]
        data = [per_l1[v] for v in sorted(per_l1)]
        bp = ax.boxplot(data, positions=xs, widths=width, patch_artist=True, showfliers=True,
                        flierprops=dict(marker=".", markersize=2.5, markeredgecolor=kw["color"], alpha=0.6),
                        medianprops=dict(color="k", linewidth=1.0), whiskerprops=dict(color=kw["color"]),
                        capprops=dict(color=kw["color"]), manage_ticks=False)
        for b in bp["boxes"]:
            b.set_facecolor(matplotlib.colors.to_rgba(kw["color"], 0.35))
            b.set_edgecolor(kw["color"])
        ax.plot(xs, [np.median(d) for d in data], color=kw["color"], linestyle=kw["linestyle"],
                marker=kw["marker"], markersize=4, markeredgecolor="k", markeredgewidth=0.4, linewidth=1.0)
    _l1_axis(ax, l1s)
    return style


def plot_segment_regions(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """Distribution over segments (segments.json) of the linear regions crossed per unit of L2 length,
    against l1, one box per (adv, dropout) group."""
    recs, skipped = _usable(records, lambda r: r.l1 is not None and r.segment_values)
    if not recs:
        raise ToolError("segments figure: no run has both config.json and segments.json "
                        "(count_linear_regions.py --segments K)")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        style = _group_boxplots(ax, recs, lambda r: r.segment_values)
        ax.set_ylim(bottom=0)
        ax.set_ylabel("linear regions crossed\nper unit of L2 length")
        n_seg = sorted({len(r.segment_values) for r in recs})
        ax.set_title(title or f"Exact 1-D sections: segments between pairs of test images "
                              f"({'/'.join(map(str, n_seg))} per run)")
        good, broken = _split_broken(recs)
        handles = _group_handles(style, good, markersize=5, markeredgecolor="k", markeredgewidth=0.4)
        handles += [_broken_handle()] if broken else []
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _skipped_note(fig, skipped, "segments.json", broken)
        return save(fig, out_base, formats)


def plot_local_regions(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """Exact region counts in the local boxes around test images (regions_sweep_*.json), smallest width:
    the distribution over the boxes against l1, one box plot per (adv, dropout) group."""
    recs, skipped = _usable(records, lambda r: r.l1 is not None and r.local_median is not None)
    if not recs:
        raise ToolError("local-regions figure: no run has both config.json and a regions_sweep_*.json "
                        "(count_linear_regions.py --center-test-index A:B --width L)")
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots(figsize=(5.2, 3.6))
        style = _group_boxplots(ax, recs, lambda r: r._local_counts())
        ax.set_yscale("log")
        _log_axis(ax.yaxis)
        ax.set_ylabel("linear regions in the box\n(exact, per test image)")
        widths = sorted({r.local_width for r in recs})
        ax.set_title(title or f"Exact local counts: L-inf boxes of radius {'/'.join(f'{w:g}' for w in widths)} "
                              f"around test images")
        good, broken = _split_broken(recs)
        handles = _group_handles(style, good, markersize=5, markeredgecolor="k", markeredgewidth=0.4)
        handles += [_broken_handle()] if broken else []
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
        _skipped_note(fig, skipped, "regions_sweep_*.json", broken)
        return save(fig, out_base, formats)


# ---- the study's figures: medians with intervals, and the paired differences ----------------------------
FACTOR_COLOURS = {"l1": "#6a3d9a", "adv": "#d62728", "dropout": "#1f78b4"}


def study_measures(records) -> list[tuple]:
    """[(title, y label, values(run) -> list, log scale)]: the exact local counts per box width (complete boxes)
    and the regions per unit of L2 length along segments, for the runs that have them."""
    widths = sorted({w for r in records for w in r.local_widths})
    out = [(f"exact local count, width {w:g}", "linear regions in the box", lambda r, w=w: list(
        r.local_counts_by_center(w).values()), True) for w in widths]
    if any(r.segment_values for r in records):
        out.append(("regions along segments", "regions crossed per unit\nof L2 length", lambda r: r.segment_values,
                    False))
    return out


def plot_regions_ci(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS,
                    n_boot: int = 2000):
    """Regions against l1, one line per (adv, dropout): for each setting the median over its images (segments)
    of every working run of every seed pooled, with its percentile-bootstrap 95% interval as a bar; the test
    accuracy in a panel beside them (mean over the seeds, bar = min-max). Broken runs: a grey x apart."""
    from src.report.stats import bootstrap_median_ci

    recs = [r for r in records if r.l1 is not None]
    measures = [m for m in study_measures(recs) if any(m[2](r) for r in recs)]
    if not measures:
        raise ToolError("regions-with-intervals figure: no run has exact local counts (regions_sweep_*.json) or "
                        "segments.json")
    good, broken = _split_broken(recs)
    style = GroupStyle(recs)
    l1s = sorted({r.l1 for r in recs})
    xpos = {v: i for i, v in enumerate(l1s)}
    off = style.offsets()
    n = len(measures) + 1
    ncol = 2 if n > 1 else 1
    nrow = math.ceil(n / ncol)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(nrow, ncol, figsize=(7.0, 2.5 * nrow + 0.5), squeeze=False)
        axs = list(axes.ravel())
        for ax, (name, ylabel, values, log) in zip(axs, measures):
            counts = []
            for g in style.groups:
                kw = style.kw(g)
                xs, med, lo, hi = [], [], [], []
                for v in l1s:
                    vals = [x for r in good if r.group == g and r.l1 == v for x in values(r)]
                    if not vals:
                        continue
                    ci = bootstrap_median_ci(vals, n_boot=n_boot)
                    xs.append(xpos[v] + off[g])
                    med.append(ci.median)
                    lo.append(ci.median - ci.low)
                    hi.append(ci.high - ci.median)
                    counts.append(len(vals))
                if xs:
                    ax.errorbar(xs, med, yerr=[lo, hi], color=kw["color"], marker=kw["marker"],
                                linestyle=kw["linestyle"], markersize=5, markeredgecolor="k", markeredgewidth=0.4,
                                linewidth=1.1, elinewidth=1.0, capsize=2.5)
            for r in broken:
                vals = values(r)
                if vals:
                    ax.plot(xpos[r.l1] + off[r.group], np.median(vals), **BROKEN_STYLE, zorder=4)
            if log:
                ax.set_yscale("log")
                _log_axis(ax.yaxis)
            _l1_axis(ax, l1s)
            ax.set_ylabel(ylabel)
            span = f"{min(counts)}" if counts and min(counts) == max(counts) else \
                f"{min(counts)}-{max(counts)}" if counts else "0"
            ax.set_title(f"{name}\n(median, 95% CI; {span} values per point)")
        ax = axs[len(measures)]
        for g in style.groups:
            kw = style.kw(g)
            xs, mean, lo, hi = [], [], [], []
            for v in l1s:
                acc = [r.test_accuracy for r in good if r.group == g and r.l1 == v and r.test_accuracy is not None]
                if acc:
                    xs.append(xpos[v] + off[g])
                    mean.append(float(np.mean(acc)))
                    lo.append(mean[-1] - min(acc))
                    hi.append(max(acc) - mean[-1])
            if xs:
                ax.errorbar(xs, mean, yerr=[lo, hi], color=kw["color"], marker=kw["marker"],
                            linestyle=kw["linestyle"], markersize=5, markeredgecolor="k", markeredgewidth=0.4,
                            linewidth=1.1, elinewidth=1.0, capsize=2.5)
        for r in broken:
            if r.test_accuracy is not None:
                ax.plot(xpos[r.l1] + off[r.group], r.test_accuracy, **BROKEN_STYLE, zorder=4)
        _l1_axis(ax, l1s)
        ax.set_ylabel("test accuracy")
        ax.set_title("test accuracy\n(mean over seeds, bar = min-max)")
        for extra in axs[len(measures) + 1:]:
            extra.axis("off")
        handles = _group_handles(style, good, markersize=5, markeredgecolor="k", markeredgewidth=0.4)
        handles += [_broken_handle()] if broken else []
        fig.legend(handles=handles, loc="lower center", ncol=min(3, len(handles)), frameon=False,
                   bbox_to_anchor=(0.5, -0.01))
        fig.suptitle(title or "Linear regions against l1, seeds pooled (exact measures)")
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(handles) > 3), 1, 1))
        _skipped_note(fig, [], "", broken)
        return save(fig, out_base, formats)


def plot_paired_differences(paired, out_base, title: str | None = None, formats=FORMATS, seed: int = 0):
    """The paired differences behind the verdict: per measure (one panel each) and factor, log2(treated /
    baseline) of every pair (the same image or segment in the two runs that differ in that factor), as a box
    with the points; 0 = no change, below = fewer regions. Above each: fewer/n, the median ratio and p."""
    from src.report.trend import fmt_p

    panels = [(m, [v for v in vs if v.a.size]) for m, vs in paired]
    panels = [(m, vs) for m, vs in panels if vs]
    if not panels:
        raise ToolError("paired-differences figure: no pair of runs that differ in one factor has values at the "
                        "same images or segments")
    rng = np.random.default_rng(seed)
    n_f = max(len(vs) for _, vs in panels)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(len(panels), 1, figsize=(min(7.0, 1.4 + 1.25 * n_f), 2.5 * len(panels) + 0.3),
                                 squeeze=False)
        for ax, (m, vs) in zip(axes[:, 0], panels):
            data = []
            for v in vs:
                keep = (v.a > 0) & (v.b > 0)
                data.append(np.log2(v.b[keep] / v.a[keep]))
            pos = np.arange(len(vs))
            bp = ax.boxplot(data, positions=pos, widths=0.5, patch_artist=True, showfliers=False,
                            medianprops=dict(color="k", linewidth=1.2), manage_ticks=False)
            for k, (v, d) in enumerate(zip(vs, data)):
                c = FACTOR_COLOURS.get(v.factor, "0.4")
                bp["boxes"][k].set_facecolor(matplotlib.colors.to_rgba(c, 0.25))
                bp["boxes"][k].set_edgecolor(c)
                ax.plot(k + rng.uniform(-0.18, 0.18, d.size), d, ".", color=c, markersize=2.5, alpha=0.55)
                ax.text(k, 0.985, f"{v.fewer}/{v.n} fewer\nratio {v.ratio:.2g}\n{fmt_p(v.test.pvalue)}",
                        transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=6.5)
            ax.axhline(0, color="0.3", linewidth=0.8, linestyle="--")
            ax.set_xticks(pos)
            ax.set_xticklabels([v.label for v in vs])
            ax.set_xlim(-0.6, len(vs) - 0.4)
            lo, hi = ax.get_ylim()
            ax.set_ylim(lo, hi + 0.45 * (hi - lo))
            ax.set_ylabel(f"log2(treated / baseline)\nper {m.unit[:-1]}")
            ax.set_title(m.name)
            ax.grid(False, axis="x")
        fig.suptitle(title or "Paired differences per factor (below 0: fewer regions; broken runs left out)")
        fig.tight_layout()
        return save(fig, out_base, formats)


def plot_paired_differences_of_runs(records: list[RunRecord], out_base, title: str | None = None, formats=FORMATS):
    """plot_paired_differences of the runs' own paired tests per factor (src.report.trend.l1_trend)."""
    from src.report.trend import l1_trend

    return plot_paired_differences(l1_trend(records).paired, out_base, title, formats)


# ---- drivers (used by the thin scripts in plots/) ------------------------------------
FIGURES = {
    "regions": ("regions_vs_l1", plot_regions_vs_l1),
    "stable_units": ("stable_units_vs_l1", plot_stable_units_vs_l1),
    "accuracy_regions": ("accuracy_vs_regions", plot_accuracy_vs_regions),
    "transform_sizes": ("transform_sizes", plot_transform_sizes),
    "segments": ("segment_regions_vs_l1", plot_segment_regions),
    "local_regions": ("local_regions_vs_l1", plot_local_regions),
    "regions_ci": ("regions_ci_vs_l1", plot_regions_ci),
    "paired_differences": ("paired_differences", plot_paired_differences_of_runs),
}


def draw(name: str, models_dir, runs, out_dir="plots/out", domain: str = DEFAULT_DOMAIN,
         formats=FORMATS, records=None, min_accuracy: float = NEAR_CHANCE_ACCURACY) -> list[Path]:
    """Draw one of FIGURES for the runs of models_dir into out_dir; return the files written. Runs below
    `min_accuracy` (or constant on the domain) are drawn as broken (when `records` is None; else theirs hold)."""
    stem, fn = FIGURES[name]
    if records is None:
        records = load_runs(models_dir, runs, domain, min_accuracy)
    return fn(records, Path(out_dir) / stem, formats=formats)


def slice_nets(records: list[RunRecord], weights_name: str = "weights.dat") -> list[tuple[str, ReluNet]]:
    """(panel label, net) for every run that has weights.dat; labels from config.json."""
    out = []
    for r in records:
        w = r.path / weights_name
        if not w.is_file():
            continue
        net = load_net(w)
        parts = [f"{r.run_id}"]
        if r.l1 is not None:
            parts.append(f"λ={fmt_l1(r.l1)}")
        if r.adv is not None:
            parts.append(r.adv)
        if r.dropout is not None:
            parts.append(f"p={r.dropout:g}")
        out.append((", ".join(parts), net))
    return out


def draw_slice(models_dir=None, runs=None, out_dir="plots/out", weights=None, domain: str = DEFAULT_DOMAIN,
               records=None, stem: str = "input_slice", **kw):
    """The input-slice figure for one weights file (`weights`) or every run with a weights.dat."""
    if weights is not None:
        nets = [(Path(weights).parent.name + "/" + Path(weights).name, load_net(weights))]
    else:
        if records is None:
            records = load_runs(models_dir, runs, domain)
        nets = slice_nets(records)
        if not nets:
            raise ToolError(f"input slice: none of the runs has a weights.dat in {models_dir}")
    return plot_input_slice(nets, Path(out_dir) / stem, **kw)


def draw_all(models_dir, runs, out_dir="plots/out", domain: str = DEFAULT_DOMAIN, formats=FORMATS,
             slice_kw: dict | None = None, log=print, min_accuracy: float = NEAR_CHANCE_ACCURACY) -> dict:
    """Every figure; a figure whose inputs are missing is reported and skipped. Returns {name: paths or error}."""
    records = load_runs(models_dir, runs, domain, min_accuracy)
    done = {}
    for name in FIGURES:
        try:
            done[name] = draw(name, models_dir, runs, out_dir, domain, formats, records=records)
        except ToolError as e:
            done[name] = str(e)
            log(f"skipped {name}: {e}")
    try:
        paths, info = draw_slice(records=records, out_dir=out_dir, formats=formats, **(slice_kw or {}))
        done["input_slice"] = paths
    except ToolError as e:
        done["input_slice"] = str(e)
        log(f"skipped input_slice: {e}")
    return done


# ---- command lines (plots/*.py are thin wrappers around these) -----------------------
