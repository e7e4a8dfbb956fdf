"""`userbus events asyncapi`: the AsyncAPI 3.0 document of the channels (docs/asyncapi.json)."""

from importlib.metadata import version
from pathlib import Path
from typing import Annotated

import typer

from infra.asyncapi import TopicDefaults, asyncapi_document, asyncapi_json
from producers.settings import RelaySettings


def topic_defaults() -> TopicDefaults:
    """The layout a relay gives a Kafka topic it creates, when no variable changes it."""
    fields = RelaySettings.model_fields
    return TopicDefaults(
        partitions=fields["kafka_partitions"].default,
        replicas=fields["kafka_replication_factor"].default,
        retention_hours=fields["kafka_retention_hours"].default,
    )


def current_asyncapi_json() -> str:
    """The document of this code, as `docs/asyncapi.json` must hold it."""
    # The defaults, never this process's environment: the committed copy is the same on
    # every machine, and the test that compares it with the code passes anywhere.
    document = asyncapi_document(version=version("userbus"), topics=topic_defaults())
    return asyncapi_json(document)


def asyncapi_command(
    output: Annotated[
        Path | None, typer.Option(help="write the document to this file instead of stdout")
    ] = None,
) -> None:
    """Write the AsyncAPI 3.0 document of the streams/topics and their events (JSON)."""
    text = current_asyncapi_json()
    if output is None:
        typer.echo(text, nl=False)
        return
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        typer.echo(f"userbus: cannot write {output}: {exc.strerror}", err=True)
        raise SystemExit(1) from None
    typer.echo(f"wrote {output}", err=True)
