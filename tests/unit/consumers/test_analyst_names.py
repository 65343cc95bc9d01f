"""An analyst's login is a plain role name, never truncated by PostgreSQL (63 bytes)."""

from __future__ import annotations

import pytest

from consumers.analysts import AnalystNameError, checked_name


@pytest.mark.parametrize("name", ["ann", "ann_2", "Ann.Lee-1", "_x", "a" * 63])
def test_plain_names_are_taken(name: str) -> None:
    assert checked_name(name) == name


@pytest.mark.parametrize(
    "name", ["", "a" * 64, "1ann", "ann lee", 'ann"', "ann;", "é", "ann\n", "-ann"]
)
def test_other_names_are_refused(name: str) -> None:
    with pytest.raises(AnalystNameError, match="bad analyst name"):
        checked_name(name)
