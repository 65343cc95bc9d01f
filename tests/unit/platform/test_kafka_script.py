"""scripts/kafka.sh's cluster ids, drawn by the script's own function."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parents[3] / "scripts" / "kafka.sh"
DRAWS = 1000  # a leading '-' is 1 in 64 a draw: ~16 of them unless the function avoids it


def test_cluster_ids_never_start_with_a_dash_and_are_22_url_safe_characters() -> None:
    source = SCRIPT.read_text()
    function = re.search(r"^random_cluster_id\(\) \{.*?^\}$", source, re.S | re.M)
    assert function is not None, "random_cluster_id() is gone from scripts/kafka.sh"
    program = f"{function.group(0)}\nfor _ in $(seq {DRAWS}); do random_cluster_id; done"
    drawn = subprocess.run(
        ["bash", "-c", program], capture_output=True, text=True, check=True, timeout=120
    ).stdout.split()
    assert len(drawn) == DRAWS
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster) for cluster in drawn)
    assert not [cluster for cluster in drawn if cluster.startswith("-")]
