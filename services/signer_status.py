"""How a checkpoint signer is doing, for `/readyz` and `/metrics` of an API in the same
process (`crm run`), and for `crm relay`'s health row: its attempts counted by the
signer's thread (`services.checkpointer.Checkpointer.run`), and the signers running in
this process.

I/O: none (process memory).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

FAILING_AFTER = 3
"""Failed attempts in a row (about a second apart) before a transient failure counts."""
_RUNNING: list[SignerStatus] = []
_RUNNING_LOCK = threading.Lock()


class SignerStatus:
    """How a signer's attempts went, for `/readyz` and `/metrics`. Written by its thread,
    read by the API's: each field is one assignment, so a reader sees old or new."""

    def __init__(self) -> None:
        self.signed = 0
        self.refusals = 0
        self.failures = 0
        self.in_a_row = 0
        self.error: str | None = None
        self.refusing = False
        self.lagging: str | None = None
        """Set while the relay feeding it stays behind the store (`Checkpointer`)."""

    def failed(self, error: Exception, *, refused: bool) -> bool:
        """Count a failed attempt; whether it is news (to be logged)."""
        text = f"{type(error).__name__}: {error}" if not refused else str(error)
        news = text != self.error
        if refused:
            self.refusals += 1
        else:
            self.failures += 1
        self.in_a_row += 1
        self.error, self.refusing = text, refused
        return news

    def succeeded(self) -> None:
        self.in_a_row, self.error, self.refusing = 0, None, False

    def trouble(self) -> str | None:
        """One line for /readyz, None while it signs (or a blip has not repeated)."""
        if self.error is None or (not self.refusing and self.in_a_row < FAILING_AFTER):
            return self.lagging
        if self.refusing:
            return f"refusing to sign: {self.error}"
        return f"failing ({self.in_a_row} attempts in a row): {self.error}"

    @contextmanager
    def running(self) -> Iterator[None]:
        with _RUNNING_LOCK:
            _RUNNING.append(self)
        try:
            yield
        finally:
            with _RUNNING_LOCK:
                _RUNNING.remove(self)


def running_signers() -> list[SignerStatus]:
    """The signers running in this process (`crm run`: the API's own)."""
    with _RUNNING_LOCK:
        return list(_RUNNING)
