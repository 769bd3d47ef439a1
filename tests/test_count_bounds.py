"""Where a count cannot finish, the driver answers with what is known: certified lower bound, upper
bounds (Theorem 1, 2^unstable) and data patterns; the time limit bounds the whole command."""
import json
import time

import numpy as np
import pytest
from conftest import brute_force_patterns, nets, random_net, reference, run_cli

from src.core.box import Box
from src.counting.driver import count_run
from src.io.weights_file import save_net


@pytest.mark.parametrize("net_spec", nets("count_bounds"), ids=str)
def test_data_le_lower_le_count_le_upper(tmp_path, net_spec):
    net = net_spec.net()
    save_net(net, tmp_path / "weights.dat")
    s = count_run(tmp_path / "weights.dat", backend="lp", progress=False, data_samples=20000)
    ref = len(reference(net_spec))
    up = s["upper_bound"]
    assert s["complete"] and s["count"] == ref == s["lower_bound"]
    assert s["data_patterns"]["union"] <= s["lower_bound"] <= s["count"] <= int(up["upper_bound"]["value"])
    assert int(up["upper_bound"]["value"]) <= int(up["theorem1"]["value"])
    assert int(up["two_pow_unstable"]["value"]) == 2 ** sum(c["unstable"] for c in s["stable_units"])
    assert abs(up["theorem1"]["log10"] - np.log10(int(up["theorem1"]["value"]))) < 1e-9
    assert [d["source"] for d in s["data_patterns"]["sources"]] == ["samples"]


def test_an_incomplete_count_reports_bounds(tmp_path):
    # 80 units in 8 dimensions: more than 66,000 regions (found in 20 s, incomplete), so the 2 s limit stops the
    # count on any machine (a 5-12-12-1 net under 0.3 s finished on a fast one); 2 s leave the data pass a chunk
    net = random_net([8, 40, 40, 1], 3)
    save_net(net, tmp_path / "weights.dat")
    s = count_run(tmp_path / "weights.dat", backend="lp", progress=False, time_limit=2.0, checkpoint_every=0)
    assert not s["complete"]
    assert s["count"] <= s["lower_bound"] <= int(s["upper_bound"]["upper_bound"]["value"])
    assert s["lower_bound"] >= s["data_patterns"]["union"] > 0


@pytest.mark.slow
def test_time_limit_bounds_the_whole_command_on_a_784_100x4_net(tmp_path):
    """fcnn4b-sized (784-100-100-100-100-10): --time-limit 5 ends well within 30 s, with bounds."""
    net = random_net([784, 100, 100, 100, 100, 10], 0, bias_scale=0.1)
    for w in net.weights:
        w *= 0.05
    save_net(net, tmp_path / "weights.dat")
    t0 = time.monotonic()
    r = run_cli("count_linear_regions.py", "-w", tmp_path / "weights.dat", "-q", "--time-limit", "5", timeout=120)
    wall = time.monotonic() - t0
    assert r.returncode == 0, r.stderr
    assert wall < 30, wall
    s = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    assert s["complete"] is False and s["lower_bound"] >= s["count"]
    assert s["upper_bound"]["upper_bound"]["log10"] > 2
    assert "bounds:" in r.stdout.strip().splitlines()[-1]


# ---- exact local counts ------------------------------------------------------------------------------
@pytest.mark.slow
def test_local_sweep_equals_brute_force_on_tiny_nets(tmp_path):
    from src.counting.local_sweep import count_sweep

    net = random_net([2, 5, 5, 1], 5, bias_scale=0.8)
    save_net(net, tmp_path / "weights.dat")
    rng = np.random.default_rng(0)
    centers = [("c%d" % k, rng.random(2)) for k in range(3)]
    domains = [(name, w, Box.around(c, w, name)) for name, c in centers for w in (0.05, 0.2)]
    rows, paths = count_sweep(tmp_path / "weights.dat", domains, net=net, progress=False, backend="lp")
    for (name, w, box), row in zip(domains, rows):
        assert row["complete"] and row["count"] == len(brute_force_patterns(net, box)), (name, w)
    assert {p.suffix for p in paths} == {".json", ".csv", ".md"}
    table = json.loads(paths[0].read_text())
    assert [s["width"] for s in table["summary"]] == [0.05, 0.2]
    assert table["summary"][0]["median"] == float(np.median([r["count"] for r in rows if r["width"] == 0.05]))
    assert not list(tmp_path.glob("activation_pattern_*"))            # no per-domain files without save_each


@pytest.mark.slow
def test_cli_local_sweep_around_test_images(tmp_path):
    net = random_net([784, 8, 8, 10], 1, bias_scale=0.3)
    save_net(net, tmp_path / "weights.dat")
    r = run_cli("count_linear_regions.py", "-w", tmp_path / "weights.dat", "-q", "--center-test-index", "0:3",
                "--width", "0.005,0.02", "--save-each", "--data-samples", "2000", timeout=300)
    assert r.returncode == 0, r.stderr
    table = json.loads((tmp_path / "regions_sweep_test0_to_test2_width_0.005_0.02.json").read_text())
    assert len(table["rows"]) == 6 and all(row["complete"] for row in table["rows"])
    for row in table["rows"]:
        s = json.loads((tmp_path / f"regions_{row['domain']}.json").read_text())
        assert s["count"] == row["count"] >= 1
    assert "| width |" in r.stdout


@pytest.mark.slow
def test_results_table_figure_and_verdict_use_bounds_and_local_counts(tmp_path):
    """Per run: bounds of an incomplete count and the local counts' median / spread; the verdict and the
    local-regions figure are computed from the local counts."""
    from run_fixtures import write_run

    from src.counting.local_sweep import count_sweep
    from src.report.figures import draw
    from src.report.table import collect_rows, load_runs
    from src.report.trend import l1_trend

    models = tmp_path / "models"
    for k, l1 in enumerate((0.0, 1e-3)):
        rid = 10 + k
        write_run(models, rid, l1, "none", 0.0, hidden=(5, 5), files=("config", "metrics"), n0=2)
        d = models / f"fcnn_run_{rid}"
        net = random_net([2, 5, 5, 1], k, bias_scale=0.8)
        save_net(net, d / "weights.dat")
        count_run(d / "weights.dat", backend="lp", progress=False, time_limit=0.01 if k == 0 else None,
                      data_samples=500)
        centers = [("c%d" % j, np.random.default_rng(j).random(2)) for j in range(4)]
        count_sweep(d / "weights.dat", [(n, 0.1, Box.around(c, 0.1, n)) for n, c in centers], net=net,
                    progress=False, backend="lp", data_samples=500)
    recs = load_runs(models, "10-11")
    rows = collect_rows(recs)
    for rec, row in zip(recs, rows):
        counts = [r["count"] for r in rec.local["rows"]]
        assert row["local_boxes"] == 4 and row["local_median"] == float(np.median(counts))
        assert row["regions_lower"] == rec.regions["lower_bound"] >= rec.region_count
    verdict = l1_trend(recs).summary()
    assert "Exact local counts, median region count in the local boxes" in verdict
    paths = draw("local_regions", models, "10-11", out_dir=tmp_path / "out")
    assert any(p.suffix == ".png" and p.stat().st_size > 1000 for p in paths)
