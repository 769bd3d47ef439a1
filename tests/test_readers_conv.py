"""Readers of convolutional feed-forward nets (issue 22, part 1): src/io/readers/layers.py and the
ONNX and PyTorch readers built on it.

Independent references: torch's own float64 forward pass (torch.nn.functional and the modules) for
every layer option; onnxruntime for the ONNX files (float32: its CPU Conv has no double kernel); the
brute force (tests/bruteforce.py) and patterns taken from torch's pre-activations for region sets of
tiny conv nets; refusals with their exact one-line messages, and nothing written by the CLI.
"""
import json
import warnings

import numpy as np
import pytest
from conftest import TOL, brute_force_patterns, load_script, run_cli

from src.core.box import Box
from src.core.errors import ToolError
from src.counting.walk_driver import run_search
from src.io.pattern_file import read_patterns
from src.io.readers import layers, load_net
from src.io.readers.layers import (AvgPool2d, Conv2d, Dense, Relu, avgpool2d_affine, batchnorm_affine, compose,
                                   compose_net, conv2d_affine)
from src.io.readers.onnx_model import SUPPORTED
from src.io.readers.torch_state import SUPPORTED_MODULES, from_torch_module
from src.stability.interval import interval_bounds

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import torch.nn.functional as F  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

ATOL = RTOL = 1e-10


def close(a, b, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


def apply_affine(M, b, x):
    """The affine map (M, b) on a batch of tensors x (flattened in C order)."""
    return x.reshape(len(x), -1) @ M.T + b


def randomize_batchnorm(model, gen):
    """Random running statistics and affine parameters for every BatchNorm (so folding is not trivial)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None:
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen, dtype=m.running_mean.dtype))
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen, dtype=m.running_var.dtype))
                if m.weight is not None:
                    m.weight.copy_(torch.randn(m.num_features, generator=gen, dtype=m.weight.dtype))
                    m.bias.copy_(torch.randn(m.num_features, generator=gen, dtype=m.bias.dtype))
    return model


def seeded(build, seed, dtype=torch.float64):
    """build() under a fixed torch seed, in `dtype`, eval mode, random BatchNorm statistics."""
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = build()
    return randomize_batchnorm(model.to(dtype), gen).eval()


def torch_forward(model, x):
    with torch.no_grad():
        return model(torch.from_numpy(x).to(next(model.parameters()).dtype)).double().numpy()


def one_line(fn, *args, **kw) -> str:
    with pytest.raises(ToolError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg, msg
    return msg


# ---- (1) each layer's dense conversion against torch's float64 forward pass ------------------------------
CONV_CASES = {   # name: (in_shape, out_channels, kernel, stride, padding, dilation, groups, bias)
    "plain": ((1, 6, 6), 2, 3, 1, 0, 1, 1, True),
    "stride": ((2, 7, 6), 3, 3, 2, 0, 1, 1, True),
    "stride_hw": ((1, 7, 8), 2, (2, 3), (3, 1), 0, 1, 1, True),
    "padding": ((2, 5, 5), 2, 3, 1, 1, 1, 1, True),
    "padding_hw": ((1, 5, 6), 2, (3, 2), 2, (2, 1), 1, 1, False),
    "dilation": ((1, 7, 7), 2, 3, 1, 0, 2, 1, True),
    "dilation_pad_stride": ((2, 8, 7), 2, (2, 3), (2, 1), (3, 2), (3, 2), 1, True),
    "groups": ((4, 5, 5), 6, 3, 1, 1, 1, 2, True),
    "depthwise": ((3, 6, 5), 3, 2, 2, 0, 1, 3, False),
    "kernel_1x1": ((3, 4, 4), 2, 1, 1, 0, 1, 1, True),
    "kernel_bigger_than_input": ((1, 2, 2), 1, 3, 1, 1, 1, 1, True),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv2d_affine_equals_torch_conv2d(case):
    in_shape, out_c, k, s, p, d, g, has_bias = CONV_CASES[case]
    conv = seeded(lambda: nn.Conv2d(in_shape[0], out_c, k, s, p, d, g, bias=has_bias), 1)
    w = conv.weight.detach().numpy()
    b = conv.bias.detach().numpy() if has_bias else None
    M, c = conv2d_affine(w, b, in_shape, s, p, d, g)
    x = np.random.default_rng(2).normal(size=(20, *in_shape))
    ref = torch_forward(conv, x)
    assert M.shape == (ref[0].size, int(np.prod(in_shape)))
    close(apply_affine(M, c, x), ref.reshape(20, -1))
    # each entry is one weight or 0: the weights appear exactly, as often as the windows use them
    assert set(np.unique(M)) <= set(np.unique(w)) | {0.0}


@pytest.mark.filterwarnings("ignore:Using padding=.same.")
@pytest.mark.parametrize("kernel,dilation", [(3, 1), (4, 1), ((2, 3), (2, 1))])
def test_conv_padding_same_and_valid(kernel, dilation):
    """padding='same' (torch puts the odd extra pixel at the end) and 'valid' through the module reader."""
    for padding in ("same", "valid"):
        def build():
            conv = nn.Conv2d(2, 2, kernel, padding=padding, dilation=dilation)
            n = conv(torch.zeros(1, 2, 6, 7)).numel()
            return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(n, 3))
        model = seeded(build, 3)
        x = np.random.default_rng(4).uniform(size=(10, 2, 6, 7))
        net = from_torch_module(model, input_shape=(2, 6, 7))
        close(net.forward(x.reshape(10, -1)), torch_forward(model, x))


POOL_CASES = {   # name: (in_shape, kernel, stride, padding, count_include_pad, divisor_override)
    "kernel2": ((2, 6, 6), 2, None, 0, True, None),
    "kernel3_stride1": ((1, 5, 6), 3, 1, 0, True, None),
    "stride_hw": ((2, 7, 7), (3, 2), (2, 3), 0, True, None),
    "pad_include": ((2, 5, 5), 3, 2, 1, True, None),
    "pad_exclude": ((2, 5, 5), 3, 2, 1, False, None),
    "pad_hw_exclude": ((1, 6, 5), (2, 4), 1, (1, 2), False, None),
    "divisor": ((1, 4, 4), 2, 1, 1, True, 3),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_avgpool2d_affine_equals_torch_avg_pool2d(case):
    in_shape, k, s, p, cip, div = POOL_CASES[case]
    M, c = avgpool2d_affine(in_shape, k, s, p, count_include_pad=cip, divisor_override=div)
    x = np.random.default_rng(5).normal(size=(20, *in_shape))
    ref = F.avg_pool2d(t64(x), k, s, p, count_include_pad=cip, divisor_override=div).numpy()
    assert not c.any()
    close(apply_affine(M, c, x), ref.reshape(20, -1))


@pytest.mark.parametrize("shape", [(5,), (3, 4), (3, 4, 5)])
def test_batchnorm_affine_equals_torch_eval_batchnorm(shape):
    bn = {1: nn.BatchNorm1d, 2: nn.BatchNorm1d, 3: nn.BatchNorm2d}[len(shape)](shape[0], eps=1e-3)
    bn = seeded(lambda: bn, 6)
    M, c = batchnorm_affine(bn.running_mean.numpy(), bn.running_var.numpy(), bn.weight.detach().numpy(),
                            bn.bias.detach().numpy(), bn.eps, shape)
    x = np.random.default_rng(7).normal(size=(20, *shape))
    close(apply_affine(M, c, x), torch_forward(bn, x).reshape(20, -1))
    assert np.count_nonzero(M) == M.shape[0]                     # diagonal


@pytest.mark.parametrize("first_dense", [False, True])
def test_composition_both_directions_any_block_size(monkeypatch, first_dense):
    """The composed matrix is the same built forward (columns, apply) or backward (rows, apply_t, the
    transposed maps), in blocks of any size; and it equals the layers applied one after the other."""
    gen = np.random.default_rng(8)
    chain = [Conv2d(gen.normal(size=(4, 1, 3, 2)), gen.normal(size=4), (2, 6, 7), stride=(1, 2), padding=(1, 0, 2, 1),
                    dilation=(2, 1), groups=2, label="c1"),
             AvgPool2d((4, 5, 4), (2, 3), (1, 1), (1, 0, 0, 2), count_include_pad=False, label="p"),
             layers.batchnorm(gen.random(4), 0.5 + gen.random(4), gen.normal(size=4), gen.normal(size=4), 1e-3,
                              (4, 5, 4), label="bn"),
             Conv2d(gen.normal(size=(2, 4, 2, 2)), None, (4, 5, 4), label="c2"),
             Dense(gen.normal(size=(3, 24)), gen.normal(size=3), label="fc")]
    if first_dense:
        chain.insert(0, Dense(gen.normal(size=(84, 5)), gen.normal(size=84), label="fc0"))
    x = gen.normal(size=(10, chain[0].n_in))
    h = x
    for layer in chain:
        h = layer.apply(h) + layer.bias
    results = []
    for block in (1 << 22, 40):
        monkeypatch.setattr(layers, "BLOCK_ENTRIES", block)      # 40: one vector per block
        for direction in ("forward", "backward", "auto"):
            W, b = compose(chain, direction=direction)
            close(x @ W.T + b, h, rtol=1e-12, atol=1e-12)
            results.append((W, b))
    for W, b in results[1:]:
        close(W, results[0][0], rtol=1e-13, atol=1e-13)
        assert np.array_equal(b, results[0][1])


def test_dense_size_limit_is_refused_before_allocating(monkeypatch):
    conv = Conv2d(np.ones((4, 1, 3, 3)), None, (1, 30, 30), padding=1, label="layer 'conv' (Conv2d)")
    items = [conv, Relu("relu"), Dense(np.ones((2, 3600)), label="layer 'fc' (Linear)")]
    monkeypatch.setattr(layers, "MAX_DENSE_ENTRIES", 3600 * 900 - 1)
    msg = one_line(compose_net, items, prefix="cnn.onnx: ")
    assert msg == ("cnn.onnx: layer 1 of the net (layer 'conv' (Conv2d)): its dense matrix would be 3600 x 900 = "
                   "3,240,000 entries, over the limit of 3,239,999 (the net holds dense float64 matrices)")
    monkeypatch.setattr(layers, "MAX_DENSE_ENTRIES", 3600 * 900)
    assert compose_net(items).layer_sizes == [900, 3600, 2]


# ---- (2) whole nets: the module reader against torch, layer options combined ---------------------------------
def cnn_all_options():
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, stride=1, padding=1, dilation=1), nn.BatchNorm2d(4), nn.ReLU(),
        nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
        nn.Conv2d(4, 4, (2, 3), stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2), nn.ReLU(inplace=True),
        nn.Dropout(0.3), nn.AvgPool2d(2), nn.Identity(), nn.Flatten(), nn.BatchNorm1d(16),
        nn.Sequential(nn.Linear(16, 6), nn.ReLU(), nn.ReLU()), nn.Linear(6, 5), nn.BatchNorm1d(5), nn.Linear(5, 3))


def test_module_reader_equals_torch_forward_all_options():
    model = seeded(cnn_all_options, 9)
    net = from_torch_module(model, input_shape=(2, 7, 7))
    # three ReLU blocks: conv1+bn | pool+conv2 | pool+flatten+bn+linear | linear+bn+linear (output)
    assert net.layer_sizes == [98, 4 * 7 * 7, 4 * 5 * 4, 6, 3]
    assert net.meta["input_shape"] == [2, 7, 7]
    assert net.meta["layers"][0] == ["layer '0' (Conv2d)", "layer '1' (BatchNorm2d)"]
    assert net.meta["layers"][-1] == ["layer '12' (Linear)", "layer '13' (BatchNorm1d)", "layer '14' (Linear)"]
    x = np.random.default_rng(10).uniform(size=(50, 2, 7, 7))
    close(net.forward(x.reshape(50, -1)), torch_forward(model, x))
    # the pre-activations are the inputs of torch's ReLUs (flattened: channel, row, column)
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().flatten(1).clone()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    torch_forward(model, x)
    for h in hooks:
        h.remove()
    pre = net.preactivations(x.reshape(50, -1))
    close(pre[0], seen[0].numpy())
    close(pre[1], seen[1].numpy())
    close(pre[2], seen[2].numpy())


def test_linear_layers_without_relu_between_are_composed():
    model = seeded(lambda: nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3),
                                         nn.Dropout(), nn.Linear(3, 2)), 11)
    net = from_torch_module(model)
    assert net.layer_sizes == [4, 5, 2]
    x = np.random.default_rng(12).normal(size=(30, 4))
    close(net.forward(x), torch_forward(model, x))
    W = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    close(net.weights[0], W[1] @ W[0], rtol=1e-14, atol=1e-14)


def test_single_linear_chains_stay_bit_identical():
    """A chain of one Linear is taken as it is (the MLP readers' exactness is unchanged)."""
    model = seeded(lambda: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)), 13)
    net = from_torch_module(model)
    for w, m in zip(net.weights, [model[0], model[2]]):
        assert w.tobytes() == m.weight.detach().numpy().tobytes()


# ---- (3) ONNX: torch -> ONNX -> reader, against onnxruntime and the module reader -----------------------------
def export(model, in_shape, path, dtype=torch.float32):
    model = model.to(dtype).eval()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (torch.zeros(1, *in_shape, dtype=dtype),), str(path), dynamo=False,
                              input_names=["x"], output_names=["y"], dynamic_axes={"x": {0: "b"}, "y": {0: "b"}})
    except (ImportError, ModuleNotFoundError, TypeError) as e:     # pragma: no cover - depends on torch
        pytest.skip(f"torch.onnx.export unavailable offline: {e}")
    return path


def run_ort(path, x):
    ort = pytest.importorskip("onnxruntime")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


ONNX_MODELS = {
    "conv_stride_pad": (lambda: nn.Sequential(nn.Conv2d(1, 3, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(27, 4), nn.ReLU(), nn.Linear(4, 2)), (1, 6, 6)),
    "dilation_groups": (lambda: nn.Sequential(nn.Conv2d(2, 4, (3, 2), dilation=(1, 2), groups=2), nn.ReLU(),
                                              nn.Conv2d(4, 2, 2, padding=(1, 0)), nn.ReLU(), nn.Flatten(),
                                              nn.Linear(16, 3)), (2, 5, 5)),
    "pool": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(),
                                   nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False),
                                   nn.AvgPool2d(3, stride=2), nn.Flatten(), nn.Linear(8, 3)), (1, 5, 5)),
    "pool_include_pad": (lambda: nn.Sequential(nn.AvgPool2d(3, stride=2, padding=1), nn.Conv2d(2, 2, 2), nn.ReLU(),
                                               nn.Flatten(), nn.Dropout(), nn.Linear(8, 2)), (2, 6, 6)),
    "batchnorm": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(18, 5), nn.BatchNorm1d(5), nn.ReLU(), nn.Linear(5, 2)), (1, 4, 4)),
}


@pytest.mark.parametrize("name", list(ONNX_MODELS))
def test_torch_onnx_reader_against_onnxruntime_and_module_reader(tmp_path, name):
    build, in_shape = ONNX_MODELS[name]
    model = seeded(build, 14, dtype=torch.float32)
    p = export(model, in_shape, tmp_path / f"{name}.onnx")
    net = load_net(p)
    assert net.meta["input_shape"] == list(in_shape)
    x = np.random.default_rng(15).uniform(size=(40, *in_shape))
    # onnxruntime in float32 (its CPU Conv takes float only): equal up to float32 rounding
    y = run_ort(p, x.astype(np.float32))
    close(net.forward(x.reshape(40, -1)), y, rtol=1e-4, atol=1e-5)
    # the module reader on the same float32 weights, in float64; the exporter folds an eval BatchNorm
    # after a Conv into the Conv's float32 weights, so that model agrees to float32 rounding only
    ref = from_torch_module(model, input_shape=in_shape)
    assert ref.layer_sizes == net.layer_sizes
    tight = name != "batchnorm"
    close(net.forward(x.reshape(40, -1)), ref.forward(x.reshape(40, -1)),
          rtol=1e-12 if tight else 1e-5, atol=1e-12 if tight else 1e-5)
    close(ref.forward(x.reshape(40, -1)), torch_forward(model.double(), x), rtol=1e-12, atol=1e-12)


def image_graph(tmp_path, name, nodes, inits, in_shape, n_out, elem=TensorProto.FLOAT):
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", elem, ["batch", *in_shape])],
                              [helper.make_tensor_value_info("y", elem, ["batch", n_out])],
                              initializer=[numpy_helper.from_array(np.asarray(a), name=k) for k, a in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    p = tmp_path / f"{name}.onnx"
    p.write_bytes(model.SerializeToString())
    return p


def test_hand_built_onnx_graph_every_node_against_onnxruntime(tmp_path):
    """Conv with asymmetric pads, BatchNormalization (inference), AveragePool with asymmetric pads and
    count_include_pad=1, Dropout with its mask output, Reshape to [-1, n], MatMul+Add, Identity."""
    g = np.random.default_rng(16)
    f32 = lambda *s: g.normal(size=s).astype(np.float32)  # noqa: E731
    inits = {"K": f32(3, 2, 2, 3), "KB": f32(3), "s": f32(3), "bb": f32(3), "m": f32(3),
             "v": (0.5 + g.random(3)).astype(np.float32), "shape": np.array([-1, 3 * 3 * 3], dtype=np.int64),
             "W": f32(27, 4), "c": f32(4), "W2": f32(2, 4), "c2": f32(2)}
    nodes = [helper.make_node("Conv", ["x", "K", "KB"], ["c1"], name="conv", pads=[1, 0, 0, 2], strides=[1, 2]),
             helper.make_node("BatchNormalization", ["c1", "s", "bb", "m", "v"], ["n1"], name="bn", epsilon=1e-3),
             helper.make_node("Relu", ["n1"], ["r1"], name="relu1"),
             helper.make_node("AveragePool", ["r1"], ["p1"], name="pool", kernel_shape=[2, 2], strides=[2, 1],
                              pads=[0, 1, 1, 0], count_include_pad=1),
             helper.make_node("Dropout", ["p1"], ["d1", "mask"], name="drop"),
             helper.make_node("Reshape", ["d1", "shape"], ["f1"], name="reshape"),
             helper.make_node("MatMul", ["f1", "W"], ["mm"], name="mm"),
             helper.make_node("Add", ["mm", "c"], ["a1"], name="add"),
             helper.make_node("Relu", ["a1"], ["r2"], name="relu2"),
             helper.make_node("Identity", ["r2"], ["i2"], name="id"),
             helper.make_node("Gemm", ["i2", "W2", "c2"], ["y"], name="fc", transB=1)]
    p = image_graph(tmp_path, "every_node", nodes, inits, (2, 5, 5), 2)
    net = load_net(p)
    # conv: (5+1-2)//1+1 = 5 rows, (5+2-3)//2+1 = 3 cols; pool: (5+1-2)//2+1 = 3, (3+1-2)//1+1 = 3
    assert net.layer_sizes == [50, 45, 4, 2]
    assert net.meta["layers"] == [["node 'conv' (Conv)", "node 'bn' (BatchNormalization)"],
                                  ["node 'pool' (AveragePool)", "node 'mm' (MatMul)"], ["node 'fc' (Gemm)"]]
    x = g.uniform(size=(40, 2, 5, 5))
    close(net.forward(x.reshape(40, -1)), run_ort(p, x.astype(np.float32)), rtol=1e-4, atol=1e-5)
    # and against torch's functional float64 forward of the same (float32) constants
    c = {k: t64(v) for k, v in inits.items()}
    h = F.conv2d(F.pad(t64(x), (0, 2, 1, 0)), c["K"], c["KB"], stride=(1, 2))
    h = F.relu(F.batch_norm(h, c["m"], c["v"], c["s"], c["bb"], eps=np.float32(1e-3).item()))
    h = F.avg_pool2d(F.pad(h, (1, 0, 0, 1)), 2, stride=(2, 1)).flatten(1)
    h = F.relu(h @ c["W"] + c["c"])
    close(net.forward(x.reshape(40, -1)), (h @ c["W2"].T + c["c2"]).numpy())


# ---- (4) region sets of tiny conv nets: the lp backend against the brute force and torch -------------------
TINY = {   # <= 6 hidden units each: 64 brute-force LPs
    "stride": (lambda: nn.Sequential(nn.Conv2d(1, 1, 2, stride=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2),
                                     nn.ReLU(), nn.Linear(2, 1)), (1, 4, 4)),
    "padding": (lambda: nn.Sequential(nn.Conv2d(1, 1, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(),
                                      nn.Linear(4, 2), nn.ReLU(), nn.Linear(2, 1)), (1, 3, 3)),
    "dilation": (lambda: nn.Sequential(nn.Conv2d(1, 1, 2, dilation=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2),
                                       nn.ReLU(), nn.Linear(2, 1)), (1, 4, 4)),
    "groups": (lambda: nn.Sequential(nn.Conv2d(2, 2, (2, 1), groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2),
                                     nn.ReLU(), nn.Linear(2, 1)), (2, 2, 2)),
    "pooling": (lambda: nn.Sequential(nn.Conv2d(1, 1, 2), nn.ReLU(),
                                      nn.AvgPool2d(2, stride=1, padding=1, count_include_pad=False), nn.Flatten(),
                                      nn.Linear(9, 2), nn.ReLU(), nn.Linear(2, 1)), (1, 3, 3)),
    "batchnorm": (lambda: nn.Sequential(nn.Conv2d(1, 1, 2), nn.BatchNorm2d(1), nn.ReLU(), nn.Flatten(),
                                        nn.Linear(4, 2), nn.BatchNorm1d(2), nn.ReLU(), nn.Linear(2, 1)), (1, 3, 3)),
    "conv_conv": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Conv2d(2, 1, 2, padding=1), nn.ReLU(),
                                        nn.Flatten(), nn.Linear(4, 1)), (1, 2, 2)),
}


def centred(model, in_shape, seed):
    """Biases moved so that, per channel, every hidden unit's pre-activation is 0 on average at points near the
    box's centre (each ReLU's hyperplanes cut the box): the bias of the last module with one before each ReLU."""
    gen = torch.Generator().manual_seed(seed)
    x = 0.5 + 0.1 * torch.randn((8, *in_shape), generator=gen, dtype=torch.float64)
    last_biased = None
    with torch.no_grad():
        for m in model:
            if isinstance(m, nn.ReLU):
                dims = [0] + list(range(2, x.dim()))
                last_biased.bias -= x.mean(dim=dims)
                x = x - x.mean(dim=dims, keepdim=True).reshape(1, -1, *([1] * (x.dim() - 2)))
            elif getattr(m, "bias", None) is not None:
                last_biased = m
            x = m(x)
    return model


def lp_pattern_set(net, box):
    fixed = interval_bounds(net, box).fixed_bits()
    found = []
    out = run_search(net, box, fixed, TOL, lambda b: found.append(tuple(int(v) for v in b)))
    assert len(found) == len(set(found)), "a pattern was emitted twice"
    return set(found), out


def torch_patterns(model, x):
    """Activation patterns from torch's own pre-activations (the inputs of its ReLUs)."""
    seen = []
    hooks = [m.register_forward_pre_hook(lambda m, a: seen.append(a[0].detach().flatten(1).clone()))
             for m in model.modules() if isinstance(m, nn.ReLU)]
    torch_forward(model, x)
    for h in hooks:
        h.remove()
    pats = torch.cat([(s > 0) for s in seen], dim=1).numpy().astype(np.uint8)
    return {tuple(int(v) for v in p) for p in np.unique(pats, axis=0)}


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_conv_net_regions_equal_brute_force(name):
    build, in_shape = TINY[name]
    model = centred(seeded(build, 17), in_shape, 18)
    net = from_torch_module(model, input_shape=in_shape)
    assert net.n_hidden_units <= 6
    box = Box.uniform(net.n_inputs)
    found, out = lp_pattern_set(net, box)
    assert found == brute_force_patterns(net, box)
    assert len(found) >= 16, len(found)       # a net whose regions are worth comparing (20-53 here)
    x = box.sample(3000, np.random.default_rng(19)).reshape(3000, *in_shape)
    assert torch_patterns(model, x) <= found


def tiny_cnn_onnx(path, channels=1, seed=20):
    """Input 1x4x4 -> Conv(channels, 3x3) -> ReLU -> Flatten -> Linear 2 -> ReLU -> Linear 2, as float64 ONNX."""
    build = lambda: nn.Sequential(nn.Conv2d(1, channels, 3), nn.ReLU(), nn.Flatten(),  # noqa: E731
                                  nn.Linear(4 * channels, 2), nn.ReLU(), nn.Linear(2, 2))
    model = centred(seeded(build, seed), (1, 4, 4), seed + 1)
    return export(model, (1, 4, 4), path, dtype=torch.float64), model


def check_cli_count(p, model):
    r = run_cli(load_script("count_linear_regions.py").main, "-w", p, "--backend", "lp", "-q")
    assert r.returncode == 0, r.stderr
    rec = json.loads((p.parent / "regions_input_0_1.json").read_text())
    net = load_net(p)
    assert rec["complete"] is True and rec["layer_sizes"] == net.layer_sizes
    pats = read_patterns(p.parent / rec["pattern_file"], net.layer_sizes)
    found = {tuple(int(v) for v in row) for row in pats}
    assert len(found) == rec["count"] == len(pats)
    box = Box.uniform(net.n_inputs)
    assert found == brute_force_patterns(net, box)
    ref = from_torch_module(model, input_shape=(1, 4, 4))       # the same weights by the other reader
    for a, b in zip(ref.weights + ref.biases, net.weights + net.biases):
        assert np.array_equal(a, b)
    assert torch_patterns(model, box.sample(3000, np.random.default_rng(21)).reshape(3000, 1, 4, 4)) <= found


def test_count_cli_on_tiny_cnn_onnx_equals_brute_force(tmp_path):
    p, model = tiny_cnn_onnx(tmp_path / "tiny_cnn.onnx")
    assert load_net(p).layer_sizes == [16, 4, 2, 2]
    check_cli_count(p, model)


@pytest.mark.slow
def test_count_cli_on_two_channel_cnn_onnx_equals_brute_force(tmp_path):
    p, model = tiny_cnn_onnx(tmp_path / "tiny_cnn2.onnx", channels=2, seed=22)
    assert load_net(p).layer_sizes == [16, 8, 2, 2]                  # 10 hidden units: 1,024 LPs
    check_cli_count(p, model)


# ---- (5) refusals: one line, exact, nothing written --------------------------------------------------------
def refusal_graph(tmp_path, case):
    g = np.random.default_rng(23)
    inits = {"K": g.normal(size=(2, 1, 2, 2)).astype(np.float32), "W": g.normal(size=(2, 8)).astype(np.float32)}
    conv = helper.make_node("Conv", ["x", "K"], ["c"], name="/0/Conv")
    relu = helper.make_node("Relu", ["c"], ["r"], name="/1/Relu")
    tail = [helper.make_node("Flatten", ["h"], ["f"], name="/3/Flatten"),
            helper.make_node("Gemm", ["f", "W"], ["y"], name="/4/Gemm", transB=1)]
    if case == "maxpool":
        mid = [helper.make_node("MaxPool", ["r"], ["h"], name="/2/MaxPool", kernel_shape=[2, 2], strides=[1, 1])]
        in_shape = (1, 4, 4)
    elif case == "sigmoid":
        relu = helper.make_node("Sigmoid", ["c"], ["r"], name="/1/Sigmoid")
        mid = [helper.make_node("Identity", ["r"], ["h"], name="/2/Identity")]
        in_shape = (1, 3, 3)
    elif case == "residual":
        inits["K2"] = g.normal(size=(2, 2, 1, 1)).astype(np.float32)
        mid = [helper.make_node("Conv", ["r", "K2"], ["c2"], name="/2/Conv"),
               helper.make_node("Add", ["c2", "r"], ["h"], name="/2/Add")]
        in_shape = (1, 3, 3)
    elif case == "ceil_mode":
        mid = [helper.make_node("AveragePool", ["r"], ["h"], name="/2/AveragePool", kernel_shape=[2, 2],
                                strides=[2, 2], ceil_mode=1)]
        in_shape = (1, 4, 4)
    elif case == "bn_training":
        inits.update({k: np.ones(2, dtype=np.float32) for k in ("s", "b", "m", "v")})
        mid = [helper.make_node("BatchNormalization", ["r", "s", "b", "m", "v"], ["h", "rm", "rv"], name="/2/BN",
                                training_mode=1)]
        in_shape = (1, 3, 3)
    elif case == "huge_input":
        mid = [helper.make_node("Identity", ["r"], ["h"], name="/2/Identity")]
        in_shape = (1, 100_000, 100_000)
    elif case == "auto_pad":
        conv = helper.make_node("Conv", ["x", "K"], ["c"], name="/0/Conv", auto_pad="SAME_UPPER")
        mid = [helper.make_node("Identity", ["r"], ["h"], name="/2/Identity")]
        in_shape = (1, 2, 2)
    graph = helper.make_graph([conv, relu, *mid, *tail], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *in_shape])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
                              initializer=[numpy_helper.from_array(a, name=k) for k, a in inits.items()])
    p = tmp_path / case / "cnn.onnx"
    p.parent.mkdir()
    p.write_bytes(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString())
    return p


ONNX_REFUSALS = {
    "maxpool": f"node '/2/MaxPool' (MaxPool) is not supported; supported: {SUPPORTED}",
    "sigmoid": f"node '/1/Sigmoid' (Sigmoid) is not supported; supported: {SUPPORTED}",
    "residual": ("node '/2/Add' (Add) is not supported: it adds two tensors computed from the input (a residual "
                 f"connection: the graph branches); supported: {SUPPORTED}"),
    "ceil_mode": "node '/2/AveragePool' (AveragePool): ceil_mode=1 is not supported; only ceil_mode=0 (floor)",
    "bn_training": ("node '/2/BN' (BatchNormalization): 3 outputs (the training form, which updates running "
                    "statistics); only the inference form with one output is supported"),
    "auto_pad": "node '/0/Conv' (Conv): auto_pad='SAME_UPPER' is not supported; only NOTSET (explicit pads) and VALID",
    "huge_input": ("node '/0/Conv' (Conv): a tensor of shape [1, 100000, 100000] has 10,000,000,000 values per "
                   "sample, over the limit of 200,000,000"),
}


@pytest.mark.parametrize("case", list(ONNX_REFUSALS))
def test_onnx_refusals_exact_one_line(tmp_path, case):
    p = refusal_graph(tmp_path, case)
    assert one_line(load_net, p) == f"{p}: {ONNX_REFUSALS[case]}"


@pytest.mark.parametrize("case", ["maxpool", "residual"])
def test_cli_refuses_with_one_line_and_writes_nothing(tmp_path, case):
    p = refusal_graph(tmp_path, case)
    r = run_cli(load_script("count_linear_regions.py").main, "-w", p, "--backend", "lp", "-q")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: {p}: {ONNX_REFUSALS[case]}"]
    assert [f.name for f in p.parent.iterdir()] == [p.name]


def test_torch_onnx_export_of_maxpool_is_refused(tmp_path):
    model = seeded(lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                         nn.Linear(2, 2)), 24, dtype=torch.float32)
    p = export(model, (1, 3, 3), tmp_path / "maxpool.onnx")
    msg = one_line(load_net, p)
    assert msg.startswith(f"{p}: node '/2/MaxPool' (MaxPool) is not supported; supported: Gemm"), msg


TORCH_REFUSALS = {
    "maxpool": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)),
                f"layer '2' (MaxPool2d) is not supported; supported: {SUPPORTED_MODULES}"),
    "sigmoid": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.Sequential(nn.Sigmoid()), nn.Flatten(),
                                      nn.Linear(8, 2)),
                f"layer '1.0' (Sigmoid) is not supported; supported: {SUPPORTED_MODULES}"),
    "ceil_mode": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.AvgPool2d(2, ceil_mode=True),
                                        nn.Flatten(), nn.Linear(8, 2)),
                  "layer '2' (AvgPool2d): ceil_mode=True is not supported; only ceil_mode=False (floor)"),
    "padding_mode": (lambda: nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, padding_mode="reflect"), nn.ReLU(),
                                           nn.Flatten(), nn.Linear(18, 2)),
                     "layer '0' (Conv2d): padding_mode='reflect' is not supported; only 'zeros'"),
    "no_running_stats": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.BatchNorm2d(2, track_running_stats=False),
                                               nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)),
                         "layer '1' (BatchNorm2d): no running statistics (track_running_stats=False): it normalises "
                         "by the batch's statistics, which is not an affine map of one input"),
    "linear_on_image": (lambda: nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Linear(2, 2)),
                        "layer '2' (Linear): its input has shape [2, 2, 2]; a Linear acts on flat inputs only, "
                        "put an nn.Flatten() before it"),
    "channels": (lambda: nn.Sequential(nn.Conv2d(2, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2)),
                 "layer '0' (Conv2d): the weight [2, 2, 2, 2] with groups=1 takes 2 input channels (and needs C_out "
                 "divisible by groups), but its input has 1 channels (shape [1, 3, 3])"),
}


@pytest.mark.parametrize("case", list(TORCH_REFUSALS))
def test_torch_module_refusals_exact_one_line(case):
    build, expected = TORCH_REFUSALS[case]
    model = seeded(build, 25)
    assert one_line(from_torch_module, model, input_shape=(1, 3, 3)) == expected


def test_torch_conv_without_input_shape_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 2))
    assert one_line(from_torch_module, model) == (
        "layer '0' (Conv2d): a Conv2d needs a (channels, height, width) input, and there is no input shape; "
        "give it as from_torch_module(module, input_shape=(C, H, W))")
    assert one_line(from_torch_module, model, input_shape=(1, 1, 3, 3)).startswith("input_shape=(1, 1, 3, 3): need")


def test_seed_commands_on_a_cnn_onnx_transform_compress_export(tmp_path):
    """Issue 22: a CNN exported to ONNX goes through count, transform and compress as any net does, and the
    compressed net, written back as ONNX, computes on its box what torch's CNN computes (onnxruntime)."""
    ort = pytest.importorskip("onnxruntime")
    p, model = tiny_cnn_onnx(tmp_path / "cnn.onnx", channels=1, seed=20)
    r = run_cli(load_script("count_linear_regions.py").main, "-w", p, "-q")
    assert r.returncode == 0, r.stderr
    rec = json.loads((tmp_path / "regions_input_0_1.json").read_text())
    r = run_cli(load_script("transform_networks_using_all_nodes.py").main, "-w", p, "-i",
                tmp_path / rec["pattern_file"], "--no-mnist", "-q")
    assert r.returncode == 0, r.stderr
    tr = json.loads((tmp_path / "two_hidden_feasible_input_0_1.json").read_text())
    assert tr["patterns"] == rec["count"] and tr["verification"]["ok"] is True
    assert tr["verification"]["interior"]["with_interior_point"] == rec["count"]
    two = load_net(tmp_path / "two_hidden_feasible_input_0_1.dat")
    assert len(two.layer_sizes) == 4                                    # two hidden layers
    lo, hi = 0.3, 0.32
    r = run_cli(load_script("compress_network.py").main, "-w", p, "--lo", str(lo), "--hi", str(hi), "-q")
    assert r.returncode == 0, r.stderr
    cp = json.loads((tmp_path / f"compressed_input_{lo}_{hi}.json").read_text())
    assert cp["verification"]["passed"] is True and sum(cp["units_after"]) < sum(cp["units_before"])
    out = tmp_path / "compressed.onnx"
    r = run_cli(__import__("src.cli.onnx_export", fromlist=["main"]).main,
                "-w", tmp_path / f"compressed_input_{lo}_{hi}.dat", "-o", out)
    assert r.returncode == 0, r.stderr
    x = Box.uniform(16, lo, hi).sample(500, np.random.default_rng(23))
    sess = ort.InferenceSession(str(out))
    got = sess.run(None, {sess.get_inputs()[0].name: x})[0]
    want = torch_forward(model, x.reshape(500, 1, 4, 4))
    close(got, want)


def test_zoo_run_model_pt_is_read_with_its_config(tmp_path):
    """A zoo CNN run's model.pt: the model is rebuilt from config.json beside it and read like the module;
    without config.json, or with a config of another architecture, one line refuses it."""
    from src.io.records import write_config
    from src.training.models import build_model

    model = build_model("cnn:c2k5s4-fc8", dropout=0.3, seed=5)
    with torch.no_grad():                                            # biases that are not all zero
        for p in model.parameters():
            if p.dim() == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    torch.save(model.state_dict(), tmp_path / "model.pt")
    refused = one_line(load_net, tmp_path / "model.pt")               # no config.json yet
    assert "a Conv2d weight?" in refused and "config.json" in refused
    conf = {"run_id": 100, "arch": "cnn:c2k5s4-fc8", "hidden_sizes": [72, 8], "l1": 0.0, "adv": "none",
            "dropout": 0.3}
    write_config(tmp_path / "config.json", conf)
    net = load_net(tmp_path / "model.pt")
    ref = from_torch_module(model.double().eval())
    assert net.layer_sizes == ref.layer_sizes == [784, 72, 8, 10]
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert np.array_equal(a, b)
    x = np.random.default_rng(7).random((200, 784))
    close(net.forward(x), torch_forward(model, x))
    write_config(tmp_path / "config.json", dict(conf, arch="cnn:c3k5s4-fc8"))
    msg = one_line(load_net, tmp_path / "model.pt")
    assert msg.startswith(f"{tmp_path / 'model.pt'}: does not fit the architecture 'cnn:c3k5s4-fc8'"), msg
