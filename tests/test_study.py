"""run_study.py (src/report/study.py): the whole study on the tiny recipe, killed by a real SIGKILL at a known point
(the first global count's first checkpoint) and resumed; its verdict sentences against statistics computed here
from the run directories' files with scipy; the measuring tasks on Ray against the in-process ones; the pilot's
rules and the command line's errors."""
import json
import math
import re
import shutil
import signal

import numpy as np
import pytest
import scipy.stats
from conftest import load_script, pause_env, run_cli, wait_for_pause
from run_fixtures import write_local_table, write_run

from src.analysis import Analysis
from src.core.errors import ToolError
from src.io.readers import load_net
from src.report.study import (BOX_DIR, RECIPES, choose_widths, pilot_runs, recipe_from, sweep_settings,
                              verdict_word)
from src.report.table import load_runs
from src.report.trend import fmt_l1, fmt_p

TINY = RECIPES["tiny"]
START = 500
IDS = [START + k for k in range(len(sweep_settings(TINY)))]


# ---- the pilot's rules and the recipes -----------------------------------------------------------------
def test_choose_widths_rules():
    c = (0.001, 0.002, 0.005, 0.01)
    counts = {0.001: {1: [1, 2], 2: [1, 1]}, 0.002: {1: [30, 12], 2: [1, 2]}, 0.005: {1: [900, 400], 2: [20, 9]}}
    # the median pilot box (pooled) first reaches 10 at 0.005; 0.01 was not measured: the one before is taken
    w, why = choose_widths(c, counts, {0.001: True, 0.002: True, 0.005: True}, 10)
    assert w == (0.002, 0.005) and "no larger width was affordable" in why
    # the pooled median at 0.002 is 7: a handful of 6 is reached there, and 0.005 is the next
    assert choose_widths(c, counts, {0.001: True, 0.002: True, 0.005: True}, 6)[0] == (0.002, 0.005)
    assert choose_widths(c, counts, {0.001: True, 0.002: True, 0.005: True}, 1)[0] == (0.001, 0.002)
    # an unaffordable width is never chosen
    assert choose_widths(c, counts, {0.001: True, 0.002: True, 0.005: False}, 6)[0] == (0.001, 0.002)
    # no width reaches the handful: the two largest affordable ones, and the reason says so
    w, why = choose_widths(c, counts, {0.001: True, 0.002: True, 0.005: True}, 10 ** 6)
    assert w == (0.002, 0.005) and why.startswith("no affordable width")
    with pytest.raises(ToolError, match="fewer than two affordable widths"):
        choose_widths(c, counts, {0.001: True, 0.002: False, 0.005: False}, 5)


def test_pilot_runs_are_working_seed0_extremes(tmp_path):
    m = tmp_path / "m"
    rid = 1
    for seed in (3, 4):
        for l1 in (0.0, 2e-4, 1e-3):
            for adv in ("none", "pgd"):
                write_run(m, rid, l1, adv, 0.0, hidden=(4, 4), train_seed=seed, files=("config", "metrics"),
                          accuracy=0.1 if (seed, l1, adv) == (3, 0.0, "pgd") else None)
                rid += 1
    picked = pilot_runs(load_runs(m, f"1-{rid - 1}"))
    # seed 3: none at l1 0 and 1e-3; PGD at l1 0 is broken (near chance), so PGD at the next l1
    assert [(r.seed, r.l1, r.adv) for r in picked] == [(3, 0.0, "none"), (3, 1e-3, "none"), (3, 2e-4, "pgd")]


def test_recipes_and_their_checks():
    full, medium = RECIPES["full"], RECIPES["medium"]
    assert (full.arch, full.epochs, full.images, full.segments, len(sweep_settings(full))) == ("fcnn4b", 120, 100,
                                                                                               100, 12)
    assert (medium.arch, medium.epochs, len(sweep_settings(medium))) == ("fcnn4b", 20, 12)
    assert [s[0] for s in sweep_settings(recipe_from("tiny", seeds=(1, 2)))] == [1] * 8 + [2] * 8
    for bad, msg in (({"widths": (0.01,)}, "--widths"), ({"widths": (0.02, 0.01)}, "--widths"),
                     ({"images": 0}, "--images"), ({"pilot_images": 9}, "--pilot-images"),
                     ({"width_candidates": (0.02, 0.01)}, "candidates"), ({"box_time_limit": -1.0}, "box-time")):
        with pytest.raises(ToolError, match=msg):
            recipe_from("tiny", **bad)


def test_verdict_word():
    class V:
        def __init__(self, d, p, h, s):
            self.test = type("T", (), {"direction": d, "pvalue": p})()
            self.seeds_holding, self.seeds = h, s
    assert verdict_word(V(-1, 0.001, 3, 3)) == "fewer regions, in every seed"
    assert verdict_word(V(-1, 0.001, 2, 3)) == "fewer regions pooled, in 2/3 seeds"
    assert verdict_word(V(1, 0.01, 1, 1)) == "MORE regions, in every seed"
    assert verdict_word(V(-1, 0.2, 0, 1)) == verdict_word(V(0, 1.0, 0, 1)) == "no significant difference"


def test_cli_errors_write_nothing(tmp_path):
    main = load_script("run_study.py").main
    for args, msg in ((["--widths", "0.01"], "error: --widths"), (["--local-time-limit", "-3"], "error: --local-time"),
                      (["--seeds", "a"], "error: --seeds"), (["--formats", "gif"], "error: --formats"),
                      (["--workers", "0"], "error: --workers")):
        r = run_cli(main, "--recipe", "tiny", "--models-dir", tmp_path / "m", "--out", tmp_path / "o", *args)
        assert r.returncode == 2 and r.stderr.startswith(msg) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "m").exists() and not (tmp_path / "o").exists()


# ---- the whole study, killed and resumed -----------------------------------------------------------------
def _study_args(tmp):
    return ["--recipe", "tiny", "--models-dir", tmp / "models", "--out", tmp / "out", "-s", START, "--formats", "png"]


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """The tiny study run once: killed (SIGKILL) while paused at the first checkpoint of its first global count,
    then the same command to the end, then once more (everything current). Returns (dir, the three outputs)."""
    tmp = tmp_path_factory.mktemp("study")
    marker = tmp / "paused"
    proc = run_cli("run_study.py", *_study_args(tmp), "-q", background=True, env=pause_env(marker, "patterns:0"))
    info = wait_for_pause(proc, marker, timeout=300)
    assert info["kind"] == "patterns"
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    killed = {"report": (tmp / "out" / "report.md").exists(),
              "checkpoint": (tmp / "models" / f"fcnn_run_{START}" / "checkpoint_input_0_1.json").exists(),
              "regions": (tmp / "models" / f"fcnn_run_{START}" / "regions_input_0_1.json").exists(),
              "state": json.loads((tmp / "out" / "study.json").read_text())}
    second = run_cli("run_study.py", *_study_args(tmp), "-q", timeout=600)
    assert second.returncode == 0, second.stderr[-3000:]
    sweeps = sorted((tmp / "models").glob("fcnn_run_*/regions_sweep_*.json"))
    before = {p: p.stat().st_mtime_ns for p in sweeps + [tmp / "out" / "report.md"]}
    third = run_cli("run_study.py", *_study_args(tmp), "-q", timeout=600)
    assert third.returncode == 0, third.stderr[-3000:]
    return tmp, killed, second, third, before


@pytest.mark.slow
def test_kill_and_resume(tiny_study):
    tmp, killed, second, third, before = tiny_study
    # killed during the global count of the first run: training done, no report, a checkpoint and no summary
    assert killed["checkpoint"] and not killed["regions"] and not killed["report"]
    assert killed["state"]["phases"]["train"]["last"]["trained"] == IDS
    state = json.loads((tmp / "out" / "study.json").read_text())
    ph = state["phases"]
    assert ph["train"]["invocations"] == 1                      # not trained again after the kill
    for name in ("segments", "global", "pilot", "local"):       # the third run found everything current
        assert ph[name]["last"]["worked"] is False, name
    assert {p: p.stat().st_mtime_ns for p in before} == before
    # the resumed global count is the net's count, computed here in memory
    d = tmp / "models" / f"fcnn_run_{START}"
    reg = json.loads((d / "regions_input_0_1.json").read_text())
    assert reg["complete"] and reg["count"] == Analysis(load_net(d / "weights.dat")).count_regions().count
    assert not (d / "checkpoint_input_0_1.json").exists()
    # every run: K x 2 boxes, all complete, the sweep table the per-box tables; one box recounted here
    w1, w2 = state["widths"]
    assert w1 < w2 and w1 in TINY.width_candidates and w2 in TINY.width_candidates
    for rid in IDS:
        d = tmp / "models" / f"fcnn_run_{rid}"
        (sweep,) = d.glob("regions_sweep_*.json")
        assert sweep.name == f"regions_sweep_test0_to_test{TINY.images - 1}_width_{w1:g}_{w2:g}.json"
        rows = json.loads(sweep.read_text())["rows"]
        assert len(rows) == 2 * TINY.images and all(r["complete"] for r in rows)
        assert len(list((d / BOX_DIR).glob("regions_sweep_test*_width_*.json"))) >= 2 * TINY.images
        seg = json.loads((d / "segments.json").read_text())
        assert seg["pairs"] == TINY.segments and len(seg["segments"]) == TINY.segments
    from src.io.domains import test_image
    from src.core.box import Box
    row = next(r for r in rows if r["center"] == "test1" and r["width"] == w2)
    box = Box.around(test_image(1), w2, "test1", 0.0, 1.0)
    assert row["count"] == Analysis(load_net(d / "weights.dat"), box).count_regions().count
    # the report: recipe, pilot, times, the answer, the figures
    text = (tmp / "out" / "report.md").read_text()
    for part in ("## Pilot (the widths)", "## Time per phase", "## Does l1 / adversarial training reduce",
                 "regions_ci_vs_l1.png", "paired_differences.png", "| **total** |"):
        assert part in text, part
    for stem in ("regions_ci_vs_l1", "paired_differences", "local_regions_vs_l1", "stable_units_vs_l1"):
        assert (tmp / "out" / f"{stem}.png").is_file(), stem
    assert "l1 regularisation reduces the number of regions" in second.stdout and "report:" in third.stdout


def _broken(d) -> bool:
    acc = json.loads((d / "metrics.json").read_text())["test_accuracy"]
    st = json.loads((d / "stable_units_input_0_1.json").read_text())["counts"]
    return acc < 0.2 or any(c["inactive"] == c["active"] + c["inactive"] + c["unstable"] for c in st)


def _signed_rank(a, b):
    """(direction, two-sided p) of the paired test, by scipy (Pratt's zeros; exact only without zeros and ties)."""
    d = b - a
    ranks = scipy.stats.rankdata(np.abs(d))
    direction = int(np.sign(ranks[d > 0].sum() - ranks[d < 0].sum()))
    if np.all(d == 0):
        return direction, 1.0
    exact = d.size <= 50 and not np.any(d == 0) and len(np.unique(np.abs(d))) == d.size
    return direction, float(scipy.stats.wilcoxon(b, a, zero_method="pratt", correction=False,
                                                 method="exact" if exact else "asymptotic").pvalue)


def _expected_sentences(models, ids, widths) -> dict:
    """{(measure, label): (sentence head, its tail, ratio)}, from the JSON files and scipy alone."""
    runs = {}
    for rid in ids:
        d = models / f"fcnn_run_{rid}"
        cfg = json.loads((d / "config.json").read_text())
        if _broken(d):
            continue
        (sweep,) = d.glob("regions_sweep_*.json")
        rows = json.loads(sweep.read_text())["rows"]
        vals = {w: {r["center"]: r["count"] for r in rows if r["width"] == w and r["complete"]} for w in widths}
        vals["seg"] = {(s["from"], s["to"]): s["regions_per_unit_length"]
                       for s in json.loads((d / "segments.json").read_text())["segments"]}
        runs[rid] = ((cfg["l1"], cfg["adv"], cfg["dropout"]), cfg["seed"], vals)
    l1s = sorted({k[0] for k, _, _ in runs.values()})
    factors = [(f"l1 {fmt_l1(hi)} vs {fmt_l1(lo)}", lambda a, b, lo=lo, hi=hi: a[0] == lo and b[0] == hi
                and a[1:] == b[1:]) for lo, hi in zip(l1s, l1s[1:])]
    factors += [("PGD vs none", lambda a, b: a[1] == "none" and b[1] == "pgd" and (a[0], a[2]) == (b[0], b[2])),
                ("dropout 0.3 vs none", lambda a, b: a[2] == 0 and b[2] == 0.3 and a[:2] == b[:2])]
    names = {w: (f"exact local counts in boxes of width {w:g} around test images", "images") for w in widths}
    names["seg"] = ("regions crossed per unit of L2 length along segments between test images", "segments")
    out = {}
    for key, (name, unit) in names.items():
        for label, match in factors:
            pairs = [(ra, rb) for ra in sorted(runs) for rb in sorted(runs)
                     if runs[ra][1] == runs[rb][1] and match(runs[ra][0], runs[rb][0])]
            by_seed = {}
            for ra, rb in pairs:
                va, vb = runs[ra][2][key], runs[rb][2][key]
                ks = sorted(set(va) & set(vb), key=str)
                sa, sb = by_seed.setdefault(runs[ra][1], ([], []))
                sa += [va[k] for k in ks]
                sb += [vb[k] for k in ks]
            if not by_seed:
                continue
            a = np.array([x for s in by_seed.values() for x in s[0]], float)
            b = np.array([x for s in by_seed.values() for x in s[1]], float)
            direction, p = _signed_rank(a, b)
            holds = 0
            for sa, sb in by_seed.values():
                ds, ps = _signed_rank(np.array(sa, float), np.array(sb, float))
                holds += ps < 0.05 and ds == direction != 0
            n, fewer, more = a.size, int(np.sum(b < a)), int(np.sum(b > a))
            u = unit + (f" of {len(pairs)} run pairs" if len(pairs) > 1 else "")
            shift = (f"no shift (fewer regions in {fewer}/{n}, more in {more}/{n} {u})" if direction == 0 else
                     f"{'fewer' if direction < 0 else 'more'} regions in {fewer if direction < 0 else more}/{n} {u}")
            ratio = float(np.median(b[a > 0] / a[a > 0]))
            out[(name, label)] = (f"{label}: {shift}, median ratio {ratio:.2g}",
                                  f"{fmt_p(p)}, {holds}/{len(by_seed)} seeds", ratio)
    return out


def _check_report(text, expected):
    found, measure = {}, None
    for line in text.splitlines():
        m = re.fullmatch(r"- \*\*(.+)\*\*:", line)
        if m:
            measure = m.group(1)
            continue
        m = re.fullmatch(r"  - (.+?): (.+), median ratio (\S+) \(95% CI (\S+)-(\S+)\), (p [<=] \S+), (\d+/\d+ seeds) "
                         r"— \*(.+)\*", line)
        if m and measure:
            found[(measure, m.group(1))] = m
    assert expected and set(found) == set(expected)
    for key, (head, tail, ratio) in expected.items():
        m = found[key]
        assert m.group(0)[4:].startswith(head), (m.group(0), head)
        assert f"{m.group(6)}, {m.group(7)}" == tail, (m.group(0), tail)
        lo, hi = float(m.group(4)), float(m.group(5))
        assert lo <= float(f"{ratio:.2g}") + 1e-12 and float(f"{ratio:.2g}") <= hi + 1e-12


@pytest.mark.slow
def test_verdict_sentences_against_scipy(tiny_study):
    tmp = tiny_study[0]
    widths = json.loads((tmp / "out" / "study.json").read_text())["widths"]
    text = (tmp / "out" / "report.md").read_text()
    _check_report(text, _expected_sentences(tmp / "models", IDS, widths))
    for rid in IDS:                                             # broken runs (the report's rule) are named
        if _broken(tmp / "models" / f"fcnn_run_{rid}"):
            assert f"run {rid} (" in text


@pytest.mark.slow
def test_second_seed_on_ray(tiny_study, tmp_path, ray_session):
    """--seeds 1,2 --workers 2 on a copy of the study: seed 1's runs are reused (trained, counted), their segments
    and boxes measured again by Ray tasks equal the in-process ones; seed 2's runs are trained and measured on
    Ray; every sentence states its seeds as scipy per seed says."""
    src = tiny_study[0]
    models = tmp_path / "models"
    shutil.copytree(src / "models", models)
    for rid in IDS:
        d = models / f"fcnn_run_{rid}"
        shutil.rmtree(d / BOX_DIR)
        for p in [d / "segments.json", *d.glob("regions_sweep_*")]:
            p.unlink()
    weights = {rid: (models / f"fcnn_run_{rid}" / "weights.dat").stat().st_mtime_ns for rid in IDS}
    main = load_script("run_study.py").main
    r = run_cli(main, "--recipe", "tiny", "--seeds", "1,2", "--models-dir", models, "--out", tmp_path / "out",
                "-s", START, "--workers", "2", "--formats", "png", "-q")
    assert r.returncode == 0, r.stderr[-3000:]
    state = json.loads((tmp_path / "out" / "study.json").read_text())
    ids2 = [START + k for k in range(16)]
    assert state["phases"]["train"]["last"]["trained"] == ids2[8:]
    assert all((models / f"fcnn_run_{rid}" / "weights.dat").stat().st_mtime_ns == t for rid, t in weights.items())
    assert state["widths"] == json.loads((src / "out" / "study.json").read_text())["widths"]
    for rid in IDS:
        a, b = src / "models" / f"fcnn_run_{rid}", models / f"fcnn_run_{rid}"
        (sa,), (sb,) = a.glob("regions_sweep_*.json"), b.glob("regions_sweep_*.json")
        assert sa.name == sb.name
        ca = [(x["center"], x["width"], x["count"]) for x in json.loads(sa.read_text())["rows"]]
        cb = [(x["center"], x["width"], x["count"]) for x in json.loads(sb.read_text())["rows"]]
        assert ca == cb
        seg = [[s["regions"] for s in json.loads((d / "segments.json").read_text())["segments"]] for d in (a, b)]
        assert seg[0] == seg[1]
    assert json.loads((models / f"fcnn_run_{ids2[8]}" / "config.json").read_text())["seed"] == 2
    text = (tmp_path / "out" / "report.md").read_text()
    expected = _expected_sentences(models, ids2, state["widths"])
    assert all(tail.endswith("/2 seeds") for _, tail, _ in expected.values())
    _check_report(text, expected)


def test_report_of_synthetic_runs_names_seeds_and_intervals(tmp_path):
    """The setting table pools the seeds: its medians are the medians of the pooled values."""
    from src.report.study import setting_table

    m = tmp_path / "m"
    rid = 1
    for seed in (0, 1):
        for l1 in (0.0, 1e-3):
            d = write_run(m, rid, l1, "none", 0.0, hidden=(4, 4), train_seed=seed,
                          files=("config", "metrics", "stable"))
            write_local_table(d, {f"test{k}": (k + 1) * (2 if l1 == 0 else 1) + seed for k in range(5)})
            rid += 1
    rows = setting_table(load_runs(m, "1-4"), [0.01])
    assert [r["l1"] for r in rows] == [0.0, 1e-3] and [r["seeds"] for r in rows] == ["0,1", "0,1"]
    pooled = {0.0: [2 * (k + 1) + s for s in (0, 1) for k in range(5)],
              1e-3: [(k + 1) + s for s in (0, 1) for k in range(5)]}
    for r in rows:
        ci, n = r["local_0.01"]
        assert n == 10 and ci.median == np.median(pooled[r["l1"]]) and ci.low <= ci.median <= ci.high
        assert not math.isnan(ci.low)
