"""Every insert names each event's data subject (`pg_batch_recorder.insert_columns`): for
a stored form the codec made it is the one the codec knew (`SubjectStoredEvent`), the
same `batch_refusals.data_subject` reads from the state, without decoding the event
again; a stored event made elsewhere is still read from its state."""

from __future__ import annotations

import dataclasses

from eventsourcing.persistence import StoredEvent

from consumers.keyring import Keyring, MemoryKeyStore
from domain.base import DomainEvent
from domain.codec import CodecMapper, SubjectStoredEvent
from services.batch_refusals import data_subject
from services.pg_batch_recorder import insert_columns
from tests.unit.domain.factories import CUSTOMER_ID, ctx, customer, new_conversation


def decided_events() -> list[DomainEvent]:
    ada, talk = customer(), new_conversation()
    talk.log_message(ctx(), message_id="m1", direction="inbound", author="Ada", content="hi")
    ada.update_profile(ctx(), company="Acme")
    return [*ada.collect_events(), *talk.collect_events()]


def test_the_codec_s_stored_events_carry_the_subject_their_state_names() -> None:
    mapper = CodecMapper(Keyring(MemoryKeyStore()))
    stored = [mapper.sealed_and_stored(event)[1] for event in decided_events()]
    assert all(isinstance(s, SubjectStoredEvent) for s in stored)
    subjects = insert_columns(stored)[4]
    assert subjects == [data_subject(s) for s in stored] == [CUSTOMER_ID] * len(stored)


def test_the_subject_a_codec_knew_is_taken_as_it_is() -> None:
    """Not decoded from the state again: a state no code reads still names it."""
    mapper = CodecMapper()
    [made] = [mapper.sealed_and_stored(event)[1] for event in decided_events()[-1:]]
    unreadable = dataclasses.replace(made, state=b"not an event")
    assert insert_columns([unreadable])[4] == [CUSTOMER_ID]


def test_a_stored_event_made_elsewhere_is_read_from_its_state() -> None:
    mapper = CodecMapper()
    made = [mapper.sealed_and_stored(event)[1] for event in decided_events()]
    plain = [StoredEvent(s.originator_id, s.originator_version, s.topic, s.state) for s in made]
    assert insert_columns(plain)[4] == [CUSTOMER_ID] * len(plain)
