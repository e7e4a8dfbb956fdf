"""TOTP MFA over HTTP: enrolment, the two-step login on every login route, replays, limits."""

import asyncio
import base64
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import free_port
from tests.integration.helpers import api_client, bearer, login
from tests.integration.mfa_helpers import (
    PASSWORD,
    challenge,
    enrol,
    start_enrolment,
    totp_code,
    verify,
)
from tests.unit.fakes import CapturedAudit

pytestmark = pytest.mark.integration


@pytest.fixture
async def enrolled(client: httpx.AsyncClient, username: str) -> tuple[str, str, list[str]]:
    """A user with TOTP on: (username, secret, recovery codes)."""
    secret, codes = await enrol(client, await login(client, username))
    return username, secret, codes


async def test_enrolment_gives_a_secret_an_otpauth_uri_and_a_qr_code(
    client: httpx.AsyncClient, username: str
) -> None:
    body = await start_enrolment(client, await login(client, username))

    uri = urlparse(body["otpauth_uri"])
    assert uri.scheme == "otpauth"
    assert uri.netloc == "totp"
    assert uri.path == f"/userbus:{username}"
    assert parse_qs(uri.query)["secret"] == [body["secret"]]
    assert parse_qs(uri.query)["issuer"] == ["userbus"]
    assert len(base64.b32decode(body["secret"])) == 20
    assert body["qr_svg"].startswith("data:image/svg+xml")


async def test_a_pending_enrolment_changes_nothing_until_a_code_confirms_it(
    client: httpx.AsyncClient, username: str
) -> None:
    token = await login(client, username)
    first = (await start_enrolment(client, token))["secret"]
    second = (await start_enrolment(client, token))["secret"]
    assert first != second  # starting again replaces the pending secret

    # Still one step: pending is not enabled.
    response = await client.post("/auth/login", json={"username": username, "password": PASSWORD})
    assert "access_token" in response.json()
    stale = await client.post(
        "/auth/mfa/totp/confirm", json={"code": totp_code(first)}, headers=bearer(token)
    )
    assert stale.status_code == 401
    assert stale.json()["detail"]["code"] == "invalid_mfa_code"


async def test_confirming_gives_ten_distinct_recovery_codes_and_enrolling_again_is_409(
    client: httpx.AsyncClient, username: str, audit: CapturedAudit
) -> None:
    token = await login(client, username)
    secret, codes = await enrol(client, token)

    assert len(codes) == 10
    assert len(set(codes)) == 10
    assert all(len(code) == 19 and code.count("-") == 3 for code in codes)
    again = await client.post("/auth/mfa/totp", headers=bearer(token))
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "mfa_already_enabled"
    confirm = await client.post(
        "/auth/mfa/totp/confirm", json={"code": totp_code(secret, 1)}, headers=bearer(token)
    )
    assert confirm.status_code == 409
    assert "mfa_enabled" in audit.events()
    assert secret not in audit.text()
    assert not any(code in audit.text() for code in codes)


async def test_confirm_without_an_enrolment_is_409_and_a_malformed_code_422(
    client: httpx.AsyncClient, username: str
) -> None:
    headers = bearer(await login(client, username))
    response = await client.post("/auth/mfa/totp/confirm", json={"code": "123456"}, headers=headers)
    assert response.status_code == 409
    assert response.json()["detail"]["code"] == "mfa_not_pending"
    bad = await client.post("/auth/mfa/totp/confirm", json={"code": "12ab56"}, headers=headers)
    assert bad.status_code == 422
    assert "12ab56" not in bad.text  # a code is never echoed
    assert (await client.post("/auth/mfa/totp")).status_code == 401


async def test_every_password_login_route_answers_with_a_challenge_instead_of_tokens(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, _, _ = enrolled
    credentials = {"username": username, "password": PASSWORD}
    answers = [
        await client.post("/auth/login", json=credentials),
        await client.post("/users/authenticate", json=credentials),
        await client.post("/auth/token", data=credentials),
    ]
    for response in answers:
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"mfa_required", "challenge", "expires_in"}
        assert body["mfa_required"] is True
        assert body["expires_in"] == 300
    wrong = await client.post("/auth/login", json={"username": username, "password": "wrong!!!"})
    assert wrong.status_code == 401


async def test_basic_auth_refuses_an_mfa_user_clearly_and_only_with_the_right_password(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, _, _ = enrolled
    refused = await client.get("/auth/basic", auth=(username, PASSWORD))
    assert refused.status_code == 403
    assert refused.json()["detail"]["code"] == "mfa_required"
    wrong = await client.get("/auth/basic", auth=(username, "not the password"))
    assert wrong.status_code == 401


async def test_a_challenge_and_a_code_give_tokens_once(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]], audit: CapturedAudit
) -> None:
    username, secret, _ = enrolled
    issued = await challenge(client, username)

    response = await verify(client, issued, totp_code(secret, 1))

    assert response.status_code == 200, response.text
    assert (
        await client.get("/users/me", headers=bearer(response.json()["access_token"]))
    ).is_success
    spent = await verify(client, issued, totp_code(secret, 1))
    assert spent.status_code == 401
    assert spent.json()["detail"]["code"] == "invalid_mfa_challenge"
    assert audit.lines("login_succeeded")[-1]["mfa"] == "totp"


async def test_a_code_replayed_within_its_window_is_refused(
    client: httpx.AsyncClient, username: str
) -> None:
    token = await login(client, username)
    secret = (await start_enrolment(client, token))["secret"]
    code = totp_code(secret)
    confirmed = await client.post(
        "/auth/mfa/totp/confirm", json={"code": code}, headers=bearer(token)
    )
    assert confirmed.status_code == 200

    # The very code that confirmed the enrolment, still inside its window.
    replay = await verify(client, await challenge(client, username), code)
    assert replay.status_code == 401
    assert replay.json()["detail"]["code"] == "invalid_mfa_code"

    issued = await challenge(client, username)
    later = totp_code(secret, 1)
    assert (await verify(client, issued, later)).status_code == 200
    # The same code again, and an older step's code, on a fresh challenge: both refused.
    again = await challenge(client, username)
    assert (await verify(client, again, later)).status_code == 401
    assert (await verify(client, again, code)).status_code == 401


async def test_a_wrong_code_leaves_the_challenge_usable(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, secret, _ = enrolled
    issued = await challenge(client, username)
    wrong = "000000" if totp_code(secret, 1) != "000000" else "111111"
    assert (await verify(client, issued, wrong)).status_code == 401
    assert (await verify(client, issued, totp_code(secret, 1))).status_code == 200


async def test_a_recovery_code_works_once_in_any_spelling(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]], audit: CapturedAudit
) -> None:
    username, _, codes = enrolled
    spelled = codes[0].lower().replace("-", " ")

    first = await verify(client, await challenge(client, username), spelled)
    assert first.status_code == 200, first.text
    assert audit.lines("login_succeeded")[-1]["mfa"] == "recovery_code"
    second = await verify(client, await challenge(client, username), codes[0])
    assert second.status_code == 401
    assert second.json()["detail"]["code"] == "invalid_mfa_code"
    assert (await verify(client, await challenge(client, username), codes[1])).status_code == 200


async def test_wrong_codes_reach_the_limit_then_even_a_right_one_gets_429(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]], audit: CapturedAudit
) -> None:
    username, secret, codes = enrolled
    issued = await challenge(client, username)
    statuses = [(await verify(client, issued, "AAAA-AAAA-AAAA-AAAA")).status_code for _ in range(5)]
    assert statuses == [401] * 5

    locked = await verify(client, issued, totp_code(secret, 1))
    assert locked.status_code == 429
    assert locked.json()["detail"]["code"] == "too_many_attempts"
    assert int(locked.headers["Retry-After"]) > 0
    # A new challenge does not reset the count: the limit is per user.
    fresh = await challenge(client, username)
    assert (await verify(client, fresh, codes[0])).status_code == 429
    assert "mfa_locked" in audit.events()


async def test_an_unknown_challenge_is_401(client: httpx.AsyncClient) -> None:
    response = await verify(client, "no-such-challenge", "123456")
    assert response.status_code == 401
    assert response.json()["detail"]["code"] == "invalid_mfa_challenge"


async def test_disabling_takes_the_password_and_a_code(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, secret, codes = enrolled
    response = await verify(client, await challenge(client, username), codes[0])
    headers = bearer(response.json()["access_token"])

    def disable(password: str, code: str) -> httpx.Request:
        return client.build_request(
            "DELETE", "/auth/mfa/totp", json={"password": password, "code": code}, headers=headers
        )

    wrong_password = await client.send(disable("not the password", totp_code(secret, 1)))
    assert wrong_password.status_code == 401
    assert wrong_password.json()["detail"]["code"] == "invalid_credentials"
    wrong_code = await client.send(disable(PASSWORD, codes[0]))  # spent above
    assert wrong_code.status_code == 401
    assert wrong_code.json()["detail"]["code"] == "invalid_mfa_code"
    assert (await client.send(disable(PASSWORD, totp_code(secret, 1)))).status_code == 204

    assert "access_token" in (await client.post(
        "/auth/login", json={"username": username, "password": PASSWORD}
    )).json()  # fmt: skip
    again = await client.send(disable(PASSWORD, totp_code(secret, 1)))
    assert again.status_code == 409
    assert again.json()["detail"]["code"] == "mfa_not_enabled"


async def test_a_password_change_by_username_alone_is_refused_for_an_mfa_user(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, _, codes = enrolled
    body = {"old_password": PASSWORD, "new_password": "another long passphrase"}

    by_name = await client.post("/auth/password", json={**body, "username": username})
    assert by_name.status_code == 403
    assert by_name.json()["detail"]["code"] == "mfa_required"

    pair = (await verify(client, await challenge(client, username), codes[0])).json()
    with_token = await client.post(
        "/auth/password", json=body, headers=bearer(pair["access_token"])
    )
    assert with_token.status_code == 204


async def test_one_code_sent_twice_at_once_logs_in_once(
    client: httpx.AsyncClient, enrolled: tuple[str, str, list[str]]
) -> None:
    username, secret, _ = enrolled
    first, second = await challenge(client, username), await challenge(client, username)
    code = totp_code(secret, 1)

    answers = await asyncio.gather(verify(client, first, code), verify(client, second, code))

    assert sorted(a.status_code for a in answers) == [200, 401]


async def test_without_redis_the_second_step_fails_closed_with_503(
    auth_settings: AuthSettings,
) -> None:
    nowhere = f"redis://127.0.0.1:{free_port()}/0"
    settings = auth_settings.model_copy(update={"redis_url": nowhere})
    async with api_client(settings) as client:
        response = await verify(client, "some-challenge", "123456")
    assert response.status_code == 503
    assert response.json()["detail"]["code"] == "rate_limiter_unavailable"
