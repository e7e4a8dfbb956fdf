"""Running each part until a stop event: the API, the relay, a consumer; and signal handling."""

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from auth.main import create_app
from auth.settings import AuthSettings
from consumers.app import create_consumer_app
from consumers.memory import tune_garbage_collection
from consumers.observed import observing
from consumers.settings import ConsumerSettings
from downstream_examples.notifier.projection import NotifierProjection
from userbus.projections import projection_named

logger = logging.getLogger(__name__)


class _Server(uvicorn.Server):
    """uvicorn without its own signal handlers: the process's stop event governs shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass(frozen=True)
class ApiTls:
    """The certificate (chain) and key that `userbus api` serves HTTPS with."""

    certfile: Path
    keyfile: Path


async def run_api(
    settings: AuthSettings,
    stop: asyncio.Event,
    *,
    host: str,
    port: int,
    tls: ApiTls | None = None,
) -> None:
    """Serve the HTTP API (HTTPS with `tls`) until `stop` is set, then finish requests."""
    # uvicorn's own proxy headers are off: by default it believes X-Forwarded-For from
    # 127.0.0.1, behind our back; the app reads it from USERBUS_TRUSTED_PROXIES instead.
    config = uvicorn.Config(
        create_app(settings),
        host=host,
        port=port,
        log_config=None,
        proxy_headers=False,
        ssl_certfile=tls.certfile if tls else None,
        ssl_keyfile=tls.keyfile if tls else None,
    )
    tune_garbage_collection(settings.api_gc_threshold)
    server = _Server(config)
    serving = asyncio.create_task(server.serve())
    stopped = asyncio.create_task(stop.wait())
    await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
    server.should_exit = True
    stopped.cancel()
    await serving
    if not server.started:
        raise RuntimeError(f"the API could not start on {host}:{port}")


async def run_consumer(settings: ConsumerSettings, name: str, stop: asyncio.Event) -> None:
    """Run the named projection's consumer until `stop` is set (the notifier: run_notifier)."""
    if name == NotifierProjection.name:
        # The notifier's projection only queues mails: its sender must run beside it.
        raise ValueError("the notifier runs with its sender and NotifierSettings: run_notifier")
    consumer = create_consumer_app(settings, projection_named(name))
    await consumer.start()
    try:
        async with observing(consumer, stop):
            await consumer.serve(stop)
    finally:
        await consumer.stop()


def run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run `main(stop)` on a new event loop; SIGINT or SIGTERM sets `stop`."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())
