import numpy as np
import pytest
import torch
from torch import nn

from src.core.errors import ToolError
from src.io.readers import load_net
from src.io.readers.torch_state import from_state_dict, from_torch_module
from src.training.models import ARCHS, build_model, linear_weights, parse_arch
from src.io.weights_file import save_net

# The zoo as the issue lists it, typed independently of src/training/models.py.
EXPECTED = {
    "fcnn1": [10], "fcnn1a": [30], "fcnn1b": [15], "fcnn1c": [200], "fcnn1d": [500], "fcnn1e": [3000],
    "fcnn1f": [10000],
    "fcnn2": [25, 25], "fcnn2a": [50, 50], "fcnn2b": [100, 100], "fcnn2c": [200, 200], "fcnn2d": [400, 400],
    "fcnn2e": [800, 800], "fcnn2f": [1600, 1600], "fcnn2g": [900, 500], "fcnn2h": [1000, 1000],
    "fcnn3": [25] * 3, "fcnn3a": [50] * 3, "fcnn3b": [100] * 3, "fcnn3c": [200] * 3,
    "fcnn4": [25] * 4, "fcnn4a": [50] * 4, "fcnn4b": [100] * 4, "fcnn4c": [5, 5, 5, 10], "fcnn4d": [5, 10, 5, 10],
    "fcnn4e": [5, 10, 10, 10], "fcnn4f": [10] * 4, "fcnn4g": [5, 7, 10, 10], "fcnn4h": [10, 5, 10, 10],
    "fcnn4i": [7, 7, 10, 10], "fcnn4j": [8, 8, 10, 10], "fcnn4l": [10, 9, 8, 7], "fcnn4m": [20] * 4,
    "fcnn4n": [30] * 4,
    "fcnn5": [25] * 5, "fcnn5a": [50] * 5, "fcnn5b": [100] * 5, "fcnn5c": [10, 10, 5, 5, 5],
    "fcnn6": [5] * 6, "fcnn6a": [5, 5, 5, 10, 10, 10], "fcnn6b": [8] * 6,
}


def test_zoo_matches_issue():
    assert set(ARCHS) == set(EXPECTED)
    for name, widths in EXPECTED.items():
        assert parse_arch(name) == widths


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_build_every_zoo_model(name):
    net = from_torch_module(build_model(name))
    assert net.layer_sizes == [784] + EXPECTED[name] + [10]


def test_mlp_names_and_errors():
    assert parse_arch("mlp:8-8") == [8, 8]
    assert parse_arch("mlp:3") == [3]
    for bad in ("mlp:", "mlp:8-", "mlp:0-4", "mlp:a", "fcnn9", "FCNN4B", ""):
        with pytest.raises(ToolError) as e:
            parse_arch(bad)
        if bad != "mlp:0-4":
            assert "fcnn4b" in str(e.value) and "mlp:W1-W2" in str(e.value)


def test_structure_dropout_and_init():
    m = build_model("mlp:300-7", dropout=0.3, seed=0)
    kinds = [type(x).__name__ for x in m]
    assert kinds == ["Linear", "ReLU", "Linear", "ReLU", "Dropout", "Linear"]
    assert m[4].p == 0.3
    assert [type(x).__name__ for x in build_model("mlp:5-7")] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    for lin in linear_weights(m):
        assert lin.shape[0] in (300, 7, 10)
    for mod in m:
        if isinstance(mod, nn.Linear):
            assert torch.count_nonzero(mod.bias) == 0
    # Kaiming normal (fan_in, ReLU gain): std sqrt(2/784) for the first layer
    std = float(m[0].weight.detach().std())
    assert abs(std - np.sqrt(2 / 784)) < 0.05 * np.sqrt(2 / 784)
    # seeded init is reproducible and leaves the global RNG alone
    torch.manual_seed(5)
    a = torch.rand(1)
    torch.manual_seed(5)
    m1, m2 = build_model("mlp:4", seed=3), build_model("mlp:4", seed=3)
    assert torch.rand(1) == a
    assert torch.equal(m1[0].weight, m2[0].weight)
    with pytest.raises(ToolError, match="dropout"):
        build_model("mlp:4", dropout=1.0)


@pytest.mark.parametrize("arch,dropout", [("fcnn1", 0.0), ("fcnn4c", 0.3), ("fcnn2b", 0.0), ("mlp:8-8", 0.5)])
def test_relunet_forward_equals_torch(arch, dropout, tmp_path):
    torch.manual_seed(0)
    model = build_model(arch, dropout=dropout, seed=1)
    with torch.no_grad():  # non-zero biases so they are checked too
        for mod in model:
            if isinstance(mod, nn.Linear):
                mod.bias.normal_(0, 0.1)
    model.eval()
    x = torch.rand(64, 784, generator=torch.Generator().manual_seed(2))
    net = from_state_dict(model.state_dict())
    with torch.no_grad():
        ref64 = model.double()(x.double()).numpy()
        ref32 = model.float()(x).double().numpy()
    out = net.forward(x.double().numpy())
    assert np.abs(out - ref64).max() < 1e-6
    assert np.abs(out - ref32).max() < 1e-4
    # and through weights.dat
    save_net(net, tmp_path / "w.dat")
    back = load_net(tmp_path / "w.dat")
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        assert np.array_equal(a, b)                 # the file round trip is bit-exact
    np.testing.assert_allclose(back.forward(x.double().numpy()), out, rtol=1e-12, atol=1e-12)


# ---- the CNN zoo (issue 22 part 2) ------------------------------------------------------------------------
# name -> the hidden sizes of the dense equivalent, worked out by hand from the conv output formula
# floor((n + 2p - k) / s) + 1: cnn_tiny 28 -> (28-7)/7+1 = 4, 4x4x4 = 64; cnn_small (28-5)/3+1 = 8, 4x8x8 = 256,
# (8-3)/2+1 = 3, 8x3x3 = 72; with padding and pooling 28 -> 28 (p1) -> 14 (avg2) -> (14-3)/2+1 = 6, 8x6x6 = 288
CNN_EXPECTED = {
    "cnn_tiny": [64, 16],
    "cnn_small": [256, 72, 32],
    "cnn:c4k3p1-avg2-c8k3s2-fc32": [3136, 288, 32],
    "cnn:c3k5": [3 * 24 * 24],
    "cnn:c2k4s2-avg3s1-fc7-fc5": [2 * 13 * 13, 7, 5],
}


def relu_output_sizes(model):
    """Sizes of every ReLU's output on one image, by running the module (the independent reference)."""
    sizes = []
    hooks = [m.register_forward_hook(lambda m, i, o: sizes.append(o[0].numel())) for m in model
             if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        out = model.eval()(torch.zeros(1, 784))
    for h in hooks:
        h.remove()
    assert out.shape == (1, 10)
    return sizes


@pytest.mark.parametrize("arch", sorted(CNN_EXPECTED))
def test_cnn_arch_hidden_sizes_and_dense_equivalent(arch):
    assert parse_arch(arch) == CNN_EXPECTED[arch]
    model = build_model(arch, seed=0)
    assert relu_output_sizes(model) == CNN_EXPECTED[arch]
    net = from_torch_module(model)              # the flat 784 input through the leading Unflatten
    assert net.layer_sizes == [784] + CNN_EXPECTED[arch] + [10]
    with torch.no_grad():                       # non-zero biases, so that they are checked too
        for mod in model:
            if isinstance(mod, (nn.Linear, nn.Conv2d)):
                mod.bias.normal_(0, 0.1, generator=torch.Generator().manual_seed(3))
    net = from_torch_module(model)
    x = torch.rand(32, 784, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    with torch.no_grad():
        ref = model.double()(x).numpy()
    np.testing.assert_allclose(net.forward(x.numpy()), ref, rtol=1e-10, atol=1e-10)
    # the pattern of a point: torch's ReLU inputs > 0, flattened (channel, row, column), layer after layer
    pre = []
    hooks = [m.register_forward_hook(lambda m, i, o: pre.append(i[0].reshape(len(x), -1) > 0)) for m in model
             if isinstance(m, nn.ReLU)]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    assert np.array_equal(net.patterns(x.numpy()), torch.cat(pre, 1).numpy().astype(net.patterns(x.numpy()).dtype))


def test_cnn_structure_dropout_init_and_l1_weights():
    m = build_model("cnn_small", dropout=0.3, seed=0)
    assert [type(x).__name__ for x in m] == ["Unflatten", "Conv2d", "ReLU", "Conv2d", "ReLU", "Flatten", "Linear",
                                             "ReLU", "Dropout", "Linear"]
    assert (m[1].in_channels, m[1].out_channels, m[1].kernel_size, m[1].stride, m[1].padding) == (1, 4, (5, 5),
                                                                                                  (3, 3), (0, 0))
    assert (m[3].in_channels, m[3].out_channels, m[3].kernel_size, m[3].stride) == (4, 8, (3, 3), (2, 2))
    assert m[8].p == 0.3
    # a conv as the last hidden layer: the Dropout follows its ReLU, the Flatten comes after
    assert [type(x).__name__ for x in build_model("cnn:c2k3s3", dropout=0.5)] == \
        ["Unflatten", "Conv2d", "ReLU", "Dropout", "Flatten", "Linear"]
    assert [type(x).__name__ for x in build_model("cnn:c2k3p1-avg2")] == \
        ["Unflatten", "Conv2d", "ReLU", "AvgPool2d", "Flatten", "Linear"]
    # l1 covers the conv weights (each parameter once), not the biases
    ws = linear_weights(m)
    assert [tuple(w.shape) for w in ws] == [(4, 1, 5, 5), (8, 4, 3, 3), (32, 72), (10, 32)]
    for mod in m:
        if isinstance(mod, (nn.Linear, nn.Conv2d)):
            assert torch.count_nonzero(mod.bias) == 0
    big = build_model("cnn:c64k3", seed=0)      # Kaiming normal, fan_in = 1 * 3 * 3
    std = float(big[1].weight.detach().std())
    assert abs(std - np.sqrt(2 / 9)) < 0.1 * np.sqrt(2 / 9)
    a, b = build_model("cnn_tiny", seed=4), build_model("cnn_tiny", seed=4)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


@pytest.mark.parametrize("bad,msg", [
    ("cnn:", "expected cnn:L1-L2-"),
    ("cnn:c4", "bad layer 'c4'"),
    ("cnn:c4k3-", "bad layer ''"),
    ("cnn:C4k3", "bad layer 'C4k3'"),
    ("cnn:fc8-c2k3", "'c2k3' follows an fc layer"),
    ("cnn:c0k3", "'c0k3': channels, kernel and stride must be >= 1"),
    ("cnn:c2k3s0", "'c2k3s0': channels, kernel and stride must be >= 1"),
    ("cnn:avg0", "'avg0': channels, kernel and stride must be >= 1"),
    ("cnn:c2k29", "'c2k29' gets a 28x28 input (padding 0), smaller than its kernel 29"),
    ("cnn:c2k7s7-c2k5", "'c2k5' gets a 4x4 input"),
    ("cnn:avg2", "no hidden layer"),
    ("cnn:c400k1p0", "layer 1 of its dense equivalent would be 313600 x 784 = 245,862,400 entries"),
    ("cnn_huge", "unknown arch 'cnn_huge'"),
])
def test_cnn_arch_errors(bad, msg):
    with pytest.raises(ToolError) as e:
        parse_arch(bad)
    assert msg in str(e.value)
    if bad == "cnn_huge":       # is_cnn does not claim other cnn_ names: the unknown-name message lists them
        assert "cnn_small" in str(e.value) and "cnn:L1-L2" in str(e.value)


def test_cnn_run_onnx_and_state_dict(tmp_path):
    """model.onnx of a zoo CNN (save_torch_onnx: float32, no Unflatten, image input) reads back as the same
    dense net; onnxruntime computes what torch does; a CNN's state_dict alone is refused, pointing elsewhere."""
    ort = pytest.importorskip("onnxruntime")
    from src.io.readers.onnx_export import save_torch_onnx

    model = build_model("cnn:c3k5s2-avg2-fc8", dropout=0.3, seed=5)
    save_torch_onnx(model, tmp_path / "model.onnx", (784,))
    assert model.training                       # the mode is restored
    net = from_torch_module(model)
    back = load_net(tmp_path / "model.onnx")
    assert back.layer_sizes == net.layer_sizes == [784, 3 * 12 * 12, 8, 10]
    for a, b in zip(back.weights + back.biases, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)     # float32 weights, widened exactly by both readers
    sess = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    assert [i.shape[1:] for i in sess.get_inputs()] == [[1, 28, 28]]
    x = torch.rand(16, 784, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model.eval()(x).numpy()
    got = sess.run(None, {"x": x.numpy().reshape(16, 1, 28, 28)})[0]
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    torch.save(model.state_dict(), tmp_path / "model.pt")
    with pytest.raises(ToolError) as e:
        load_net(tmp_path / "model.pt")
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'model.pt'}: '1.weight' (3x1x5x5, a Conv2d weight?) is not part of a Linear "
                          "layer") and "model.onnx" in msg and "weights.dat" in msg


@pytest.mark.parametrize("module,msg", [
    (lambda: nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 1, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2)),
     None),
    (lambda: nn.Sequential(nn.Linear(3, 16), nn.ReLU(), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 1, 3), nn.Flatten(),
                           nn.Linear(4, 2)), None),
    (lambda: nn.Sequential(nn.Linear(3, 15), nn.ReLU(), nn.Unflatten(1, (1, 4, 4)), nn.Conv2d(1, 1, 3)),
     "layer '2' (Unflatten): Unflatten to [1, 4, 4] (16 values) of an input of 15 features"),
    (lambda: nn.Sequential(nn.Unflatten(1, (1, 4, 4)), nn.Unflatten(2, (2, 2)), nn.Conv2d(1, 1, 2)),
     "layer '1' (Unflatten): Unflatten(dim=2, [2, 2]) of shape [1, 4, 4] is not supported; only "
     "Unflatten(1, (C, H, W)) of a flat input"),
])
def test_module_reader_unflatten(module, msg):
    torch.manual_seed(0)
    m = module().double()
    if msg is not None:
        with pytest.raises(ToolError) as e:
            from_torch_module(m)
        assert str(e.value) == msg
        return
    net = from_torch_module(m)
    x = torch.rand(20, net.n_inputs, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        np.testing.assert_allclose(net.forward(x.numpy()), m(x).numpy(), rtol=1e-12, atol=1e-12)
