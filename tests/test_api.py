"""The public API (`from src import ...`): plain arguments, in memory, the same answers as the scripts."""
import numpy as np
import pytest

from bruteforce import brute_force_patterns
from conftest import random_net
from src import analyse_stability, compress_net, count_regions, load_net, transform_net, verify_equivalence
from src.domain import Box
from src.ioutils import ToolError
from src.regions import count_regions as count_to_files


@pytest.fixture(scope="module")
def net():
    return random_net([3, 5, 4, 2], seed=4, bias_scale=0.6)


def test_count_regions_in_memory_equals_brute_force_and_the_file_driver(net, tmp_path):
    box = Box.uniform(3)
    res = count_regions(net, box, backend="lp")
    assert res.complete and res.backend == "lp"
    assert {tuple(int(v) for v in p) for p in res.patterns} == brute_force_patterns(net, box)
    net.save(tmp_path / "weights.dat")
    summary = count_to_files(tmp_path / "weights.dat", box, backend="lp", progress=False)
    assert summary["count"] == res.count
    milp = count_regions(net, box, backend="milp")
    assert np.array_equal(milp.patterns, res.patterns)
    assert count_regions(net, box, backend="lp", workers=1).count == res.count     # backend options pass through
    with pytest.raises(ToolError, match="no option"):
        count_regions(net, box, backend="lp", colour="red")


def test_load_net_and_stability(net, tmp_path):
    net.save(tmp_path / "w.dat")
    back = load_net(tmp_path / "w.dat")
    assert all(np.array_equal(a, b) for a, b in zip(back.weights, net.weights))
    st = analyse_stability(back, Box.uniform(3))
    assert len(st.fixed_bits()) == net.n_hidden_units


def test_transform_then_verify(net):
    box = Box.uniform(3)
    pats = count_regions(net, box).patterns
    two, report = transform_net(net, pats, box)
    assert report["patterns"] == len(pats) and report["band_width"] > 0
    rec = verify_equivalence(net, two, box, points=3000, rtol=1e-6, band_width=report["band_width"])
    assert rec["ok"] and rec["points"]["mismatch_outside_band"] == 0
    # an incomplete list is not equivalent: drop the most common pattern of the box
    X = box.sample(3000, np.random.default_rng(0))
    seen, counts = np.unique(net.patterns(X), axis=0, return_counts=True)
    keep = [p for p in pats if not np.array_equal(p, seen[counts.argmax()])]
    two_bad, rep_bad = transform_net(net, np.array(keep), box)
    assert not verify_equivalence(net, two_bad, box, points=3000, rtol=1e-6, band_width=rep_bad["band_width"])["ok"]


def test_compress_net_is_lossless(net):
    box = Box.uniform(3, -0.2, 0.3)
    comp = compress_net(net, box)
    assert comp.net.n_params <= net.n_params
    assert verify_equivalence(net, comp.net, box, points=5000, rtol=1e-9)["ok"]


def test_domain_size_is_checked(net):
    with pytest.raises(ToolError, match="2 inputs"):
        count_regions(net, Box.uniform(2))
