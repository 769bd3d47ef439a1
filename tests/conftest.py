import os
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from src.core.network import ReluNet  # noqa: E402


def random_net(sizes, seed=0, bias_scale=0.5):
    """A random ReluNet with the given layer sizes [n0, n1, ..., m]."""
    rng = np.random.default_rng(seed)
    ws = [rng.normal(size=(o, i)) for i, o in zip(sizes[:-1], sizes[1:])]
    bs = [bias_scale * rng.normal(size=o) for o in sizes[1:]]
    return ReluNet(ws, bs)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="module")
def ray_session():
    """One embedded Ray with 2 CPUs shared by the tests of a module that ask for it; shut down after them."""
    from src.parallel import start_local

    ray = start_local(2)
    yield ray
    ray.shutdown()
