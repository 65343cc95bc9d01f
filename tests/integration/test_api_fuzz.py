"""Schemathesis from the app's own OpenAPI: no input gives a 5xx, every error is
problem+json. Bounded and deterministic (fixed examples per operation, derandomized).

Each operation's test calls an app of its own: schemathesis runs an app's lifespan
from its first call to the end of the test, and a served app's lifespan runs once."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from consumers.follower import applied_position
from consumers.store_sqlite import SqliteStore
from projections import PROJECTIONS
from services.api import create_app
from services.api.read_models import ReadModels
from services.bootstrap import bootstrap
from services.settings import load_settings

EXAMPLES = 30


def _app(tmp: Path) -> tuple[Any, str]:
    env = {"CRM_DATA_DIR": str(tmp), "CRM_READ_WAIT_SECONDS": "0.01"}
    store = SqliteStore(tmp / "readmodels.db")
    for projection in PROJECTIONS.values():
        store.install(projection)
    app = create_app(
        bootstrap(load_settings(env)),
        queries_helper=ReadModels(store),
        applied_position=lambda names: applied_position(store, names),
    )
    token = app.state.services.principals.add("fuzz", "sales", "admin")
    return app, token


_schema_dir = tempfile.TemporaryDirectory(prefix="crm-fuzz-")  # removed at exit: it holds keys
schema = schemathesis.openapi.from_asgi("/openapi.json", _app(Path(_schema_dir.name))[0]).exclude(
    path="/v1/events/stream"
)


@pytest.fixture
def served(tmp_path: Path) -> tuple[Any, str]:
    return _app(tmp_path)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_errors_and_problem_json(case: Any, served: tuple[Any, str]) -> None:
    app, token = served
    response = case.call(app=app, headers={"Authorization": f"Bearer {token}"})
    caught_up = response.status_code == 503 and "/not-caught-up" in response.text  # min_position
    assert response.status_code < 500 or caught_up, response.text
    if response.status_code >= 400:
        content_type = response.headers["content-type"]
        first = content_type[0] if isinstance(content_type, list) else content_type
        assert first.startswith("application/problem+json")
        assert response.json()["status"] == response.status_code
