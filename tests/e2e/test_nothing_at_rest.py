"""No personal data in plaintext at rest, on both stores, and erasure leaves nothing.

Unique markers go through every personal field (`tests.e2e.at_rest`), and where the API
refuses them; then no file of the embedded data dir (while `crm run` runs, and after it
stopped gracefully), of PostgreSQL's data directory after `CHECKPOINT` (`pg_wal`
included), or of Kafka's log directory (this test's partitions and the broker's own)
holds any of them, nor does any row of any table of the test's database or any record
of its topics (found in the catalogue and the cluster: a new table or topic is swept
too), nor the log of any `crm` process. A read model that refuses a row makes a dead
letter whose reason is PostgreSQL's error, the failing row included (`DETAIL`): it
holds only the sealed values. On the
embedded default an erasure also leaves the destroyed key in no file (the key store's
`secure_delete`) and no ciphertext of the customer in the read models' files (blanked
rows, `secure_delete`, WAL truncated).

The shared services' directories come from `CRM_SERVICES_DIR` (default
`<checkout>/var/services`, as `scripts/services.sh` uses): `postgres/root` names the
cluster, Kafka's `server.properties` its `log.dirs`.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import sql

from consumers.store_postgres import PostgresStore
from projections import PROJECTIONS
from tests.e2e.at_rest import (
    Markers,
    caught_up,
    endings,
    exercise,
    records_holding,
    refusals,
    rows_holding,
    scan,
)
from tests.e2e.processes import crm_processes, eventually, free_port, wait_for_http

CHECKOUT = Path(__file__).resolve().parents[2]


def test_embedded_data_dir_holds_no_personal_plaintext(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"CRM_DATA_DIR": str(data), "CRM_DATABASE_URL": ""}
    markers, port = Markers(), free_port()
    with crm_processes(env, tmp_path) as crm:
        service = crm.start("run", "--port", str(port))
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, service)
        token = re.search(r"token[^:]*: (\S+)", crm.output(service))
        assert token, crm.output(service)
        auth = {"Authorization": f"Bearer {token.group(1)}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            customer, _ = exercise(client, markers)
            position = endings(client, markers)  # after the exercise's last command
            refusals(client, markers, customer)
            caught_up(client, customer, position, markers)
            assert scan(tmp_path, markers.needles) == []  # the data dir and the log, running
            key = _key(data / "keys.db", customer)
            sealed_name = _sealed_name(data / "readmodels.db", customer)
            erased = client.post(f"/v1/customers/{customer}/erasure", json={})
            assert erased.status_code == 200, erased.text
            wait = f"min_position={erased.json()['position']}"
            after = client.get(f"/v1/customers/{customer}/timeline?{wait}&limit=500")
            assert markers("feedback") not in after.text
            assert "[erased]" in after.text
            assert scan(data, pieces(key, 8)) == []  # no part of the destroyed key is left
            remnants = scan(data, pieces(sealed_name.removeprefix(b"enc:v1:"), 12))
            assert [f for f, _ in remnants if "readmodels" in f] == []
        service.send_signal(signal.SIGINT)  # a graceful stop (Ctrl-C)
        assert service.wait(timeout=30) == 0, crm.output(service)
    assert scan(tmp_path, [*markers.needles, *pieces(key, 8)]) == []


def test_postgres_and_kafka_hold_no_personal_plaintext(
    pg_url: str, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    pg_data, kafka_logs = _postgres_data_dir(), _kafka_log_dir()
    env = {
        "CRM_DATABASE_URL": pg_url, "CRM_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "CRM_TOPIC_PREFIX": topic_prefix, "CRM_DATA_DIR": str(tmp_path / "data"),
    }  # fmt: skip
    markers, port = Markers(), free_port()
    with crm_processes(env, tmp_path) as crm:
        crm.run("topics", "ensure", "--partitions", "1")
        token = crm.run("principals", "add", "root", "--department", "it", "--role", "admin")
        api = crm.start("api", "--port", str(port))
        crm.start("relay")
        for name in PROJECTIONS:
            crm.start("consume", name, "--single-process")
        base = f"http://127.0.0.1:{port}"
        wait_for_http(base, api)
        auth = {"Authorization": f"Bearer {token.strip().splitlines()[-1]}"}
        with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
            customer, _ = exercise(client, markers)
            position = endings(client, markers)  # after the exercise's last command
            refusals(client, markers, customer)
            _every_projection_applied(pg_url, position)  # consumers may start slowly
            caught_up(client, customer, position, markers)
            email = markers("mail") + "@example.com"  # the consumer's terms, through Kafka
            found = client.get("/v1/customers", params={"email": email}).json()["items"]
            assert [row["customer_id"] for row in found] == [customer]
            reason = _refused_row(pg_url, client, customer, markers)
            assert "DETAIL:  Failing row contains" in reason, reason
            assert "enc:v1:" in reason, reason  # the row's personal values, sealed
    assert rows_holding(pg_url, markers.needles) == []
    assert records_holding(kafka_bootstrap, topic_prefix, markers.needles) == []
    assert scan(tmp_path, markers.needles) == []  # the processes' logs
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CHECKPOINT")
    assert scan(pg_data, markers.needles) == []
    for entry in _ours(kafka_logs, topic_prefix):
        assert scan(entry, markers.needles) == []


def _refused_row(pg_url: str, client: httpx.Client, customer: str, m: Markers) -> str:
    """Make the live `sales` read model refuse the customer's row (a check the rows
    break), change the customer's name, and answer the dead letter's reason."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        live = conn.execute("SELECT live_generation FROM crm_projections WHERE name = 'sales'")
        generation = _one(live.fetchone())
        conn.execute(
            sql.SQL("ALTER TABLE {} ADD CONSTRAINT refused CHECK (name IS NULL) NOT VALID").format(
                sql.Identifier(f"sales_v{generation}", "customers")
            )
        )
    changed = client.patch(f"/v1/customers/{customer}", json={"name": m("refused")})
    assert changed.status_code == 200, changed.text
    _every_projection_applied(pg_url, changed.json()["position"])
    letters = sql.SQL("SELECT error FROM {}").format(
        sql.Identifier(f"sales_v{generation}", "_dead_letters")
    )
    with psycopg.connect(pg_url) as conn:
        return str(_one(conn.execute(letters).fetchone()))


def _one(row: tuple[Any, ...] | None) -> Any:
    assert row is not None
    (value,) = row
    return value


def _ours(kafka_logs: Path, topic_prefix: str) -> list[Path]:
    """This test's partitions and the broker's own (`__consumer_offsets`, metadata...):
    the shared broker holds thousands of other tests' partitions, each with 20 MB of
    preallocated index files, and the markers are unique to this test."""
    return [
        entry
        for entry in kafka_logs.iterdir()
        if entry.name.startswith((topic_prefix, "__")) or entry.is_file()
    ]


def pieces(value: bytes, size: int) -> list[bytes]:
    """Every `size`-byte slice of `value`: a partly overwritten copy still shows."""
    return [value[i : i + size] for i in range(len(value) - size + 1)]


def _key(keys: Path, customer: str) -> bytes:
    with sqlite3.connect(keys) as conn:
        (key,) = conn.execute(
            "SELECT key FROM crm_subject_keys WHERE subject = ?", (customer,)
        ).fetchone()
    assert isinstance(key, bytes)
    assert len(key) == 32
    return key


def _sealed_name(readmodels: Path, customer: str) -> bytes:
    with sqlite3.connect(readmodels) as conn:
        (name,) = conn.execute(
            "SELECT name FROM shared__customers WHERE customer_id = ?", (customer,)
        ).fetchone()
    assert name.startswith("enc:v1:"), name
    return str(name).encode()


def _every_projection_applied(pg_url: str, position: int) -> None:
    store = PostgresStore(pg_url)
    try:
        for name in PROJECTIONS:
            eventually(partial(_applied, store, name, position), what=f"{name} at {position}")
    finally:
        store.close()


def _applied(store: PostgresStore, name: str, position: int) -> bool | None:
    return store.status(name).last_position >= position or None


def _services_dir() -> Path:
    return Path(os.environ.get("CRM_SERVICES_DIR") or CHECKOUT / "var" / "services")


def _known(path: Path | None, what: str) -> Path:
    """`path` when it is a readable directory; else skip (fail under CI: a scan that
    never ran proves nothing)."""
    if path is not None and path.is_dir() and os.access(path, os.R_OK | os.X_OK):
        return path
    message = f"{what} is not known or not readable here (CRM_SERVICES_DIR={_services_dir()})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _postgres_data_dir() -> Path:
    root = _services_dir() / "postgres" / "root"
    found = Path(root.read_text().strip()) / "data" if root.is_file() else None
    return _known(found, "PostgreSQL's data directory")


def _kafka_log_dir() -> Path:
    properties = _services_dir() / "kafka" / "server.properties"
    found = None
    if properties.is_file():
        for line in properties.read_text().splitlines():
            if line.startswith("log.dirs="):
                found = Path(line.partition("=")[2].split(",")[0].strip())
    return _known(found, "Kafka's log directory")
