"""Names of people: one printable rule for every field naming one (`validation.person`),
and one comparison for every rule that tells someone from themselves (`same_person`).

A red team evaluated their own task by naming themselves `mgr\u200b` (a zero-width space
after it), `\u200bmgr` or `Mgr`: each passed `ctx.actor == self.assignee`, and the first
two read exactly as `mgr` wherever the task is shown."""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from domain import validation as check
from domain.base import PermissionDenied, ValidationFailed
from domain.conversation import Conversation
from domain.customer import Customer
from domain.task import Task, TaskCreated
from tests.unit.domain.factories import (
    CUSTOMER_ID,
    TASK_ID,
    ctx,
    customer,
    new_conversation,
    replay,
)

FULLWIDTH_MGR = "\uff4d\uff47\uff52"
INVISIBLE_IN_NAMES = (
    "mgr\u200b",  # zero-width space
    "\u200bmgr",
    "mgr\u200d",  # zero-width joiner
    "\u202emgr",  # right-to-left override
    "mgr\u2066",  # left-to-right isolate
    "mgr\ufeff",  # zero-width no-break space
    "mgr\u00ad",  # soft hyphen
    "mgr\u3164",  # Hangul filler: a letter that shows nothing
    "mgr\ufe0f",  # variation selector
    "mgr\u034f",  # combining grapheme joiner
    "mgr\u2800",  # Braille blank: a symbol that draws nothing (red team, second round)
    "\u2800mgr",
)
SPACED = "m\u00a0gr"  # a no-break space: not printable either, but a space, as in `m gr`


@pytest.mark.parametrize("name", [*INVISIBLE_IN_NAMES, SPACED])
def test_a_person_s_name_is_printable(name: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check.person(name, "assignee")
    assert refused.value.field == "assignee"


@pytest.mark.parametrize("name", ["mgr", "Mgr", FULLWIDTH_MGR, "Zoë O'Brien-名前", "Ana María"])
def test_printable_names_are_kept_as_sent(name: str) -> None:
    assert check.person(name, "agent") == name
    assert check.person(f"  {name} ", "agent") == name  # stripped, as all text is


@pytest.mark.parametrize("name", ["", "  ", "x" * 101, "enc:v1:abc", "[erased]", "a\x1bb"])
def test_a_person_s_name_follows_the_text_rules_too(name: str) -> None:
    with pytest.raises(ValidationFailed):
        check.person(name, "agent")


def test_an_optional_person_may_be_absent() -> None:
    assert check.optional_person(None, "agent") is None
    assert check.optional_person("  ", "agent") is None
    with pytest.raises(ValidationFailed):
        check.optional_person("mgr\u200b", "agent")


@pytest.mark.parametrize("alike", ["mgr", "Mgr", "MGR", FULLWIDTH_MGR, " mgr", *INVISIBLE_IN_NAMES])
def test_names_that_read_alike_are_one_person(alike: str) -> None:
    assert check.person_key(alike) == "mgr"
    assert check.same_person(alike, "mgr")


@pytest.mark.parametrize("name", ["\u041cgr", "m\u0261r\u0399", "\u0410lex \u03b1"])
def test_a_name_mixing_latin_greek_and_cyrillic_letters_is_refused(name: str) -> None:
    """Cyrillic EM for Latin M passed for `mgr`, and its evaluation counted (red team)."""
    with pytest.raises(ValidationFailed, match="must not mix Latin, Greek and Cyrillic"):
        check.person(name, "assignee")


@pytest.mark.parametrize(
    "name",
    [
        "\u041c\u0430\u0440\u0438\u044f",
        "\u03a3\u03c9\u03ba\u03c1\u03ac\u03c4\u03b7\u03c2",
        "Zo\u00eb 42",
        "\u674e\u96f7 Li",
    ],
)
def test_a_name_in_one_of_them_or_with_other_scripts_is_kept(name: str) -> None:
    assert check.person(name, "agent") == name


def test_the_format_characters_written_out_are_unicode_s() -> None:
    """`_FORMAT` lists category Cf by hand (finding it by category was slow): the same
    set as this Python's `unicodedata`, so a newer Unicode fails here, not silently."""
    written = re.compile(f"[{check._FORMAT}]")
    every = [chr(c) for c in range(sys.maxunicode + 1)]
    assert {c for c in every if written.fullmatch(c)} == {
        c for c in every if unicodedata.category(c) == "Cf"
    }
    assert all(check._IGNORED.fullmatch(c) for c in every if unicodedata.category(c) == "Cf")


def test_different_names_are_different_people() -> None:
    assert check.person_key("Straße") == check.person_key("STRASSE")
    assert not check.same_person("mgr", "mgr2")
    assert not check.same_person("mgr", "m gr")
    assert check.same_person(SPACED, "m gr")
    assert not check.same_person("mgr", None)
    assert not check.same_person(None, None)  # no name is nobody's


def completed_task(assignee: str) -> Task:
    task = Task.create(
        ctx("mgr", "support"), task_id=TASK_ID, customer=customer(), title="t", assignee=assignee
    )
    task.start(ctx("mgr", "support"))
    task.complete(ctx("mgr", "support"), resolution="done")
    return task


@pytest.mark.parametrize("assignee", ["mgr", "Mgr", FULLWIDTH_MGR])
def test_an_assignee_may_not_evaluate_their_task_under_any_spelling(assignee: str) -> None:
    with pytest.raises(PermissionDenied):
        completed_task(assignee).evaluate(ctx("mgr", "support"), score=5)
    with pytest.raises(PermissionDenied):
        completed_task("mgr").evaluate(ctx(assignee, "support"), score=5)
    completed_task(assignee).evaluate(ctx("boss", "support"), score=5)


def test_a_name_stored_before_the_rule_still_loads_and_is_still_its_person() -> None:
    """Appliers never validate: a `mgr\u200b` stored earlier loads as it was sent, and
    its assignee may not evaluate the task either."""
    valid = Task.create(
        ctx("mgr", "support"), task_id=TASK_ID, customer=customer(), title="t", assignee="mgr"
    ).collect_events()
    stored_earlier = msgspec.structs.replace(valid[0], assignee="mgr\u200b")
    assert isinstance(stored_earlier, TaskCreated)
    task = replay([stored_earlier])
    assert isinstance(task, Task)
    assert task.assignee == "mgr\u200b"
    task.start(ctx("mgr", "support"))
    task.complete(ctx("mgr", "support"), resolution="done")
    with pytest.raises(PermissionDenied):
        task.evaluate(ctx("mgr", "support"), score=5)


def opened(**given: Any) -> Conversation:
    return new_conversation(channel="email", **given)


def _reassigned(name: str) -> None:
    task = completed_task("mgr")
    task.reopen(ctx(), reason="again")
    task.assign(ctx(), assignee=name)


def _registered(**given: Any) -> Customer:
    return Customer.register(
        ctx(), customer_id=CUSTOMER_ID, name="Ada", owner_department="sales", **given
    )


PERSON_FIELDS: list[tuple[str, Callable[[str], object]]] = [
    ("assignee", completed_task),
    ("assignee", _reassigned),
    ("agent", lambda n: opened(agent=n)),
    ("participants", lambda n: opened(participants=["ada", n])),
    ("to_agent", lambda n: opened().hand_off(ctx(), to_department="support", to_agent=n)),
    ("owner_agent", lambda n: _registered(owner_agent=n)),
    ("agent", lambda n: customer().change_owner(ctx(), department="support", agent=n)),
    ("author", lambda n: opened().add_note(ctx(actor=n), message_id="m1", content="hi")),
]


@pytest.mark.parametrize(("field", "decide"), PERSON_FIELDS)
def test_every_field_naming_a_person_refuses_an_invisible_character(
    field: str, decide: Callable[[str], object]
) -> None:
    decide("ada")  # accepted as it is
    with pytest.raises(ValidationFailed) as refused:
        decide("ada\u200b")
    assert refused.value.field == field


def test_a_message_author_is_anyone_as_written() -> None:
    """The author of a logged message is whoever wrote it (a customer, by name or
    address), not someone the rules tell apart: only the text rules apply."""
    conversation = opened()
    conversation.log_message(
        ctx(), message_id="m1", direction="inbound", author="\u0645\u200c\u0646", content="x"
    )
    assert conversation.messages["m1"].author == "\u0645\u200c\u0646"
