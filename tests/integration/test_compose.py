"""The container setup runs real `userbus` commands, configured only by settings that exist."""

import contextlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import typer
import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError
from pydantic_settings import BaseSettings

from auth.maintenance.settings import PruneSettings
from auth.settings import AuthSettings
from consumers.replay.settings import ReplaySettings
from consumers.settings import ConsumerSettings
from infra.settings import DatabaseSettings, UserbusSettings
from producers.settings import RelaySettings
from userbus.cli import REGISTRATION_SAGA, app
from userbus.dev import DevSettings
from userbus.operations import TopicSettings
from userbus.projections import PROJECTIONS

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKER_COMPOSE = "docker-compose"
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
SECRETS_DIR = PurePosixPath("/run/secrets")


@pytest.fixture(
    scope="module",
    params=[("docker-compose.yml",), ("docker-compose.yml", "docker-compose.kafka.yml")],
    ids=["valkey", "kafka"],
)
def compose_config(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The compose files as docker-compose 1.29 resolves them: alone, and with Kafka."""
    if shutil.which(DOCKER_COMPOSE) is None:
        pytest.fail(
            "docker-compose is not installed: run `make test`, which installs it, "
            "or `apt-get install docker-compose`"
        )
    # An empty env file, so a developer's .env cannot change what the file resolves to. The
    # secret file (secrets/jwt_private_key.pem) need not exist: `config` does not read it.
    env_file = tmp_path_factory.mktemp("compose") / "empty.env"
    # The one variable the file requires (production mode refuses a placeholder password).
    env_file.write_text("POSTGRES_PASSWORD=7f3c-compose-test-password\n")
    files = [arg for name in request.param for arg in ("--file", name)]
    result = subprocess.run(
        [DOCKER_COMPOSE, "--env-file", str(env_file), *files, "config"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"docker-compose rejects {request.param}:\n{result.stderr}"
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


@pytest.fixture(scope="module")
def userbus_services(compose_config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services whose image is built from the project's Dockerfile."""
    services: dict[str, dict[str, Any]] = compose_config["services"]
    built = {name: s for name, s in services.items() if _built_from_dockerfile(s)}
    assert built, "no service is built from the Dockerfile"
    return built


def _built_from_dockerfile(service: dict[str, Any]) -> bool:
    build = service.get("build")
    if build is None:
        return False
    context = build if isinstance(build, str) else build["context"]
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    return Path(context).resolve() == PROJECT_ROOT and dockerfile == "Dockerfile"


def _command(name: str, service: dict[str, Any]) -> list[str]:
    command = service.get("command")
    assert command, f"service {name} relies on the image's default command; name it"
    return shlex.split(command) if isinstance(command, str) else [str(word) for word in command]


def _valid_setting_names() -> set[str]:
    names = set()
    for settings_class in SETTINGS_CLASSES:
        prefix = settings_class.model_config.get("env_prefix", "")
        names |= {f"{prefix}{field}".upper() for field in settings_class.model_fields}
    return names


def test_docker_compose_accepts_the_file(compose_config: dict[str, Any]) -> None:
    assert {"postgres", "valkey", "migrate", "api", "relay", "profiles"} <= set(
        compose_config["services"]
    )


def test_every_process_of_the_system_has_a_service(
    userbus_services: dict[str, dict[str, Any]],
) -> None:
    commands = {_command(name, s)[0] for name, s in userbus_services.items()}
    assert {"migrate", "api", "relay", "consume"} <= commands


def test_services_run_real_userbus_commands(userbus_services: dict[str, dict[str, Any]]) -> None:
    cli = typer.main.get_command(app)
    assert isinstance(cli, typer.core.TyperGroup)
    problems = []
    for name, service in userbus_services.items():
        subcommand, *arguments = _command(name, service)
        command = cli.commands.get(subcommand)
        if command is None:
            problems.append(f"{name}: `userbus {subcommand}` is not one of {sorted(cli.commands)}")
            continue
        try:
            # Parses and converts as `userbus` would, without running; parsing eats the list.
            params = command.make_context(subcommand, list(arguments)).params
        except typer.TyperException as exc:
            problems.append(f"{name}: `userbus {subcommand} {shlex.join(arguments)}`: {exc}")
            continue
        runnable = {*PROJECTIONS, REGISTRATION_SAGA} if subcommand == "consume" else PROJECTIONS
        if subcommand in {"consume", "replay"} and params["name"] not in runnable:
            problems.append(f"{name}: no projection {params['name']!r}, only {list(PROJECTIONS)}")
    assert not problems, "\n".join(problems)


def test_services_set_only_settings_that_exist(
    userbus_services: dict[str, dict[str, Any]],
) -> None:
    valid = _valid_setting_names()
    unknown = {
        f"{name}: {variable}"
        for name, service in userbus_services.items()
        for variable in service.get("environment", {})
        if variable.upper().startswith("USERBUS_") and variable.upper() not in valid
    }
    assert not unknown, f"no settings class reads {sorted(unknown)}; valid: {sorted(valid)}"


def test_each_service_environment_builds_its_settings(
    userbus_services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    problems = []
    for name, service in userbus_services.items():
        settings_class = SETTINGS_OF_COMMAND[_command(name, service)[0]]
        environment = {k: str(v) for k, v in service.get("environment", {}).items()}
        try:
            with _only_environment(environment, cwd=tmp_path):
                settings = settings_class()
        except ValidationError as exc:
            problems.append(f"{name}: {settings_class.__name__} rejects its environment: {exc}")
            continue
        key_file = getattr(settings, "jwt_private_key_file", None)
        if key_file is not None and PurePosixPath(key_file) not in _secret_mounts(service):
            problems.append(f"{name}: {key_file} is not a secret mounted in the service")
    assert not problems, "\n".join(problems)


def _secret_mounts(service: dict[str, Any]) -> set[PurePosixPath]:
    mounts = set()
    for secret in service.get("secrets", []):
        source = secret if isinstance(secret, str) else secret["source"]
        target = source if isinstance(secret, str) else secret.get("target", source)
        mounts.add(SECRETS_DIR / target)  # an absolute target replaces the directory
    return mounts


@contextlib.contextmanager
def _only_environment(environment: dict[str, str], *, cwd: Path) -> Iterator[None]:
    """Within the block, USERBUS_* variables are exactly `environment`, and no .env is found."""
    with pytest.MonkeyPatch.context() as patch:
        for variable in [v for v in os.environ if v.upper().startswith("USERBUS_")]:
            patch.delenv(variable)
        for variable, value in environment.items():
            patch.setenv(variable, value)
        patch.chdir(cwd)
        yield


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined and comments dropped."""
    logical, instructions = "", []
    for line in (PROJECT_ROOT / "Dockerfile").read_text().splitlines():
        if line.lstrip().startswith("#") or not line.strip():
            continue
        logical += line.rstrip()
        if logical.endswith("\\"):
            logical = logical[:-1] + " "
            continue
        instruction, _, arguments = logical.strip().partition(" ")
        instructions.append((instruction.upper(), arguments.strip()))
        logical = ""
    return instructions


def test_image_installs_the_lock_and_runs_userbus_as_non_root() -> None:
    instructions = _dockerfile_instructions()
    entrypoint = [json.loads(args) for kind, args in instructions if kind == "ENTRYPOINT"]
    assert entrypoint[-1:] == [["userbus"]]
    copies_lock = [
        i
        for i, (kind, args) in enumerate(instructions)
        if kind == "COPY" and "requirements.lock" in args.split()[:-1]
    ]
    installs_lock = [
        i
        for i, (kind, args) in enumerate(instructions)
        if kind == "RUN" and re.search(r"pip install [^&;|]*-r requirements\.lock", args)
    ]
    assert copies_lock, "the Dockerfile never copies requirements.lock"
    assert installs_lock, "the Dockerfile never runs pip install -r requirements.lock"
    assert copies_lock[0] < installs_lock[0]
    installs_project = r"pip install [^&;|]*--no-deps [^&;|]*\.(\s|$)"
    assert any(re.search(installs_project, a) for k, a in instructions if k == "RUN")
    users = [args for kind, args in instructions if kind == "USER"]
    assert users, "the image runs as root"
    assert users[-1].partition(":")[0] not in {"root", "0"}


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last match wins).

    An approximation of Docker's rules that errs towards "ignored": a pattern matches the
    path or any directory above it, and a leading `**/` also matches at the top.
    """
    parents = ["/".join(path.split("/")[:n]) for n in range(1, path.count("/") + 2)]
    ignored = False
    for line in patterns:
        negated = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        if any(fnmatchcase(p, q) for p in parents for q in {pattern, pattern.removeprefix("**/")}):
            ignored = not negated
    return ignored


def _build_inputs() -> Iterator[str]:
    """Every file `pip install .` and the lock install read from the build context."""
    pyproject = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())
    yield from ("pyproject.toml", "requirements.lock", pyproject["project"]["readme"])
    for include in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        package = PROJECT_ROOT / include.rstrip("*")
        for file in package.rglob("*"):
            if file.is_file() and "__pycache__" not in file.parts:
                yield file.relative_to(PROJECT_ROOT).as_posix()


def test_dockerignore_keeps_what_the_build_needs() -> None:
    lines = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert [path for path in _build_inputs() if _ignored(path, patterns)] == []
    assert _ignored(".env", patterns)
    assert _ignored("secrets/jwt_private_key.pem", patterns)
