"""`--remaining N`: what an incomplete lp count has still to find, estimated below its frontier
(src/counting/knuth.py: estimate_regions(roots=...); src/counting/estimate.py: estimate_remaining), against
the brute force."""
import itertools
import json
import os
import signal

import numpy as np
import pytest
from conftest import as_set, catalogue_net, pause_env, reference, run_cli, wait_for_pause

from src.core.box import Box
from src.core.errors import ToolError
from src.core.patterns import pattern_string
from src.counting.knuth import estimate_regions
from src.counting.tree_walk import make_engine
from src.io.records import read_regions, write_checkpoint
from src.io.weights_file import save_net
from src.stability.analyse import analyse_stability

TOL = 1e-6
CLI = "count_linear_regions.py"
DOMAIN = "input_0_1"
NETS = ["3-4-3-2-1_seed2", "3-5-4-1_seed9_bias0.4"]    # 7-9 unstable units, no level enumerates the tree
CLI_NET = "2-5-5-1_seed2"


def setup(name):
    s = catalogue_net(name)
    net = s.net()
    box = Box.uniform(net.n_inputs)
    return s, net, box, analyse_stability(net, box, tol=TOL)


def partial_walk(net, box, st, stop_after: int):
    """The lp walk stopped once it has emitted `stop_after` patterns: (the patterns emitted, its frontier)."""
    found = []
    eng = make_engine(net, box, st.fixed_bits(), TOL)
    done, frontier = eng.run(lambda b: found.append(tuple(int(v) for v in b)),
                             stop_flag=lambda: len(found) >= stop_after)
    assert not done and frontier
    return found, list(frontier)


def frontier_after(truth, k: int):
    """The first k patterns in lexicographic order and the frontier a walk has after emitting them: the right
    siblings along the path of the last one (some of them empty, as on the walk's stack)."""
    found = sorted(truth)[:k]
    last = "".join(map(str, found[-1]))
    return found, [last[:i] + "1" for i in reversed(range(len(last))) if last[i] == "0"]


@pytest.mark.parametrize("name", NETS)
def test_below_a_frontier_the_dives_are_unbiased_exactly(name):
    """Knuth's identity below each root of a frontier: over every choice vector the mean value of the dives
    from the root is the number of regions in its subtree; with the patterns the walk emitted before it they
    make the brute force's count, and nothing emitted lies below the frontier."""
    s, net, box, st = setup(name)
    truth = reference(s)
    found, frontier = partial_walk(net, box, st, len(truth) // 3)
    assert set(found) <= set(truth) and len(set(found)) == len(found)
    eng = make_engine(net, box, st.fixed_bits(), TOL)
    N = net.n_hidden_units
    below = 0
    for root in frontier:
        total = 0
        for choice in itertools.product((0.25, 0.75), repeat=N):
            k, leaf = eng.dive(root, np.array(choice))
            if leaf is not None:
                total += 2 ** k
                key = tuple(int(b) for b in leaf)
                assert key in truth and key not in set(found) and pattern_string(leaf).startswith(root)
        assert total % 2 ** N == 0
        below += total // 2 ** N
    assert len(found) + below == len(truth), (name, len(found), below, len(truth))


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_remaining_interval_covers_the_truth_over_seeds(name):
    """Measured at 60 probes with the proportional shares: 38 and 38 of 40 seeds, standard deviation 3.8 and
    0.87 regions of 32 and 18 left (with equal shares 32 and 38 of 40, 7.6 and 1.2). The floor: 34 of 40
    (85 %); the intervals must be informative (median hi/lo below 4)."""
    s, net, box, st = setup(name)
    truth = reference(s)
    found, frontier = frontier_after(truth, len(truth) // 3)
    left = len(truth) - len(found)
    covered, ratios = 0, []
    for seed in range(40):
        e = estimate_regions(net, box, st, probes=60, seed=seed, roots=frontier)
        lo, hi = e.ci95
        assert e.strata == len(frontier) and e.probes == 60 and not e.exact
        assert as_set(e.patterns) <= truth and not as_set(e.patterns) & set(found)
        # the interval is clipped below by the regions the probes certified, which may exceed the estimate
        assert e.lower_bound <= lo <= hi and (lo <= e.value <= hi or e.value < e.lower_bound == lo)
        covered += lo <= left <= hi
        ratios.append(hi / lo)
    assert covered >= 34, (name, covered)
    assert np.median(ratios) < 4.0


def test_roots_at_full_depth_are_counted_exactly():
    """Roots that are whole patterns: each stratum's dives agree (1 or 0), so the estimate is the number of
    feasible ones with a zero-width interval."""
    s, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    truth = sorted(reference(s))
    feasible = ["".join(map(str, p)) for p in truth[:5]]
    N = net.n_hidden_units
    infeasible = [r for r in ("".join(b) for b in itertools.product("01", repeat=N))
                  if tuple(int(c) for c in r) not in set(truth)][:3]
    roots = sorted(feasible + infeasible)
    e = estimate_regions(net, box, st, probes=40, seed=1, roots=roots)
    assert e.value == 5.0 and e.ci95 == (5.0, 5.0)
    assert {"".join(map(str, p)) for p in e.patterns} == set(feasible)


def test_no_roots_left_is_zero_and_bad_roots_are_refused():
    _, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    e = estimate_regions(net, box, st, probes=10, roots=[])
    assert e.value == 0.0 and e.ci95 == (0.0, 0.0) and e.exact
    N = net.n_hidden_units
    for bad in (["1", "0"], ["01", "011"], ["0", "0"], ["012"], ["0" * (N + 1)]):
        with pytest.raises(ToolError, match="root"):
            estimate_regions(net, box, st, probes=10, roots=bad)


# ---- the CLI, beside a running count and after an interrupted one ---------------------------------------
def _run_dir(tmp_path, name=CLI_NET):
    run = tmp_path / "run"
    run.mkdir()
    save_net(catalogue_net(name).net(), run / "weights.dat")
    return run


def _listing(d):
    return sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in d.iterdir())


def _parse(stdout):
    lines = stdout.strip().splitlines()
    found = int(lines[0].split()[0])
    rem = next(x for x in lines if x.startswith("REMAINING ~"))
    tot = next(x for x in lines if x.startswith("TOTAL ~"))
    lo, hi = (float(v) for v in tot.split("[")[1].split("]")[0].split(","))
    return lines, found, rem, float(tot.split()[1][1:]), lo, hi


def test_cli_beside_a_running_count(tmp_path):
    """A count paused at a checkpoint (it is running): --remaining reads the checkpoint, prints the found, the
    remaining and total estimates (the interval holds the brute force's count at this seed) and the expected
    end at the count's rate, and writes nothing; the count is then killed."""
    run = _run_dir(tmp_path)
    truth = len(reference(catalogue_net(CLI_NET)))
    marker = tmp_path / "pause.json"
    proc = run_cli(CLI, "-w", run / "weights.dat", "-q", "--checkpoint-every", "1e-9",
                   env=pause_env(marker, f"patterns:{truth // 3}"), background=True)
    try:
        paused = wait_for_pause(proc, marker)
        ck = json.loads((run / f"checkpoint_{DOMAIN}.json").read_text())
        assert ck["patterns"] == paused["done"] and ck["patterns_at_start"] == 0 and ck["frontier"]
        before = _listing(run)
        r = run_cli(CLI, "-w", run / "weights.dat", "--remaining", "200", "--seed", "0", "-q")
        assert r.returncode == 0, r.stderr
        assert _listing(run) == before                       # nothing written beside the running count
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
    lines, found, rem, total, lo, hi = _parse(r.stdout)
    assert found == ck["patterns"] and f"{len(ck['frontier'])} subtrees left" in lines[0]
    assert "200 probes below the frontier" in rem
    assert lo <= truth <= hi and found < lo
    eta = [x for x in lines if x.startswith("at the count's rate since its start")]
    assert len(eta) == 1 and "regions/s" in eta[0] and "95% CI" in eta[0]


def test_cli_after_an_interrupted_count(tmp_path):
    """A count stopped by Ctrl-C leaves frontier_<domain>.json and an incomplete summary: --remaining reads them
    (no checkpoint, so no rate), and the total covers the brute force at this seed."""
    run = _run_dir(tmp_path)
    truth = len(reference(catalogue_net(CLI_NET)))
    marker = tmp_path / "pause.json"
    proc = run_cli(CLI, "-w", run / "weights.dat", "-q", "--checkpoint-every", "1e-9",
                   env=pause_env(marker, f"patterns:{truth // 2}"), background=True)
    wait_for_pause(proc, marker)
    os.kill(proc.pid, signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    summ = read_regions(run / f"regions_{DOMAIN}.json")
    assert summ["complete"] is False and (run / f"frontier_{DOMAIN}.json").exists()
    r = run_cli(CLI, "-w", run / "weights.dat", "--remaining", "200", "--seed", "0", "-q")
    assert r.returncode == 0, r.stderr
    lines, found, rem, total, lo, hi = _parse(r.stdout)
    assert found == summ["count"] and f"frontier_{DOMAIN}.json" in lines[0]
    assert lo <= truth <= hi
    assert not any(x.startswith("at the count's rate") for x in lines)


def test_cli_errors(tmp_path):
    """No count, a complete count, a checkpoint without frontier, another tol, bad values: one error line each,
    exit 2, nothing written."""
    run = _run_dir(tmp_path)
    w = run / "weights.dat"

    def refused(*args, match):
        before = _listing(run)
        r = run_cli(CLI, "-w", w, "-q", *args)
        lines = [x for x in r.stderr.strip().splitlines() if x]
        assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:"), (args, r.stderr)
        assert match in lines[0], (match, lines[0])
        assert _listing(run) == before
        return lines[0]

    refused("--remaining", "50", match="no incomplete lp count")
    refused("--remaining", "0", match="--remaining")
    refused("--remaining", "5", "--resume", match="--remaining")
    refused("--remaining", "5", "--estimate", "5", match="--remaining")
    net = catalogue_net(CLI_NET).net()
    write_checkpoint(run / f"checkpoint_{DOMAIN}.json",
                     {"format": "region-count-checkpoint", "weights_sha256": None, "tol": TOL, "domain": DOMAIN,
                      "layer_sizes": net.layer_sizes, "backend": "scip", "patterns": 3, "bytes": 40,
                      "frontier": None, "written": "2026-12-04T10:00:00.000"})
    refused("--remaining", "50", match="keeps no search frontier")
    refused("--remaining", "50", "--tol", "1e-5", match="--tol")
    (run / f"checkpoint_{DOMAIN}.json").unlink()
    r = run_cli(CLI, "-w", w, "-q", "--data-samples", "200")
    assert r.returncode == 0, r.stderr
    refused("--remaining", "50", match="is complete")


# ---- the progress bar of a running count: its total forecast ----------------------------------------------
def test_total_forecast_is_rate_limited_and_never_fails_the_count():
    from src.counting.knuth import TotalForecast

    s, net, box, st = setup("3-5-4-1_seed9_bias0.4")
    truth = reference(s)
    found, frontier = frontier_after(truth, len(truth) // 3)
    f = TotalForecast(net, box, st, TOL, every=0.0, seconds=30.0, probes=400)
    total = f(frontier, len(found))
    assert total is not None and 0.8 * len(truth) <= total <= 1.25 * len(truth)
    assert f(None, len(found)) is None                       # a MILP backend's checkpoint: no frontier
    assert f(["1", "0"], 3) is None and f.off                # a frontier it cannot use: off, no exception
    assert f(frontier, len(found)) is None
    later = TotalForecast(net, box, st, TOL, every=3600.0)
    assert later(frontier, len(found)) is None               # not due yet
    # probes that cannot reach every subtree of the frontier twice (a busy machine's 3 s): no total shown
    assert len(frontier) >= 2
    few = TotalForecast(net, box, st, TOL, every=0.0, seconds=30.0, probes=2 * len(frontier) - 1)
    assert few(frontier, len(found)) is None and not few.off
    enough = TotalForecast(net, box, st, TOL, every=0.0, seconds=30.0, probes=2 * len(frontier))
    assert enough(frontier, len(found)) is not None


def test_the_bar_of_a_count_shows_the_forecast_total(tmp_path, monkeypatch, capsys):
    """With forecasts due at every checkpoint, the count's bar gets an estimated total; the count is unchanged."""
    import src.counting.knuth as knuth
    from src.counting.driver import count_run
    from src.io.pattern_file import read_patterns

    monkeypatch.setattr(knuth, "FORECAST_EVERY", 0.0)
    run = _run_dir(tmp_path)
    summ = count_run(run / "weights.dat", progress=True, checkpoint_every=1e-9, data_samples=200)
    err = capsys.readouterr().err
    assert "total estimated" in err and "%|" in err
    truth = reference(catalogue_net(CLI_NET))
    assert summ["complete"] and summ["count"] == len(truth)
    assert as_set(read_patterns(run / f"activation_pattern_abhinav_{DOMAIN}.dat")) == truth
