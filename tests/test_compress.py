"""Compression by stable units: hand-built nets with known answers, random tiny nets against an
independent exact oracle (one LP per linear region of the earlier layers), and the CLI."""
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import ROOT, random_net
from scipy.optimize import linprog

from src.compress.lossless import active_basis, compress
from src.compress.run import compress_on_domain, stability_on, verify
from src.core.affine import pattern_affine_maps
from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.io.domains import parse_index_spec, parse_widths
from src.io.readers import load_net
from src.stability.exact import exact_stability_per_unit
from src.stability.record import Stability
from src.io.weights_file import save_net

TOL = 1e-6


def stab(net, pattern_per_layer):
    """A Stability from per-layer strings over 'a' (active), 'i' (inactive), 'u' (unstable)."""
    lo, up = [], []
    for s in pattern_per_layer:
        lo.append(np.array([1.0 if c == "a" else -1.0 for c in s]))
        up.append(np.array([-1.0 if c == "i" else 1.0 for c in s]))
    return Stability(lo, up, tol=TOL)


def assert_equal_on(net, cnet, box, n=4000, seed=0, rtol=1e-9):
    x = box.sample(n, np.random.default_rng(seed))
    a, b = net.forward(x), cnet.forward(x)
    assert np.all(np.abs(a - b) <= rtol * np.maximum(1.0, np.abs(a))), np.abs(a - b).max()


# ---- exact oracle, independent of src.stability --------------------------------------------------
def exact_ranges(net, box):
    """Exact [min, max] of every hidden pre-activation over the box: for every pattern of the
    earlier layers (closed regions g >= 0 / g <= 0), one LP per unit and direction."""
    lows, ups = [], []
    sizes = net.hidden_sizes
    for l, n_l in enumerate(sizes):
        lo, up = np.full(n_l, np.inf), np.full(n_l, -np.inf)
        n_before = sum(sizes[:l])
        for bits in itertools.product((0, 1), repeat=n_before):
            full = np.array(list(bits) + [0] * (net.n_hidden_units - n_before))
            maps, _ = pattern_affine_maps(net, full)
            if l:
                G = np.vstack([a for a, _ in maps[:l]])
                c = np.concatenate([b for _, b in maps[:l]])
                sign = np.where(np.array(bits) > 0, 1.0, -1.0)
                A_ub, b_ub = -sign[:, None] * G, sign * c          # sign*(G x + c) >= 0
            else:
                A_ub, b_ub = None, None
            A, c_l = maps[l]
            bnds = list(zip(box.lo, box.hi))
            for j in range(n_l):
                for direction in (1.0, -1.0):
                    r = linprog(direction * A[j], A_ub=A_ub, b_ub=b_ub, bounds=bnds, method="highs")
                    if r.status == 2:   # this region is empty
                        break
                    assert r.status == 0
                    v = direction * r.fun + c_l[j]
                    if direction > 0:
                        lo[j] = min(lo[j], v)
                    else:
                        up[j] = max(up[j], v)
                else:
                    continue
                break
        lows.append(lo)
        ups.append(up)
    return Stability(lows, ups, tol=TOL)


# ---- active_basis ------------------------------------------------------------------------------
def test_active_basis_duplicates_and_combinations():
    r = np.array([[1.0, 1, 0], [1, 1, 0], [0, 1, 1], [2, 3, 1], [0, 0, 0]])
    B, F, alpha = active_basis(r)
    assert len(B) == 2 and len(F) == 3 and sorted(np.concatenate([B, F]).tolist()) == list(range(5))
    np.testing.assert_allclose(alpha @ r[B], r[F], atol=1e-12)


def test_active_basis_full_rank_and_empty():
    r = np.random.default_rng(0).normal(size=(4, 6))
    B, F, _ = active_basis(r)
    assert B.tolist() == [0, 1, 2, 3] and F.size == 0
    B, F, alpha = active_basis(np.zeros((0, 3)))
    assert B.size == 0 and F.size == 0
    B, F, alpha = active_basis(np.zeros((2, 3)))
    assert B.size == 0 and F.tolist() == [0, 1] and alpha.shape == (2, 0)


def test_active_basis_near_dependence_is_not_folded():
    r = np.array([[1.0, 0.0], [1.0, 1e-6]])   # independent well above the 1e-9 tolerance
    B, F, _ = active_basis(r)
    assert B.tolist() == [0, 1] and F.size == 0


# ---- hand-built nets ---------------------------------------------------------------------------
def handbuilt():
    """3 inputs on [0,1]^3; layer 1 (6 units): u0 active, u1 = u0's row (bias 2) active,
    u2 active independent, u3 = 2*u0 + u2 rows active, u4 unstable, u5 inactive; layer 2 (3 units)
    unstable; output 2."""
    W1 = np.array([[1.0, 1, 0], [1, 1, 0], [0, 1, 1], [2, 3, 1], [1, -1, 0], [-1, -1, -1]])
    b1 = np.array([0.5, 2.0, 1.0, 0.1, 0.0, -0.5])
    rng = np.random.default_rng(3)
    W2 = rng.normal(size=(3, 6))
    b2 = np.array([0.3, -0.2, 0.1])
    W3 = rng.normal(size=(2, 3))
    b3 = rng.normal(size=2)
    return ReluNet([W1, W2, W3], [b1, b2, b3])


def test_handbuilt_inactive_and_folded_units():
    net = handbuilt()
    box = Box.uniform(3)
    c = compress(net, stab(net, ["aaaaui", "uuu"]))
    assert c.units_before == [6, 3] and c.units_after == [3, 3]
    assert c.removed == {"inactive": 1, "folded_active": 2, "merged_active": 0, "collapsed_layers": 0}
    assert c.net.layer_sizes == [3, 3, 3, 2]
    assert 4 in c.kept[0].tolist() and 5 not in c.kept[0].tolist()
    assert c.params_after == 3 * 3 + 3 + 3 * 3 + 3 + 2 * 3 + 2
    assert_equal_on(net, c.net, box)


def test_handbuilt_stability_is_what_the_design_says():
    net = handbuilt()
    ex = exact_ranges(net, Box.uniform(3))
    assert [a.tolist() for a in ex.active][0] == [True] * 4 + [False, False]
    assert [i.tolist() for i in ex.inactive][0] == [False] * 5 + [True]


def test_inactive_only():
    W1 = np.array([[1.0, 2.0], [1.0, -1.0], [-1.0, 1.0]])
    b1 = np.array([-100.0, 0.0, 0.0])
    net = ReluNet([W1, np.array([[1.0, 2.0, 3.0]])], [b1, np.array([0.5])])
    st = stability_on(net, Box.uniform(2))
    assert st.inactive[0].tolist() == [True, False, False]
    c = compress(net, st)
    assert c.net.layer_sizes == [2, 2, 1]
    np.testing.assert_array_equal(c.net.weights[0], W1[1:])
    np.testing.assert_array_equal(c.net.weights[1], [[2.0, 3.0]])
    assert_equal_on(net, c.net, Box.uniform(2))


def test_fully_stable_layer_is_merged():
    rng = np.random.default_rng(1)
    W1 = np.array([[1.0, 2.0], [0.5, 0.5], [-1.0, -1.0]])   # active, active, inactive on [0,1]^2
    b1 = np.array([1.0, 0.2, -0.1])
    W2 = np.array([[1.0, -3.0, 5.0], [-1.0, 3.0, 5.0]])      # g = +-(x2 - x1)/2: unstable
    b2 = np.array([-0.4, 0.4])
    W3, b3 = rng.normal(size=(2, 2)), rng.normal(size=2)
    net = ReluNet([W1, W2, W3], [b1, b2, b3])
    box = Box.uniform(2)
    st = stability_on(net, box)
    assert st.active[0].tolist() == [True, True, False] and st.inactive[0].tolist() == [False, False, True]
    assert st.unstable[1].all()
    c = compress(net, st)
    assert c.collapsed == [1] and c.units_after == [0, 2]
    assert c.net.layer_sizes == [2, 2, 2]
    np.testing.assert_allclose(c.net.weights[0], W2[:, :2] @ W1[:2], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.net.biases[0], W2[:, :2] @ b1[:2] + b2, rtol=1e-12, atol=1e-12)
    assert c.removed == {"inactive": 1, "folded_active": 0, "merged_active": 2, "collapsed_layers": 1}
    assert_equal_on(net, c.net, box)


def test_two_consecutive_stable_layers_then_unstable():
    W1 = np.array([[1.0, 1.0], [2.0, 0.0]]); b1 = np.array([1.0, 1.0])      # active
    W2 = np.array([[1.0, 1.0], [-1.0, -1.0]]); b2 = np.array([0.5, -0.1])   # active, inactive
    W3 = np.array([[1.0, 0.0], [-1.0, 0.0], [0.2, 0.0]]); b3 = np.array([-4.0, 4.0, 0.0])  # u, u, active
    W4 = np.array([[1.0, 2.0, 3.0]]); b4 = np.array([0.1])
    net = ReluNet([W1, W2, W3, W4], [b1, b2, b3, b4])
    box = Box.uniform(2)
    st = stability_on(net, box)
    c = compress(net, st)
    assert c.collapsed == [1, 2] and c.units_after == [0, 0, 3]
    assert c.net.layer_sizes == [2, 3, 1]
    assert_equal_on(net, c.net, box)


def test_all_layers_stable_gives_affine_net():
    W1 = np.array([[1.0, 2.0], [1.0, 1.0], [-3.0, -1.0]]); b1 = np.array([0.5, 0.5, -0.2])
    W2 = np.array([[1.0, 0.0, 4.0], [1.0, 1.0, 0.0]]); b2 = np.array([0.1, 0.2])
    W3 = np.array([[1.0, -1.0], [0.5, 2.0]]); b3 = np.array([0.0, 1.0])
    net = ReluNet([W1, W2, W3], [b1, b2, b3])
    box = Box.uniform(2)
    c = compress(net, stability_on(net, box))
    assert c.is_affine and c.net.layer_sizes == [2, 2] and c.units_after == [0, 0]
    A = W3 @ W2[:, :2] @ W1[:2]
    np.testing.assert_allclose(c.net.weights[0], A, rtol=1e-12, atol=1e-12)
    assert_equal_on(net, c.net, box)
    # the affine net is exactly the network's affine map on the domain's single region
    _, (F, e) = pattern_affine_maps(net, [1, 1, 0, 1, 1])
    np.testing.assert_allclose(c.net.weights[0], F, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(c.net.biases[0], e, rtol=1e-12, atol=1e-12)


def test_folding_into_a_layer_whose_basis_shrinks_by_previous_removals():
    # layer 1 has 2 unstable units, layer 2 has 4 active units over a 2-dim input: 2 fold.
    W1 = np.array([[1.0, -1.0], [-1.0, 1.0]]); b1 = np.array([0.0, 0.0])
    W2 = np.array([[1.0, 1.0], [2.0, 2.0], [1.0, 3.0], [3.0, 1.0]]); b2 = np.array([1.0, 0.5, 0.2, 2.0])
    W3 = np.array([[1.0, 0.0, 0.0, -1.0], [0.5, 0.5, 0.5, 0.5]]); b3 = np.array([0.0, 0.0])
    net = ReluNet([W1, W2, W3], [b1, b2, b3])
    box = Box.uniform(2, -1.0, 1.0)
    st = stability_on(net, box)
    assert st.unstable[0].all() and st.active[1].all()
    c = compress(net, st)           # layer 2 is all active, hence merged
    assert c.collapsed == [2] and c.net.layer_sizes == [2, 2, 2]
    assert_equal_on(net, c.net, box)
    # with one unit of layer 2 declared unstable (sound but loose), the others fold
    st2 = Stability([st.lower[0], np.array([1.0, 1.0, 1.0, -1.0])], [st.upper[0], np.ones(4)], tol=TOL)
    c2 = compress(net, st2)
    assert c2.units_after == [2, 3] and c2.removed["folded_active"] == 1
    assert_equal_on(net, c2.net, box)


# ---- random tiny nets against the exact oracle ---------------------------------------------------
@pytest.mark.parametrize("seed", range(6))
def test_random_nets_stability_matches_exact_oracle_and_compression_is_lossless(seed):
    sizes = [[2, 4, 4, 2], [3, 5, 3, 2], [2, 3, 3, 3, 2]][seed % 3]
    net = random_net(sizes, seed=seed, bias_scale=1.5)
    box = Box.uniform(net.n_inputs)
    st = stability_on(net, box, tol=TOL, exact=True)
    ex = exact_ranges(net, box)
    for l in range(net.n_hidden_layers):
        np.testing.assert_array_equal(st.active[l], ex.active[l], err_msg=f"layer {l + 1} active")
        np.testing.assert_array_equal(st.inactive[l], ex.inactive[l], err_msg=f"layer {l + 1} inactive")
    ref = exact_stability_per_unit(net, box, tol=TOL)      # one exact MILP per unit (src.stability)
    assert st.exact and ref.exact
    np.testing.assert_array_equal(st.fixed_bits(), ref.fixed_bits())
    c = compress(net, st)
    assert_equal_on(net, c.net, box, seed=seed)
    # compressing with the oracle's stability gives the same shapes
    assert compress(net, ex).net.layer_sizes == c.net.layer_sizes


@pytest.mark.parametrize("seed", range(8))
def test_local_box_removes_at_least_as_many_units(seed):
    net = random_net([3, 6, 6, 2], seed=100 + seed, bias_scale=1.0)
    whole = Box.uniform(3)
    rng = np.random.default_rng(seed)
    local = Box.around(rng.random(3), 0.1, "pt")
    st_w = stability_on(net, whole, exact=True)
    st_l = stability_on(net, local, exact=True)
    for l in range(2):       # stable on the whole box => stable on the sub-box, same kind
        assert np.all(st_l.active[l] >= st_w.active[l]) and np.all(st_l.inactive[l] >= st_w.inactive[l])
    c_w, c_l = compress(net, st_w), compress(net, st_l)
    assert sum(c_l.units_after) <= sum(c_w.units_after)
    assert len(c_l.collapsed) >= len(c_w.collapsed)
    assert_equal_on(net, c_w.net, whole)
    assert_equal_on(net, c_l.net, local)


def test_compress_on_domain_verifies_and_catches_a_wrong_stability():
    net = random_net([2, 5, 4, 2], seed=7)
    box = Box.uniform(2)
    st, c, times, ver = compress_on_domain(net, box, verify_points=500)
    assert ver["passed"] and ver["points"] == 502 and ver["max_rel_error"] <= 1e-9
    assert set(times) == {"stability", "compression", "verification", "total"}
    # claim every unit inactive: the "compressed" net is constant and must fail verification
    bogus = Stability([-np.ones(5), -np.ones(4)], [-np.ones(5), -np.ones(4)], tol=TOL)
    v = verify(net, compress(net, bogus).net, box, points=500)
    assert not v["passed"] and v["failures"]


def test_verify_reports_test_set_accuracy():
    net = random_net([3, 4, 2], seed=2)
    rng = np.random.default_rng(0)
    x = rng.random((50, 3))
    y = net.predict(x)
    v = verify(net, net.copy(), Box.uniform(3), points=10, test_set=(x, y))
    assert v["passed"] and v["test_accuracy_original"] == v["test_accuracy_compressed"] == 1.0
    other = ReluNet(net.weights[:-1] + [net.weights[-1] * -1], net.biases[:-1] + [net.biases[-1] * -1])
    v = verify(net, other, Box.uniform(3), points=10, test_set=(x, y))
    assert not v["passed"]



def test_verify_writes_the_one_record_of_src_core_compare():
    """Compression decides by the rule of src.core.compare (no band) and keeps its summary keys."""
    from src.core.compare import RULE, compare_nets

    net = random_net([3, 4, 2], seed=2)
    box = Box.uniform(3)
    x = np.random.default_rng(0).random((50, 3))
    v = verify(net, net.copy(), box, points=100, test_set=(x, net.predict(x)))
    assert v["criterion"] == RULE and v["band_width"] == 0.0 and v["ok"] is v["passed"] is True
    assert v["uniform"]["points"] == v["points"] == 102 and v["uniform"]["ok"]
    assert v["test_set"] == compare_nets(net, net.copy(), x, rtol=v["rtol"], labels=net.predict(x))
    assert v["test_set"]["accuracy_a"] == v["test_accuracy_original"] == v["test_accuracy_compressed"] == 1.0
    shifted = ReluNet(net.weights, net.biases[:-1] + [net.biases[-1] + 1e-6])     # every output off by 1e-6
    v = verify(net, shifted, box, points=100, rtol=1e-9)
    assert not v["passed"] and v["uniform"]["mismatch_outside_band"] == 102 and v["uniform"]["in_band"] == 0
    assert v["max_abs_error"] == pytest.approx(1e-6) and "on 102 points of the domain" in v["failures"][0]

def test_compression_rejects_mismatched_stability():
    net = random_net([2, 3, 2], seed=0)
    with pytest.raises(ValueError):
        compress(net, Stability([np.ones(4)], [np.ones(4)]))


# ---- argument parsing --------------------------------------------------------------------------
def test_parse_index_spec_and_widths():
    assert parse_index_spec("7") == ([7], False)
    assert parse_index_spec("3:6") == ([3, 4, 5], True)
    assert parse_index_spec("9999:10000") == ([9999], True)
    for bad in ("10000", "-1", "a", "1:2:3", "5:3", "4:4", "0:10001", ""):
        with pytest.raises(ToolError):
            parse_index_spec(bad)
    assert parse_widths("0.01") == [0.01]
    assert parse_widths("0.01, 0.05") == [0.01, 0.05]
    for bad in ("0", "-0.1", "x", "0.1,", "nan", "inf"):
        with pytest.raises(ToolError):
            parse_widths(bad)


# ---- CLI -----------------------------------------------------------------------------------------
def cli(*args, cwd=None):
    return subprocess.run([sys.executable, str(ROOT / "compress_network.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd or ROOT, timeout=300)


@pytest.fixture
def tiny_weights(tmp_path):
    net = random_net([3, 6, 5, 2], seed=11, bias_scale=1.0)
    p = tmp_path / "run" / "weights.dat"
    p.parent.mkdir()
    save_net(net, p)
    return p


def test_cli_whole_box(tiny_weights):
    r = cli("-w", tiny_weights, "-q", "--verify-points", 2000)
    assert r.returncode == 0, r.stderr
    d = tiny_weights.parent
    cnet = load_net(d / "compressed_input_0_1.dat")
    rep = json.loads((d / "compressed_input_0_1.json").read_text())
    for key in ("weights", "domain", "units_before", "units_after", "removed", "params_before", "params_after",
                "tiers", "times", "verification"):
        assert key in rep
    assert rep["units_before"] == [6, 5] and rep["params_after"] == cnet.n_params
    assert rep["verification"]["passed"] and rep["verification"]["points"] == 2002
    net = load_net(tiny_weights)
    assert_equal_on(net, cnet, Box.uniform(3))
    assert (d / "stable_units_input_0_1.json").exists()


def test_cli_local_box_with_center_file_and_output(tiny_weights, tmp_path):
    center = tmp_path / "c.txt"
    center.write_text("0.5, 0.25, 0.75\n")
    out = tmp_path / "o" / "small.dat"
    r = cli("-w", tiny_weights, "--center", center, "--width", "0.05", "-o", out, "-q", "--verify-points", 500)
    assert r.returncode == 0, r.stderr
    rep = json.loads(out.with_suffix(".json").read_text())
    assert rep["domain"]["name"] == "center_c_width_0.05"
    assert_equal_on(load_net(tiny_weights), load_net(out),
                    Box.around([0.5, 0.25, 0.75], 0.05, "c"))


@pytest.mark.slow
def test_cli_bad_inputs(tiny_weights, tmp_path):
    d = tiny_weights.parent
    before = sorted(p.name for p in d.iterdir())
    good = tmp_path / "good.txt"
    good.write_text("0.5,0.5,0.5\n")
    short = tmp_path / "short.txt"
    short.write_text("0.5,0.5\n")
    outside = tmp_path / "out.txt"
    outside.write_text("0.5,1.5,0.5\n")
    cases = [
        (["--center", good, "--width", "0"], "--width must be > 0"),
        (["--center", good, "--width", "-1"], "--width must be > 0"),
        (["--center", good, "--width", "0.1,abc"], "not a number"),
        (["--center", short], "needs --width"),
        (["--center", short, "--width", "0.1"], "has 2 values but the network has 3 inputs"),
        (["--center", outside, "--width", "0.1"], "outside [0, 1]"),
        (["--center-test-index", "3", "--width", "0.1"], "784-input"),
        (["--center-test-index", "10000", "--width", "0.1"], "out of range"),
        (["--center-test-index", "2:x", "--width", "0.1"], "range A:B"),
        (["--center-test-index", "5:2", "--width", "0.1"], "empty range"),
        (["--center", good, "--width", "0.1,0.2", "-o", tmp_path / "x.dat"], "sweep"),
        (["--tol", "-1"], "--tol"),
    ]
    for extra, msg in cases:
        r = cli("-w", tiny_weights, "-q", *extra)
        assert r.returncode == 2, (extra, r.stderr)
        assert r.stderr.startswith("error:") and msg in r.stderr, (extra, r.stderr)
        assert "Traceback" not in r.stderr
    r = cli("-w", tmp_path / "missing.dat")
    assert r.returncode == 2 and "not found" in r.stderr
    assert sorted(p.name for p in d.iterdir()) == before      # nothing written


def test_cli_verification_failure_is_an_error(tiny_weights, monkeypatch, capsys):
    import compress_network
    import src.compress.run as sc

    def bogus(net, box, tol=1e-6, exact=True, progress=None, time_limit=None):
        return Stability([-np.ones(n) for n in net.hidden_sizes], [-np.ones(n) for n in net.hidden_sizes], tol=tol)

    monkeypatch.setattr(sc, "stability_on", bogus)
    rc = compress_network.main(["-w", str(tiny_weights), "-q", "--verify-points", "200"])
    assert rc == 1 and "verification failed" in capsys.readouterr().err
    assert not (tiny_weights.parent / "compressed_input_0_1.dat").exists()
    assert not (tiny_weights.parent / "compressed_input_0_1.json").exists()


def test_compression_reuses_the_stable_units_of_the_count(tiny_weights):
    """stable_units_<domain>.json has one writer; compression reads it back when it is of the same weights,
    domain and tol and at least as strong (exact), and otherwise computes and writes it again."""
    from src.compress.run import compress_run
    from src.counting.driver import count_run

    d = tiny_weights.parent
    st_file = d / "stable_units_input_0_1.json"
    count_run(tiny_weights, exact_stability=True, progress=False)
    before = st_file.read_bytes()
    assert json.loads(before)["exact"] is True and "weights_sha256" in json.loads(before)
    rep = compress_run(tiny_weights, verify_points=200, progress=False)
    assert rep.exit_code == 0 and st_file.read_bytes() == before           # not rewritten
    assert json.loads((d / "compressed_input_0_1.json").read_text())["stability_file"] == str(st_file)
    (d / "fresh").mkdir()
    fresh = compress_run(tiny_weights, out_dir=d / "fresh", verify_points=200, progress=False)
    assert "stability_file" not in json.loads((d / "fresh" / "compressed_input_0_1.json").read_text())
    assert [k.tolist() for k in fresh.compression.kept] == [k.tolist() for k in rep.compression.kept]
    compress_run(tiny_weights, tol=1e-5, verify_points=200, progress=False)   # another tol: computed, rewritten
    assert json.loads(st_file.read_text())["tol"] == 1e-5
    assert "stability_file" not in json.loads((d / "compressed_input_0_1.json").read_text())


@pytest.mark.slow
def test_cli_mnist_sweep_and_test_set_verification(tmp_path):
    net = random_net([784, 6, 4, 10], seed=5, bias_scale=0.5)
    net = ReluNet([w * 0.05 if l == 0 else w for l, w in enumerate(net.weights)], net.biases)
    w = tmp_path / "weights.dat"
    save_net(net, w)
    r = cli("-w", w, "--center-test-index", "0:2", "--width", "0.01,0.1", "-q", "--verify-points", 300)
    assert r.returncode == 0, r.stderr
    stem = "compress_sweep_test0_to_test1_width_0.01_0.1"
    rows = json.loads((tmp_path / f"{stem}.json").read_text())["rows"]
    assert [(r["center"], r["width"]) for r in rows] == [("test0", 0.01), ("test0", 0.1), ("test1", 0.01), ("test1", 0.1)]
    for a, b in zip(rows[::2], rows[1::2]):       # the smaller box leaves at most as many units
        assert a["units_left"] <= b["units_left"]
    csv_lines = (tmp_path / f"{stem}.csv").read_text().splitlines()
    assert len(csv_lines) == 5 and csv_lines[0].startswith("center,width,domain,units_L1,units_L2")
    assert "| test0 | 0.01 |" in (tmp_path / f"{stem}.md").read_text()
    # whole box: verified on the MNIST test set too
    r = cli("-w", w, "-q", "--verify-points", 300)
    assert r.returncode == 0, r.stderr
    ver = json.loads((tmp_path / "compressed_input_0_1.json").read_text())["verification"]
    assert ver["test_points"] == 10000 and ver["test_predictions_differ"] == 0
    assert ver["test_accuracy_original"] == ver["test_accuracy_compressed"]
