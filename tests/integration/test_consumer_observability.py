"""A consumer's spans (OpenTelemetry, in memory), log records and probes on real Redis."""

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from uuid import uuid4

import httpx
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from consumers.app import create_consumer_app
from consumers.consumer import ProjectionConsumer
from consumers.observed import observing
from consumers.settings import ConsumerSettings
from consumers.settled import SettledEvents
from downstream_examples.profiles.projection import ProfileProjection
from events import Envelope, UserRegistered, to_envelope
from infra.observability.otel import EventSpans
from tests.conftest import free_port
from tests.integration.helpers import eventually, publish_raw
from tests.integration.test_api_observability import TRACEPARENT, sample

pytestmark = [pytest.mark.integration, pytest.mark.redis]


def registered(traceparent: str | None) -> Envelope:
    """A UserRegistered envelope of a new user, with the given trace context."""
    name = f"user_{uuid4().hex[:8]}"
    event = UserRegistered(
        user_id=uuid4(),
        username=name,
        email=f"{name}@example.com",
        role="user",
        registered_at=datetime.now(UTC),
    )
    return to_envelope(event, sequence=1, source="/test", traceparent=traceparent, tracestate="v=1")


@pytest.fixture
async def consumer(redis_consumer_settings: ConsumerSettings) -> AsyncIterator[ProjectionConsumer]:
    """A started profile consumer on this test's stream."""
    consumer = create_consumer_app(redis_consumer_settings, ProfileProjection())
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


def test_spans_are_off_by_default(redis_consumer_settings: ConsumerSettings) -> None:
    assert redis_consumer_settings.otel_enabled is False
    assert SettledEvents.of("g", otel=False).spans is None


async def test_with_spans_on_each_settled_event_has_a_span_in_its_requests_trace(
    redis_consumer_settings: ConsumerSettings,
) -> None:
    settings = redis_consumer_settings.model_copy(update={"otel_enabled": True})
    consumer = create_consumer_app(settings, ProfileProjection())
    assert consumer.settled.spans is not None  # on, as configured (exporting over OTLP)
    consumer.settled.close()
    memory = InMemorySpanExporter()
    consumer.settled = SettledEvents(consumer.group, EventSpans(consumer.group, memory))
    await consumer.start()
    try:
        traced, untraced = registered(TRACEPARENT), registered(None)
        await publish_raw(
            settings.broker_url,
            settings.stream,
            [e.model_dump_json().encode() for e in (traced, untraced)],
        )

        async def both_spanned() -> bool:
            return len(memory.get_finished_spans()) == 2

        await eventually(both_spanned)
    finally:
        await consumer.stop()
    spans = {span.attributes["messaging.message.id"]: span for span in memory.get_finished_spans()}
    child = spans[str(traced.id)]
    assert child.kind is SpanKind.CONSUMER
    assert f"{child.context.trace_id:032x}" == TRACEPARENT[3:35]
    assert child.parent is not None
    assert f"{child.parent.span_id:016x}" == TRACEPARENT[36:52]
    assert child.attributes["cloudevents.event_type"] == "UserRegistered"
    root = spans[str(untraced.id)]
    assert root.parent is None  # no trace came with it: a trace of its own


async def test_a_settled_event_is_logged_with_its_traceparent(
    consumer: ProjectionConsumer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="consumers.consumer")
    envelope = registered(TRACEPARENT)
    settings = consumer.settings
    await publish_raw(settings.broker_url, settings.stream, [envelope.model_dump_json().encode()])

    async def logged() -> bool:
        return any(getattr(r, "event_id", None) == str(envelope.id) for r in caplog.records)

    await eventually(logged)
    record = next(r for r in caplog.records if getattr(r, "event_id", None) == str(envelope.id))
    assert record.traceparent == TRACEPARENT  # type: ignore[attr-defined]
    assert record.event_type == "UserRegistered"  # type: ignore[attr-defined]


async def test_the_consumers_probes_and_metrics_on_its_own_port(
    consumer_settings: ConsumerSettings,
) -> None:
    port = free_port()
    settings = consumer_settings.model_copy(
        update={"metrics_port": port, "metrics_host": "127.0.0.1", "metrics_sample_seconds": 0.1}
    )
    consumer = create_consumer_app(settings, ProfileProjection())
    await consumer.start()
    stop = asyncio.Event()
    try:
        async with (
            observing(consumer, stop),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client,
        ):
            envelope = registered(None)
            await publish_raw(
                settings.broker_url, settings.stream, [envelope.model_dump_json().encode()]
            )

            async def applied() -> bool:
                page = (await client.get("/metrics")).text
                return (
                    sample(page, "userbus_consumer_applied_events_total") == 1
                    and "userbus_consumer_lag_stream{" in page
                    and sample(page, "userbus_consumer_lag_stream") == 0
                )

            await eventually(applied, timeout=30)
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"database": "ok", "broker": "ok", "loop": "ok"}
            assert (await client.get("/livez")).json() == {"status": "live"}
            # No event log configured: the lag behind it is not known, and not made up.
            page = (await client.get("/metrics")).text
            assert "userbus_consumer_lag_log{" not in page
            stop.set()
    finally:
        await consumer.stop()
