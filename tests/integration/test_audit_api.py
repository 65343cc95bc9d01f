"""`GET /v1/audit/checkpoints` (embedded store): the signed checkpoints, page by page,
exactly as signed, so an auditor can keep them and check them later."""

from __future__ import annotations

from pathlib import Path

import msgspec
from litestar.testing import TestClient

from domain.checkpoint import Checkpoint
from services.audit_keys import load_or_create, signature_valid
from services.audit_log import open_audit_log
from services.checkpointer import Checkpointer
from tests.integration.api_support import embedded_api
from tests.integration.audit_support import fill


def test_auditors_read_the_signed_checkpoints_page_by_page(tmp_path: Path) -> None:
    with embedded_api(tmp_path) as api:
        log = open_audit_log(api.runtime.app)
        key = load_or_create(tmp_path / "audit.key")
        signer = Checkpointer(log, key, every_events=1, every_seconds=1)
        signed = []
        for customers in (2, 3):
            fill(api.runtime.app, customers)
            signed.append(signer.checkpoint())
        auditor = api.token("aud", "audit", "auditor")
        with TestClient(api.app) as client:
            first = client.get("/v1/audit/checkpoints?limit=1", headers=auditor)
            assert first.status_code == 200, first.text
            cursor = first.json()["next_cursor"]
            rest = client.get(f"/v1/audit/checkpoints?cursor={cursor}", headers=auditor).json()
        items = msgspec.convert(first.json()["items"] + rest["items"], list[Checkpoint])
        assert items == signed
        assert rest["next_cursor"] is None
        assert all(signature_valid(key.public_key, checkpoint) for checkpoint in items)
