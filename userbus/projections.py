"""The projections the `userbus` command can run and replay, by name."""

from typing import Annotated

import typer

from consumers.errors import UnknownProjectionError
from consumers.projection import Projection
from downstream_examples.audit.projection import AuditProjection
from downstream_examples.lazy_directory.projection import DirectoryProjection
from downstream_examples.notifier.projection import NotifierProjection
from downstream_examples.profiles.projection import ProfileProjection

PROJECTIONS: dict[str, type[Projection]] = {
    projection.name: projection
    for projection in (ProfileProjection, AuditProjection, NotifierProjection, DirectoryProjection)
}


def projection_named(name: str) -> Projection:
    """A new instance of the projection called `name`."""
    try:
        return PROJECTIONS[name]()
    except KeyError:
        raise UnknownProjectionError(name, list(PROJECTIONS)) from None


def known_projection(name: str) -> str:
    """`name` if a projection has it; a usage error naming the known ones otherwise."""
    if name not in PROJECTIONS:
        raise typer.BadParameter(f"no projection {name!r}; known: {', '.join(sorted(PROJECTIONS))}")
    return name


ProjectionName = Annotated[
    str,
    typer.Argument(help=f"one of: {', '.join(PROJECTIONS)}", callback=known_projection),
]
