"""Reading `GET /v1/events/stream` from tests: a stream read on its own thread.

`Stream` opens the request at once (so its start position and status are fixed when the
constructor returns) and appends every server-sent event to `events` as it arrives;
`ended` is set when the server closes the stream.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.e2e.processes import eventually

Event = tuple[str, int, dict[str, Any]]  # type, position, data


def parse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-sent events from response lines (type, id, decoded data)."""
    fields: dict[str, str] = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        elif "data" in fields:
            yield fields["event"], int(fields["id"]), json.loads(fields["data"])
            fields = {}


class Stream:
    def __init__(self, base_url: str, path: str, headers: dict[str, str]) -> None:
        self.events: list[Event] = []
        self.ended = threading.Event()
        self._client = httpx.Client(base_url=base_url, timeout=httpx.Timeout(10, read=120))
        request = self._client.build_request("GET", path, headers=headers)
        self.response = self._client.send(request, stream=True)
        self.status = self.response.status_code
        self._thread = threading.Thread(target=self._read, name="test-stream", daemon=True)
        if self.status == 200:
            self._thread.start()
        else:
            self.ended.set()

    def _read(self) -> None:
        try:
            for event in parse(self.response.iter_lines()):
                self.events.append(event)
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by `close()`
        finally:
            self.ended.set()

    def until(self, seen: Callable[[Event], bool], what: str) -> list[Event]:
        """The events received up to and including the first that `seen` accepts."""

        def arrived() -> list[Event] | None:
            for index, event in enumerate(list(self.events)):
                if seen(event):
                    return self.events[: index + 1]
            return None

        return eventually(arrived, within=30, what=what)

    def close(self) -> None:
        """Stop reading: shutting the socket down wakes the thread blocked in its read (a
        plain close would not), and the server sees the client go."""
        connection = self.response.extensions.get("network_stream")
        raw = None if connection is None else connection.get_extra_info("socket")
        if raw is not None:
            with contextlib.suppress(OSError):
                raw.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self.response.close()
        self._client.close()


def about(aggregate_id: str) -> Callable[[Event], bool]:
    return lambda event: event[2].get("originator_id") == aggregate_id
