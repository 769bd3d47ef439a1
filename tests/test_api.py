"""The public API (`from src import Analysis, ...`): in memory, the same answers as the scripts."""
import json

import numpy as np
import pytest
from bruteforce import brute_force_patterns
from conftest import random_net

import src
from src import Analysis, Box, ReluNet, ToolError, load_net
from src.counting.driver import count_run
from src.stability.analyse import analyse_stability
from src.io.weights_file import save_net


@pytest.fixture(scope="module")
def net():
    return random_net([3, 5, 4, 2], seed=4, bias_scale=0.6)


def test_public_names_are_exported():
    for name in src.__all__:
        assert getattr(src, name) is not None
    with pytest.raises(AttributeError):
        src.no_such_name


def test_count_regions_in_memory_equals_brute_force_and_the_file_driver(net, tmp_path):
    box = Box.uniform(3)
    a = Analysis(net, box)
    res = a.count_regions(backend="lp")
    assert res.complete and res.backend == "lp"
    assert {tuple(int(v) for v in p) for p in res.patterns} == brute_force_patterns(net, box)
    assert res.bounds["lower"]["value"] == res.bounds["upper"]["value"] == str(res.count)
    save_net(net, tmp_path / "weights.dat")
    summary = count_run(tmp_path / "weights.dat", box, backend="lp", progress=False)
    assert summary["count"] == res.count
    milp = a.count_regions(backend="milp")
    assert np.array_equal(milp.patterns, res.patterns)
    assert a.count_regions(backend="lp", workers=1).count == res.count     # backend options pass through
    with pytest.raises(ToolError, match="no option"):
        a.count_regions(backend="lp", colour="red")
    rec = json.loads(json.dumps(res.to_json()))
    assert rec["count"] == res.count and len(rec["patterns"]) == res.count and rec["complete"] is True
    assert f"{res.count} regions (complete)" in res.summary()


def test_stability_is_computed_once_and_shared(net, monkeypatch):
    import src.analysis as api

    calls = []
    real = api.analyse_stability
    monkeypatch.setattr(api, "analyse_stability", lambda *a, **k: calls.append(1) or real(*a, **k))
    a = Analysis(net)
    st = a.stability()
    a.count_regions()
    a.transform(a.count_regions().patterns, points=200)
    assert a.stability() is st and len(calls) == 1
    exact = a.stability(exact=True)           # only the exact tier runs, on the cached bounds
    assert exact.exact and len(calls) == 1
    assert a.compress().verification["ok"] and len(calls) == 1


def test_load_net_and_stability(net, tmp_path):
    save_net(net, tmp_path / "w.dat")
    back = load_net(tmp_path / "w.dat")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))
    st = analyse_stability(back, Box.uniform(3))
    assert len(st.fixed_bits()) == net.n_hidden_units
    a = Analysis.load(tmp_path / "w.dat")
    assert isinstance(a.net, ReluNet) and a.box.name == "input_0_1"


def test_transform_then_verify(net):
    box = Box.uniform(3)
    a = Analysis(net, box)
    pats = a.count_regions().patterns
    t = a.transform(pats, points=3000)
    assert t.patterns == len(pats) and t.band_width > 0
    assert t.verification["ok"] and t.sizes["patterns"] <= len(pats)
    rec = a.verify(t.net, points=3000, rtol=1e-6, band_width=t.band_width)
    assert rec["ok"] and rec["points"]["mismatch_outside_band"] == 0
    assert json.loads(json.dumps(t.to_json()))["verification"]["ok"] is True and "verified" in t.summary()
    # an incomplete list is not equivalent: drop the most common pattern of the box
    X = box.sample(3000, np.random.default_rng(0))
    seen, counts = np.unique(net.patterns(X), axis=0, return_counts=True)
    keep = [p for p in pats if not np.array_equal(p, seen[counts.argmax()])]
    bad = a.transform(np.array(keep), points=3000)
    assert not bad.verification["ok"]
    assert not a.verify(bad.net, points=3000, rtol=1e-6, band_width=bad.band_width)["ok"]


def test_compress_net_is_lossless(net):
    box = Box.uniform(3, -0.2, 0.3)
    a = Analysis(net, box)
    comp = a.compress()
    assert comp.net.n_params <= net.n_params
    assert a.verify(comp.net, points=5000, rtol=1e-9)["ok"] and comp.verification["ok"]
    assert json.loads(json.dumps(comp.to_json()))["params_after"] == comp.net.n_params
    assert "verified" in comp.summary()


@pytest.mark.slow
def test_sections_and_local_counts_agree_with_brute_force(net):
    a = Analysis(net)
    rng = np.random.default_rng(1)
    P = rng.random((3, 3))
    sec = a.plane_section(P)
    assert sec.regions_in_box >= 1
    segs = a.segments(P[:2], P[1:])
    assert len(segs) == 2 and all(s.regions >= 1 for s in segs)
    local = a.local_counts(P[:2], [0.05, 0.2])
    assert len(local) == 4 and all(r.complete for r in local)
    for r in local:
        assert {tuple(int(v) for v in p) for p in r.patterns} == brute_force_patterns(net, r.box)


def test_domain_size_is_checked(net):
    with pytest.raises(ToolError, match="2 inputs"):
        Analysis(net, Box.uniform(2))
    with pytest.raises(TypeError, match="ReluNet"):
        Analysis("weights.dat")
