"""`userbus service ...`: the client credentials of services that read the event feed."""

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import typer
from sqlalchemy.ext.asyncio import create_async_engine

from auth.bootstrap import build_service_clients
from auth.domain.errors import AuthError
from auth.domain.service_clients import ServiceClient
from auth.service_layer.service_clients import (
    ServiceClients,
    create_service_client,
    list_service_clients,
    revoke_service_client,
)
from infra.settings import DatabaseSettings

services_app = typer.Typer(
    help="Service clients: credentials for reading the event feed (GET /events).",
    no_args_is_help=True,
)
T = TypeVar("T")


def _run(work: Callable[[ServiceClients], Awaitable[T]]) -> T:
    """Run `work` on the auth database; a domain error ends the command with its message."""

    async def main() -> T:
        engine = create_async_engine(DatabaseSettings().database_url)
        try:
            return await work(build_service_clients(engine))
        finally:
            await engine.dispose()

    try:
        return asyncio.run(main())
    except AuthError as exc:  # a taken or invalid name, an unknown client: say which
        typer.echo(f"userbus: {exc.message}", err=True)
        raise SystemExit(1) from None


@services_app.command("create")
def create(name: str) -> None:
    """Create a client for the service NAME; its secret is printed this once, never again."""
    client, secret = _run(lambda ctx: create_service_client(ctx, name=name))
    typer.echo(f"name:          {client.name}")
    typer.echo(f"client_id:     {client.client_id}")
    typer.echo(f"client_secret: {secret}")
    typer.echo(f"scope:         {client.scope}")
    typer.echo("The secret is shown only now: store it where the service reads its secrets.")


@services_app.command("list")
def list_command() -> None:
    """Every client with its client id, creation time and, if revoked, when."""
    clients = _run(list_service_clients)
    if not clients:
        typer.echo("no service clients")
        return
    for client in clients:
        typer.echo(_line(client))


@services_app.command("revoke")
def revoke(name: str) -> None:
    """Revoke the client of NAME: its tokens stop working at once."""
    client = _run(lambda ctx: revoke_service_client(ctx, name=name))
    typer.echo(f"revoked {client.name} ({client.client_id})")


def _line(client: ServiceClient) -> str:
    state = f"revoked {client.revoked_at:%Y-%m-%d %H:%M:%S}" if client.revoked_at else "active"
    created = f"{client.created_at:%Y-%m-%d %H:%M:%S}"
    return f"{client.name}\t{client.client_id}\t{client.scope}\tcreated {created}\t{state}"
