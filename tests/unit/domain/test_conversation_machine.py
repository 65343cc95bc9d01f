"""Conversation against a plain model under random command sequences."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from domain import validation as check
from domain.base import DomainError, InvalidTransition, ValidationFailed
from domain.conversation import Conversation, ConversationClosedError
from domain.conversation_surveys import SurveyNotAllowedError
from tests.unit.domain.factories import CONVERSATION_ID, customer
from tests.unit.domain.machine_support import MACHINE_SETTINGS, AggregateMachine

message_ids = st.sampled_from(["m1", "m2", "m3", "m4"])
departments = st.sampled_from(["sales", "support"])
agents = st.sampled_from(["agent-1", "agent-2", None])


class ConversationMachine(AggregateMachine):
    conversation: Conversation
    model: dict[str, Any]

    def subject(self) -> Conversation:
        return self.conversation

    @initialize()
    def open(self) -> None:
        self.conversation = Conversation.open(
            self.next_ctx(department="support"),
            conversation_id=CONVERSATION_ID,
            customer=customer(),
            channel="email",
            subject="Where is my order?",
        )
        self.history.extend(self.conversation.collect_events())
        self.model = {"open": True, "messages": {}, "where": ("support", None), "handoffs": 0}
        self.model |= {"closings": 0, "csat": False, "nps": False}

    def open_error(self) -> type[DomainError] | None:
        return None if self.model["open"] else ConversationClosedError

    @rule(message_id=message_ids, note=st.booleans(), content=st.text(min_size=1, max_size=5))
    def add_entry(self, message_id: str, note: bool, content: str) -> None:
        error = self.open_error()
        if error is None and message_id in self.model["messages"]:
            error = ValidationFailed
        if error is None and not content.strip():
            error = ValidationFailed
        if error is None and any(
            c in check.FORBIDDEN_IN_TEXT and c not in "\n\t" for c in content.strip()
        ):
            error = ValidationFailed  # free text: no control characters but newline and tab
        conversation, ctx = self.conversation, self.next_ctx()
        if note:
            self.run(
                error, lambda: conversation.add_note(ctx, message_id=message_id, content=content)
            )
        else:
            self.run(
                error,
                lambda: conversation.log_message(
                    ctx, message_id=message_id, direction="inbound", author="Ada", content=content
                ),
            )
        if error is None:
            self.model["messages"][message_id] = "live"

    @rule(message_id=message_ids, retract=st.booleans())
    def correct_or_retract(self, message_id: str, retract: bool) -> None:
        state = self.model["messages"].get(message_id)
        error = {None: ValidationFailed, "retracted": InvalidTransition}.get(state)
        conversation, ctx = self.conversation, self.next_ctx()
        if retract:
            self.run(error, lambda: conversation.retract_message(ctx, message_id, reason="wrong"))
        else:
            self.run(
                error,
                lambda: conversation.correct_message(
                    ctx, message_id, content=f"fixed {self.minute}", reason="typo"
                ),
            )
        if error is None and retract:
            self.model["messages"][message_id] = "retracted"

    @rule(department=departments, agent=agents)
    def hand_off(self, department: str, agent: str | None) -> None:
        error = self.open_error()
        move = self.conversation.hand_off
        self.run(error, lambda: move(self.next_ctx(), to_department=department, to_agent=agent))
        if error is None and (department, agent) != self.model["where"]:
            self.model["where"] = (department, agent)
            self.model["handoffs"] += 1

    @rule()
    def close(self) -> None:
        error = self.open_error() and InvalidTransition
        self.run(error, lambda: self.conversation.close(self.next_ctx(), outcome="resolved"))
        if error is None:
            self.model |= {"open": False, "csat": False, "nps": False}
            self.model["closings"] += 1

    @precondition(lambda self: not self.model["open"])
    @rule()
    def reopen(self) -> None:
        self.run(None, lambda: self.conversation.reopen(self.next_ctx(), reason="again"))
        self.model["open"] = True

    @rule(csat=st.booleans(), score=st.integers(0, 10))
    def answer_survey(self, csat: bool, score: int) -> None:
        kind = "csat" if csat else "nps"
        error: type[DomainError] | None = None
        if self.model["open"] or self.model[kind]:
            error = SurveyNotAllowedError
        elif csat and not 1 <= score <= 5:
            error = ValidationFailed
        conversation, ctx = self.conversation, self.next_ctx(actor="survey")
        answer = conversation.rate_satisfaction if csat else conversation.score_recommendation
        self.run(error, lambda: answer(ctx, score=score))
        if error is None:
            self.model[kind] = True

    @invariant()
    def matches_the_model(self) -> None:
        c, m = self.conversation, self.model
        assert c.status == ("open" if m["open"] else "closed")
        assert (c.department, c.agent) == m["where"]
        assert (c.handoffs, c.closings) == (m["handoffs"], m["closings"])
        assert (c.csat_given, c.nps_given) == (m["csat"], m["nps"])
        retracted = {k for k, v in m["messages"].items() if v == "retracted"}
        assert {k for k, msg in c.messages.items() if msg.retracted} == retracted
        assert set(c.messages) == set(m["messages"])


ConversationMachine.TestCase.settings = MACHINE_SETTINGS
TestConversationMachine = ConversationMachine.TestCase
