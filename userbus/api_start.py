"""What `userbus api` checks and takes before it serves: its signing key, its own HTTPS files."""

from pathlib import Path
from typing import Annotated

import typer

from auth.security.tokens import load_signing_key
from auth.settings import AuthSettings
from userbus.run import ApiTls

SslCertFile = Annotated[
    Path | None,
    typer.Option(
        envvar="USERBUS_API_SSL_CERTFILE",
        exists=True,
        dir_okay=False,
        help="serve HTTPS with this certificate (PEM, chain included)",
    ),
]
SslKeyFile = Annotated[
    Path | None,
    typer.Option(
        envvar="USERBUS_API_SSL_KEYFILE",
        exists=True,
        dir_okay=False,
        help="the certificate's private key (PEM)",
    ),
]


def api_tls(certfile: Path | None, keyfile: Path | None) -> ApiTls | None:
    """HTTPS when both files are given, plain HTTP when neither; one alone is a usage error."""
    if certfile is None and keyfile is None:
        return None
    if certfile is None or keyfile is None:
        raise typer.BadParameter("--ssl-certfile and --ssl-keyfile go together")
    return ApiTls(certfile, keyfile)


def refuse_unusable_key(settings: AuthSettings) -> None:
    """In production, exit 2 with one line unless the signing key loads and is strong enough.

    Loaded again by the app's lifespan; here a bad key is a clear message, not a traceback
    of a failed start-up. Outside production the lifespan may still generate a key.
    """
    if settings.environment != "production":
        return
    try:
        load_signing_key(settings)
    except (OSError, ValueError) as exc:
        variable = "USERBUS_JWT_PRIVATE_KEY" + ("" if settings.jwt_private_key else "_FILE")
        typer.echo(f"userbus: configuration error: {variable}: {exc}", err=True)
        raise SystemExit(2) from None
