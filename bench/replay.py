"""Replay of the profile projection from the event log, against raw COPY of the same rows.

Seeds N events (bench/_replay_history.py) into a scratch database, then measures: raw COPY
of the profile rows that history gives into a scratch table shaped like profiles.profiles
(indexes included, one transaction per batch); the replay (consumers.replay, from the log,
into a shadow and swapped in; in-database when, as here, the log is in the projection's
database) while a reader in another process reads a profile every 50 ms. It prints
events/s, the ratio to raw COPY, the process's RSS at 10 %, 50 % and 90 % of the build, the
readers' waits, and checks that the replayed table equals the rows copied.
"""

import argparse
import asyncio
import gc
import random
import time
from typing import Any

import asyncpg
import psutil
from _common import (
    make_parser,
    percentile,
    scratch,
    setup_process,
    show,
    show_load,
    show_ratio,
    show_text,
)
from _reader import ReaderProcess
from _replay_history import profile_rows, seed, user_id, users_for
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.applier import ProjectionApplier
from consumers.replay import replay
from consumers.replay.progress import LogProgress
from consumers.sources import OutboxLogSource
from downstream_examples.profiles.bulk import COLUMNS
from downstream_examples.profiles.projection import ProfileProjection
from infra.settings import sqlalchemy_url

TARGET_RATIO = 0.5
TARGET_RATE = 100_000
MARKS = (0.1, 0.5, 0.9)


class ClientBuild(ProfileProjection):
    """The profile projection without its in-database build: pages read by Python (--client)."""

    def sql_rows(self) -> None:
        """None: the client build runs."""
        return None


class RssAtProgress(LogProgress):
    """The replay's progress, noting the process's resident memory as it passes each mark."""

    def __init__(self) -> None:
        super().__init__("profiles", interval=3600)
        self.rss: dict[float, int] = {}
        self._total: int | None = None
        self._seen = 0

    def start(self, total: int | None, completed: int) -> None:
        """Remember the total."""
        super().start(total, completed)
        self._total, self._seen = total, completed

    def advance(self, amount: int, total: int | None) -> None:
        """Note the RSS at the first batch past each mark."""
        super().advance(amount, total)
        self._seen += amount
        for mark in MARKS:
            if mark not in self.rss and self._total and self._seen >= mark * self._total:
                self.rss[mark] = psutil.Process().memory_info().rss


async def raw_copy(conn: asyncpg.Connection, rows: list[tuple[Any, ...]], batch: int) -> float:
    """Seconds to COPY the rows into bench_copy.profiles, `batch` rows a transaction."""
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        async with conn.transaction():
            await conn.copy_records_to_table(
                "profiles",
                schema_name="bench_copy",
                columns=COLUMNS,
                records=rows[start : start + batch],
            )
    return time.perf_counter() - started


async def main(args: argparse.Namespace) -> None:
    """Seed, copy, replay, report."""
    async with scratch(args) as space:
        url = space.database_url
        engine = create_async_engine(sqlalchemy_url(url))
        conn = await asyncpg.connect(url)
        try:
            users = users_for(args.events)
            started = time.perf_counter()
            events = await seed(conn, users, stamped=not args.unstamped)
            show("events seeded", events, "events", 0)
            show("seeding took", time.perf_counter() - started, "s")
            rows = profile_rows(users)
            async with engine.begin() as sa:
                for projection in (
                    ProfileProjection(),
                    ProfileProjection().in_schema("bench_copy"),
                ):
                    await ProjectionApplier(projection).setup(sa)  # live (empty) and scratch
            show_load("before raw COPY")
            copy_seconds = await raw_copy(conn, rows, args.batch)
            row_count = len(rows)
            del rows  # the process's RSS during the replay is the replay's own
            gc.collect()
            copy_rate = row_count / copy_seconds
            show("raw COPY of the profile rows", copy_rate, "rows/s", 0)

            readers = [user_id(random.randint(1, users)) for _ in range(1000)]
            reader, progress = ReaderProcess(url, readers), RssAtProgress()
            reader.start()
            show_load("before the replay")
            started = time.perf_counter()
            outcome = await replay(
                ClientBuild() if args.client else ProfileProjection(),
                engine,
                OutboxLogSource(sqlalchemy_url(url)),
                batch_size=args.batch,
                progress=progress,
            )
            replay_seconds = time.perf_counter() - started
            waits = reader.finish()
            rate = events / replay_seconds
            show_text("replay build path", outcome.path)
            show("pages handed to the models", outcome.handed_over, "pages", 0)
            show("replay from the log", rate, "events/s", 0)
            show("replay, profile rows written", row_count / replay_seconds, "rows/s", 0)
            for mark in MARKS:
                show(f"RSS at {mark:.0%} of the build", progress.rss.get(mark, 0) / 2**20, "MiB")
            show("reader wait p50", percentile(waits, 0.5) * 1000, "ms", 2)
            show("reader wait p99", percentile(waits, 0.99) * 1000, "ms", 2)
            show("reader wait max", max(waits) * 1000, "ms", 2)
            show("swap: tables held", outcome.swap.exclusive_seconds * 1000, "ms", 2)
            differ = await conn.fetchval(
                "SELECT count(*) FROM ((TABLE profiles.profiles EXCEPT TABLE bench_copy.profiles) "
                "UNION ALL (TABLE bench_copy.profiles EXCEPT TABLE profiles.profiles)) d"
            )
            if differ:
                raise SystemExit(f"the replayed table differs from the copied rows in {differ}")
            show_ratio("events/s over raw COPY rows/s", rate / copy_rate, f">= {TARGET_RATIO}",
                       rate / copy_rate >= TARGET_RATIO)  # fmt: skip
            show_ratio("replay rate over target", rate / TARGET_RATE, ">= 1", rate >= TARGET_RATE)
        finally:
            await conn.close()
            await engine.dispose()


if __name__ == "__main__":
    parser = make_parser(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="events (%(default)s)")
    parser.add_argument(
        "--batch", type=int, default=10_000, help="rows a transaction (%(default)s)"
    )
    parser.add_argument(
        "--client", action="store_true", help="the client build (pages read by Python)"
    )
    parser.add_argument(
        "--unstamped",
        action="store_true",
        help="rows without the writer's stamp (as before migration 0009): every event checked",
    )
    setup_process()
    asyncio.run(main(parser.parse_args()))
