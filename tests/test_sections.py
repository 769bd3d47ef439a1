"""Exact 1-D and 2-D sections (src/sections/plane.py) against brute force on tiny nets, and their CLI."""
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, brute_force_patterns, nets, random_net, reference, run_cli, spec

from src.sections.plane import (class_pieces, default_view, orthonormal_plane, plane_through, polygon_area,
    restrict_to_plane)
from src.sections.files import image_segments_record, image_slice_record, seeded_pairs
from src.sections.segments import segment_along
from src.core.box import Box
from src.core.errors import ToolError
from src.io.files import atomic_write_json
from src.core.network import ReluNet
from src.sections.plane import Plane, plane_section
from src.sections.segments import segment_section, segment_sections
from src.io.readers import load_net
from src.io.weights_file import save_net


def write_section_files(run_dir, n_points: int = 40, n_pairs: int = 12, seed: int = 0) -> None:
    """Real slice_0_1_2.json and segments.json for the run's weights.dat, with seeded uniform random points
    of [0,1]^n0 standing in for the MNIST test images (used by the plot and results tests)."""
    run_dir = Path(run_dir)
    net = load_net(run_dir / "weights.dat")
    X = np.random.default_rng(seed).random((n_points, net.n_inputs))
    meta = {"weights": str(run_dir / "weights.dat"), "layer_sizes": net.layer_sizes}
    plane = plane_through(X[:3])
    atomic_write_json(run_dir / "slice_0_1_2.json",
                      {**meta, **image_slice_record(net, plane, Box.uniform(net.n_inputs), [0, 1, 2],
                                                             [0, 0, 0])})
    pairs = seeded_pairs(n_points, n_pairs, seed)
    atomic_write_json(run_dir / "segments.json", {**meta, **image_segments_record(net, X, pairs, seed)})


def _tuples(patterns) -> set:
    return {tuple(int(v) for v in p) for p in np.asarray(patterns)}


def _locate(sec, st, tol=1e-9):
    """For each point the polygons that contain it strictly (more than tol inside every edge)."""
    hits = []
    for verts in sec.vertices:
        e = np.roll(verts, -1, axis=0) - verts
        dx, dy = st[:, 0:1] - verts[:, 0][None, :], st[:, 1:2] - verts[:, 1][None, :]
        cross = e[:, 0][None, :] * dy - e[:, 1][None, :] * dx
        sign = np.sign(np.sum(verts[:, 0] * np.roll(verts[:, 1], -1) - np.roll(verts[:, 0], -1) * verts[:, 1]))
        scale = np.linalg.norm(e, axis=1)[None, :]
        hits.append(np.all(sign * cross > tol * np.maximum(scale, 1e-300), axis=1))
    return np.array(hits).T          # (points, polygons)


# 2-input nets (the LP brute force over all 2^N patterns runs for N <= 9) and 3-input nets (sampling only)
NETS = nets("sections")                  # the catalogue's (tests/conftest.py)


# ---- 2-D ---------------------------------------------------------------------------------
@pytest.mark.parametrize("net_spec", NETS, ids=str)
def test_plane_section_equals_brute_force(net_spec):
    """Dense sampling finds no pattern the section misses; every polygon has a verified interior point;
    every sample lies in exactly one polygon, whose pattern is the sample's."""
    sizes, seed = list(net_spec.sizes), net_spec.seed
    net = net_spec.net()
    n0 = sizes[0]
    rng = np.random.default_rng(seed)
    plane = Plane(np.zeros(2), np.eye(2)) if n0 == 2 else plane_through(rng.random((3, n0)))
    box = Box.uniform(n0)
    view = (-0.6, 1.7, -0.5, 1.5)
    sec = plane_section(net, plane, view, box)
    assert sec.n_polygons > 1 and sec.unverified == [] and bool(sec.verified.all())
    st = np.column_stack([rng.uniform(view[0], view[1], 60000), rng.uniform(view[2], view[3], 60000)])
    X = plane.points(st)
    pats = net.patterns(X)
    inside = box.contains(X)
    assert _tuples(pats) <= _tuples(sec.patterns)
    assert _tuples(pats[inside]) <= _tuples(sec.patterns[sec.in_box])
    # point location: a partition, with the right pattern and in-box flag
    sub = st[:3000]
    hits = _locate(sec, sub)
    assert hits.sum(axis=1).max() == 1                   # never two polygons
    clear = hits.sum(axis=1) == 1
    assert clear.mean() > 0.97                           # the rest lies within 1e-9 of an edge
    which = hits[clear].argmax(axis=1)
    np.testing.assert_array_equal(sec.patterns[which], pats[:3000][clear])
    np.testing.assert_array_equal(sec.in_box[which], inside[:3000][clear])
    # the interior points are inside their polygons and give their patterns
    own = _locate(sec, sec.interior_points)
    assert np.all(np.diag(own))
    np.testing.assert_array_equal(net.patterns(plane.points(sec.interior_points)), sec.patterns)
    if n0 == 2:                                          # the plane is the whole input space: the LP brute force
        assert _tuples(sec.patterns[sec.in_box]) == reference(net_spec, box)
        assert sec.regions_in_box == len(reference(net_spec, box))


@pytest.mark.parametrize("net_spec", NETS[:3] + [spec([30, 8, 6, 3], 5)], ids=str)
def test_areas_sum_to_the_box_section_and_the_view(net_spec):
    sizes, seed = list(net_spec.sizes), net_spec.seed
    net = net_spec.net()
    rng = np.random.default_rng(seed)
    n0 = sizes[0]
    plane = Plane(np.zeros(2), np.eye(2)) if n0 == 2 else plane_through(rng.random((3, n0)))
    view = (-0.3, 1.4, -0.2, 1.3)
    sec = plane_section(net, plane, view, Box.uniform(n0))
    view_area = 1.7 * 1.5
    assert sec.box_area > 0.1
    assert sec.areas[sec.in_box].sum() == pytest.approx(sec.box_area, rel=1e-9, abs=1e-10 * view_area)
    assert sec.areas.sum() == pytest.approx(view_area, rel=1e-9, abs=1e-10 * view_area)
    for verts, area in zip(sec.vertices, sec.areas):
        assert polygon_area(verts) == pytest.approx(area, rel=1e-9, abs=1e-12)
    inside_only = plane_section(net, plane, view, Box.uniform(n0), outside=False)
    assert inside_only.in_box.all() and inside_only.regions_in_box == sec.regions_in_box
    assert inside_only.areas.sum() == pytest.approx(sec.box_area, rel=1e-9, abs=1e-10 * view_area)


def test_known_net_four_regions():
    """Units x > 0.5 and y > 0.5 on the unit square: exactly 4 regions, split at 0.5."""
    net = ReluNet([np.eye(2), np.ones((1, 2))], [np.array([-0.5, -0.5]), np.zeros(1)])
    sec = plane_section(net, Plane(np.zeros(2), np.eye(2)), (0.0, 1.0, 0.0, 1.0), Box.uniform(2))
    assert sec.n_polygons == 4 and sec.regions_in_box == 4 and sec.regions_in_view == 4
    assert sorted(sec.areas.round(12)) == [0.25] * 4
    far = plane_section(net, Plane(np.zeros(2), np.eye(2)), (-1.0, 0.4, -1.0, 0.4), Box.uniform(2))
    assert far.regions_in_view == 1 and far.regions_in_box == 1
    assert far.box_area == pytest.approx(0.16)


def test_units_identically_zero_are_exempt_from_the_margin_check():
    """A second-layer unit with zero weights and bias is 0 everywhere: bit 0, and the pieces still verify."""
    W2 = np.array([[1.0, -1.0], [0.0, 0.0]])
    net = ReluNet([np.eye(2), W2, np.ones((1, 2))], [np.array([-0.5, -0.3]), np.zeros(2), np.zeros(1)])
    sec = plane_section(net, Plane(np.zeros(2), np.eye(2)), (0.0, 1.0, 0.0, 1.0), Box.uniform(2))
    assert sec.unverified == [] and _tuples(sec.patterns) == brute_force_patterns(net, Box.uniform(2))
    assert not sec.patterns[:, 3].any()


def test_plane_section_of_a_784_input_net():
    """784-20-20-10 with small weights, plane through three points given directly (no MNIST)."""
    base = random_net([784, 20, 20, 10], seed=7)
    net = ReluNet([w * 0.05 for w in base.weights], base.biases)
    rng = np.random.default_rng(7)
    P = rng.random((3, 784))
    plane = plane_through(P)
    box = Box.uniform(784)
    view = default_view(plane, box, [[0, 0], [1, 0], [0, 1]])
    sec = plane_section(net, plane, view, box)
    assert sec.regions_in_box >= 2 and sec.unverified == []
    assert sec.areas[sec.in_box].sum() == pytest.approx(sec.box_area, rel=1e-9, abs=1e-12)
    # the three points lie in the box section (convex combinations of box points stay in the box)
    tri = np.array([[0, 0], [1, 0], [0, 1]], float)
    assert sec.box_area >= polygon_area(tri) * (1 - 1e-9)
    st = np.column_stack([rng.uniform(view[0], view[1], 20000), rng.uniform(view[2], view[3], 20000)])
    X = plane.points(st)
    inb = box.contains(X)
    assert _tuples(net.patterns(X)[inb]) <= _tuples(sec.patterns[sec.in_box])
    np.testing.assert_allclose(plane.points([[0, 0], [1, 0], [0, 1]]), P, atol=1e-12)


def test_restricted_net_equals_the_full_net_on_the_plane():
    net = random_net([30, 7, 5, 3], seed=3)
    rng = np.random.default_rng(0)
    for plane in (orthonormal_plane(points=rng.random((3, 30))), plane_through(rng.random((3, 30)))):
        st = rng.normal(size=(500, 2))
        small = restrict_to_plane(net, plane)
        np.testing.assert_allclose(small.forward(st), net.forward(plane.points(st)), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(plane.coordinates(plane.points(st)), st, atol=1e-9)
    E = orthonormal_plane(points=rng.random((3, 30))).basis
    np.testing.assert_allclose(E @ E.T, np.eye(2), atol=1e-12)


def test_collinear_points_and_empty_views_are_errors():
    p = np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.5, 0.5]])
    with pytest.raises(ToolError, match="collinear"):
        plane_through(p)
    with pytest.raises(ToolError, match="collinear"):
        plane_through(np.array([[0.1, 0.2], [0.1, 0.2], [0.5, 0.0]]))
    net = random_net([2, 3, 2])
    with pytest.raises(ToolError, match="empty"):
        plane_section(net, Plane(np.zeros(2), np.eye(2)), (1.0, 0.0, 0.0, 1.0))


def test_class_pieces_cover_each_polygon_with_the_argmax():
    net = random_net([2, 5, 4, 3], seed=11)
    plane = Plane(np.zeros(2), np.eye(2))
    sec = plane_section(net, plane, (0.0, 1.0, 0.0, 1.0), Box.uniform(2))
    pieces = class_pieces(net, sec)
    total = np.zeros(sec.n_polygons)
    for verts, k, p in pieces:
        total[p] += polygon_area(verts)
        c = verts.mean(axis=0)
        assert net.predict(plane.points(c))[0] == k
    np.testing.assert_allclose(total, sec.areas, rtol=1e-9, atol=1e-12)


def test_fixed_pixels_outside_the_box_leave_no_box_section():
    """A plane whose fixed coordinates lie outside the box meets it nowhere: every polygon is out of box."""
    net = random_net([3, 4, 2], seed=1)
    plane = Plane(np.array([0.5, 0.5, 2.0]), np.array([[1.0, 0, 0], [0, 1.0, 0]]))
    sec = plane_section(net, plane, (-1, 1, -1, 1), Box.uniform(3))
    assert sec.regions_in_box == 0 and sec.regions_in_view >= 1 and not sec.in_box.any()
    assert sec.areas.sum() == pytest.approx(4.0)


# ---- 1-D ---------------------------------------------------------------------------------
@pytest.mark.parametrize("net_spec", NETS + [pytest.param(spec([50, 10, 10, 10, 3], 6), marks=pytest.mark.slow)],
                         ids=str)
def test_segments_equal_dense_sampling(net_spec):
    sizes, seed = list(net_spec.sizes), net_spec.seed
    net = net_spec.net()
    rng = np.random.default_rng(seed)
    A, B = rng.random((4, sizes[0])) * 2 - 0.5, rng.random((4, sizes[0])) * 2 - 0.5
    for sec in segment_sections(net, A, B):
        bp = sec.breakpoints
        assert sec.regions == len(bp) + 1 and sec.verified.all()
        assert np.all(np.diff(bp) > 0) and (len(bp) == 0 or (bp[0] > 0 and bp[-1] < 1))
        tau = np.linspace(0, 1, 40001)
        pats = net.patterns(sec.start + tau[:, None] * (sec.end - sec.start))
        assert _tuples(pats) <= _tuples(sec.patterns)
        piece = np.searchsorted(bp, tau, side="right")
        near = np.min(np.abs(tau[:, None] - bp[None, :]), axis=1) < 1e-7 if len(bp) else np.zeros(len(tau), bool)
        np.testing.assert_array_equal(pats[~near], sec.patterns[piece[~near]])
        for t in bp:                                      # the pattern really changes at every breakpoint
            x = sec.start + np.array([[t - 1e-7], [t + 1e-7]]) * (sec.end - sec.start)
            p = net.patterns(x)
            assert (p[0] != p[1]).any()
    # batched and single segments agree
    one = segment_section(net, A[0], B[0])
    np.testing.assert_allclose(one.breakpoints, segment_sections(net, A, B)[0].breakpoints, rtol=0, atol=1e-12)


def test_segment_along_a_direction_stops_at_the_box():
    net = random_net([3, 6, 5, 2], seed=2)
    box = Box.uniform(3)
    x = np.array([0.2, 0.5, 0.5])
    sec = segment_along(net, x, [1.0, 0.0, 0.0], box=box)
    np.testing.assert_allclose(sec.end, [1.0, 0.5, 0.5])
    assert sec.length == pytest.approx(0.8)
    ref = segment_section(net, x, [1.0, 0.5, 0.5])
    np.testing.assert_allclose(sec.breakpoints, ref.breakpoints, atol=1e-12)
    fixed = segment_along(net, x, [0, 2.0, 0], length=0.25)
    np.testing.assert_allclose(fixed.end, [0.2, 0.75, 0.5])
    with pytest.raises(ToolError, match="non-zero"):
        segment_along(net, x, [0, 0, 0], length=1)
    with pytest.raises(ToolError, match="leaves the box"):
        segment_along(net, np.array([1.0, 0.5, 0.5]), [1.0, 0, 0], box=box)


def test_seeded_pairs_are_distinct_and_reproducible():
    a = seeded_pairs(10000, 50, seed=3)
    assert a == seeded_pairs(10000, 50, seed=3) and a != seeded_pairs(10000, 50, seed=4)
    assert all(i != j and 0 <= i < 10000 and 0 <= j < 10000 for i, j in a)


def test_records_follow_the_schema(tmp_path):
    d = tmp_path / "run"
    d.mkdir()
    base = random_net([784, 12, 10, 10], seed=5)
    save_net(ReluNet([w * 0.05 for w in base.weights], base.biases), d / "weights.dat")
    write_section_files(d)
    sl = json.loads((d / "slice_0_1_2.json").read_text())
    _check_slice_schema(sl, 22)
    seg = json.loads((d / "segments.json").read_text())
    _check_segments_schema(seg, 12)


def _check_slice_schema(sl, n_hidden):
    assert isinstance(sl["regions_in_box"], int) and sl["regions_in_box"] >= 1
    assert sl["plane"]["parametrisation"].startswith("x = p_")
    polys = sl["polygons"]
    assert polys and all(set(p) >= {"pattern", "interior_point", "vertices", "in_box"} for p in polys)
    for p in polys:
        assert len(p["pattern"]) == n_hidden and set(p["pattern"]) <= {"0", "1"}
        assert len(p["interior_point"]) == 2 and len(p["vertices"]) >= 3
        assert all(len(v) == 2 for v in p["vertices"]) and isinstance(p["in_box"], bool)
    assert sl["regions_in_box"] == len({p["pattern"] for p in polys if p["in_box"]})
    assert sl["regions_in_view"] == len({p["pattern"] for p in polys})
    assert sl["unverified"] == [] and sl["box_area"] > 0


def _check_segments_schema(seg, k):
    assert len(seg["segments"]) == k and seg["pairs"] == k
    for s in seg["segments"]:
        assert s["from"] != s["to"] and isinstance(s["regions"], int)
        bp = s["breakpoints"]
        assert bp == sorted(bp) and all(0 <= t <= 1 for t in bp) and s["regions"] == len(bp) + 1
    assert seg["summary"]["median_regions"] == float(np.median([s["regions"] for s in seg["segments"]]))


# ---- count_linear_regions.py --slice / --segments ------------------------------------------
def _cli(args, cwd=ROOT):
    return run_cli("count_linear_regions.py", *args, cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def mnist_net_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("net")
    base = random_net([784, 12, 10, 10], seed=9)
    save_net(ReluNet([w * 0.05 for w in base.weights], base.biases), d / "weights.dat")
    return d


@pytest.mark.slow
def test_cli_slice_and_segments_write_the_specified_json(mnist_net_dir, tmp_path):
    w = mnist_net_dir / "weights.dat"
    r = _cli(["-w", str(w), "--slice", "0,1,2", "--segments", "6", "--segments-seed", "1", "-o", str(tmp_path)])
    assert r.returncode == 0, r.stderr
    assert "linear regions in the box" in r.stdout and "segments between MNIST test images" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["segments.json", "slice_0_1_2.json"]
    sl = json.loads((tmp_path / "slice_0_1_2.json").read_text())
    _check_slice_schema(sl, 22)
    assert sl["plane"]["test_images"] == [0, 1, 2] and sl["plane"]["labels"] == [7, 2, 1]
    assert sl["plane"]["parametrisation"] == "x = p_0 + s*(p_1 - p_0) + t*(p_2 - p_0)"
    seg = json.loads((tmp_path / "segments.json").read_text())
    _check_segments_schema(seg, 6)
    assert [(s["from"], s["to"]) for s in seg["segments"]] == seeded_pairs(10000, 6, 1)
    # the plane's coordinates: the vertices of the in-box polygons span the triangle of the three images
    v = np.array([x for p in sl["polygons"] if p["in_box"] for x in p["vertices"]])
    assert v.min() > -1e-9 and (v.sum(axis=1) <= 1 + 1e-9).all()


def test_cli_error_exits_2_with_one_line_and_writes_nothing(mnist_net_dir):
    before = sorted(p.name for p in mnist_net_dir.iterdir())
    r = _cli(["-w", str(mnist_net_dir / "weights.dat"), "--slice", "0,1"])
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and r.stderr.startswith("error: --slice")
    assert sorted(p.name for p in mnist_net_dir.iterdir()) == before


@pytest.mark.parametrize("args,match", [
    (["--slice", "a,b,c"], "--slice: expected three"),
    (["--slice", "0,1,2,3"], "--slice: expected three"),
    pytest.param(["--slice", "0,1,10000"], "--slice: index 10000 out of range", marks=pytest.mark.slow),  # MNIST
    (["--slice", "0,0,1"], "--slice 0,0,1: the three points are collinear"),
    (["--segments", "0"], "--segments must be >= 1"),
    (["--segments", "x"], "--segments: expected"),
    (["--segments", "3", "--segments-seed", "q"], "--segments-seed: expected"),
    pytest.param(["--slice", "0,1,10000", "--segments", "3"], "out of range", marks=pytest.mark.slow),
])
def test_cli_bad_section_flags(mnist_net_dir, args, match):
    sys.path.insert(0, str(ROOT))
    import count_linear_regions as clr
    before = sorted(p.name for p in mnist_net_dir.iterdir())
    with pytest.raises(ToolError, match=match):
        clr.main(["-w", str(mnist_net_dir / "weights.dat"), *args])
    assert sorted(p.name for p in mnist_net_dir.iterdir()) == before


def test_cli_needs_a_784_input_net(tmp_path):
    sys.path.insert(0, str(ROOT))
    import count_linear_regions as clr
    save_net(random_net([3, 4, 2]), tmp_path / "weights.dat")
    with pytest.raises(ToolError, match="784-input"):
        clr.main(["-w", str(tmp_path / "weights.dat"), "--segments", "3"])
    assert [p.name for p in tmp_path.iterdir()] == ["weights.dat"]
