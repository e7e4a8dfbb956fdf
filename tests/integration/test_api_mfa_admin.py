"""MFA beyond the login: an admin's reset, the events on the stream, what is stored, no key."""

import asyncio
import hashlib
import json

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from redis.asyncio import Redis
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from auth.settings import AuthSettings
from producers.main import create_relay
from producers.settings import RelaySettings
from tests.conftest import unique_username
from tests.integration.helpers import (
    api_client,
    bearer,
    broker_events,
    eventually,
    login,
    login_pair,
    register,
)
from tests.integration.mfa_helpers import PASSWORD, challenge, enrol, totp_code, verify
from tests.unit.fakes import CapturedAudit
from userbus.admin import create_first_admin

pytestmark = pytest.mark.integration


async def admin_token(client: httpx.AsyncClient, settings: AuthSettings) -> str:
    """A new admin's access token."""
    name = unique_username("admin")
    await create_first_admin(
        settings, username=name, email=f"{name}@example.com", password=PASSWORD
    )
    return str((await login_pair(client, name))["access_token"])


async def test_an_admin_resets_a_users_mfa_audited_and_the_password_is_enough_again(
    client: httpx.AsyncClient, auth_settings: AuthSettings, audit: CapturedAudit
) -> None:
    username = unique_username()
    await register(client, username)
    await enrol(client, await login(client, username))
    headers = bearer(await admin_token(client, auth_settings))

    response = await client.delete(f"/users/{username}/mfa", headers=headers)

    assert response.status_code == 204
    assert audit.lines("mfa_reset")[-1]["username"] == username
    assert "access_token" in (await client.post(
        "/auth/login", json={"username": username, "password": PASSWORD}
    )).json()  # fmt: skip
    again = await client.delete(f"/users/{username}/mfa", headers=headers)
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "mfa_not_enabled"
    unknown = await client.delete(f"/users/{unique_username()}/mfa", headers=headers)
    assert unknown.status_code == 404


async def test_a_user_may_not_reset_mfa_not_even_their_own(client: httpx.AsyncClient) -> None:
    username = unique_username()
    await register(client, username)
    token = await login(client, username)
    secret, _ = await enrol(client, token)

    response = await client.delete(f"/users/{username}/mfa", headers=bearer(token))

    assert response.status_code == 403
    assert await challenge(client, username)  # still two steps
    assert (await client.delete(f"/users/{username}/mfa")).status_code == 401
    assert secret


async def test_the_secret_is_stored_encrypted_and_recovery_codes_only_as_keyed_digests(
    client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    username = unique_username()
    user_id = (await register(client, username))["id"]
    secret, codes = await enrol(client, await login(client, username))

    engine = create_async_engine(auth_settings.database_url)
    try:
        async with engine.connect() as conn:
            stored = (await conn.execute(
                text("SELECT secret_ciphertext FROM auth.mfa_totp WHERE user_id = :u"),
                {"u": user_id},
            )).scalar_one()  # fmt: skip
            digests = (await conn.execute(
                text("SELECT code_hash FROM auth.mfa_recovery_codes WHERE user_id = :u"),
                {"u": user_id},
            )).scalars().all()  # fmt: skip
    finally:
        await engine.dispose()
    assert secret.encode() not in stored
    assert len(digests) == 10
    plain = {hashlib.sha256(c.replace("-", "").encode()).digest() for c in codes}
    assert not plain & set(digests)  # keyed (HMAC), not a bare hash


async def test_mfa_events_reach_the_stream_without_any_secret(
    isolated_auth_settings: AuthSettings, redis_url: str, stream: str
) -> None:
    relay = RelaySettings(
        database_url=isolated_auth_settings.database_url, broker_url=redis_url, stream=stream
    )
    stop = asyncio.Event()
    task = asyncio.create_task(create_relay(relay).run(stop))
    try:
        async with api_client(isolated_auth_settings) as client:
            username = unique_username()
            user_id = (await register(client, username))["id"]
            token = await login(client, username)
            secret, codes = await enrol(client, token)
            pair = (await verify(client, await challenge(client, username), codes[0])).json()
            disabled = await client.request(
                "DELETE", "/auth/mfa/totp", headers=bearer(pair["access_token"]),
                json={"password": PASSWORD, "code": totp_code(secret, 1)},
            )  # fmt: skip
            assert disabled.status_code == 204

        async def disabled_is_there() -> bool:
            types = [e["type"] for e in await broker_events(redis_url, stream)]
            return "MfaDisabled" in types

        await eventually(disabled_is_there)
    finally:
        stop.set()
        await task
    events = [e for e in await broker_events(redis_url, stream) if e["subject"] == user_id]
    enabled, disabled_event = (e for e in events if e["type"].startswith("Mfa"))
    assert enabled["type"] == "MfaEnabled"
    assert enabled["data"]["method"] == "totp"
    assert disabled_event["type"] == "MfaDisabled"
    assert disabled_event["data"]["reason"] == "user"
    assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
    wire = json.dumps(events)
    assert secret not in wire
    assert not any(code in wire or code.replace("-", "") in wire for code in codes)


async def test_production_without_an_mfa_key_answers_503_and_logins_still_work(
    auth_settings: AuthSettings,
) -> None:
    production = auth_settings.model_copy(update={"environment": "production"})
    async with api_client(production) as client:
        username = unique_username()
        await register(client, username)
        token = await login(client, username)
        response = await client.post("/auth/mfa/totp", headers=bearer(token))
    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "mfa_unavailable"


def test_a_malformed_mfa_key_refuses_to_start(auth_settings: AuthSettings) -> None:
    with pytest.raises(ValueError, match="USERBUS_MFA_ENCRYPTION_KEY"):
        AuthSettings.model_validate(
            {**auth_settings.model_dump(), "mfa_encryption_key": "too short"}
        )


async def test_with_another_key_a_totp_code_is_503_never_a_login_and_an_admin_can_reset(
    auth_settings: AuthSettings,
) -> None:
    username = unique_username()
    async with api_client(auth_settings) as client:
        await register(client, username)
        secret, _ = await enrol(client, await login(client, username))
        admin = await admin_token(client, auth_settings)
    rotated = auth_settings.model_copy(
        update={"mfa_encryption_key": SecretStr(Fernet.generate_key().decode())}
    )
    async with api_client(rotated) as client:
        response = await verify(client, await challenge(client, username), totp_code(secret, 1))
        assert response.status_code == 503
        assert response.json()["detail"]["code"] == "mfa_unavailable"
        reset = await client.delete(f"/users/{username}/mfa", headers=bearer(admin))
        assert reset.status_code == 204
        assert "access_token" in (await client.post(
            "/auth/login", json={"username": username, "password": PASSWORD}
        )).json()  # fmt: skip


async def test_wrong_codes_also_count_per_address_and_lock_confirm_and_disable_too(
    auth_settings: AuthSettings,
) -> None:
    settings = auth_settings.model_copy(
        update={"mfa_code_limit": 100, "login_limit_per_address": 3}
    )
    async with api_client(settings) as client:
        username = unique_username()
        await register(client, username)
        secret, codes = await enrol(client, await login(client, username))
        pair = (await verify(client, await challenge(client, username), codes[0])).json()
        headers = bearer(pair["access_token"])
        issued = await challenge(client, username)
        statuses = [
            (await verify(client, issued, "AAAA-AAAA-AAAA-AAAA")).status_code for _ in range(3)
        ]
        assert statuses == [401, 401, 401]

        assert (await verify(client, issued, totp_code(secret, 1))).status_code == 429
        disable = await client.request(
            "DELETE", "/auth/mfa/totp", headers=headers,
            json={"password": PASSWORD, "code": totp_code(secret, 1)},
        )  # fmt: skip
        assert disable.status_code == 429
        other = unique_username()
        await register(client, other)
        other_token = await login(client, other)
        other_secret = (await client.post("/auth/mfa/totp", headers=bearer(other_token))).json()
        confirm = await client.post(
            "/auth/mfa/totp/confirm",
            json={"code": totp_code(other_secret["secret"])},
            headers=bearer(other_token),
        )
        assert confirm.status_code == 429  # the same address, another user


async def test_a_challenge_is_kept_in_redis_only_as_its_digest(
    client: httpx.AsyncClient, auth_settings: AuthSettings, redis_url: str
) -> None:
    username = unique_username()
    user_id = (await register(client, username))["id"]
    await enrol(client, await login(client, username))

    issued = await challenge(client, username)

    redis = Redis.from_url(redis_url)
    try:
        keys = [
            k.decode()
            async for k in redis.scan_iter(f"{auth_settings.redis_key_prefix}:mfa:challenge:*")
        ]
        values = [await redis.get(k) for k in keys]
        ttls = [await redis.ttl(k) for k in keys]
    finally:
        await redis.aclose()
    assert keys
    assert not any(issued in key for key in keys)
    assert user_id.encode() in values
    assert all(0 < ttl <= 300 for ttl in ttls)
