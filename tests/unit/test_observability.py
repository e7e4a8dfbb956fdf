"""Trace context, log lines, the envelope's trace attributes and the probe server, in memory."""

import asyncio
import json
import logging
import sys
from datetime import UTC, datetime
from uuid import uuid4

import pytest
from prometheus_client import CollectorRegistry, Counter

from events import Envelope, UserRegistered, envelope_from_json, json_schemas, to_envelope
from events.tracing import valid_traceparent, valid_tracestate
from infra.observability.logs import ContextFilter, JsonFormatter, envelope_fields
from infra.observability.otel import EventSpans
from infra.observability.probe_server import ProbeServer
from infra.observability.probes import Heartbeat, Probes, broker_check
from infra.observability.trace_context import (
    current_request_id,
    current_trace,
    request_id_from,
    trace_context,
)

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        (TRACEPARENT, TRACEPARENT),
        (TRACEPARENT.upper(), TRACEPARENT),  # hex is read case-insensitively, kept lower
        (f" {TRACEPARENT} ", TRACEPARENT),
        # A later version may append fields; a version-00 reader keeps them.
        (f"01-{TRACEPARENT[3:]}-more", f"01-{TRACEPARENT[3:]}-more"),
        ("", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", None),
        ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", None),
        ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", None),
        ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        (f"{TRACEPARENT}-tail", None),
        ("0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None),
        (None, None),
        (42, None),
    ],
)
def test_a_traceparent_is_kept_only_when_well_formed(given: object, kept: str | None) -> None:
    assert valid_traceparent(given) == kept


def test_a_tracestate_is_printable_ascii_of_512_characters_at_most() -> None:
    assert valid_tracestate("a=1,b=2") == "a=1,b=2"
    assert valid_tracestate("x" * 512) == "x" * 512
    assert valid_tracestate("x" * 513) is None
    assert valid_tracestate("a=\n") is None
    assert valid_tracestate("a=\x01") is None
    assert valid_tracestate("") is None


def test_a_tracestate_without_a_traceparent_is_no_trace_context() -> None:
    assert trace_context(None, "a=1") is None
    assert trace_context("nonsense", "a=1") is None
    context = trace_context(TRACEPARENT, "a=\x00")
    assert context is not None
    assert (context.traceparent, context.tracestate, context.trace_id) == (
        TRACEPARENT, None, "4bf92f3577b34da6a3ce929d0e0e4736"
    )  # fmt: skip


def test_a_request_id_is_the_callers_when_well_formed_else_new() -> None:
    assert request_id_from("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, "", "a b", "x" * 129, "é", "a\nb"):
        made = request_id_from(bad)
        assert len(made) == 32
        assert made != bad


def _envelope(**trace: str | None) -> Envelope:
    event = UserRegistered(
        user_id=uuid4(),
        username="ann",
        email="ann@example.com",
        role="user",
        registered_at=datetime.now(UTC),
    )
    return to_envelope(event, sequence=1, source="test", time=datetime.now(UTC), **trace)


def test_an_envelope_carries_its_trace_context_and_leaves_it_out_when_none() -> None:
    traced = _envelope(traceparent=TRACEPARENT, tracestate="v=1")
    dumped = json.loads(traced.model_dump_json())
    assert (dumped["traceparent"], dumped["tracestate"]) == (TRACEPARENT, "v=1")
    assert envelope_from_json(traced.model_dump_json()) == traced
    plain = json.loads(_envelope().model_dump_json())
    assert "traceparent" not in plain
    assert "tracestate" not in plain
    # A tracestate alone means nothing (W3C: it goes with a traceparent).
    assert "tracestate" not in json.loads(_envelope(tracestate="v=1").model_dump_json())


def test_an_envelope_with_a_malformed_traceparent_is_still_read_without_it() -> None:
    raw = json.loads(_envelope().model_dump_json())
    raw |= {"traceparent": "not one", "tracestate": "\x01"}
    envelope = envelope_from_json(json.dumps(raw))
    assert envelope.traceparent is None
    assert envelope.tracestate is None


def test_the_envelope_schema_describes_the_trace_attributes_as_optional_strings() -> None:
    schema = json_schemas()["Envelope"]
    assert "traceparent" not in schema["required"]
    assert schema["properties"]["traceparent"]["type"] == "string"
    assert schema["properties"]["tracestate"]["type"] == "string"


def _record(message: str = "hello", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("some.logger", logging.WARNING, __file__, 1, message, (), None)
    for key, value in extra.items():
        setattr(record, key, value)
    ContextFilter().filter(record)
    return record


def test_a_json_line_has_time_level_logger_message_and_the_request_context() -> None:
    id_token = current_request_id.set("req-1")
    trace_token = current_trace.set(trace_context(TRACEPARENT))
    try:
        line = json.loads(JsonFormatter().format(_record("a %s", extra_arg=1)))
    finally:
        current_trace.reset(trace_token)
        current_request_id.reset(id_token)
    assert line.pop("time").endswith("+00:00")
    assert line == {
        "level": "WARNING",
        "logger": "some.logger",
        "message": "a %s",
        "request_id": "req-1",
        "traceparent": TRACEPARENT,
        "trace_id": TRACEPARENT[3:35],
    }


def test_a_json_line_outside_a_request_has_no_empty_context_keys() -> None:
    line = json.loads(JsonFormatter().format(_record()))
    assert set(line) == {"time", "level", "logger", "message"}


def test_an_events_fields_name_it_and_its_trace_in_the_line() -> None:
    envelope = _envelope(traceparent=TRACEPARENT)
    line = json.loads(JsonFormatter().format(_record(**envelope_fields(envelope))))
    assert line["event_id"] == str(envelope.id)
    assert line["event_type"] == "UserRegistered"
    assert line["traceparent"] == TRACEPARENT


def test_an_exception_is_kept_in_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), None)
        record.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exception"]


def test_a_heartbeat_goes_stale_when_the_loop_stops_beating() -> None:
    heartbeat = Heartbeat(stale_after=30)
    assert heartbeat.why_not_live() is None
    heartbeat.last -= 31
    why = heartbeat.why_not_live()
    assert why is not None
    assert why.startswith("no progress for 31s")
    heartbeat.beat()
    assert heartbeat.why_not_live() is None


async def _get(port: int, request: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await reader.read()
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


async def _failing() -> None:
    raise ConnectionRefusedError("refused")


async def _fine() -> None:
    return None


async def test_the_probe_server_answers_metrics_livez_and_readyz() -> None:
    registry = CollectorRegistry()
    Counter("things", "things counted", registry=registry).inc(3)
    heartbeat = Heartbeat(stale_after=30)
    server = ProbeServer(registry, Probes(heartbeat, {"database": _fine, "broker": _failing}))
    port = await server.start("127.0.0.1", 0)
    try:
        status, body = await _get(port, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 200
        assert b"things_total 3.0" in body
        status, body = await _get(port, b"GET /livez HTTP/1.1\r\n\r\n")
        assert (status, json.loads(body)) == (200, {"status": "live"})
        status, body = await _get(port, b"GET /readyz?verbose HTTP/1.1\r\n\r\n")
        assert status == 503
        assert json.loads(body) == {
            "detail": {"code": "not_ready", "message": "not ready: broker"},
            "checks": {"database": "ok", "broker": "ConnectionRefusedError: refused",
                       "loop": "ok"},
        }  # fmt: skip
        heartbeat.last -= 60  # a stalled loop: not live, and so not ready either
        status, body = await _get(port, b"GET /livez HTTP/1.1\r\n\r\n")
        assert status == 503
        assert json.loads(body)["detail"]["code"] == "stalled"
        status, body = await _get(port, b"GET /readyz HTTP/1.1\r\n\r\n")
        assert json.loads(body)["detail"]["message"] == "not ready: broker, loop"
        assert (await _get(port, b"GET /other HTTP/1.1\r\n\r\n"))[0] == 404
        assert (await _get(port, b"POST /metrics HTTP/1.1\r\n\r\n"))[0] == 405
        # A client that sends half a request and leaves gets nothing, and breaks nothing.
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /met")
        writer.close()
        assert (await _get(port, b"GET /livez HTTP/1.1\r\n\r\n"))[0] == 503
    finally:
        await server.close()


async def test_a_readiness_check_that_hangs_is_reported_not_waited_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("infra.observability.probes.CHECK_TIMEOUT", 0.05)

    async def hangs() -> None:
        await asyncio.sleep(10)

    answers = await Probes(Heartbeat(stale_after=30), {"database": hangs}).readiness()
    assert answers == {"database": "no answer within 0s", "loop": "ok"}


def test_spans_without_the_otel_extra_say_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.resources", None)
    with pytest.raises(RuntimeError, match=r"pip install 'userbus\[otel\]'"):
        EventSpans("group")


async def test_the_kafka_check_connects_to_a_bootstrap_server_and_names_those_it_could_not() -> (
    None
):
    server = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    open_port = server.sockets[0].getsockname()[1]
    closed = await asyncio.start_server(lambda _r, w: w.close(), "127.0.0.1", 0)
    closed_port = closed.sockets[0].getsockname()[1]
    closed.close()
    await closed.wait_closed()
    try:
        either = f"kafka://127.0.0.1:{closed_port},127.0.0.1:{open_port}"
        await broker_check(either, "s")()  # one answering server suffices
        with pytest.raises(ConnectionError, match=f"127.0.0.1:{closed_port}"):
            await broker_check(f"kafka://127.0.0.1:{closed_port}", "s")()
    finally:
        server.close()
        await server.wait_closed()
