"""Closing a runtime closes what the services built on it opened, explicitly."""

from __future__ import annotations

from pathlib import Path

from services.api import create_app
from services.bootstrap import bootstrap
from services.settings import load_settings


def test_closing_the_runtime_closes_the_embedded_access_log(tmp_path: Path) -> None:
    """Not left to the finalizers of the process's exit: frozen objects (the serving
    process freezes its startup objects) or a reference cycle would never be finalized,
    and the access log's WAL file would stay beside `access.db`."""
    runtime = bootstrap(load_settings({"CRM_DATA_DIR": str(tmp_path), "CRM_DATABASE_URL": ""}))
    app = create_app(runtime)
    wal = tmp_path / "access.db-wal"
    assert wal.exists()  # open, in WAL mode
    runtime.close()
    assert app.state.services.access_log is not None  # still referenced here
    assert not wal.exists()  # SQLite removes the WAL file when its last connection closes
