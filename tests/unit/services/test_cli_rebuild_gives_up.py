"""`crm projections rebuild` whose switch gave up waiting for locks other sessions held
(`consumers.pg_lock_wait`): one message naming them and what became of the rebuilt
version, exit 1, not a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from consumers import follower
from consumers.readmodel_store import LocksHeld
from services.cli import main

HOLDER = "pid 7 (ann, application 'psql', idle in transaction for 700 s; holds shared.customers)"


def test_a_rebuild_whose_switch_gives_up_names_who_held_on_and_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def gives_up(app: Any, store: Any, projection: Any) -> int:
        error = LocksHeld(projection.name, 600.0, [HOLDER])
        error.add_note("The rebuilt version 2 was dropped.")
        raise error

    monkeypatch.delenv("CRM_DATABASE_URL", raising=False)
    monkeypatch.setenv("CRM_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(follower, "rebuild_from_store", gives_up)
    assert main(["projections", "rebuild", "shared"]) == 1
    printed = capsys.readouterr()
    assert "is live" not in printed.out
    assert printed.err.startswith("crm: shared: gave up after 600 s")
    assert HOLDER in printed.err
    assert "The rebuilt version 2 was dropped." in printed.err
    assert "Traceback" not in printed.err
