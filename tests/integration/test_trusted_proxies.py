"""Behind a trusted proxy, login limits and audit lines count each client, not the proxy."""

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

from auth.main import create_app
from auth.security.audit import AUDIT_LOGGER
from auth.security.proxies import parse_networks
from auth.settings import AuthSettings
from tests.conftest import unique_username

pytestmark = pytest.mark.integration

PROXY = "10.1.2.3"
EDGE = "10.9.0.1"
OUTSIDER = "203.0.113.77"
PER_ADDRESS = 3


@pytest.fixture
def settings(auth_settings: AuthSettings) -> AuthSettings:
    """The test app trusts 10.0.0.0/8 (the proxies) and fd00::/8, with a small address limit."""
    return auth_settings.model_copy(
        update={
            "trusted_proxies": parse_networks("10.0.0.0/8,fd00::/8"),
            "login_limit_per_address": PER_ADDRESS,
        }
    )


@asynccontextmanager
async def client_from(settings: AuthSettings, peer: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on the real app whose connections come from `peer`."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=(peer, 51234))
        async with httpx.AsyncClient(transport=transport, base_url="http://userbus") as client:
            yield client


async def fail_login(client: httpx.AsyncClient, forwarded_for: str | None = None) -> int:
    """One failed login (a user that does not exist, so no per-username limit); its status."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    response = await client.post(
        "/auth/login",
        json={"username": unique_username(), "password": "not the password"},
        headers=headers,
    )
    assert response.status_code in (401, 429), response.text
    return response.status_code


async def test_two_clients_behind_one_trusted_proxy_get_separate_limits(
    settings: AuthSettings,
) -> None:
    async with client_from(settings, PROXY) as proxy:
        first = [await fail_login(proxy, "198.51.100.1") for _ in range(PER_ADDRESS + 1)]
        second = await fail_login(proxy, "198.51.100.2")
        # The proxy itself, without a header, is a client of its own as well.
        itself = await fail_login(proxy)

    assert first == [401] * PER_ADDRESS + [429]
    assert second == 401
    assert itself == 401


async def test_a_spoofed_header_from_an_untrusted_peer_is_ignored(
    settings: AuthSettings,
) -> None:
    async with client_from(settings, OUTSIDER) as outsider:
        statuses = [
            await fail_login(outsider, f"198.51.100.{n}, {PROXY}") for n in range(PER_ADDRESS + 1)
        ]
        # Nor does the RFC 7239 header move the outsider elsewhere.
        forwarded = await outsider.post(
            "/auth/login",
            json={"username": unique_username(), "password": "nope"},
            headers={"Forwarded": "for=198.51.100.200"},
        )

    assert statuses == [401] * PER_ADDRESS + [429]
    assert forwarded.status_code == 429


async def test_a_chain_of_trusted_proxies_is_walked_to_the_first_untrusted_hop(
    settings: AuthSettings, caplog: pytest.LogCaptureFixture
) -> None:
    # client 198.51.100.9 -> edge proxy 10.9.0.1 -> ipv6 proxy fd00::7 -> proxy 10.1.2.3 -> app;
    # the client's own claim (192.0.2.1) at the left is not believed.
    chain = f"192.0.2.1, 198.51.100.9, {EDGE}"
    caplog.set_level(logging.INFO, logger=AUDIT_LOGGER)
    async with client_from(settings, PROXY) as proxy:
        statuses = []
        for _ in range(PER_ADDRESS + 1):
            response = await proxy.post(
                "/auth/login",
                json={"username": unique_username(), "password": "nope"},
                # Two header lines are one list, in order.
                headers=[("X-Forwarded-For", chain), ("X-Forwarded-For", "fd00::7")],
            )
            statuses.append(response.status_code)
        other = await fail_login(proxy, f"198.51.100.10, {EDGE}, fd00::7")

    assert statuses == [401] * PER_ADDRESS + [429]
    assert other == 401
    addresses = {
        json.loads(record.getMessage()).get("address")
        for record in caplog.records
        if record.name == AUDIT_LOGGER
    }
    assert addresses == {"198.51.100.9", "198.51.100.10"}


async def test_a_malformed_header_counts_against_the_proxy(settings: AuthSettings) -> None:
    async with client_from(settings, PROXY) as proxy:
        statuses = [
            await fail_login(proxy, value)
            for value in ("not-an-address", "198.51.100.3, garbage", "", "unknown")
        ]

    # All four fell back to the proxy's own address, whose limit the fourth exceeds.
    assert statuses == [401] * PER_ADDRESS + [429]


async def test_without_trusted_proxies_the_header_means_nothing(
    auth_settings: AuthSettings,
) -> None:
    settings = auth_settings.model_copy(update={"login_limit_per_address": PER_ADDRESS})
    async with client_from(settings, PROXY) as proxy:
        statuses = [await fail_login(proxy, f"198.51.100.{n}") for n in range(PER_ADDRESS + 1)]

    assert statuses == [401] * PER_ADDRESS + [429]


async def test_the_forwarded_header_is_not_read_even_from_a_trusted_proxy(
    settings: AuthSettings,
) -> None:
    async with client_from(settings, PROXY) as proxy:
        statuses = []
        for n in range(PER_ADDRESS + 1):
            response = await proxy.post(
                "/auth/login",
                json={"username": unique_username(), "password": "nope"},
                headers={"Forwarded": f"for=198.51.100.{n};proto=https"},
            )
            statuses.append(response.status_code)

    # Only X-Forwarded-For is believed: these all count against the proxy.
    assert statuses == [401] * PER_ADDRESS + [429]
