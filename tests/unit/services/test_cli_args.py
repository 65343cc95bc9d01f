"""The `crm` subcommands' argument types: a bad value is a one-line usage error, and a
zone-less time's error gives an example that is itself accepted."""

from __future__ import annotations

import argparse
import re

import pytest

from services.cli_args import PORT, int_between, zoned_time


@pytest.mark.parametrize("text", ["2026-01-01", "2026-01-01T09:30", "2026-01-01 09:30:00"])
def test_a_time_without_a_zone_is_refused_with_an_example_that_parses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError) as refused:
        zoned_time(text)
    example = re.search(r"e\.g\. (\S+.*)$", str(refused.value))
    assert example is not None
    assert zoned_time(example[1]).utcoffset() is not None


def test_a_malformed_time_is_a_usage_error_not_a_traceback() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="not an ISO 8601 time"):
        zoned_time("notadate")
    assert zoned_time("2026-01-31T00:00:00Z").isoformat() == "2026-01-31T00:00:00+00:00"


@pytest.mark.parametrize("text", ["0", "65536", "-1", "99999", "8000.5", "eighty", ""])
def test_a_port_outside_1_to_65535_is_a_usage_error(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        PORT(text)


def test_an_integer_within_its_bounds_is_taken() -> None:
    assert (PORT("1"), PORT("65535"), int_between(1, 64)(" 8 ")) == (1, 65_535, 8)
    with pytest.raises(argparse.ArgumentTypeError, match="not between 1 and 64"):
        int_between(1, 64)("0")
