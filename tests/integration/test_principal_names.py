"""A principal's name is the actor of every event it causes, and the author of its
internal notes, a personal field: it must be a name the domain takes for a person.

A principal named `enc:v1:...` (which `crm principals add` accepted) could add a note
whose author read as a sealed value: every later read of that conversation and of its
customer's timeline failed to open it, a 500 for everyone, for good."""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from services.principals import PrincipalError
from tests.e2e.processes import CRM
from tests.integration.api_support import embedded_api

pytestmark = pytest.mark.integration

SEALED_LOOKING = "enc:v1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
REFUSED_NAMES = (SEALED_LOOKING, "enc:v1:", " padded", "tab\there", "\u202eevil", "x" * 101)


def crm(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CRM, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_crm_principals_add_refuses_a_name_no_person_has(pg_url: str, tmp_path: Path) -> None:
    env = {**os.environ, "CRM_DATABASE_URL": pg_url, "CRM_DATA_DIR": str(tmp_path)}
    add = ("principals", "add", "--department", "support", "--role", "agent")
    for name in REFUSED_NAMES:
        added = crm(env, *add, name)
        assert added.returncode == 1, (name, added.stdout)
        assert added.stderr.startswith("crm: bad principal name"), (name, added.stderr)
        assert len(added.stderr.strip().splitlines()) == 1, added.stderr
    kept = crm(env, *add, "Zoë O'Brien-名前")
    assert kept.returncode == 0, kept.stderr
    listed = crm(env, "principals", "list").stdout.splitlines()
    assert [line.split("\t")[0] for line in listed] == ["Zoë O'Brien-名前"]


def test_a_note_by_a_principal_named_like_a_sealed_value_breaks_no_read(
    pg_url: str, tmp_path: Path
) -> None:
    """A principal added before names were checked: its note is refused (422), and the
    conversation and the timeline still read."""
    from services.principals import PrincipalRecord, hash_token

    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        admin = api.token("root", "support", "admin")
        table: Any = api.app.state.services.principals._table  # as an old row
        record = PrincipalRecord(
            name=SEALED_LOOKING, department="support", role="manager", revoked=False,
            created_at=datetime.now(UTC).isoformat(),
        )  # fmt: skip
        assert table.insert(record, hash_token("old-token"))
        old = {"Authorization": "Bearer old-token"}
        body = {"name": "Zed", "owner_department": "support"}
        customer = client.post("/v1/customers", json=body, headers=admin).json()["id"]
        opened = {"customer_id": customer, "channel": "email", "subject": "s"}
        conversation = client.post("/v1/conversations", json=opened, headers=admin).json()["id"]
        note = client.post(
            f"/v1/conversations/{conversation}/notes", json={"content": "hi"}, headers=old
        )
        assert note.status_code == 422, note.text
        assert note.json()["field"] == "author"
        api.catch_up()
        for path in (f"/v1/conversations/{conversation}", f"/v1/customers/{customer}/timeline"):
            assert client.get(path, headers=admin).status_code == 200, path


def test_a_manager_may_not_evaluate_their_own_task_under_a_look_alike_name(
    pg_url: str, tmp_path: Path
) -> None:
    """The red team's self-evaluation: `mgr\u200b` (a zero-width space after it) and
    `\u200bmgr` are a 422 naming the assignee; `Mgr` and fullwidth `mgr` are `mgr`,
    who may not evaluate their own task (403); and no principal `Mgr` can be added."""
    with embedded_api(tmp_path, database_url=pg_url) as api, TestClient(app=api.app) as client:
        mgr = api.token("mgr", "support", "manager")
        body = {"name": "Ann", "owner_department": "support"}
        customer = client.post("/v1/customers", json=body, headers=mgr).json()["id"]
        for hidden in ("mgr\u200b", "\u200bmgr", "\u202emgr"):
            task = {"customer_id": customer, "title": "t", "assignee": hidden}
            refused = client.post("/v1/tasks", json=task, headers=mgr)
            assert refused.status_code == 422, (hidden, refused.text)
            assert refused.json()["field"] == "assignee"
        for alike in ("mgr", "Mgr", "\uff4d\uff47\uff52"):
            task = {"customer_id": customer, "title": "t", "assignee": alike}
            created = client.post("/v1/tasks", json=task, headers=mgr)
            assert created.status_code == 201, created.text
            path = f"/v1/tasks/{created.json()['id']}"
            assert client.post(f"{path}/start", json={}, headers=mgr).status_code == 200
            done = client.post(f"{path}/complete", json={"resolution": "r"}, headers=mgr)
            assert done.status_code == 200, done.text
            own = client.post(f"{path}/evaluation", json={"score": 5}, headers=mgr)
            assert own.status_code == 403, (alike, own.text)
        principals = api.app.state.services.principals
        with pytest.raises(PrincipalError, match="'mgr' already exists"):
            principals.add("Mgr", "support", "agent")
