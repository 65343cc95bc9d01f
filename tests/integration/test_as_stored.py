"""The event store as consumers ask it about records (`consumers.as_stored`, PostgreSQL):
states of ordinary size come back whole, larger ones as their SHA-256 (records forged
to name the largest events' positions must not cost their size in memory), and either
way a record carries the stored event or it does not."""

from __future__ import annotations

from datetime import UTC, datetime
from uuid import uuid4

import pytest

from consumers.as_stored import WHOLE_BYTES, digest, mismatches
from consumers.envelope import delivered
from consumers.relay import encode_notification
from domain.base import Context
from domain.conversation import Conversation
from domain.customer import Customer
from tests.integration.projection_support import event_log, pg_keyring

pytestmark = pytest.mark.integration


def test_states_come_whole_or_as_digests_and_records_are_judged_either_way(pg_url: str) -> None:
    at = Context(
        actor="ann", actor_department="support", occurred_at=datetime.now(UTC), correlation_id="c"
    )
    ada = Customer.register(at, customer_id=uuid4(), name="Ada", owner_department="support")
    talk = Conversation.open(
        at, conversation_id=uuid4(), customer=ada, channel="email", subject="Long"
    )
    talk.log_message(at, message_id="m1", direction="inbound", author="ada", content="x" * 6000)
    with pg_keyring(pg_url) as keyring, event_log(pg_url, keyring) as log:
        small, _, large = log.store([*ada.collect_events(), *talk.collect_events()])
        held = log.stored.held([small.id, large.id, large.id + 1])
        records = [encode_notification(n, "")[2] for n in (small, large)]
        changed = bytearray(delivered(records[1]).data)
        changed[-3] ^= 1  # same length, one bit off: its digest differs
        forged = records[1].replace(bytes(delivered(records[1]).data), bytes(changed))
        reasons = mismatches([delivered(v) for v in [*records, forged]], log.stored)

    assert len(large.state) > WHOLE_BYTES >= len(small.state)
    assert set(held) == {small.id, large.id}
    assert (held[small.id].length, held[small.id].state) == (len(small.state), small.state)
    assert (held[large.id].length, held[large.id].state) == (len(large.state), digest(large.state))
    assert reasons == [
        None,
        None,
        f"not as stored at position {large.id}: its data differs from the stored MessageLogged",
    ]
