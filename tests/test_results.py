"""The results table: rows and columns, missing files reported, huge sizes, run-id parsing, the trend judge."""
import csv
import io
import json

import pytest
from conftest import run_cli
from run_fixtures import SWEEP, write_run, write_sweep

from src.core.errors import ToolError
from src.report.table import (COLUMNS, collect_results, fmt_size, load_run, load_runs, log10_size, missing_report,
                              parse_runs, record_row, size_log10, two_hidden_sizes)
from src.report.trend import l1_trend, section_trend


def test_parse_runs():
    assert parse_runs("100-103") == [100, 101, 102, 103]
    assert parse_runs("5, 3,10-11,3") == [3, 5, 10, 11]
    for bad in ("", "a", "5-3", "1-2-3"):
        with pytest.raises(ToolError, match="--runs"):
            parse_runs(bad)


def test_table_rows_and_columns(tmp_path):
    models = tmp_path / "models"
    write_sweep(models, start=100, hidden=(6, 6), incomplete=(101,))
    res = collect_results(models, "100-111", tmp_path / "out")
    rows = list(csv.DictReader(io.StringIO(res["csv"].read_text())))
    assert [int(r["run"]) for r in rows] == list(range(100, 112))
    assert list(rows[0].keys()) == COLUMNS
    for r, (l1, adv, p) in zip(rows, SWEEP):
        # settings come from config.json
        assert float(r["l1"]) == l1 and r["adv"] == adv and float(r["dropout"]) == p
        assert r["arch"] == "mlp:6-6" and r["hidden_sizes"] == "6-6"
        cfg = json.loads((models / f"fcnn_run_{r['run']}" / "config.json").read_text())
        reg = json.loads((models / f"fcnn_run_{r['run']}" / "regions_input_0_1.json").read_text())
        met = json.loads((models / f"fcnn_run_{r['run']}" / "metrics.json").read_text())
        assert int(r["regions"]) == reg["count"]
        assert float(r["test_accuracy"]) == pytest.approx(met["test_accuracy"], abs=1e-4)
        assert cfg["l1"] == l1
        st = json.loads((models / f"fcnn_run_{r['run']}" / "stable_units_input_0_1.json").read_text())["counts"]
        assert r["stable_active"] == "-".join(str(c["active"]) for c in st)
        assert int(r["stable_total"]) == sum(c["active"] + c["inactive"] for c in st)
        assert r["two_hidden_verified"] == "yes" and r["compression_verified"] == "yes"
        assert float(r["two_hidden_all_params_log10"]) > 3
    assert rows[1]["regions_complete"] == "no" and "lower bound" in rows[1]["missing"]
    assert rows[0]["regions_complete"] == "yes" and rows[0]["missing"] == ""
    md = res["md"].read_text().splitlines()
    table = [ln for ln in md if ln.startswith("|")]
    assert len(table) == 2 + 12
    assert all(ln.count("|") == len(COLUMNS) + 1 for ln in table)


def test_run_missing_files_is_reported_not_crashed(tmp_path):
    models = tmp_path / "models"
    write_run(models, 1, 0.0, "none", 0.0)
    write_run(models, 2, 1e-3, "pgd", 0.3, files=("config", "metrics"))
    d3 = write_run(models, 3, 1e-3, "none", 0.0)
    (d3 / "regions_input_0_1.json").write_text("{not json")
    res = collect_results(models, "1-4", tmp_path / "out")
    rows = {r["run"]: r for r in res["rows"]}
    assert set(rows) == {1, 2, 3, 4}
    assert rows[1]["missing"] == ""
    assert "regions_input_0_1.json" in rows[2]["missing"] and "compressed_input_0_1.json" in rows[2]["missing"]
    assert rows[2]["regions"] == "" and rows[2]["adv"] == "pgd" and rows[2]["test_accuracy"] != ""
    assert "unreadable" in rows[3]["missing"] and rows[3]["regions"] == ""
    assert rows[4]["missing"] == "missing: <run directory>"
    report = missing_report(res["records"])
    assert [line.split()[1] for line in report] == ["2", "3", "4"]
    # and through the command line: exit 0, warnings on stderr
    r = run_cli("collect_results.py", "--models-dir", models, "--runs", "1-4", "--out", tmp_path / "cli", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning: run 2" in r.stderr and "warning: run 4" in r.stderr
    assert (tmp_path / "cli" / "results.csv").is_file()


def test_no_run_exists_is_an_error(tmp_path):
    r = run_cli("collect_results.py", "--models-dir", tmp_path, "--runs", "1-3", "--out", tmp_path / "o", timeout=120)
    assert r.returncode == 2 and "none of the runs" in r.stderr
    assert not (tmp_path / "o").exists()


def test_log10_sizes():
    assert log10_size(1000) == pytest.approx(3)
    assert log10_size(2 ** 400) == pytest.approx(400 * 0.30102999566398)
    assert log10_size(str(10 ** 500)) == pytest.approx(500)
    assert log10_size("1.5e3") == pytest.approx(3.176091259)
    assert log10_size({"log10": 123.4}) == 123.4
    assert log10_size("10^77.5") == 77.5
    assert log10_size(None) is None and log10_size("x") is None
    assert size_log10({"params_log10": 99.0, "params": None}, "params") == 99.0
    th = {"sizes": {"naive": {"layer_sizes": [784, 2 ** 300, 2 ** 300, 10], "params": 2 ** 310}}}
    s = two_hidden_sizes(th, "naive")
    assert s["hidden_log10"] == pytest.approx(301 * 0.30102999566398)
    assert s["params"] == 2 ** 310
    th = {"sizes": {"naive": {"layer_sizes_log10": [2.0, 100.0, 100.0, 1.0], "params_log10": 103.0}}}
    s = two_hidden_sizes(th, "naive")
    assert s["hidden_log10"] == pytest.approx(100 + 0.30103, abs=1e-4) and s["params_log10"] == 103.0
    assert fmt_size(log10_size(2 ** 400)) == "10^120.4"
    assert fmt_size(3.0, 1000) == "1000"


class _R:
    def __init__(self, l1, count, complete, group=("none", 0.0)):
        self.l1, self.region_count, self.regions_complete, self.group = l1, count, complete, group


def test_trend_judge_uses_lower_bounds_correctly():
    t = l1_trend([_R(0, 100, True), _R(1e-3, 50, True), _R(1e-2, 10, True)])
    assert (t.fewer, t.more, t.undetermined) == (3, 0, 0) and t.shows
    t = l1_trend([_R(0, 100, True), _R(1e-3, 150, True)])
    assert (t.fewer, t.more) == (0, 1) and not t.shows
    # an incomplete count at the stronger l1 that is below the weaker one proves nothing
    t = l1_trend([_R(0, 100, True), _R(1e-3, 50, False)])
    assert (t.fewer, t.more, t.undetermined) == (0, 0, 1) and not t.shows
    # an incomplete weaker-l1 count above a complete stronger one: fewer is established
    t = l1_trend([_R(0, 100, False), _R(1e-3, 50, True)])
    assert (t.fewer, t.undetermined) == (1, 0)
    # an incomplete stronger-l1 count already above a complete weaker one: more is established
    t = l1_trend([_R(0, 100, True), _R(1e-3, 150, False)])
    assert t.more == 1
    # pairs are only formed within a group
    t = l1_trend([_R(0, 100, True, ("none", 0.0)), _R(1e-3, 50, True, ("pgd", 0.0))])
    assert t.fewer + t.more + t.equal + t.undetermined == 0 and not t.shows
    assert "does NOT show" in t.summary()


def test_other_domain_reads_its_own_files(tmp_path):
    """--domain picks regions_/stable_units_/compressed_/two_hidden_*_<domain> files, incl. all_nodes_<domain>."""
    models = tmp_path / "models"
    d = write_run(models, 1, 0.0, "none", 0.0, files=("config", "metrics"))
    dom = "center_test0_width_0.01"
    (d / f"regions_{dom}.json").write_text(json.dumps({"count": 7, "complete": True}))
    (d / f"two_hidden_all_nodes_{dom}.json").write_text(json.dumps(
        {"built": False, "sizes": {"naive": {"layer_sizes": [784, 100, 50, 10], "params": 10 ** 30}}}))
    rec = load_runs(models, "1", domain=dom)[0]
    assert rec.region_count == 7 and rec.two_hidden_all is not None
    row = record_row(rec)
    assert row["regions"] == 7 and row["two_hidden_all_params_log10"] == 30.0
    assert f"two_hidden_all_nodes_{dom}.json" not in row["missing"]
    assert f"compressed_{dom}.json" in row["missing"]


# ---- exact sections (slice_I_J_K.json, segments.json) ------------------------------------
def test_section_columns_and_verdict(tmp_path):
    """Runs with slice/segments files get the section columns (from the files) and the verdict a line per
    measure; runs without them keep empty cells and are not reported missing."""
    import statistics

    from test_sections import write_section_files

    models = tmp_path / "models"
    write_sweep(models, start=100, hidden=(6, 6), incomplete=())
    for run in range(100, 108):
        write_section_files(models / f"fcnn_run_{run}")
    res = collect_results(models, "100-111", tmp_path / "out")
    rows = {int(r["run"]): r for r in csv.DictReader(io.StringIO(res["csv"].read_text()))}
    for run in range(100, 108):
        d = models / f"fcnn_run_{run}"
        sl = json.loads((d / "slice_0_1_2.json").read_text())
        seg = json.loads((d / "segments.json").read_text())["segments"]
        r = rows[run]
        assert r["slice_images"] == "0,1,2"
        assert int(r["slice_regions_in_box"]) == sl["regions_in_box"]
        assert int(r["slice_regions_in_view"]) == sl["regions_in_view"]
        assert int(r["segments"]) == len(seg) == 12
        assert float(r["segment_regions_median"]) == statistics.median(s["regions"] for s in seg)
        assert float(r["segment_regions_per_length_median"]) == pytest.approx(
            statistics.median(s["regions"] / s["length"] for s in seg), abs=1e-4)
        assert "slice" not in r["missing"] and "segments" not in r["missing"]
    for run in range(108, 112):
        assert rows[run]["slice_regions_in_box"] == "" and rows[run]["segments"] == ""
        assert rows[run]["missing"] == ""
    summary = res["trend"].summary()
    assert "Exact sections, regions in the box on the slice plane (8 runs)" in summary
    assert "Exact sections, median regions crossed per segment between test images (8 runs)" in summary
    assert "This sweep" in summary
    md = res["md"].read_text()
    assert "slice regions (box)" in md and "regions / segment (median)" in md
    table = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert all(ln.count("|") == len(COLUMNS) + 1 for ln in table)


def test_slice_file_choice_per_domain(tmp_path):
    d = write_run(tmp_path / "m", 1, 0.0, "none", 0.0, files=("config",))
    for name, n in (("slice_3_4_5", 30), ("slice_0_1_2", 12), ("slice_0_1_2_center_test0_width_0.1", 7)):
        (d / f"{name}.json").write_text(json.dumps({"regions_in_box": n, "regions_in_view": n + 1}))
    assert load_run(d).slice_regions == 12
    assert load_run(d, domain="center_test0_width_0.1").slice_regions == 7
    (d / "slice_0_1_2.json").unlink()
    assert load_run(d).slice_name == "slice_3_4_5"
    (d / "segments.json").write_text("{broken")
    rec = load_run(d)
    assert rec.segments is None and any("segments.json: unreadable" in p for p in rec.problems)


class _S(_R):
    def __init__(self, l1, slice_regions, seg_median, group=("none", 0.0), plane="slice_0_1_2"):
        super().__init__(l1, 1, True, group)
        self.slice_regions, self.segment_regions_median, self.slice_name = slice_regions, seg_median, plane
        self.segment_pairs_key = (0, 100)


def test_section_trend_pairs():
    t = section_trend([_S(0, 50, 9), _S(1e-3, 20, 5), _S(1e-2, 20, 6)], "x",
                              lambda r: r.slice_regions, lambda r: r.slice_name)
    assert (t.fewer, t.more, t.equal) == (2, 0, 1) and t.agrees and t.medians == {0: 50, 1e-3: 20, 1e-2: 20}
    # other planes or other groups are never compared
    t = section_trend([_S(0, 50, 9), _S(1e-3, 20, 5, plane="slice_3_4_5"), _S(1e-3, 10, 5, ("pgd", 0.0))],
                              "x", lambda r: r.slice_regions, lambda r: r.slice_name)
    assert t.fewer + t.more + t.equal == 0 and not t.agrees
    rep = l1_trend([_S(0, 50, 9), _S(1e-3, 60, 4)])
    lines = rep.summary().splitlines()
    assert any("slice plane" in ln and "does NOT agree" in ln for ln in lines)
    assert any("per segment" in ln and "agrees with the trend" in ln for ln in lines)


def _add_global_answers(run_dir, estimate=(5000.0, 3000.0, 9000.0), mipbound=(10.0, 0.96)):
    """The records of `--estimate` and `--mipbound` added to a run's regions_input_0_1.json."""
    p = run_dir / "regions_input_0_1.json"
    reg = json.loads(p.read_text())
    reg["estimate"] = {"method": "knuth_stratified", "value": estimate[0], "ci95": [estimate[1], estimate[2]],
                       "probes": 100, "seconds": 1.5}
    reg["mipbound"] = {"log2_lower": mipbound[0], "probability": mipbound[1], "xor_size": 4, "trials": 5}
    p.write_text(json.dumps(reg))


def test_estimate_and_mipbound_in_the_table_and_the_regions_figure(tmp_path, monkeypatch):
    """An incomplete count's estimate (with its interval) and MIPBound reach the row, the Markdown table and
    the regions figure, whose axis then spans the interval."""
    from src.report import figures

    drawn = []
    save = figures.save
    monkeypatch.setattr(figures, "save", lambda fig, *a, **k: (drawn.append(fig.axes[0]), save(fig, *a, **k))[1])

    models = tmp_path / "models"
    write_sweep(models, start=100, hidden=(6, 6), incomplete=(101,))
    _add_global_answers(models / "fcnn_run_101", estimate=(123456.7, 45678.9, 2.5e6))
    rec = load_run(models / "fcnn_run_101")
    row = record_row(rec)
    assert rec.regions_estimate == (123456.7, 45678.9, 2.5e6) and rec.regions_mipbound == (10.0, 0.96)
    assert row["regions_estimate"] == 123500 and row["regions_estimate_ci95"] == "45680-2500000"
    assert row["regions_mipbound"] == ">= 2^10 (p 0.96)"
    assert record_row(load_run(models / "fcnn_run_100"))["regions_estimate"] == ""
    res = collect_results(models, "100-111", tmp_path / "out")
    md = res["md"].read_text()
    assert "estimate 95% CI" in md and "45680-2500000" in md and ">= 2^10 (p 0.96)" in md
    recs = load_runs(models, "100-111")
    figures.plot_regions_vs_l1(recs, tmp_path / "fig" / "regions_vs_l1", formats=("png",))
    assert (tmp_path / "fig" / "regions_vs_l1.png").stat().st_size > 5000
    (ax,) = drawn
    assert ax.get_ylim()[1] >= 2.5e6
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any("estimate" in t for t in labels) and any("MIPBound" in t for t in labels)
