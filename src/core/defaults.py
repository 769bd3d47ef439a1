"""The defaults every step shares: where runs live, the default domain, the feasibility tolerance, verification."""
from __future__ import annotations

from pathlib import Path

DEFAULT_MODELS_DIR = Path("forward_pass/activation_pattern/models")   # fcnn_run_<id>/ live here
DEFAULT_DOMAIN = "input_0_1"            # the box [0,1]^n0, the paper's domain
DEFAULT_TOL = 1e-6                      # a unit is active on a region iff g > tol there (docs/counting.md)
DEFAULT_POINTS = 10_000                 # seeded points of the box on which two nets are compared
DEFAULT_RTOL = 1e-9                     # |a(x) - b(x)| <= rtol * max(1, |a(x)|) for a lossless step
DEFAULT_TRANSFORM_RTOL = 1e-6           # the two-hidden-layer net: its big-M sums lose digits
