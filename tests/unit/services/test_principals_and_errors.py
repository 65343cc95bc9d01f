"""Token hashing, the principal lifecycle, and the problem+json mapping table."""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import pytest
from litestar.exceptions import NotFoundException

from domain.base import InvalidTransition, NotFound, ValidationFailed, VersionConflict
from services.access import Forbidden, Role
from services.api.errors import NotCaughtUp, Unauthenticated, problem_for
from services.principals import PrincipalError, Principals, SqlitePrincipalTable, hash_token


def test_only_a_sha256_of_the_token_is_stored(tmp_path: Path) -> None:
    principals = Principals(SqlitePrincipalTable(tmp_path / "p.db"))
    token = principals.add("ada", "sales", "agent")
    assert len(token) >= 43
    assert hash_token(token) == hashlib.sha256(token.encode()).hexdigest()
    raw = (tmp_path / "p.db").read_bytes()
    assert token.encode() not in raw
    assert hash_token(token).encode() in raw


def test_authenticate_and_revoke(tmp_path: Path) -> None:
    principals = Principals(SqlitePrincipalTable(tmp_path / "p.db"))
    token = principals.add("ada", "sales", "manager")
    found = principals.authenticate(token)
    assert found is not None
    assert (found.name, found.department, found.role) == ("ada", "sales", Role.MANAGER)
    assert principals.authenticate("not-a-token") is None
    principals.revoke("ada")
    assert principals.authenticate(token) is None


def test_bad_principals_are_refused(tmp_path: Path) -> None:
    principals = Principals(SqlitePrincipalTable(tmp_path / "p.db"))
    principals.add("ada", "sales", "agent")
    for name, department, role in [
        ("ada", "sales", "agent"),
        ("b", "Sales!", "agent"),
        ("c", "x", "boss"),
    ]:
        with pytest.raises(PrincipalError):
            principals.add(name, department, role)


@pytest.mark.parametrize(
    ("error", "status", "slug"),
    [
        (ValidationFailed("email", "bad"), 422, "validation-failed"),
        (InvalidTransition("closed"), 409, "invalid-transition"),
        (VersionConflict(uuid.uuid4(), 1, 2), 409, "version-conflict"),
        (NotFound("task", uuid.uuid4()), 404, "not-found"),
        (Forbidden("agent:x:denied", "no"), 403, "forbidden"),
        (Unauthenticated("no"), 401, "unauthenticated"),
        (NotCaughtUp(5, 3, 2.0), 503, "not-caught-up"),
        (NotFoundException(), 404, "not-found"),
        (KeyError("bug"), 500, "internal-error"),
    ],
)
def test_problem_table(error: Exception, status: int, slug: str) -> None:
    assert problem_for(error)[:2] == (status, slug)
