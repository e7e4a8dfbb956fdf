"""`userbus api --ssl-certfile --ssl-keyfile`: HTTPS served by uvicorn itself, no ingress."""

from pathlib import Path
from typing import Annotated

import typer

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
