"""Kafka TLS and SASL settings: checked when read, and handed to every aiokafka client."""

import ast
import ssl
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from pydantic import ValidationError

from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from producers.settings import RelaySettings
from tests.tls import make_certificates

ROOT = Path(__file__).resolve().parents[2]
DB = "postgresql://u@db/x"


def test_plaintext_adds_nothing_to_the_servers() -> None:
    assert client_options(["k1:9092"], PLAINTEXT) == {"bootstrap_servers": ["k1:9092"]}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_sasl_reaches_the_clients_config(mechanism: str) -> None:
    settings = RelaySettings(
        database_url=DB,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username="relay",
        kafka_sasl_password="a-real-secret",
    )
    options = client_options(["k1:9092"], settings.kafka_security)
    # Built, not started: the client's own fields are what it would connect with.
    consumer = AIOKafkaConsumer(**options)
    admin = AIOKafkaAdminClient(**options)

    for client in (consumer._client, admin._client):
        assert client._security_protocol == "SASL_SSL"
        assert client._sasl_mechanism == mechanism
        assert client._sasl_plain_username == "relay"
        assert client._sasl_plain_password == "a-real-secret"
        assert isinstance(client._ssl_context, ssl.SSLContext)
    await admin.close()


def test_the_ca_and_client_certificate_make_the_tls_context(tmp_path: Path) -> None:
    certificates = make_certificates(tmp_path)
    security = KafkaSecurity(
        "SSL", certificates.ca, certificates.client_cert, certificates.client_key
    )

    context = client_options(["k1:9093"], security)["ssl_context"]

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "userbus test CA"),),)
    ]


def test_the_password_stays_out_of_the_repr() -> None:
    security = KafkaSecurity("SASL_PLAINTEXT", None, None, None, "PLAIN", "u", "hunter2-x")
    assert "hunter2-x" not in repr(security)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"kafka_security_protocol": "SASL_SSL"}, "needs a SASL mechanism, username and password"),
        (
            {"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN"},
            "needs a SASL mechanism, username and password",
        ),
        ({"kafka_sasl_username": "u"}, "SASL settings need SASL_SSL or SASL_PLAINTEXT"),
        ({"kafka_ssl_cafile": "/ca.pem"}, "TLS files need the protocol SSL or SASL_SSL"),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "/k.pem"},
            "needs its certificate",
        ),
        ({"kafka_security_protocol": "TLS"}, "PLAINTEXT"),
        ({"kafka_sasl_mechanism": "GSSAPI"}, "SCRAM-SHA-512"),
    ],
)
def test_a_half_configured_connection_is_refused_at_start(
    fields: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValidationError, match=problem):
        RelaySettings(database_url=DB, **fields)


def _client_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in {"AIOKafkaProducer", "AIOKafkaConsumer", "AIOKafkaAdminClient"}
    ]


def test_every_client_the_project_builds_takes_the_connection_options() -> None:
    calls = {
        path: _client_calls(path)
        for package in ("infra", "producers", "consumers", "auth", "userbus")
        for path in (ROOT / package).rglob("*.py")
    }
    built = [(path, call) for path, found in calls.items() for call in found]
    assert len(built) >= 10
    for path, call in built:
        spread = [k.value for k in call.keywords if k.arg is None]
        assert any(
            isinstance(v, ast.Call) and getattr(v.func, "id", "") == "client_options"
            for v in spread
        ), f"{path.relative_to(ROOT)}:{call.lineno} builds a Kafka client without client_options"
        assert "bootstrap_servers" not in {k.arg for k in call.keywords}
