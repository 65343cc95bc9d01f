"""The access model's decisions, one rule at a time (the whole matrix runs through HTTP in
tests/integration/test_permissions.py, the reference model in test_access_model.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import msgspec
import pytest

from domain.base import AGGREGATE_CLASSES, MASKED, NotFound, ValidationFailed
from domain.codec import event_types
from domain.conversation import Conversation
from domain.conversation_messages import Message
from domain.customer import Customer, CustomerErasedError, OrderRecorded, OrderStatusChanged
from services.access.fields import MARKETING_AUTHORS, FieldAccess, field_access, mask
from services.access.findable import Findable
from services.access.model import AccessModel, CommandRules
from services.access.resources import Resource
from services.access.rules import Forbidden, Principal, Role, rules_table

ACCESS = AccessModel(("sales", "support", "marketing"))


def who(role: str, department: str = "sales", name: str = "sam") -> Principal:
    return Principal(name=name, department=department, role=Role(role))


def customer(owner: str = "support", *shared: str, consent: bool = False) -> Resource:
    return Resource(
        kind="customer",
        id=uuid.uuid4(),
        owner=owner,
        departments=frozenset((owner, *shared)),
        email_consent=consent,
    )


def test_a_resource_the_caller_may_not_read_is_not_found() -> None:
    with pytest.raises(NotFound):
        ACCESS.read(who("agent"), customer("support"))
    assert ACCESS.read(who("agent"), customer("support", "sales")) == FieldAccess()


def test_a_readable_resource_refuses_an_action_with_its_rule() -> None:
    with pytest.raises(Forbidden) as refused:
        ACCESS.read(who("agent"), customer("sales"), "history.read")
    assert refused.value.rule == "agent:history.read:denied"


def test_only_the_owning_department_changes_the_owner() -> None:
    shared_with_sales = customer("support", "sales")
    with pytest.raises(Forbidden) as refused:
        ACCESS.command(who("agent"), CommandRules(action="customer.owner"), shared_with_sales)
    assert refused.value.rule == "agent:customer.owner:owner"
    ACCESS.command(
        who("manager", "support"), CommandRules(action="customer.owner"), shared_with_sales
    )


def test_naming_an_assignee_is_an_assignment() -> None:
    task = Resource(kind="task", id=uuid.uuid4(), owner="sales", departments=frozenset({"sales"}))
    assigning = CommandRules(action="task.write", assignee="other.agent")
    with pytest.raises(Forbidden) as refused:
        ACCESS.command(who("agent"), assigning, task)
    assert refused.value.rule == "agent:task.assign:denied"
    ACCESS.command(who("agent"), CommandRules(action="task.write", assignee="sam"), task)
    ACCESS.command(who("manager"), assigning, task)


@pytest.mark.parametrize("yourself", ["sam", "Sam", "SAM", "\uff53\uff41\uff4d", "sam\u200b"])
def test_assigning_yourself_is_so_however_your_name_is_spelled(yourself: str) -> None:
    """`Sam` is `sam` to every rule (`validation.same_person`): assigning them is
    `task.assign_self`, as an evaluation by them is their own (a `sam\u200b` the domain
    then refuses, 422)."""
    task = Resource(kind="task", id=uuid.uuid4(), owner="sales", departments=frozenset({"sales"}))
    ACCESS.command(who("agent"), CommandRules(action="task.write", assignee=yourself), task)
    with pytest.raises(Forbidden) as refused:
        ACCESS.command(who("agent"), CommandRules(action="task.write", assignee="sam2"), task)
    assert refused.value.rule == "agent:task.assign:denied"


def test_departments_are_a_closed_set() -> None:
    rules = CommandRules(action="conversation.write", departments={"department": "elsewhere"})
    with pytest.raises(ValidationFailed) as refused:
        ACCESS.command(who("service"), rules, None)
    assert refused.value.field == "department"


def test_commands_on_an_erased_customer_are_refused() -> None:
    erased = Resource(
        kind="conversation",
        id=uuid.uuid4(),
        owner="sales",
        departments=frozenset({"sales"}),
        erased=True,
    )
    with pytest.raises(CustomerErasedError):
        ACCESS.command(who("agent"), CommandRules(action="conversation.write"), erased)


def test_a_change_may_not_widen_its_callers_own_view() -> None:
    marketer = who("agent", "marketing")
    before, after = customer("sales", "marketing"), customer("sales", "marketing", consent=True)
    rules = CommandRules(action="customer.update")
    with pytest.raises(Forbidden) as refused:
        ACCESS.changed(marketer, rules, before, after)
    assert refused.value.rule == "agent:customer.update:widens-own-view"
    ACCESS.changed(marketer, rules, after, before)  # withdrawing consent narrows: fine
    ACCESS.changed(who("agent"), rules, before, after)  # sales sees e-mails anyway


def test_field_access_by_role_and_consent() -> None:
    assert field_access(who("analyst"), customer()).hides("messages.*.author")
    assert field_access(who("agent", "marketing"), customer()).hides("email")
    consenting = field_access(who("agent", "marketing"), customer(consent=True))
    assert not consenting.hides("email")
    assert consenting.hides("phone")  # never, whatever the consent
    assert consenting.hides("address")
    assert not consenting.hides("name")
    assert not field_access(who("agent", "sales"), customer()).hides("phone")
    assert not field_access(who("auditor"), customer()).hides("email")


def test_the_past_hides_what_its_state_or_todays_hides() -> None:
    marketer, then, now = who("manager", "marketing"), customer("marketing"), customer("marketing")
    consenting = customer("marketing", consent=True)
    never = FieldAccess(hidden=frozenset({"phone", "address"}))
    assert ACCESS.past_fields(marketer, consenting, consenting) == never
    for before, after in ((then, consenting), (consenting, now), (then, now)):
        assert ACCESS.past_fields(marketer, before, after).hides("email")
        hidden = FieldAccess(hidden=frozenset({"email", "phone", "address"}))
        assert ACCESS.past_event(marketer, before, _now(after)) == hidden
    assert ACCESS.past_fields(who("analyst"), consenting, consenting) == FieldAccess(
        everything=True
    )
    assert ACCESS.past_fields(who("auditor"), then, now) == FieldAccess()


def _now(resource: Resource) -> Callable[[], Resource]:
    return lambda: resource


def test_a_replayed_event_needs_its_aggregate_readable_then_and_now() -> None:
    sales, shared = customer("support"), customer("support", "sales")
    assert ACCESS.past_event(who("manager"), shared, _now(shared)) == FieldAccess()
    assert ACCESS.past_event(who("manager"), shared, _now(sales)) is None  # unshared since
    assert ACCESS.past_event(who("manager"), sales, _now(shared)) is None  # shared only since
    assert ACCESS.past_event(who("manager"), shared) == FieldAccess()  # live: as it left it


def test_a_replay_asks_for_the_state_now_only_when_it_could_change_the_answer() -> None:
    def now() -> Resource:
        raise AssertionError("asked for the state now")

    then = customer("marketing")
    for role in ("analyst", "auditor", "service", "admin"):
        assert ACCESS.past_event(who(role), then, now) == field_access(who(role), then)
    assert ACCESS.past_event(who("manager", "sales"), then, now) is None  # unreadable then
    with pytest.raises(AssertionError):
        ACCESS.past_event(who("manager", "marketing"), then, now)


def test_a_listed_row_older_than_its_aggregate_is_judged_then_and_now() -> None:
    """A row of a read model lagging behind its aggregate (`listed(now=...)`): left out
    unless readable then and now, each field hidden then or now masked, found by no field
    hidden now; as a live row (no `now`) for roles whose view follows no state."""
    marketer = who("agent", "marketing")
    consenting = customer("sales", "marketing", consent=True)
    withdrawn = msgspec.structs.replace(consenting, email_consent=False)
    unshared = msgspec.structs.replace(consenting, departments=frozenset({"sales"}))
    live = FieldAccess(hidden=frozenset({"phone", "address"}))
    assert ACCESS.listed(marketer, consenting) == live
    assert ACCESS.listed(marketer, consenting, now=consenting) == live
    masked = FieldAccess(hidden=frozenset({"email", "phone", "address"}))
    assert ACCESS.listed(marketer, consenting, now=withdrawn) == masked
    assert ACCESS.listed(marketer, consenting, ["email"], now=withdrawn) is None
    assert ACCESS.listed(marketer, consenting, ["name"], now=withdrawn) == masked
    assert ACCESS.listed(marketer, withdrawn, ["email"], now=consenting) is None  # hidden then
    assert ACCESS.listed(marketer, consenting, now=unshared) is None
    assert ACCESS.listed(who("agent"), unshared, now=consenting) == FieldAccess()
    queued, handed = (
        Resource(kind="conversation", id=consenting.id, owner=d, departments=frozenset((d,)))
        for d in ("support", "sales")
    )
    assert ACCESS.listed(who("agent", "support"), queued, now=handed) is None
    for role in ("analyst", "auditor", "admin"):
        assert ACCESS.listed(who(role), queued, now=handed) == ACCESS.listed(who(role), queued)


def test_only_a_customers_consent_makes_field_access_follow_its_state() -> None:
    """The marketing author rule holds whatever the state: a conversation's or a task's
    field access is the same at every position (so no past read needs their states for
    fields: only for readability, as any scoped role's)."""
    for marketer in (who("agent", "marketing"), who("manager", "marketing")):
        assert ACCESS.fields_follow_state(marketer, "customer")
        for kind in ("conversation", "task"):
            assert not ACCESS.fields_follow_state(marketer, kind)
            work = Resource(kind=kind, id=uuid.uuid4(), owner="sales", departments=frozenset())
            assert field_access(marketer, work) == MARKETING_AUTHORS
            assert ACCESS.past_depends_on_state(marketer, kind)  # scoped reads, as sales'
    for role in ("agent", "analyst", "auditor", "service", "admin"):
        assert not ACCESS.fields_follow_state(who(role), "customer")
    for role in ("analyst", "auditor", "service", "admin"):  # unscoped, fields fixed
        assert not ACCESS.past_depends_on_state(who(role, "marketing"), "conversation")


def work_item(kind: str = "conversation", department: str = "marketing") -> Resource:
    return Resource(
        kind=kind, id=uuid.uuid4(), owner=department, departments=frozenset((department,))
    )


@pytest.mark.parametrize("role", ["agent", "manager"])
@pytest.mark.parametrize("kind", ["conversation", "task"])
def test_marketing_staff_never_read_the_author_of_an_entry(role: str, kind: str) -> None:
    """An inbound message's author is the customer as written (an e-mail, a phone): no
    consent covers it, so marketing staff read no author, whatever the consent and the
    direction (red team s31 F1); the rest of the entry is theirs."""
    marketer = who(role, "marketing")
    fields = ACCESS.read(marketer, work_item(kind))
    assert fields == MARKETING_AUTHORS
    assert fields.hides("messages.*.author")
    assert fields.hides("author")  # a timeline row's, an event's
    for readable in ("content", "messages.*.content", "subject", "title", "actor", "email"):
        assert not fields.hides(readable)
    assert not field_access(marketer, customer(consent=True)).hides("author")
    for other in (who(role, "sales"), who(role, "support"), who("service", "marketing")):
        assert not field_access(other, work_item(kind)).hides("author")
    assert field_access(who("analyst", "marketing"), work_item(kind)).hides("author")


def test_marketing_staff_read_no_author_in_the_past_either() -> None:
    """History, replays and lagging timeline rows hide the author then and now alike; a
    conversation handed to marketing since hides it, one handed away is left out."""
    manager = who("manager", "marketing")
    then, now, away = work_item(), work_item(), work_item(department="sales")
    assert ACCESS.past_event(manager, then) == MARKETING_AUTHORS  # live
    assert ACCESS.past_event(manager, then, _now(now)) == MARKETING_AUTHORS  # replayed
    assert ACCESS.past_fields(manager, then, now) == MARKETING_AUTHORS
    assert ACCESS.past_event(manager, then, _now(away)) is None
    assert ACCESS.listed(manager, then, now=now) == MARKETING_AUTHORS  # a timeline row
    assert ACCESS.past_event(who("manager"), away, _now(away)) == FieldAccess()


def test_a_marketing_agents_change_to_a_conversation_widens_nothing() -> None:
    """The author rule is the same before and after any change: none is refused by it."""
    marketer = who("agent", "marketing")
    rules = CommandRules(action="conversation.write")
    ACCESS.changed(marketer, rules, work_item(), work_item())
    ACCESS.command(marketer, rules, work_item())


def test_mask_hides_a_conversations_authors_from_marketing_and_keeps_the_rest() -> None:
    document = {
        "subject": "s",
        "messages": [
            {"author": "nora@example.com", "content": "hi", "direction": "inbound"},
            {"author": "+49 30 5550001", "content": "call", "direction": "inbound"},
            {"author": "mia", "content": "note", "direction": None},
        ],
    }
    masked = mask(document, Conversation.personal_fields, MARKETING_AUTHORS)
    assert [m["author"] for m in masked["messages"]] == [MASKED] * 3
    assert [m["content"] for m in masked["messages"]] == ["hi", "call", "note"]
    assert masked["subject"] == "s"
    timeline_row = {"author": "nora@example.com", "content": "hi", "actor": "sam"}
    assert mask(timeline_row, ("author", "content"), MARKETING_AUTHORS) == {
        "author": MASKED,
        "content": "hi",
        "actor": "sam",
    }


def test_field_access_joined_hides_what_either_hides() -> None:
    email, phone = (
        FieldAccess(hidden=frozenset({"email"})),
        FieldAccess(hidden=frozenset({"phone"})),
    )
    assert (email | phone) == FieldAccess(hidden=frozenset({"email", "phone"}))
    everything = FieldAccess(everything=True)
    assert (email | everything) is everything
    assert (everything | email) is everything
    visible = FieldAccess()
    assert (visible | email) is email
    assert (email | visible) is email


def test_mask_follows_paths_into_collections_and_keeps_nulls() -> None:
    document = {
        "subject": "s",
        "summary": None,
        "messages": [{"author": "a@x.com", "content": "c", "kind": "message"}],
    }
    masked = mask(
        document, ("subject", "summary", "messages.*.author"), FieldAccess(everything=True)
    )
    assert masked == {
        "subject": MASKED,
        "summary": None,
        "messages": [{"author": MASKED, "content": "c", "kind": "message"}],
    }


def test_department_scope_of_department_wide_reads() -> None:
    assert ACCESS.department_scope(who("manager"), "stats.read", None) == "sales"
    assert ACCESS.department_scope(who("analyst"), "stats.read", None) is None
    with pytest.raises(Forbidden):
        ACCESS.department_scope(who("manager"), "stats.read", "support")
    with pytest.raises(NotFound):
        ACCESS.department_scope(who("analyst"), "department.read", "nonexistent")


def test_the_rules_table_has_a_column_per_role() -> None:
    rows = dict(rules_table())
    assert rows["customer.erase"] == ["-", "-", "-", "-", "-", "any"]
    assert rows["history.read"] == ["-", "own", "-", "any", "-", "any"]


def test_every_personal_event_field_kept_in_state_is_declared_personal_there() -> None:
    """Masking derives from the aggregates' declarations: a personal event field whose
    value the state keeps (e.g. a task's title) must be personal in the state too."""
    for cls in event_types().values():
        aggregate = AGGREGATE_CLASSES[cls.aggregate_type]
        state = vars(aggregate.blank(uuid.uuid4()))
        leaves = {path.rpartition(".")[2] for path in aggregate.personal_fields}
        entries = Message.__struct_fields__ if aggregate is Conversation else ()
        kept = {f for f in cls.personal_fields if f in state or f in entries}
        assert kept <= leaves, (cls.__name__, kept - leaves)


def test_a_customer_s_orders_hold_no_personal_data() -> None:
    """The API converts a customer's orders as they are, unmasked and unopened
    (`views.customer_view`): an order field made personal must be masked there first."""
    assert all("." not in path for path in Customer.personal_fields)
    assert OrderRecorded.personal_fields == OrderStatusChanged.personal_fields == ()


def test_every_command_names_a_known_action() -> None:
    from services import conversation_commands, customer_commands, task_commands
    from services.access.rules import ACTIONS
    from services.command_base import Command

    modules = (customer_commands, conversation_commands, task_commands)
    commands = [
        value
        for module in modules
        for value in vars(module).values()
        if isinstance(value, type) and issubclass(value, Command) and hasattr(value, "action")
    ]
    assert len(commands) > 25
    assert {command.action for command in commands} <= set(ACTIONS)


def test_the_readme_shows_the_rules_table_generated_from_the_code() -> None:
    from pathlib import Path

    from services.access.rules import rules_markdown

    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    assert rules_markdown() in readme, "README is stale: paste the output of `crm access rules`"


def test_a_search_finds_only_by_what_its_caller_reads() -> None:
    """What a search's query may keep (`findable`): analysts find nobody by a personal
    field, marketing staff by e-mail only customers consenting to e-mail marketing and by
    phone nobody."""
    assert ACCESS.findable(who("analyst", "x"), ["name"]) is None
    assert ACCESS.findable(who("analyst", "x"), []) == Findable(department=None, consenting=False)
    marketing = who("agent", "marketing")
    assert ACCESS.findable(marketing, ["email"]) == Findable(
        department="marketing", consenting=True
    )
    assert ACCESS.findable(marketing, ["name"]) == Findable(
        department="marketing", consenting=False
    )
    assert ACCESS.findable(marketing, ["phone"]) is None  # never read, never found by
    assert ACCESS.findable(who("manager"), ["email", "phone"]) == Findable(
        department="sales", consenting=False
    )
    assert ACCESS.findable(who("service", "x"), ["email"]) == Findable(
        department=None, consenting=False
    )
