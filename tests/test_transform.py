"""The two-hidden-layer transformation (issue 5) against brute force on tiny nets, sizes, I/O and the CLI."""
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
from bruteforce import brute_force_patterns
from conftest import ROOT, random_net

from src.core.box import Box
from src.core.compare import compare_nets, min_abs_preactivation
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.feasibility_lp import max_margin_point
from src.core.patterns import pattern_keys
from src.io.pattern_file import write_patterns
from src.io.readers import load_net
from src.transform.sizes import all_nodes_violation_counts, dense_params, formula_sizes, trie_violation_counts
from src.transform.two_hidden import all_patterns, build_two_hidden, check_big_m
from src.transform.verify import verify_interior
from src.io.weights_file import save_net

SCRIPT = ROOT / "transform_networks_using_all_nodes.py"
NETS = {"h33": ([2, 3, 3, 2], 0), "h432": ([3, 4, 3, 2, 2], 1)}


@pytest.fixture(scope="module")
def cases():
    out = {}
    for name, (sizes, seed) in NETS.items():
        net = random_net(sizes, seed=seed)
        box = Box.uniform(sizes[0])
        feasible = np.array(sorted(brute_force_patterns(net, box)), dtype=np.uint8)
        out[name] = (net, box, feasible)
    return out


def _close(y0, y1, rtol):
    return np.abs(y1 - y0).max(axis=1) <= rtol * np.maximum(1.0, np.abs(y0).max(axis=1))


@pytest.mark.parametrize("name", list(NETS))
@pytest.mark.parametrize("mode", ["all", "feasible"])
@pytest.mark.parametrize("share", ["full", "trie", "none"])
def test_exact_at_region_interiors_and_outside_band(cases, name, mode, share):
    net, box, feasible = cases[name]
    P = all_patterns(net.n_hidden_units) if mode == "all" else feasible
    res = build_two_hidden(net, box, P, big_m=1e6, share=share)
    two = res.net
    assert len(feasible) > 3
    for p in feasible:                              # every region's interior point
        x, t = max_margin_point(net, box, p, two_sided=True)
        assert t > 1e-6
        assert min_abs_preactivation(net, x)[0] > res.band_width
        assert _close(net.forward(x), two.forward(x), 1e-9).all()
    X = box.sample(8000, np.random.default_rng(7))
    out = min_abs_preactivation(net, X) > res.band_width
    assert out.mean() > 0.99                        # the band is thin
    assert _close(net.forward(X[out]), two.forward(X[out]), 1e-9).all()


@pytest.mark.parametrize("share", ["full", "none"])
def test_band_is_where_errors_live(cases, share):
    """With a small M the band is wide: errors occur inside it, never outside it."""
    net, box, feasible = cases["h33"]
    P = all_patterns(net.n_hidden_units)
    res = build_two_hidden(net, box, P, big_m=20.0, share=share)
    assert res.band_width == pytest.approx(max(1.0, res.u_max) / 20.0)
    X = box.sample(20000, np.random.default_rng(3))
    y0, y1 = net.forward(X), res.net.forward(X)
    ok = _close(y0, y1, 1e-9)
    in_band = min_abs_preactivation(net, X) <= res.band_width
    assert ok[~in_band].all()
    assert (~ok[in_band]).sum() > 50


def test_naive_trie_full_compute_the_same_function(cases):
    net, box, feasible = cases["h432"]
    for P in (feasible, all_patterns(net.n_hidden_units)):
        nets = {s: build_two_hidden(net, box, P, share=s) for s in ("none", "trie", "full")}
        rng = np.random.default_rng(11)
        X_wide = Box.uniform(3, -2.0, 3.0).sample(2000, rng)   # naive and trie: identical units, everywhere
        np.testing.assert_allclose(nets["trie"].net.forward(X_wide), nets["none"].net.forward(X_wide),
                                   rtol=1e-12, atol=1e-9)
        X = box.sample(8000, rng)                                # full: the same on D outside the band
        band = max(r.band_width for r in nets.values())
        out = min_abs_preactivation(net, X) > band
        assert _close(nets["none"].net.forward(X[out]), nets["full"].net.forward(X[out]), 1e-9).all()


@pytest.mark.parametrize("name", list(NETS))
def test_sizes_match_formula_and_sharing_shrinks(cases, name):
    net, box, feasible = cases[name]
    n0, m, N = net.n_inputs, net.n_outputs, net.n_hidden_units
    for P, patterns_arg in ((feasible, feasible), (all_patterns(N), None)):
        f = formula_sizes(net.layer_sizes, patterns_arg)
        p = len(P)
        assert f["patterns"] == p
        naive = build_two_hidden(net, box, P, share="none")
        trie = build_two_hidden(net, box, P, share="trie")
        full = build_two_hidden(net, box, P, share="full")
        assert naive.net.layer_sizes == f["naive"]["layer_sizes"] == [n0, p * (N + m), p * (m + 1), m]
        assert naive.net.n_params == f["naive"]["params"]
        assert trie.net.layer_sizes == f["shared"]["layer_sizes"]
        assert trie.violation_units == f["shared"]["violation_units_per_layer"]
        assert trie.net.n_params == f["shared"]["params"] == dense_params(f["shared"]["layer_sizes"])
        assert f["shared"]["layer_sizes"][1] < f["naive"]["layer_sizes"][1]
        assert f["shared"]["params"] < f["naive"]["params"]
        assert full.net.layer_sizes[1] <= trie.net.layer_sizes[1]
        assert full.net.layer_sizes[2] <= trie.net.layer_sizes[2]
        assert full.net.n_params < naive.net.n_params
    # all nodes: the trie of all 2^N patterns has 2 n_l 2^(n_1+..+n_{l-1}) violation units in layer l
    hs = net.hidden_sizes
    expect = [2 * n * 2 ** sum(hs[:l]) for l, n in enumerate(hs)]
    assert all_nodes_violation_counts(hs) == expect == trie_violation_counts(all_patterns(N), hs)


def test_huge_all_nodes_sizes_are_exact_integers():
    sizes = [784, 100, 100, 100, 100, 10]
    f = formula_sizes(sizes)
    p = 2 ** 400
    assert f["patterns"] == p
    assert f["naive"]["layer_sizes"] == [784, p * 410, p * 11, 10]
    viol = sum(200 * 2 ** (100 * l) for l in range(4))
    assert f["shared"]["layer_sizes"] == [784, viol + 10 * p, 11 * p, 10]
    h1, h2 = viol + 10 * p, 11 * p
    assert f["shared"]["params"] == 784 * h1 + h1 + h1 * h2 + h2 + h2 * 10 + 10
    assert f["naive"]["log10_params"] > 240


def test_weights_file_round_trip(cases, tmp_path):
    net, box, feasible = cases["h432"]
    res = build_two_hidden(net, box, feasible)
    path = tmp_path / "two.dat"
    res.net.save(path, model_path="orig.dat")
    back = load_net(path)
    dense = res.net.to_relunet()
    assert back.layer_sizes == res.net.layer_sizes
    for a, b in zip(back.weights + back.biases, dense.weights + dense.biases):
        np.testing.assert_array_equal(a, b)
    X = box.sample(500, np.random.default_rng(0))
    np.testing.assert_allclose(back.forward(X), res.net.forward(X), rtol=1e-12, atol=1e-12)


def test_verification_catches_a_wrong_net_and_missing_patterns(cases):
    net, box, feasible = cases["h33"]
    res = build_two_hidden(net, box, feasible)
    good = verify_interior(net, res.net, box, feasible, res.band_width)
    assert good["ok"] and good["with_interior_point"] == len(feasible) and good["max_rel_error"] < 1e-12
    res.net.W3.data[0] += 1e-3                      # corrupt one output weight
    bad = verify_interior(net, res.net, box, feasible, res.band_width)
    assert not bad["ok"] and bad["failures"] > 0
    # an incomplete list: the points of the missing region are counted apart
    X = box.sample(5000, np.random.default_rng(1))
    counts = {}
    for p in net.patterns(X):
        counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    drop = max(counts, key=counts.get)
    keep = np.array([p for p in feasible if tuple(p) != drop], dtype=np.uint8)
    res2 = build_two_hidden(net, box, keep)
    r = compare_nets(net, res2.net, X, rtol=1e-6, band_width=res2.band_width, pattern_keys=pattern_keys(keep))
    assert r["missing_pattern"] == counts[drop]
    assert r["known"]["mismatch_outside_band"] == 0
    assert r["missing"]["fraction_match"] < 0.5


def test_big_m_checks():
    assert check_big_m(1e6) == 1e6
    for bad in (0, -1, float("nan"), float("inf"), 1e200):
        with pytest.raises(ToolError):
            check_big_m(bad)


def test_duplicate_patterns_rejected_by_the_builder(cases):
    net, box, feasible = cases["h33"]
    with pytest.raises(ValueError, match="distinct"):
        build_two_hidden(net, box, np.vstack([feasible, feasible[:1]]))


# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------
def _load_script():
    spec = importlib.util.spec_from_file_location("transform_cli", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args):
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cases):
    d = tmp_path_factory.mktemp("run")
    net, box, feasible = cases["h33"]
    save_net(net, d / "weights.dat")
    write_patterns(d / "activation_pattern_abhinav_input_0_1.dat", net.layer_sizes, feasible)
    return d


FORMAT_KEYS = {"weights", "mode", "pattern_file", "domain", "patterns", "big_m", "band_width", "built", "shared",
               "sizes", "build_seconds", "verification"}


def test_cli_seed_commands(run_dir, cases, capsys):
    cli = _load_script()
    w = run_dir / "weights.dat"
    assert cli.main(["-w", str(w), "-q", "--verify-points", "2000"]) == 0
    rec = json.loads((run_dir / "two_hidden_all_nodes.json").read_text())
    assert FORMAT_KEYS <= set(rec) and rec["mode"] == "all" and rec["built"] and rec["patterns"] == 64
    assert {"original", "naive", "shared"} <= set(rec["sizes"])
    assert rec["verification"]["interior"]["ok"]
    assert rec["verification"]["uniform"]["known"]["mismatch_outside_band"] == 0
    net2 = load_net(run_dir / "two_hidden_all_nodes.dat")
    assert net2.layer_sizes == rec["sizes"]["shared"]["layer_sizes"]

    pf = run_dir / "activation_pattern_abhinav_input_0_1.dat"
    assert cli.main(["-w", str(w), "-i", str(pf), "-q", "--verify-points", "2000"]) == 0
    rec = json.loads((run_dir / "two_hidden_feasible_input_0_1.json").read_text())
    feasible = cases["h33"][2]
    assert rec["mode"] == "feasible" and rec["patterns"] == len(feasible)
    v = rec["verification"]
    assert v["interior"]["with_interior_point"] == len(feasible) and v["interior"]["failures"] == 0
    assert v["uniform"]["missing_pattern"] == 0 and v["uniform"]["known"]["fraction_match"] > 0.99
    X = Box.uniform(2).sample(1000, np.random.default_rng(5))
    net = cases["h33"][0]
    net2 = load_net(run_dir / "two_hidden_feasible_input_0_1.dat")
    out = min_abs_preactivation(net, X) > rec["band_width"]
    assert _close(net.forward(X[out]), net2.forward(X[out]), 1e-9).all()
    capsys.readouterr()


def test_cli_incomplete_file_reports_missing(run_dir, cases, tmp_path, capsys):
    net, box, feasible = cases["h33"]
    pf = tmp_path / "activation_pattern_abhinav_input_0_1.dat"
    counts = {}
    for p in net.patterns(box.sample(2000, np.random.default_rng(0))):
        counts[tuple(p)] = counts.get(tuple(p), 0) + 1
    drop = max(counts, key=counts.get)
    write_patterns(pf, net.layer_sizes, [p for p in feasible if tuple(p) != drop])
    out = tmp_path / "x.dat"
    args = ["-w", str(run_dir / "weights.dat"), "-i", str(pf), "-o", str(out), "-q", "--verify-points", "2000"]
    assert _load_script().main(args) == 1                    # never passed off as an equivalent net
    rec = json.loads(out.with_suffix(".json").read_text())
    u = rec["verification"]["uniform"]
    assert u["missing_pattern"] > 0 and u["missing"]["points"] == u["missing_pattern"]
    assert u["known"]["mismatch_outside_band"] == 0
    assert rec["equivalent"] is False and not out.exists()
    captured = capsys.readouterr()
    assert "pattern missing" in captured.out
    err = [ln for ln in captured.err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and f"{u['missing_pattern']} of the 2000" in err[0] and "--allow-incomplete" in err[0]
    assert _load_script().main(args + ["--allow-incomplete"]) == 0
    assert out.exists() and json.loads(out.with_suffix(".json").read_text())["equivalent"] is False


def test_cli_interior_failure_is_an_error_exit(run_dir, tmp_path, monkeypatch, capsys):
    import src.transform.run as tr

    real = tr.build_two_hidden

    def broken(*a, **k):
        res = real(*a, **k)
        res.net.b3[0] += 1.0
        return res

    monkeypatch.setattr(tr, "build_two_hidden", broken)
    out = tmp_path / "bad.dat"
    rc = _load_script().main(["-w", str(run_dir / "weights.dat"), "-o", str(out), "-q", "--verify-points", "100"])
    assert rc == 1
    assert not out.exists()
    assert json.loads(out.with_suffix(".json").read_text())["verification"]["ok"] is False
    assert "interior-point check failed" in capsys.readouterr().err



def test_cli_mismatch_outside_the_interior_is_an_error_exit(run_dir, cases, tmp_path, monkeypatch, capsys):
    """The new net differs only near the region boundaries (outside the band, but closer than any interior
    point of the LP check): the interior check passes, the uniform points fail the run like Analysis.verify."""
    import src.transform.run as tr

    net, box, feasible = cases["h33"]
    cut = min(max_margin_point(net, box, p, two_sided=True)[1] for p in feasible) / 2   # below every interior margin
    real = tr.build_two_hidden

    def broken(*a, **k):
        res = real(*a, **k)
        exact = res.net.forward
        res.net.forward = lambda x, *r, **kw: exact(x, *r, **kw) + (min_abs_preactivation(net, x) < cut)[:, None]
        return res

    monkeypatch.setattr(tr, "build_two_hidden", broken)
    out = tmp_path / "near.dat"
    rc = _load_script().main(["-w", str(run_dir / "weights.dat"), "-o", str(out), "-q", "--verify-points", "2000"])
    rec = json.loads(out.with_suffix(".json").read_text())
    ver = rec["verification"]
    assert ver["interior"]["ok"] and ver["interior"]["failures"] == 0 and ver["interior"]["min_margin"] > cut
    assert ver["uniform"]["known"]["mismatch_outside_band"] > 0
    assert rc == 1                                   # today's code exited 0 here and wrote the .dat
    assert ver["uniform"]["ok"] is False and ver["ok"] is False and rec["equivalent"] is False and not out.exists()
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "uniform points outside the band" in err[0]


def test_compare_nets_one_rule():
    """max_j |b_j - a_j| <= rtol * max(1, max_j |a_j|) per point; the band and missing patterns are not held."""
    net = random_net([2, 3, 3, 2], seed=0)
    X = Box.uniform(2).sample(500, np.random.default_rng(2))
    ya = net.forward(X)
    scale = np.maximum(1.0, np.abs(ya).max(axis=1))

    def shifted(delta, a=net):                           # b = a + delta (per point, on output 0)
        class B:
            layer_sizes = a.layer_sizes

            def forward(self, x):
                y = a.forward(x)
                y[:, 0] += delta(x)
                return y
        return B()

    same = compare_nets(net, net, X, rtol=1e-12)
    assert same["ok"] and same["max_abs_error"] == 0 and same["fraction_match"] == 1 and same["in_band"] == 0
    big = int(np.argmax(scale))
    assert scale[big] > 1                                # relative above 1 (against the largest output) ...
    for f, ok in ((0.9, True), (1.1, False)):
        d = np.zeros(len(X))
        d[big] = f * 1e-3 * scale[big]
        r = compare_nets(net, shifted(lambda x, d=d: d[:len(x)]), X, rtol=1e-3)
        assert r["ok"] is ok and r["mismatch_outside_band"] == (0 if ok else 1)
        assert r["max_rel_error"] == pytest.approx(f * 1e-3) and r["max_abs_error"] == pytest.approx(d[big])
    tiny = ReluNet(net.weights[:-1] + [net.weights[-1] * 0.01], net.biases[:-1] + [net.biases[-1] * 0.01])
    assert np.abs(tiny.forward(X)).max() < 1                # ... absolute below 1
    r = compare_nets(tiny, shifted(lambda x: 0.9e-3 * np.ones(len(x)), tiny), X, rtol=1e-3)
    assert r["ok"] and r["max_abs_error"] == pytest.approx(0.9e-3) and r["max_rel_error"] == pytest.approx(0.9e-3)
    assert not compare_nets(tiny, shifted(lambda x: 1.1e-3 * np.ones(len(x)), tiny), X, rtol=1e-3)["ok"]
    # points in a's band are counted, not held; labels give the accuracies of both nets
    width = np.quantile(min_abs_preactivation(net, X), 0.2)
    near = shifted(lambda x: (min_abs_preactivation(net, x) <= width) * 1.0)
    r = compare_nets(net, near, X, rtol=1e-6, band_width=width, labels=net.predict(X))
    assert r["ok"] and r["in_band"] == (min_abs_preactivation(net, X) <= width).sum() > 50
    assert r["mismatch_outside_band"] == 0 and r["max_abs_error"] == pytest.approx(1.0) and r["fraction_match"] < 0.9
    assert r["accuracy_a"] == 1.0 and r["accuracy_b"] <= 1.0
    assert not compare_nets(net, near, X, rtol=1e-6, band_width=width / 2)["ok"]
    # pattern keys: points of a pattern not listed are reported apart and not held
    P = net.patterns(X)
    first = P[0]
    off = shifted(lambda x: (net.patterns(x) == first).all(axis=1) * 1.0)
    keys = pattern_keys([p for p in np.unique(P, axis=0) if not np.array_equal(p, first)])
    r = compare_nets(net, off, X, rtol=1e-6, pattern_keys=keys)
    n_first = int((P == first).all(axis=1).sum())
    assert r["ok"] and r["missing_pattern"] == n_first and r["missing"]["mismatch_outside_band"] == n_first
    assert r["known"]["mismatch_outside_band"] == 0 and r["mismatch_outside_band"] == n_first
    assert not compare_nets(net, off, X, rtol=1e-6)["ok"]

def test_cli_big_net_reports_sizes_without_building(tmp_path):
    net = random_net([784, 100, 100, 100, 100, 10], seed=0)
    w = tmp_path / "weights.dat"
    save_net(net, w)
    r = _run("-w", w, "-q")
    assert r.returncode == 0, r.stderr
    assert "not built" in r.stdout and "--max-units" in r.stdout
    assert str(2 ** 400 * 410) in r.stdout and "~10^" in r.stdout
    assert not (tmp_path / "two_hidden_all_nodes.dat").exists()
    rec = json.loads((tmp_path / "two_hidden_all_nodes.json").read_text())
    assert rec["built"] is False and rec["sizes"]["naive"]["layer_sizes"][1] == 2 ** 400 * 410
    (tmp_path / "two_hidden_all_nodes.json").unlink()
    r = _run("-w", w, "--size-only")
    assert r.returncode == 0 and "not built" in r.stdout and str(2 ** 400 * 11) in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["weights.dat"]


@pytest.mark.parametrize("text,args,needle", [
    ("n = [2, 4, 2, 2]\n1 0 1 0 1 0\n", [], "n = [2, 4, 2, 2]"),
    ("n = [2, 3, 3, 2]\n1 0 1 0 1\n", [], "5 values, expected 6"),
    ("n = [2, 3, 3, 2]\n1 0 1 0 1 x\n", [], "must be 0 or 1"),
    ("", [], "empty pattern file"),
    ("n = [2, 3, 3, 2]\n", [], "no patterns"),
    (None, ["--big-m", "0"], "--big-m"),
    (None, ["--big-m", "-5"], "--big-m"),
    (None, ["--verify-points", "-1"], "--verify-points"),
])
def test_cli_errors(run_dir, tmp_path, text, args, needle):
    cmd = ["-w", run_dir / "weights.dat", "-o", tmp_path / "o.dat", *args]
    if text is not None:
        pf = tmp_path / "activation_pattern_abhinav_input_0_1.dat"
        pf.write_text(text)
        cmd += ["-i", pf]
    r = _run(*cmd)
    assert r.returncode == 2
    assert r.stderr.startswith("error:") and needle in r.stderr
    assert not (tmp_path / "o.dat").exists() and not (tmp_path / "o.json").exists()


def test_cli_duplicates_warn_and_dedupe(run_dir, cases, tmp_path):
    net, box, feasible = cases["h33"]
    pf = tmp_path / "activation_pattern_abhinav_input_0_1.dat"
    write_patterns(pf, net.layer_sizes, np.vstack([feasible, feasible[:2]]))
    r = _run("-w", run_dir / "weights.dat", "-i", pf, "-o", tmp_path / "o.dat", "-q", "--verify-points", "200")
    assert r.returncode == 0, r.stderr
    assert "2 duplicate patterns dropped" in r.stderr
    assert json.loads((tmp_path / "o.json").read_text())["patterns"] == len(feasible)


def test_row_merging_is_exact_even_when_hashes_collide(monkeypatch):
    import src.transform.two_hidden as tr

    rng = np.random.default_rng(0)
    base = rng.normal(size=(6, 5))
    R = base[[0, 1, 2, 0, 3, 1, 4, 5, 0]].copy()
    R[3, 0] = -0.0 if R[3, 0] == 0 else R[3, 0]
    d = np.array([1.0, 2, 3, 1, 4, 2, 5, 6, 7])      # the last row equals row 0 except its bias
    expect = [0, 1, 2, 0, 3, 1, 4, 5, 6]
    pool = tr._RowPool(merge=True)
    assert pool.add(R.copy(), d.copy(), kind=1).tolist() == expect
    assert pool.add(R[:2].copy(), d[:2].copy(), kind=2).tolist() == [7, 8]   # other kind: not merged
    assert pool.add(R[:2].copy(), d[:2].copy(), kind=1).tolist() == [0, 1]   # across calls
    monkeypatch.setattr(tr, "_row_hashes", lambda R, d, salt: np.zeros(len(d), dtype=np.uint64))
    pool = tr._RowPool(merge=True)                   # every row collides: equality still decides
    assert pool.add(R.copy(), d.copy(), kind=1).tolist() == [0, 1, 2, 0, 3, 1, 4, 5, 6]
    zeros = np.array([[0.0, -0.0], [-0.0, 0.0]])
    assert tr._RowPool(merge=True).add(zeros, np.array([0.0, -0.0])).tolist() == [0, 0]


def test_cli_domain_name_from_the_pattern_file(run_dir, cases, tmp_path, capsys):
    net, box, feasible = cases["h33"]
    pf = tmp_path / "activation_pattern_abhinav_center_foo_width_0.1.dat"
    write_patterns(pf, net.layer_sizes, feasible)
    w = tmp_path / "weights.dat"
    save_net(net, w)
    assert _load_script().main(["-w", str(w), "-i", str(pf), "-q", "--no-verify"]) == 0
    assert "is named for domain 'center_foo_width_0.1'" in capsys.readouterr().err
    rec = json.loads((tmp_path / "two_hidden_feasible_center_foo_width_0.1.json").read_text())
    assert rec["pattern_domain"] == "center_foo_width_0.1" and rec["domain"]["name"] == "input_0_1"
    assert (tmp_path / "two_hidden_feasible_center_foo_width_0.1.dat").exists()
    pf2 = tmp_path / "mine.dat"                      # another name: the flags' domain names the output
    write_patterns(pf2, net.layer_sizes, feasible)
    assert _load_script().main(["-w", str(w), "-i", str(pf2), "-q", "--no-verify", "--lo", "0", "--hi", "0.5"]) == 0
    assert (tmp_path / "two_hidden_feasible_input_0_0.5.dat").exists()


def test_cli_box_from_the_pattern_file_name(cases, tmp_path, capsys):
    net, _, _ = cases["h33"]
    half = Box.uniform(2, 0.0, 0.5)
    feasible = np.array(sorted(brute_force_patterns(net, half)), dtype=np.uint8)
    pf = tmp_path / "activation_pattern_abhinav_input_0_0.5.dat"
    write_patterns(pf, net.layer_sizes, feasible)
    w = tmp_path / "weights.dat"
    save_net(net, w)
    assert _load_script().main(["-w", str(w), "-i", str(pf), "-q", "--verify-points", "1000"]) == 0
    err = capsys.readouterr().err
    assert "taken from the name" in err and "warning" not in err
    rec = json.loads((tmp_path / "two_hidden_feasible_input_0_0.5.json").read_text())
    assert rec["domain"]["hi"] == 0.5 and "pattern_domain" not in rec
    assert rec["verification"]["uniform"]["missing_pattern"] == 0
    assert rec["verification"]["interior"]["with_interior_point"] == len(feasible)


@pytest.mark.parametrize("name", list(NETS))
def test_nonempty_patterns_grown_through_the_trie(cases, name):
    from src.transform.two_hidden import nonempty_patterns

    net, box, feasible = cases[name]
    N = net.n_hidden_units
    P, info = nonempty_patterns(net, box, 10 ** 6, 10 ** 8)
    assert info["complete"] and info["patterns"] == len(P)
    grown = {tuple(p) for p in P}
    assert {tuple(p) for p in feasible} <= grown                     # never drops a feasible pattern
    res = build_two_hidden(net, box, all_patterns(N), share="full")   # the builder's own pruning agrees
    assert grown == {tuple(p) for p in all_patterns(N)[res.patterns_used]}
    assert len(P) < 2 ** N
    small, info = nonempty_patterns(net, box, 2, 10 ** 8)
    assert small is None and not info["complete"] and info["patterns"] > 2


def test_cli_all_nodes_on_a_local_box(cases, tmp_path):
    net, _, _ = cases["h432"]
    w = tmp_path / "weights.dat"
    save_net(net, w)
    c = tmp_path / "c.txt"
    c.write_text("0.4, 0.5, 0.6\n")
    assert _load_script().main(["-w", str(w), "--center", str(c), "--width", "0.05", "-q",
                                "--verify-points", "2000"]) == 0
    rec = json.loads((tmp_path / "two_hidden_all_nodes_center_c_width_0.05.json").read_text())
    assert rec["built"] and rec["nonempty_patterns"]["complete"]
    assert rec["nonempty_patterns"]["patterns"] < 2 ** net.n_hidden_units
    assert rec["verification"]["ok"] and rec["verification"]["uniform"]["known"]["mismatch_outside_band"] == 0


# ---- pattern files are checked against the net -------------------------------------------------------
def _transform_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "transform_networks_using_all_nodes.py"), *map(str, args),
                           "-q", "--verify-points", "500"], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def two_counted_nets(tmp_path_factory):
    """Two nets of the same shape, each counted (pattern file + regions_input_0_1.json) in its own dir."""
    from src.counting.driver import count_run

    root = tmp_path_factory.mktemp("two")
    for name, seed in (("a", 0), ("b", 1)):
        (root / name).mkdir()
        save_net(random_net([3, 4, 4, 1], seed), root / name / "weights.dat")
        assert count_run(root / name / "weights.dat", backend="lp", progress=False)["complete"]
    return root


def test_pattern_file_of_another_net_is_refused(two_counted_nets, tmp_path):
    a, b = two_counted_nets / "a", two_counted_nets / "b"
    pf = a / "activation_pattern_abhinav_input_0_1.dat"
    out = tmp_path / "two.dat"
    r = _transform_cli("-w", b / "weights.dat", "-i", pf, "-o", out)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and str(pf) in lines[0] and str(b / "weights.dat") in lines[0]
    assert not out.exists() and not out.with_suffix(".json").exists() and list(tmp_path.iterdir()) == []
    r = _transform_cli("-w", a / "weights.dat", "-i", pf, "-o", out)     # its own net: accepted
    assert r.returncode == 0, r.stderr
    assert json.loads(out.with_suffix(".json").read_text())["equivalent"] is True


def test_pattern_file_without_summary_is_accepted_with_a_notice(two_counted_nets, tmp_path):
    pf = tmp_path / "activation_pattern_abhinav_input_0_1.dat"
    pf.write_text((two_counted_nets / "a" / "activation_pattern_abhinav_input_0_1.dat").read_text())
    r = _transform_cli("-w", two_counted_nets / "a" / "weights.dat", "-i", pf, "-o", tmp_path / "t.dat")
    assert r.returncode == 0, r.stderr
    notices = [ln for ln in r.stderr.splitlines() if ln.startswith("notice:")]
    assert len(notices) == 1 and "could not be checked" in notices[0]
    assert (tmp_path / "t.dat").exists()


def test_list_of_an_incomplete_count_is_not_an_equivalent_net(two_counted_nets, tmp_path):
    src_dir = two_counted_nets / "a"
    for name in ("weights.dat", "activation_pattern_abhinav_input_0_1.dat", "regions_input_0_1.json"):
        (tmp_path / name).write_bytes((src_dir / name).read_bytes())
    summary = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    summary["complete"] = False                                        # as after --time-limit
    (tmp_path / "regions_input_0_1.json").write_text(json.dumps(summary))
    out = tmp_path / "t.dat"
    r = _transform_cli("-w", tmp_path / "weights.dat", "-i", tmp_path / "activation_pattern_abhinav_input_0_1.dat",
                       "-o", out)
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "complete: false" in err[0] and "--allow-incomplete" in err[0]
    assert not out.exists() and json.loads(out.with_suffix(".json").read_text())["equivalent"] is False
