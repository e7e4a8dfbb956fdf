"""Helpers of the integration tests: an in-process API client, stream reading, waiting."""

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from auth.bootstrap import Overrides
from auth.main import create_app
from auth.settings import AuthSettings
from infra.brokers import broker_for, broker_kind
from infra.kafka.history import read_to_high_watermarks
from infra.kafka.urls import kafka_servers
from infra.redis.wire import STREAM_FIELD


@asynccontextmanager
async def api_client(
    settings: AuthSettings, overrides: Overrides | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app (lifespan included), without a socket."""
    app = create_app(settings, overrides or Overrides())
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://userbus") as client:
            yield client


async def eventually(
    check: Callable[[], Awaitable[bool]], *, timeout: float = 10.0, interval: float = 0.02
) -> None:
    """Wait until `check()` is true; fail the test after `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)


async def register(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> dict[str, Any]:
    """Register a user through the API and return its body."""
    response = await client.post(
        "/users",
        json={"username": username, "email": f"{username}@example.com", "password": password},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def login(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> str:
    """Log in through the API and return the access token."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


async def login_pair(
    client: httpx.AsyncClient, username: str, password: str = "a long passphrase"
) -> dict[str, Any]:
    """Log in and return the whole token response (access and refresh token)."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    """The Authorization header for an access token."""
    return {"Authorization": f"Bearer {token}"}


async def broker_events(broker_url: str, stream: str) -> list[dict[str, Any]]:
    """Every envelope on the stream or topic: Redis in stream order, Kafka by partition."""
    source = broker_for(broker_url).history(stream)
    events: list[dict[str, Any]] = []
    async for batch in source.batches(1000):
        events += [envelope.model_dump(mode="json") for envelope in batch]
    return events


async def publish_raw(broker_url: str, stream: str, payloads: Sequence[bytes]) -> None:
    """Append raw message bodies (envelopes or garbage) as the relay would, in order."""
    if broker_kind(broker_url) == "redis":
        client = redis.Redis.from_url(broker_url)
        try:
            for payload in payloads:
                await client.xadd(stream, {STREAM_FIELD: payload})
        finally:
            await client.aclose()
        return
    producer = AIOKafkaProducer(bootstrap_servers=kafka_servers(broker_url))
    await producer.start()
    try:
        for payload in payloads:
            # Keyed like the relay: by subject when there is one (so one user, one partition).
            try:
                key = json.loads(payload).get("subject", "").encode() or None
            except (ValueError, AttributeError):
                key = None
            await producer.send_and_wait(stream, payload, key=key)
    finally:
        await producer.stop()


async def unacknowledged(broker_url: str, stream: str, group: str) -> int:
    """Messages the group has received but not acknowledged (Redis) or not committed (Kafka)."""
    if broker_kind(broker_url) == "redis":
        client = redis.Redis.from_url(broker_url)
        try:
            return int((await client.xpending(stream, group))["pending"])
        finally:
            await client.aclose()
    servers = kafka_servers(broker_url)
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    consumer = AIOKafkaConsumer(bootstrap_servers=servers, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(stream, p) for p in consumer.partitions_for_topic(stream) or ()
        ]
        if not partitions:
            return 0
        # Partitions named: Tansu cannot answer an OffsetFetch for "all partitions".
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends: dict[TopicPartition, int] = {}
        async for records in read_to_high_watermarks(consumer, partitions, 1000):
            for record in records:
                tp = TopicPartition(record.topic, record.partition)
                ends[tp] = max(ends.get(tp, 0), record.offset + 1)
        done = {tp: meta.offset for tp, meta in committed.items() if tp.topic == stream}
        return sum(end - max(done.get(tp, 0), 0) for tp, end in ends.items())
    finally:
        await consumer.stop()
        await admin.close()
