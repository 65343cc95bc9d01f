"""List cursors, path ids and CLI times as a hostile client writes them, through the
real API (a uvicorn) and the real `crm`: each is a clear 4xx problem or a usage error,
the same way on both stores, never a 500 or a traceback (red-team review: each of these
was one)."""

from __future__ import annotations

import base64
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.api_support import embedded_api, served

Headers = dict[str, str]
CRM = str(Path(sys.executable).with_name("crm"))
AT = "2024-01-01T00:00:00+00:00"
BEYOND = "9999-12-31T23:59:59.999999-23:59:59.999999"  # an offset past -23:59
ROW = str(uuid.uuid4())
HOSTILE_CURSORS = {  # a list (its customer's id filled in), the JSON its cursor carries
    "/v1/customers/{customer}/timeline": (
        f'["{AT}", "\\ud800"]',  # an escaped lone surrogate
        "[" * 5000,  # deeper than Python recurses
        f'["{BEYOND}", "entry"]',
    ),
    "/v1/departments/support/tasks": (
        f'["\\udfff", "open", null, "{ROW}"]',
        "[" * 5000,
        f'["mia", "open", "{BEYOND}", "{ROW}"]',
    ),
    "/v1/departments/support/conversations": (
        f'["{AT}\\udbff", "{ROW}"]',
        "[" * 5000,
        f'["{BEYOND}", "{ROW}"]',
    ),
}


def problem(answer: httpx.Response, status: int) -> str:
    assert answer.status_code == status, (answer.request.url, answer.text)
    assert answer.headers["content-type"].startswith("application/problem+json")
    detail: str = answer.json()["detail"]
    return detail


def posted(http: httpx.Client, url: str, body: dict[str, str], headers: Headers) -> str:
    answer = http.post(url, json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return str(answer.json()["id"])


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_a_cursor_holding_what_no_store_takes_is_a_400_on_both_stores(
    store: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """A lone surrogate reached the store (SQLite and psycopg cannot encode it), 5,000
    brackets were a RecursionError, and an offset past ±23:59 overflowed on SQLite while
    PostgreSQL served it: each is now the 400 of a cursor this API did not give."""
    url = request.getfixturevalue("pg_url") if store == "postgres" else None
    with (
        embedded_api(tmp_path, database_url=url) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        headers = api.token("sue", "support", "manager")
        customer = posted(http, "/v1/customers", {"name": "Grace Hopper"}, headers)
        api.catch_up()
        for path, cursors in HOSTILE_CURSORS.items():
            for json_text in cursors:
                cursor = base64.urlsafe_b64encode(json_text.encode()).decode()
                sent = http.get(
                    path.format(customer=customer), params={"cursor": cursor}, headers=headers
                )
                assert "is not one this list gave" in problem(sent, 400), (path, json_text)


@pytest.fixture
def history(tmp_path: Path) -> Iterator[tuple[httpx.Client, Headers, dict[str, str]]]:
    """A served API where a customer, a conversation and a task have two events each."""
    with (
        embedded_api(tmp_path) as api,
        served(api.app) as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        headers = api.token("sue", "support", "manager")
        customer = posted(http, "/v1/customers", {"name": "Grace Hopper"}, headers)
        patched = http.patch(f"/v1/customers/{customer}", json={"company": "Navy"}, headers=headers)
        assert patched.status_code == 200, patched.text
        opened = {"customer_id": customer, "channel": "phone", "subject": "Hello"}
        conversation = posted(http, "/v1/conversations", opened, headers)
        message = {"direction": "inbound", "author": "grace", "content": "Hi"}
        posted(http, f"/v1/conversations/{conversation}/messages", message, headers)
        task = posted(http, "/v1/tasks", {"customer_id": customer, "title": "Call"}, headers)
        patched = http.patch(f"/v1/tasks/{task}", json={"title": "Call back"}, headers=headers)
        assert patched.status_code == 200, patched.text
        ids = {"customers": customer, "conversations": conversation, "tasks": task}
        yield http, headers, ids


def digits(zero: int) -> dict[int, int]:
    """ASCII digits written as the ten digits from code point `zero` on."""
    return str.maketrans("0123456789", "".join(chr(zero + n) for n in range(10)))


SPELLINGS: dict[str, Callable[[str], str]] = {
    "upper case": lambda aggregate: aggregate.upper(),
    "without hyphens": lambda aggregate: aggregate.replace("-", ""),
}
"""Spellings of an id a body takes too (msgspec reads ids in bodies)."""


@pytest.mark.parametrize("spelling", SPELLINGS.values(), ids=SPELLINGS.keys())
def test_a_history_link_names_the_id_as_this_api_spells_it(
    history: tuple[httpx.Client, Headers, dict[str, str]], spelling: Callable[[str], str]
) -> None:
    """The `Link` header echoed the path as sent: a header is Latin-1, so an id written
    with fullwidth digits, which Python's UUID read, was a 500 (now such an id is a 404:
    `test_an_id_in_a_path_not_written_as_ids_are_is_a_404`)."""
    http, headers, ids = history
    for kind, aggregate in ids.items():
        first = http.get(f"/v1/{kind}/{spelling(aggregate)}/history?limit=1", headers=headers)
        assert first.status_code == 200, first.text
        assert first.headers["link"] == (
            f'</v1/{kind}/{aggregate}/history?cursor=1&limit=1>; rel="next"'
        )
        following = http.get(first.links["next"]["url"], headers=headers)
        assert [e["version"] for e in following.json()] == [2], following.text


def signed(aggregate: str) -> str:
    """32 characters Python's UUID reads as another id: `+` for the first hex digit (so
    an aggregate whose id begins with 0 was reached by it)."""
    return "+" + aggregate.replace("-", "")[1:]


def underscored(aggregate: str) -> str:
    """32 characters Python's UUID reads as another id: `_` for the fifth hex digit."""
    hexed = aggregate.replace("-", "")
    return hexed[:4] + "_" + hexed[5:]


NOT_IDS: dict[str, Callable[[str], str]] = {
    "fullwidth digits": lambda aggregate: aggregate.translate(digits(0xFF10)),
    "Arabic-Indic digits": lambda aggregate: aggregate.translate(digits(0x0660)),
    "braces": lambda aggregate: "{" + aggregate + "}",
    "a URN": lambda aggregate: "urn:uuid:" + aggregate,
    "a sign": signed,
    "an underscore": underscored,
}


@pytest.mark.parametrize("spelling", NOT_IDS.values(), ids=NOT_IDS.keys())
def test_an_id_in_a_path_not_written_as_ids_are_is_a_404(
    history: tuple[httpx.Client, Headers, dict[str, str]], spelling: Callable[[str], str]
) -> None:
    """Python's `UUID`, which read ids in paths, takes each of these (a sign or an `_`
    among 32 characters as another id): a 404 as `/v1/customers/xyz` is, on every route
    naming an id, whatever the method, before anything is read or changed."""
    http, headers, ids = history
    for kind, aggregate in ids.items():
        for suffix in ("", "/history"):
            sent = http.get(f"/v1/{kind}/{spelling(aggregate)}{suffix}", headers=headers)
            assert sent.status_code == 404, (kind, suffix, sent.text)
            assert sent.json()["detail"] == "Not Found"
    customer = spelling(ids["customers"])
    tagged = http.post(f"/v1/customers/{customer}/tags", json={"tag": "vip"}, headers=headers)
    assert tagged.status_code == 404, tagged.text
    current = http.get(f"/v1/customers/{ids['customers']}", headers=headers).json()
    assert current["tags"] == []


def test_a_cli_time_beyond_what_the_stores_hold_is_a_usage_error(tmp_path: Path) -> None:
    """`crm audit access ID --from` with an offset past ±23:59 printed an OverflowError's
    traceback (converting it to UTC for the access log): now argparse's one line, exit 2,
    the time read as the API reads one (RFC 3339 writes no offset past ±23:59)."""
    env = {"CRM_DATA_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    for option in ("--from", "--to"):
        command = [CRM, "audit", "access", ROW, option, BEYOND]
        done = subprocess.run(command, check=False, env=env, capture_output=True, text=True)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr
        error = done.stderr.strip().splitlines()[-1]
        assert error == (
            f"crm audit access: error: argument {option}: {BEYOND[:40]!r} "
            "is not an RFC 3339 time, e.g. 2026-01-31T00:00:00Z"
        )
