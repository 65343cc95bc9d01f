"""What a logged exception writes: its traceback, never the values its frames held. A
request's frames hold plaintext it was allowed to see (an opened e-mail, a decrypted
message); a console renderer that printed locals (structlog's pretty tracebacks do,
unless the traceback is formatted before it) would write them to the terminal."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import structlog

from services.logs import configure_logging
from services.settings import load_settings

SECRET = "ada.lovelace@example.com"


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


def _fails() -> None:
    opened = SECRET  # what a request's frame holds once it opened a personal field
    raise ValueError(f"refused ({len(opened)} characters)")


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_a_logged_exception_shows_its_traceback_but_no_local_values(
    log_format: str, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging(load_settings({"CRM_LOG_FORMAT": log_format}))
    try:
        _fails()
    except ValueError:
        structlog.get_logger("test").exception("unhandled")

    written = capsys.readouterr().out
    assert "in _fails" in written  # the traceback
    assert "refused (24 characters)" in written
    assert SECRET not in written
