"""`userbus prune` and email verification tokens: used and expired ones go, the live one stays."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from auth.maintenance.run import prune_once
from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import api_client
from tests.integration.test_api_verification import sign_up, verification_tokens
from tests.integration.test_prune import prune_settings, sql

pytestmark = pytest.mark.integration


async def test_spent_verification_tokens_go_and_the_live_one_keeps_working(
    isolated_auth_settings: AuthSettings, isolated_database_url: str, redis_url: str, stream: str
) -> None:
    url = isolated_database_url
    async with api_client(isolated_auth_settings) as client:
        username = unique_username()
        user = await sign_up(client, username)
        email = f"{username}@example.com"
        await client.post("/auth/verify-email/request", json={"email": email})  # spends the first
        now = datetime.now(UTC)
        await sql(
            url,
            "INSERT INTO auth.email_verifications (token_hash, user_id, email, created_at,"
            " expires_at) VALUES ($1, $2, $3, $4, $5)",
            uuid.uuid4().bytes, uuid.UUID(user["id"]), email, now - timedelta(hours=2),
            now - timedelta(hours=1),
        )  # fmt: skip

        kept = await prune_once(prune_settings(url, redis_url, stream))
        assert kept.pruned.verification_tokens == 0  # the default keeps them a day
        report = await prune_once(
            prune_settings(url, redis_url, stream, prune_verification_tokens_after_seconds=0)
        )
        assert report.pruned.verification_tokens == 2
        assert len(await sql(url, "SELECT 1 FROM auth.email_verifications")) == 1
        _, live = verification_tokens(isolated_auth_settings.mailbox_path, email)
        confirmed = await client.post("/auth/verify-email/confirm", json={"token": live})
        assert confirmed.status_code == 204
