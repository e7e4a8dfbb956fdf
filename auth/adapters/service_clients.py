"""Where service clients are kept: `auth.service_clients`, secrets only as digests."""

import secrets
from datetime import datetime
from typing import Any, Protocol
from uuid import uuid4

from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from auth.adapters.orm import SERVICE_NAME_INDEX, service_clients
from auth.adapters.secrets import new_secret
from auth.domain.errors import ServiceNameTakenError
from auth.domain.service_clients import ServiceClient


class ServiceClientRepository(Protocol):
    """Service clients; each call is a transaction of its own (one statement each)."""

    async def add(self, name: str, *, scope: str, now: datetime) -> tuple[ServiceClient, str]:
        """A new client and its secret, which is returned here and never again."""
        ...

    async def list(self) -> list[ServiceClient]:
        """Every client, revoked ones too, oldest first."""
        ...

    async def revoke(self, name: str, *, now: datetime) -> ServiceClient | None:
        """Revoke the active client of this name; None if there is none."""
        ...

    async def find(self, client_id: str) -> tuple[ServiceClient, bytes] | None:
        """The client with this id and its secret's digest."""
        ...


class SqlAlchemyServiceClientRepository:
    """ServiceClientRepository on PostgreSQL."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def add(self, name: str, *, scope: str, now: datetime) -> tuple[ServiceClient, str]:
        """Insert a client with a random public id and a random 256-bit secret."""
        secret, secret_hash = new_secret()
        client = ServiceClient(
            id=uuid4(), name=name, client_id=secrets.token_hex(16), scope=scope, created_at=now
        )
        try:
            async with self._engine.begin() as conn:
                await conn.execute(
                    insert(service_clients).values(
                        id=client.id, name=name, client_id=client.client_id,
                        secret_hash=secret_hash, scope=scope, created_at=now,
                    )
                )  # fmt: skip
        except IntegrityError as exc:
            if SERVICE_NAME_INDEX in str(exc.orig):
                raise ServiceNameTakenError(name) from exc
            raise
        return client, secret

    async def list(self) -> list[ServiceClient]:
        """Every client, oldest first."""
        async with self._engine.connect() as conn:
            rows = await conn.execute(
                select(service_clients).order_by(service_clients.c.created_at)
            )
            return [_client(row._mapping) for row in rows]

    async def revoke(self, name: str, *, now: datetime) -> ServiceClient | None:
        """Set `revoked_at` on the active client of this name."""
        async with self._engine.begin() as conn:
            row = (
                await conn.execute(
                    update(service_clients)
                    .where(
                        func.lower(service_clients.c.name) == name.lower(),
                        service_clients.c.revoked_at.is_(None),
                    )
                    .values(revoked_at=now)
                    .returning(*service_clients.c)
                )
            ).first()
        return None if row is None else _client(row._mapping)

    async def find(self, client_id: str) -> tuple[ServiceClient, bytes] | None:
        """The client and its secret's digest, by client id."""
        async with self._engine.connect() as conn:
            row = (
                await conn.execute(
                    select(service_clients).where(service_clients.c.client_id == client_id)
                )
            ).first()
        return None if row is None else (_client(row._mapping), row.secret_hash)


def _client(row: Any) -> ServiceClient:
    return ServiceClient(
        id=row["id"],
        name=row["name"],
        client_id=row["client_id"],
        scope=row["scope"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )
