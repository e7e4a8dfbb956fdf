"""`userbus dev`: the whole system in one process, on embedded servers unless URLs are given."""

import asyncio
import logging
from pathlib import Path

from pydantic import Field

from auth.migrations import upgrade
from auth.saga.main import run_registration_saga
from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from downstream_examples.profiles.answers import OUTBOX_SCHEMA as PROFILES_OUTBOX
from infra.brokers import broker_kind
from infra.settings import UserbusSettings
from producers.main import run_relay
from producers.settings import RelaySettings
from userbus.embedded import EmbeddedPostgres, EmbeddedValkey
from userbus.run import run_api, run_consumer

logger = logging.getLogger(__name__)


class DevSettings(UserbusSettings):
    """What `userbus dev` needs to know; a missing URL means an embedded server."""

    database_url: str | None = None
    broker_url: str | None = None
    # The login limiter's Redis; by default the broker when it is Redis, else embedded.
    redis_url: str | None = None
    data_dir: Path = Path(".userbus")
    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=0, le=65535)
    # The registration saga: also run the profile service's answer relay and the auth side.
    require_profile: bool = False


def consumer_settings(database_url: str, broker_url: str) -> ConsumerSettings:
    """The profile consumer's: it shares the auth database here, so it heals from the event
    log itself (a per-user gap, a stream that lost entries) and reports its lag behind it."""
    return ConsumerSettings(
        database_url=database_url, broker_url=broker_url, event_log_url=database_url
    )


async def run_dev(settings: DevSettings, stop: asyncio.Event) -> None:
    """Migrate, then run the API, the relay and the profile consumer until `stop` is set.

    With `require_profile`, also the registration saga's answer relay and its auth side.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(settings.data_dir / "postgres")
    valkey = EmbeddedValkey(settings.data_dir / "valkey")
    started: list[EmbeddedPostgres | EmbeddedValkey] = []
    try:
        database_url = settings.database_url or await _start(postgres, started)
        broker_url = settings.broker_url or await _start(valkey, started)
        redis_url = settings.redis_url or (
            broker_url if broker_kind(broker_url) == "redis" else await _start(valkey, started)
        )
        await upgrade(database_url)
        auth = AuthSettings(
            database_url=database_url, redis_url=redis_url, data_dir=settings.data_dir,
            require_profile=settings.require_profile,
        )  # fmt: skip
        relay = RelaySettings(database_url=database_url, broker_url=broker_url)
        consumer = consumer_settings(database_url, broker_url)
        base = f"http://{settings.api_host}:{settings.api_port}"
        print(
            f"userbus is running\n  API:    {base}\n  docs:   {base}/docs\n"
            f"  stream: {relay.stream} on {broker_url}\n  database: {database_url}\n"
            f"  mailbox: {auth.mailbox_path} (reset and verification mails)\n"
            f"  registration saga: {_saga_line(auth)}\n"
            "Ctrl-C stops everything.",
            flush=True,
        )
        parts = [
            run_api(auth, stop, host=settings.api_host, port=settings.api_port),
            run_relay(relay, stop),
            run_consumer(consumer, "profiles", stop),
        ]
        if settings.require_profile:
            answers = RelaySettings(
                database_url=database_url, broker_url=broker_url,
                outbox_schema=PROFILES_OUTBOX, stream=auth.profile_stream,
            )  # fmt: skip
            parts += [run_relay(answers, stop), run_registration_saga(auth, consumer, stop)]
        tasks = [asyncio.create_task(part) for part in parts]
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        # One part failing (the port is taken, say) stops the others too.
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        for task in done:
            if task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
    finally:
        for server in reversed(started):
            await asyncio.to_thread(server.stop)


async def _start(
    server: EmbeddedPostgres | EmbeddedValkey, started: list[EmbeddedPostgres | EmbeddedValkey]
) -> str:
    url = await asyncio.to_thread(server.start)
    started.append(server)
    return url


def _saga_line(auth: AuthSettings) -> str:
    if not auth.require_profile:
        return "off (USERBUS_REQUIRE_PROFILE=true turns it on)"
    return (
        f"on: answers on {auth.profile_stream}, pending accounts expire after "
        f"{auth.pending_registration_timeout_seconds:g} s"
    )
