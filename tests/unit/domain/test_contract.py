"""The committed wire contract (docs/events) matches the code and stays compatible.

Two guards: the generated files must equal the committed ones (else run `crm contract
generate`), and the current schemas must not break the released baseline in
docs/events/released (removed type, removed field, changed type, newly required field).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from domain.codec import event_types
from domain.contract import (
    PERSONAL_NOTE,
    TOPICS,
    asyncapi,
    breaking_changes,
    contract_files,
    generate,
    json_schemas,
)

DOCS = Path(__file__).resolve().parents[3] / "docs" / "events"
RELEASED = DOCS / "released"


def read_schemas(directory: Path) -> dict[str, dict[str, Any]]:
    return {
        path.name.removesuffix(".schema.json"): json.loads(path.read_text())
        for path in sorted(directory.glob("*.schema.json"))
    }


def test_committed_contract_is_up_to_date(tmp_path: Path) -> None:
    written = generate(tmp_path)
    expected = {p.name: p.read_text() for p in written}
    committed = {p.name: p.read_text() for p in DOCS.glob("*.json")}
    assert committed == expected, "docs/events is stale: run `crm contract generate`"


def test_generation_is_deterministic_and_removes_stale_schemas(tmp_path: Path) -> None:
    (tmp_path / "Gone.schema.json").write_text("{}\n")
    generate(tmp_path)
    assert not (tmp_path / "Gone.schema.json").exists()
    assert contract_files() == contract_files()
    assert all(content.endswith("}\n") for content in contract_files().values())


def test_current_schemas_do_not_break_the_released_baseline() -> None:
    problems = breaking_changes(read_schemas(RELEASED), json_schemas())
    assert not problems, "breaking change against docs/events/released: " + "; ".join(problems)


def test_personal_fields_are_documented_as_sealed() -> None:
    schemas = json_schemas()
    for name, cls in event_types().items():
        for field in cls.personal_fields:
            assert schemas[name]["properties"][field]["description"] == PERSONAL_NOTE


def test_asyncapi_has_one_channel_per_aggregate_and_a_message_per_event() -> None:
    document = asyncapi()
    assert document["asyncapi"] == "3.0.0"
    assert set(document["channels"]) == set(TOPICS.values())
    assert set(document["components"]["messages"]) == set(event_types())
    envelope = document["components"]["schemas"]["CloudEvent"]["properties"]
    for attribute in ("specversion", "id", "source", "type", "subject", "time", "data"):
        assert attribute in envelope
    for extension in ("aggregatetype", "aggregateversion", "position", "schemaversion"):
        assert extension in envelope
    for extension in ("actor", "actordepartment", "correlationid", "causationid"):
        assert extension in envelope


def test_asyncapi_references_resolve() -> None:
    document = asyncapi()
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    for ref in refs:
        node: Any = document
        for key in ref.removeprefix("#/").split("/"):
            node = node[key]
        assert node, ref


# --- the compatibility check really detects breaking changes ---------------------------


@pytest.fixture
def baseline() -> dict[str, dict[str, Any]]:
    return json_schemas()


def test_identical_schemas_are_compatible(baseline: dict[str, dict[str, Any]]) -> None:
    assert breaking_changes(baseline, json_schemas()) == []


def test_documentation_changes_are_compatible(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    current["TaskStarted"]["description"] = "reworded"
    current["TaskCreated"]["properties"]["title"]["description"] = "reworded"
    assert breaking_changes(baseline, current) == []


def test_an_added_optional_field_is_compatible(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    current["TaskStarted"]["properties"]["note"] = {"type": "string", "default": ""}
    assert breaking_changes(baseline, current) == []


def test_a_removed_type_is_breaking(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    del current["CustomerTagged"]
    assert breaking_changes(baseline, current) == ["CustomerTagged: event type removed"]


def test_a_removed_field_is_breaking(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    del current["OrderRecorded"]["properties"]["currency"]
    assert breaking_changes(baseline, current) == ["OrderRecorded: field 'currency' removed"]


def test_a_changed_field_type_is_breaking(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    current["OrderRecorded"]["properties"]["amount"] = {"type": "number"}
    current["TaskCompleted"]["properties"]["on_time"]["anyOf"] = [{"type": "boolean"}]
    assert breaking_changes(baseline, current) == [
        "OrderRecorded: field 'amount' changed type",
        "TaskCompleted: field 'on_time' changed type",
    ]


def test_a_newly_required_field_is_breaking(baseline: dict[str, dict[str, Any]]) -> None:
    current = copy.deepcopy(baseline)
    current["TaskStarted"]["properties"]["note"] = {"type": "string"}
    current["TaskStarted"]["required"] = [*current["TaskStarted"]["required"], "note"]
    assert breaking_changes(baseline, current) == ["TaskStarted: field 'note' became required"]


def test_a_field_sealed_without_a_new_schema_version_is_breaking(
    baseline: dict[str, dict[str, Any]],
) -> None:
    current = copy.deepcopy(baseline)
    current["CustomerTagged"]["x-personal-fields"] = ["tag"]
    assert breaking_changes(baseline, current) == ["CustomerTagged: field 'tag' became personal"]
    current["CustomerTagged"]["x-schema-version"] += 1
    assert breaking_changes(baseline, current) == []
