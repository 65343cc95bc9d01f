"""The `crm` subcommands' argument types: a bad value is a one-line usage error, and a
zone-less time's error gives an example that is itself accepted."""

from __future__ import annotations

import argparse
import re
from uuid import UUID

import pytest

from domain.base import ValidationFailed
from domain.validation import instant_text
from services.cli import build_parser
from services.cli_args import PORT, calendar_time, int_between, zoned_time


@pytest.mark.parametrize("text", ["2026-01-01", "2026-01-01T09:30", "2026-01-01 09:30:00"])
def test_a_time_without_a_zone_is_refused_with_an_example_that_parses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        zoned_time(text)
    example = re.search(r"e\.g\. (\S+.*)$", str(refused.value))
    assert example is not None
    assert zoned_time(example[1]).utcoffset() is not None


def test_a_malformed_time_is_a_usage_error_not_a_traceback() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not an RFC 3339 time"):
        zoned_time("notadate")
    assert zoned_time("2026-01-31T00:00:00Z").isoformat() == "2026-01-31T00:00:00+00:00"


@pytest.mark.parametrize(
    "text",
    [
        "20260131T000000Z",  # ISO 8601's basic format
        "2026-W05-6T00:00:00Z",  # a week date
        "2026-01-31T00:00Z",  # minutes without seconds
        "2026-01-31T00:00:00+23:59:59",  # an offset with seconds
        "2026-01-31T00:00:00\u066b5Z",  # an Arabic decimal separator
    ],
)
def test_a_time_the_api_refuses_is_refused_here_too(text: str) -> None:
    """`datetime.fromisoformat` read ISO 8601's other forms, which `?as_of=` and
    `?from=` refuse: the CLI reads a time as the API does (`validation.time_text`)."""
    with pytest.raises(ValidationFailed):
        instant_text(text, "as_of")
    for parse in (zoned_time, calendar_time):
        with pytest.raises(argparse.ArgumentTypeError, match="not an RFC 3339 time"):
            parse(text)


@pytest.mark.parametrize("text", ["0", "65536", "-1", "99999", "8000.5", "eighty", ""])
def test_a_port_outside_1_to_65535_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        PORT(text)


@pytest.mark.parametrize("text", ["5_000", "\u0665", "\uff15", "1e3", "+5", "-0", "05", "9" * 5000])
def test_an_integer_is_written_in_ascii_digits_as_the_api_reads_one(text: str) -> None:
    """`int` took '5_000', Arabic-Indic and fullwidth digits, '+5' and '-0'."""
    with pytest.raises(argparse.ArgumentTypeError, match="is not a whole number"):
        int_between(0, 2**63 - 1)(text)


def test_an_integer_within_its_bounds_is_taken() -> None:
    assert (PORT("1"), PORT("65535"), int_between(1, 64)(" 8 ")) == (1, 65_535, 8)
    with pytest.raises(argparse.ArgumentTypeError, match="not between 1 and 64"):
        int_between(1, 64)("0")


RANGES = (  # every `--from/--to` range of the CLI: a command, an end before its start
    (["audit", "verify"], "5", "2"),
    (["stats", "satisfaction"], "2026-02-01T00:00:00Z", "2026-01-31T23:59:59+00:00"),
    (["audit", "access", str(UUID(int=1))], "2026-02-01T00:00:00Z", "2026-01-01T00:00:00Z"),
)


@pytest.mark.parametrize(("command", "start", "end"), RANGES)
def test_a_range_ending_before_its_start_is_a_usage_error_in_either_order(
    command: list[str], start: str, end: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """It checked nothing and said so as a success (`audit verify` printed "intact")."""
    for options in (["--from", start, "--to", end], ["--to", end, "--from", start]):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command, *options])
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"crm {' '.join(command[:2])}: error: --to "), error
        assert "before --from" in error
    for options in (["--from", start, "--to", start], ["--from", end, "--to", start]):
        args = build_parser().parse_args([*command, *options])
        assert args.start <= args.end


TIMES = (  # every time the CLI takes: the command, the argument, its name in the error
    (["stats", "satisfaction", "--from"], "--from"),
    (["audit", "access", str(UUID(int=1)), "--to"], "--to"),
    (["audit", "as-of", str(UUID(int=1))], "time"),
)


@pytest.mark.parametrize(("command", "argument"), TIMES)
def test_every_cli_time_needs_a_zone_as_a_usage_error(
    command: list[str], argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without a zone a time was the machine's local time, and one range could not
    compare a zoned `--from` with a zone-less `--to`; `audit as-of` refused one only once
    its handler ran, in words of its own. Each is argparse's one line, exit 2, with an
    example that is accepted."""
    for text, example in (("2026-01-01", "2026-01-01T00:00:00Z"), ("tomorrow", None)):
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command, text])
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error.startswith(f"crm {' '.join(command[:2])}: error: argument {argument}")
        assert (example or "not an RFC 3339 time") in error, error


@pytest.mark.parametrize(("command", "argument"), TIMES)
def test_every_cli_time_no_store_can_hold_is_a_usage_error(
    command: list[str], argument: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Python reads offsets up to a microsecond short of 24 hours and local times of year 1:
    `crm audit access ID --from 9999-12-31T23:59:59.999999-23:59:59.999999` printed an
    OverflowError's traceback where the access log converted it to UTC. Every CLI time is
    held to what its API twin accepts: argparse's one line, exit 2, naming what is wrong.
    A statistics bound may lie beyond the UTC calendar, as the API's may (it is then
    before or after every answer); the access log's and `as-of` may not."""
    refused = [  # RFC 3339 writes no offset beyond ±23:59, nor seconds in one
        (text, f"{text[:40]!r} is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z")
        for text in ("9999-12-31T23:59:59.999999-23:59:59.999999", "2026-01-01T00:00:00+24:00")
    ]
    beyond = "0001-01-01T00:00:00+14:00"
    if command[0] == "stats":
        assert build_parser().parse_args([*command, beyond]) is not None
    else:
        why = "must lie between 1900-01-01 and 9999-12-31 in UTC"
        refused.append((beyond, f"{beyond!r}: {why}"))
    for text, why in refused:
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([*command, text])
        assert exited.value.code == 2
        error = capsys.readouterr().err.strip().splitlines()[-1]
        assert error == f"crm {' '.join(command[:2])}: error: argument {argument}: {why}"
    edge = "9999-12-31T23:59:59.999999+00:00"
    assert build_parser().parse_args([*command, edge]) is not None
