"""Argument types shared by the `crm` subcommands: a bad value is a one-line usage error
naming the argument, never a traceback from deep inside (a port of 99999 was an
`OverflowError` from `bind`, a batch of 0 a `ValueError` from kafka-python). So is a
`--from/--to` range whose end lies before its start (`add_range`): `crm audit verify
--from 5 --to 2` checked nothing and reported the log intact."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from domain import fields as bound
from domain.base import ValidationFailed
from domain.validation import aware, instant_text, rfc3339, time_text, whole_number
from services.ranges import backwards

POSITION_LIMIT = bound.BIGINT  # the event store's positions and versions are bigints


def int_between(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from `low` to `high`, written as the API reads one
    (`domain.validation.whole_number`: ASCII digits; `int` took Arabic-Indic digits and '5_000')."""

    def parse(text: str) -> int:
        try:
            value = whole_number(text.strip(), "")  # a pasted space aside
        except ValidationFailed:
            raise argparse.ArgumentTypeError(f"{text[:40]!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value

    return parse


PORT = int_between(1, 65_535)
POSITION = int_between(0, POSITION_LIMIT)


def _time(check: Callable[[datetime, str], datetime]) -> Callable[[str], datetime]:
    """An argparse type: an RFC 3339 time with a zone, read as the API reads one
    (`domain.validation.time_text`), that `check` (a `domain.validation` rule) accepts;
    a usage error otherwise, with an example when a zone is all it lacks."""

    def parse(text: str) -> datetime:
        try:
            instant = time_text(text, repr(text))
        except ValidationFailed:
            instant = None
        if instant is None or instant.utcoffset() is None:
            example = _zoned(text)
            raise argparse.ArgumentTypeError(
                f"{text[:40]!r} needs a zone, e.g. {example}"
                if example
                else f"{text[:40]!r} is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"
            )
        try:
            return check(instant, repr(text))
        except ValidationFailed as refused:
            raise argparse.ArgumentTypeError(str(refused)) from None

    return parse


def _zoned(text: str) -> str | None:
    """`text` with a zone (and the time of day it lacks) when that makes it a time, else None."""
    for example in (f"{text}Z", f"{text}:00Z", f"{text}T00:00:00Z"):
        try:
            instant_text(example, "")
        except ValidationFailed:
            continue
        return example
    return None


zoned_time = _time(rfc3339)
"""Any instant with a zone RFC 3339 writes (within ±23:59): a statistics bound, as `GET
/v1/stats/satisfaction` takes it (one beyond the UTC calendar is before or after every
answer)."""
calendar_time = _time(aware)
"""A time every store holds once converted to UTC (`domain.validation.aware`), as the
API's `?as_of=` and the access log's range take it: `crm audit access ID --from
9999-12-31T23:59:59.999999-23:59:59.999999` was an OverflowError's traceback where the
access log converted it to UTC."""


def add_range(
    parser: argparse.ArgumentParser,
    value: Callable[[str], Any],
    *,
    metavar: str | None = None,
    first: str | None = None,
    last: str | None = None,
) -> None:
    """`--from` and `--to` (`args.start`, `args.end`, None when not given), each parsed by
    `value` into values that compare (positions, zoned times); a `--to` before the
    `--from` is a usage error, whichever is given first."""
    for option, dest, text in (("--from", "start", first), ("--to", "end", last)):
        parser.add_argument(
            option, dest=dest, type=value, metavar=metavar, help=text, action=_RangeBound
        )


class _RangeBound(argparse.Action):
    """Stores `--from` or `--to`, then checks the range against the other bound when it
    has been given (argparse starts both at None)."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        setattr(namespace, self.dest, values)
        refused = backwards(namespace.start, namespace.end, first="--from", last="--to")
        if refused is not None:
            parser.error(refused)
