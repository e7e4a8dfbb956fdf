"""A small HTTP server of a background process: /metrics, /livez and /readyz.

The relay and the consumers serve no HTTP otherwise; this answers the three GETs a
Prometheus scrape and a Kubernetes probe make, on USERBUS_METRICS_PORT, and nothing else.
"""

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from infra.observability.probes import Probes, liveness_answer, readiness_answer

logger = logging.getLogger(__name__)

# What it serves: compose healthchecks and the k8s probes are checked against this.
PATHS = frozenset({"/metrics", "/livez", "/readyz"})
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 503: "Service Unavailable"}
_MAX_HEAD = 8192


class ProbeServer:
    """Serves a registry's metrics and the process's probes until closed."""

    def __init__(self, registry: CollectorRegistry, probes: Probes) -> None:
        self.registry = registry
        self.probes = probes
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        """Listen on host:port (0: any free port); the port listened on."""
        self._server = await asyncio.start_server(self._serve, host, port)
        bound: int = self._server.sockets[0].getsockname()[1]
        logger.info("metrics and probes on http://%s:%d", host, bound)
        return bound

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=5)
            status, ctype, body = await self._answer(head[:_MAX_HEAD])
            writer.write(
                f"HTTP/1.1 {status} {_REASONS[status]}\r\nContent-Type: {ctype}\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # a client that sent no whole request, or left: nothing to answer
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _answer(self, head: bytes) -> tuple[int, str, bytes]:
        method, _, rest = head.decode("latin-1").partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        if path not in PATHS:
            return _json(404, {"detail": {"code": "not_found", "message": f"no {path}"}})
        if method != "GET":
            return _json(405, {"detail": {"code": "method_not_allowed", "message": method}})
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
        if path == "/livez":
            return _json(*liveness_answer(self.probes.heartbeat.why_not_live()))
        return _json(*readiness_answer(await self.probes.readiness()))


@contextlib.asynccontextmanager
async def serving_probes(
    registry: CollectorRegistry, probes: Probes, host: str, port: int | None
) -> AsyncIterator[int | None]:
    """Serve /metrics, /livez and /readyz on host:port while inside; nothing when no port."""
    if port is None:
        yield None
        return
    server = ProbeServer(registry, probes)
    bound = await server.start(host, port)
    try:
        yield bound
    finally:
        await server.close()


def _json(status: int, body: object) -> tuple[int, str, bytes]:
    return status, "application/json", json.dumps(body).encode()
