"""PrincipalStore: FakePrincipalStore keeps the promises of AsyncpgPrincipalStore."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import cast
from uuid import uuid4

import pytest

from auth.adapters.principals import AsyncpgPrincipalStore, PrincipalStore
from tests.contract.conftest import NOW, TTL, Store, stored
from tests.unit.fakes import FakePrincipalStore, FakeUnitOfWorkFactory


class PrincipalStoreContract:
    """What every PrincipalStore answers about state committed through the units of work."""

    @pytest.fixture
    def store(self) -> Store:
        """The backend under test (each subclass names one)."""
        raise NotImplementedError

    @pytest.fixture
    def principals(self) -> PrincipalStore:
        """The PrincipalStore reading what `store` committed."""
        raise NotImplementedError

    async def test_a_live_session_of_the_user_is_live_and_the_user_is_the_stored_one(
        self, store: Store, principals: PrincipalStore
    ) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        standing = await principals.standing(user.id, session_id, now=NOW)

        assert standing is not None
        assert standing.session_live
        assert standing.user == user

    async def test_an_unknown_user_has_no_standing(
        self, store: Store, principals: PrincipalStore
    ) -> None:
        assert await principals.standing(uuid4(), uuid4(), now=NOW) is None
        assert await principals.standing(uuid4(), None, now=NOW) is None

    async def test_a_session_that_is_missing_foreign_or_absent_is_not_live(
        self, store: Store, principals: PrincipalStore
    ) -> None:
        user, other = await stored(store), await stored(store)
        async with store.uow_factory() as uow:
            others_session, _ = await uow.sessions.create(other.id, now=NOW, ttl=TTL)
            await uow.commit()

        for session_id in (uuid4(), others_session, None):
            standing = await principals.standing(user.id, session_id, now=NOW)
            assert standing is not None
            assert standing.user.id == user.id
            assert not standing.session_live

    async def test_a_session_ends_when_it_expires_or_is_revoked(
        self, store: Store, principals: PrincipalStore
    ) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            expiring, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            revoked, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()
        async with store.uow_factory() as uow:
            await uow.sessions.revoke(revoked, now=NOW, reason="logout")
            await uow.commit()

        just_before = await principals.standing(user.id, expiring, now=NOW + TTL - timedelta(1))
        at_expiry = await principals.standing(user.id, expiring, now=NOW + TTL)
        after_revocation = await principals.standing(user.id, revoked, now=NOW)

        assert just_before is not None
        assert just_before.session_live
        assert at_expiry is not None
        assert not at_expiry.session_live
        assert after_revocation is not None
        assert not after_revocation.session_live

    async def test_committed_changes_and_deletions_show_at_once(
        self, store: Store, principals: PrincipalStore
    ) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.change_role("admin", now=NOW)
            loaded.change_status("disabled", now=NOW)
            await uow.commit()

        changed = await principals.standing(user.id, session_id, now=NOW)
        assert changed is not None
        assert (changed.user.role, changed.user.status) == ("admin", "disabled")

        async with store.uow_factory() as uow:
            doomed = await uow.users.get(user.id)
            assert doomed is not None
            doomed.delete(now=NOW, reason="requested")
            await uow.commit()

        assert await principals.standing(user.id, session_id, now=NOW) is None


class TestFakePrincipalStore(PrincipalStoreContract):
    """The contract on FakePrincipalStore."""

    @pytest.fixture
    def store(self, fake_store: Store) -> Store:
        """The fakes' store."""
        return fake_store

    @pytest.fixture
    def principals(self, fake_store: Store) -> PrincipalStore:
        """Reads the fakes' committed rows."""
        return FakePrincipalStore(cast(FakeUnitOfWorkFactory, fake_store.uow_factory))


@pytest.mark.integration
class TestAsyncpgPrincipalStore(PrincipalStoreContract):
    """The contract on AsyncpgPrincipalStore and PostgreSQL."""

    @pytest.fixture
    def store(self, sql_store: Store) -> Store:
        """A database of this test alone."""
        return sql_store

    @pytest.fixture
    async def principals(self, isolated_database_url: str) -> AsyncIterator[PrincipalStore]:
        """A pool on the same database, closed after the test."""
        principals = AsyncpgPrincipalStore(isolated_database_url, max_size=2)
        yield principals
        await principals.close()
