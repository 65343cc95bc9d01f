"""SIGTERM stops `crm api` and `crm run` while an event stream is open: the stream's
body ends (cleanly: its client reconnects elsewhere with `Last-Event-ID`), and the
process closes the app and exits 0.

Red team: the server closed its port, then waited for the stream's client to leave,
which an EventSource (or a proxy holding the upstream) never does; a deploy hung until
SIGKILL, which loses the access log's queued records.
"""

from __future__ import annotations

import re
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import Processes, crm_processes, free_port, server_env
from tests.integration.api_support import LIVENESS_S

pytestmark = pytest.mark.e2e


def _token(crm: Processes, command: str, server: subprocess.Popen[bytes] | None) -> str:
    if server is None:  # `crm api`: a principal of its own, before it serves
        out = crm.run("principals", "add", "sam", "--department", "sales", "--role", "agent")
        return out.strip().splitlines()[-1]
    found = re.search(r"token[^:]*: (\S+)", crm.output(server))  # `crm run`'s bootstrap admin
    assert found, crm.output(server)
    return found.group(1)


@pytest.mark.parametrize("server_name", ["uvicorn", "granian"])
@pytest.mark.parametrize("command", ["api", "run"])
def test_sigterm_ends_the_open_event_streams_and_exits_0(
    command: str, server_name: str, pg_url: str, tmp_path: Path
) -> None:
    env = server_env(command, pg_url, tmp_path / "data") | {"CRM_HTTP_SERVER": server_name}
    with crm_processes(env, tmp_path) as crm:
        token = _token(crm, command, None) if command == "api" else ""
        port = free_port()
        server = crm.serve(command, port)
        token = token or _token(crm, command, server)
        url = f"http://127.0.0.1:{port}/v1/events/stream"
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.stream("GET", url, headers=headers, timeout=LIVENESS_S) as stream:
            assert stream.status_code == 200
            server.send_signal(signal.SIGTERM)
            # the client stays, reading nothing yet: before, the process waited for it
            exited = server.wait(timeout=LIVENESS_S)
            body = b"".join(stream.iter_raw())  # a reset or a cut chunk would raise
        assert exited == 0, crm.output(server)[-3000:]
        assert b"data:" not in body  # nothing was stored: keep-alives at most
        log = crm.output(server)
        assert '"event": "server stopping: ending event streams"' in log
        assert "timeout graceful shutdown exceeded" not in log  # ended, not cancelled
