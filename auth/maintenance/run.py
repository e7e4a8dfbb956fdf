"""One prune of the auth database (`userbus prune`; `--every` repeats it).

A command run by compose or a Kubernetes CronJob rather than a task inside the API: the API
runs as several replicas, which would all prune, and a prune must also reach the broker,
which the API never talks to. One process (or a few: the batches skip each other's rows)
does it for the whole deployment.
"""

from dataclasses import dataclass

import asyncpg

from auth.maintenance.erasure import Erased, erase_deleted_users
from auth.maintenance.pruning import Pruned, prune_expired
from auth.maintenance.settings import PruneSettings
from infra.brokers import Broker, broker_for
from infra.settings import asyncpg_dsn


@dataclass(frozen=True, slots=True)
class PruneReport:
    """What one prune did."""

    pruned: Pruned
    erased: Erased

    def lines(self) -> list[str]:
        """The report, in words, a line per part."""
        pruned, erased, broker = self.pruned, self.erased, self.erased.broker
        lines = [
            f"pruned {pruned.sessions} ended sessions, {pruned.refresh_tokens} refresh tokens, "
            f"{pruned.reset_tokens} reset tokens, {pruned.verification_tokens} verification tokens",
            f"erased {erased.users} deleted users from the log ({erased.events} events redacted)",
        ]
        if not broker.rewritable:
            lines.append(
                f"broker: {erased.broker_users} users' records stay until the topic's "
                "retention removes them (Kafka records cannot be rewritten)"
            )
        else:
            lines.append(
                f"stream: {erased.broker_users} users, {broker.removed} entries replaced by "
                f"{broker.appended} redacted ones, {broker.dead_letters_removed} dead letters "
                f"removed ({broker.scanned} entries read)"
            )
        return lines


async def prune_once(settings: PruneSettings, broker: Broker | None = None) -> PruneReport:
    """Prune expired rows, then erase the deleted users whose grace period is over."""
    pool = await asyncpg.create_pool(asyncpg_dsn(settings.database_url), min_size=1, max_size=2)
    try:
        pruned = await prune_expired(pool, settings)
        erased = await erase_deleted_users(
            pool,
            broker or broker_for(settings.broker_url, settings.kafka_security),
            settings.stream,
            grace=settings.erasure_grace,
            batch_users=settings.erasure_batch_users,
        )
    finally:
        await pool.close()
    return PruneReport(pruned, erased)
