"""What a logged exception writes: its traceback, never the values its frames held. A
request's frames hold plaintext it was allowed to see (an opened e-mail, a decrypted
message); a console renderer that printed locals (structlog's pretty tracebacks do,
unless the traceback is formatted before it) would write them to the terminal.

What the standard library's records write (uvicorn's, any library's): a line by the
same renderer, JSON in production, never free text a request could shape (red team s32
F3: a `Connection: Upgrade` wrote uvicorn's plain `WARNING:` lines)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from services.logs import configure_logging
from services.settings import load_settings

SECRET = "ada.lovelace@example.com"


@pytest.fixture(autouse=True)
def reset_structlog() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


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


def _lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_library_record_is_a_json_line_that_a_request_cannot_shape(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings({"CRM_LOG_FORMAT": "json"}))
    hostile = 'Unsupported upgrade request.\n{"level": "info", "event": "forged"}'
    logging.getLogger("uvicorn.error").warning("%s", hostile)

    [line] = _lines(capsys.readouterr().err)
    assert line["event"] == hostile
    assert line["logger"] == "uvicorn.error"
    assert line["level"] == "warning"
    assert "timestamp" in line


def test_library_records_keep_their_levels_and_are_written_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = load_settings({"CRM_LOG_FORMAT": "json"})
    configure_logging(settings)
    configure_logging(settings)  # a worker's second set-up: still one handler
    library = logging.getLogger("some.library")
    library.info("below the root's WARNING: dropped, as before")
    library.error("kept")
    logging.getLogger("kafka.conn").error("quiet unless at debug, as before")

    assert [line["event"] for line in _lines(capsys.readouterr().err)] == ["kept"]


def test_a_library_records_exception_shows_its_traceback_but_no_local_values(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging(load_settings({"CRM_LOG_FORMAT": "console"}))
    try:
        _fails()
    except ValueError:
        logging.getLogger("some.library").exception("unhandled")

    written = capsys.readouterr().err
    assert "in _fails" in written
    assert "refused (24 characters)" in written
    assert SECRET not in written


class _Writes:
    """A stdout that keeps each write apart."""

    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_line_is_one_write_with_its_newline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Processes sharing a stdout (`crm api --workers N`) then never run two lines into
    one. Fails with structlog's printer (the line, then its newline)."""
    configure_logging(load_settings({"CRM_LOG_FORMAT": "json"}))
    stdout = _Writes()
    monkeypatch.setattr("sys.stdout", stdout)
    structlog.get_logger("test").info("server stopping", streams=0)

    [write] = stdout.writes
    assert write.endswith("}\n")
    assert json.loads(write)["event"] == "server stopping"
