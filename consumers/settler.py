"""Settling a decoded batch: applied in one transaction, retried in place, or dead-lettered."""

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from consumers.applier import BatchOutcome, Decoded, ProjectionApplier, decode, parse_envelope
from consumers.failures import is_transient
from events import MalformedEventError
from infra.dead_letters import DeadLetter, DeadLetterQueue, body_bytes
from infra.observability.probes import Heartbeat

logger = logging.getLogger(__name__)


class _ConnectFailedError(Exception):
    """No connection to the projection's database could be opened."""


class BatchSettler:
    """Applies decoded batches to one projection; what cannot be applied goes to dead letters.

    A transient failure (the database away) is retried in place for as long as it takes, so
    nothing behind it is applied first; any other failure is the batch's fault, and its
    events get `max_attempts` tries each before they are dead-lettered.
    """

    def __init__(
        self,
        applier: ProjectionApplier,
        engine: AsyncEngine,
        dead_letters: DeadLetterQueue,
        *,
        group: str,
        max_attempts: int,
        stopping: asyncio.Event,
    ) -> None:
        self.applier = applier
        self.engine = engine
        self.dead_letters = dead_letters
        self.group = group
        self.max_attempts = max_attempts
        self.totals = BatchOutcome()
        self.dead_lettered = 0
        # Attempts made again (database away, or an event failing), for /metrics; each
        # also counts as progress for /livez, so a long database outage is no stall.
        self.retries = 0
        self.heartbeat = Heartbeat(stale_after=60.0)
        # Set when the consumer stops: failures then end the batch instead of being retried.
        self._stopping = stopping

    def decode(
        self, bodies: Sequence[Any], origins: Sequence[str] = ()
    ) -> tuple[list[Decoded], list[DeadLetter]]:
        """Parse message bodies; one that is not an event envelope becomes a dead letter."""
        origins = list(origins) or [""] * len(bodies)
        decoded, bad = [], []
        for body, origin in zip(bodies, origins, strict=True):
            try:
                decoded.append(decode(parse_envelope(body)))
            except (ValidationError, MalformedEventError, TypeError, ValueError) as exc:
                bad.append(DeadLetter(body_bytes(body), f"not an event: {exc}", self.group, origin))
        return decoded, bad

    async def settle(self, decoded: Sequence[Decoded], bad: Sequence[DeadLetter] = ()) -> None:
        """Apply a decoded batch; what cannot be applied goes to the dead letters.

        A body that is not an event envelope is dead-lettered at once. If the batch fails
        for a reason other than the database being away, its events are applied one at a
        time, each with `max_attempts` tries, so one poison event cannot hold up
        the rest.
        """
        if bad:
            await self._dead_letter(list(bad))
        try:
            await self.apply(decoded)
        except Exception as exc:
            if self._stopping.is_set():
                raise
            logger.warning("%s: batch failed (%r); applying its events one by one", self.group, exc)
            for item in decoded:
                await self._apply_with_attempts(item)

    async def apply(self, decoded: Sequence[Decoded]) -> None:
        """Apply a batch, retrying while the database is unavailable."""
        delay = 0.1
        while True:
            try:
                outcome = await self._apply_once(decoded)
                break
            except Exception as exc:
                transient = isinstance(exc, _ConnectFailedError) or is_transient(exc)
                if not transient or self._stopping.is_set():
                    raise
                logger.warning("%s: database unavailable (%s); retrying", self.group, exc)
                self.retries += 1
                self.heartbeat.beat()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        self.totals.add(outcome)
        if outcome.rejected:
            await self._dead_letter(
                [
                    DeadLetter(e.model_dump_json().encode(), f"invalid data: {why}", self.group)
                    for e, why in outcome.rejected
                ]
            )

    async def _apply_once(self, decoded: Sequence[Decoded]) -> BatchOutcome:
        try:
            conn = await self.engine.connect()
        except Exception as exc:
            # Whatever stops a connection from opening (the database restarting, refusing
            # connections, out of slots) says the database is away, never that the batch is bad.
            raise _ConnectFailedError(exc) from exc
        try:
            async with conn.begin():
                return await self.applier.apply_decoded(conn, decoded)
        finally:
            await conn.close()

    async def _apply_with_attempts(self, item: Decoded) -> None:
        envelope = item.envelope
        error: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self.apply([item])
                return
            except Exception as exc:
                if self._stopping.is_set():
                    raise
                error = exc
                self.retries += 1
                logger.warning(
                    "%s: event %s failed (attempt %d): %r", self.group, envelope.id, attempt, exc
                )
                await asyncio.sleep(min(0.05 * 2**attempt, 2.0))
        reason = f"failed {self.max_attempts} times: {error!r}"
        await self._dead_letter(
            [DeadLetter(envelope.model_dump_json().encode(), reason, self.group, str(envelope.id))]
        )

    async def _dead_letter(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            logger.error("%s: dead-lettering %s: %s", self.group, letter.origin, letter.error)
        await self.dead_letters.send(letters)
        self.dead_lettered += len(letters)
