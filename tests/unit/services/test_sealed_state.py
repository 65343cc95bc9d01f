"""Commands hold aggregates sealed (`services.sealed_state`): what their cache keeps
between commands holds no plaintext: it is exactly the state a sealed rebuild from the
store gives, the values the store sealed, whatever the commands did (the paths each
event's values land on come from the domain, `Aggregate.personal_targets`)."""

from __future__ import annotations

import uuid
from typing import Any

import msgspec
import pytest

from consumers.keyring import Keyring, MemoryKeyStore
from domain.base import Aggregate
from domain.conversation import Conversation
from domain.conversation_messages import Message
from domain.customer import Customer
from domain.task import Task
from services import conversation_commands as cc
from services import task_commands as tc
from services.access.rules import Principal, Role
from services.commands import Caller, CommandService
from services.customer_commands import RegisterCustomer, UpdateProfile
from services.event_store import CrmApplication
from services.group_commit import DirectCommitter
from services.sealed_state import open_at, set_at, set_each, value_at

SVC = Caller(
    principal=Principal(name="svc", department="sales", role=Role.SERVICE), correlation_id="c"
)
MARK = "zq-marker-"  # in every personal value the commands give


def test_paths_reach_attributes_dict_entries_and_struct_fields() -> None:
    conversation = Conversation(uuid.uuid4())
    keyring, subject = Keyring(MemoryKeyStore()), uuid.uuid4()
    conversation.subject = "Invoice"
    conversation.messages["m.1"] = _message("hello")
    path = ("messages", "m.1", "content")  # a dot in a key is no step
    assert value_at(conversation, path) == "hello"
    assert value_at(conversation, ("messages", "absent", "content")) is None
    sealed = {
        ("subject",): keyring.encrypt(subject, "Invoice"),
        path: keyring.encrypt(subject, "hello"),
    }
    before = conversation.messages["m.1"]
    set_each(conversation, sealed)
    assert conversation.messages["m.1"] is not before  # the frozen Struct was replaced
    assert value_at(conversation, path) == sealed[path]
    assert conversation.messages["m.1"].author == "Ada"  # its other fields kept
    opened = open_at(keyring, conversation, subject, [path, ("subject",), ("summary",)])
    assert opened == sealed  # what it opened, as it was; None is left out
    assert (conversation.subject, conversation.messages["m.1"].content) == ("Invoice", "hello")
    set_each(conversation, {("subject",): None, path: None})
    assert conversation.subject is None
    assert conversation.messages["m.1"].content is None


class _Inner(msgspec.Struct, frozen=True):
    text: str
    notes: dict[str, str]


class _Outer(msgspec.Struct, frozen=True):
    inner: _Inner
    label: str


class _Root:
    def __init__(self) -> None:
        self.outers = {"o": _Outer(_Inner("t", {"n": "a"}), "l")}
        self.title = "x"


def test_a_set_replaces_the_frozen_structs_up_to_the_mutable_holder() -> None:
    """Structs on the way are replaced, each in the holder above it; a dict or an
    object takes the value in place, and nothing above it is replaced."""
    root = _Root()
    outers, first = root.outers, root.outers["o"]
    set_at(root, ("outers", "o", "inner", "text"), "T")
    assert root.outers is outers
    assert root.outers["o"] is not first
    assert root.outers["o"] == _Outer(_Inner("T", {"n": "a"}), "l")
    second = root.outers["o"]
    notes = second.inner.notes
    set_at(root, ("outers", "o", "inner", "notes", "n"), "b")  # a dict inside the Structs
    assert root.outers["o"] is second
    assert second.inner.notes is notes
    assert notes == {"n": "b"}
    set_at(root, ("title",), "y")
    set_each(root, {("outers", "o", "label"): "L", ("outers", "o", "inner", "text"): "U"})
    assert (root.title, root.outers["o"]) == ("y", _Outer(_Inner("U", {"n": "b"}), "L"))
    set_at(root, ("outers", "p"), _Outer(_Inner("v", {}), "m"))
    assert root.outers["p"] == _Outer(_Inner("v", {}), "m")


def _message(content: str) -> Message:
    return msgspec.convert(
        {"message_id": "m.1", "kind": "message", "direction": "inbound", "author": "Ada",
         "content": content, "sent_at": "2025-01-01T00:00:00Z"},
        Message,
    )  # fmt: skip


@pytest.mark.anyio
async def test_the_commands_cache_holds_what_a_sealed_load_gives() -> None:
    keyring = Keyring(MemoryKeyStore())
    app = CrmApplication({"PERSISTENCE_MODULE": "eventsourcing.popo"}, cipher=keyring)
    service = CommandService(app, DirectCommitter(app), keyring)

    registered = RegisterCustomer(
        name=MARK + "Ada", email="zq-marker@example.com", phone="+4930123456",
        address=MARK + "street",
    )  # fmt: skip
    customer = (await service.create(SVC, registered)).id
    await service.change(SVC, customer, UpdateProfile(name=MARK + "Ada"))  # a no-op: dropped
    await service.change(SVC, customer, UpdateProfile(name=MARK + "Ada K", address=None))

    opened = cc.OpenConversation(customer_id=customer, channel="email", subject=MARK + "subj")
    conversation = (await service.create(SVC, opened)).id
    changes: list[Any] = [
        cc.LogMessage(message_id="m.1", direction="inbound", author=MARK + "a", content=MARK + "c"),
        cc.AddNote(message_id="n1", content=MARK + "note"),
        cc.CorrectMessage(message_id="m.1", content=MARK + "fixed", reason=MARK + "typo"),
        cc.CorrectMessage(message_id="m.1", content=MARK + "fixed", reason=MARK + "again"),
        cc.RetractMessage(message_id="n1", reason=MARK + "wrong"),
        cc.HandOff(to_department="support", note=MARK + "over"),
        cc.CloseConversation(outcome="resolved", summary=MARK + "done"),
        cc.RateSatisfaction(score=5, comment=MARK + "great"),
        cc.ReopenConversation(reason=MARK + "more"),
    ]
    versions = [(await service.change(SVC, conversation, c)).version for c in changes]
    assert versions == [2, 3, 4, 4, 5, 6, 7, 8, 9]  # the same correction changes nothing

    created = tc.CreateTask(
        customer_id=customer, title=MARK + "t", description=MARK + "d", assignee="svc"
    )
    task = (await service.create(SVC, created)).id
    for change in (
        tc.ChangeTask(title=MARK + "t2"),
        tc.ChangeTask(title=MARK + "t2", description=MARK + "d"),  # a no-op
        tc.StartTask(),
        tc.LogProgress(note=MARK + "half", percent=50),
        tc.CompleteTask(resolution=MARK + "res"),
    ):
        await service.change(SVC, task, change)

    kinds: list[tuple[type[Aggregate], uuid.UUID]] = [
        (Customer, customer), (Conversation, conversation), (Task, task),
    ]  # fmt: skip
    for kind, aggregate_id in kinds:
        lent = service.cache.take(aggregate_id)
        assert lent is not None
        held = lent.aggregate
        assert isinstance(held, kind)
        state = msgspec.to_builtins(held.state())
        assert MARK not in str(state), kind  # sealed between commands
        sealed = msgspec.to_builtins(app.sealed_load(kind, aggregate_id).state())
        assert state == sealed, kind  # the very values stored: sealed once, by the store
