"""The search benchmark's data is what a replay would have stored: rows made by the
projections with personal columns sealed under the customer's key, and blind-index
terms that a query's values (spelled as a caller would) look up; and how its replay
figures compare the two ways."""

from __future__ import annotations

import os
import random

from bench.sealed_replay import compared
from bench.search_data import SeedKeys, registration, rows_of
from consumers.blind_index import BlindIndex
from consumers.keyring import PREFIX, Keyring


def test_seeded_rows_are_sealed_and_found_by_the_terms_a_query_looks_up() -> None:
    search = os.urandom(32)
    keyring = Keyring(SeedKeys(search))
    event = registration(7, random.Random(1))
    assert event.email is not None
    assert event.phone is not None

    rows = rows_of(event, keyring)

    (customer,) = rows[("shared", "customers")]
    for column in ("name", "email", "phone", "address"):
        assert customer[column].startswith(PREFIX)
        assert keyring.decrypt(event.originator_id, customer[column]) == getattr(event, column)
    assert customer["company"] == event.company
    stored = {row["term"] for row in rows[("shared", "search_terms")]}
    index = BlindIndex(search)
    spelled = "00" + event.phone[1:3] + " " + event.phone[3:]
    for field, value in (("email", event.email.upper()), ("phone", spelled), ("name", event.name)):
        assert set(index.wanted(field, value)) <= stored, field
    assert f"c:{(event.company or '').lower()}" in stored
    assert {row["customer_id"] for row in rows[("marketing", "customers")]} == {event.originator_id}


def test_the_search_terms_need_the_search_key() -> None:
    event = registration(7, random.Random(1))
    assert event.email is not None

    rows = rows_of(event, Keyring(SeedKeys(os.urandom(32))))

    stored = {row["term"] for row in rows[("shared", "search_terms")]}
    assert not set(BlindIndex(os.urandom(32)).wanted("email", event.email)) & stored


def test_replay_ratios_are_now_over_before() -> None:
    now = {"events_per_s": 30, "reader_cpu_ms_per_1000": 10.0, "writer_cpu_ms_per_1000": 40.0}
    before = {"events_per_s": 20, "reader_cpu_ms_per_1000": 20.0, "writer_cpu_ms_per_1000": 40.0}

    figures = compared(now, before)

    assert figures["sealed"] == now
    assert figures["opening_before"] == before
    assert figures["ratio_events_per_s"] == 1.5
    assert figures["ratio_reader_cpu"] == 0.5
    assert figures["ratio_writer_cpu"] == 1.0
