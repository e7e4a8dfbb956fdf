"""The container setup runs real `userbus` commands, configured only by settings that exist."""

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped,unused-ignore]
from pydantic import ValidationError

from consumers.settings import ConsumerSettings
from tests.conftest import ADMIN_URL, free_port
from tests.integration.deploy_checks import (
    SETTINGS_OF_COMMAND,
    WORKER_HEALTH_PATHS,
    api_serves,
    command_problem,
    only_environment,
    valid_setting_names,
)

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DOCKER_COMPOSE = "docker-compose"
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
    problems = [
        problem
        for name, service in userbus_services.items()
        if (problem := command_problem(name, _command(name, service))) is not None
    ]
    assert not problems, "\n".join(problems)


def test_services_set_only_settings_that_exist(
    userbus_services: dict[str, dict[str, Any]],
) -> None:
    valid = valid_setting_names()
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
            with only_environment(environment, cwd=tmp_path):
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


ONE_SHOT = ["NONE"]  # how docker-compose writes `healthcheck: {disable: true}`


def _one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "")) == "no"


def test_every_service_has_a_healthcheck(compose_config: dict[str, Any]) -> None:
    problems = []
    for name, service in compose_config["services"].items():
        check = service.get("healthcheck")
        if check is None:
            problems.append(f"{name}: no healthcheck")
        elif _one_shot(service) and check.get("test") != ONE_SHOT:
            problems.append(f"{name}: runs once; its healthcheck should be disabled")
        elif not _one_shot(service) and check.get("test", ONE_SHOT) == ONE_SHOT:
            problems.append(f"{name}: runs for good but checks nothing")
    assert not problems, "\n".join(problems)


def _health_url(check: dict[str, Any]) -> str | None:
    found = re.search(r"urlopen\('(http://[^']+)'", " ".join(check["test"]))
    return found.group(1) if found else None


def test_http_healthchecks_ask_the_port_and_path_the_process_serves(
    userbus_services: dict[str, dict[str, Any]],
) -> None:
    problems, asked = [], set()
    for name, service in userbus_services.items():
        url = _health_url(service["healthcheck"]) if not _one_shot(service) else None
        if url is None:
            continue
        asked.add(name)
        words = _command(name, service)
        found = re.fullmatch(r"http://127\.0\.0\.1:(\d+)(/\S*)", url)
        assert found, f"{name}: {url} is not a loopback URL"
        port, path = found.groups()
        if words[0] == "api":
            expected, served = words[words.index("--port") + 1], api_serves(path)
        else:
            expected = service["environment"].get("USERBUS_METRICS_PORT")
            served = path in WORKER_HEALTH_PATHS
        if port != str(expected) or not served:
            problems.append(f"{name}: asks {url}; serves port {expected}, {path} served: {served}")
    assert not problems, "\n".join(problems)
    assert {"api", "relay", "profiles", "profile-answers", "registrations"} <= asked


def _run_check(check: dict[str, Any], *, environment: dict[str, str] | None = None) -> int:
    kind, *argv = check["test"]
    # The image has python, and no shell tools (no curl, no sh -c needed).
    assert kind == "CMD"
    assert argv[0] == "python"
    result = subprocess.run(
        [sys.executable, *argv[1:]],
        env={**os.environ, **(environment or {})},
        capture_output=True,
        timeout=30,
        check=False,
    )
    return result.returncode


@pytest.fixture(scope="module")
def worker_healthcheck(userbus_services: dict[str, dict[str, Any]]) -> dict[str, Any]:
    check: dict[str, Any] = userbus_services["relay"]["healthcheck"]
    return check


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_http_healthcheck_fails_unless_the_answer_is_2xx(
    worker_healthcheck: dict[str, Any], status: int, healthy: bool
) -> None:
    with _answering(status) as port:
        check = _on_port(worker_healthcheck, port)
        assert (_run_check(check) == 0) is healthy


def test_http_healthcheck_fails_when_nothing_answers(worker_healthcheck: dict[str, Any]) -> None:
    assert _run_check(_on_port(worker_healthcheck, free_port())) != 0


def _on_port(check: dict[str, Any], port: int) -> dict[str, Any]:
    # The command as written, pointed at a port of this test (9100 may be anyone's here).
    test = [re.sub(r"127\.0\.0\.1:\d+", f"127.0.0.1:{port}", word) for word in check["test"]]
    return {**check, "test": test}


@contextlib.contextmanager
def _answering(status: int) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_prune_healthcheck_is_healthy_while_postgres_answers(
    userbus_services: dict[str, dict[str, Any]],
) -> None:
    check = userbus_services["prune"]["healthcheck"]
    assert _run_check(check, environment={"USERBUS_DATABASE_URL": ADMIN_URL}) == 0
    unreachable = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    assert _run_check(check, environment={"USERBUS_DATABASE_URL": unreachable}) != 0


def test_the_profile_consumer_heals_from_the_log_of_the_database_it_shares(
    userbus_services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    environment = {k: str(v) for k, v in userbus_services["profiles"]["environment"].items()}
    with only_environment(environment, cwd=tmp_path):
        settings = ConsumerSettings()
    assert settings.event_log_url is not None
    assert settings.event_log_url == settings.database_url
