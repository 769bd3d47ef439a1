"""The statistics of the verdict (src/report/stats.py) against scipy and hand-computed cases; the paired tests per
factor (src/report/trend.py) and the broken-run rule on synthetic run directories whose truth is built in."""
import csv
import io
import json
import math

import numpy as np
import pytest
import scipy.stats
from conftest import run_cli
from run_fixtures import write_local_table, write_run, write_segment_table

from src.core.errors import ToolError
from src.report import stats
from src.report.stats import (average_ranks, bootstrap_median_ci, median_ratio, pair_ratios, signed_rank_null_counts,
                              wilcoxon_signed_rank)
from src.report.table import NEAR_CHANCE_ACCURACY, broken_reason, collect_results, load_run, load_runs
from src.report.trend import factor_pairs, factor_verdicts, fmt_p, l1_trend, paired_measures


# ---- Wilcoxon signed-rank ------------------------------------------------------------------
def _scipy(a, b, method):
    return scipy.stats.wilcoxon(b, a, zero_method="pratt", correction=False,
                                method="exact" if method == "exact" else "asymptotic")


def _random_case(rng, kind):
    n = int(rng.integers(1, 120))
    a = rng.normal(size=n) * 10
    if kind == "continuous":                      # no ties, no zeros: exact for n <= 50
        b = a + rng.normal(loc=rng.normal(), size=n)
    elif kind == "ties":                          # integer counts: ties among |d| and zeros
        a = rng.integers(1, 30, n).astype(float)
        b = a + rng.integers(-4, 5, n)
    else:                                         # mostly zeros, a few shifts
        b = a.copy()
        k = rng.choice(n, size=max(1, n // 5), replace=False)
        b[k] += rng.choice([-2.0, -1.0, 1.0, 3.0], size=k.size)
    return a, b


@pytest.mark.parametrize("kind", ["continuous", "ties", "zeros"])
def test_wilcoxon_equals_scipy_pratt(kind):
    """200 random cases per kind: statistic and two-sided p equal scipy's wilcoxon(zero_method='pratt',
    correction=False) with the method ours used (exact iff n <= 50, no zero, no tie)."""
    rng = np.random.default_rng({"continuous": 1, "ties": 2, "zeros": 3}[kind])
    methods = set()
    for _ in range(200):
        a, b = _random_case(rng, kind)
        r = wilcoxon_signed_rank(a, b)
        d = b - a
        if np.all(d == 0):                        # scipy: nan; ours: p = 1 (test_wilcoxon_hand_cases)
            assert (r.method, r.pvalue) == ("all zero", 1.0)
            continue
        has_ties = len(np.unique(np.abs(d))) < d.size
        assert r.method == ("exact" if d.size <= 50 and not np.any(d == 0) and not has_ties else "normal")
        s = _scipy(a, b, r.method)
        assert r.statistic == pytest.approx(float(s.statistic), abs=1e-9)
        assert r.pvalue == pytest.approx(float(s.pvalue), rel=1e-9, abs=1e-15)
        assert r.n == d.size and r.n_zero == int(np.sum(d == 0))
        assert r.r_plus + r.r_minus + average_ranks(np.abs(d))[0][d == 0].sum() == pytest.approx(
            d.size * (d.size + 1) / 2)
        methods.add(r.method)
    assert methods == {"exact", "normal"}          # ties and zeros may miss a small case, which is then exact


def test_wilcoxon_zero_method_is_pratt_not_wilcox():
    """With zeros, Pratt's and Wilcoxon's treatments differ; ours is Pratt's."""
    a = np.arange(1.0, 13.0)
    b = a + np.array([0, 0, 0, 0, -1, -2, -3, -4, -5, -6, 7, -8.5])
    r = wilcoxon_signed_rank(a, b)
    pratt = scipy.stats.wilcoxon(b, a, zero_method="pratt", correction=False, method="asymptotic").pvalue
    wilcox = scipy.stats.wilcoxon(b, a, zero_method="wilcox", correction=False, method="asymptotic").pvalue
    assert abs(pratt - wilcox) > 1e-3
    assert r.pvalue == pytest.approx(pratt, rel=1e-12)


def test_wilcoxon_hand_cases():
    # d = (1, 2, 3): r+ = 6, r- = 0; exact two-sided p = 2 P(W >= 6) = 2/8
    r = wilcoxon_signed_rank([0, 0, 0], [1, 2, 3])
    assert (r.r_plus, r.r_minus, r.method, r.direction) == (6, 0, "exact", 1) and r.pvalue == 0.25
    # d = (-1, 2, 3, -4, 5): r+ = 10, r- = 5; P(W <= 5) = 10/32 (sums 0..5 of subsets of 1..5: 1,1,1,2,2,3)
    r = wilcoxon_signed_rank([0] * 5, [-1, 2, 3, -4, 5])
    assert (r.r_plus, r.r_minus, r.statistic) == (10, 5, 5) and r.pvalue == pytest.approx(20 / 32, abs=1e-15)
    # d = (0, 1, 1, -2), Pratt: ranks of |d| 1, 2.5, 2.5, 4 -> r+ = 5, r- = 4; mean (4*5 - 1*2)/4 = 4.5,
    # variance (4*5*9 - 1*2*3 - (2^3 - 2)/2)/24 = 171/24 (the zero is no tie)
    r = wilcoxon_signed_rank([5, 5, 5, 5], [5, 6, 6, 3])
    assert (r.r_plus, r.r_minus, r.n_zero, r.method) == (5, 4, 1, "normal")
    assert r.pvalue == pytest.approx(math.erfc(0.5 / math.sqrt(171 / 24) / math.sqrt(2)), rel=1e-14)
    # nothing to rank: p = 1 (scipy gives nan)
    r = wilcoxon_signed_rank([3, 4], [3, 4])
    assert (r.pvalue, r.method, r.direction) == (1.0, "all zero", 0)
    # the null counts: subsets of {1, 2, 3} by sum 0..6
    assert signed_rank_null_counts(3).tolist() == [1, 1, 1, 2, 1, 1, 1]
    assert signed_rank_null_counts(20).sum() == 2 ** 20
    # 20 pairs all lower, distinct |d|: p = 2 / 2^20
    a = np.arange(10.0, 30.0)
    assert wilcoxon_signed_rank(a, a / 2).pvalue == pytest.approx(2 / 2 ** 20, rel=1e-12)
    assert average_ranks(np.array([3.0, 1.0, 3.0, 2.0]))[0].tolist() == [3.5, 1.0, 3.5, 2.0]


def test_wilcoxon_bad_input():
    for a, b, what in (([1, 2], [1], "pair up"), ([], [], "no pairs"), ([1, np.nan], [1, 2], "finite"),
                       ([[1, 2]], [[1, 2]], "1-D")):
        with pytest.raises(ToolError, match=what):
            wilcoxon_signed_rank(a, b)


# ---- bootstrap intervals of a median --------------------------------------------------------
def _exact_bootstrap_quantile(x, q):
    """The q-quantile of the exact bootstrap distribution of the median of x (odd n, distinct values):
    P(median <= x_(j)) = P(Binomial(n, j/n) >= (n+1)/2)."""
    xs, n = np.sort(x), len(x)
    cdf = scipy.stats.binom.sf((n + 1) // 2 - 1, n, np.arange(1, n + 1) / n)
    return xs[np.searchsorted(cdf, q)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bootstrap_interval_against_the_exact_bootstrap_distribution(seed):
    """Odd n, distinct values: the percentile interval lies within the exact bootstrap distribution's quantiles
    0.025 +- 0.01 and 0.975 +- 0.01 (the Monte Carlo error with 10000 resamples is about 0.0016)."""
    x = np.random.default_rng(seed).lognormal(size=15 + 10 * seed)
    ci = bootstrap_median_ci(x, seed=seed)
    assert ci.median == np.median(x) and ci.level == 0.95
    assert _exact_bootstrap_quantile(x, 0.015) <= ci.low <= _exact_bootstrap_quantile(x, 0.035)
    assert _exact_bootstrap_quantile(x, 0.965) <= ci.high <= _exact_bootstrap_quantile(x, 0.985)


def test_bootstrap_hand_cases_and_scipy():
    # [0, 1]: resampled medians 0 (p 1/4), 0.5 (1/2), 1 (1/4) -> the 2.5 % and 97.5 % quantiles are 0 and 1
    ci = bootstrap_median_ci([0.0, 1.0])
    assert (ci.median, ci.low, ci.high) == (0.5, 0.0, 1.0)
    const = bootstrap_median_ci([7.0] * 9)
    assert (const.median, const.low, const.high) == (7.0, 7.0, 7.0)
    one = bootstrap_median_ci([3.5])
    assert (one.median, one.low, one.high) == (3.5, 3.5, 3.5)
    # scipy's percentile bootstrap of the median agrees up to Monte Carlo error
    x = np.random.default_rng(5).normal(size=101)
    ours = bootstrap_median_ci(x, n_boot=20000, seed=1)
    ref = scipy.stats.bootstrap((x,), np.median, n_resamples=20000, method="percentile",
                                random_state=np.random.default_rng(2)).confidence_interval
    assert abs(ours.low - ref.low) < 0.06 and abs(ours.high - ref.high) < 0.06


def test_bootstrap_is_seeded_and_chunking_does_not_change_it(monkeypatch):
    x = np.random.default_rng(0).normal(size=37)
    a = bootstrap_median_ci(x, n_boot=3001, seed=4)
    assert bootstrap_median_ci(x, n_boot=3001, seed=4) == a
    monkeypatch.setattr(stats, "_BOOT_CELLS", 37 * 7)          # 7 resamples at a time
    assert bootstrap_median_ci(x, n_boot=3001, seed=4) == a


def test_bootstrap_coverage():
    """The 95 % interval covers the true median (0) in 88-99 % of 300 standard normal samples of 41."""
    rng = np.random.default_rng(11)
    hits = sum(ci.low <= 0 <= ci.high for ci in
               (bootstrap_median_ci(rng.normal(size=41), n_boot=2000, seed=k) for k in range(300)))
    assert 0.88 * 300 <= hits <= 0.99 * 300


def test_bootstrap_bad_input():
    for kw, what in (({"values": []}, "no values"), ({"values": [1, 2], "level": 1.0}, "level"),
                     ({"values": [1, 2], "n_boot": 0}, "n_boot"), ({"values": [1, np.inf]}, "finite")):
        with pytest.raises(ToolError, match=what):
            bootstrap_median_ci(**kw)


# ---- ratios ----------------------------------------------------------------------------------
def test_median_ratio_is_the_median_of_the_pair_ratios():
    a, b = [2, 4, 0, 10], [1, 1, 5, 30]
    assert pair_ratios(a, b).tolist() == [0.5, 0.25, 3.0]         # the pair with a = 0 is left out
    assert median_ratio(a, b) == 0.5                               # the ratio of the medians would be 3/3 = 1
    assert math.isnan(median_ratio([0, 0], [1, 2]))
    with pytest.raises(ToolError, match="pair up"):
        median_ratio([1, 2], [1])


def test_fmt_p():
    assert fmt_p(3e-7) == "p < 1e-6" and fmt_p(1.9073e-6) == "p = 1.9e-6"
    assert fmt_p(0.0321) == "p = 0.032" and fmt_p(1.0) == "p = 1"


# ---- broken runs -----------------------------------------------------------------------------
def test_broken_rule():
    live = [{"layer": 1, "active": 1, "inactive": 2, "unstable": 5}, {"layer": 2, "active": 0, "inactive": 3,
                                                                       "unstable": 5}]
    dead = live[:1] + [{"layer": 2, "active": 0, "inactive": 8, "unstable": 0}]
    assert NEAR_CHANCE_ACCURACY == 0.2
    assert broken_reason(0.1135, live) == "test accuracy 0.1135, near chance (< 0.2)"
    assert broken_reason(0.2, live) is None and broken_reason(None, None) is None
    assert broken_reason(0.5, live, min_accuracy=0.6) == "test accuracy 0.5, near chance (< 0.6)"
    assert broken_reason(0.9, dead) == ("layer 2: all 8 hidden units stably inactive, the net is constant on "
                                        "the domain")
    # all units stable but not all inactive: one affine piece, not constant, not broken
    assert broken_reason(0.9, [{"layer": 1, "active": 4, "inactive": 4, "unstable": 0}]) is None


def _kill_layer(run_dir, layer=1):
    """Mark every unit of a hidden layer stably inactive in stable_units_input_0_1.json."""
    p = run_dir / "stable_units_input_0_1.json"
    st = json.loads(p.read_text())
    c = st["counts"][layer - 1]
    c["inactive"], c["active"], c["unstable"] = c["active"] + c["inactive"] + c["unstable"], 0, 0
    p.write_text(json.dumps(st))


def test_broken_on_records(tmp_path):
    m = tmp_path / "m"
    write_run(m, 1, 0.0, "none", 0.0, hidden=(4, 4), accuracy=0.1135, files=("config", "metrics"))
    d2 = write_run(m, 2, 0.0, "none", 0.0, hidden=(4, 4), files=("config", "metrics", "regions", "stable"))
    write_run(m, 3, 0.0, "none", 0.0, hidden=(4, 4), files=("config", "regions"))
    _kill_layer(d2, 2)
    r1, r2, r3 = load_runs(m, "1-3")
    assert r1.broken.startswith("test accuracy 0.1135") and r3.broken is None
    assert r2.broken.startswith("layer 2: all 4 hidden units stably inactive")
    assert load_run(m / "fcnn_run_1", min_accuracy=0.1).broken is None
    with pytest.raises(ToolError, match="--min-accuracy"):
        load_runs(m, "1-3", min_accuracy=1.5)


# ---- paired tests per factor on synthetic sweeps ---------------------------------------------------
BASE = {f"test{k}": 400 + 80 * k for k in range(20)}           # distinct counts: every |d| differs
L1_FACTOR = {0.0: 1.0, 2e-4: 0.5, 1e-3: 0.25}


def _truth(l1, adv, p, seed):
    """The built-in effect of each factor on every count: l1 halves it per step, PGD leaves it, dropout 0.3
    multiplies it by 0.8 in seeds 0 and 1 and by 1.25 in seed 2."""
    return L1_FACTOR[l1] * (1.0 if p == 0 else 0.8 if seed < 2 else 1.25)


def _paired_sweep(models, broken=(), seeds=(0, 1, 2), widths=(0.01,)):
    """Runs 100.. over seed x l1 x adv x dropout with local tables (rows shuffled, an extra and an incomplete
    box) and segments; returns {run id: settings}."""
    rng = np.random.default_rng(0)
    runs, rid = {}, 100
    for seed in seeds:
        for l1 in L1_FACTOR:
            for adv in ("none", "pgd"):
                for p in (0.0, 0.3):
                    d = write_run(models, rid, l1, adv, p, hidden=(4, 4), train_seed=seed,
                                  files=("config", "metrics", "regions", "stable"),
                                  accuracy=0.1135 if rid in broken else None)
                    f = _truth(l1, adv, p, seed)
                    centers = list(BASE)
                    rng.shuffle(centers)                  # pairing is by key, not by position
                    counts = {c: int(round(BASE[c] * f)) for c in centers}
                    counts[f"test{900 + rid}"] = 7        # a box only this run has
                    counts["test50"] = None               # not counted completely: left out
                    write_local_table(d, counts, width=widths)
                    segs = {(k, k + 3): (int(round((80 + 80 * k) * f)), 2.0 + k) for k in range(12)}
                    write_segment_table(d, dict(reversed(list(segs.items()))))
                    runs[rid] = (seed, l1, adv, p)
                    rid += 1
    return runs


def _pooled(runs, factor_pairs_ids):
    a, b = [], []
    for ra, rb in factor_pairs_ids:
        fa, fb = _truth(*runs[ra][1:], runs[ra][0]), _truth(*runs[rb][1:], runs[rb][0])
        for c in sorted(BASE):
            a.append(round(BASE[c] * fa))
            b.append(round(BASE[c] * fb))
    return np.array(a, float), np.array(b, float)


def test_halved_counts_one_pair(tmp_path):
    """Two runs, one seed, the stronger l1 halving every count: the sentence of the issue, exactly."""
    m = tmp_path / "m"
    for rid, l1 in ((1, 0.0), (2, 2e-4)):
        d = write_run(m, rid, l1, "none", 0.0, hidden=(4, 4), files=("config", "metrics"))
        write_local_table(d, {c: int(n * L1_FACTOR[l1]) for c, n in BASE.items()})
    recs = load_runs(m, "1-2")
    (measure,) = paired_measures(recs)
    (v,) = factor_verdicts(recs, measure)
    assert (v.n, v.fewer, v.more, v.equal, v.ratio, v.run_pairs) == (20, 20, 0, 0, 0.5, [(1, 2)])
    assert v.test.pvalue == pytest.approx(2 / 2 ** 20) and v.test.method == "exact"
    assert v.summary() == ("l1 2e-4 vs 0: fewer regions in 20/20 images, median ratio 0.5 (95% CI 0.5-0.5), "
                           "p = 1.9e-6, 1/1 seeds")


def test_factor_verdicts_on_a_sweep_with_seeds_and_broken_runs(tmp_path):
    models = tmp_path / "m"
    broken_id = 112 + 5           # seed 1 (runs 112-123), l1 2e-4, adv none, dropout 0.3
    runs = _paired_sweep(models, broken=(broken_id,))
    dead = 124 + 11               # seed 2 (runs 124-135), l1 1e-3, pgd, dropout 0.3: a constant net
    _kill_layer(models / f"fcnn_run_{dead}", 1)
    recs = load_runs(models, "100-135")
    assert [r.run_id for r in recs if r.broken] == [broken_id, dead]
    pairs = {label: [(a.run_id, b.run_id) for a, b in ps] for _, label, ps in factor_pairs(recs)}
    assert list(pairs) == ["l1 2e-4 vs 0", "l1 1e-3 vs 2e-4", "PGD vs none", "dropout 0.3 vs none"]
    for label, ps in pairs.items():
        assert all(broken_id not in p and dead not in p for p in ps)
        for ra, rb in ps:             # same seed, one factor changed
            sa, sb = runs[ra], runs[rb]
            assert sa[0] == sb[0] and sum(x != y for x, y in zip(sa[1:], sb[1:])) == 1
    assert len(pairs["dropout 0.3 vs none"]) == 18 - 2 and len(pairs["PGD vs none"]) == 18 - 2
    local, segments = paired_measures(recs)
    verdicts = {v.label: v for v in factor_verdicts(recs, local)}
    # l1: every image halves in every seed
    v = verdicts["l1 2e-4 vs 0"]
    assert v.n == 20 * len(pairs["l1 2e-4 vs 0"]) == v.fewer and v.ratio == 0.5 and v.seeds_holding == 3
    assert v.summary() == (f"l1 2e-4 vs 0: fewer regions in {v.n}/{v.n} images of {len(v.run_pairs)} run pairs, "
                           f"median ratio 0.5 (95% CI 0.5-0.5), p < 1e-6, 3/3 seeds")
    # PGD changes nothing
    assert verdicts["PGD vs none"].summary().startswith(
        f"PGD vs none: no shift (fewer regions in 0/{verdicts['PGD vs none'].n}, more in 0/")
    assert verdicts["PGD vs none"].test.pvalue == 1.0 and verdicts["PGD vs none"].seeds_holding == 0
    # dropout: fewer in seeds 0 and 1, more in seed 2 -> pooled fewer, 2/3 seeds; p as scipy's on the truth
    v = verdicts["dropout 0.3 vs none"]
    a, b = _pooled(runs, pairs["dropout 0.3 vs none"])
    ref = scipy.stats.wilcoxon(b, a, zero_method="pratt", correction=False, method="asymptotic")
    assert (v.n, v.fewer, v.more) == (a.size, int(np.sum(b < a)), int(np.sum(b > a))) == (320, 220, 100)
    assert v.test.pvalue == pytest.approx(ref.pvalue, rel=1e-12) and v.test.direction == -1
    assert v.ratio == 0.8 and v.seeds == 3 and v.seeds_holding == 2
    assert sorted(zip(v.a, v.b)) == sorted(zip(a, b))          # the pairs kept for the figure are the tested ones
    assert v.summary() == (f"dropout 0.3 vs none: fewer regions in 220/320 images of 16 run pairs, median ratio 0.8 "
                           f"(95% CI 0.8-0.8), {fmt_p(ref.pvalue)}, 2/3 seeds")
    # segments: keyed by their endpoints
    sv = {v.label: v for v in factor_verdicts(recs, segments)}
    assert sv["l1 1e-3 vs 2e-4"].n == 12 * len(pairs["l1 1e-3 vs 2e-4"]) == 12 * 10
    assert sv["l1 1e-3 vs 2e-4"].ratio == pytest.approx(0.5, rel=1e-12)
    assert "fewer regions in" in sv["l1 1e-3 vs 2e-4"].summary() and "segments of" in sv["l1 1e-3 vs 2e-4"].summary()
    # the verdict text: broken runs named, the paired block per measure
    text = l1_trend(recs).summary()
    assert (f"left out: run {broken_id} (test accuracy 0.1135, near chance (< 0.2)), run {dead} (layer 1: all 4 "
            f"hidden units stably inactive, the net is constant on the domain)") in text
    assert "exact local counts in boxes of width 0.01 around test images:\n    l1 2e-4 vs 0: fewer regions" in text
    assert "along segments between test images:\n    l1 2e-4 vs 0: fewer regions" in text
    assert "trend over 34 runs" in text


def test_widths_are_measures_of_their_own(tmp_path):
    models = tmp_path / "m"
    _paired_sweep(models, seeds=(0,), widths=(0.01, 0.05))
    recs = load_runs(models, "100-111")
    names = [m.name for m in paired_measures(recs)]
    assert names[:2] == ["exact local counts in boxes of width 0.01 around test images",
                         "exact local counts in boxes of width 0.05 around test images"]


def test_other_architectures_and_seeds_are_not_paired(tmp_path):
    m = tmp_path / "m"
    for rid, l1, hidden, seed in ((1, 0.0, (4, 4), 0), (2, 2e-4, (6, 6), 0), (3, 2e-4, (4, 4), 1)):
        d = write_run(m, rid, l1, "none", 0.0, hidden=hidden, train_seed=seed, files=("config", "metrics"))
        write_local_table(d, {c: n for c, n in BASE.items()})
    recs = load_runs(m, "1-3")
    assert factor_pairs(recs) == [] and factor_verdicts(recs, paired_measures(recs)[0]) == []


def test_collect_results_broken_column_and_verdict(tmp_path):
    """The table names the broken run, the verdict leaves it out and names it; --min-accuracy moves the line."""
    models = tmp_path / "m"
    runs = _paired_sweep(models, broken=(101,), seeds=(0,))
    res = collect_results(models, "100-111", tmp_path / "out")
    rows = {int(r["run"]): r for r in csv.DictReader(io.StringIO(res["csv"].read_text()))}
    assert rows[101]["broken"] == "test accuracy 0.1135, near chance (< 0.2)"
    assert all(rows[r]["broken"] == "" for r in runs if r != 101)
    md = res["md"].read_text()
    assert "| broken |" in md.splitlines()[2] and "test accuracy 0.1135, near chance" in md
    assert "left out: run 101 (test accuracy 0.1135" in md and "Paired tests per factor" in md
    assert res["trend"].n_runs == 11
    r = run_cli("collect_results.py", "--models-dir", models, "--runs", "100-111", "--out", tmp_path / "cli",
                "--min-accuracy", "0.05", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "left out" not in r.stdout and "trend over 12 runs" in r.stdout
    r = run_cli("collect_results.py", "--models-dir", models, "--runs", "100-111", "--out", tmp_path / "cli",
                "--min-accuracy", "2", timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error: --min-accuracy")


# ---- figures: broken runs drawn apart ---------------------------------------------------------
def _markers(ax):
    """(grey x points, other line data) of an axis."""
    xs, others = [], []
    for ln in ax.get_lines():
        pts = list(zip(ln.get_xdata(), ln.get_ydata()))
        (xs if ln.get_marker() == "x" else others).append(pts)
    return [p for pts in xs for p in pts], [p for pts in others for p in pts]


@pytest.mark.parametrize("name", ["regions", "stable_units", "accuracy_regions", "segments", "local_regions"])
def test_figures_draw_broken_runs_apart(tmp_path, monkeypatch, name):
    from src.report import figures

    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: (drawn.append(fig), save(fig, *a, **k))[1])
    models = tmp_path / "m"
    _paired_sweep(models, seeds=(0,), broken=(100,))
    d = models / "fcnn_run_100"
    reg = json.loads((d / "regions_input_0_1.json").read_text())
    reg["count"] = 1                                   # a distinctive value, absent from every line
    (d / "regions_input_0_1.json").write_text(json.dumps(reg))
    write_local_table(d, {c: 1 for c in BASE})
    write_segment_table(d, {(k, k + 3): (1, 1000.0) for k in range(12)})
    figures.draw(name, models, "100-111", tmp_path / "out", formats=("png",))
    (fig,) = drawn
    axes = fig.axes if name == "stable_units" else fig.axes[:1]
    for ax in axes:
        crosses, others = _markers(ax)
        assert len(crosses) == 1, (name, crosses)
        if name in ("regions", "local_regions", "segments"):
            assert crosses[0][1] == pytest.approx({"segments": 0.001}.get(name, 1.0))
            assert all(abs(y - crosses[0][1]) > 1e-9 for _, y in others)
        if name == "accuracy_regions":
            assert crosses[0] == pytest.approx((1.0, 11.35))
    legend = fig.legends[0] if name == "stable_units" else fig.axes[0].get_legend()
    assert "broken (left out)" in [t.get_text() for t in legend.get_texts()]
    assert any("grey x: broken run 100 " in t.get_text() for t in fig.texts)
