"""UnitOfWork: FakeUnitOfWork keeps the promises of SqlAlchemyUnitOfWork (state and events)."""

import pytest

from auth.domain.errors import ConcurrentUpdateError, EmailTakenError, UsernameTakenError
from tests.contract.conftest import NOW, TTL, Store, new_user, stored


class UnitOfWorkContract:
    """What every UnitOfWork does: state and its events leave together, or not at all."""

    @pytest.fixture
    def store(self) -> Store:
        """The backend under test (each subclass names one)."""
        raise NotImplementedError

    async def test_commit_writes_the_state_and_its_events_together(self, store: Store) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.change_password("fake$new", reason="change", now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            again = await uow.users.get(user.id)
        assert again is not None
        assert again.password_hash == "fake$new"
        assert await store.outbox_of(user.id) == [(1, "UserRegistered"), (2, "PasswordChanged")]

    async def test_a_change_is_seen_by_other_units_of_work_only_once_committed(
        self, store: Store
    ) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            loaded = await uow.users.get_by_login(user.email.upper())
            assert loaded is not None
            loaded.change_password("fake$new", reason="change", now=NOW)
            async with store.uow_factory() as other:
                before = await other.users.get(user.id)
            await uow.commit()

        async with store.uow_factory() as other:
            after = await other.users.get(user.id)
        assert before is not None
        assert after is not None
        assert (before.version, after.version) == (user.version, user.version + 1)

    async def test_leaving_without_commit_keeps_nothing(self, store: Store) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.change_password("fake$new", reason="change", now=NOW)
            newcomer = new_user()
            await uow.users.add(newcomer)
            session_id, refresh = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            reset = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)

        async with store.uow_factory() as uow:
            again = await uow.users.get(user.id)
            assert again is not None
            assert again.password_hash == "fake$pw"
            assert await uow.users.get(newcomer.id) is None
            assert not await uow.sessions.is_active(session_id, user.id, now=NOW)
            assert await uow.sessions.find_refresh(refresh) is None
            assert await uow.password_resets.find(reset, now=NOW) is None
        assert await store.outbox_of(user.id) == [(1, "UserRegistered")]
        assert await store.outbox_of(newcomer.id) == []

    async def test_the_second_of_two_concurrent_changes_fails_and_publishes_nothing(
        self, store: Store
    ) -> None:
        user = await stored(store)

        async with store.uow_factory() as first, store.uow_factory() as second:
            mine = await first.users.get(user.id)
            theirs = await second.users.get(user.id)
            assert mine is not None
            assert theirs is not None
            mine.change_password("fake$mine", reason="change", now=NOW)
            theirs.delete(now=NOW)
            await first.commit()
            with pytest.raises(ConcurrentUpdateError):
                await second.commit()

        async with store.uow_factory() as uow:
            again = await uow.users.get(user.id)
        assert again is not None
        assert again.password_hash == "fake$mine"
        assert await store.outbox_of(user.id) == [(1, "UserRegistered"), (2, "PasswordChanged")]

    async def test_a_taken_username_in_any_case_is_refused(self, store: Store) -> None:
        user = await stored(store)
        copycat = new_user(user.username.upper())
        copycat.email = "someone.else@example.com"

        async with store.uow_factory() as uow:
            with pytest.raises(UsernameTakenError):
                await uow.users.add(copycat)

        assert await store.outbox_of(copycat.id) == []

    async def test_a_taken_email_in_any_case_is_refused(self, store: Store) -> None:
        user = await stored(store)
        copycat = new_user()
        copycat.email = user.email.upper()

        async with store.uow_factory() as uow:
            with pytest.raises(EmailTakenError):
                await uow.users.add(copycat)

        assert await store.outbox_of(copycat.id) == []

    async def test_an_email_changed_to_a_taken_one_fails_on_commit(self, store: Store) -> None:
        alice = await stored(store)
        bob = await stored(store)

        async with store.uow_factory() as uow:
            loaded = await uow.users.get(bob.id)
            assert loaded is not None
            loaded.update_profile({"email": alice.email.upper()}, now=NOW)
            with pytest.raises(EmailTakenError):
                await uow.commit()

        async with store.uow_factory() as uow:
            again = await uow.users.get(bob.id)
        assert again is not None
        assert again.email == bob.email
        assert await store.outbox_of(bob.id) == [(1, "UserRegistered")]

    async def test_deleting_a_user_takes_its_sessions_and_reset_tokens_along(
        self, store: Store
    ) -> None:
        user = await stored(store)
        async with store.uow_factory() as uow:
            session_id, refresh = await uow.sessions.create(user.id, now=NOW, ttl=TTL)
            reset = await uow.password_resets.create(user.id, now=NOW, ttl=TTL)
            await uow.commit()

        async with store.uow_factory() as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.delete(now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert not await uow.sessions.is_active(session_id, user.id, now=NOW)
            assert await uow.sessions.find_refresh(refresh) is None
            assert await uow.password_resets.find(reset, now=NOW) is None
        assert await store.outbox_of(user.id) == [(1, "UserRegistered"), (2, "UserDeleted")]


class TestFakeUnitOfWork(UnitOfWorkContract):
    """The contract on FakeUnitOfWork."""

    @pytest.fixture
    def store(self, fake_store: Store) -> Store:
        """The fakes' store."""
        return fake_store


@pytest.mark.integration
class TestSqlAlchemyUnitOfWork(UnitOfWorkContract):
    """The contract on SqlAlchemyUnitOfWork and PostgreSQL."""

    @pytest.fixture
    def store(self, sql_store: Store) -> Store:
        """A database of this test alone."""
        return sql_store
