"""Which read-model store to open: PostgreSQL when configured, else a SQLite file."""

from __future__ import annotations

from pathlib import Path

from consumers.readmodel_store import ReadModelStore


def open_store(database_url: str | None, data_dir: Path) -> ReadModelStore:
    """PostgreSQL at `database_url`, or `<data_dir>/readmodels.db` in embedded mode."""
    if database_url is not None:
        from consumers.store_postgres import PostgresStore

        return PostgresStore(database_url)
    from consumers.store_sqlite import SqliteStore

    data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(data_dir / "readmodels.db")
