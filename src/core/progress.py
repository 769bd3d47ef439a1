"""Progress bars (tqdm on stderr, with an ETA) for the long loops, or nothing when progress is off."""
from __future__ import annotations

import sys


# ---------------------------------------------------------------------------------------------
# The command
# ---------------------------------------------------------------------------------------------
def _bar(total, progress, desc):
    if progress:
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, file=sys.stderr, leave=False)

    class _Null:
        def update(self, n=1):
            pass

        def close(self):
            pass

    return _Null()


def _iter(seq, progress, desc):
    if progress:
        from tqdm import tqdm

        return tqdm(seq, desc=desc, file=sys.stderr, leave=False)
    return seq
