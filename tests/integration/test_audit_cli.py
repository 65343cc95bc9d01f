"""`crm audit history ID` and `crm audit as-of ID TIME`, on both stores: every event
opened, the state at an instant, read a page at a time (`CrmApplication.stored_events`),
so a customer's history of any length costs flat memory; what they show is what the
access model lets the operator see, as the API shows it, and it is in the access log
before it is printed."""

from __future__ import annotations

import io
import json
import os
import pwd
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import closing, contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import TestClient

from domain.base import ERASED, MASKED
from services import cli_audit_past, event_store
from services.access.fields import FieldAccess, field_access
from services.access.resources import Resource
from services.access.rules import Principal, Role
from services.cli import main
from tests.integration.api_support import Client, EmbeddedApi, embedded_api


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_audit_history_and_as_of_read_their_events_a_page_at_a_time(
    store: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = request.getfixturevalue("pg_url") if store == "postgres" else None
    monkeypatch.setattr(event_store, "READ_PAGE", 2)  # five events: three pages
    with embedded_api(tmp_path, database_url=url) as api, TestClient(api.app) as client:
        sales = api.token("sam", "sales", "agent")
        answer = client.post("/v1/customers", json={"name": "Ada 0"}, headers=sales)
        customer = answer.json()["id"]
        for n in range(1, 5):
            patched = client.patch(
                f"/v1/customers/{customer}", json={"name": f"Ada {n}"}, headers=sales
            )
            assert patched.status_code == 200, patched.text
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    if url is None:
        monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("CRM_DATABASE_URL", url)
    capsys.readouterr()

    assert main(["audit", "history", customer]) == 0
    events: list[dict[str, Any]] = [
        json.loads(line) for line in capsys.readouterr().out.splitlines()
    ]
    assert [e["originator_version"] for e in events] == [1, 2, 3, 4, 5]
    assert [e["name"] for e in events] == [f"Ada {n}" for n in range(5)]  # opened

    assert main(["audit", "as-of", customer, events[2]["occurred_at"]]) == 0
    state = json.loads(capsys.readouterr().out)
    assert (state["version"], state["name"]) == (3, "Ada 2")
    assert main(["audit", "as-of", customer, "1999-01-01T00:00:00+00:00"]) == 1
    assert main(["audit", "history", "00000000-0000-0000-0000-000000000000"]) == 1


# --- what they show is what the access model lets through, and it is on record ----------

ACCOUNT = pwd.getpwuid(os.getuid()).pw_name
OPERATOR = f"operator:{ACCOUNT}"
ADA = {"name": "Ada", "email": "ada@x.com", "phone": "+442079460000"}
NO_ADDRESS = {"address": None}
ADA_SHOWN = ADA | NO_ADDRESS  # as the API and the CLI show her
TALK = {"subject": "Invoice", "author": "Ada Lovelace", "content": "Hello there"}
TALK_FIELDS = sorted(TALK)  # what a conversation's history shows
PERSONAL = ("name", "email", "phone", "address", "subject", "author", "content")


@dataclass
class Scene:
    """A customer and a conversation about them, made through the API; the CLI's
    settings (and a USER and LOGNAME that are not the OS account) set for `crm`."""

    api: EmbeddedApi
    client: Client
    url: str | None  # PostgreSQL's; None: SQLite files in `data_dir`
    data_dir: Path
    customer: str
    conversation: str
    registered_at: str  # when the customer was registered: an instant for as-of

    def crm(self, *args: str) -> tuple[int, str, str]:
        """`crm ARGS`: its exit code, what it printed and what it said. Not captured with
        capsys: the app's logging, configured once while it runs, would keep its stream."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main(list(args))
        return code, out.getvalue(), err.getvalue()

    def shown(self, *args: str) -> list[dict[str, Any]]:
        code, out, err = self.crm(*args)
        assert code == 0, err
        return [json.loads(line) for line in out.splitlines()]

    def records(self, *options: str) -> list[tuple[str, str, str, list[str], list[str]]]:
        """The access records naming the customer that `crm audit` commands wrote."""
        stored = [s["record"] for s in self.shown("audit", "access", self.customer, *options)]
        return [
            (r["principal"], r["role"], r["route"], r["customers"], r["fields"])
            for r in stored
            if r["route"].startswith("crm audit")
        ]

    def api_reads(self) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """What an auditor reads over HTTP: the customer's history, its state when it
        was registered, the conversation's history (each entry's data)."""
        auditor = self.api.token(f"aud{uuid.uuid4().hex[:6]}", "it", "auditor")
        get = self.client.get
        history = get(f"/v1/customers/{self.customer}/history", headers=auditor)
        as_of = get(
            f"/v1/customers/{self.customer}", params={"as_of": self.registered_at}, headers=auditor
        )
        talk = get(f"/v1/conversations/{self.conversation}/history", headers=auditor)
        assert (history.status_code, as_of.status_code, talk.status_code) == (200, 200, 200)
        return [e["data"] for e in history.json()], as_of.json(), [e["data"] for e in talk.json()]

    def cli_reads(self) -> tuple[list[dict[str, Any]], dict[str, Any], list[dict[str, Any]]]:
        """The same reads with `crm audit history` and `crm audit as-of`."""
        (as_of,) = self.shown("audit", "as-of", self.customer, self.registered_at)
        return (
            self.shown("audit", "history", self.customer),
            as_of,
            self.shown("audit", "history", self.conversation),
        )


@pytest.fixture(params=["sqlite", "postgres"])
def scene(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Scene]:
    url = request.getfixturevalue("pg_url") if request.param == "postgres" else None
    with embedded_api(tmp_path, database_url=url) as api, TestClient(api.app) as client:
        sales = api.token("sam", "sales", "agent")
        answer = client.post("/v1/customers", json=ADA, headers=sales)
        customer = answer.json()["id"]
        opened = {"customer_id": customer, "channel": "chat", "subject": TALK["subject"]}
        conversation = client.post("/v1/conversations", json=opened, headers=sales).json()["id"]
        message = {"direction": "inbound", "author": TALK["author"], "content": TALK["content"]}
        logged = client.post(
            f"/v1/conversations/{conversation}/messages", json=message, headers=sales
        )
        assert logged.status_code == 201, logged.text
        _cli_settings(monkeypatch, tmp_path, url)
        (registered,) = api.runtime.app.history(UUID(customer))
        at = registered.occurred_at.isoformat()
        yield Scene(api, client, url, tmp_path, customer, conversation, at)


def _cli_settings(monkeypatch: pytest.MonkeyPatch, data_dir: Path, url: str | None) -> None:
    monkeypatch.setenv("CRM_DATA_DIR", str(data_dir))
    if url is None:
        monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    else:
        monkeypatch.setenv("CRM_DATABASE_URL", url)
    for variable in ("USER", "LOGNAME"):  # what getpass.getuser() would believe
        monkeypatch.setenv(variable, "mallory")


def _personal(document: dict[str, Any]) -> dict[str, Any]:
    return {name: document[name] for name in PERSONAL if name in document}


def test_history_and_as_of_record_what_they_show_in_the_access_log(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record a command, before it prints, naming the operator's OS account (not
    USER), the command, the customer and the fields it showed unmasked; none with the
    access log off, which then works out nothing of what a command shows."""
    history, as_of, talk = scene.cli_reads()
    assert [_personal(e) for e in history] == [ADA_SHOWN]
    assert (_personal(as_of), talk[1]["content"]) == (ADA_SHOWN, TALK["content"])
    expected = [
        (OPERATOR, "auditor", "crm audit as-of", [scene.customer], ["email", "name", "phone"]),
        (OPERATOR, "auditor", "crm audit history", [scene.customer], ["email", "name", "phone"]),
        (OPERATOR, "auditor", "crm audit history", [scene.customer], TALK_FIELDS),
    ]
    assert scene.records() == expected
    assert scene.records("--principal", OPERATOR) == expected
    assert scene.records("--principal", "mallory") == []

    def not_asked(*args: object) -> dict[str, Any]:
        raise AssertionError("worked out what a command shows while nothing is recorded")

    monkeypatch.setenv("CRM_ACCESS_LOG", "off")
    monkeypatch.setattr(cli_audit_past, "shown_in_events", not_asked)
    monkeypatch.setattr(cli_audit_past, "shown_in_state", not_asked)
    assert scene.cli_reads() == (history, as_of, talk)
    assert scene.records() == expected


def test_a_field_the_access_model_hides_from_auditors_is_masked_as_the_api_masks_it(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Auditors read every field today; were the model to hide one from them (e-mail
    here), the CLI would show it `[masked]` exactly where the API does, and leave it
    out of the record."""
    everything = field_access

    def no_email_for_auditors(principal: Principal, resource: Resource) -> FieldAccess:
        if principal.role is Role.AUDITOR:
            return FieldAccess(hidden=frozenset({"email"}))
        return everything(principal, resource)

    monkeypatch.setattr("services.access.model.field_access", no_email_for_auditors)
    api_history, api_as_of, api_talk = scene.api_reads()
    history, as_of, talk = scene.cli_reads()
    assert [_personal(e) for e in history] == [_personal(e) for e in api_history]
    assert [_personal(e) for e in talk] == [_personal(e) for e in api_talk]
    assert _personal(as_of) == _personal(api_as_of) == ADA_SHOWN | {"email": MASKED}
    assert scene.records() == [
        (OPERATOR, "auditor", "crm audit as-of", [scene.customer], ["name", "phone"]),
        (OPERATOR, "auditor", "crm audit history", [scene.customer], ["name", "phone"]),
        (OPERATOR, "auditor", "crm audit history", [scene.customer], TALK_FIELDS),
    ]


def test_an_erased_customer_reads_as_the_api_reads_it_and_nothing_is_recorded(
    scene: Scene,
) -> None:
    """After erasure both commands print `[erased]` where the API answers it, no
    plaintext, and record nothing: an erased value shows no personal data."""
    scene.shown("audit", "history", scene.customer)  # recorded: before the erasure
    admin = scene.api.token("root", "it", "admin")
    erased = scene.client.post(
        f"/v1/customers/{scene.customer}/erasure", json={"reason": "asked"}, headers=admin
    )
    assert erased.status_code == 200, erased.text
    api_history, api_as_of, api_talk = scene.api_reads()
    history, as_of, talk = scene.cli_reads()
    assert [_personal(e) for e in history] == [_personal(e) for e in api_history]
    assert [_personal(e) for e in talk] == [_personal(e) for e in api_talk]
    erased_ada = dict.fromkeys(ADA, ERASED) | NO_ADDRESS
    assert _personal(as_of) == _personal(api_as_of) == erased_ada
    printed = json.dumps([history, as_of, talk])
    assert not [value for value in (*ADA.values(), *TALK.values()) if value in printed]
    assert scene.records() == [
        (OPERATOR, "auditor", "crm audit history", [scene.customer], ["email", "name", "phone"])
    ]


def test_a_read_the_access_log_cannot_store_prints_nothing(scene: Scene) -> None:
    """The access log's table refuses appends (a full disk): each command exits 1 having
    printed nothing, as the API refuses a read it cannot record; once the table takes
    them again, each prints and is on record."""
    commands = [("history", scene.customer), ("as-of", scene.customer, scene.registered_at)]
    with _access_log_full(scene):
        for command in commands:
            code, out, err = scene.crm("audit", *command)
            assert (code, out) == (1, ""), err
            assert "the access log could not store this read's record" in err
    for command in commands:
        assert scene.shown("audit", *command)
    fields = ["email", "name", "phone"]
    assert scene.records() == [
        (OPERATOR, "auditor", f"crm audit {command[0]}", [scene.customer], fields)
        for command in commands
    ]


@contextmanager
def _access_log_full(scene: Scene) -> Iterator[None]:
    """The access log's table refuses every insert, as on a full disk, in the block."""
    if scene.url is None:
        with closing(sqlite3.connect(scene.data_dir / "access.db")) as db:
            db.execute(
                "CREATE TRIGGER crm_full BEFORE INSERT ON crm_access_log"
                " BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END"
            )
            db.commit()
            yield
            db.execute("DROP TRIGGER crm_full")
            db.commit()
        return
    with psycopg.connect(scene.url, autocommit=True) as db:
        db.execute(
            "CREATE FUNCTION crm_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            " RAISE EXCEPTION 'could not extend file: No space left on device'"
            " USING ERRCODE = 'disk_full'; END $$"
        )
        db.execute(
            "CREATE TRIGGER crm_full BEFORE INSERT ON crm_access_log"
            " FOR EACH ROW EXECUTE FUNCTION crm_full()"
        )
        yield
        db.execute("DROP TRIGGER crm_full ON crm_access_log")
