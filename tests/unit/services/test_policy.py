"""The permission table and masking, without any I/O."""

from __future__ import annotations

import pytest

from services.policy import MASKED, Forbidden, Principal, Role, authorize, mask


def who(role: Role, department: str = "sales") -> Principal:
    return Principal(name="p", department=department, role=role)


@pytest.mark.parametrize(
    ("role", "action", "departments", "allowed"),
    [
        (Role.AGENT, "customer.update", ["sales"], True),
        (Role.AGENT, "customer.update", ["support"], False),
        (Role.AGENT, "customer.update", ["support", "sales"], True),  # shared with sales
        (Role.AGENT, "task.assign", ["sales"], False),
        (Role.MANAGER, "task.assign", ["sales"], True),
        (Role.MANAGER, "stats.read", ["sales"], True),
        (Role.MANAGER, "stats.read", ["support"], False),
        (Role.AGENT, "stats.read", ["sales"], False),
        (Role.ANALYST, "customer.read", ["support"], True),
        (Role.ANALYST, "customer.update", ["sales"], False),
        (Role.AUDITOR, "as_of.read", [], True),
        (Role.AUDITOR, "history.read", ["x"], True),
        (Role.AUDITOR, "customer.create", ["sales"], False),
        (Role.SERVICE, "customer.erase", ["sales"], False),
        (Role.ADMIN, "customer.erase", ["sales"], True),
        (Role.SERVICE, "conversation.write", ["support"], True),
    ],
)
def test_permission_table(role: Role, action: str, departments: list[str], allowed: bool) -> None:
    if allowed:
        authorize(who(role), action, departments)
    else:
        with pytest.raises(Forbidden) as refused:
            authorize(who(role), action, departments)
        assert refused.value.rule.startswith(f"{role}:{action}:")


def test_analysts_never_see_contact_details_or_contents() -> None:
    document = {"email": "a@b.c", "phone": "+1", "name": "A", "messages": [{"content": "hi"}]}
    seen = mask(who(Role.ANALYST), document)
    assert seen == {
        "email": MASKED,
        "phone": MASKED,
        "name": "A",
        "messages": [{"content": MASKED}],
    }


def test_marketing_sees_email_only_with_consent() -> None:
    marketer = who(Role.AGENT, "marketing")
    assert mask(marketer, {"email": "a@b.c"})["email"] == MASKED
    assert mask(marketer, {"email": "a@b.c"}, email_consent=True)["email"] == "a@b.c"


def test_auditors_and_agents_see_everything() -> None:
    document = {"email": "a@b.c", "content": "x", "missing": None}
    assert mask(who(Role.AUDITOR), document) == document
    assert mask(who(Role.AGENT), document) == document
