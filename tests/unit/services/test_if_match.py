"""`parse_if_match`: only an entity tag in the form `ETag` gives (a version in ASCII
digits, quoted) names a version; `"00001"` and an unquoted `1` were version 1, as
Python's `int` reads them."""

from __future__ import annotations

import pytest

from services.api.deps import parse_if_match
from services.api.http_errors import BadRequest

NOT_AS_GIVEN = (
    '"00001"',
    '"01"',
    '"+1"',
    '"-0"',
    '"1_0"',
    '" 1"',
    '"1 "',
    '"1e0"',
    '"\u0661"',  # Arabic-Indic one
    '"\uff11"',  # fullwidth one
    '"\xb9"',  # superscript one, Latin-1
    '"9223372036854775808"',  # past what a bigint (a version) holds
    "1",  # no entity tag: unquoted
    '""',
)


@pytest.mark.parametrize("etag", NOT_AS_GIVEN)
def test_an_if_match_not_in_the_form_an_etag_is_given_is_a_400(etag: str) -> None:
    with pytest.raises(BadRequest, match='If-Match must be an ETag like "3"') as refused:
        parse_if_match([etag])
    assert repr(etag) in str(refused.value)


def test_an_if_match_as_given_names_its_version_and_a_star_none() -> None:
    """A tag in the form given that is no version the aggregate has (`"0"`) is read, and
    answered as a stale one is (409): only the current version matches."""
    assert parse_if_match(['"1"']) == 1
    assert parse_if_match([' "1234" ']) == 1234
    assert parse_if_match(['"0"']) == 0
    assert parse_if_match(['"9223372036854775807"']) == 2**63 - 1
    assert parse_if_match(["*"]) is None
    assert parse_if_match([]) is None
