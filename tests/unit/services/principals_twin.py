"""A process opening a principals table, for tests that start two at once.

Its own module, importing little, so that a spawned process starts in a tenth of a
second instead of importing the test module (Litestar and all: ~1 s, and many times
that on a loaded CI machine, where a twin once outlived the test's wait).
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path

from services.principals_store import SqlitePrincipalTable


def open_at(path: Path, start: threading.Barrier, answers: queue.Queue[str]) -> None:
    """Open the table at `path` once both twins are ready; put "ok" or the error."""
    start.wait()
    try:
        SqlitePrincipalTable(path)
        answers.put("ok")
    except Exception as error:  # any failure is an answer, so the test never waits it out
        answers.put(f"{type(error).__name__}: {error}")
