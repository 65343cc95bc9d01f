"""The published wire contract, generated from the event classes.

`json_schemas()` gives one JSON Schema per event type for the CloudEvents `data`
member: the sealed event exactly as `domain.codec.encode` writes it (including its
`type` tag and metadata, which the envelope repeats as attributes). `asyncapi()`
describes the Kafka topics and the CloudEvents 1.0 structured-mode envelope.
`breaking_changes()` compares a released baseline with the current schemas.

Pure except `generate()`, the one function that writes the files (for `crm contract
generate`); its output is deterministic: sorted keys, two-space indent, final newline.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec

from domain.base import DomainEvent
from domain.codec import event_types

PERSONAL_NOTE = "personal data: sealed (encrypted) on the wire; reads as [erased] after erasure"
TOPICS = {
    "customer": "crm.customer.v1",
    "conversation": "crm.conversation.v1",
    "task": "crm.task.v1",
}
SOURCE = "crm-collab"
CONTENT_TYPE = "application/cloudevents+json"
_DOC_KEYS = frozenset({"title", "description", "examples", "default"})


def json_schemas() -> dict[str, dict[str, Any]]:
    """Wire name -> JSON Schema (draft 2020-12) of that event's `data` payload."""
    return {name: _event_schema(cls) for name, cls in sorted(event_types().items())}


def _event_schema(cls: type[DomainEvent]) -> dict[str, Any]:
    generated = msgspec.json.schema(cls)
    body: dict[str, Any] = generated["$defs"][cls.__name__]
    for name in cls.personal_fields:
        prop = body["properties"][name]
        prop["description"] = PERSONAL_NOTE
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:crm-collab:event:{cls.wire_name()}",
        **body,
        "title": cls.wire_name(),
        "x-aggregate-type": cls.aggregate_type,
        "x-schema-version": cls.class_version,
        "x-personal-fields": sorted(cls.personal_fields),
        "additionalProperties": True,
    }


def asyncapi() -> dict[str, Any]:
    """AsyncAPI 3.0 document: one channel per aggregate type, one message per event."""
    schemas = json_schemas()
    types = event_types()
    messages = {name: _message(types[name]) for name in schemas}
    channels = {
        topic: _channel(
            topic, kind, sorted(n for n, c in types.items() if c.aggregate_type == kind)
        )
        for kind, topic in TOPICS.items()
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "CRM Collab domain events",
            "version": "1.0.0",
            "description": "Every change to a customer, conversation or task, in order per "
            "aggregate (Kafka key = aggregate id), as CloudEvents 1.0 in structured JSON mode.",
        },
        "defaultContentType": CONTENT_TYPE,
        "channels": channels,
        "operations": {f"publish_{kind}": _operation(TOPICS[kind], channels) for kind in TOPICS},
        "components": {
            "messages": messages,
            "schemas": {
                "CloudEvent": _envelope_schema(),
                **{name: _embedded(schema) for name, schema in schemas.items()},
            },
        },
    }


def _channel(topic: str, kind: str, names: list[str]) -> dict[str, Any]:
    return {
        "address": topic,
        "description": f"Events of {kind} aggregates. Retention: forever.",
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in names},
    }


def _operation(topic: str, channels: dict[str, Any]) -> dict[str, Any]:
    return {
        "action": "send",
        "channel": {"$ref": f"#/channels/{topic}"},
        "messages": [
            {"$ref": f"#/channels/{topic}/messages/{name}"} for name in channels[topic]["messages"]
        ],
    }


def _message(cls: type[DomainEvent]) -> dict[str, Any]:
    name = cls.wire_name()
    specific = {
        "type": "object",
        "properties": {
            "type": {"const": name},
            "aggregatetype": {"const": cls.aggregate_type},
            "schemaversion": {"const": cls.class_version},
            "data": {"$ref": f"#/components/schemas/{name}"},
        },
    }
    return {
        "name": name,
        "title": name,
        "contentType": CONTENT_TYPE,
        "headers": {
            "type": "object",
            "properties": {"content-type": {"const": CONTENT_TYPE}},
        },
        "payload": {"allOf": [{"$ref": "#/components/schemas/CloudEvent"}, specific]},
        "bindings": {
            "kafka": {"key": {"type": "string", "format": "uuid"}, "bindingVersion": "0.5.0"}
        },
    }


def _envelope_schema() -> dict[str, Any]:
    """CloudEvents 1.0 attributes plus this system's extension attributes."""
    string = {"type": "string"}
    optional_string = {"type": ["string", "null"]}
    properties: dict[str, Any] = {
        "specversion": {"const": "1.0"},
        "id": {**string, "description": "<aggregate id>/<aggregate version>"},
        "source": {"const": SOURCE},
        "type": {**string, "description": "the event's wire name"},
        "subject": {**string, "format": "uuid", "description": "the aggregate id"},
        "time": {**string, "format": "date-time", "description": "when it occurred"},
        "datacontenttype": {"const": "application/json"},
        "data": {"type": "object"},
        "aggregatetype": {"enum": sorted(TOPICS)},
        "aggregateversion": {"type": "integer", "minimum": 1},
        "position": {"type": "integer", "minimum": 1, "description": "global log position"},
        "schemaversion": {"type": "integer", "minimum": 1},
        "actor": string,
        "actordepartment": string,
        "correlationid": string,
        "causationid": optional_string,
    }
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(set(properties) - {"causationid"}),
    }


def _embedded(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in ("$schema", "$id")}


def contract_files() -> dict[str, str]:
    """File name -> content of every generated contract file (deterministic)."""
    files = {f"{name}.schema.json": _dump(s) for name, s in json_schemas().items()}
    files["asyncapi.json"] = _dump(asyncapi())
    return files


def generate(directory: Path) -> list[Path]:
    """Write the contract files into `directory`, removing schemas of vanished types."""
    directory.mkdir(parents=True, exist_ok=True)
    files = contract_files()
    for stale in directory.glob("*.schema.json"):
        if stale.name not in files:
            stale.unlink()
    written = []
    for name, content in sorted(files.items()):
        path = directory / name
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


write_contract = generate


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def breaking_changes(
    released: dict[str, dict[str, Any]], current: dict[str, dict[str, Any]]
) -> list[str]:
    """What in `current` would break a subscriber of `released` (empty: compatible).

    Breaking: a type disappears, a field disappears, a field's type changes, a field
    becomes required (old stored events lack it, so replays would fail to decode), or a
    field becomes personal (sealed) without a new schema version: a subscriber that read
    it as text must be able to tell from `schemaversion` that it now holds ciphertext.
    """
    problems: list[str] = []
    for name, old in sorted(released.items()):
        new = current.get(name)
        if new is None:
            problems.append(f"{name}: event type removed")
            continue
        problems.extend(f"{name}: {p}" for p in _field_changes(old, new))
    return problems


def _field_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    problems = []
    for field, old_type in sorted(old_props.items()):
        if field not in new_props:
            problems.append(f"field {field!r} removed")
        elif _shape(old_type) != _shape(new_props[field]):
            problems.append(f"field {field!r} changed type")
    newly_required = set(new.get("required", ())) - set(old.get("required", ()))
    problems.extend(f"field {f!r} became required" for f in sorted(newly_required))
    if new.get("x-schema-version", 1) == old.get("x-schema-version", 1):
        newly_sealed = set(new.get("x-personal-fields", ())) - set(old.get("x-personal-fields", ()))
        problems.extend(f"field {f!r} became personal" for f in sorted(newly_sealed))
    return problems


def _shape(schema: Any) -> Any:
    """A schema without its documentation keys: what a decoder actually checks."""
    if isinstance(schema, dict):
        return {k: _shape(v) for k, v in schema.items() if k not in _DOC_KEYS}
    if isinstance(schema, list):
        return [_shape(v) for v in schema]
    return schema
