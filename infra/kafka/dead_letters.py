"""Dead letters in the Kafka topic `<topic>.dlq`, beside the events."""

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from events import dead_letter_stream
from infra.dead_letters import DeadLetter, letter_fields, stored_letter
from infra.kafka.admin import ensure_topic
from infra.kafka.history import read_to_high_watermarks, read_topic
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.publishing import TopicLayout


class KafkaDeadLetters:
    """Dead letters in the Kafka topic `<topic>.dlq`: the body as the value, why in headers.

    Kafka cannot delete a record: retrying all letters re-publishes them and remembers how
    far it got in the consumer group `userbus-dlq-retry`, so each is retried once. Retrying
    chosen letters re-publishes just those and leaves that mark where it was, so a later
    full retry sends them again (consumers absorb the duplicate) rather than skip others.
    """

    RETRY_GROUP = "userbus-dlq-retry"

    def __init__(
        self,
        servers: list[str],
        topic: str,
        security: KafkaSecurity = PLAINTEXT,
        layout: TopicLayout | None = None,
    ) -> None:
        self._servers = servers
        self._security = security
        self._topic = topic
        self._dlq = dead_letter_stream(topic)
        # The events topic's layout: a cluster that creates no topic on first use would
        # otherwise time out the first letter, and the letters keep the events' retention,
        # so an erased user's payload leaves the dead letters when it leaves the topic.
        self._layout = layout or TopicLayout()
        self._producer: AIOKafkaProducer | None = None

    async def send(self, letters: Sequence[DeadLetter]) -> None:
        """Produce each letter, its error and origin in headers; wait for the acks."""
        producer = await self._started_producer()
        for letter in letters:
            headers = [(name, value.encode()) for name, value in letter_fields(letter).items()]
            await producer.send_and_wait(self._dlq, letter.payload, headers=headers)

    async def read(self) -> AsyncIterator[DeadLetter]:
        """The letters of every partition, up to where the topic ended when reading began."""
        async for records in read_topic(self._servers, self._dlq, 500, security=self._security):
            for record in records:
                yield _letter(record)

    async def retry(self, letter_ids: Sequence[str] | None = None) -> int:
        """Re-publish the letters not retried before (all, or those named), then commit."""
        producer = await self._started_producer()
        consumer = AIOKafkaConsumer(
            self._dlq,
            **client_options(self._servers, self._security),
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
                    letter = _letter(record)
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

    async def _started_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await ensure_topic(self._servers, self._dlq, self._layout, self._security)
            self._producer = AIOKafkaProducer(
                **client_options(self._servers, self._security), acks="all"
            )
            await self._producer.start()
        return self._producer


async def _joined(consumer: AIOKafkaConsumer, timeout: float = 60.0) -> list[Any]:
    # A group member has no partitions until the group's join completes (seconds).
    deadline = asyncio.get_running_loop().time() + timeout
    while not consumer.assignment():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("no partitions assigned to the dead-letter retry group")
        await consumer.getmany(timeout_ms=200)
    return list(consumer.assignment())


def _letter(record: Any) -> DeadLetter:
    headers = {key: value.decode("utf-8", "replace") for key, value in record.headers or ()}
    payload: bytes = record.value or b""
    return stored_letter(payload, headers, f"{record.partition}@{record.offset}")
