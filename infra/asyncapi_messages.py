"""The messages of the AsyncAPI document: each event type in its CloudEvents envelope.

The schemas are the contract's own (`events.json_schemas`, what `userbus events schema`
prints), so the document cannot drift from the models the producers and consumers validate.
"""

from typing import Any

from events import EVENT_TYPES, Event, json_schemas
from infra.dead_letters import DeadLetter, letter_fields
from infra.kafka.publisher import CONTENT_TYPE, cloudevent_headers
from infra.publishing import PendingEvent

# The version of the AsyncAPI Kafka bindings the document uses (AsyncAPI 3.0 ships 0.5.0).
KAFKA_BINDING_VERSION = "0.5.0"
SCHEMAS = "#/components/schemas/"
MESSAGES = "#/components/messages/"
DEAD_LETTER = "DeadLetter"
USER_ID_KEY = {"type": "string", "format": "uuid", "description": "the user id (`subject`)"}


def component_schemas() -> dict[str, Any]:
    """The envelope's and every event's JSON Schema, with nested definitions made components.

    Pydantic puts a model's nested definitions under `$defs` with `#/$defs/...` references;
    inside an AsyncAPI document those references would point at the document's root, so
    they are moved to `components/schemas` and the references rewritten.
    """
    return hoisted(json_schemas())


def hoisted(schemas: dict[str, Any]) -> dict[str, Any]:
    """`schemas` with each one's `$defs` moved beside it and `#/$defs/` references rewritten."""
    result: dict[str, Any] = {}
    for name, schema in schemas.items():
        schema = dict(schema)
        for def_name, definition in schema.pop("$defs", {}).items():
            if result.get(def_name, definition) != definition:
                raise ValueError(f"two different schemas are called {def_name}")
            result[def_name] = _rewritten(definition)
        result[name] = _rewritten(schema)
    return result


def _rewritten(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            key: SCHEMAS + value.removeprefix("#/$defs/")
            if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/")
            else _rewritten(value)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewritten(item) for item in node]
    return node


def kafka_header_names() -> list[str]:
    """The headers the relay puts on every Kafka record (infra/kafka/publisher.py)."""
    sample = PendingEvent(0, "", "", "", "", "", "", "")
    return [name for name, _ in cloudevent_headers(sample)]


def _event_headers() -> dict[str, Any]:
    properties: dict[str, Any] = {
        name: {"type": "string", "description": f"the envelope's `{name.removeprefix('ce_')}`"}
        for name in kafka_header_names()
    }
    properties["content-type"] = {"const": CONTENT_TYPE}
    properties["ce_specversion"] = {"const": "1.0"}
    return {
        "type": "object",
        "description": "Kafka only (the CloudEvents Kafka binding's `ce_` headers, beside "
        "the structured JSON value). On Redis the entry has no headers: read the envelope.",
        "properties": properties,
    }


def event_message(cls: type[Event]) -> dict[str, Any]:
    """The message of one event type: its envelope, with `type` fixed and `data` its schema."""
    name = cls.type_name()
    summary = (cls.__doc__ or name).strip().splitlines()[0]
    return {
        "name": name,
        "title": name,
        "summary": summary,
        "contentType": CONTENT_TYPE,
        "headers": _event_headers(),
        "payload": {
            "allOf": [
                {"$ref": SCHEMAS + "Envelope"},
                {
                    "type": "object",
                    "properties": {
                        "type": {"const": name},
                        "data": {"$ref": SCHEMAS + name},
                    },
                },
            ]
        },
        "bindings": {"kafka": {"key": USER_ID_KEY, "bindingVersion": KAFKA_BINDING_VERSION}},
    }


def dead_letter_message() -> dict[str, Any]:
    """A message a consumer gave up on, as it was received, with why (infra/dead_letters.py)."""
    sample = DeadLetter(payload=b"", error="", group="")
    described = {
        "error": "why the consumer gave up (the last error)",
        "group": "the consumer group that gave up",
        "origin": "where the message was (a stream entry id, or partition@offset)",
        "failed_at": "when (ISO 8601)",
    }
    properties = {
        name: {"type": "string", "description": described.get(name, name)}
        for name in letter_fields(sample)
    }
    return {
        "name": DEAD_LETTER,
        "title": "Dead letter",
        "summary": "A message a consumer could not apply, kept for `userbus dlq list|retry`.",
        "description": "The payload is the body exactly as received: usually an event's "
        "envelope, but possibly not valid JSON at all (that may be why it is here). On Kafka "
        "the attributes are headers; on Redis they are fields of the entry, beside `__data__`.",
        "headers": {"type": "object", "properties": properties, "required": list(properties)},
        "payload": {"description": "the body as received (any bytes)"},
    }


def messages() -> dict[str, Any]:
    """Every message of the document, keyed by name: each event type, and the dead letter."""
    found = {name: event_message(cls) for name, cls in EVENT_TYPES.items()}
    found[DEAD_LETTER] = dead_letter_message()
    return found
