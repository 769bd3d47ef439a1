"""The run directory: every file name the steps write or read, and their parsing back.

    forward_pass/activation_pattern/models/fcnn_run_<id>/
        config.json, metrics.json, model.pt, model.onnx, weights.dat, train.log,
        checkpoint.pt                                                                    (training)
        activation_pattern_abhinav_<domain>.dat, regions_<domain>.json,
        stable_units_<domain>.json, inactive_<domain>.dat, frontier_<domain>.json,
        checkpoint_<domain>.json, .activation_pattern_abhinav_<domain>.dat.partial       (counting)
        slice_I_J_K[_<domain>].json, segments.json                                       (sections)
        two_hidden_all_nodes[_<domain>].dat/.json, two_hidden_feasible_<domain>.dat/.json (transform)
        compressed_<domain>.dat/.json                                                    (compression)

A domain name is `input_<lo>_<hi>` (%g) for a box [lo, hi]^n0 (`input_0_1` by default) or
`center_<name>_width_<L>` for a local box around a sample (docs/formats.md).
"""
from __future__ import annotations

import re
from pathlib import Path

from src.core.defaults import DEFAULT_DOMAIN

RUN_PREFIX = "fcnn_run_"


CONFIG = "config.json"

METRICS = "metrics.json"

MODEL = "model.pt"

MODEL_ONNX = "model.onnx"

WEIGHTS = "weights.dat"

TRAIN_LOG = "train.log"

TRAIN_CHECKPOINT = "checkpoint.pt"

SEGMENTS = "segments.json"

_PATTERN_FILE = re.compile(r"^activation_pattern_abhinav_(.+)\.dat$")

_RUN_DIR = re.compile(r"^" + RUN_PREFIX + r"(\d+)$")

# ---- runs ------------------------------------------------------------------------------------------


def run_path(models_dir, run_id: int) -> Path:
    """The run directory fcnn_run_<id>/ in models_dir."""
    return Path(models_dir) / f"{RUN_PREFIX}{run_id}"


def run_id_of(path) -> int | None:
    """<id> of a `fcnn_run_<id>` directory, else None."""
    m = _RUN_DIR.match(Path(path).name)
    return int(m.group(1)) if m else None

# ---- counting --------------------------------------------------------------------------------------


def pattern_file_name(domain: str) -> str:
    return f"activation_pattern_abhinav_{domain}.dat"


def domain_of_pattern_file(path) -> str | None:
    """<domain> of `activation_pattern_abhinav_<domain>.dat`, else None."""
    m = _PATTERN_FILE.match(Path(path).name)
    return m.group(1) if m else None


def partial_pattern_file_name(domain: str) -> str:
    return f".{pattern_file_name(domain)}.partial"


def regions_file_name(domain: str) -> str:
    return f"regions_{domain}.json"


def frontier_file_name(domain: str) -> str:
    return f"frontier_{domain}.json"


def checkpoint_file_name(domain: str) -> str:
    return f"checkpoint_{domain}.json"


def stable_units_file_name(domain: str) -> str:
    return f"stable_units_{domain}.json"


def inactive_file_name(domain: str) -> str:
    return f"inactive_{domain}.dat"


def slice_file_name(indices, domain: str) -> str:
    return "slice_" + "_".join(map(str, indices)) + ("" if domain == DEFAULT_DOMAIN else f"_{domain}") + ".json"

# ---- transformation and compression ----------------------------------------------------------------


def two_hidden_tag(mode: str, domain: str) -> str:
    """`all_nodes` (all 2^N patterns on the default domain), `all_nodes_<domain>`, or `feasible_<domain>`."""
    if mode == "all":
        return "all_nodes" if domain == DEFAULT_DOMAIN else f"all_nodes_{domain}"
    return f"feasible_{domain}"


def two_hidden_file_names(tag: str) -> tuple[str, str]:
    return f"two_hidden_{tag}.dat", f"two_hidden_{tag}.json"


def compressed_file_names(domain: str) -> tuple[str, str]:
    return f"compressed_{domain}.dat", f"compressed_{domain}.json"
