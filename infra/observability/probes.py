"""Liveness and readiness of a background process, and the checks readiness is made of."""

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from infra.brokers import broker_for, broker_kind
from infra.kafka.urls import kafka_servers
from infra.settings import asyncpg_dsn

Check = Callable[[], Awaitable[None]]
"""A readiness check: returns when the dependency answers, raises why it does not."""

CHECK_TIMEOUT = 3.0


@dataclass
class Heartbeat:
    """When a loop last made progress; the loop beats, /livez reads it.

    A loop that waits (for a NOTIFY, for a broker's blocking read) still beats each time
    its wait ends, so an idle process stays live and a hung one goes stale.
    """

    stale_after: float
    last: float = field(default_factory=time.monotonic)

    def beat(self) -> None:
        """The loop made progress now."""
        self.last = time.monotonic()

    def why_not_live(self) -> str | None:
        """None while the loop beat recently, else how long it has been silent."""
        silent = time.monotonic() - self.last
        if silent > self.stale_after:
            return f"no progress for {silent:.0f}s (more than {self.stale_after:.0f}s)"
        return None


@dataclass
class Probes:
    """What /livez and /readyz answer for one process."""

    heartbeat: Heartbeat
    checks: Mapping[str, Check]

    async def readiness(self) -> dict[str, str]:
        """Each check's answer: "ok", or what failed; the loop's liveness is one of them."""
        names = list(self.checks)
        results = await asyncio.gather(*(_run(self.checks[name]) for name in names))
        answers = dict(zip(names, results, strict=True))
        answers["loop"] = self.heartbeat.why_not_live() or "ok"
        return answers


def liveness_answer(why_not: str | None) -> tuple[int, dict[str, Any]]:
    """/livez's status and body: 200 while live, 503 saying why not."""
    if why_not is None:
        return 200, {"status": "live"}
    return 503, {"detail": {"code": "stalled", "message": why_not}}


def readiness_answer(checks: Mapping[str, str]) -> tuple[int, dict[str, Any]]:
    """/readyz's status and body: 200 when every check says "ok", else 503 naming the rest."""
    failed = sorted(name for name, answer in checks.items() if answer != "ok")
    if failed:
        message = f"not ready: {', '.join(failed)}"
        return 503, {"detail": {"code": "not_ready", "message": message}, "checks": dict(checks)}
    return 200, {"status": "ready", "checks": dict(checks)}


async def _run(check: Check) -> str:
    try:
        await asyncio.wait_for(check(), timeout=CHECK_TIMEOUT)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT:.0f}s"
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return "ok"


def database_check(url: str) -> Check:
    """A check that PostgreSQL at `url` answers a query (its own short connection)."""

    async def check() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=CHECK_TIMEOUT)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close()

    return check


def broker_check(broker_url: str, stream: str) -> Check:
    """A check that the broker answers: Redis a status query about `stream`, Kafka a connection.

    Kafka's status query starts an admin client and a consumer, which a check cut short by
    its timeout (the broker away) would leave behind, once per probe: a TCP connection to a
    bootstrap server is what says it is reachable, and leaves nothing.
    """
    if broker_kind(broker_url) == "kafka":
        servers = kafka_servers(broker_url)

        async def reach_kafka() -> None:
            failures = []
            for server in servers:
                host, _, port = server.rpartition(":")
                try:
                    _, writer = await asyncio.open_connection(host, int(port))
                except OSError as exc:
                    failures.append(f"{server}: {exc}")
                    continue
                writer.close()
                return
            raise ConnectionError("; ".join(failures))

        return reach_kafka

    async def check() -> None:
        await broker_for(broker_url).status(stream, [])

    return check
