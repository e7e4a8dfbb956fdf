"""ResetTokenRepository: the fake keeps the promises of SqlAlchemyResetTokenRepository."""

import pytest

from tests.contract.conftest import NOW, TTL, Store, stored


class ResetTokenRepositoryContract:
    """What every ResetTokenRepository does, seen through a unit of work of its backend."""

    @pytest.fixture
    def store(self) -> Store:
        """The backend under test (each subclass names one)."""
        raise NotImplementedError

    async def test_a_token_finds_its_user_until_it_expires(self, store: Store) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            token = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert await uow.password_resets.find(token, now=NOW) == user.id
            # Finding does not spend it.
            assert await uow.password_resets.find(token, now=NOW) == user.id
            assert await uow.password_resets.find(token, now=NOW + TTL) is None
            assert await uow.password_resets.find("no such token", now=NOW) is None

    async def test_a_new_token_spends_the_earlier_ones(self, store: Store) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            first = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
            second = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert await uow.password_resets.find(first, now=NOW) is None
            assert await uow.password_resets.find(second, now=NOW) == user.id

    async def test_spending_all_ends_only_that_users_tokens(self, store: Store) -> None:
        user, other = await stored(store), await stored(store)
        async with store.uow_factory() as uow:
            mine = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
            theirs = await uow.password_resets.create(other.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            await uow.password_resets.spend_all(user.id, now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert await uow.password_resets.find(mine, now=NOW) is None
            assert await uow.password_resets.find(theirs, now=NOW) == other.id


class TestFakeResetTokenRepository(ResetTokenRepositoryContract):
    """The contract on FakeResetTokenRepository."""

    @pytest.fixture
    def store(self, fake_store: Store) -> Store:
        """The fakes' store."""
        return fake_store


@pytest.mark.integration
class TestSqlAlchemyResetTokenRepository(ResetTokenRepositoryContract):
    """The contract on SqlAlchemyResetTokenRepository and PostgreSQL."""

    @pytest.fixture
    def store(self, sql_store: Store) -> Store:
        """A database of this test alone."""
        return sql_store
