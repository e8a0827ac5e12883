"""A gate for tests of worker processes: a task run in a worker leaves a marker file; a gated
task run in the calling process waits (up to two minutes) until a worker has left it, so that
the test sees at least one task run in a worker."""

from __future__ import annotations

import os
import time
from pathlib import Path


def mark_or_wait(marker: str | Path, parent: int, gate: bool, poll: float = 0.05) -> None:
    """In a worker (not process ``parent``), leave ``marker``; in ``parent`` with ``gate``,
    wait until it exists."""
    if os.getpid() != parent:
        Path(marker).touch()
    elif gate:
        deadline = time.monotonic() + 120
        while not Path(marker).exists() and time.monotonic() < deadline:
            time.sleep(poll)
