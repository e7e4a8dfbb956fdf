"""SMTP over TLS against a real local server (aiosmtpd): implicit TLS and STARTTLS, verified."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from infra.mail import MailDeliveryError, MailSettings, SmtpMailer, mailer_from
from tests.integration.test_mailer import (
    PASSWORD,
    SENDER,
    USERNAME,
    SmtpServer,
    check_password,
    reset_message,
    run_server,
    text_of,
)
from tests.tls import Certificates, make_certificates

pytestmark = [
    pytest.mark.integration,
    # The SMTPS server allows AUTH without STARTTLS (see smtps_server); aiosmtpd warns.
    pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning"),
]


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """This test's CA and the server's certificate for 127.0.0.1."""
    return make_certificates(tmp_path)


@pytest.fixture
def smtps_server(certificates: Certificates) -> Iterator[SmtpServer]:
    """An SMTP server speaking TLS from the first byte (as on port 465), with AUTH."""
    yield from run_server(
        ssl_context=certificates.server_context(),
        authenticator=check_password,
        auth_required=True,
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this connection is TLS throughout.
        auth_require_tls=False,
    )


@pytest.fixture
def starttls_server(certificates: Certificates) -> Iterator[SmtpServer]:
    """An SMTP server that takes mail only after STARTTLS (as on port 587)."""
    yield from run_server(tls_context=certificates.server_context(), require_starttls=True)


def mailer(port: int, certificates: Certificates, **options: object) -> SmtpMailer:
    """A mailer of the settings' making, to 127.0.0.1:`port`, trusting the test CA."""
    settings = MailSettings.model_validate(
        {
            "mail_from": SENDER,
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_cafile": certificates.ca,
            **options,
        }
    )
    made = mailer_from(settings, Path("unused"))
    assert isinstance(made, SmtpMailer)
    made.timeout = 5
    return made


async def test_implicit_tls_delivers(smtps_server: SmtpServer, certificates: Certificates) -> None:
    message = reset_message()

    credentials = {"smtp_username": USERNAME, "smtp_password": PASSWORD}
    await mailer(smtps_server.port, certificates, smtp_implicit_tls=True, **credentials).send(
        message
    )

    (received,) = smtps_server.handler.received
    assert received.auth_data == (USERNAME.encode(), PASSWORD.encode())
    assert text_of(received.email) == message.body


async def test_starttls_delivers(starttls_server: SmtpServer, certificates: Certificates) -> None:
    message = reset_message()

    await mailer(starttls_server.port, certificates, smtp_starttls=True).send(message)

    (received,) = starttls_server.handler.received
    assert text_of(received.email) == message.body


async def test_plain_smtp_is_refused_where_starttls_is_required(
    starttls_server: SmtpServer, certificates: Certificates
) -> None:
    plain = mailer(starttls_server.port, certificates, smtp_starttls=False)

    with pytest.raises(MailDeliveryError, match="STARTTLS"):
        await plain.send(reset_message())

    assert starttls_server.handler.received == []


async def test_each_mode_is_the_one_configured(
    smtps_server: SmtpServer, starttls_server: SmtpServer, certificates: Certificates
) -> None:
    # A STARTTLS mailer cannot talk to an SMTPS port, nor an SMTPS mailer to a STARTTLS one:
    # each speaks its own mode, never quietly the other.
    with pytest.raises(MailDeliveryError):
        await mailer(smtps_server.port, certificates, smtp_starttls=True).send(reset_message())
    with pytest.raises(MailDeliveryError, match="SSL"):
        await mailer(starttls_server.port, certificates, smtp_implicit_tls=True).send(
            reset_message()
        )

    assert smtps_server.handler.received == starttls_server.handler.received == []


async def test_a_server_certificate_of_an_unknown_ca_is_refused(
    smtps_server: SmtpServer, tmp_path: Path
) -> None:
    (tmp_path / "other").mkdir()
    strangers = make_certificates(tmp_path / "other")
    wrong_ca = mailer(smtps_server.port, strangers, smtp_implicit_tls=True)

    with pytest.raises(MailDeliveryError, match="CERTIFICATE_VERIFY_FAILED"):
        await wrong_ca.send(reset_message())

    assert smtps_server.handler.received == []
