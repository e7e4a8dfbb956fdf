"""What the compose files and the Kubernetes manifests are checked against: the real CLI and
the real settings classes."""

import contextlib
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from pydantic_settings import BaseSettings
from starlette.routing import Match

from auth.main import create_app
from auth.maintenance.settings import PruneSettings
from auth.settings import AuthSettings
from consumers.replay.settings import ReplaySettings
from consumers.settings import ConsumerSettings
from infra.observability.probe_server import PATHS
from infra.settings import DatabaseSettings, UserbusSettings
from producers.settings import RelaySettings
from userbus.cli import REGISTRATION_SAGA, app
from userbus.dev import DevSettings
from userbus.operations import TopicSettings
from userbus.projections import PROJECTIONS

SETTINGS_CLASSES: tuple[type[BaseSettings], ...] = (
    AuthSettings,
    RelaySettings,
    ConsumerSettings,
    ReplaySettings,
    DevSettings,
    DatabaseSettings,
    UserbusSettings,
    TopicSettings,
    PruneSettings,
)
# The settings class each command builds from the environment (see userbus/cli.py).
SETTINGS_OF_COMMAND: dict[str, type[BaseSettings]] = {
    "dev": DevSettings,
    "migrate": DatabaseSettings,
    "kafka": TopicSettings,
    "api": AuthSettings,
    "relay": RelaySettings,
    "consume": ConsumerSettings,
    "replay": ReplaySettings,
    "prune": PruneSettings,
}

# Names that other engineers of issue 12 add on their own branches: the deploy files use
# them already, and this branch's code cannot show them. Delete each entry once its branch
# is merged (the tests then check the name against the code like every other).
# What the relays and consumers serve on USERBUS_METRICS_PORT.
WORKER_HEALTH_PATHS = PATHS


def api_serves(path: str) -> bool:
    """Whether the API answers GET `path` with a route of its own."""
    app = create_app(AuthSettings(database_url="postgresql://userbus@localhost/userbus"))
    scope = {"type": "http", "method": "GET", "path": path, "root_path": "", "headers": []}
    return any(route.matches(scope)[0] is Match.FULL for route in app.router.routes)


def valid_setting_names() -> set[str]:
    """Every USERBUS_* variable some settings class reads."""
    names = set()
    for settings_class in SETTINGS_CLASSES:
        prefix = settings_class.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in settings_class.model_fields}
    return names


def command_problem(where: str, words: list[str]) -> str | None:
    """Why `userbus WORDS` would not run as written, or None if the CLI accepts it."""
    command = typer.main.get_command(app)
    name = "userbus"
    remaining = list(words)
    # Down the groups (`userbus kafka init`): the groups take no options of their own.
    while isinstance(command, typer.core.TyperGroup):
        if not remaining:
            return f"{where}: `userbus {shlex.join(words)}` names no command"
        name, *remaining = remaining
        found = command.commands.get(name)
        if found is None:
            return f"{where}: `{name}` is not one of {sorted(command.commands)}"
        command = found
    try:
        # Parses and converts as `userbus` would, without running; parsing eats the list.
        context = command.make_context(name, remaining)
    except typer.TyperException as exc:
        return f"{where}: `userbus {shlex.join(words)}`: {exc}"
    subcommand = words[0]
    params = context.params
    runnable = {*PROJECTIONS, REGISTRATION_SAGA} if subcommand == "consume" else PROJECTIONS
    if subcommand in {"consume", "replay"} and params["name"] not in runnable:
        return f"{where}: no projection {params['name']!r}, only {list(PROJECTIONS)}"
    return None


@contextlib.contextmanager
def only_environment(environment: dict[str, str], *, cwd: Path) -> Iterator[None]:
    """Within the block, USERBUS_* variables are exactly `environment`, and no .env is found."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in [v for v in os.environ if v.upper().startswith("USERBUS_")]:
            patch.delenv(variable)
        for variable, value in environment.items():
            patch.setenv(variable, value)
        patch.chdir(cwd)
        yield
