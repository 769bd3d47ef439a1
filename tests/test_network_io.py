import numpy as np
import pytest
from conftest import random_net

from src.core.network import ReluNet
from src.io.readers import load_net
from src.io.weights_file import WeightsFormatError, read_weights
from src.io.weights_file import save_net


def test_roundtrip_bit_exact(tmp_path):
    net = random_net([7, 5, 4, 3], seed=1)
    net.weights[0][0, 0] = -0.0
    net.weights[0][0, 1] = 1e-300
    net.biases[1][0] = 1.0 / 3.0
    p = tmp_path / "weights.dat"
    save_net(net, p, model_path="m.pt", accuracy=0.975)
    back = load_net(p)
    assert back.layer_sizes == net.layer_sizes
    for a, b in zip(net.weights + net.biases, back.weights + back.biases):
        assert a.tobytes() == b.tobytes()
    assert back.meta["accuracy"] == "97.50%"
    text = p.read_text().splitlines()
    assert text[0] == "//Model path = m.pt" and text[2] == "levels = 3;" and text[3] == "n = [7, 5, 4, 3];"
    assert text[5].startswith("-0.0,") and text[6].startswith(",")


def test_reader_accepts_spacing_and_float_syntax(tmp_path):
    p = tmp_path / "w.dat"
    p.write_text("// a comment\n\nlevels=2 ;\nn=[2,2,1];\nW = [ 1e-05 , -0.0,\n,2.5E+1,3\n, 4,5];\nB=[0,0\n,1 ];\n")
    wf = read_weights(p)
    assert wf.layer_sizes == [2, 2, 1]
    np.testing.assert_array_equal(wf.weights[0], [[1e-05, -0.0], [25.0, 3.0]])
    np.testing.assert_array_equal(wf.weights[1], [[4.0, 5.0]])
    np.testing.assert_array_equal(wf.biases[1], [1.0])


GOOD = "levels = 2;\nn = [2, 2, 1];\nW = [\n1,2\n,3,4\n,5,6\n];\nB = [\n0,0\n,0\n];\n"


@pytest.mark.parametrize("text,needle", [
    (GOOD.replace("levels = 2", "levels = 3"), "levels = 3 but n"),
    (GOOD.replace("levels = 2", "levels = x"), "levels must be an integer"),
    (GOOD.replace(",5,6\n", ",5\n"), "W has 5 values"),
    (GOOD.replace(",0\n];", "];"), "B has 2 values"),
    (GOOD.replace("3,4", "3,nan"), "finite"),
    (GOOD.replace("3,4", "3,inf"), "finite"),
    (GOOD.replace("3,4", "3,abc"), "not a number"),
    (GOOD.replace("n = [2, 2, 1];\n", ""), "missing 'n"),
    (GOOD.replace("levels = 2;\n", ""), "missing 'levels"),
    (GOOD.replace("B = [\n0,0\n,0\n];\n", ""), "missing 'B"),
    (GOOD.replace("];\nB", "\nB"), "unexpected"),
    (GOOD[: GOOD.rindex("];")], "never closed"),
    ("hello\n" + GOOD, "unexpected line"),
    (GOOD.replace("n = [2, 2, 1]", "n = [2, a, 1]"), "must list integers"),
])
def test_reader_errors_name_file_and_line(tmp_path, text, needle):
    p = tmp_path / "bad.dat"
    p.write_text(text)
    with pytest.raises(WeightsFormatError) as e:
        read_weights(p)
    msg = str(e.value)
    assert needle in msg
    assert str(p) in msg and f"{p}:" in msg


def test_reader_missing_file(tmp_path):
    with pytest.raises(WeightsFormatError, match="not found"):
        read_weights(tmp_path / "nope.dat")


def test_forward_and_patterns_agree(rng):
    net = random_net([3, 4, 3, 2], seed=2)
    x = rng.random((50, 3))
    gs = net.preactivations(x)
    h = x
    for w, b in zip(net.weights[:-1], net.biases[:-1]):
        h = np.maximum(h @ w.T + b, 0)
    np.testing.assert_allclose(net.forward(x), h @ net.weights[-1].T + net.biases[-1])
    pats = net.patterns(x)
    assert pats.shape == (50, 7) and pats.dtype == np.uint8
    np.testing.assert_array_equal(pats[:, :4], gs[0] > 0)
    assert [p.size for p in net.split_pattern(pats[0])] == [4, 3]


def test_shape_mismatch_rejected():
    with pytest.raises(ValueError, match="takes 3 inputs"):
        ReluNet([np.zeros((2, 2)), np.zeros((1, 3))], [np.zeros(2), np.zeros(1)])
