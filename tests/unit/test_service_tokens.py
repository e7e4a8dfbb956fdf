"""Service tokens: good at the feed only, refused as users' tokens, and the other way round."""

import uuid
from datetime import UTC, datetime, timedelta

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519

from auth.domain.errors import InvalidServiceNameError, NotAuthenticatedError
from auth.domain.model import User
from auth.domain.service_clients import EVENTS_READ, ServiceClient, check_service_name
from auth.security.service_tokens import ServiceTokenService
from auth.security.tokens import TokenService

ISSUER, USERS, FEED = "userbus-test", "userbus-test-users", "userbus-test-feed"
TTL = timedelta(minutes=5)


@pytest.fixture(scope="module")
def keys() -> TokenService:
    """Users' tokens, and the keys service tokens are signed with."""
    return TokenService(
        ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", issuer=ISSUER, audience=USERS,
        ttl=timedelta(minutes=15),
    )  # fmt: skip


@pytest.fixture(scope="module")
def service_tokens(keys: TokenService) -> ServiceTokenService:
    """Service tokens with the feed's audience."""
    return ServiceTokenService(keys, issuer=ISSUER, audience=FEED, ttl=TTL)


def client(scope: str = EVENTS_READ) -> ServiceClient:
    """A service client that was never stored."""
    return ServiceClient(
        id=uuid.uuid4(), name="indexer", client_id=uuid.uuid4().hex, scope=scope,
        created_at=datetime.now(UTC),
    )  # fmt: skip


def user() -> User:
    """An admin account, as loaded."""
    now = datetime.now(UTC)
    return User(
        id=uuid.uuid4(), username="root_admin", email="a@example.com", password_hash="x",
        role="admin", status="active", created_at=now, updated_at=now, version=1,
    )  # fmt: skip


def test_a_service_token_names_its_client_and_scopes(service_tokens: ServiceTokenService) -> None:
    who = client(f"{EVENTS_READ} other:scope")
    issued = service_tokens.issue(who)
    assert issued.expires_in == TTL.total_seconds()
    principal = service_tokens.verify(issued.token)
    assert principal.client_id == who.client_id
    assert principal.name == "indexer"
    assert principal.scopes == {EVENTS_READ, "other:scope"}


def test_a_service_token_is_refused_as_a_users_token(
    keys: TokenService, service_tokens: ServiceTokenService
) -> None:
    with pytest.raises(NotAuthenticatedError, match=r"(?i)audience"):
        keys.verify(service_tokens.issue(client()).token)


def test_a_users_token_even_an_admins_is_refused_as_a_service_token(
    keys: TokenService, service_tokens: ServiceTokenService
) -> None:
    with pytest.raises(NotAuthenticatedError):
        service_tokens.verify(keys.issue(user()).token)
    # Even with every claim a service token has, the users' audience is refused.
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER, "aud": USERS, "sub": "x", "client_id": "x", "scope": EVENTS_READ,
        "role": "service", "iat": now, "exp": now + TTL, "jti": "j",
    }  # fmt: skip
    with pytest.raises(NotAuthenticatedError, match=r"(?i)audience"):
        service_tokens.verify(keys.sign(claims))


def test_an_expired_service_token_is_refused(service_tokens: ServiceTokenService) -> None:
    old = service_tokens.issue(client(), now=datetime.now(UTC) - TTL - timedelta(minutes=1))
    with pytest.raises(NotAuthenticatedError, match="expired"):
        service_tokens.verify(old.token)


def test_a_token_with_the_feeds_audience_but_no_service_role_is_refused(
    keys: TokenService, service_tokens: ServiceTokenService
) -> None:
    now = datetime.now(UTC)
    claims = {
        "iss": ISSUER, "aud": FEED, "sub": "x", "client_id": "x", "scope": EVENTS_READ,
        "role": "admin", "iat": now, "exp": now + TTL, "jti": "j",
    }  # fmt: skip
    with pytest.raises(NotAuthenticatedError, match="not a service token"):
        service_tokens.verify(keys.sign(claims))
    other_key = ed25519.Ed25519PrivateKey.generate()
    forged = jwt.encode({**claims, "role": "service"}, other_key, algorithm="EdDSA",
                        headers={"kid": keys.kid})  # fmt: skip
    with pytest.raises(NotAuthenticatedError):
        service_tokens.verify(forged)


@pytest.mark.parametrize("name", ["", "a b", "x" * 65, "naïve", "a/b"])
def test_a_service_name_is_a_plain_identifier(name: str) -> None:
    with pytest.raises(InvalidServiceNameError):
        check_service_name(name)
    check_service_name("search-indexer_2.eu")
