"""Property-based fuzzing of the OpenAPI document: no request, valid or not, gets a 5xx."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import asyncpg
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, settings

from auth.main import create_app
from auth.settings import AuthSettings
from tests.conftest import ADMIN_BASE, ADMIN_URL, make_auth_settings, unique_username
from tests.integration.feed_helpers import new_service_client
from tests.integration.helpers import api_client, login
from userbus.admin import create_first_admin

pytestmark = [pytest.mark.integration, pytest.mark.slow]

Identity = Literal["anonymous", "user", "admin", "service"]
PASSWORD = "fuzzing is fun, passwords are long"
BEARER = "OAuth2PasswordBearer"
SERVICE = "ServiceClientCredentials"

# The document depends on the routes only, never on settings: the app it comes from is never
# started. (schemathesis.pytest.from_fixture would load it from the running app, but in
# schemathesis 4.32.5 it fails on pytest 9: it sets `Function._nodeid`, which pytest 9 removed.)
_DOCUMENT = create_app(
    AuthSettings(database_url="postgresql://openapi.invalid/unused", environment="test")
).openapi()
# Answers to schema-valid requests that are right: 400 for an unknown cursor or reset token,
# 401 for wrong credentials, 403 for someone else's account, 404, 409 for a taken name, 429.
ACCEPTED = ["2xx", "3xx", "400", "401", "403", "404", "409", "429"]
# Checks that flag known gaps between the document and the service (reported, to be fixed in
# the routes); every other check, not_a_server_error first, stays on.
_CONFIG = schemathesis.Config.from_dict(
    {
        "checks": {
            # The routes document only their success and 422; the 400, 401, 403, 404, 409, 429
            # and 503 they answer (auth/api/errors.py) appear nowhere in the document.
            "status_code_conformance": {"enabled": False},
            "positive_data_acceptance": {"expected-statuses": ACCEPTED},
        },
        "operations": [
            {
                # A password policy (at most 72 bytes in UTF-8, not too common, not the username)
                # and email-validator's refusal of special-use domains such as `.test` cannot be
                # said in JSON Schema: schema-valid bodies may get their 422.
                "include-path-regex": (
                    "^/users(/\\{username\\})?$|^/auth/password(-reset(/confirm)?)?$"
                    "|^/auth/verify-email/request$"
                ),
                "checks": {"positive_data_acceptance": {"expected-statuses": [*ACCEPTED, "422"]}},
            },
            {
                # Documented as a JSON body, answered with an empty one (202, no content type).
                "include-path-regex": "^/auth/password-reset$|^/auth/verify-email/request$",
                "checks": {
                    "content_type_conformance": {"enabled": False},
                    "response_schema_conformance": {"enabled": False},
                },
            },
            {
                # Starlette's 405 names only the methods of the first route on the path: OPTIONS
                # /users says `Allow: POST`, without GET; /users/{username} only GET;
                # /auth/mfa/totp only POST, without DELETE.
                "include-path-regex": "^/users(/\\{username\\})?$|^/auth/mfa/totp$",
                "checks": {"allow_header_conformance": {"enabled": False}},
            },
        ],
    }
)
schema = schemathesis.openapi.from_dict(_DOCUMENT, config=_CONFIG)


def _secured_by(scheme: str) -> set[tuple[str, str]]:
    return {
        (method.upper(), path)
        for path, operations in _DOCUMENT["paths"].items()
        for method, operation in operations.items()
        if any(scheme in requirement for requirement in operation.get("security", []))
    }


SECURED = _secured_by(BEARER)
# The event feed: a service token reads it; users' tokens are sent too, to fuzz their 403.
FEED = _secured_by(SERVICE)


@dataclass
class Caller:
    """Who the fuzzed requests come from: no one, or an account whose token is kept valid."""

    app: FastAPI
    username: str | None = None
    token: str | None = None
    # A service client's (client_id, secret): this caller reads the feed with its token.
    service: tuple[str, str] | None = None

    def headers(self, method: str, path: str) -> dict[str, str]:
        """A bearer token for operations that take one (Basic auth stays the fuzzer's own)."""
        operation = (method.upper(), path)
        if self.service is not None:
            if operation not in FEED:
                return {}
            self.token = self.token or self._service_token()
            return {"Authorization": f"Bearer {self.token}"}
        if self.username is None or operation not in SECURED | FEED:
            return {}
        if self.token is None:
            self.token = self._log_in()
        return {"Authorization": f"Bearer {self.token}"}

    def after(self, case: schemathesis.Case, status: int) -> None:
        """Renew the token if the fuzzer just ended its session or deleted its account."""
        operation = (case.method.upper(), case.path)
        if self.service is not None and status == 401:
            self.token = None  # expired: the next request gets a new one
        if status != 204 or self.username is None:
            return
        if operation == ("DELETE", "/users/{username}") and (
            (case.path_parameters or {}).get("username") == self.username
        ):
            self.username = self.register()
            self.token = None
        elif operation == ("POST", "/auth/logout-all"):
            self.token = None

    def register(self) -> str:
        """A new regular account; its name."""
        name = unique_username("fuzz")
        response = self._call(
            "/users",
            {"username": name, "email": f"{name}@example.com", "password": PASSWORD},
        )
        assert response.status_code == 201, response.text
        return name

    def _log_in(self) -> str:
        response = self._call("/auth/login", {"username": self.username, "password": PASSWORD})
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def _service_token(self) -> str:
        assert self.service is not None
        client_id, secret = self.service
        body = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret}
        response = self._call("/auth/token", body)
        assert response.status_code == 200, response.text
        token: str = response.json()["access_token"]
        return token

    def _call(self, path: str, body: dict[str, Any]) -> schemathesis.Response:
        # Through schemathesis's ASGI client, like the fuzzed calls: the app's engine lives on
        # the event loop that schemathesis runs the app's lifespan on.
        return schema[path]["POST"].Case(body=body).call(app=self.app)


@pytest.fixture(scope="module")
async def fuzz_database_url(template_database: str) -> AsyncIterator[str]:
    """A migrated database of this module alone: the admin's fuzz lists and changes users."""
    name = f"{template_database}_fuzz_{uuid.uuid4().hex[:6]}"
    admin = await asyncpg.connect(ADMIN_URL)
    try:
        # Copying a template needs it to have no open connections: retry while one closes.
        for attempt in range(50):
            try:
                await admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
                break
            except asyncpg.ObjectInUseError:
                if attempt == 49:
                    raise
                await asyncio.sleep(0.1)
        yield f"{ADMIN_BASE}/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture(scope="module")
def fuzz_settings(
    fuzz_database_url: str, key_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> AuthSettings:
    """The test settings, on this module's database."""
    settings = make_auth_settings(fuzz_database_url, key_file, tmp_path_factory.mktemp("fuzz"))
    # Every fuzzed request comes from one address, and schemathesis reuses the usernames that
    # answers show: with the limiter on, every login path would soon answer 429 before reaching
    # bcrypt and go untested, and our callers would be locked out (tests/integration/
    # test_rate_limit.py covers the limiter).
    # The same for the mail limits: registrations and mail requests all come from one address.
    return settings.model_copy(
        update={
            "login_limit_per_address": 1_000_000,
            "login_limit_per_username": 1_000_000,
            "registration_limit_per_address": 1_000_000,
            "mail_limit_per_address": 1_000_000,
            "mail_limit_per_email": 1_000_000,
        }
    )


@pytest.fixture(scope="module")
async def admin_name(fuzz_settings: AuthSettings) -> str:
    """The only admin, created as `userbus users create-admin` does (the API cannot)."""
    name = unique_username("admin")
    await create_first_admin(
        fuzz_settings, username=name, email=f"{name}@example.com", password=PASSWORD
    )
    return name


@pytest.fixture(scope="module")
async def service_client(fuzz_settings: AuthSettings) -> tuple[str, str]:
    """A service client, as `userbus service create` makes it."""
    return await new_service_client(fuzz_settings)


@pytest.fixture(scope="module")
def callers(
    fuzz_settings: AuthSettings, admin_name: str, service_client: tuple[str, str]
) -> dict[Identity, Caller]:
    """Each identity's caller, on one app (schemathesis starts its lifespan per test)."""
    app = create_app(fuzz_settings)
    user = Caller(app)
    user.username = user.register()
    return {
        "anonymous": Caller(app),
        "user": user,
        "admin": Caller(app, admin_name),
        "service": Caller(app, service=service_client),
    }


FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.mark.parametrize("identity", ["anonymous", "user", "admin", "service"])
@schema.parametrize()
@FUZZ
def test_no_request_gets_a_server_error(
    case: schemathesis.Case, identity: Identity, callers: dict[Identity, Caller]
) -> None:
    """Every generated request, valid or not, gets an answer below 500 that fits the document."""
    # By the operation, not the case: a case may try another method on the path (TRACE).
    if identity == "service" and (case.operation.method.upper(), case.operation.path) not in FEED:
        pytest.skip("a service token is taken by the feed only (elsewhere: as anonymous)")
    wait = (case.query or {}).get("wait")
    if case.operation.path == "/events" and isinstance(wait, int | float) and 0.1 < wait <= 30:
        # A valid long-poll waits out its `wait` when nothing is new (up to 30 s, past the
        # client's timeout): kept short here; test_feed_api.py covers the long-poll itself.
        case.query = {**(case.query or {}), "wait": 0.1}
    caller = callers[identity]
    response = case.call_and_validate(
        app=caller.app, headers=caller.headers(case.method, case.path)
    )
    caller.after(case, response.status_code)


# What the fuzz found, pinned: PostgreSQL refuses text with a NUL byte, and the DBAPIError that
# raises is a 500. Lookups by login or username should find no one (a 401, 403 or 404), and a
# display name with a NUL byte should be a 422. The flag says whether the admin's token goes too.
NUL_REQUESTS: dict[str, tuple[str, str, dict[str, Any], bool]] = {
    "login": ("POST", "/auth/login", {"json": {"username": "a\x00", "password": "x"}}, False),
    "oauth2-form": ("POST", "/auth/token", {"data": {"username": "a\x00", "password": "x"}}, False),
    "basic": ("GET", "/auth/basic", {"auth": ("a\x00", "x")}, False),
    "authenticate": (
        "POST", "/users/authenticate", {"json": {"username": "a\x00", "password": "x"}}, False,
    ),
    "password-change": (
        "POST", "/auth/password",
        {"json": {"username": "a\x00", "old_password": "x", "new_password": PASSWORD}}, False,
    ),
    "registration": (
        "POST", "/users",
        {"json": {"username": "nul_name", "email": "nul@example.com", "password": PASSWORD,
                  "display_name": "a\x00"}},
        False,
    ),
    "profile-change": ("PUT", "/users/{admin}", {"json": {"display_name": "a\x00"}}, True),
    "verification-confirm": (
        "POST", "/auth/verify-email/confirm", {"json": {"token": "a\x00"}}, False,
    ),
    "admin-lookup": ("GET", "/users/a%00", {}, True),
}  # fmt: skip


@pytest.mark.parametrize("request_name", sorted(NUL_REQUESTS))
async def test_a_nul_byte_in_text_gets_no_server_error(
    fuzz_settings: AuthSettings, admin_name: str, request_name: str
) -> None:
    """Text with a NUL byte, anywhere the API takes text, gets a 4xx."""
    method, path, kwargs, as_admin = NUL_REQUESTS[request_name]
    async with api_client(fuzz_settings) as client:
        headers = {}
        if as_admin:
            headers["Authorization"] = f"Bearer {await login(client, admin_name, PASSWORD)}"
        response = await client.request(
            method, path.format(admin=admin_name), headers=headers, **kwargs
        )
    assert response.status_code < 500, response.text
