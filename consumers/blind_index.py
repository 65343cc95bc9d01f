"""Blind-index terms for customer search: keyed HMACs of normalised personal values.

Read models hold personal fields sealed, so they cannot be searched by value. Instead a
consumer, where the opened value and the search key meet, derives *terms*: HMAC-SHA-256
under the search key (one secret, kept in the key store beside the customer keys, never
in a read model) of the normalised e-mail (case-folded), phone number (`+` and digits,
country code included) and each word of the name (NFKC, case-folded), truncated to 128
bits. The API derives the same terms from a query's values and looks them up. Company
is business data, not personal: its term is `c:` and the case-folded company, matched
by prefix.

Threat model: a term shows which customers share a value (one e-mail, one phone, one
word of a name), nothing more; without the search key nobody can compute the term of a
guessed value to test it. The terms live in the `shared` read model's `search_terms`
table, which the analysts' SQL role cannot read. Erasure deletes a customer's terms, and
as the customer's key is gone no rebuild can derive them again.

I/O: the keyring's search key and data keys (`search_terms`); the functions are pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

from msgspec import UNSET

from consumers.keyring import Keyring
from domain import codec
from domain import validation as check
from domain.base import ERASED, DomainEvent, ValidationFailed
from domain.customer import CustomerProfileUpdated, CustomerRegistered
from projections.base import SearchTerms
from projections.facets import fold

COMPANY_PREFIX = "c:"
TERM_BYTES = 16
"""128 bits of the HMAC: collisions stay negligible (~1e-26 for a million customers'
terms) and the index is half as large as with the whole digest."""
_WORD = re.compile(r"\w+")
_INDEXED: tuple[type[DomainEvent], ...] = (CustomerRegistered, CustomerProfileUpdated)


def words(text: str) -> list[str]:
    """The distinct words of a name, folded, in order of first appearance."""
    return list(dict.fromkeys(_WORD.findall(fold(text))))


def normal_phone(value: str) -> str | None:
    """`+<digits>` as the domain stores phones; None for a value it would refuse."""
    try:
        return check.phone(value)
    except ValidationFailed:
        return None


class BlindIndex:
    """The terms of values under one search key (`Keyring.search_key`)."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def term(self, field: str, normalised: str) -> str:
        digest = hmac.new(self._key, f"{field}:{normalised}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:TERM_BYTES]).decode().rstrip("=")

    def terms(self, field: str, value: str | None) -> list[str]:
        """The terms of a field's stored value; none for an absent or erased one."""
        if value is None or value == ERASED:
            return []
        if field == "company":
            folded = fold(value).strip()
            return [COMPANY_PREFIX + folded] if folded else []
        if field == "name":
            return [self.term("name", word) for word in words(value)]
        normalised = fold(value).strip() if field == "email" else normal_phone(value)
        return [self.term(field, normalised)] if normalised else []

    def wanted(self, field: str, value: str) -> list[str]:
        """The terms a customer must have to match a query's `field=value` (all of a
        name's words); `ValidationFailed` names a value that can match nothing."""
        if field == "email":
            normalised = check.email(value, field)
            return [self.term(field, fold(normalised or ""))]
        if field == "phone":
            plus = "+" + value[1:] if value[:1] == " " else value  # an unencoded + in a URL
            return [self.term(field, check.phone(plus, field) or "")]
        found = words(value)
        if not found:
            raise ValidationFailed(field, "needs at least one word")
        return [self.term(field, word) for word in found]


def company_prefix(value: str) -> str:
    """The start of a company term that a query's `company=` prefix matches."""
    return COMPANY_PREFIX + fold(value).strip()


def search_terms(
    event: DomainEvent, keyring: Keyring, fields: frozenset[str]
) -> SearchTerms | None:
    """The terms of the `fields` a customer event sets, from their opened values (a
    destroyed key opens as `ERASED`, which gives no term); None for other events.
    Call `Keyring.preload` with the batch's subjects first (`needs_terms`)."""
    names = _set_fields(event, fields)
    if not names:
        return None
    opened = codec.unseal(event, keyring, [n for n in names if n in event.personal_fields])
    index = BlindIndex(keyring.search_key())
    terms = {name: index.terms(name, getattr(opened, name)) for name in names}
    return SearchTerms(customer_id=event.originator_id, terms=terms)


def needs_terms(event: DomainEvent, fields: frozenset[str]) -> bool:
    return bool(_set_fields(event, fields))


def _set_fields(event: DomainEvent, fields: frozenset[str]) -> list[str]:
    """The `fields` a customer event sets (a profile update carries only its changes)."""
    if not fields or type(event) not in _INDEXED:
        return []
    return [name for name in sorted(fields) if getattr(event, name, UNSET) is not UNSET]
