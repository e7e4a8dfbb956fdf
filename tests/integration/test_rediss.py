"""`rediss://` for real: the API's limiter and the Redis broker over (mutual) TLS.

The Redis here has no TLS port, so a TLS proxy that requires a client certificate stands in
front of it. redis-py takes the TLS files from the URL's query (`ssl_ca_certs`,
`ssl_certfile`, `ssl_keyfile`), so nothing but the URL is configured.
"""

from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
import redis.asyncio as redis

from auth.main import create_app
from auth.settings import AuthSettings
from infra.brokers import broker_for
from infra.dead_letters import DeadLetter
from tests.conftest import unique_username
from tests.tls import Certificates, common_name, make_certificates, tls_proxy

pytestmark = [pytest.mark.integration, pytest.mark.redis]


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    """This test's CA and certificates."""
    return make_certificates(tmp_path)


@pytest.fixture
async def rediss_url(certificates: Certificates) -> AsyncIterator[tuple[str, list[str | None]]]:
    """A rediss:// URL of the real Redis behind a mutual-TLS proxy, and the clients it saw."""
    seen: list[str | None] = []
    context = certificates.server_context(require_client=True)
    async with tls_proxy(
        context, ("127.0.0.1", 6379), lambda c: seen.append(common_name(c))
    ) as port:
        query = urlencode(
            {
                "ssl_ca_certs": certificates.ca,
                "ssl_certfile": certificates.client_cert,
                "ssl_keyfile": certificates.client_key,
            }
        )
        yield f"rediss://127.0.0.1:{port}/0?{query}", seen


async def test_login_limits_work_over_tls(
    auth_settings: AuthSettings, rediss_url: tuple[str, list[str | None]]
) -> None:
    url, seen = rediss_url
    settings = auth_settings.model_copy(update={"redis_url": url, "login_limit_per_username": 2})
    app = create_app(settings)
    username = unique_username()
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://userbus") as client:
            statuses = [
                (
                    await client.post(
                        "/auth/login", json={"username": username, "password": "wrong one"}
                    )
                ).status_code
                for _ in range(3)
            ]

    # The counts were kept in Redis, reached through the proxy with the client certificate.
    assert statuses == [401, 401, 429]
    assert seen
    assert set(seen) == {"userbus-client"}


async def test_the_redis_broker_works_over_tls(
    rediss_url: tuple[str, list[str | None]], stream: str
) -> None:
    url, seen = rediss_url
    letters = broker_for(url).dead_letters(stream)
    await letters.send([DeadLetter(b'{"bad": 1}', "broken", "g")])
    read = [letter.payload async for letter in letters.read()]
    await letters.close()
    status = await broker_for(url).status(stream, [])

    assert read == [b'{"bad": 1}']
    assert status.dead_letters == 1
    assert set(seen) == {"userbus-client"}


async def test_a_server_certificate_of_an_unknown_ca_is_refused(
    rediss_url: tuple[str, list[str | None]],
) -> None:
    url, _ = rediss_url
    # Without ssl_ca_certs the system's roots apply, which do not know the test CA.
    client = redis.Redis.from_url(url.partition("?")[0])
    with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        await client.ping()
    await client.aclose()
