"""The broker port, one contract for all: each broker subclass runs it on the real broker.

`BrokerContract` is no test class of its own (pytest collects only `Test*`): it runs once
per subclass, on the Redis of this machine and on the Tansu Kafka the tests start.
"""

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from events import Envelope, UserRegistered, to_envelope
from infra.brokers import Broker, broker_for
from infra.dead_letters import DeadLetter
from infra.publishing import PendingEvent, TopicLayout
from infra.reading import GroupReader, ReaderOptions
from tests.conftest import KAFKA_PARTITIONS, KAFKA_SESSION_TIMEOUT_MS
from tests.integration.helpers import eventually

pytestmark = pytest.mark.integration

LAYOUT = TopicLayout(partitions=KAFKA_PARTITIONS)


def registered(user_id: uuid.UUID, sequence: int) -> Envelope:
    """A registration envelope of one user (one user: one Kafka partition, in order)."""
    name = f"user_{uuid.uuid4().hex[:8]}"
    event = UserRegistered(
        user_id=user_id,
        username=name,
        email=f"{name}@example.com",
        role="user",
        registered_at=datetime(2026, 1, 1, tzinfo=UTC),
    )
    return to_envelope(event, sequence=sequence, source="/contract")


def pending(envelope: Envelope, outbox_id: int) -> PendingEvent:
    """The envelope as the relay hands it to a publisher."""
    return PendingEvent(
        outbox_id=outbox_id,
        subject=str(envelope.user_id),
        payload=envelope.model_dump_json(),
        event_id=str(envelope.id),
        type=envelope.type,
        source=envelope.source,
        time=envelope.model_dump(mode="json")["time"],
        sequence=str(envelope.sequence),
    )


async def _nothing_to_recover(bodies: Any, origins: Any) -> None:
    raise AssertionError("a new group member has nothing of its own to recover")


async def read_all(reader: GroupReader[Any], count: int) -> list[Any]:
    """Fetch and acknowledge batches until `count` bodies have come; fail after 30 s."""
    bodies: list[Any] = []

    async def fetch_until_done() -> None:
        while len(bodies) < count:
            batch = await reader.fetch()
            if batch is not None:
                bodies.extend(batch.bodies)
                await reader.acknowledge(batch.receipt)

    await asyncio.wait_for(fetch_until_done(), timeout=30)
    return bodies


async def publish(broker: Broker, stream: str, envelopes: list[Envelope]) -> None:
    """Publish the envelopes in one batch, as the relay does."""
    publisher = broker.publisher(stream, LAYOUT, idempotent=False)
    await publisher.connect()
    try:
        await publisher.publish([pending(e, i) for i, e in enumerate(envelopes, 1)])
    finally:
        await publisher.close()


async def read_as_member(broker: Broker, stream: str, group: str, count: int) -> list[Any]:
    """Join `group` as the member `member`, read and acknowledge `count` bodies, leave."""
    options = ReaderOptions(
        stream, group, "member", layout=LAYOUT, session_timeout_ms=KAFKA_SESSION_TIMEOUT_MS
    )
    reader = broker.group_reader(options)
    await reader.connect(_nothing_to_recover, asyncio.Event())
    try:
        return await read_all(reader, count)
    finally:
        await reader.close()


class BrokerContract:
    """What every broker does for the services; a subclass names the broker by its URL."""

    @pytest.fixture
    def url(self) -> str:
        """The broker's URL (each subclass gives its own)."""
        raise NotImplementedError

    async def test_a_published_batch_reaches_a_group_in_order_and_stays_acknowledged(
        self, url: str, stream: str
    ) -> None:
        broker = broker_for(url)
        user = uuid.uuid4()
        envelopes = [registered(user, sequence) for sequence in range(1, 7)]
        await publish(broker, stream, envelopes[:5])
        group = f"contract-{uuid.uuid4().hex[:8]}"
        bodies = await read_as_member(broker, stream, group, 5)
        assert [Envelope.model_validate_json(body) for body in bodies] == envelopes[:5]
        # The member comes back: what it acknowledged is neither its own to recover nor
        # delivered again, so the next thing it reads is the next event.
        await publish(broker, stream, envelopes[5:])
        [body] = await read_as_member(broker, stream, group, 1)
        assert Envelope.model_validate_json(body) == envelopes[5]

    async def test_status_counts_the_stream_and_a_group_that_caught_up(
        self, url: str, stream: str
    ) -> None:
        broker = broker_for(url)
        user = uuid.uuid4()
        # One event a batch: Tansu (the tests' Kafka) counts record batches, not records,
        # in the end offsets that the status is computed from.
        for sequence in range(1, 4):
            await publish(broker, stream, [registered(user, sequence)])
        group = f"contract-{uuid.uuid4().hex[:8]}"
        await read_as_member(broker, stream, group, 3)

        async def settled() -> bool:
            status = await broker.status(stream, [group])
            lags = {lag.group: (lag.behind, lag.unacknowledged) for lag in status.groups}
            return (status.length, lags.get(group), status.dead_letters) == (3, (0, 0), 0)

        await eventually(settled, timeout=30)

    async def test_dead_letters_are_kept_read_back_counted_and_retried(
        self, url: str, stream: str
    ) -> None:
        broker = broker_for(url)
        await broker.ensure(stream, LAYOUT)
        assert await broker.ensure(stream, LAYOUT) is False  # already there
        back = registered(uuid.uuid4(), 1)
        queue = broker.dead_letters(stream)
        try:
            await queue.send(
                [
                    DeadLetter(back.model_dump_json().encode(), "boom", "profiles", "here"),
                    DeadLetter(b"not an event", "not an event: no JSON", "audit"),
                ]
            )
            # In stream order on Redis; on Kafka in order per partition of the topic.
            letters = sorted([x async for x in queue.read()], key=lambda x: x.error)
            assert [(x.error, x.group, x.origin) for x in letters] == [
                ("boom", "profiles", "here"),
                ("not an event: no JSON", "audit", ""),
            ]
            assert letters[1].payload == b"not an event"
            assert all(letter.letter_id for letter in letters)

            async def counted() -> bool:
                return (await broker.status(stream, [])).dead_letters == 2

            await eventually(counted, timeout=30)
            assert await queue.retry([letters[0].letter_id]) == 1
        finally:
            await queue.close()
        history = [
            envelope async for batch in broker.history(stream).batches(100) for envelope in batch
        ]
        assert history == [back]


class TestRedisBroker(BrokerContract):
    """The contract on Redis Streams."""

    @pytest.fixture
    def url(self, redis_url: str) -> str:
        """The Redis server of this machine."""
        return redis_url


@pytest.mark.kafka
class TestKafkaBroker(BrokerContract):
    """The contract on Kafka (the Tansu broker the tests start)."""

    @pytest.fixture
    def url(self, kafka_url: str) -> str:
        """The session's Tansu broker."""
        return kafka_url
