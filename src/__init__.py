"""Toolkit for 'Equivalent and Approximate Transformations of Deep Neural Networks' (docs/api.md).

    from src import Analysis, Box, load_net
    a = Analysis(load_net("weights.dat"), box=None, tol=1e-6)   # box None = [0,1]^n0
    rc = a.count_regions()                                      # .count, .complete, .patterns, .bounds
    c = a.compress()                                            # .net, .verification["ok"], .removed
    t = a.transform(rc.patterns)                                # .net, .verification["ok"], .sizes

The public names below are loaded on first use (PEP 562), so `import src.core.network` stays light.
The stages live in subpackages: docs/architecture.md says which holds what.
"""
import importlib

_PUBLIC = {
    "Analysis": "src.analysis",
    "Box": "src.core.box",
    "ReluNet": "src.core.network",
    "ToolError": "src.core.errors",
    "load_net": "src.io.readers",
    "Stability": "src.stability.record",
    "RegionCount": "src.counting.count",
    "Compression": "src.compress.lossless",
    "TransformResult": "src.transform.two_hidden",
}
__all__ = list(_PUBLIC)


def __getattr__(name):
    if name in _PUBLIC:

        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'src' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
