"""Login timing: an unknown username costs as long as a wrong password, so names stay secret."""

import statistics
import time

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, register

pytestmark = [pytest.mark.integration, pytest.mark.slow]

# At cost 10 one bcrypt check takes tens of milliseconds: it dominates the few milliseconds of
# the database lookup and the request, as cost 12 does in production.
ROUNDS = 10
WARMUP = 3
SAMPLES = 15
TOLERANCE = 0.10


async def _timed_login(client: httpx.AsyncClient, username: str) -> tuple[float, httpx.Response]:
    started = time.perf_counter()
    response = await client.post(
        "/auth/login", json={"username": username, "password": "not the password at all"}
    )
    return time.perf_counter() - started, response


async def test_an_unknown_user_and_a_wrong_password_take_the_same_time(
    auth_settings: AuthSettings,
) -> None:
    """The medians of the two failed logins differ by less than 10 %, with the same answer."""
    settings = auth_settings.model_copy(
        update={
            "bcrypt_rounds": ROUNDS,
            # Every attempt here fails: the limiter must not answer 429 (and skip bcrypt).
            "login_limit_per_username": 1_000_000,
            "login_limit_per_address": 1_000_000,
        }
    )
    async with api_client(settings) as client:
        known = unique_username()
        await register(client, known)
        seconds: dict[str, list[float]] = {"unknown user": [], "wrong password": []}
        bodies: dict[str, set[str]] = {"unknown user": set(), "wrong password": set()}
        for index in range(WARMUP + SAMPLES):
            pair = [("unknown user", unique_username("nobody")), ("wrong password", known)]
            # Interleaved, and each kind goes first every other time: drift in the machine's
            # speed and any cost of going first weigh on both alike.
            for kind, username in pair if index % 2 == 0 else reversed(pair):
                elapsed, response = await _timed_login(client, username)
                assert response.status_code == 401, response.text
                bodies[kind].add(response.text)
                if index >= WARMUP:
                    seconds[kind].append(elapsed)

    assert bodies["unknown user"] == bodies["wrong password"]
    unknown = statistics.median(seconds["unknown user"])
    wrong = statistics.median(seconds["wrong password"])
    difference = abs(unknown - wrong) / max(unknown, wrong)
    assert difference < TOLERANCE, (
        f"median {unknown * 1000:.1f} ms for an unknown user, {wrong * 1000:.1f} ms for a wrong"
        f" password: {difference:.1%} apart"
    )
