"""Property-based tests of every reader of a file that passes between steps.

Valid files (written by the project's own writers) are mutated: truncation, deleted or doubled
lines, swapped numbers, nan/inf/1e999, wrong `n` or `levels`, huge counts, stray bytes,
non-UTF-8, CRLF. Each mutated file must either read back exactly the intended data, or stop
with one ToolError line `FILE:LINE: ...` (never another exception). Seeded (derandomized).
"""
import json
import re
import warnings

import numpy as np
import pytest
from conftest import random_net, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from src.core.errors import ToolError
from src.counting.driver import Checkpointer, count_run
from src.counting.problem import PatternSink
from src.io.pattern_file import PatternWriter, read_patterns, write_patterns
from src.io.records import read_checkpoint, read_config, read_frontier, read_metrics, read_regions
from src.io.weights_file import read_weights, write_weights
from src.io.weights_file import save_net

SETTINGS = settings(max_examples=300, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
STRAY = [b"\x00", b"\xff", b"\xc3", b"#", b"@", b"\x1b", b"?", b"%", b"\x7f"]
KINDS = ["truncate", "delete_line", "double_line", "swap_numbers", "bad_number", "wrong_header", "huge_count",
         "stray_byte", "crlf"]
NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:e-?\d+)?")


# ---- mutations --------------------------------------------------------------------------------------
def mutate(data, raw: bytes, kind: str, header: bytes):
    """(mutated bytes, swapped number spans or None)."""
    lines = raw.split(b"\n")
    if kind == "truncate":
        return raw[: data.draw(st.integers(0, len(raw) - 1))], None
    if kind == "delete_line":
        i = data.draw(st.integers(0, len(lines) - 1))
        return b"\n".join(lines[:i] + lines[i + 1:]), None
    if kind == "double_line":
        i = data.draw(st.integers(0, len(lines) - 1))
        return b"\n".join(lines[:i + 1] + lines[i:]), None
    if kind in ("swap_numbers", "bad_number"):
        spans = [m.span() for m in NUMBER.finditer(raw)]
        a = data.draw(st.integers(0, len(spans) - 1))
        if kind == "bad_number":
            bad = data.draw(st.sampled_from([b"nan", b"NaN", b"inf", b"-inf", b"Infinity", b"1e999", b"-1e999"]))
            return raw[: spans[a][0]] + bad + raw[spans[a][1]:], None
        b = data.draw(st.integers(0, len(spans) - 1))
        (a0, a1), (b0, b1) = sorted([spans[a], spans[b]])
        if a0 == b0:
            return raw, None
        return raw[:a0] + raw[b0:b1] + raw[a1:b0] + raw[a0:a1] + raw[b1:], ((a0, a1), (b0, b1))
    if kind in ("wrong_header", "huge_count"):
        m = re.search(header, raw)
        if m is None:
            return raw, None
        if kind == "huge_count":
            new = data.draw(st.sampled_from([b"10000000000000", b"99999999999999999999", b"-5", b"0"]))
        else:
            new = str(data.draw(st.integers(1, 9))).encode()
        return raw[: m.start(1)] + new + raw[m.end(1):], None
    if kind == "stray_byte":
        i = data.draw(st.integers(0, len(raw)))
        return raw[:i] + data.draw(st.sampled_from(STRAY)) + raw[i:], None
    if kind == "crlf":
        return raw.replace(b"\n", b"\r\n"), None
    raise AssertionError(kind)


def expect_one_line_error(path, fn):
    """fn() raises ToolError `PATH:LINE: ...` on one line; returns nothing."""
    with pytest.raises(ToolError) as e:
        fn()
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert re.match(re.escape(str(path)) + r":\d+: \S", msg), msg


def read_or_error(path, fn):
    """(result, None) or (None, message) — any exception other than ToolError fails the test."""
    try:
        return fn(), None
    except ToolError as e:
        msg = str(e)
        assert "\n" not in msg and re.match(re.escape(str(path)) + r":\d+: \S", msg), msg
        return None, msg


# ---- weights.dat ---------------------------------------------------------------------------------------
NET = random_net([3, 4, 2, 2], seed=5)


@pytest.fixture(scope="module")
def weights_raw(tmp_path_factory):
    p = tmp_path_factory.mktemp("w") / "weights.dat"
    write_weights(p, NET.weights, NET.biases, model_path="m.pt", accuracy=0.5)
    return p.read_bytes()


def _flat(wf):
    return np.concatenate([w.ravel() for w in wf.weights] + [b.ravel() for b in wf.biases])


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_weights_reader(tmp_path, weights_raw, data, kind):
    raw, swap = mutate(data, weights_raw, kind, rb"n = \[(\d+)" if kind == "huge_count" else rb"levels = (\d+)")
    p = tmp_path / "weights.dat"
    p.write_bytes(raw)
    orig = np.concatenate([w.ravel() for w in NET.weights] + [b.ravel() for b in NET.biases])
    changed = [a for a, b in zip(raw.split(b"\n"), weights_raw.split(b"\n")) if a != b]
    in_comment = bool(changed) and all(a.startswith(b"//") for a in changed) and \
        raw.count(b"\n") == weights_raw.count(b"\n")
    if (kind == "bad_number" and not in_comment) or (kind == "huge_count" and raw != weights_raw):
        expect_one_line_error(p, lambda: read_weights(p))
        return
    wf, err = read_or_error(p, lambda: read_weights(p))
    if kind == "crlf":
        assert err is None and np.array_equal(_flat(wf), orig)
        return
    if wf is None:
        return
    assert wf.layer_sizes == NET.layer_sizes
    got = _flat(wf)
    if swap is not None:
        # the intended data: the two values exchanged (the model path / accuracy lines carry no weights)
        vals = [float(m.group()) for m in NUMBER.finditer(weights_raw)]
        spans = [m.span() for m in NUMBER.finditer(weights_raw)]
        k1, k2 = spans.index(swap[0]), spans.index(swap[1])
        start = next(k for k, (a, _) in enumerate(spans) if a > weights_raw.index(b"W = ["))
        want = np.array(vals[start:])
        if k1 >= start and k2 >= start:
            want[[k1 - start, k2 - start]] = want[[k2 - start, k1 - start]]
            assert np.array_equal(got, want)
        else:
            assert got.size == orig.size
        return
    assert np.array_equal(got, orig)          # harmless mutations (a comment line, trailing text) only


# ---- pattern files --------------------------------------------------------------------------------------
SIZES = [3, 4, 3, 1]
PATS = np.random.default_rng(3).integers(0, 2, size=(12, 7)).astype(np.uint8)
PATS = np.unique(PATS, axis=0)


@pytest.fixture(scope="module")
def patterns_raw(tmp_path_factory):
    p = tmp_path_factory.mktemp("p") / "activation_pattern_abhinav_input_0_1.dat"
    write_patterns(p, SIZES, PATS)
    return p.read_bytes()


@SETTINGS
@given(data=st.data(), kind=st.sampled_from(KINDS))
def test_pattern_reader(tmp_path, patterns_raw, data, kind):
    raw, swap = mutate(data, patterns_raw, kind, rb"n = \[\d+, (\d+)")
    p = tmp_path / "activation_pattern_abhinav_input_0_1.dat"
    p.write_bytes(raw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got, err = read_or_error(p, lambda: read_patterns(p, SIZES, allow_empty=True))
    if kind in ("bad_number", "stray_byte") or (kind in ("wrong_header", "huge_count") and raw != patterns_raw):
        assert err is not None
        return
    if kind == "crlf":
        assert err is None and np.array_equal(got, PATS)
        return
    if got is None:
        return
    # the intended data: the lines of the mutated file that are complete patterns, duplicates dropped
    rows = [ln.split() for ln in raw.split(b"\n")[1:] if ln.strip()]
    want = np.array([[int(t) for t in r] for r in rows], np.uint8).reshape(-1, 7)
    _, first = np.unique(want, axis=0, return_index=True)
    assert np.array_equal(got, want[np.sort(first)])
    if kind == "delete_line":
        assert len(got) >= len(PATS) - 1


# ---- JSON files between steps -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def json_files(tmp_path_factory):
    """Real files written by the steps' own writers: name -> (bytes, reader)."""
    from src.training.train import TrainConfig

    d = tmp_path_factory.mktemp("j")
    out = {}
    cfg = TrainConfig(run_id=3, arch="mlp:6-6", epochs=2, train_subset=100)
    (d / "config.json").write_text(json.dumps(cfg.to_json(), indent=2))
    out["config"] = ((d / "config.json").read_bytes(), read_config)
    metrics = {"epochs": [{"epoch": 1, "loss": 1.5, "train_acc": 0.5, "test_acc": 0.45, "seconds": 0.1},
                          {"epoch": 2, "loss": 1.25, "train_acc": 0.625, "test_acc": 0.5, "seconds": 0.1}],
               "test_accuracy": 0.5, "train_accuracy": 0.625, "seconds": 0.2, "complete": True}
    (d / "metrics.json").write_text(json.dumps(metrics, indent=2))
    out["metrics"] = ((d / "metrics.json").read_bytes(), read_metrics)
    save_net(random_net([3, 4, 3, 1], 0), d / "weights.dat")
    count_run(d / "weights.dat", backend="lp", progress=False)
    out["regions"] = ((d / "regions_input_0_1.json").read_bytes(), read_regions)
    summary = json.loads((d / "regions_input_0_1.json").read_text())
    meta = {"weights_sha256": summary["weights_sha256"], "tol": 1e-6, "domain": "input_0_1",
            "layer_sizes": [3, 4, 3, 1]}
    (d / "frontier_input_0_1.json").write_text(json.dumps({"backend": "lp", **meta, "frontier": ["0110", "1"]},
                                                          indent=2))
    out["frontier"] = ((d / "frontier_input_0_1.json").read_bytes(), read_frontier)
    w = PatternWriter(d / "p.dat", [3, 4, 3, 1], partial=d / ".p.dat.partial")
    sink = PatternSink(w)
    sink.add(np.array([1, 0, 1, 1, 0, 1, 0], np.uint8))
    ck = Checkpointer(d / "checkpoint_input_0_1.json", w, sink, None, meta)
    ck.backend = "lp"
    ck.save(["0110001", "1"])
    w.abort()
    out["checkpoint"] = ((d / "checkpoint_input_0_1.json").read_bytes(), read_checkpoint)
    return out


def _strict_loads(raw: bytes):
    """Python's own strict parse of the mutated bytes (None when it is not strict JSON)."""
    def no(_):
        raise ValueError

    try:
        v = json.loads(raw.decode("utf-8"), parse_constant=no)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    ok = [True]

    def walk(x):
        if isinstance(x, float) and not np.isfinite(x):
            ok[0] = False
        elif isinstance(x, dict):
            for y in x.values():
                walk(y)
        elif isinstance(x, list):
            for y in x:
                walk(y)
    walk(v)
    return v if ok[0] else None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["config", "metrics", "regions", "frontier", "checkpoint"])
def test_json_reader(tmp_path, json_files, name):
    raw0, reader = json_files[name]
    p = tmp_path / f"{name}.json"
    p.write_bytes(raw0)
    assert reader(p) == json.loads(raw0)                     # the valid file reads back exactly

    @SETTINGS
    @given(data=st.data(), kind=st.sampled_from(KINDS))
    def check(data, kind):
        header = {"metrics": rb'"epoch": (\d+)', "config": rb'"hidden_sizes": \[\s*(\d+)'}.get(
            name, rb'"layer_sizes": \[\s*(\d+)')
        raw, _ = mutate(data, raw0, kind, header)
        p.write_bytes(raw)
        got, err = read_or_error(p, lambda: reader(p))
        intended = _strict_loads(raw)
        if intended is None:
            assert err is not None                           # not strict JSON: always refused
        elif got is not None:
            assert got == intended                           # accepted: exactly what the file says
        if kind == "crlf":
            assert got == json.loads(raw0)

    check()


# ---- the scripts: one error line, exit 2, nothing written -------------------------------------------------
@pytest.mark.parametrize("script,extra", [("count_linear_regions.py", []), ("compress_network.py", []),
                                          ("transform_networks_using_all_nodes.py", ["--no-verify"])])
@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "non-utf8", "inf"])
def test_scripts_refuse_damaged_weights_cleanly(tmp_path, weights_raw, script, extra, damage):
    raw = {"truncated": weights_raw[: len(weights_raw) // 2], "non-utf8": weights_raw.replace(b"W = [", b"W = [\xff"),
           "inf": weights_raw.replace(b"B = [\n", b"B = [\n1e999,", 1)}[damage]
    p = tmp_path / "weights.dat"
    p.write_bytes(raw)
    r = run_cli(script, "-w", p, "-q", *extra, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(r"error: " + re.escape(str(p)) + r":\d+: ", lines[0]), r.stderr
    assert sorted(x.name for x in tmp_path.iterdir()) == ["weights.dat"]
