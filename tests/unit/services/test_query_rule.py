"""`QueryRule`: what one route's query may hold. No route takes a list today; one that
does may be sent its list's name again and again, and nothing else twice."""

from __future__ import annotations

import pytest

from services.api.http_errors import BadQuery
from services.api.request_guard import QueryRule

RULE = QueryRule(frozenset({"limit", "tag", "cursor"}), lists=frozenset({"tag"}))


def refused(pairs: list[tuple[str, str]]) -> tuple[str, str]:
    with pytest.raises(BadQuery) as caught:
        RULE.check(pairs)
    return caught.value.field, str(caught.value)


def test_a_list_parameter_may_repeat_and_no_other() -> None:
    RULE.check([("tag", "a"), ("tag", "b"), ("tag", "c"), ("limit", "3")])
    RULE.check([])
    twice = [("tag", "a"), ("limit", "1"), ("tag", "b"), ("limit", "2"), ("limit", "3")]
    assert refused(twice) == ("limit", "query parameter 'limit' is sent 3 times: send it once")


def test_a_name_not_taken_is_named_first_wherever_it_stands() -> None:
    """Both faults at once: the unknown name, which says more about the caller's mistake."""
    field, detail = refused([("limit", "1"), ("limit", "2"), ("Tag", "a")])
    assert field == "Tag"
    assert (
        detail == "query parameter 'Tag' is not one this route takes (it takes cursor, limit, tag)"
    )
    nothing = QueryRule(frozenset(), frozenset())
    with pytest.raises(BadQuery, match=r"\(it takes none\)"):
        nothing.check([("", "x")])
