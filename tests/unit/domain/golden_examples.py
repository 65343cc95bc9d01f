"""One example of every event type, produced by the real decisions.

`python -m tests.unit.domain.golden_examples` writes a golden file for each type that
has none yet (it never rewrites one: a golden file is a stored event from the past
and must keep decoding as it is).
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import msgspec

from domain.base import DomainEvent
from domain.codec import CodecMapper
from domain.conversation import Conversation
from domain.task import Task, TaskReopened
from tests.unit.domain.factories import CONVERSATION_ID, T0, TASK_ID, ctx, customer

GOLDEN_DIR = Path(__file__).resolve().parents[1] / "golden"


def customer_examples() -> list[DomainEvent]:
    c = customer()
    c.update_profile(ctx(minutes=1), phone="+44 20 7946 0958", company="ACME")
    c.change_owner(ctx(minutes=2), department="support", agent="agent-2")
    c.share_with(ctx(minutes=3), "sales")
    c.unshare(ctx(minutes=4), "sales")
    c.tag(ctx(minutes=5), "vip")
    c.untag(ctx(minutes=6), "vip")
    c.set_consent(ctx(minutes=7), "email_marketing", True)
    c.record_order(ctx(minutes=8), order_id="o-1", amount="99.90", currency="EUR")
    c.change_order_status(ctx(minutes=9), "o-1", "paid")
    c.archive(ctx(minutes=10), reason="inactive")
    c.erase(ctx(minutes=11), reason="GDPR request")
    return c.collect_events()


def conversation_examples() -> list[DomainEvent]:
    v = Conversation.open(
        ctx(), conversation_id=CONVERSATION_ID, customer=customer(), channel="email", subject="Hi"
    )
    v.log_message(ctx(minutes=1), message_id="m1", direction="inbound", author="Ada", content="Q")
    v.add_note(ctx(minutes=2), message_id="n1", content="check invoice")
    v.correct_message(ctx(minutes=3), "m1", content="Question", reason="typo")
    v.retract_message(ctx(minutes=4), "n1", reason="wrong customer")
    v.hand_off(ctx(minutes=5), to_department="support", to_agent="agent-2", note="billing")
    v.close(ctx(minutes=6), outcome="resolved", summary="explained invoice")
    v.rate_satisfaction(ctx(actor="survey", minutes=7), score=5, comment="quick")
    v.score_recommendation(ctx(actor="survey", minutes=8), score=9, comment="good")
    v.reopen(ctx(minutes=9), reason="follow-up question")
    return v.collect_events()


def task_examples() -> list[DomainEvent]:
    who = customer()
    talk = Conversation.open(
        ctx(), conversation_id=CONVERSATION_ID, customer=who, channel="email", subject="Hi"
    )
    t = Task.create(
        ctx(),
        task_id=TASK_ID,
        customer=who,
        title="Call back",
        due_at=T0 + timedelta(days=1),
        conversation=talk,
    )
    t.assign(ctx(minutes=1), assignee="agent-1", reason="owner")
    t.start(ctx(minutes=2))
    t.log_progress(ctx(minutes=3), note="left voicemail", percent=30)
    t.change_due(ctx(minutes=4), T0 + timedelta(days=2))
    t.change_details(ctx(minutes=5), priority="high")
    t.complete(ctx(minutes=6), resolution="called back")
    t.evaluate(ctx(actor="boss", minutes=7), score=4, feedback="fast")
    t.reopen(ctx(actor="boss", minutes=8), reason="customer called again")
    t.cancel(ctx(minutes=9), reason="duplicate")
    # The reopening was stored when the assignee might still reopen their evaluated task
    # (`Task.reopen`): its golden file names them, agent-1, as its actor.
    return [
        msgspec.structs.replace(e, actor="agent-1") if isinstance(e, TaskReopened) else e
        for e in t.collect_events()
    ]


def examples() -> list[DomainEvent]:
    return customer_examples() + conversation_examples() + task_examples()


def golden_document(event: DomainEvent) -> dict[str, object]:
    stored = CodecMapper().to_stored_event(event)
    state = stored.state.decode()
    return {"topic": stored.topic, "state": state, "expected": json.loads(state)}


def write_missing(directory: Path = GOLDEN_DIR) -> list[Path]:
    written = []
    for event in examples():
        path = directory / f"{event.wire_name()}@{event.class_version}.json"
        if not path.exists():
            path.write_text(json.dumps(golden_document(event), indent=2, sort_keys=True) + "\n")
            written.append(path)
    return written


if __name__ == "__main__":
    for path in write_missing():
        print(path)
