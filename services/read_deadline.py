"""What a read of the API raises past its deadline, and what it tells clients to wait.

Every query of the API's reads runs for at most `CRM_READ_QUERY_SECONDS` (PostgreSQL's
`statement_timeout` on the connections of `services.pg_read_connections`, SQLite's interrupt in
`services.api.direct_reads`). The code that imposes the deadline raises `QueryTimeoutError`
from the driver's cancel, so the answer (503 `query-timeout`, `services.api.store_troubles`) can
say when to retry by the deadline in force rather than by a figure fixed for the default.
I/O: none.
"""

from __future__ import annotations

import math


def retry_after(seconds: float) -> str:
    """What a `Retry-After` asks of a client turned away for queries that hold the
    reads for at most `seconds` each: every query running when it was answered has met
    its deadline by then (its ceiling in whole seconds, at least one)."""
    return str(max(1, math.ceil(seconds)))


class QueryTimeoutError(Exception):
    """A read query ran past its deadline of `seconds` and was cancelled (raised from
    the driver's error: psycopg's `QueryCanceled`, sqlite3's interrupt)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"a read query ran past its deadline of {seconds:g} s")
        self.seconds = seconds

    @property
    def retry_after(self) -> str:
        return retry_after(self.seconds)
