"""Stored events from the past keep decoding: one golden example per event type.

Each file in tests/unit/golden holds a stored topic, the exact stored bytes and the
fields expected after decoding (upcast to the current version). A new event type
without a golden file fails here: run `python -m tests.unit.domain.golden_examples`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent

from domain.codec import CodecMapper, encode, event_types, parse_topic
from domain.conversation import ConversationClosed
from tests.unit.domain.factories import CONVERSATION_ID
from tests.unit.domain.golden_examples import GOLDEN_DIR, examples, golden_document

GOLDEN_FILES = sorted(GOLDEN_DIR.glob("*.json"))


def load(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_text())
    return document


def decode(document: dict[str, Any]) -> Any:
    stored = StoredEvent(
        originator_id=CONVERSATION_ID,
        originator_version=1,
        topic=document["topic"],
        state=document["state"].encode(),
    )
    return CodecMapper().to_domain_event(stored)


def test_every_event_type_has_a_golden_example() -> None:
    covered = {path.name.partition("@")[0] for path in GOLDEN_FILES}
    missing = sorted(set(event_types()) - covered)
    assert not missing, f"no golden example for {missing}: run golden_examples"


def test_every_current_version_has_a_golden_example() -> None:
    names = {path.stem for path in GOLDEN_FILES}
    missing = sorted(f"{n}@{c.class_version}" for n, c in event_types().items())
    assert set(missing) <= names


@pytest.mark.parametrize("path", GOLDEN_FILES, ids=lambda p: p.stem)
def test_golden_example_decodes_to_the_expected_event(path: Path) -> None:
    document = load(path)
    cls, _version = parse_topic(document["topic"])
    event = decode(document)
    assert type(event) is cls
    decoded = json.loads(encode(event))
    assert {k: decoded.get(k, "<missing>") for k in document["expected"]} == document["expected"]


def test_version_1_conversation_closed_is_upcast() -> None:
    event = decode(load(GOLDEN_DIR / "ConversationClosed@1.json"))
    assert isinstance(event, ConversationClosed)
    assert (event.outcome, event.summary) == ("resolved", None)


def test_the_examples_cover_every_event_type() -> None:
    assert {e.wire_name() for e in examples()} == set(event_types())


@pytest.mark.parametrize("event", examples(), ids=lambda e: e.wire_name())
def test_current_encoding_still_matches_its_golden_file(event: Any) -> None:
    """Encoding drift (renamed field, changed format) shows here before it ships."""
    path = GOLDEN_DIR / f"{event.wire_name()}@{event.class_version}.json"
    assert golden_document(event) == {k: v for k, v in load(path).items() if k != "note"}
