"""Is this output current? One answer for every step that skips, reuses or trusts an earlier output.

An output's JSON record is current for a request iff it records the sha256 of the very weights file
(`weights_sha256`), and, where the request names them, the same feasibility tolerance (`tol`) and the
same domain (its name, or the whole `Box.to_json()` record for a box). File times are never used:
a copied or touched file keeps or loses nothing by it.
"""
from __future__ import annotations

from pathlib import Path

from src.core.box import Box
from src.core.errors import ToolError
from src.io.files import file_sha256, read_json


def record_mismatch(record, weights_sha: str | None, *, tol: float | None = None, domain: Box | str | None = None,
                    layer_sizes=None, missing_ok: bool = False) -> tuple[str, str] | None:
    """Why `record` is not current for these weights (sha256 `weights_sha`; and `layer_sizes`, when given), tol
    and domain: ("weights" | "tol" | "domain", the reason), or None when it is. A domain is a name (the record's
    domain name, or its domain string: a checkpoint) or a Box (the whole `Box.to_json()` record).
    missing_ok: a record or request without a sha256, or a record without a domain, is judged by the rest (a
    frontier file names no domain: its file name does)."""
    if not isinstance(record, dict):
        return "weights", "not a record of a run"
    rec_sha = record.get("weights_sha256")
    if missing_ok:
        other_weights = bool(rec_sha and weights_sha and rec_sha != weights_sha)
    else:
        other_weights = weights_sha is None or rec_sha != weights_sha
    if other_weights or (layer_sizes is not None and record.get("layer_sizes") != layer_sizes):
        return "weights", (f"written for other weights (n = {record.get('layer_sizes')}, sha256 differs)" if rec_sha
                           else "it records no sha256 of its weights")
    if tol is not None:
        try:
            same_tol = float(record.get("tol")) == float(tol)
        except (TypeError, ValueError):
            same_tol = False
        if not same_tol:
            return "tol", f"the earlier run used --tol {record.get('tol')}, this one --tol {tol}"
    rec_domain = record.get("domain")
    if domain is None or (rec_domain is None and missing_ok):
        return None
    name = rec_domain.get("name") if isinstance(rec_domain, dict) else rec_domain
    if isinstance(domain, Box):
        same, wanted = rec_domain == domain.to_json(), domain.name
    else:
        same, wanted = name == domain, domain
    if not same:
        other_box = " (same name, other box)" if name == wanted else ""
        return "domain", f"written for domain {name}, not {wanted}{other_box}"
    return None


def record_is_current(record: dict | None, weights_sha: str | None, *, tol: float | None = None,
                      domain: Box | str | None = None) -> bool:
    """True iff `record` was made from the weights of sha256 `weights_sha` with this tol and domain."""
    return record_mismatch(record, weights_sha, tol=tol, domain=domain) is None


def output_is_current(path, weights, *, tol: float | None = None, domain: Box | str | None = None,
                      inputs: dict | None = None, read=read_json, weights_sha: str | None = None) -> bool:
    """record_is_current for the JSON file `path` (read with `read`; a missing or unreadable file is not
    current) against the weights file `weights` (or its known sha256). inputs: {record key: file} of other
    files the output was made from, each recorded by its sha256 (e.g. {"patterns_sha256": pattern file})."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        record = read(path)
    except ToolError:
        return False
    sha = weights_sha if weights_sha is not None else (file_sha256(weights) if Path(weights).is_file() else None)
    if not record_is_current(record, sha, tol=tol, domain=domain):
        return False
    return all(Path(f).is_file() and record.get(key) == file_sha256(f) for key, f in (inputs or {}).items())
