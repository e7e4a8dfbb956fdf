"""Helpers of the MFA tests: enrolling a user over HTTP, and computing TOTP codes."""

import time
from typing import Any

import httpx
import pyotp

from tests.integration.helpers import bearer

PASSWORD = "a long passphrase"


def totp_code(secret: str, steps_ahead: int = 0) -> str:
    """The code of the current time step (or one `steps_ahead`), as an authenticator shows it."""
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(time.time()) + steps_ahead)


async def start_enrolment(client: httpx.AsyncClient, token: str) -> dict[str, Any]:
    """POST /auth/mfa/totp; its body."""
    response = await client.post("/auth/mfa/totp", headers=bearer(token))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def enrol(client: httpx.AsyncClient, token: str) -> tuple[str, list[str]]:
    """Turn TOTP on for the token's user: (secret, recovery codes).

    The confirming code is of the current step, so that step is used up afterwards.
    """
    secret = (await start_enrolment(client, token))["secret"]
    response = await client.post(
        "/auth/mfa/totp/confirm", json={"code": totp_code(secret)}, headers=bearer(token)
    )
    assert response.status_code == 200, response.text
    codes: list[str] = response.json()["recovery_codes"]
    return secret, codes


async def challenge(client: httpx.AsyncClient, username: str, password: str = PASSWORD) -> str:
    """Log in as an MFA user; the challenge the password gets."""
    response = await client.post("/auth/login", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["mfa_required"] is True, body
    value: str = body["challenge"]
    return value


async def verify(client: httpx.AsyncClient, challenge_: str, code: str) -> httpx.Response:
    """POST /auth/mfa/verify."""
    return await client.post("/auth/mfa/verify", json={"challenge": challenge_, "code": code})
