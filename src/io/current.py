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


def record_is_current(record: dict | None, weights_sha: str | None, *, tol: float | None = None,
                      domain: Box | str | None = None) -> bool:
    """True iff `record` was made from the weights of sha256 `weights_sha` with this tol and domain."""
    if not isinstance(record, dict) or weights_sha is None or record.get("weights_sha256") != weights_sha:
        return False
    if tol is not None:
        try:
            if float(record.get("tol")) != float(tol):
                return False
        except (TypeError, ValueError):
            return False
    if isinstance(domain, Box):
        return record.get("domain") == domain.to_json()
    if domain is not None:
        return isinstance(record.get("domain"), dict) and record["domain"].get("name") == domain
    return True


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
