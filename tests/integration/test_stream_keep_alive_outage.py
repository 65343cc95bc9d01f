"""An open event stream keeps writing its keep-alives while PostgreSQL cannot be reached.

Red team: with PostgreSQL stopped for 45 s a stream sent nothing until its client's
read timeout fired (the same through a full disk): it waited out the outage, as meant,
but silently, so a proxy's idle timeout (nginx's 60 s) dropped it all the same and the
EventSource's reconnection got the outage's 503. The API here reaches PostgreSQL
through a proxy (`CommitCut`), which the test closes: every connection, open or new,
refused, as a stopped server's are; a real uvicorn serves the stream.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from services.api import events_stream
from tests.integration.api_support import LIVENESS_S, embedded_api, served
from tests.integration.pg_commit_cut import CommitCut

pytestmark = pytest.mark.integration

KEEP_ALIVES = 3
"""How many the stream writes in the outage, a few intervals."""


def _through(proxy: CommitCut, url: str) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"
    plain = "sslmode=disable&gssencmode=disable"  # the proxy forwards start-up unread
    return urlunsplit(parts._replace(netloc=netloc, query=plain))


def _comments(lines: Iterator[str]) -> Iterator[str]:
    return (line for line in lines if line.startswith(":"))


def test_a_stream_keeps_its_keep_alives_while_postgresql_is_away(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_stream, "KEEP_ALIVE_SECONDS", 0.5)
    parts = urlsplit(pg_url)
    proxy = CommitCut((parts.hostname or "127.0.0.1", parts.port or 5432), seconds=0)
    with (
        closing(proxy),
        embedded_api(tmp_path, database_url=_through(proxy, pg_url)) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=LIVENESS_S) as http,
    ):
        sam = api.token("sam", "sales", "agent")
        with http.stream("GET", "/v1/events/stream", headers=sam) as stream:
            assert stream.status_code == 200
            comments = _comments(stream.iter_lines())
            assert next(comments) == ": keep-alive"  # as ever, while the store answers
            proxy.close()  # PostgreSQL away: every connection reset, new ones refused
            assert http.get("/readyz").status_code == 503
            # before, none came: the client's read timeout (LIVENESS_S) ended the wait
            during = [next(comments) for _ in range(KEEP_ALIVES)]
        assert during == [": keep-alive"] * KEEP_ALIVES
