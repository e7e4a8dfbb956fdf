"""`userbus prune`: expired sessions and tokens, deleted users' PII, the directory's tombstones."""

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from enum import StrEnum
from typing import Annotated, Any

import typer
from sqlalchemy.ext.asyncio import create_async_engine

from auth.maintenance.run import prune_once
from auth.maintenance.settings import PruneSettings
from downstream_examples.lazy_directory.settings import TombstoneSettings
from downstream_examples.lazy_directory.tombstones import prune_tombstones
from userbus.run import run_until_signal

logger = logging.getLogger(__name__)

Step = Callable[[], Coroutine[Any, Any, None]]


class Target(StrEnum):
    """Whose database a prune works on."""

    auth = "auth"
    directory = "directory"


def prune(
    target: Annotated[
        Target,
        typer.Argument(
            help="auth: sessions, tokens and erasure in the auth database (USERBUS_DATABASE_URL)"
            " and on the broker; directory: the lazy directory's tombstones in its database"
        ),
    ] = Target.auth,
    every: Annotated[
        float | None,
        typer.Option(min=1, help="keep running, pruning again every SECONDS (compose, k8s)"),
    ] = None,
) -> None:
    """Delete what has expired, and erase deleted users after the grace period."""
    step = _directory_step(TombstoneSettings()) if target is Target.directory else _auth_step()
    if every is None:
        asyncio.run(step())
        return
    run_until_signal(lambda stop: repeat(step, stop, every=every))


async def repeat(step: Step, stop: asyncio.Event, *, every: float) -> None:
    """Run `step` now and then every `every` seconds until `stop`; a failed run is retried."""
    while not stop.is_set():
        try:
            await step()
        except Exception:
            # The database or the broker is away, say: each part of a prune is idempotent and
            # records its progress, so the next run takes up what this one left.
            logger.exception("prune failed; trying again in %.0f s", every)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


def _auth_step() -> Step:
    settings = PruneSettings()

    async def step() -> None:
        for line in (await prune_once(settings)).lines():
            typer.echo(line)

    return step


def _directory_step(settings: TombstoneSettings) -> Step:
    async def step() -> None:
        engine = create_async_engine(settings.database_url)
        try:
            count = await prune_tombstones(
                engine, keep=settings.tombstone_keep, batch=settings.prune_batch_size
            )
        finally:
            await engine.dispose()
        typer.echo(f"pruned {count} directory tombstones")

    return step
