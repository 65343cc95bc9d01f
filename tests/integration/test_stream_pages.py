"""What one page of `GET /v1/events/stream` holds: about `PAGE_BYTES` of stored events,
however long they are. A page was 200 events: through messages of 60 kB, one page of one
stream took ~42 MiB at its peak (the stored rows, their events sealed and opened, and the
documents), and a principal may hold several streams."""

from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

from litestar.testing import TestClient

from services.api.events_stream import PAGE_BYTES, EventStream
from services.commands import Caller
from services.states_as_of import AggregatesAsOf
from tests.integration.api_support import EmbeddedApi, embedded_api

MESSAGE = "x" * 60_000


def _conversations_of_long_messages(api: EmbeddedApi, headers: dict[str, str]) -> int:
    """4 conversations of 50 messages of 60 kB each; how many events were stored."""
    with TestClient[Any](app=api.app) as client:
        customer = {"name": "Ada", "company": "Acme", "owner_department": "sales"}
        customer_id = client.post("/v1/customers", json=customer, headers=headers).json()["id"]
        opened = {"customer_id": customer_id, "channel": "email", "subject": "long"}
        for _ in range(4):
            conversation = client.post("/v1/conversations", json=opened, headers=headers)
            messages = f"/v1/conversations/{conversation.json()['id']}/messages"
            for _ in range(50):
                body = {"direction": "inbound", "author": "Ada", "content": MESSAGE}
                assert client.post(messages, json=body, headers=headers).status_code == 201
    return 1 + 4 * 51


def test_a_stream_page_holds_about_page_bytes_of_events_however_long_they_are(
    tmp_path: Path,
) -> None:
    with embedded_api(tmp_path) as api:
        headers = api.token("root", "sales", "admin")
        stored = _conversations_of_long_messages(api, headers)
        services = api.app.state.services
        token = headers["Authorization"].removeprefix("Bearer ")
        principal = services.principals.authenticate(token)
        stream = EventStream(services, Caller(principal=principal, correlation_id="t"), token)
        states = AggregatesAsOf(services.app)
        position, delivered, peaks = 0, 0, []
        tracemalloc.start()
        try:
            while True:
                tracemalloc.reset_peak()
                before = tracemalloc.get_traced_memory()[0]
                last, page = stream.page(principal, None, position, states)
                peaks.append(tracemalloc.get_traced_memory()[1] - before)
                if last == position:
                    break
                position, delivered = last, delivered + len(page)
        finally:
            tracemalloc.stop()
    assert delivered == stored  # every event, in pages
    assert max(peaks) < 12 * PAGE_BYTES, [peak // 2**20 for peak in peaks]


REPLAYS = 6  # streams replaying at once, each through all 4 long conversations
BUDGET_MB = 8


def test_replays_at_once_keep_their_states_within_one_budget_of_the_process(
    tmp_path: Path,
) -> None:
    """Each stream kept up to 32 MiB of aggregates (`STATES_BYTES`), so 64 streams of a
    process could keep 2 GiB: here 6 replays kept 16 MiB each (96 MiB). They now share
    `CRM_STREAMS_CACHE_MB`, and each still delivers every event."""
    settings = {"CRM_STREAMS_CACHE_MB": str(BUDGET_MB)}
    with embedded_api(tmp_path, settings=settings) as api:
        headers = api.token("root", "sales", "admin")
        stored = _conversations_of_long_messages(api, headers)
        services = api.app.state.services
        token = headers["Authorization"].removeprefix("Bearer ")
        principal = services.principals.authenticate(token)
        caller = Caller(principal=principal, correlation_id="t")
        streams = [EventStream(services, caller, token) for _ in range(REPLAYS)]
        tracemalloc.start()
        try:
            kept, delivered = _replayed_together(streams, principal)
        finally:
            tracemalloc.stop()
    assert delivered == [stored] * REPLAYS
    assert max(kept) < (BUDGET_MB + 2) * 2**20, [held // 2**20 for held in kept]


def _replayed_together(streams: list[EventStream], principal: Any) -> tuple[list[int], list[int]]:
    """Every stream replays from the start, a page of each in turn; what is still
    allocated after each turn (the states the streams keep), and what each delivered."""
    states = [stream.states() for stream in streams]
    positions, delivered, kept = [0] * len(streams), [0] * len(streams), []
    before = tracemalloc.get_traced_memory()[0]
    while True:
        moved = False
        for n, stream in enumerate(streams):
            last, page = stream.page(principal, None, positions[n], states[n])
            moved |= last > positions[n]
            positions[n], delivered[n] = last, delivered[n] + len(page)
        del page
        kept.append(tracemalloc.get_traced_memory()[0] - before)
        if not moved:
            return kept, delivered
