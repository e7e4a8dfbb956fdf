"""Two API processes sharing PostgreSQL and Redis: what one ends, the other refuses at once.

Each test first has instance B serve the token several times (whatever B keeps per process
is then warm), makes the change through instance A, and sends B the very next request.
"""

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import TEST_BCRYPT_ROUNDS, free_port, make_auth_settings, unique_username
from tests.integration.helpers import bearer, login_pair, register
from userbus.admin import create_first_admin

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.slow]

PASSWORD = "a long passphrase"


@asynccontextmanager
async def api_process(settings: AuthSettings, data_dir: Path) -> AsyncIterator[httpx.AsyncClient]:
    """`userbus api` in a process of its own on a free port; a client of it once healthy."""
    port = free_port()
    env = {
        **os.environ,
        "USERBUS_ENVIRONMENT": "test",
        "USERBUS_DATABASE_URL": settings.database_url,
        "USERBUS_JWT_PRIVATE_KEY_FILE": str(settings.jwt_private_key_file),
        "USERBUS_BCRYPT_ROUNDS": str(TEST_BCRYPT_ROUNDS),
        "USERBUS_REDIS_URL": settings.redis_url,
        "USERBUS_REDIS_KEY_PREFIX": settings.redis_key_prefix,
        "USERBUS_DATA_DIR": str(data_dir),
        "USERBUS_LOG_LEVEL": "WARNING",
    }
    await asyncio.to_thread(data_dir.mkdir, parents=True, exist_ok=True)
    log = data_dir / "api.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "userbus", "api", "--port", str(port),
            env=env, cwd=data_dir, stdout=out, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            deadline = time.monotonic() + 60
            while True:
                assert process.returncode is None, log.read_text()
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, "the API did not become healthy"
                await asyncio.sleep(0.1)
            yield client
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), timeout=15)


@dataclass(frozen=True)
class Instances:
    """Two API processes on one database and Redis, and their shared settings."""

    a: httpx.AsyncClient
    b: httpx.AsyncClient
    settings: AuthSettings


@pytest.fixture(scope="module")
async def instances(
    database_url: str, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Instances]:
    """Instances A and B, started once for this module's tests."""
    root = tmp_path_factory.mktemp("instances")
    settings = make_auth_settings(database_url, key_file, root)
    async with (
        api_process(settings, root / "a") as a,
        api_process(settings, root / "b") as b,
    ):
        yield Instances(a=a, b=b, settings=settings)


async def signed_up(instances: Instances) -> tuple[str, dict[str, str]]:
    """A new user, registered and logged in on A: (username, token pair)."""
    name = unique_username()
    await register(instances.a, name, PASSWORD)
    return name, await login_pair(instances.a, name, PASSWORD)


async def admin_token(instances: Instances) -> str:
    """The access token of a new admin, logged in on A."""
    name = unique_username("admin")
    await create_first_admin(
        instances.settings, username=name, email=f"{name}@example.com", password=PASSWORD
    )
    return str((await login_pair(instances.a, name, PASSWORD))["access_token"])


async def served_by_b(instances: Instances, token: str, name: str) -> None:
    """B accepts the token, on /users/me and on a route that only needs the principal."""
    for _ in range(5):
        assert (await instances.b.get("/users/me", headers=bearer(token))).status_code == 200
        own = await instances.b.get(f"/users/{name}", headers=bearer(token))
        assert own.status_code == 200


async def refused_by_b(instances: Instances, token: str, name: str) -> None:
    """B's very next requests with the token are 401s that say why."""
    me = await instances.b.get("/users/me", headers=bearer(token))
    own = await instances.b.get(f"/users/{name}", headers=bearer(token))
    assert (me.status_code, own.status_code) == (401, 401)
    assert me.json()["detail"]["code"] == own.json()["detail"]["code"]
    assert me.headers["www-authenticate"] == "Bearer"


async def test_a_session_logged_out_on_one_instance_is_refused_by_the_other_at_once(
    instances: Instances,
) -> None:
    name, pair = await signed_up(instances)
    await served_by_b(instances, pair["access_token"], name)

    logout = await instances.a.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})

    assert logout.status_code == 204
    await refused_by_b(instances, pair["access_token"], name)


async def test_a_user_deleted_on_one_instance_is_refused_by_the_other_at_once(
    instances: Instances,
) -> None:
    name, pair = await signed_up(instances)
    token = pair["access_token"]
    await served_by_b(instances, token, name)

    deleted = await instances.a.delete(f"/users/{name}", headers=bearer(token))

    assert deleted.status_code == 204
    await refused_by_b(instances, token, name)


async def test_a_user_disabled_on_one_instance_is_refused_by_the_other_at_once(
    instances: Instances,
) -> None:
    name, pair = await signed_up(instances)
    token = pair["access_token"]
    admin = await admin_token(instances)
    await served_by_b(instances, token, name)

    disabled = await instances.a.put(
        f"/users/{name}", json={"status": "disabled"}, headers=bearer(admin)
    )

    assert disabled.status_code == 200
    await refused_by_b(instances, token, name)


async def test_an_admin_demoted_on_one_instance_loses_the_rights_on_the_other_at_once(
    instances: Instances,
) -> None:
    demoted = await admin_token(instances)
    keeper = await admin_token(instances)
    me = (await instances.b.get("/users/me", headers=bearer(demoted))).json()
    assert (await instances.b.get("/users", headers=bearer(demoted))).status_code == 200

    changed = await instances.a.put(
        f"/users/{me['username']}", json={"role": "user"}, headers=bearer(keeper)
    )

    assert changed.status_code == 200
    listing = await instances.b.get("/users", headers=bearer(demoted))
    assert listing.status_code == 401
    assert "refresh" in listing.json()["detail"]["message"]
