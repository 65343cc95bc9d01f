"""Conversation invariants: lifecycle, entries, hand-offs and survey attribution."""

from __future__ import annotations

import base64
from uuid import UUID

import msgspec
import pytest

from domain import codec
from domain import fields as bound
from domain.base import Aggregate, AggregateFullError, InvalidTransition, ValidationFailed
from domain.codec import CodecMapper
from domain.conversation import (
    Conversation,
    ConversationClosedError,
    InternalNoteAdded,
    RecommendationScored,
    SatisfactionRated,
)
from domain.conversation_room import ConversationFullError
from domain.conversation_surveys import SurveyNotAllowedError
from domain.customer import CustomerArchivedError, CustomerErasedError
from tests.unit.domain.factories import (
    CONVERSATION_ID,
    CUSTOMER_ID,
    ctx,
    customer,
    emitted,
    new_conversation,
    replay,
)


def opened() -> Conversation:
    return Conversation.open(
        ctx(department="support"),
        conversation_id=CONVERSATION_ID,
        customer=customer(),
        channel="chat",
        subject="Invoice question",
        agent="agent-1",
    )


def test_open_defaults_department_and_names_the_customer() -> None:
    conversation = opened()
    (event,) = conversation.collect_events()
    assert event.data_subject == CUSTOMER_ID
    assert (conversation.department, conversation.status) == ("support", "open")
    assert conversation.customer_id == CUSTOMER_ID


def test_open_rejects_unknown_channel_and_archived_or_erased_customers() -> None:
    with pytest.raises(ValidationFailed, match="channel"):
        Conversation.open(
            ctx(), conversation_id=CONVERSATION_ID, customer=customer(), channel="fax", subject="x"
        )
    archived, erased = customer(), customer()
    archived.archive(ctx())
    erased.erase(ctx())
    for who, error in ((archived, CustomerArchivedError), (erased, CustomerErasedError)):
        with pytest.raises(error):
            Conversation.open(
                ctx(), conversation_id=CONVERSATION_ID, customer=who, channel="chat", subject="x"
            )


def test_messages_notes_corrections_and_retractions() -> None:
    conversation = opened()
    conversation.log_message(
        ctx(), message_id="m1", direction="inbound", author="Ada", content="Hello"
    )
    conversation.add_note(ctx(actor="agent-2"), message_id="n1", content="VIP, be nice")
    conversation.correct_message(ctx(), "m1", content="Hello!", reason="typo")
    conversation.retract_message(ctx(), "n1", reason="wrong customer")
    assert conversation.messages["m1"].content == "Hello!"
    assert conversation.messages["m1"].corrected
    retracted = conversation.messages["n1"]
    assert (retracted.retracted, retracted.reason) == (True, "wrong customer")
    assert (retracted.author, retracted.content) == ("", "")  # in the history only
    note = next(e for e in conversation.collect_events() if isinstance(e, InternalNoteAdded))
    assert (note.author, note.content) == ("agent-2", "VIP, be nice")
    with pytest.raises(InvalidTransition, match="retracted"):
        conversation.correct_message(ctx(), "n1", content="x", reason="y")
    with pytest.raises(ValidationFailed, match="unknown message"):
        conversation.retract_message(ctx(), "zz", reason="y")
    with pytest.raises(ValidationFailed, match="already exists"):
        conversation.add_note(ctx(), message_id="m1", content="dup")
    with pytest.raises(ValidationFailed, match="direction"):
        conversation.log_message(ctx(), message_id="m9", direction="up", author="a", content="b")


def test_a_message_id_that_a_url_path_cannot_carry_is_refused_yet_loads_when_stored() -> None:
    conversation = opened()
    with pytest.raises(ValidationFailed, match=r"^message_id: must be an opaque id"):
        conversation.log_message(
            ctx(), message_id="a/b", direction="inbound", author="Ada", content="Hi"
        )
    with pytest.raises(ValidationFailed, match=r"^message_id: must be an opaque id"):
        conversation.add_note(ctx(), message_id="..", content="Hi")
    conversation.add_note(ctx(), message_id="n1", content="Hi")
    opening, noted = conversation.collect_events()
    stored = replay([opening, msgspec.structs.replace(noted, message_id="a/b")])
    assert isinstance(stored, Conversation)
    stored.retract_message(ctx(), "a/b", reason="old id")
    assert stored.messages["a/b"].retracted


def test_closed_conversation_takes_no_entries_or_handoffs() -> None:
    conversation = opened()
    conversation.close(ctx(), outcome="resolved")
    with pytest.raises(ConversationClosedError):
        conversation.log_message(
            ctx(), message_id="m", direction="inbound", author="a", content="b"
        )
    with pytest.raises(ConversationClosedError):
        conversation.add_note(ctx(), message_id="n", content="b")
    with pytest.raises(ConversationClosedError):
        conversation.hand_off(ctx(), to_department="sales")
    with pytest.raises(InvalidTransition):
        conversation.close(ctx(), outcome="resolved")


def test_hand_off_moves_department_and_counts() -> None:
    conversation = opened()
    conversation.hand_off(ctx(), to_department="sales", to_agent="agent-9", note="upsell")
    conversation.hand_off(ctx(), to_department="sales", to_agent="agent-9")
    assert (conversation.department, conversation.agent) == ("sales", "agent-9")
    assert conversation.handoffs == 1
    assert "agent-9" in conversation.participants


def crowded(monkeypatch: pytest.MonkeyPatch, most: int) -> Conversation:
    """Open, with `most` participants, the most one may (`MAX_PARTICIPANTS` lowered)."""
    monkeypatch.setattr(bound, "MAX_PARTICIPANTS", most)
    return new_conversation(participants=[f"p{n}" for n in range(most)])


def test_a_hand_off_to_one_agent_too_many_is_refused_naming_to_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """It was a 422 naming `participants`, which the request did not send, raised while
    applying the event: the decision refuses it now, as a full conversation."""
    conversation = crowded(monkeypatch, 3)
    with pytest.raises(ConversationFullError, match=r"3 participants.*to_agent 'newcomer'"):
        conversation.hand_off(ctx(), to_department="sales", to_agent="newcomer")
    assert conversation.version == 1
    conversation.hand_off(ctx(), to_department="sales", to_agent="p1")  # one of them
    conversation.hand_off(ctx(), to_department="support")  # to a department only
    assert conversation.participants == ("p0", "p1", "p2")
    assert conversation.handoffs == 2


def test_stored_events_beyond_the_participants_bound_still_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An applier never checks a bound: lowering `MAX_PARTICIPANTS` later (or events
    stored before a bound existed) must not make a conversation fail to load."""
    conversation = crowded(monkeypatch, 3)
    monkeypatch.setattr(bound, "MAX_PARTICIPANTS", 4)
    conversation.hand_off(ctx(), to_department="sales", to_agent="p3")
    events = conversation.collect_events()
    monkeypatch.setattr(bound, "MAX_PARTICIPANTS", 2)
    loaded = replay(events)
    assert isinstance(loaded, Conversation)
    assert loaded.participants == ("p0", "p1", "p2", "p3")
    assert loaded.agent == "p3"


def test_survey_answers_credit_the_closing_department_and_agent() -> None:
    conversation = opened()
    conversation.hand_off(ctx(), to_department="sales", to_agent="agent-9")
    conversation.close(ctx(), outcome="sale", summary="bought the upgrade")
    conversation.collect_events()
    conversation.rate_satisfaction(ctx(actor="survey"), score=5, comment="great")
    conversation.score_recommendation(ctx(actor="survey"), score=9)
    csat, nps = conversation.collect_events()
    assert isinstance(csat, SatisfactionRated)
    assert isinstance(nps, RecommendationScored)
    assert (csat.department, csat.agent) == ("sales", "agent-9")
    assert (nps.department, nps.score) == ("sales", 9)


def test_one_survey_answer_of_each_kind_per_closing() -> None:
    conversation = opened()
    with pytest.raises(SurveyNotAllowedError, match="after"):
        conversation.rate_satisfaction(ctx(), score=4)
    conversation.close(ctx(), outcome="resolved")
    conversation.rate_satisfaction(ctx(), score=4)
    with pytest.raises(SurveyNotAllowedError, match="already"):
        conversation.rate_satisfaction(ctx(), score=5)
    conversation.reopen(ctx(), reason="customer wrote again")
    conversation.close(ctx(), outcome="resolved")
    conversation.rate_satisfaction(ctx(), score=2)
    assert (conversation.last_csat, conversation.closings) == (2, 2)


@pytest.mark.parametrize(("method", "score"), [("csat", 0), ("csat", 6), ("nps", -1), ("nps", 11)])
def test_survey_scores_are_bounded(method: str, score: int) -> None:
    conversation = opened()
    conversation.close(ctx(), outcome="resolved")
    answer = (
        conversation.rate_satisfaction if method == "csat" else conversation.score_recommendation
    )
    with pytest.raises(ValidationFailed, match="score"):
        answer(ctx(), score=score)


def test_reopen_needs_a_closed_conversation_and_replay_matches() -> None:
    conversation = opened()
    with pytest.raises(InvalidTransition):
        conversation.reopen(ctx(), reason="x")
    conversation.close(ctx(), outcome="unresolved")
    conversation.reopen(ctx(), reason="new info")
    assert conversation.status == "open"
    assert conversation.outcome is None
    assert emitted(conversation)[-2:] == ["ConversationClosed", "ConversationReopened"]


def test_replay_gives_the_same_state() -> None:
    conversation = opened()
    conversation.log_message(ctx(), message_id="m1", direction="outbound", author="a", content="b")
    conversation.close(ctx(), outcome="resolved")
    conversation.score_recommendation(ctx(), score=3, comment="meh")
    assert replay(conversation.collect_events()) == conversation


def test_a_conversation_holds_a_bounded_number_of_entries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bound, "MAX_ENTRIES", 2)
    conversation = opened()
    conversation.log_message(ctx(), message_id="m1", direction="inbound", author="a", content="b")
    conversation.add_note(ctx(), message_id="n1", content="c")
    with pytest.raises(ConversationFullError, match="2 messages and notes"):
        conversation.log_message(
            ctx(), message_id="m2", direction="inbound", author="a", content="d"
        )
    with pytest.raises(ConversationFullError):
        conversation.add_note(ctx(), message_id="n2", content="e")
    conversation.correct_message(ctx(), "m1", content="b!", reason="typo")  # no new entry
    assert sorted(conversation.messages) == ["m1", "n1"]


def test_a_conversation_holds_a_bounded_amount_of_text_corrections_included(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bound, "CONVERSATION_TEXT", 10)
    conversation = opened()
    conversation.log_message(
        ctx(), message_id="m1", direction="inbound", author="a", content="12345"
    )
    conversation.correct_message(ctx(), "m1", content="12é", reason="typo")  # 9 bytes logged
    with pytest.raises(ConversationFullError, match="more than 10 bytes"):
        conversation.add_note(ctx(), message_id="n1", content="é")  # 2 bytes, 1 character
    with pytest.raises(ConversationFullError):
        conversation.correct_message(ctx(), "m1", content="123", reason="again")
    conversation.add_note(ctx(), message_id="n1", content="1")  # exactly full
    assert isinstance(ConversationFullError("x"), InvalidTransition)  # a 409, as a closed one
    events = conversation.collect_events()
    full = replay(events)  # the count is rebuilt from the events
    assert isinstance(full, Conversation)
    with pytest.raises(ConversationFullError):
        full.add_note(ctx(), message_id="n2", content="x")
    sealing = CodecMapper(_Sealing())
    unopened: Aggregate | None = None
    for event in events:  # as commands rebuild it: sealed, nothing opened
        unopened = codec.sealed_event(sealing.to_stored_event(event)).mutate(unopened)
    assert isinstance(unopened, Conversation)
    assert unopened.messages["m1"].content.startswith(codec.SEALED_PREFIX)
    with pytest.raises(ConversationFullError):
        unopened.add_note(ctx(), message_id="n2", content="x")


class _Sealing:
    """Seals in the form `codec.SEALED_PREFIX` documents (nonce and tag zeroed), with
    the plaintext in the clear inside: only its size matters here."""

    def encrypt(self, subject: UUID, plaintext: str) -> str:
        raw = bytes(12) + plaintext.encode() + bytes(16)
        return codec.SEALED_PREFIX + base64.urlsafe_b64encode(raw).decode()

    def decrypt(self, subject: UUID, sealed: str) -> str:
        raise AssertionError("nothing is opened")


@pytest.mark.parametrize("text", ["", "a", "ab", "abc", "é", "€uro", "x" * 65_536])
def test_text_size_is_the_plaintext_s_bytes_sealed_or_not(text: str) -> None:
    assert codec.text_size(text) == len(text.encode())
    assert codec.text_size(_Sealing().encrypt(UUID(int=1), text)) == len(text.encode())


def test_closing_and_reopening_in_a_loop_ends_at_max_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Hand-offs and closings add events but no entries: the event bound ends the loop."""
    assert Conversation.max_events == bound.CONVERSATION_EVENTS > bound.MAX_ENTRIES
    monkeypatch.setattr(Conversation, "max_events", 5)
    conversation = opened()
    for _ in range(2):
        conversation.close(ctx(), outcome="resolved")
        conversation.reopen(ctx(), reason="again")
    with pytest.raises(AggregateFullError, match=r"conversation .* holds 5 events"):
        conversation.close(ctx(), outcome="resolved")
    assert conversation.status == "open"
    assert conversation.version == 5
