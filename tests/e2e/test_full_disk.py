"""A full disk, for real: `crm run` on a tiny tmpfs (in a user and mount namespace of its
own, so no root is needed) answers commands with a 503 `storage-full` problem while
the disk is full, and once space returns takes commands again and its projections
apply every committed event by themselves (no dead letters, ready again).

Skipped where unprivileged user namespaces are disabled: the page-limit tests in
`tests/unit/projections/test_dead_letters.py` cover the same error path everywhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.processes import CRM, eventually, free_port, wait_for_http

CONTROL = textwrap.dedent(
    """\
    set -e
    data=$1; control=$2; port=$3
    mount -t tmpfs -o size=8m tmpfs "$data"
    CRM_DATA_DIR="$data" CRM_DATABASE_URL= CRM_LOG_FORMAT=json "$CRM" run --port "$port" \\
        > "$control/run.log" 2>&1 &
    crm=$!  # not `%1`: without job control, dash's `kill %1` fails, and crm run lived on
    while sleep 0.1; do
      if [ -e "$control/fill" ]; then
        rm "$control/fill"; dd if=/dev/zero of="$data/filler" bs=64k 2>/dev/null || true
        echo full > "$control/state"
      elif [ -e "$control/free" ]; then
        rm "$control/free" "$data/filler"; echo free > "$control/state"
      elif [ -e "$control/stop" ]; then
        kill -TERM "$crm"; wait "$crm"; exit 0
      fi
    done
    """
)


def namespaces_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = ["unshare", "--user", "--map-root-user", "--mount", "true"]
    return subprocess.run(probe, capture_output=True, check=False).returncode == 0


pytestmark = pytest.mark.skipif(
    not namespaces_available(), reason="no unprivileged user+mount namespaces for a tmpfs"
)


class TinyDisk:
    """`crm run` with its data dir on an 8 MB tmpfs that the test fills and frees."""

    def __init__(self, root: Path) -> None:
        self.data, self.control = root / "data", root / "control"
        self.data.mkdir()
        self.control.mkdir()
        self.port = free_port()
        script = root / "control.sh"
        script.write_text(CONTROL)
        command = ["unshare", "--user", "--map-root-user", "--mount", "sh", str(script)]
        self.process = subprocess.Popen(
            [*command, str(self.data), str(self.control), str(self.port)],
            env={**os.environ, "CRM": CRM},
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def order(self, what: str, state: str) -> None:
        (self.control / "state").unlink(missing_ok=True)
        (self.control / what).touch()
        eventually(lambda: self._state() == state or None, within=60, what=f"disk {state}")

    def _state(self) -> str | None:
        path = self.control / "state"
        return path.read_text().strip() if path.exists() else None

    def log(self) -> str:
        path = self.control / "run.log"
        return path.read_text() if path.exists() else ""

    def stop(self) -> None:
        (self.control / "stop").touch()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[TinyDisk]:
    running = TinyDisk(tmp_path)
    try:
        wait_for_http(running.base, running.process)
        yield running
    except BaseException:
        print(running.log()[-5000:])
        raise
    finally:
        running.stop()


def test_a_full_disk_is_a_503_and_everything_resumes_when_space_returns(disk: TinyDisk) -> None:
    token = re.search(r"token[^:]*: (\S+)", disk.log())
    assert token, disk.log()
    client = httpx.Client(base_url=disk.base, headers={"Authorization": f"Bearer {token[1]}"})
    committed = [register(client, "before").json()["id"]]
    statuses = commands_while(client, lambda: disk.order("fill", "full"), committed)
    refused = register(client, "while full")
    assert refused.status_code == 503, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/storage-full")
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert int(refused.headers["retry-after"]) > 0
    assert set(statuses) <= {201, 503}
    disk.order("free", "free")
    committed.append(register(client, "after").json()["id"])
    head = client.get("/metrics").text
    assert "crm_projection_dead_letters" in head
    listed = eventually(lambda: department(client, committed), within=60, what="the read models")
    assert set(committed) <= listed
    ready = eventually(lambda: ready_or_none(client), within=60, what="/readyz")
    assert (ready["checks"]["dead_letters"], ready["checks"]["follower"]) == ("ok", "ok")


def register(client: httpx.Client, name: str) -> httpx.Response:
    response = client.post("/v1/customers", json={"name": name, "owner_department": "sales"})
    assert response.status_code in (201, 503), response.text
    return response


def commands_while(client: httpx.Client, action: Any, committed: list[str]) -> list[int]:
    """Commands from a thread while `action` runs (the disk fills under them)."""
    statuses: list[int] = []
    done = threading.Event()

    def send() -> None:
        while not done.is_set():
            response = register(client, "during")
            statuses.append(response.status_code)
            if response.status_code == 201:
                committed.append(response.json()["id"])

    thread = threading.Thread(target=send)
    thread.start()
    try:
        action()
    finally:
        done.set()
        thread.join()
    return statuses


def department(client: httpx.Client, wanted: list[str]) -> set[str] | None:
    page = client.get("/v1/departments/sales/customers", params={"limit": 500})
    found = {item["customer_id"] for item in page.json()["items"]}
    return found if set(wanted) <= found else None


def ready_or_none(client: httpx.Client) -> dict[str, Any] | None:
    response = client.get("/readyz")
    return response.json() if response.status_code == 200 else None
