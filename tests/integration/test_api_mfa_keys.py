"""Rotating the MFA key, and new recovery codes: secrets move to the current key at their
next accepted code, recovery codes when the user asks for new ones."""

import asyncio
import json

import httpx
import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from auth.bootstrap import Overrides
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client, bearer, login, register
from tests.integration.mfa_helpers import challenge, enrol, totp_code, verify
from tests.unit.fakes import CapturedAudit
from userbus.cli import app

pytestmark = pytest.mark.integration

KEY_A, KEY_B = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def with_keys(settings: AuthSettings, current: str, *previous: str) -> AuthSettings:
    """The settings with this current MFA key and these previous ones."""
    return settings.model_copy(
        update={
            "mfa_encryption_key": SecretStr(current),
            "mfa_previous_encryption_keys": [SecretStr(k) for k in previous],
        }
    )


async def stored_secret(settings: AuthSettings, username: str) -> bytes:
    """The user's TOTP secret as stored (encrypted)."""
    engine = create_async_engine(settings.database_url)
    try:
        async with engine.connect() as conn:
            value = await conn.scalar(
                text(
                    "SELECT t.secret_ciphertext FROM auth.mfa_totp t "
                    "JOIN auth.users u ON u.id = t.user_id WHERE u.username = :name"
                ),
                {"name": username},
            )
    finally:
        await engine.dispose()
    assert isinstance(value, bytes)
    return value


async def new_codes(client: httpx.AsyncClient, token: str, code: str) -> httpx.Response:
    """POST /auth/mfa/recovery-codes."""
    return await client.post("/auth/mfa/recovery-codes", json={"code": code}, headers=bearer(token))


async def enrolled_user(client: httpx.AsyncClient) -> tuple[str, str, list[str], str]:
    """A user with TOTP on (its confirming step used): name, secret, codes, access token."""
    username = unique_username()
    await register(client, username)
    token = await login(client, username)
    secret, codes = await enrol(client, token)
    return username, secret, codes, token


async def test_a_rotated_key_keeps_second_factors_working_and_moves_the_secret(
    auth_settings: AuthSettings,
) -> None:
    async with api_client(with_keys(auth_settings, KEY_A)) as client:
        username, secret, codes, _ = await enrolled_user(client)
    assert Fernet(KEY_A).decrypt(await stored_secret(auth_settings, username))

    async with api_client(with_keys(auth_settings, KEY_B, KEY_A)) as client:
        by_totp = await verify(client, await challenge(client, username), totp_code(secret, 1))
        assert by_totp.status_code == 200, by_totp.text
        # Accepted under the previous key, re-encrypted under the current one.
        moved = await stored_secret(auth_settings, username)
        assert Fernet(KEY_B).decrypt(moved).decode() == secret
        by_recovery = await verify(client, await challenge(client, username), codes[0])
        assert by_recovery.status_code == 200, by_recovery.text

    async with api_client(with_keys(auth_settings, KEY_B)) as client:
        # The old key gone: the moved secret still decrypts (a replayed step is a 401, where
        # an unreadable secret would be a 503), but recovery codes keyed by it do not match.
        replayed = await verify(client, await challenge(client, username), totp_code(secret, 1))
        assert replayed.status_code == 401
        assert replayed.json()["detail"]["code"] == "invalid_mfa_code"
        old_code = await verify(client, await challenge(client, username), codes[1])
        assert old_code.status_code == 401


async def test_new_recovery_codes_replace_the_old_ones_and_follow_the_current_key(
    auth_settings: AuthSettings,
) -> None:
    async with api_client(with_keys(auth_settings, KEY_A)) as client:
        username, secret, codes, token = await enrolled_user(client)
    async with api_client(with_keys(auth_settings, KEY_B, KEY_A)) as client:
        response = await new_codes(client, token, totp_code(secret, 1))
        assert response.status_code == 200, response.text
        fresh: list[str] = response.json()["recovery_codes"]
        assert len(fresh) == 10
        assert not set(fresh) & set(codes)
    async with api_client(with_keys(auth_settings, KEY_B)) as client:
        assert (
            await verify(client, await challenge(client, username), codes[2])
        ).status_code == 401
        works = await verify(client, await challenge(client, username), fresh[0])
        assert works.status_code == 200, works.text
        again = await verify(client, await challenge(client, username), fresh[0])
        assert again.status_code == 401


async def test_new_recovery_codes_need_totp_on_a_right_code_and_a_token(
    auth_settings: AuthSettings,
) -> None:
    audit = CapturedAudit()
    async with api_client(auth_settings, Overrides(audit=audit.audit_log())) as client:
        plain = unique_username()
        await register(client, plain)
        without = await new_codes(client, await login(client, plain), "123456")
        assert without.status_code == 409
        assert without.json()["detail"]["code"] == "mfa_not_enabled"

        _username, secret, codes, token = await enrolled_user(client)
        wrong = await new_codes(client, token, totp_code(secret, 10))
        assert wrong.status_code == 401
        assert wrong.json()["detail"]["code"] == "invalid_mfa_code"
        # A recovery code is no TOTP code: new codes need the device itself.
        assert (await new_codes(client, token, codes[0])).status_code == 422
        anonymous = await client.post("/auth/mfa/recovery-codes", json={"code": "123456"})
        assert anonymous.status_code == 401
        right = await new_codes(client, token, totp_code(secret, 1))
        assert right.status_code == 200, right.text
    events = audit.events()
    assert events.count("mfa_recovery_codes_replaced") == 1
    assert "mfa_failed" in events
    assert not any(code in audit.text() for code in right.json()["recovery_codes"])


def test_a_previous_key_that_is_no_fernet_key_is_refused(auth_settings: AuthSettings) -> None:
    with pytest.raises(ValueError, match="USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS"):
        AuthSettings.model_validate(
            {**auth_settings.model_dump(), "mfa_previous_encryption_keys": ["too short"]}
        )


def test_rotate_mfa_key_moves_every_secret_and_names_the_unreadable(
    isolated_auth_settings: AuthSettings,
) -> None:
    settings = isolated_auth_settings
    key_c = Fernet.generate_key().decode()

    async def enrol_users() -> list[str]:
        names = []
        for key in (KEY_A, KEY_A, KEY_B, key_c):
            async with api_client(with_keys(settings, key)) as client:
                names.append((await enrolled_user(client))[0])
        return names

    names = asyncio.run(enrol_users())
    env = {
        "USERBUS_DATABASE_URL": settings.database_url,
        "USERBUS_MFA_ENCRYPTION_KEY": KEY_B,
        "USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS": json.dumps([KEY_A]),
    }
    result = CliRunner().invoke(app, ["users", "rotate-mfa-key"], env=env)
    assert result.exit_code == 1, result.output
    assert result.output.strip() == (
        "re-encrypted 2 TOTP secrets; 1 already under the current key; "
        "1 readable by no configured key"
    )
    stored = [asyncio.run(stored_secret(settings, name)) for name in names]
    assert all(Fernet(KEY_B).decrypt(ciphertext) for ciphertext in stored[:3])
    assert Fernet(key_c).decrypt(stored[3])

    del env["USERBUS_MFA_PREVIOUS_ENCRYPTION_KEYS"]
    env["USERBUS_MFA_ENCRYPTION_KEY"] = key_c
    again = CliRunner().invoke(app, ["users", "rotate-mfa-key"], env=env)
    assert again.exit_code == 1
    assert "re-encrypted 0 TOTP secrets; 1 already under the current key; 3 readable" in (
        again.output
    )
