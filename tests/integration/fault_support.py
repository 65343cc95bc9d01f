"""What the fault tests read in the processes' logs (the databases are asked through
`bench.soak.checks`, as the soak asks them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

OUTAGE_MARKS = [
    pytest.mark.integration,
    # kafka-python 3.0.12 leaks the socket of every refused connect while a broker is down.
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]
"""The marks of a test that takes a broker or database away."""


def log_events(log: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of `log` whose `event` is `event`."""
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                lines.append(entry)
    return lines
