"""The AsyncAPI document: current in docs/, valid AsyncAPI 3.0, and true to the code.

tests/schemas/asyncapi-3.0.0.json is the official AsyncAPI 3.0.0 JSON Schema, bundled
(`schemas/3.0.0-without-$id.json` of asyncapi/spec-json-schemas at 7dd3990, Apache-2.0):
no PyPI package ships it, and checking the required fields by hand would check less.
"""

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import jsonschema
import pytest
from jsonschema.protocols import Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from typer.testing import CliRunner

from consumers.settings import ConsumerSettings
from events import (
    EVENT_TYPES,
    ProfileCreated,
    UserDeleted,
    UserRegistered,
    json_schemas,
    to_envelope,
)
from infra.asyncapi_messages import hoisted, kafka_header_names
from infra.dead_letters import DeadLetter, letter_fields
from userbus.asyncapi_command import current_asyncapi_json, topic_defaults
from userbus.cli import app

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "docs" / "asyncapi.json"
ASYNCAPI_SCHEMA = json.loads((ROOT / "tests/schemas/asyncapi-3.0.0.json").read_text())
DOCUMENT_URI = "urn:userbus:asyncapi"
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(current_asyncapi_json())
    return loaded


def test_committed_document_is_current() -> None:
    assert COMMITTED.read_text(encoding="utf-8") == current_asyncapi_json(), (
        "docs/asyncapi.json is out of date: run `userbus events asyncapi --output "
        "docs/asyncapi.json` and commit it"
    )


def test_document_is_valid_asyncapi_3(document: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(ASYNCAPI_SCHEMA)
    problems = [f"{e.json_path}: {e.message}" for e in validator.iter_errors(document)]
    assert problems == []


@pytest.mark.parametrize(
    ("where", "value"),
    [
        (("operations", "relayUserEvents", "action"), "publish"),
        (("channels", "users", "bindings", "kafka", "partitions"), "six"),
        (("servers", "kafka", "protocol"), None),
    ],
)
def test_schema_check_rejects_a_broken_document(
    document: dict[str, Any], where: tuple[str, ...], value: Any
) -> None:
    # Proof that the check above is not vacuous: each of these breaks the AsyncAPI 3 rules.
    broken = copy.deepcopy(document)
    node = broken
    for key in where[:-1]:
        node = node[key]
    if value is None:
        del node[where[-1]]
    else:
        node[where[-1]] = value
    assert not jsonschema.Draft7Validator(ASYNCAPI_SCHEMA).is_valid(broken)


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [ref for value in node.values() for ref in _refs(value)]
    if isinstance(node, list):
        return [ref for item in node for ref in _refs(item)]
    return []


def test_every_reference_resolves_inside_the_document(document: dict[str, Any]) -> None:
    unresolved = []
    for ref in set(_refs(document)):
        node: Any = document
        for part in ref.removeprefix("#/").split("/"):
            node = node.get(part) if isinstance(node, dict) else None
        if not ref.startswith("#/") or node is None:
            unresolved.append(ref)
    assert unresolved == []


def test_schemas_are_those_of_userbus_events_schema(document: dict[str, Any]) -> None:
    assert document["components"]["schemas"] == json_schemas()


def test_each_event_type_is_on_exactly_one_channel(document: dict[str, Any]) -> None:
    channels = document["channels"]
    users = set(channels["users"]["messages"])
    answers = set(channels["profileAnswers"]["messages"])
    assert users | answers == set(EVENT_TYPES)
    assert not users & answers
    assert answers == {"ProfileCreated", "ProfileRejected"}
    assert channels["users"]["address"] == "userbus.users"
    assert channels["usersDeadLetters"]["address"] == "userbus.users.dlq"
    assert channels["profileAnswers"]["address"] == "userbus.profiles"
    assert channels["profileAnswersDeadLetters"]["address"] == "userbus.profiles.dlq"
    assert set(channels["usersDeadLetters"]["messages"]) == {"DeadLetter"}


def _payload_validator(document: dict[str, Any], message: str) -> Validator:
    resource = Resource.from_contents(document, default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, resource)
    schema = {"$ref": f"{DOCUMENT_URI}#/components/messages/{message}/payload"}
    return jsonschema.Draft202012Validator(schema, registry=registry)


def _envelope_json(event: Any) -> Any:
    envelope = to_envelope(event, sequence=1, source="/userbus/auth")
    return json.loads(envelope.model_dump_json())


def test_real_envelopes_fit_their_message_and_not_another(document: dict[str, Any]) -> None:
    registered = UserRegistered(
        user_id=uuid4(), username="alice", email="alice@example.com", role="user",
        registered_at=NOW,
    )  # fmt: skip
    deleted = UserDeleted(user_id=uuid4(), username="bob", deleted_at=NOW)
    answer = ProfileCreated(user_id=uuid4(), created_at=NOW)
    for event in (registered, deleted, answer):
        validator = _payload_validator(document, event.type_name())
        assert list(validator.iter_errors(_envelope_json(event))) == []
    wrong_type = _payload_validator(document, "UserDeleted")
    assert not wrong_type.is_valid(_envelope_json(registered))
    no_data = _envelope_json(deleted)
    del no_data["data"]["username"]
    assert not wrong_type.is_valid(no_data)


def test_kafka_headers_and_key_are_what_the_relay_sends(document: dict[str, Any]) -> None:
    message = document["components"]["messages"]["UserRegistered"]
    assert set(message["headers"]["properties"]) == set(kafka_header_names())
    assert {"content-type", "ce_id", "ce_type", "ce_subject", "ce_sequence"} <= set(
        kafka_header_names()
    )
    assert message["bindings"]["kafka"]["key"]["format"] == "uuid"


def test_dead_letter_attributes_are_what_consumers_store(document: dict[str, Any]) -> None:
    letter = document["components"]["messages"]["DeadLetter"]
    stored = letter_fields(DeadLetter(payload=b"{}", error="boom", group="profiles"))
    assert set(letter["headers"]["properties"]) == set(stored)


def test_topic_layout_is_the_relays_and_the_consumers_default(document: dict[str, Any]) -> None:
    kafka = document["channels"]["users"]["bindings"]["kafka"]
    consumer = ConsumerSettings.model_fields
    assert kafka["partitions"] == consumer["kafka_partitions"].default == 6
    assert kafka["replicas"] == consumer["kafka_replication_factor"].default
    assert kafka["topicConfiguration"]["retention.ms"] == 168 * 3_600_000
    assert topic_defaults().retention_hours == consumer["kafka_retention_hours"].default
    # Nothing creates a dead-letter topic with a layout: the document claims none.
    assert "partitions" not in document["channels"]["usersDeadLetters"]["bindings"]["kafka"]


def test_nested_definitions_become_components() -> None:
    schemas = {
        "A": {"$defs": {"Role": {"enum": ["user"]}}, "properties": {"r": {"$ref": "#/$defs/Role"}}}
    }
    assert hoisted(schemas) == {
        "Role": {"enum": ["user"]},
        "A": {"properties": {"r": {"$ref": "#/components/schemas/Role"}}},
    }
    clash = {**schemas, "B": {"$defs": {"Role": {"enum": ["admin"]}}}}
    with pytest.raises(ValueError, match="Role"):
        hoisted(clash)


def test_command_prints_the_document_or_writes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    printed = runner.invoke(app, ["events", "asyncapi"])
    assert printed.exit_code == 0
    assert printed.stdout == current_asyncapi_json()
    target = tmp_path / "asyncapi.json"
    written = runner.invoke(app, ["events", "asyncapi", "--output", str(target)])
    assert written.exit_code == 0
    assert target.read_text(encoding="utf-8") == current_asyncapi_json()


def test_command_says_why_it_cannot_write(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["events", "asyncapi", "--output", str(tmp_path / "missing" / "asyncapi.json")]
    )
    assert result.exit_code == 1
    assert "cannot write" in result.stderr
