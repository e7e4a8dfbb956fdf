"""OpenTelemetry spans for the events a consumer settles: optional (`userbus[otel]`), off
unless USERBUS_OTEL_ENABLED=true.

Each span's parent is the event's `traceparent`, so a consumer's work on an event shows in
the trace of the request that caused it. The provider is this process's own, never the
global one, and exports through OTLP/HTTP, configured by the standard OTEL_EXPORTER_OTLP_*
variables (the endpoint defaults to http://localhost:4318).
"""

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from events import Envelope

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter


class EventSpans:
    """Makes one CONSUMER span per settled event, under the event's own trace context."""

    def __init__(self, service_name: str, exporter: "SpanExporter | None" = None) -> None:
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
            from opentelemetry.trace import SpanKind
            from opentelemetry.trace.propagation.tracecontext import (
                TraceContextTextMapPropagator,
            )
        except ImportError as exc:  # the extra is not installed
            raise RuntimeError(
                "USERBUS_OTEL_ENABLED=true needs the otel extra: pip install 'userbus[otel]'"
            ) from exc
        self._provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        if exporter is None:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            self._provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        else:  # a test's in-memory exporter: each span at once
            self._provider.add_span_processor(SimpleSpanProcessor(exporter))
        self._tracer = self._provider.get_tracer("userbus.consumers")
        self._propagator = TraceContextTextMapPropagator()
        self._kind = SpanKind.CONSUMER

    def settled(self, group: str, envelopes: Sequence[Envelope], started_ns: int) -> None:
        """Record a span per event, from when its batch began to settle until now."""
        for envelope in envelopes:
            carrier: dict[str, Any] = {}
            if envelope.traceparent is not None:
                carrier["traceparent"] = envelope.traceparent
                if envelope.tracestate is not None:
                    carrier["tracestate"] = envelope.tracestate
            span = self._tracer.start_span(
                f"{group} settle {envelope.type}",
                context=self._propagator.extract(carrier),
                kind=self._kind,
                start_time=started_ns,
                attributes={
                    "messaging.consumer.group.name": group,
                    "messaging.message.id": str(envelope.id),
                    "cloudevents.event_type": envelope.type,
                    "cloudevents.event_subject": envelope.subject,
                },
            )
            span.end()

    def close(self) -> None:
        """Export what is still buffered, then stop."""
        self._provider.shutdown()
