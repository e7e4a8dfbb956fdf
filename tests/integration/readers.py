"""A reader of the profile table in its own process, as another service would read it.

A thread of the test's process would share its interpreter lock with the replay, and
measure the replay's CPU work instead of PostgreSQL's locks.
"""

import asyncio
import multiprocessing
import random
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event
from typing import Any
from uuid import UUID

import asyncpg

from infra.settings import asyncpg_dsn


def _read(dsn: str, user_ids: list[str], every: float, ready: Event, stop: Event, out: Any) -> None:
    async def loop() -> list[float]:
        conn = await asyncpg.connect(dsn)
        waits: list[float] = []
        try:
            while not stop.is_set():
                began = time.monotonic()
                await conn.fetchrow(
                    "SELECT username FROM profiles.profiles WHERE user_id = $1",
                    UUID(random.choice(user_ids)),
                )
                waits.append(time.monotonic() - began)
                ready.set()
                await asyncio.sleep(max(0.0, every - waits[-1]))
        finally:
            await conn.close()
        return waits

    out.put(asyncio.run(loop()))


class ReaderProcess:
    """Reads a random profile every `every` seconds until `finish()`; the time of each read."""

    def __init__(self, database_url: str, user_ids: Sequence[UUID], every: float = 0.05) -> None:
        context = multiprocessing.get_context("spawn")
        self._ready, self._stop, self._out = context.Event(), context.Event(), context.Queue()
        self._process = context.Process(
            target=_read,
            args=(
                asyncpg_dsn(database_url),
                [str(u) for u in user_ids],
                every,
                self._ready,
                self._stop,
                self._out,
            ),
            daemon=True,
        )

    def start(self) -> None:
        """Start reading; returns once the first read is done."""
        self._process.start()
        if not self._ready.wait(60):
            raise RuntimeError("the reader did not start")

    def finish(self) -> list[float]:
        """Stop, and return how long each read waited, in seconds."""
        self._stop.set()
        waits: list[float] = self._out.get(timeout=60)
        self._process.join(30)
        return waits
