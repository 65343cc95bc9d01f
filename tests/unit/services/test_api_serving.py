"""What `crm api` / `crm run` do to their process before serving."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import uvicorn

from services import api_serving


def test_what_was_built_before_serving_is_frozen_out_of_full_collections_until_it_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    frozen_when_served: list[int] = []

    def run(*args: Any, **kwargs: Any) -> None:
        frozen_when_served.append(gc.get_freeze_count())

    monkeypatch.setattr(uvicorn, "run", run)
    gc.unfreeze()
    try:
        api_serving.serve(object(), "127.0.0.1", 0)
        left_frozen = gc.get_freeze_count()
    finally:
        gc.unfreeze()  # give the test process its collector back whatever happened
    assert frozen_when_served
    assert frozen_when_served[0] > 10_000  # the interpreter, the modules and the app
    assert left_frozen == 0  # the process's exit finalizes everything again
