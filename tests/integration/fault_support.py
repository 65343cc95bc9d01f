"""What the fault tests read in the processes' logs (the databases are asked through
`bench.soak.checks`, as the soak asks them)."""

from __future__ import annotations

import json
from pathlib import Path


def log_events(log: Path, event: str) -> list[dict[str, object]]:
    """The JSON log lines of `log` whose `event` is `event`."""
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("event") == event:
                lines.append(entry)
    return lines
