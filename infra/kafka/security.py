"""TLS and SASL for managed Kafka: the settings, and the options every aiokafka client gets.

Every producer, consumer and admin client the project builds takes its connection options
from `client_options`, so a cluster that wants TLS or SASL gets it on every connection.
No aiokafka import here: the settings load without the client library.
"""

import ssl
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, SecretStr, model_validator

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


@dataclass(frozen=True)
class KafkaSecurity:
    """How to connect: the protocol, TLS files, SASL mechanism and credentials."""

    protocol: SecurityProtocol = "PLAINTEXT"
    cafile: Path | None = None
    certfile: Path | None = None
    keyfile: Path | None = None
    sasl_mechanism: SaslMechanism | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        tls = self.protocol in ("SSL", "SASL_SSL")
        sasl = self.protocol.startswith("SASL_")
        if not tls and any((self.cafile, self.certfile, self.keyfile)):
            raise ValueError(f"TLS files need the protocol SSL or SASL_SSL, not {self.protocol}")
        if self.keyfile is not None and self.certfile is None:
            raise ValueError("a client key (KAFKA_SSL_KEYFILE) needs its certificate")
        if sasl and not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
            raise ValueError(f"{self.protocol} needs a SASL mechanism, username and password")
        if not sasl and (self.sasl_mechanism or self.sasl_username or self.sasl_password):
            raise ValueError(f"SASL settings need SASL_SSL or SASL_PLAINTEXT, not {self.protocol}")

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context: the CA file's (else the system's) roots, and the client certificate."""
        context = ssl.create_default_context(cafile=self.cafile)
        if self.certfile is not None:
            context.load_cert_chain(self.certfile, self.keyfile)
        return context


PLAINTEXT = KafkaSecurity()


def client_options(servers: Sequence[str], security: KafkaSecurity) -> dict[str, Any]:
    """The keyword arguments that connect an aiokafka client to the cluster."""
    options: dict[str, Any] = {"bootstrap_servers": list(servers)}
    if security.protocol == "PLAINTEXT":
        return options
    options["security_protocol"] = security.protocol
    if security.protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = security.ssl_context()
    if security.protocol.startswith("SASL_"):
        # aiokafka takes SCRAM's credentials in its sasl_plain_* arguments too.
        options["sasl_mechanism"] = security.sasl_mechanism
        options["sasl_plain_username"] = security.sasl_username
        options["sasl_plain_password"] = security.sasl_password
    return options


class KafkaSecuritySettings(BaseModel):
    """The Kafka connection fields of a process's settings (USERBUS_KAFKA_SECURITY_PROTOCOL, ...).

    Mixed into the settings of every process that talks to the broker; unused on Redis.
    """

    kafka_security_protocol: SecurityProtocol = "PLAINTEXT"
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_sasl_mechanism: SaslMechanism | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None

    @property
    def kafka_security(self) -> KafkaSecurity:
        """The connection options these settings describe."""
        password = self.kafka_sasl_password
        return KafkaSecurity(
            self.kafka_security_protocol,
            self.kafka_ssl_cafile,
            self.kafka_ssl_certfile,
            self.kafka_ssl_keyfile,
            self.kafka_sasl_mechanism,
            self.kafka_sasl_username,
            password.get_secret_value() if password is not None else None,
        )

    @model_validator(mode="after")
    def _consistent(self) -> "KafkaSecuritySettings":
        # A half-configured connection fails at the first connect, far from its cause.
        try:
            self.kafka_security  # noqa: B018 - built for its checks
        except ValueError as exc:
            raise ValueError(f"USERBUS_KAFKA_*: {exc}") from None
        return self
