"""The JSON files that pass between steps: for each, a reader and a writer checked against one schema.

config.json and metrics.json (training), regions_<domain>.json, frontier_<domain>.json,
checkpoint_<domain>.json (region counting) and stable_units_<domain>.json. Each reader returns the
parsed dict or raises one ToolError `FILE:LINE: key: what is wrong` (docs/formats.md holds the
schemas); each writer checks the record against the same schema before writing it atomically, so a
step never writes a file its reader would refuse. Fields that no step reads are not checked, so that files of earlier versions with extra
keys stay readable.
"""
from __future__ import annotations

import re
from pathlib import Path

from src.core.errors import ToolError
from src.io.files import atomic_write_json, line_of, read_json_text

MAX_SIZE = 10 ** 7          # a layer wider than this is not a net this toolkit can handle

_SHA = re.compile(r"^[0-9a-f]{64}$")

_BITS = re.compile(r"^[01]*$")


class _Checker:
    """Raises ToolError naming the file and the line of the offending key."""

    def __init__(self, path, text: str):
        self.path, self.text = Path(path), text

    def fail(self, key: str, msg: str):
        raise ToolError(f"{self.path}:{line_of(self.text, chr(34) + key + chr(34))}: {key}: {msg}")

    def obj(self, value) -> dict:
        if not isinstance(value, dict):
            raise ToolError(f"{self.path}:1: expected a JSON object, got {type(value).__name__}")
        return value

    def need(self, d: dict, key: str, check, optional: bool = False):
        if key not in d:
            if optional:
                return None
            self.fail(key, "missing")
        v = d[key]
        if optional and v is None:
            return None
        msg = check(v)
        if msg:
            self.fail(key, msg)
        return v


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def nonneg_int(v):
    return None if _is_int(v) and v >= 0 else f"expected an integer >= 0, got {v!r:.60}"


def pos_int(v):
    return None if _is_int(v) and v >= 1 else f"expected an integer >= 1, got {v!r:.60}"


def nonneg_num(v):
    return None if _is_num(v) and v >= 0 else f"expected a number >= 0, got {v!r:.60}"


def number(v):
    return None if _is_num(v) else f"expected a number, got {v!r:.60}"


def prob(v):
    return None if _is_num(v) and 0 <= v <= 1 else f"expected a number in [0, 1], got {v!r:.60}"


def boolean(v):
    return None if isinstance(v, bool) else f"expected true or false, got {v!r:.60}"


def string(v):
    return None if isinstance(v, str) else f"expected a string, got {v!r:.60}"


def sha256(v):
    return None if isinstance(v, str) and _SHA.match(v) else f"expected a sha256 hex digest, got {v!r:.80}"


def layer_sizes(v):
    if not (isinstance(v, list) and len(v) >= 2 and all(_is_int(n) and 1 <= n <= MAX_SIZE for n in v)):
        return f"expected a list of at least two sizes in 1..{MAX_SIZE}, got {v!r:.80}"
    return None


def width_list(v):
    if not (isinstance(v, list) and all(_is_int(n) and 1 <= n <= MAX_SIZE for n in v)):
        return f"expected a list of widths in 1..{MAX_SIZE}, got {v!r:.80}"
    return None

# ---- training ---------------------------------------------------------------------------------


def _check_config(c: _Checker, d: dict) -> None:
    """config.json of a training run."""
    c.need(d, "run_id", nonneg_int)
    c.need(d, "arch", string)
    c.need(d, "hidden_sizes", width_list)
    c.need(d, "l1", nonneg_num)
    c.need(d, "adv", lambda v: None if v in ("none", "pgd", "fgsm") else f"expected none, pgd or fgsm, got {v!r:.40}")
    c.need(d, "dropout", lambda v: None if _is_num(v) and 0 <= v < 1 else f"expected a number in [0, 1), got {v!r:.40}")
    c.need(d, "recipe", lambda v: None if v in ("seed", "authors") else f"expected seed or authors, got {v!r:.40}",
           optional=True)                                   # absent in runs trained before recipes: "seed"
    for key in ("epochs", "batch_size", "lr_step", "adv_steps"):
        c.need(d, key, pos_int, optional=True)
    for key in ("seed", "train_subset"):
        c.need(d, key, nonneg_int, optional=True)
    for key in ("lr", "momentum", "lr_gamma", "adv_eps", "adv_step_size"):
        c.need(d, key, nonneg_num, optional=True)


def _epoch_entry(v):
    if not isinstance(v, dict):
        return f"expected objects {{epoch, loss, train_acc, test_acc, seconds}}, got {v!r:.60}"
    if nonneg_int(v.get("epoch")) or pos_int(v.get("epoch")):
        return f"epoch must be an integer >= 1, got {v.get('epoch')!r:.40}"
    for k in ("train_acc", "test_acc"):
        if prob(v.get(k)):
            return f"{k} of epoch {v['epoch']} must be in [0, 1], got {v.get(k)!r:.40}"
    if number(v.get("loss")):
        return f"loss of epoch {v['epoch']} must be a number, got {v.get('loss')!r:.40}"
    return None


def _check_metrics(c: _Checker, d: dict) -> None:
    """metrics.json of a training run (complete or not)."""
    c.need(d, "complete", boolean)
    eps = c.need(d, "epochs", lambda v: None if isinstance(v, list) else "expected a list")
    for k, e in enumerate(eps):
        msg = _epoch_entry(e)
        if msg:
            c.fail("epochs", msg)
        if e["epoch"] != k + 1:
            c.fail("epochs", f"entry {k + 1} is epoch {e['epoch']}; epochs must be 1, 2, ... in order")
    c.need(d, "test_accuracy", prob, optional=not d["complete"])
    c.need(d, "train_accuracy", prob, optional=not d["complete"])
    c.need(d, "seconds", nonneg_num, optional=True)
    c.need(d, "robust_accuracy", _robust_accuracy, optional=True)
    if d["complete"] and not eps:
        c.fail("epochs", "a complete run needs at least one epoch")



def _robust_accuracy(v):
    """The "robust_accuracy" record of a training run (src/training/train.py: robust_accuracy)."""
    if not isinstance(v, dict) or string(v.get("attack")):
        return "expected an object with 'attack', 'eps' and 'accuracy'"
    for key, check in (("eps", prob), ("accuracy", prob)):
        msg = check(v.get(key))
        if msg:
            return f"{key}: {msg}"
    return None

# ---- region counting ------------------------------------------------------------------------------


def _domain(v):
    if not isinstance(v, dict) or string(v.get("name")):
        return f"expected an object with a string 'name', got {v!r:.60}"
    return None


def _check_regions(c: _Checker, d: dict) -> None:
    """regions_<domain>.json, the summary of a count."""
    sizes = c.need(d, "layer_sizes", layer_sizes)
    c.need(d, "domain", _domain)
    count = c.need(d, "count", nonneg_int)
    c.need(d, "complete", boolean)
    c.need(d, "tol", nonneg_num)
    c.need(d, "weights_sha256", sha256, optional=True)
    c.need(d, "pattern_file", string, optional=True)
    c.need(d, "estimate", _estimate, optional=True)
    c.need(d, "mipbound", _mipbound, optional=True)
    n_units = sum(sizes[1:-1])
    if n_units < 63 and count > 2 ** n_units:
        c.fail("count", f"{count} patterns, but {n_units} hidden units allow at most 2^{n_units}")


def _estimate(v):
    """The "estimate" record of `--estimate N` (src/counting/estimate.py)."""
    if not isinstance(v, dict) or string(v.get("method")) or nonneg_int(v.get("probes")):
        return "expected an object with 'method' and 'probes'"
    if v.get("value") is not None and nonneg_num(v["value"]):
        return f"value: {nonneg_num(v['value'])}"
    ci = v.get("ci95")
    if not (isinstance(ci, list) and len(ci) == 2 and _is_num(ci[0]) and (ci[1] is None or _is_num(ci[1]))
            and (ci[1] is None or ci[0] <= ci[1])):
        return f"ci95 must be [lo, hi] with lo <= hi (hi may be null), got {ci!r:.60}"
    return None


def _mipbound(v):
    """The "mipbound" record of `--mipbound` (src/counting/mipbound.py)."""
    if not isinstance(v, dict):
        return "expected an object with 'log2_lower', 'probability', 'xor_size' and 'trials'"
    for key, check in (("probability", prob), ("xor_size", pos_int), ("trials", pos_int)):
        msg = check(v.get(key))
        if msg:
            return f"{key}: {msg}"
    if "log2_lower" not in v or (v["log2_lower"] is not None and nonneg_num(v["log2_lower"])):
        return f"log2_lower: expected a number >= 0 or null, got {v.get('log2_lower')!r:.40}"
    if "patterns_found" in v and nonneg_int(v["patterns_found"]):
        return f"patterns_found: {nonneg_int(v['patterns_found'])}"
    return None


def frontier_items(v, n_units: int | None = None):
    if not isinstance(v, list) or not all(isinstance(p, str) and _BITS.match(p) for p in v):
        return "expected a list of 0/1 prefix strings"
    if n_units is not None and any(len(p) > n_units for p in v):
        return f"a prefix is longer than the {n_units} hidden units of the net"
    return None


def _check_frontier(c: _Checker, d: dict) -> None:
    """frontier_<domain>.json: the unexplored prefixes of an incomplete lp count."""
    sizes = c.need(d, "layer_sizes", layer_sizes)
    c.need(d, "tol", nonneg_num)
    c.need(d, "backend", string, optional=True)
    c.need(d, "weights_sha256", sha256, optional=True)
    c.need(d, "frontier", lambda v: frontier_items(v, sum(sizes[1:-1])))


def _hex_key(v, n_hex: int):
    """None when v is a pattern key (src.core.patterns) of n_hex hex digits, else what is wrong."""
    if isinstance(v, str) and len(v) == n_hex and all(ch in "0123456789abcdef" for ch in v):
        return None
    return f"expected {n_hex} lowercase hex digits (a pattern key), got {v!r:.40}"


def _check_checkpoint(c: _Checker, d: dict) -> None:
    """checkpoint_<domain>.json: the last consistent state of a running count (docs/formats.md)."""
    c.need(d, "format", lambda v: None if v == "region-count-checkpoint" else "expected 'region-count-checkpoint'")
    sizes = c.need(d, "layer_sizes", layer_sizes)
    c.need(d, "tol", nonneg_num)
    c.need(d, "domain", string)
    c.need(d, "backend", string)
    c.need(d, "weights_sha256", sha256, optional=True)
    c.need(d, "patterns", nonneg_int)
    c.need(d, "bytes", nonneg_int, optional=True)       # null: a --count-only count, which keeps no pattern file
    c.need(d, "frontier", lambda v: frontier_items(v, sum(sizes[1:-1])), optional=True)
    if d.get("bytes") is None:
        n_hex = 2 * ((sum(sizes[1:-1]) + 7) // 8)
        if "last_pattern" not in d:
            c.fail("last_pattern", "missing (a checkpoint without a pattern file records its last pattern)")
        c.need(d, "last_pattern", lambda v: _hex_key(v, n_hex), optional=True)
        c.need(d, "data_patterns_found", lambda v: None if isinstance(v, list) and not any(_hex_key(k, n_hex) for k in v)
               else f"expected a list of pattern keys ({n_hex} hex digits)")
    c.need(d, "patterns_at_start", nonneg_int, optional=True)
    c.need(d, "enumeration_seconds", nonneg_num, optional=True)
    c.need(d, "runs", nonneg_int, optional=True)

# ---- stable units -----------------------------------------------------------------------------


def _stable_layers(v):
    if not isinstance(v, list) or not v:
        return "expected a non-empty list of layers"
    for k, lay in enumerate(v):
        if not isinstance(lay, dict):
            return f"layer {k + 1}: expected an object"
        lo, up = lay.get("lower"), lay.get("upper")
        if not (isinstance(lo, list) and isinstance(up, list) and len(lo) == len(up)
                and all(_is_num(x) for x in lo + up)):
            return f"layer {k + 1}: expected 'lower' and 'upper', two lists of numbers of one length"
        for key in ("active", "inactive", "unstable"):
            if not (isinstance(lay.get(key), list) and all(_is_int(i) and 0 <= i < len(lo) for i in lay[key])):
                return f"layer {k + 1}: expected '{key}', a list of unit indices"
    return None


def _check_stable_units(c: _Checker, d: dict) -> None:
    """stable_units_<domain>.json: the stable units of a net on a domain (src/stability/files.py)."""
    c.need(d, "domain", _domain)
    c.need(d, "tol", nonneg_num)
    c.need(d, "exact", boolean)
    c.need(d, "weights_sha256", sha256, optional=True)
    c.need(d, "tiers", lambda v: None if isinstance(v, list) and all(isinstance(t, dict) for t in v)
           else "expected a list of objects")
    c.need(d, "layers", _stable_layers)


# ---- readers and writers, side by side ----------------------------------------------------------------
def _read(path, check) -> dict:
    value, text = read_json_text(path)
    c = _Checker(path, text)
    d = c.obj(value)
    check(c, d)
    return d


def _write(path, record: dict, check) -> None:
    c = _Checker(path, "")           # a refused record is a bug of the writing step, named by its key
    check(c, c.obj(record))
    atomic_write_json(path, record)


def read_config(path) -> dict:
    """config.json of a training run."""
    return _read(path, _check_config)


def write_config(path, record: dict) -> None:
    """Write config.json of a training run (checked, atomic)."""
    _write(path, record, _check_config)


def read_metrics(path) -> dict:
    """metrics.json of a training run (complete or not)."""
    return _read(path, _check_metrics)


def write_metrics(path, record: dict) -> None:
    """Write metrics.json of a training run (complete or not) (checked, atomic)."""
    _write(path, record, _check_metrics)


def read_regions(path) -> dict:
    """regions_<domain>.json, the summary of a count."""
    return _read(path, _check_regions)


def write_regions(path, record: dict) -> None:
    """Write regions_<domain>.json, the summary of a count (checked, atomic)."""
    _write(path, record, _check_regions)


def read_frontier(path) -> dict:
    """frontier_<domain>.json: the unexplored prefixes of an incomplete lp count."""
    return _read(path, _check_frontier)


def write_frontier(path, record: dict) -> None:
    """Write frontier_<domain>.json (checked, atomic)."""
    _write(path, record, _check_frontier)


def read_checkpoint(path) -> dict:
    """checkpoint_<domain>.json: the last consistent state of a running count (docs/formats.md)."""
    return _read(path, _check_checkpoint)


def write_checkpoint(path, record: dict) -> None:
    """Write checkpoint_<domain>.json (checked, atomic)."""
    _write(path, record, _check_checkpoint)


def read_stable_units(path) -> dict:
    """stable_units_<domain>.json: the stable units of a net on a domain (src/stability/files.py)."""
    return _read(path, _check_stable_units)


def write_stable_units(path, record: dict) -> None:
    """Write stable_units_<domain>.json (checked, atomic)."""
    _write(path, record, _check_stable_units)
