"""An embedded API with its read models, for integration tests.

SQLite event store and read models in `tmp_path`; the follower runs when the test says
so (`catch_up()`), so tests are deterministic and need no sleeps.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import uvicorn
from httpx import Response
from litestar import Litestar
from litestar.testing import TestClient

from consumers.follower import EventStoreFollower, applied_position
from consumers.readmodel_store import ReadModelStore
from consumers.store_postgres import PostgresStore
from consumers.store_sqlite import SqliteStore
from projections import PROJECTIONS
from services.api import create_app
from services.api.read_models import ReadModels
from services.bootstrap import Runtime, bootstrap
from services.principals import Principals
from services.settings import load_settings
from tests.e2e.processes import eventually, free_port

Client = TestClient[Any]
LIVENESS_S = 30.0
"""A test fails rather than waits longer for an answer: a bound on hanging, not a speed."""


@dataclass
class EmbeddedApi:
    runtime: Runtime
    store: ReadModelStore
    follower: EventStoreFollower
    app: Litestar

    def catch_up(self) -> None:
        """Apply every stored event to every read model."""
        while self.follower.step():
            pass

    def token(self, name: str, department: str, role: str) -> dict[str, str]:
        principals: Principals = self.app.state.services.principals
        return {"Authorization": f"Bearer {principals.add(name, department, role)}"}


@contextmanager
def embedded_api(
    tmp_path: Path,
    read_wait: str = "0.05",
    database_url: str | None = None,
    settings: dict[str, str] | None = None,
) -> Iterator[EmbeddedApi]:
    """The API with its read models on SQLite files in `tmp_path`, or with the event store
    and read models in PostgreSQL at `database_url` (the projections still follow the event
    store in process: no Kafka); `settings`: other `CRM_` variables."""
    env = {"CRM_DATA_DIR": str(tmp_path), "CRM_READ_WAIT_SECONDS": read_wait, **(settings or {})}
    runtime = bootstrap(
        load_settings(env | ({"CRM_DATABASE_URL": database_url} if database_url else {}))
    )
    store: ReadModelStore = (
        SqliteStore(tmp_path / "readmodels.db")
        if database_url is None
        else PostgresStore(database_url)
    )
    follower = EventStoreFollower(runtime.app, store, PROJECTIONS.values())
    app = create_app(
        runtime,
        queries_helper=ReadModels(store),
        applied_position=lambda names: applied_position(store, names),
    )
    try:
        yield EmbeddedApi(runtime, store, follower, app)
    finally:
        store.close()
        runtime.close()


@contextmanager
def served(app: Litestar) -> Iterator[str]:
    """`app` behind a real uvicorn on a free port in a thread (for streaming responses,
    which the in-process TestClient buffers); yields the base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning")
    config.timeout_graceful_shutdown = 1
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="test-uvicorn", daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{config.port}"
    try:
        eventually(lambda: server.started or None, within=10, what="uvicorn")
        yield base
    finally:
        server.should_exit = True
        thread.join(timeout=10)


class RawAnswer(NamedTuple):
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]  # by lower-cased name (a repeated one: its last line)


def send_raw(
    base: str,
    method: str,
    url: str,
    headers: Sequence[tuple[str, str | bytes]],
    body: bytes = b"",
) -> RawAnswer:
    """`headers` sent to the server at `base` one line each, in order, a name repeated as
    given: httpx (and so the TestClient) folds repeated headers into one line. A value
    given as bytes goes out byte for byte. A body is sent with its Content-Length."""
    connection = http.client.HTTPConnection(base.removeprefix("http://"), timeout=10)
    try:
        connection.putrequest(method, url)
        for name, value in headers:
            connection.putheader(name, value)
        connection.putheader("Content-Length", str(len(body)))
        connection.endheaders(body)
        answer = connection.getresponse()
        named = {name.lower(): value for name, value in answer.getheaders()}
        return RawAnswer(answer.status, named.get("content-type", ""), answer.read(), named)
    finally:
        connection.close()


def answered_within_liveness(client: Client, path: str) -> tuple[Response, float]:
    """`path`'s answer and the seconds it took, or a failure after `LIVENESS_S` (the
    in-process client has no timeout of its own; whatever held the request ends it)."""
    began = time.monotonic()
    pool = ThreadPoolExecutor(1)
    try:
        answer = pool.submit(client.get, path).result(timeout=LIVENESS_S)
    finally:
        pool.shutdown(wait=False)
    return answer, time.monotonic() - began


def eventually_ready(client: Client) -> bool:
    """`/readyz` answers 200 within `LIVENESS_S`."""
    deadline = time.monotonic() + LIVENESS_S
    while time.monotonic() < deadline:
        if client.get("/readyz").status_code == 200:
            return True
        time.sleep(0.2)
    return False
