"""Principals and their bearer tokens: only a SHA-256 of each token is stored.

A token is `secrets.token_urlsafe(32)` (256 random bits), so a plain SHA-256 is enough:
there is nothing to brute-force that a slow hash would protect. Stored in PostgreSQL
table `crm_principals`, or in `principals.db` (SQLite) in the data dir in embedded mode
(`services.principals_store`).
Each row keeps its name's `person_key` too (`name_key`, unique), so no principal is added
whom the rules could not tell from one that exists (`mgr` and `Mgr`), whatever adds them
at once; rows stored before the column are given theirs as the table opens (of twins
stored then, the first by name; the other keeps none). Lookups are cached for a few
seconds, so a revocation in another process takes effect within `CACHE_SECONDS`; in this
process it takes effect at once.

The API resolves tokens on its event loop (`resolve`): a cached answer at once, a lookup
on a worker thread, one per token at a time. A lookup on the loop held it for the
pool's whole wait while PostgreSQL was down (5 s per request whose token had left the
cache): `/healthz`, event streams and every other request stalled behind it in turn.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Protocol

import msgspec

from domain import validation as check
from domain.base import ValidationFailed
from domain.validation import DEPARTMENT_PATTERN
from services.access.rules import Principal, Role

CACHE_SECONDS = 5.0


class PrincipalError(ValueError):
    """A principal cannot be added or changed as asked (duplicate name, bad role...)."""


class PrincipalRecord(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    department: str
    role: str
    revoked: bool
    created_at: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


class PrincipalTable(Protocol):
    """The storage adapter: one implementation per database."""

    def insert(self, record: PrincipalRecord, token_hash: str) -> bool:
        """False if a principal has its name or its name's `person_key` already."""
        ...

    def named_alike(self, name_key: str) -> str | None:
        """The name of the principal whose name's `person_key` is `name_key`, if any."""
        ...

    def by_hash(self, token_hash: str) -> PrincipalRecord | None: ...
    def all(self) -> list[PrincipalRecord]: ...
    def revoke(self, name: str) -> bool: ...


class Principals:
    """Adds, lists, revokes principals and resolves a bearer token to a `Principal`."""

    def __init__(self, table: PrincipalTable, departments: Iterable[str] | None = None) -> None:
        """`departments`: the configured ones (`CRM_DEPARTMENTS`); agents and managers must
        belong to one of them, since their rights are their department's."""
        self._table = table
        self._departments = None if departments is None else frozenset(departments)
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()
        self._lookups: dict[str, asyncio.Future[Principal | None]] = {}  # `resolve`'s

    def add(self, name: str, department: str, role: str) -> str:
        """Create a principal and return its token: shown once, never stored. Refused if
        one exists already that the rules would take for the same person."""
        self._refuse_alike(_check_name(name))
        record = PrincipalRecord(
            name=name,
            department=self._check_department(department, role),
            role=_check_role(role),
            revoked=False,
            created_at=datetime.now(UTC).isoformat(),
        )
        token = new_token()
        if not self._table.insert(record, hash_token(token)):
            self._refuse_alike(name)  # added meanwhile, by another process
            raise PrincipalError(f"a principal named {name!r} already exists")
        return token

    def _refuse_alike(self, name: str) -> None:
        alike = self._table.named_alike(check.person_key(name))
        if alike == name:
            raise PrincipalError(f"a principal named {name!r} already exists")
        if alike is not None:
            raise PrincipalError(
                f"a principal named {alike!r} already exists: {name!r} reads as it"
            )

    def list(self) -> list[PrincipalRecord]:
        return self._table.all()

    def revoke(self, name: str) -> None:
        if not self._table.revoke(name):
            raise PrincipalError(f"no principal named {name!r}")
        with self._lock:
            self._cache.clear()

    def _check_department(self, department: str, role: str) -> str:
        checked = _check_department(department)
        staff = role in (Role.AGENT, Role.MANAGER)
        if staff and self._departments is not None and checked not in self._departments:
            known = ", ".join(sorted(self._departments))
            raise PrincipalError(f"{role}s belong to a configured department ({known})")
        return checked

    def exists(self, name: str) -> bool:
        return any(record.name == name for record in self._table.all())

    def authenticate(self, token: str) -> Principal | None:
        """The active principal holding `token`, or None."""
        digest = hash_token(token)
        cached = self._cached(digest)
        return cached[1] if cached is not None else self._looked_up(digest)

    async def resolve(self, token: str) -> Principal | None:
        """`authenticate` for an event loop: the lookup (a query) on a worker thread,
        shared by every request of the same token meanwhile (see the module)."""
        digest = hash_token(token)
        cached = self._cached(digest)
        if cached is not None:
            return cached[1]
        lookup = self._lookups.get(digest)
        if lookup is None:
            lookup = asyncio.ensure_future(asyncio.to_thread(self._looked_up, digest))
            self._lookups[digest] = lookup
            lookup.add_done_callback(lambda done: self._lookup_done(digest, done))
        return await asyncio.shield(lookup)

    def _lookup_done(self, digest: str, done: asyncio.Future[Principal | None]) -> None:
        self._lookups.pop(digest, None)
        if not done.cancelled():
            done.exception()  # retrieved: its requests may all have gone meanwhile

    def _cached(self, digest: str) -> tuple[float, Principal | None] | None:
        cached = self._cache.get(digest)
        if cached is not None and time.monotonic() - cached[0] < CACHE_SECONDS:
            return cached
        return None

    def _looked_up(self, digest: str) -> Principal | None:
        now = time.monotonic()
        record = self._table.by_hash(digest)
        principal = None
        if record is not None and not record.revoked:
            principal = Principal(
                name=record.name, department=record.department, role=Role(record.role)
            )
        if principal is not None:  # unknown tokens are not cached: no memory for attackers
            with self._lock:
                self._cache[digest] = (now, principal)
        return principal


def _check_name(name: str) -> str:
    """A name the domain takes for a person (`validation.person`, the rule of every
    assignee and agent): it is the actor of every event the principal causes and the
    author of its internal notes (a personal field, where a name in the form of a sealed
    value would be taken for one). Printable, so nothing that would break `crm principals
    list`, and unpadded: the name is given once, exactly as it will be sent."""
    try:
        checked = check.person(name, "name")
    except ValidationFailed as refused:
        reason = str(refused).removeprefix("name: ")
        raise PrincipalError(f"bad principal name {name[:80]!r}: {reason}") from None
    if checked != name:
        raise PrincipalError(f"bad principal name {name[:80]!r}: padded")
    return name


def _check_department(department: str) -> str:
    if not DEPARTMENT_PATTERN.fullmatch(department):
        raise PrincipalError(f"bad department {department!r} (lowercase code, e.g. sales)")
    return department


def _check_role(role: str) -> str:
    if role not in set(Role):
        raise PrincipalError(f"bad role {role!r}; one of {', '.join(Role)}")
    return role
