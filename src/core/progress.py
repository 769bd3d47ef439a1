"""Progress bars for the long loops: tqdm on stderr (count, rate, ETA), or a silent stand-in when progress is off."""
from __future__ import annotations

import sys

from tqdm import tqdm


class _Silent:
    """A bar that shows nothing (progress off, or nothing to do)."""

    def update(self, n=1):
        pass

    def close(self):
        pass


def progress_bar(total: int, progress, desc: str):
    """A bar of `total` steps labelled `desc` when `progress` is truthy and there is work, else a silent one."""
    if not progress or total == 0:
        return _Silent()

    return tqdm(total=total, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)


def progress_iter(seq, progress, desc: str):
    """`seq` wrapped in a bar when `progress` is truthy."""
    if progress:

        return tqdm(seq, desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
    return seq
