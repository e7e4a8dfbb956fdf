"""Session lists over HTTP: your own, an admin's view of a user's, and ending one by id."""

import uuid
from typing import Any

import httpx
import pytest

from auth.settings import AuthSettings
from tests.conftest import unique_username
from tests.integration.helpers import bearer, login_pair, register
from tests.unit.fakes import CapturedAudit
from userbus.admin import create_first_admin

pytestmark = pytest.mark.integration

PASSWORD = "a long passphrase"


async def log_in(client: httpx.AsyncClient, username: str, agent: str) -> dict[str, Any]:
    """A token pair, logged in with this User-Agent."""
    response = await client.post(
        "/auth/login",
        json={"username": username, "password": PASSWORD},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sessions(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    """GET /auth/sessions."""
    response = await client.get("/auth/sessions", headers=bearer(token))
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()["sessions"]
    return found


async def status_of_me(client: httpx.AsyncClient, token: str) -> int:
    """GET /users/me's status with this access token."""
    return (await client.get("/users/me", headers=bearer(token))).status_code


async def refresh(client: httpx.AsyncClient, refresh_token: str) -> httpx.Response:
    """POST /auth/refresh."""
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def make_admin(client: httpx.AsyncClient, settings: AuthSettings) -> str:
    """A new admin's access token."""
    name = unique_username("admin")
    await create_first_admin(
        settings, username=name, email=f"{name}@example.com", password=PASSWORD
    )
    return str((await login_pair(client, name))["access_token"])


async def test_the_list_shows_each_live_session_and_marks_the_current_one(
    client: httpx.AsyncClient, username: str
) -> None:
    phone = await log_in(client, username, "Phone/1.0")
    laptop = await log_in(client, username, "Laptop/2.0 " + "x" * 1000)

    listed = await sessions(client, laptop["access_token"])

    assert len(listed) == 2
    newest, oldest = listed
    assert set(newest) == {
        "id", "created_at", "last_used_at", "expires_at", "client_address", "user_agent",
        "current",
    }  # fmt: skip
    assert newest["current"] is True
    assert oldest["current"] is False
    # The user agent is cut to 256 characters; the address is the client's (httpx's ASGI one).
    assert newest["user_agent"] == ("Laptop/2.0 " + "x" * 1000)[:256]
    assert oldest["user_agent"] == "Phone/1.0"
    assert newest["client_address"] == "127.0.0.1"
    assert (await sessions(client, phone["access_token"]))[1]["current"] is True


async def test_last_used_moves_at_a_refresh_with_the_client_of_that_refresh(
    client: httpx.AsyncClient, username: str
) -> None:
    pair = await log_in(client, username, "Old/1.0")
    [before] = await sessions(client, pair["access_token"])

    response = await client.post(
        "/auth/refresh",
        json={"refresh_token": pair["refresh_token"]},
        headers={"User-Agent": "New/2.0"},
    )
    assert response.status_code == 200
    [after] = await sessions(client, response.json()["access_token"])

    assert after["id"] == before["id"]
    assert after["created_at"] == before["created_at"]
    assert after["last_used_at"] > before["last_used_at"]
    assert after["user_agent"] == "New/2.0"


async def test_ending_a_session_by_id_refuses_its_refresh_and_access_tokens_at_once(
    client: httpx.AsyncClient, username: str, audit: CapturedAudit
) -> None:
    doomed = await log_in(client, username, "Lost/1.0")
    kept = await log_in(client, username, "Mine/1.0")
    assert await status_of_me(client, doomed["access_token"]) == 200  # its check is remembered
    doomed_id = next(
        s["id"] for s in await sessions(client, kept["access_token"]) if not s["current"]
    )

    response = await client.delete(
        f"/auth/sessions/{doomed_id}", headers=bearer(kept["access_token"])
    )

    assert response.status_code == 204
    assert await status_of_me(client, doomed["access_token"]) == 401
    assert (await refresh(client, doomed["refresh_token"])).status_code == 401
    assert await status_of_me(client, kept["access_token"]) == 200
    assert [s["id"] for s in await sessions(client, kept["access_token"])] != [doomed_id]
    assert len(await sessions(client, kept["access_token"])) == 1
    assert audit.lines("session_ended")[-1]["session_id"] == doomed_id


async def test_a_user_may_end_the_session_they_are_using(
    client: httpx.AsyncClient, username: str
) -> None:
    pair = await log_in(client, username, "Self/1.0")
    [current] = await sessions(client, pair["access_token"])

    response = await client.delete(
        f"/auth/sessions/{current['id']}", headers=bearer(pair["access_token"])
    )

    assert response.status_code == 204
    assert await status_of_me(client, pair["access_token"]) == 401


async def test_another_users_session_id_is_not_found_and_stays_live(
    client: httpx.AsyncClient, username: str
) -> None:
    victim = await log_in(client, username, "Victim/1.0")
    [victim_session] = await sessions(client, victim["access_token"])
    other = unique_username()
    await register(client, other)
    attacker = await log_in(client, other, "Attacker/1.0")

    for session_id in (victim_session["id"], str(uuid.uuid4())):
        response = await client.delete(
            f"/auth/sessions/{session_id}", headers=bearer(attacker["access_token"])
        )
        assert response.status_code == 404
        assert response.json()["detail"]["code"] == "session_not_found"
    assert await status_of_me(client, victim["access_token"]) == 200


async def test_an_ended_session_cannot_be_ended_again_and_bad_ids_are_422(
    client: httpx.AsyncClient, username: str
) -> None:
    first = await log_in(client, username, "A/1")
    second = await log_in(client, username, "B/1")
    first_id = (await sessions(client, first["access_token"]))[1]["id"]
    headers = bearer(second["access_token"])
    assert (await client.delete(f"/auth/sessions/{first_id}", headers=headers)).status_code == 204
    assert (await client.delete(f"/auth/sessions/{first_id}", headers=headers)).status_code == 404
    assert (await client.delete("/auth/sessions/not-a-uuid", headers=headers)).status_code == 422
    assert (await client.get("/auth/sessions")).status_code == 401


async def test_an_admin_lists_and_ends_a_users_sessions_audited(
    client: httpx.AsyncClient, username: str, auth_settings: AuthSettings, audit: CapturedAudit
) -> None:
    admin_token = await make_admin(client, auth_settings)
    pair = await log_in(client, username, "Watched/1.0")
    headers = bearer(admin_token)

    listed = await client.get(f"/users/{username}/sessions", headers=headers)
    assert listed.status_code == 200
    [session] = listed.json()["sessions"]
    assert session["user_agent"] == "Watched/1.0"
    assert session["current"] is False
    assert audit.lines("sessions_listed")[-1]["username"] == username

    ended = await client.delete(f"/users/{username}/sessions/{session['id']}", headers=headers)
    assert ended.status_code == 204
    assert await status_of_me(client, pair["access_token"]) == 401
    assert (await refresh(client, pair["refresh_token"])).status_code == 401
    line = audit.lines("session_ended")[-1]
    assert line["session_id"] == session["id"]
    assert line["by"] is not None


async def test_an_admin_gets_404_for_a_session_of_another_user_or_an_unknown_user(
    client: httpx.AsyncClient, username: str, auth_settings: AuthSettings
) -> None:
    admin_token = await make_admin(client, auth_settings)
    other = unique_username()
    await register(client, other)
    pair = await log_in(client, other, "Other/1.0")
    [others] = await sessions(client, pair["access_token"])
    headers = bearer(admin_token)

    wrong_owner = await client.delete(f"/users/{username}/sessions/{others['id']}", headers=headers)
    assert wrong_owner.status_code == 404
    assert wrong_owner.json()["detail"]["code"] == "session_not_found"
    assert await status_of_me(client, pair["access_token"]) == 200
    unknown = await client.get(f"/users/{unique_username()}/sessions", headers=headers)
    assert unknown.status_code == 404
    assert unknown.json()["detail"]["code"] == "user_not_found"


async def test_a_user_may_not_use_the_admin_session_routes(
    client: httpx.AsyncClient, username: str
) -> None:
    pair = await log_in(client, username, "Nosy/1.0")
    [own] = await sessions(client, pair["access_token"])
    headers = bearer(pair["access_token"])

    assert (await client.get(f"/users/{username}/sessions", headers=headers)).status_code == 403
    path = f"/users/{username}/sessions/{own['id']}"
    assert (await client.delete(path, headers=headers)).status_code == 403
    assert await status_of_me(client, pair["access_token"]) == 200
