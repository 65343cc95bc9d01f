"""Argument types shared by the `crm` subcommands: a bad value is a one-line usage error
naming the argument, never a traceback from deep inside (a port of 99999 was an
`OverflowError` from `bind`, a batch of 0 a `ValueError` from kafka-python)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime

POSITION_LIMIT = 2**63 - 1  # the event store's positions and versions are bigints


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


PORT = int_between(1, 65_535)
POSITION = int_between(0, POSITION_LIMIT)


def zoned_time(text: str) -> datetime:
    """An argparse type: an ISO 8601 time with a zone (a usage error otherwise)."""
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time, e.g. 2026-01-31T00:00:00Z"
        ) from None
    if instant.utcoffset() is None:
        zoned = f"{text}Z" if "T" in text or " " in text else f"{text}T00:00:00Z"
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone, e.g. {zoned}")
    return instant
