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

FEED_PATH = "/events"
# The most events the feed serves in one page (auth/api/routes/events.py).
FEED_PAGE_LIMIT = 1000


class Source(StrEnum):
    """Where a replay reads the event history from."""

    log = "log"
    stream = "stream"
    feed = "feed"


async def _stream_source(settings: ReplaySettings) -> StreamSource:
    broker = broker_for(settings.broker_url, settings.kafka_security)
    status = await broker.status(settings.stream, [])
    return StreamSource(broker.history(settings.stream), status.length)


def _feed_source(settings: ReplaySettings, url: str | None, token: str | None) -> ReplaySource:
    # Imported here: only a replay through the feed needs the HTTP client.
    from infra.feed import ClientCredentials, HttpFeedLog

    url = url or settings.feed_url
    if not url:
        raise typer.BadParameter("--source feed needs --feed-url (or USERBUS_FEED_URL)")
    secret = settings.feed_client_secret
    if token is None and settings.feed_client_id and secret is not None:
        root = url.rstrip("/").removesuffix(FEED_PATH)
        credentials = ClientCredentials(
            f"{root}/auth/token", settings.feed_client_id, secret.get_secret_value()
        )
        log = HttpFeedLog(url, "", credentials=credentials)
        return LogSource(log, kind="feed", page_limit=FEED_PAGE_LIMIT)
    token = token or (settings.feed_token.get_secret_value() if settings.feed_token else None)
    if not token:
        raise typer.BadParameter(
            "--source feed needs a service token (--feed-token, USERBUS_FEED_TOKEN) or a "
            "service client (USERBUS_FEED_CLIENT_ID and USERBUS_FEED_CLIENT_SECRET)"
        )
    return LogSource(HttpFeedLog(url, token), kind="feed", page_limit=FEED_PAGE_LIMIT)


def replay_command(
    name: ProjectionName,
    source: Annotated[
        Source,
        typer.Option(
            help="the auth service's event log (its outbox), the broker's stream, or the "
            "auth service's event feed over HTTP"
        ),
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
    feed_url: Annotated[
        str | None, typer.Option(help="--source feed: the feed, http://auth:8000/events")
    ] = None,
    feed_token: Annotated[
        str | None, typer.Option(help="--source feed: a service token (USERBUS_FEED_TOKEN)")
    ] = None,
) -> None:
    """Rebuild a projection from the event history while the live one keeps serving.

    It builds into a shadow schema, catches up with the live projection and swaps the
    tables in one short transaction. Interrupted, it resumes with --resume.
    """
    settings = ReplaySettings()
    projection = projection_named(name)
    history_of_feed = (
        _feed_source(settings, feed_url, feed_token) if source is Source.feed else None
    )

    async def rebuild() -> str:
        if history_of_feed is not None:
            history = history_of_feed
        elif source is Source.stream:
            history = await _stream_source(settings)
        else:
            history = LogSource(PostgresEventLog(settings.event_log_database_url))
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
            f"replayed {name} from the {source.value}{resumed} ({outcome.path} build): "
            f"{events.applied} applied, "
            f"{events.skipped} not handled, {events.duplicates} duplicates, "
            f"{len(events.rejected)} rejected; the swap held the tables "
            f"{outcome.swap.exclusive_seconds * 1000:.0f} ms"
        )

    try:
        typer.echo(asyncio.run(rebuild()))
    except ReplayError as exc:
        typer.echo(f"userbus: {exc}", err=True)
        raise SystemExit(1) from None
