"""SessionRepository: FakeSessionRepository keeps the promises of SqlAlchemySessionRepository."""

from datetime import timedelta
from uuid import uuid4

import pytest

from tests.contract.conftest import NOW, TTL, Store, stored


class SessionRepositoryContract:
    """What every SessionRepository does, seen through a unit of work of its backend."""

    @pytest.fixture
    def store(self) -> Store:
        """The backend under test (each subclass names one)."""
        raise NotImplementedError

    async def test_a_refresh_token_is_spent_by_rotation_and_its_session_slides_on(
        self, store: Store
    ) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, token = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()
        later = NOW + timedelta(days=1)

        async with store.uow_factory() as uow:
            grant = await uow.sessions.find_refresh(token)
            assert grant is not None
            assert grant.usable(NOW)
            next_token = await uow.sessions.rotate(grant, now=later, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            spent = await uow.sessions.find_refresh(token)
            fresh = await uow.sessions.find_refresh(next_token)
            assert await uow.sessions.find_refresh("no such token") is None
            assert await uow.sessions.is_active(session_id, user.id, now=NOW + TTL)
        assert spent is not None
        assert fresh is not None
        assert (spent.session_id, spent.user_id, spent.token_used) == (session_id, user.id, True)
        assert (fresh.session_id, fresh.user_id, fresh.token_used) == (session_id, user.id, False)
        assert fresh.session_expires_at == fresh.token_expires_at == later + TTL
        assert fresh.usable(later)

    async def test_a_session_is_active_for_its_user_until_it_expires(self, store: Store) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, token = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert await uow.sessions.is_active(session_id, user.id, now=NOW)
            assert not await uow.sessions.is_active(session_id, uuid4(), now=NOW)
            assert not await uow.sessions.is_active(uuid4(), user.id, now=NOW)
            assert not await uow.sessions.is_active(session_id, user.id, now=NOW + TTL)
            grant = await uow.sessions.find_refresh(token)
        assert grant is not None
        assert not grant.usable(NOW + TTL)

    async def test_a_revoked_session_stays_revoked(self, store: Store) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, token = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            await uow.sessions.revoke(session_id, now=NOW, reason="logout")
            await uow.sessions.revoke(session_id, now=NOW, reason="again")
            await uow.sessions.revoke(uuid4(), now=NOW, reason="unknown")
            await uow.commit()

        async with store.uow_factory() as uow:
            assert not await uow.sessions.is_active(session_id, user.id, now=NOW)
            grant = await uow.sessions.find_refresh(token)
            assert await uow.sessions.revoke_all(user.id, now=NOW, reason="test") == 0
        assert grant is not None
        assert grant.session_revoked
        assert not grant.usable(NOW)

    async def test_revoking_all_sessions_can_keep_one_and_counts_the_others(
        self, store: Store
    ) -> None:
        user, other = await stored(store), await stored(store)
        async with store.uow_factory() as uow:
            kept, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            ended, _ = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            others, _ = await uow.sessions.create(other.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            count = await uow.sessions.revoke_all(user.id, now=NOW, reason="test", keep=kept)
            again = await uow.sessions.revoke_all(user.id, now=NOW, reason="test", keep=kept)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert (count, again) == (1, 0)
            assert await uow.sessions.is_active(kept, user.id, now=NOW)
            assert not await uow.sessions.is_active(ended, user.id, now=NOW)
            assert await uow.sessions.is_active(others, other.id, now=NOW)
            assert await uow.sessions.revoke_all(user.id, now=NOW, reason="all") == 1


class TestFakeSessionRepository(SessionRepositoryContract):
    """The contract on FakeSessionRepository."""

    @pytest.fixture
    def store(self, fake_store: Store) -> Store:
        """The fakes' store."""
        return fake_store


@pytest.mark.integration
class TestSqlAlchemySessionRepository(SessionRepositoryContract):
    """The contract on SqlAlchemySessionRepository and PostgreSQL."""

    @pytest.fixture
    def store(self, sql_store: Store) -> Store:
        """A database of this test alone."""
        return sql_store
