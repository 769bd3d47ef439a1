"""Running a CLI entry point: a ToolError becomes one `error:` line and exit 2, Ctrl-C exit 130."""
from __future__ import annotations

import sys

from src.core.errors import ToolError


def run_main(main, argv=None) -> None:
    """Run a CLI entry point: ToolError -> one line on stderr and exit 2; Ctrl-C -> exit 130."""
    try:
        rc = main(argv)
    except ToolError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(rc or 0)
