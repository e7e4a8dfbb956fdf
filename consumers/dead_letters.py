"""Dead letters: messages a consumer gave up on, kept with their error for a person to look at.

They go to `<stream>.dlq` (a Redis Stream or a Kafka topic beside the events), with the
original body, the error, the consumer group and where the message came from.
`userbus dlq list` shows them; `userbus dlq retry` puts them back on the stream, where
every group receives them again (and those that had applied them absorb the duplicate).
"""

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import redis.asyncio as redis

from events import dead_letter_stream
from events.brokers import broker_kind, kafka_servers
from events.wire import STREAM_FIELD


@dataclass(frozen=True)
class DeadLetter:
    """A message given up on: its body as received, and why."""

    payload: bytes
    error: str
    group: str
    origin: str = ""
    failed_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    # Where the dead letter itself sits (a stream entry id or partition@offset), once read.
    letter_id: str = ""


class DeadLetterQueue(Protocol):
    """Where dead letters go, and how they are read back and retried."""

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Store the letters."""
        ...

    def read(self) -> AsyncIterator[DeadLetter]:
        """Every stored letter, oldest first."""
        ...

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """Put the letters (all, or those named) back on the stream; how many."""
        ...

    async def close(self) -> None:
        """Release the connection."""
        ...


def body_bytes(body: Any) -> bytes:
    """A decoded message body as bytes again (for a dead letter)."""
    if isinstance(body, bytes):
        return body
    if isinstance(body, str):
        return body.encode()
    return json.dumps(body).encode()


class RedisDeadLetters:
    """Dead letters in the Redis Stream `<stream>.dlq`."""

    def __init__(self, url: str, stream: str) -> None:
        self._client = redis.Redis.from_url(url)
        self._stream = stream
        self._dlq = dead_letter_stream(stream)

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """XADD each letter with its error and origin."""
        async with self._client.pipeline(transaction=False) as pipe:
            for letter in letters:
                pipe.xadd(
                    self._dlq,
                    {
                        STREAM_FIELD: letter.payload,
                        "error": letter.error,
                        "group": letter.group,
                        "origin": letter.origin,
                        "failed_at": letter.failed_at.isoformat(),
                    },
                )
            await pipe.execute()

    async def read(self) -> AsyncIterator[DeadLetter]:
        """The letters in stream order."""
        start = "-"
        while entries := await _xrange(self._client, self._dlq, start):
            for entry_id, fields in entries:
                yield _letter(entry_id.decode(), fields)
            start = "(" + entries[-1][0].decode()

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """XADD the bodies back to the stream and remove those letters from the queue."""
        wanted = set(letter_ids) if letter_ids is not None else None
        letters = [
            letter async for letter in self.read() if wanted is None or letter.letter_id in wanted
        ]
        for letter in letters:
            # Back first, then removed: a crash in between leaves a duplicate, not a loss.
            await self._client.xadd(self._stream, {STREAM_FIELD: letter.payload})
            await self._client.xdel(self._dlq, letter.letter_id)
        return len(letters)

    async def close(self) -> None:
        """Close the connection."""
        await self._client.aclose()


class KafkaDeadLetters:
    """Dead letters in the Kafka topic `<topic>.dlq`.

    Kafka cannot delete a record: retrying all letters re-publishes them and remembers how
    far it got in the consumer group `userbus-dlq-retry`, so each is retried once. Retrying
    chosen letters re-publishes just those and leaves that mark where it was, so a later
    full retry sends them again (consumers absorb the duplicate) rather than skip others.
    """

    RETRY_GROUP = "userbus-dlq-retry"

    def __init__(self, url: str, topic: str) -> None:
        self._servers = kafka_servers(url)
        self._topic = topic
        self._dlq = dead_letter_stream(topic)
        self._producer: Any = None

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce each letter, its error and origin in headers; wait for the acks."""
        producer = await self._started_producer()
        for letter in letters:
            headers = [
                ("error", letter.error.encode()),
                ("group", letter.group.encode()),
                ("origin", letter.origin.encode()),
                ("failed_at", letter.failed_at.isoformat().encode()),
            ]
            await producer.send_and_wait(self._dlq, letter.payload, headers=headers)

    async def read(self) -> AsyncIterator[DeadLetter]:
        """The letters of every partition, up to where the topic ended when reading began."""
        from consumers.sources import read_topic

        async for records in read_topic(self._servers, self._dlq, 500):
            for record in records:
                yield _kafka_letter(record)

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """Re-publish the letters not retried before (all, or those named), then commit."""
        from aiokafka import AIOKafkaConsumer

        from consumers.sources import read_to_high_watermarks

        producer = await self._started_producer()
        consumer = AIOKafkaConsumer(
            self._dlq,
            bootstrap_servers=self._servers,
            group_id=self.RETRY_GROUP,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        await consumer.start()
        count = 0
        try:
            assigned = await _joined(consumer)
            # Back to where the last retry stopped: whatever the join fetched is read again.
            for tp in assigned:
                committed = await consumer.committed(tp)
                if committed is None:
                    await consumer.seek_to_beginning(tp)
                else:
                    consumer.seek(tp, committed)
            async for records in read_to_high_watermarks(consumer, assigned, 500):
                for record in records:
                    letter = _kafka_letter(record)
                    if letter_ids is None or letter.letter_id in letter_ids:
                        await producer.send_and_wait(self._topic, letter.payload, key=record.key)
                        count += 1
            if letter_ids is None:
                await consumer.commit()
        finally:
            await consumer.stop()
        return count

    async def close(self) -> None:
        """Close the producer."""
        if self._producer is not None:
            await self._producer.stop()

    async def _started_producer(self) -> Any:
        if self._producer is None:
            from aiokafka import AIOKafkaProducer

            self._producer = AIOKafkaProducer(bootstrap_servers=self._servers, acks="all")
            await self._producer.start()
        return self._producer


async def _joined(consumer: Any, timeout: float = 60.0) -> list[Any]:
    # A group member has no partitions until the group's join completes (seconds).
    deadline = asyncio.get_running_loop().time() + timeout
    while not consumer.assignment():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no partitions assigned to the dead-letter retry group")
        await consumer.getmany(timeout_ms=200)
    return list(consumer.assignment())


def dead_letters_for(broker_url: str, stream: str) -> DeadLetterQueue:
    """The dead-letter queue beside the configured stream or topic."""
    if broker_kind(broker_url) == "kafka":
        return KafkaDeadLetters(broker_url, stream)
    return RedisDeadLetters(broker_url, stream)


async def _xrange(client: redis.Redis, stream: str, start: str) -> list[Any]:
    entries: Any = await client.xrange(stream, min=start, count=500)
    return list(entries or [])


def _letter(entry_id: str, fields: dict[bytes, bytes]) -> DeadLetter:
    def text(name: str) -> str:
        return fields.get(name.encode(), b"").decode("utf-8", "replace")

    return DeadLetter(
        payload=fields.get(STREAM_FIELD.encode(), b""),
        error=text("error"),
        group=text("group"),
        origin=text("origin"),
        failed_at=datetime.fromisoformat(text("failed_at") or datetime.now(UTC).isoformat()),
        letter_id=entry_id,
    )


def _kafka_letter(record: Any) -> DeadLetter:
    headers = {key: value.decode("utf-8", "replace") for key, value in record.headers or ()}
    return DeadLetter(
        payload=record.value or b"",
        error=headers.get("error", ""),
        group=headers.get("group", ""),
        origin=headers.get("origin", ""),
        failed_at=datetime.fromisoformat(headers.get("failed_at") or datetime.now(UTC).isoformat()),
        letter_id=f"{record.partition}@{record.offset}",
    )
