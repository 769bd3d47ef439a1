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
