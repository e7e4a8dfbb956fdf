"""Operator commands: the stream's status, dead letters, and the Kafka topic."""

import asyncio
from typing import Annotated

import asyncpg
import typer
from pydantic import Field

from auth.saga.answers import NAME as REGISTRATIONS
from downstream_examples.profiles.answers import OUTBOX_SCHEMA as ANSWERS_SCHEMA
from events import DEFAULT_STREAM, PROFILE_STREAM, dead_letter_stream
from infra.brokers import broker_for
from infra.kafka.security import KafkaSecuritySettings
from infra.kafka.urls import kafka_servers
from infra.publishing import TopicLayout, retention_ms
from infra.settings import UserbusSettings, asyncpg_dsn
from infra.status import StreamStatus
from producers.outbox import DEFAULT_SCHEMA
from producers.relay import relay_backlog
from userbus.projections import PROJECTIONS

kafka_app = typer.Typer(help="The Kafka topic.", no_args_is_help=True)
dlq_app = typer.Typer(help="Dead letters: messages consumers gave up on.", no_args_is_help=True)


class TopicSettings(KafkaSecuritySettings, UserbusSettings):
    """Where the events are (a stream or topic), and how a Kafka topic is laid out.

    What the operator commands (`status`, `dlq`, `kafka init`) read: unlike the relay's and
    the consumers' settings, no database URL is needed and the broker URL has no default.
    """

    broker_url: str
    stream: str = DEFAULT_STREAM
    # `userbus status` also reports the relay's backlog when it knows the auth database.
    database_url: str | None = None
    # With the registration saga on, `userbus status` also reports the profile service's
    # answers: their stream, auth's group following it, and the answers' outbox backlog.
    require_profile: bool = False
    profile_stream: str = Field(default=PROFILE_STREAM, min_length=1)
    kafka_partitions: int = Field(default=6, ge=1, le=10_000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=10)
    kafka_retention_hours: float = Field(default=168.0, ge=0)


@kafka_app.command("init")
def kafka_init() -> None:
    """Create the events topic (USERBUS_STREAM) and its dead-letter topic unless they exist.

    The relay creates the events topic too, and a consumer the dead-letter topic before its
    first letter; this makes both before anyone needs them, with the configured layout."""
    settings = TopicSettings()
    try:
        kafka_servers(settings.broker_url)
    except ValueError as exc:
        raise typer.BadParameter(f"USERBUS_BROKER_URL: {exc}") from None
    layout = TopicLayout(
        settings.kafka_partitions,
        settings.kafka_replication_factor,
        retention_ms(settings.kafka_retention_hours),
    )
    broker = broker_for(settings.broker_url, settings.kafka_security)
    # The dead-letter topic too, with the same layout: consumers create it before their
    # first letter, but a topic made here is there before anyone needs it.
    for topic in (settings.stream, dead_letter_stream(settings.stream)):
        created = asyncio.run(broker.ensure(topic, layout))
        state = "created" if created else "already exists:"
        typer.echo(f"topic {topic} {state} ({settings.kafka_partitions} partitions asked)")


def status() -> None:
    """How far behind each consumer group is, the relay's backlog, and the dead letters.

    Each projection is also compared with the event log, which the stream may have lost
    events of: with USERBUS_DATABASE_URL reaching both the auth outbox and the projection's
    tracking table (one database, as in `userbus dev`), the log's events beyond what the
    projection tracks.
    """
    settings = TopicSettings()
    database_url = settings.database_url

    async def gather() -> tuple[list[tuple[StreamStatus, str | None]], dict[str, str]]:
        broker = broker_for(settings.broker_url, settings.kafka_security)
        found = await broker.status(settings.stream, list(PROJECTIONS))
        reports = [(found, await _backlog(database_url, DEFAULT_SCHEMA))]
        if settings.require_profile:
            answers = await broker.status(settings.profile_stream, [REGISTRATIONS])
            reports.append((answers, await _backlog(database_url, ANSWERS_SCHEMA)))
        return reports, await _behind_log(database_url, list(PROJECTIONS))

    reports, behind_log = asyncio.run(gather())
    for found, backlog in reports:
        typer.echo(f"stream {found.stream}: {found.length} messages")
        if backlog is not None:
            typer.echo(f"relay: {backlog}")
        for lag in found.groups:
            behind = "?" if lag.behind is None else str(lag.behind)
            typer.echo(f"group {lag.group}: {behind} behind, {lag.unacknowledged} unacknowledged")
        typer.echo(f"dead letters: {found.dead_letters} in {dead_letter_stream(found.stream)}")
    groups = {lag.group: lag for lag in reports[0][0].groups}
    for name in PROJECTIONS:
        group = groups.get(name)
        if group is None:
            on_stream = "no group on the stream"
        else:
            on_stream = f"{'?' if group.behind is None else group.behind} behind the stream"
        typer.echo(f"{name}: {on_stream}, {behind_log[name]}")


# The log's events a projection has not seen: beyond its tracking record of their user.
_BEHIND_LOG = """
    SELECT count(*) FROM auth.outbox o
    LEFT JOIN "{name}".tracking t ON t.subject = o.subject
    WHERE o.sequence > coalesce(t.sequence, 0)
"""


async def _behind_log(database_url: str | None, names: list[str]) -> dict[str, str]:
    """Per projection, how far it is behind the event log, said in words."""
    unknown = "behind the log unknown (USERBUS_DATABASE_URL must reach auth.outbox)"
    if database_url is None:
        return dict.fromkeys(names, unknown)
    conn = await asyncpg.connect(asyncpg_dsn(database_url))
    try:
        if await conn.fetchval("SELECT to_regclass('auth.outbox')") is None:
            return dict.fromkeys(names, unknown)
        said = {}
        for name in names:
            if await conn.fetchval("SELECT to_regclass($1)", f'"{name}".tracking') is None:
                said[name] = f"behind the log unknown (no {name}.tracking in this database)"
            else:
                said[name] = f"{await conn.fetchval(_BEHIND_LOG.format(name=name))} behind the log"
        return said
    finally:
        await conn.close()


async def _backlog(database_url: str | None, schema: str) -> str | None:
    """What waits in `schema`'s outbox for its relay, said in words; None without a database."""
    if database_url is None:
        return None
    try:
        count = await relay_backlog(database_url, schema)
    except asyncpg.UndefinedTableError:
        # The profile service creates its outbox when its consumer first starts.
        return f"no {schema}.outbox yet"
    return f"{count} committed events not yet published from {schema}.outbox"


@dlq_app.command("list")
def dlq_list() -> None:
    """Show the dead letters: where each came from, which group gave up, and why."""
    settings = TopicSettings()

    async def show() -> int:
        queue = broker_for(settings.broker_url, settings.kafka_security).dead_letters(
            settings.stream
        )
        count = 0
        try:
            async for letter in queue.read():
                count += 1
                typer.echo(
                    f"{letter.letter_id}  {letter.failed_at:%Y-%m-%d %H:%M:%S}  "
                    f"group={letter.group}  origin={letter.origin or '-'}\n"
                    f"    error: {letter.error}\n"
                    f"    body: {letter.payload[:300].decode('utf-8', 'replace')}"
                )
        finally:
            await queue.close()
        return count

    count = asyncio.run(show())
    typer.echo(f"{count} dead letter(s) in {dead_letter_stream(settings.stream)}")


@dlq_app.command("retry")
def dlq_retry(
    letter_ids: Annotated[
        list[str] | None, typer.Argument(help="ids from `dlq list`; none: all of them")
    ] = None,
) -> None:
    """Put dead letters back on the stream, for every consumer group to receive again."""
    settings = TopicSettings()

    async def retry() -> int:
        queue = broker_for(settings.broker_url, settings.kafka_security).dead_letters(
            settings.stream
        )
        try:
            return await queue.retry(letter_ids or None)
        finally:
            await queue.close()

    typer.echo(f"put {asyncio.run(retry())} dead letter(s) back on {settings.stream}")
