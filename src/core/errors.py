"""ToolError: an error caused by the user's input (the CLI prints it on one line and exits 2)."""
from __future__ import annotations


class ToolError(Exception):
    """An error caused by the user's input; the CLI prints it on one line and exits 2."""
