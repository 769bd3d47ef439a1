"""Import torchvision beside a CPU-only torch (the one place with this work-around).

Why: the pinned `torchvision==0.28.0` wheel on PyPI is a CUDA build. Beside the CPU
build of `torch==2.13.0` its compiled extension does not register the C++ operators
`torchvision::nms` and `torchvision::qnms`, and `import torchvision` then dies in
`torchvision/_meta_registrations.py` with "operator torchvision::nms does not exist"
(it tries to attach fake/meta kernels to operators that were never defined).

Fix: only when the plain import fails with exactly that problem, define the two
operator *schemas* (no kernels) through `torch.library.Library("torchvision", "DEF")`
and import again. Nothing in this project calls NMS; we only need
`torchvision.datasets.MNIST`. Calling `torchvision.ops.nms` after the shim raises
a clear "no kernel" error from torch instead of silently doing something wrong.
"""
from __future__ import annotations

import sys

from src.core.errors import ToolError

# Schemas as torchvision's C++ sources define them (csrc/ops/nms.cpp, csrc/ops/quantized/cpu/qnms_kernel.cpp).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)

_LIBRARY = None  # keeps the torch.library.Library alive: dropping it would unregister the schemas

_SHIM_USED = False


def _missing_op_error(exc: BaseException) -> bool:
    msg = str(exc)
    return "torchvision::" in msg and "does not exist" in msg


def _forget_torchvision() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def shim_used() -> bool:
    """True when the schema shim was needed to import torchvision in this process."""
    return _SHIM_USED


def import_torchvision():
    """Return the `torchvision` module, defining the missing op schemas first only if needed."""
    global _LIBRARY, _SHIM_USED
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "datasets"):
        return sys.modules["torchvision"]
    try:
        import torchvision
        return torchvision
    except ImportError as e:  # torchvision not installed at all
        raise ToolError(f"cannot import torchvision ({e}); install the pinned requirements: "
                        "pip install -r requirements.txt") from None
    except RuntimeError as e:
        if not _missing_op_error(e):
            raise
    _forget_torchvision()
    import torch

    if _LIBRARY is None:
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            try:
                lib.define(schema)
            except RuntimeError as e:  # already defined by a partly working build: keep it
                if "already" not in str(e) and "multiple times" not in str(e):
                    raise
        _LIBRARY = lib
    _SHIM_USED = True
    import torchvision
    return torchvision
