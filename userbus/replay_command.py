"""`userbus replay NAME`: rebuild a projection in a shadow schema and swap it in."""

import asyncio
from enum import StrEnum
from typing import Annotated

import typer
from sqlalchemy.ext.asyncio import create_async_engine

from consumers.replay import ReplayError, replay
from consumers.replay.progress import progress_for
from consumers.replay.settings import ReplaySettings
from consumers.replay.sources import LogSource, ReplaySource, StreamSource
from infra.brokers import broker_for
from infra.event_log import PostgresEventLog
from userbus.projections import ProjectionName, projection_named


class Source(StrEnum):
    """Where a replay reads the event history from."""

    log = "log"
    stream = "stream"


async def _stream_source(settings: ReplaySettings) -> StreamSource:
    broker = broker_for(settings.broker_url)
    status = await broker.status(settings.stream, [])
    return StreamSource(broker.history(settings.stream), status.length)


def _log_source(settings: ReplaySettings) -> ReplaySource:
    return LogSource(PostgresEventLog(settings.event_log_database_url))


def replay_command(
    name: ProjectionName,
    source: Annotated[
        Source,
        typer.Option(help="the auth service's event log (its outbox), or the broker's stream"),
    ] = Source.log,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume", help="go on with an interrupted replay from its checkpoint (else: anew)"
        ),
    ] = False,
    batch_size: Annotated[
        int | None, typer.Option(help="events per transaction (USERBUS_REPLAY_BATCH_SIZE)")
    ] = None,
) -> None:
    """Rebuild a projection from the event history while the live one keeps serving.

    It builds into a shadow schema, catches up with the live projection and swaps the
    tables in one short transaction. Interrupted, it resumes with --resume.
    """
    settings = ReplaySettings()
    projection = projection_named(name)

    async def rebuild() -> str:
        history = (
            await _stream_source(settings) if source is Source.stream else _log_source(settings)
        )
        engine = create_async_engine(settings.database_url)
        try:
            outcome = await replay(
                projection,
                engine,
                history,
                batch_size=batch_size or settings.replay_batch_size,
                resume=resume,
                progress=progress_for(name, interval=settings.replay_progress_seconds),
            )
        finally:
            await engine.dispose()
        events = outcome.events
        resumed = f" (resumed at {outcome.resumed_at})" if outcome.resumed_at else ""
        return (
            f"replayed {name} from the {source.value}{resumed}: {events.applied} applied, "
            f"{events.skipped} not handled, {events.duplicates} duplicates, "
            f"{len(events.rejected)} rejected; the swap held the tables "
            f"{outcome.swap.exclusive_seconds * 1000:.0f} ms"
        )

    try:
        typer.echo(asyncio.run(rebuild()))
    except ReplayError as exc:
        typer.echo(f"userbus: {exc}", err=True)
        raise SystemExit(1) from None
