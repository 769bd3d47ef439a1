"""Readers of networks (src/io/readers): weights.dat, PyTorch state_dict, ONNX; the ONNX writer.

The same net in the three formats loads to bit-identical float64 weights and gives the identical
pattern set; onnxruntime on an exported compressed net computes ReluNet.forward; anything a reader
cannot represent exactly is refused with one line naming the file and the layer or node.
"""

import numpy as np
import pytest
from conftest import load_script, random_net, run_cli

from src.core.box import Box
from src.core.errors import ToolError
from src.core.network import ReluNet
from src.counting.driver import count_run
from src.io.pattern_file import read_patterns
from src.io.readers import load_net
from src.io.readers.onnx_export import save_onnx
from src.io.readers.torch_state import from_state_dict, from_torch_module

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402
from src.io.weights_file import save_net

SUPPORTED = ("supported: Gemm, MatMul+Add, Conv, AveragePool, BatchNormalization, Relu, Flatten, Reshape, Dropout, "
             "Identity")
SIZES = [3, 5, 4, 2]


# ---- helpers ---------------------------------------------------------------------------------
def sequential_of(net: ReluNet) -> nn.Sequential:
    """nn.Sequential (float64) with exactly the weights of `net`."""
    layers = []
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if l < net.n_hidden_layers:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def same_bits(a: ReluNet, b: ReluNet) -> bool:
    return a.layer_sizes == b.layer_sizes and all(
        x.dtype == y.dtype == np.float64 and x.tobytes() == y.tobytes()
        for x, y in zip(a.weights + a.biases, b.weights + b.biases))


def save_all(net: ReluNet, d):
    d.mkdir(parents=True, exist_ok=True)
    paths = {"dat": d / "dat" / "weights.dat", "pt": d / "pt" / "model.pt", "onnx": d / "onnx" / "net.onnx"}
    for p in paths.values():
        p.parent.mkdir()
    save_net(net, paths["dat"])
    torch.save(sequential_of(net).state_dict(), paths["pt"])
    save_onnx(net, paths["onnx"])
    return paths


def onnx_file(path, nodes, inits, n_in=3, n_out=2, elem=TensorProto.DOUBLE, out="y"):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["batch", n_in])],
                              [helper.make_tensor_value_info(out, elem, ["batch", n_out])], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    path.write_bytes(model.SerializeToString())
    return path


def init(name, a):
    return numpy_helper.from_array(np.asarray(a), name=name)


def one_line_error(path=None):
    """Context: a ToolError of one line (naming `path` when given)."""
    class _Ctx:
        def __enter__(self):
            self.cm = pytest.raises(ToolError)
            self.info = self.cm.__enter__()
            return self.info

        def __exit__(self, *exc):
            ok = self.cm.__exit__(*exc)
            msg = str(self.info.value)
            assert "\n" not in msg, msg
            if path is not None:
                assert msg.startswith(f"{path}: "), msg
            return ok
    return _Ctx()


# ---- (1) the same net in three formats ---------------------------------------------------------
def test_three_formats_load_bit_identical_and_count_the_same_regions(tmp_path):
    net = random_net(SIZES, seed=3)
    paths = save_all(net, tmp_path)
    loaded = {k: load_net(p) for k, p in paths.items()}
    for k, got in loaded.items():
        assert same_bits(net, got), k
    pattern_sets = {}
    for k, p in paths.items():
        summary = count_run(p, backend="lp", progress=False, out_dir=p.parent)
        assert summary["complete"] is True
        pats = read_patterns(p.parent / summary["pattern_file"], net.layer_sizes)
        pattern_sets[k] = {tuple(map(int, row)) for row in pats}
        assert len(pattern_sets[k]) == summary["count"] > 1
    assert pattern_sets["dat"] == pattern_sets["pt"] == pattern_sets["onnx"]


def test_pth_suffix_and_state_dict_without_biases(tmp_path):
    net = random_net(SIZES, seed=4)
    sd = {f"layers.{i}.weight": torch.from_numpy(w) for i, w in enumerate(net.weights)}
    torch.save(sd, tmp_path / "w.PTH")
    got = load_net(tmp_path / "w.PTH")
    assert [w.tobytes() for w in got.weights] == [w.tobytes() for w in net.weights]
    assert all(not b.any() for b in got.biases)
    assert got.meta["path"] == str(tmp_path / "w.PTH")


def test_float32_state_dict_is_widened_exactly(tmp_path):
    net = random_net(SIZES, seed=5)
    model = sequential_of(net).float()
    torch.save(model.state_dict(), tmp_path / "m.pt")
    got = load_net(tmp_path / "m.pt")
    for a, t in zip(got.weights, [m.weight for m in model if isinstance(m, nn.Linear)]):
        assert a.dtype == np.float64 and np.array_equal(a, t.detach().double().numpy())


def test_torch_onnx_export_reads_back_bit_identical(tmp_path):
    """torch.onnx.export with the TorchScript exporter (dynamo=False; the default dynamo exporter
    needs onnxscript, which is not installed): Gemm(transB=1) + Relu, double."""
    net = random_net(SIZES, seed=3)
    model = sequential_of(net).eval()
    p = tmp_path / "torch.onnx"
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, SIZES[0], dtype=torch.float64),), str(p), dynamo=False,
                              input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    except (ImportError, ModuleNotFoundError, TypeError) as e:     # pragma: no cover - depends on torch
        pytest.skip(f"torch.onnx.export unavailable offline: {e}")
    got = load_net(p)
    assert same_bits(net, got)
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(0).uniform(size=(50, SIZES[0]))
    y = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, got.forward(x), rtol=1e-12, atol=1e-12)


def test_from_torch_module_nested_sequential_and_no_op_layers():
    net = random_net([4, 3, 3, 2], seed=6)
    seq = sequential_of(net)            # Linear ReLU Linear ReLU Linear
    lin0, lin1, lin2 = (m for m in seq if isinstance(m, nn.Linear))
    model = nn.Sequential(nn.Flatten(), nn.Sequential(lin0, nn.ReLU(inplace=True), nn.ReLU()), nn.Identity(),
                          nn.Sequential(nn.Sequential(lin1), nn.ReLU(), nn.Dropout(0.5)), lin2)
    got = from_torch_module(model)
    assert same_bits(net, got)
    assert same_bits(net, from_torch_module(model))
    assert same_bits(net, from_state_dict(seq.state_dict()))
    assert same_bits(net, from_state_dict(model.state_dict()))
    model.eval()
    x = np.random.default_rng(1).uniform(size=(20, 4))
    with torch.no_grad():
        np.testing.assert_allclose(model(torch.from_numpy(x)).numpy(), got.forward(x), rtol=1e-12, atol=1e-12)


def test_linear_without_bias_gives_zero_bias():
    m = nn.Sequential(nn.Linear(2, 3, bias=False), nn.ReLU(), nn.Linear(3, 1))
    net = from_torch_module(m)
    assert net.layer_sizes == [2, 3, 1] and not net.biases[0].any()


# ---- (2) the ONNX writer ------------------------------------------------------------------------
def compressed_net():
    """A net with an inactive unit and a fully stable (merged) first layer on [0,1]^2 (test_compress)."""
    from src.compress.lossless import compress
    from src.compress.run import stability_on

    rng = np.random.default_rng(1)
    W1 = np.array([[1.0, 2.0], [0.5, 0.5], [-1.0, -1.0]])
    b1 = np.array([1.0, 0.2, -0.1])
    W2 = np.array([[1.0, -3.0, 5.0], [-1.0, 3.0, 5.0], [0.3, 0.1, -0.7]])
    b2 = np.array([-0.4, 0.4, 0.05])
    W3, b3 = rng.normal(size=(2, 3)), rng.normal(size=2)
    net = ReluNet([W1, W2, W3], [b1, b2, b3])
    box = Box.uniform(2)
    c = compress(net, stability_on(net, box))
    assert c.net.n_params < net.n_params and c.net.n_hidden_layers >= 1
    return net, c.net, box


def test_onnxruntime_on_exported_compressed_net_equals_forward(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    net, cnet, box = compressed_net()
    p = save_onnx(cnet, tmp_path / "compressed.onnx")
    onnx.checker.check_model(onnx.load(str(p)))
    sess = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(2).uniform(size=(500, 2))
    y = sess.run(None, {"input": x})[0]
    assert y.dtype == np.float64 and y.shape == (500, cnet.n_outputs)
    np.testing.assert_allclose(y, cnet.forward(x), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(y, net.forward(x), rtol=1e-9, atol=1e-9)     # equal on the box
    assert same_bits(cnet, load_net(p))                                     # exact round trip
    # float32 export: every weight rounded to float32, outputs within float32 rounding
    p32 = save_onnx(cnet, tmp_path / "compressed32.onnx", dtype="float32")
    y32 = ort.InferenceSession(str(p32), providers=["CPUExecutionProvider"]).run(
        None, {"input": x.astype(np.float32)})[0]
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, cnet.forward(x), rtol=1e-5, atol=1e-5)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["compressed.onnx", "compressed32.onnx"]  # no temp files


def test_export_cli(tmp_path):
    from src.cli import onnx_export

    net = random_net(SIZES, seed=8)
    save_net(net, tmp_path / "w.dat")
    assert onnx_export.main(["-w", str(tmp_path / "w.dat"), "-o", str(tmp_path / "w.onnx")]) == 0
    assert same_bits(net, load_net(tmp_path / "w.onnx"))
    r = run_cli(onnx_export.main, "-w", tmp_path / "w.dat", "-o", tmp_path / "w.txt")
    assert r.returncode == 2 and r.stderr.count("\n") == 1


# ---- ONNX graphs the reader accepts -----------------------------------------------------------------
def test_onnx_matmul_add_and_gemm_attributes(tmp_path):
    rng = np.random.default_rng(9)
    W1, b1 = rng.normal(size=(3, 4)), rng.normal(size=4)       # MatMul weight is in x out
    W2, c2 = rng.normal(size=(4, 2)), rng.normal(size=(1, 2))  # Gemm without transB, alpha/beta powers of 2
    nodes = [helper.make_node("Flatten", ["x"], ["f"], name="flat"),
             helper.make_node("Reshape", ["f", "shape"], ["r"], name="reshape"),
             helper.make_node("MatMul", ["r", "W1"], ["m"], name="mm"),
             helper.make_node("Add", ["b1", "m"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["h"], name="relu"),
             helper.make_node("Identity", ["h"], ["i"], name="id"),
             helper.make_node("Gemm", ["i", "W2", "c2"], ["y"], name="gemm", alpha=2.0, beta=0.5)]
    p = onnx_file(tmp_path / "m.onnx", nodes, [init("W1", W1), init("b1", b1), init("W2", W2), init("c2", c2),
                                               init("shape", np.array([-1, 3], dtype=np.int64))])
    net = load_net(p)
    assert net.layer_sizes == [3, 4, 2]
    np.testing.assert_array_equal(net.weights[0], W1.T)
    np.testing.assert_array_equal(net.biases[0], b1)
    np.testing.assert_array_equal(net.weights[1], 2.0 * W2.T)
    np.testing.assert_array_equal(net.biases[1], 0.5 * c2[0])
    ort = pytest.importorskip("onnxruntime")
    x = rng.uniform(size=(30, 3))
    y = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(y, net.forward(x), rtol=1e-12, atol=1e-12)


# ---- (3) refusals ------------------------------------------------------------------------------------
def _gemm_net_nodes(extra_node, extra_inits=()):
    rng = np.random.default_rng(10)
    nodes = [helper.make_node("Gemm", ["x", "W1", "b1"], ["g1"], name="fc1", transB=1), extra_node,
             helper.make_node("Gemm", ["h", "W2", "b2"], ["y"], name="fc2", transB=1)]
    inits = [init("W1", rng.normal(size=(4, 3))), init("b1", np.zeros(4)),
             init("W2", rng.normal(size=(2, 4))), init("b2", np.zeros(2)), *extra_inits]
    return nodes, inits


def test_onnx_sigmoid_node_is_refused(tmp_path):
    nodes, inits = _gemm_net_nodes(helper.make_node("Sigmoid", ["g1"], ["h"], name="act1"))
    p = onnx_file(tmp_path / "sig.onnx", nodes, inits)
    with one_line_error(p) as e:
        load_net(p)
    assert str(e.value) == f"{p}: node 'act1' (Sigmoid) is not supported; {SUPPORTED}"


def test_onnx_conv_node_is_read(tmp_path):
    """Issue 22: a Conv is an affine map like any other (the conv readers: tests/test_readers_conv.py)."""
    conv = helper.make_node("Conv", ["x", "K"], ["c"], name="conv1")
    flat = helper.make_node("Flatten", ["c"], ["y"], name="flat")
    graph = helper.make_graph([conv, flat], "g",
                              [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 1, 5, 5])],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 9])],
                              initializer=[init("K", np.ones((1, 1, 3, 3)))])
    p = tmp_path / "conv.onnx"
    p.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    net = load_net(p)
    assert net.layer_sizes == [25, 9] and net.meta["input_shape"] == [1, 5, 5]
    x = np.random.default_rng(0).uniform(size=(4, 1, 5, 5))
    windows = np.lib.stride_tricks.sliding_window_view(x[:, 0], (3, 3), axis=(1, 2)).sum(axis=(-2, -1))
    np.testing.assert_allclose(net.forward(x.reshape(4, 25)), windows.reshape(4, 9), rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case,needle", [
    ("relu_first", "before any affine layer"),
    ("relu_last", "output layer must be linear"),
    ("branch", "branches"),
    ("reshape_layout", "change the feature layout"),
    ("flatten_axis0", "axis=0"),
    ("add_alone", "bias right after a MatMul"),
    ("trans_a", "transA=1"),
    ("bad_bias", "cannot be a bias"),
    ("two_inputs", "need exactly one"),
    ("int_weights", "not a floating-point type"),
    ("custom_domain", "(com.example.Relu) is not supported"),
])
def test_onnx_structural_refusals(tmp_path, case, needle):
    rng = np.random.default_rng(11)
    W1, W2 = rng.normal(size=(4, 3)), rng.normal(size=(2, 4))
    G = lambda i, o, w, name, **kw: helper.make_node("Gemm", [i, w], [o], name=name, transB=1, **kw)  # noqa: E731
    R = lambda i, o, name="relu": helper.make_node("Relu", [i], [o], name=name)  # noqa: E731
    inits = [init("W1", W1), init("W2", W2)]
    n_out = 2
    if case == "relu_first":
        nodes = [R("x", "r"), G("r", "a", "W1", "fc1"), R("a", "h", "r2"), G("h", "y", "W2", "fc2")]
    elif case == "relu_last":
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), G("h", "z", "W2", "fc2"), R("z", "y", "r2")]
    elif case == "branch":
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), helper.make_node("Add", ["h", "h"], ["s"], name="res"),
                 G("s", "y", "W2", "fc2")]
    elif case == "reshape_layout":
        inits.append(init("shape", np.array([-1, 2], dtype=np.int64)))
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), helper.make_node("Reshape", ["h", "shape"], ["y"], name="rs")]
    elif case == "flatten_axis0":
        nodes = [helper.make_node("Flatten", ["x"], ["f"], name="fl", axis=0), G("f", "a", "W1", "fc1"),
                 R("a", "h"), G("h", "y", "W2", "fc2")]
    elif case == "add_alone":
        inits.append(init("c", np.ones(4)))
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), helper.make_node("Add", ["h", "c"], ["s"], name="add"),
                 G("s", "y", "W2", "fc2")]
    elif case == "trans_a":
        nodes = [G("x", "a", "W1", "fc1", transA=1), R("a", "h"), G("h", "y", "W2", "fc2")]
    elif case == "bad_bias":
        inits.append(init("C", np.ones((3, 4))))
        nodes = [helper.make_node("Gemm", ["x", "W1", "C"], ["a"], name="fc1", transB=1), R("a", "h"),
                 G("h", "y", "W2", "fc2")]
    elif case == "two_inputs":
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), G("h", "y", "W2", "fc2")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, [1, 3]),
                                               helper.make_tensor_value_info("x2", TensorProto.DOUBLE, [1, 3])],
                                  [helper.make_tensor_value_info("y", TensorProto.DOUBLE, [1, 2])], initializer=inits)
        p = tmp_path / f"{case}.onnx"
        p.write_bytes(helper.make_model(graph).SerializeToString())
        with one_line_error(p) as e:
            load_net(p)
        assert needle in str(e.value)
        return
    elif case == "int_weights":
        inits = [init("W1", np.ones((4, 3), dtype=np.int64)), init("W2", W2)]
        nodes = [G("x", "a", "W1", "fc1"), R("a", "h"), G("h", "y", "W2", "fc2")]
    elif case == "custom_domain":
        nodes = [G("x", "a", "W1", "fc1"), helper.make_node("Relu", ["a"], ["h"], name="cr", domain="com.example"),
                 G("h", "y", "W2", "fc2")]
    if case == "reshape_layout":
        n_out = 2
    p = onnx_file(tmp_path / f"{case}.onnx", nodes, inits, n_out=n_out)
    with one_line_error(p) as e:
        load_net(p)
    assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize("content", [b"", b"not an onnx file \x00\xff" * 3])
def test_malformed_onnx_file(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    with one_line_error(p):
        load_net(p)


def test_missing_files_and_unknown_suffix(tmp_path):
    for name in ("none.dat", "none.pt", "none.onnx"):
        with one_line_error(tmp_path / name):
            load_net(tmp_path / name)
    p = tmp_path / "net.h5"
    p.write_bytes(b"x")
    with one_line_error(p) as e:
        load_net(p)
    assert ".dat" in str(e.value) and ".pt/.pth" in str(e.value) and ".onnx" in str(e.value) and ".h5" in str(e.value)
    with one_line_error(tmp_path / "weights"):
        load_net(tmp_path / "weights")


def _bad_pt(tmp_path, kind):
    p = tmp_path / "run" / f"{kind}.pt"
    p.parent.mkdir(exist_ok=True)
    if kind == "conv":
        torch.save({"conv.weight": torch.zeros(4, 1, 3, 3, dtype=torch.float64), "conv.bias": torch.zeros(4),
                    "fc.weight": torch.zeros(2, 36), "fc.bias": torch.zeros(2)}, p)
    elif kind == "chain":
        torch.save({"fc1.weight": torch.zeros(5, 3), "fc1.bias": torch.zeros(5),
                    "fc2.weight": torch.zeros(2, 4), "fc2.bias": torch.zeros(2)}, p)
    elif kind == "module":
        torch.save(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), p)
    elif kind == "garbage":
        p.write_bytes(b"PK\x03\x04 not really a zip")
    elif kind == "checkpoint":
        torch.save({"epoch": 3, "model": {"fc.weight": torch.zeros(2, 3)}}, p)
    elif kind == "batchnorm":
        m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
        torch.save(m.state_dict(), p)
    elif kind == "bias_len":
        torch.save({"fc1.weight": torch.zeros(5, 3), "fc1.bias": torch.zeros(4), "fc2.weight": torch.zeros(2, 5)}, p)
    return p


PT_CASES = {"conv": ("'conv.weight'", "Conv2d"), "chain": ("'fc2.weight'", "'fc1.weight'"),
            "module": ("state_dict()", "weights_only=True"), "garbage": ("PyTorch", ""),
            "checkpoint": ("'epoch'", "state_dict()"), "batchnorm": ("'1.weight'", "Linear"),
            "bias_len": ("'fc1.bias'", "5 outputs")}


@pytest.mark.parametrize("kind", list(PT_CASES))
def test_bad_state_dict_files_are_refused(tmp_path, kind):
    p = _bad_pt(tmp_path, kind)
    with one_line_error(p) as e:
        load_net(p)
    for needle in PT_CASES[kind]:
        assert needle in str(e.value), str(e.value)


@pytest.mark.parametrize("kind", ["conv", "chain", "module"])
def test_cli_refuses_bad_pt_with_one_line_and_writes_nothing(tmp_path, kind):
    p = _bad_pt(tmp_path, kind)
    r = run_cli(load_script("count_linear_regions.py").main, "-w", p, "-q")
    assert r.returncode == 2
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {p}: "), err
    assert [f.name for f in p.parent.iterdir()] == [p.name]


def test_module_refusals():
    with one_line_error() as e:
        from_torch_module(nn.Sequential(nn.Linear(3, 4), nn.Sigmoid(), nn.Linear(4, 2)))
    assert str(e.value).startswith("layer '1' (Sigmoid) is not supported")
    with one_line_error() as e:
        from_torch_module(nn.Sequential(nn.Linear(3, 4), nn.Sequential(nn.ReLU(), nn.Conv1d(1, 1, 1))))
    assert "layer '1.1' (Conv1d)" in str(e.value)
    with one_line_error() as e:
        from_torch_module(nn.Sequential(nn.ReLU(), nn.Linear(3, 2)))
    assert "before any affine layer" in str(e.value)
    with one_line_error() as e:
        from_torch_module(nn.Sequential(nn.Linear(3, 4), nn.ReLU()))
    assert "ends with a ReLU" in str(e.value)
    with one_line_error() as e:
        from_torch_module(nn.Sequential(nn.Flatten(0), nn.Linear(3, 2)))
    assert "Flatten" in str(e.value)

    class Sub(nn.Linear):
        pass

    with one_line_error() as e:
        from_torch_module(nn.Sequential(Sub(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert "(Sub) is not supported" in str(e.value)
    with one_line_error():
        from_torch_module(nn.ModuleList([nn.Linear(3, 2)]))


# ---- (4) the scripts, end to end ---------------------------------------------------------------------
@pytest.mark.slow
def test_count_cli_reads_onnx_and_pt(tmp_path):
    net = random_net([2, 3, 3, 2], seed=12)
    paths = save_all(net, tmp_path)
    counts = {}
    for k in ("onnx", "pt", "dat"):
        r = run_cli("count_linear_regions.py", "-w", paths[k], "-q", timeout=300)
        assert r.returncode == 0, r.stderr
        import json

        rec = json.loads((paths[k].parent / "regions_input_0_1.json").read_text())
        assert rec["complete"] is True
        counts[k] = (rec["count"], (paths[k].parent / rec["pattern_file"]).read_text().splitlines()[1:])
        from src.io.files import file_sha256

        assert rec["weights_sha256"] == file_sha256(paths[k])      # the hash of the file given with -w
    assert counts["onnx"] == counts["pt"] == counts["dat"]


def test_compress_and_transform_scripts_read_pt_and_onnx(tmp_path, capsys):
    net = random_net([2, 3, 3, 2], seed=13)
    paths = save_all(net, tmp_path)
    comp = load_script("compress_network.py")
    assert comp.main(["-w", str(paths["onnx"]), "-q", "--verify-points", "300"]) == 0
    c = load_net(paths["onnx"].parent / "compressed_input_0_1.dat")
    x = np.random.default_rng(3).uniform(size=(200, 2))
    np.testing.assert_allclose(c.forward(x), net.forward(x), rtol=1e-9, atol=1e-9)
    tr = load_script("transform_networks_using_all_nodes.py")
    assert tr.main(["-w", str(paths["pt"]), "-q", "--verify-points", "300"]) == 0
    assert (paths["pt"].parent / "two_hidden_all_nodes.dat").is_file()
    t = load_net(paths["pt"].parent / "two_hidden_all_nodes.dat")
    p = save_onnx(t, tmp_path / "two_hidden.onnx")          # transformed nets open in onnxruntime too
    ort = pytest.importorskip("onnxruntime")
    y = ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(y, t.forward(x), rtol=1e-12, atol=1e-12)


def test_damaged_onnx_files_load_or_fail_with_one_line(tmp_path):
    """Seeded byte flips and truncations of an exported net: each file loads or raises one ToolError line."""
    save_onnx(random_net(SIZES, seed=14), tmp_path / "a.onnx")
    raw = (tmp_path / "a.onnx").read_bytes()
    rng = np.random.default_rng(0)
    p = tmp_path / "m.onnx"
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(300):
        b = bytearray(raw)
        if i % 3 == 0:
            b = b[: int(rng.integers(0, len(b)))]
        else:
            for _ in range(int(rng.integers(1, 4))):
                b[int(rng.integers(0, len(b)))] = int(rng.integers(0, 256))
        p.write_bytes(bytes(b))
        try:
            net = load_net(p)
        except ToolError as e:
            assert "\n" not in str(e) and str(e).startswith(f"{p}: "), str(e)
            outcomes["refused"] += 1
        else:
            assert net.n_inputs == SIZES[0] or net.n_params > 0
            outcomes["loaded"] += 1
    assert outcomes["refused"] > 0 and outcomes["loaded"] > 0
