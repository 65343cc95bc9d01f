"""Token hashing, the principal lifecycle, and the problem+json mapping table."""

from __future__ import annotations

import hashlib
import multiprocessing
import sqlite3
import uuid
from pathlib import Path

import pytest
from litestar.exceptions import NotFoundException

from domain.base import InvalidTransition, NotFound, ValidationFailed, VersionConflict
from services.access.rules import Forbidden, Role
from services.api.http_errors import NotCaughtUp, Unauthenticated
from services.api.problem_table import problem_for
from services.principals import PrincipalError, Principals, hash_token
from services.principals_store import PostgresPrincipalTable, SqlitePrincipalTable
from tests.unit.services.principals_twin import open_at


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


@pytest.mark.parametrize("name", ["mgr\u200b", "\u200bmgr", "\u202emgr", "mgr\u3164", " mgr"])
def test_a_principal_s_name_follows_the_rule_of_every_person_s_name(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(PrincipalError, match="bad principal name"):
        Principals(SqlitePrincipalTable(tmp_path / "p.db")).add(name, "sales", "agent")


@pytest.mark.parametrize("alike", ["Mgr", "MGR", "\uff4d\uff47\uff52"])
def test_no_principal_reads_as_one_that_exists(tmp_path: Path, alike: str) -> None:
    """The rules take `Mgr` for `mgr` (`validation.same_person`): two principals so
    named would be one person to them."""
    principals = Principals(SqlitePrincipalTable(tmp_path / "p.db"))
    principals.add("mgr", "sales", "manager")
    with pytest.raises(PrincipalError, match="'mgr' already exists"):
        principals.add(alike, "support", "agent")
    principals.add("mgr2", "sales", "agent")
    assert [record.name for record in principals.list()] == ["mgr", "mgr2"]


def test_principals_stored_before_the_name_key_are_given_theirs(tmp_path: Path) -> None:
    """A table of an earlier release has no `name_key`: its rows get theirs as it opens,
    the first of two look-alikes stored then by name, and no third is added."""
    with sqlite3.connect(tmp_path / "p.db") as old:
        old.execute(PostgresPrincipalTable.DDL.replace("boolean", "integer"))
        for name, token in [("Mgr", "t1"), ("mgr", "t2")]:
            old.execute(
                "INSERT INTO crm_principals (name, department, role, token_hash, created_at)"
                " VALUES (?, 'sales', 'manager', ?, '2024-01-01')",
                (name, hash_token(token)),
            )
    old.close()
    principals = Principals(SqlitePrincipalTable(tmp_path / "p.db"))
    for alike in ("mgr", "MGR"):
        with pytest.raises(PrincipalError, match="'Mgr' already exists"):
            principals.add(alike, "sales", "agent")
    assert principals.authenticate("t2") is not None  # both still work as they were


def test_two_processes_opening_an_older_table_at_once_both_open_it(tmp_path: Path) -> None:
    """`crm run` and `crm principals add` starting together after the upgrade: both added
    `name_key`, and one failed with "duplicate column name" (red team, 30 runs of 30)."""
    for attempt in range(2):
        path = tmp_path / f"p{attempt}.db"
        with sqlite3.connect(path) as old:
            old.execute(PostgresPrincipalTable.DDL.replace("boolean", "integer"))
            old.executemany(
                "INSERT INTO crm_principals (name, department, role, token_hash, created_at)"
                " VALUES (?, 'sales', 'agent', ?, '2024-01-01')",
                [(f"user{n}", hash_token(f"t{n}")) for n in range(200)],
            )
        old.close()
        context = multiprocessing.get_context("spawn")
        start, answers = context.Barrier(2), context.Queue()
        twins = [context.Process(target=open_at, args=(path, start, answers)) for _ in "ab"]
        for twin in twins:
            twin.start()
        # Each answer is awaited as long as pytest's own timeout allows: a slow start
        # is not a failure, only a wrong answer is.
        assert sorted(answers.get() for _ in twins) == ["ok", "ok"]
        for twin in twins:
            twin.join()


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
