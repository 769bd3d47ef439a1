"""The section files of a run: `slice_<i>_<j>_<k>[_<domain>].json` and `segments.json` (records and their writer)."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.core.patterns import pattern_string
from src.io.files import atomic_write_json, file_sha256
from src.io.mnist import load_mnist_arrays
from src.io.run_dir import SEGMENTS, slice_file_name
from src.sections.plane import Plane, PlaneSection, default_view, plane_section, plane_through
from src.sections.segments import SEGMENT_TOL, SegmentSection, segment_sections


def seeded_pairs(n_items: int, k: int, seed: int = 0) -> list[tuple[int, int]]:
    """k pairs (i, j), i != j, of indices in 0..n_items-1, drawn with numpy's default_rng(seed)."""
    if n_items < 2:
        raise ToolError(f"need at least two items to form pairs, got {n_items}")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(k):
        i, j = rng.choice(n_items, size=2, replace=False)
        out.append((int(i), int(j)))
    return out

# ---- JSON records --------------------------------------------------------------------


def section_record(section: PlaneSection) -> dict:
    """The counts, tolerances and polygons of a plane section as JSON-ready data."""
    polys = [{"pattern": pattern_string(p), "interior_point": [float(v) for v in c],
              "vertices": [[float(a), float(b)] for a, b in verts], "in_box": bool(ib), "area": float(ar),
              "verified": bool(ok)}
             for p, c, verts, ib, ar, ok in zip(section.patterns, section.interior_points, section.vertices,
                                                section.in_box, section.areas, section.verified)]
    s0, s1, t0, t1 = section.view
    return {"regions_in_box": section.regions_in_box, "regions_in_view": section.regions_in_view,
            "polygons_in_box": int(section.in_box.sum()), "polygons_total": section.n_polygons,
            "box_area": section.box_area, "view": {"s": [s0, s1], "t": [t0, t1]},
            "box_polygon": [[float(a), float(b)] for a, b in section.box_polygon],
            "unverified": section.unverified, "slivers_dropped": section.slivers_dropped,
            "tolerances": dict(section.tolerances), "seconds": round(section.seconds, 4), "polygons": polys}


def segment_record(sec: SegmentSection, i=None, j=None) -> dict:
    """One entry of segments.json."""
    d = {} if i is None else {"from": int(i), "to": int(j)}
    d.update({"regions": sec.regions, "breakpoints": [float(t) for t in sec.breakpoints],
              "length": sec.length, "regions_per_unit_length": sec.regions_per_unit_length,
              "unverified": int((~sec.verified).sum())})
    return d


def segments_summary(segs) -> dict:
    """Median / mean regions crossed and regions per unit of L2 length over segments."""
    r = np.array([s.regions for s in segs], np.float64)
    d = np.array([s.regions_per_unit_length for s in segs], np.float64)
    d = d[np.isfinite(d)]
    return {"segments": len(segs),
            "median_regions": float(np.median(r)) if len(r) else None,
            "mean_regions": float(r.mean()) if len(r) else None,
            "max_regions": int(r.max()) if len(r) else None,
            "median_regions_per_unit_length": float(np.median(d)) if len(d) else None,
            "mean_regions_per_unit_length": float(d.mean()) if len(d) else None,
            "unverified": int(sum((~s.verified).sum() for s in segs))}


def image_slice_record(net: ReluNet, plane: Plane, box: Box, indices, labels, margin: float = 0.12) -> dict:
    """slice_I_J_K.json without the weights block: the plane x = p_I + s(p_J − p_I) + t(p_K − p_I) through
    three images (plane_through), its view (the images and plane ∩ box, padded by `margin`) and section."""
    corners = [[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]
    i, j, k = (int(v) for v in indices)
    sec = plane_section(net, plane, default_view(plane, box, corners, margin), box)
    return {"domain": box.to_json(),
            "plane": {"test_images": [i, j, k], "labels": [int(v) for v in labels],
                      "parametrisation": f"x = p_{i} + s*(p_{j} - p_{i}) + t*(p_{k} - p_{i})",
                      "points_st": {str(i): corners[0], str(j): corners[1], str(k): corners[2]}},
            **section_record(sec)}


def image_segments_record(net: ReluNet, images, pairs, seed: int) -> dict:
    """segments.json without the weights block: exact 1-D sections between images[i] and images[j]."""
    t0 = time.perf_counter()
    X = np.asarray(images)
    segs = segment_sections(net, X[[i for i, _ in pairs]].astype(np.float64),
                            X[[j for _, j in pairs]].astype(np.float64))
    return {"pairs": len(pairs), "seed": int(seed), "tolerance": SEGMENT_TOL,
            "seconds": round(time.perf_counter() - t0, 4), "summary": segments_summary(segs),
            "segments": [segment_record(s, i, j) for s, (i, j) in zip(segs, pairs)]}

# ---- the step: count_linear_regions.py --slice / --segments ------------------------------------------


@dataclass
class SectionFile:
    """One file written by `write_image_sections`: its path, its JSON record and a one-line summary."""

    path: Path
    record: dict
    line: str


def _flag_ints(flag: str, value, n: int) -> list[int]:
    """n integers from "a,b,c" (or a sequence of ints); a ToolError naming the flag otherwise."""
    text = value if isinstance(value, str) else ",".join(map(str, np.atleast_1d(value)))
    try:
        v = [int(t) for t in str(text).split(",")]
    except ValueError:
        v = []
    if len(v) != n:
        raise ToolError(f"{flag}: expected {'three integers like 0,1,2' if n == 3 else 'an integer'}, got {value!r}")
    return v


def write_image_sections(weights, net: ReluNet, box: Box, out_dir, *, slice_images=None, segments=None,
                         segments_seed=0) -> list[SectionFile]:
    """Exact sections through MNIST test images: slice_I_J_K[_<domain>].json and/or segments.json in out_dir.

    slice_images: three test-image indices ("I,J,K" or a sequence), the 2-D section of the plane through
    them; segments: K, the 1-D sections of K seeded pairs (seed segments_seed). Every argument is
    checked before anything is written (ToolError naming the flag). Returns the files written, in order.
    """

    idx = _flag_ints("--slice", slice_images, 3) if slice_images is not None else []
    n_pairs = _flag_ints("--segments", segments, 1)[0] if segments is not None else 0
    seed = _flag_ints("--segments-seed", segments_seed, 1)[0]
    if segments is not None and n_pairs < 1:
        raise ToolError(f"--segments must be >= 1, got {n_pairs}")
    flag = "--slice" if slice_images is not None else "--segments"
    if net.n_inputs != 784:
        raise ToolError(f"{flag} uses MNIST test images and needs a 784-input network, this one has {net.n_inputs}")
    X, y = load_mnist_arrays("test")
    bad = [i for i in idx if not 0 <= i < len(X)]
    if bad:
        raise ToolError(f"--slice: index {bad[0]} out of range, the MNIST test set has {len(X)} images "
                        f"(0..{len(X) - 1})")
    slice_text = slice_images if isinstance(slice_images, str) else ",".join(map(str, idx))
    plane = None
    if idx:
        try:
            plane = plane_through(X[idx].astype("float64"))
        except ToolError as e:
            raise ToolError(f"--slice {slice_text}: {e}") from None
    meta = {"weights": str(weights), "weights_sha256": file_sha256(weights), "layer_sizes": net.layer_sizes}
    out = []
    if plane is not None:
        rec = image_slice_record(net, plane, box, idx, [int(y[i]) for i in idx])
        path = Path(out_dir) / slice_file_name(idx, box.name)
        atomic_write_json(path, {**meta, **rec})
        out.append(SectionFile(path, rec, f"{rec['regions_in_box']} linear regions in the box on the plane through "
                                          f"test images {slice_text} ({rec['regions_in_view']} in view, "
                                          f"{len(rec['unverified'])} unverified, {rec['seconds']:.2f} s): {path}"))
    if n_pairs:
        rec = image_segments_record(net, X, seeded_pairs(len(X), n_pairs, seed), seed)
        path = Path(out_dir) / SEGMENTS
        atomic_write_json(path, {**meta, **rec})
        s = rec["summary"]
        out.append(SectionFile(path, rec, f"{n_pairs} segments between MNIST test images: median "
                                          f"{s['median_regions']:g} linear regions crossed, "
                                          f"{s['median_regions_per_unit_length']:.3g} per unit of L2 length "
                                          f"({s['unverified']} unverified, {rec['seconds']:.2f} s): {path}"))
    return out
