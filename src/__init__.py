"""Toolkit for 'Equivalent and Approximate Transformations of Deep Neural Networks'.

The steps as library functions with plain arguments (src/api.py), imported on first use:

    from src import load_net, analyse_stability, count_regions, transform_net, verify_equivalence, compress_net
"""
__all__ = ["load_net", "analyse_stability", "count_regions", "transform_net", "verify_equivalence", "compress_net",
           "RegionCount"]


def __getattr__(name):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'src' has no attribute {name!r}")
