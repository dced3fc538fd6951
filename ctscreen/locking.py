"""One writer at a time on a folder shared by processes: an exclusive ``flock`` on a lock file in it."""

from __future__ import annotations

import fcntl
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(lock_file: Path):
    """Held until the block ends; other writers wait for it."""
    with open(lock_file, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
