"""What a 409 `idempotency-key-in-use` tells a client to wait: the whole seconds left of
the holder's lease, at least one (`Retry-After`)."""

from __future__ import annotations

import pytest

from services.idempotency import KeyInUseError, outcome
from services.idempotency_store import KeyRow
from tests.unit.services.test_idempotency import ATTEMPT, row
from tests.unit.services.test_query_turns import answered

NOW = ATTEMPT.reserved_at


def refused(key_row: KeyRow | None) -> KeyInUseError:
    with pytest.raises(KeyInUseError) as error:
        outcome(key_row, "request", ATTEMPT)
    return error.value


@pytest.mark.parametrize(
    ("lease_until", "retry_after"),
    [(NOW + 30.0, "30"), (NOW + 12.3, "13"), (NOW + 0.2, "1"), (NOW, "1"), (None, "1")],
)
def test_a_key_in_use_asks_a_retry_after_its_lease(
    lease_until: float | None, retry_after: str
) -> None:
    error = refused(row(holder="theirs", lease_until=lease_until))
    answer = answered(error)
    assert (answer.status_code, answer.headers["Retry-After"]) == (409, retry_after)
    assert answer.content["reason"] == "idempotency-key-in-use"


def test_a_key_released_meanwhile_asks_a_retry_at_once() -> None:
    assert refused(None).retry_after == "1"
