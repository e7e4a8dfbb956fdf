"""Fixtures of the unit tests: fresh fakes per test, and an AuthContext built from them."""

import pytest

from auth.security.tokens import TokenService
from auth.service_layer.context import AuthContext
from tests.unit.fakes import (
    CapturedAudit,
    FakeLoginRateLimiter,
    FakeMailer,
    FakePasswordHasher,
    FakeUnitOfWorkFactory,
    make_context,
    make_token_service,
)


@pytest.fixture
def uow_factory() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def hasher() -> FakePasswordHasher:
    return FakePasswordHasher()


@pytest.fixture
def limiter() -> FakeLoginRateLimiter:
    return FakeLoginRateLimiter()


@pytest.fixture
def mailer() -> FakeMailer:
    return FakeMailer()


@pytest.fixture
def audit() -> CapturedAudit:
    return CapturedAudit()


@pytest.fixture
def token_service() -> TokenService:
    return make_token_service()


@pytest.fixture
def ctx(
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    limiter: FakeLoginRateLimiter,
    mailer: FakeMailer,
    audit: CapturedAudit,
    token_service: TokenService,
) -> AuthContext:
    return make_context(
        uow_factory,
        hasher=hasher,
        limiter=limiter,
        mailer=mailer,
        audit=audit,
        tokens=token_service,
    )
