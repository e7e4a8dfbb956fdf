"""UserRepository: the fake of tests/unit keeps the promises of SqlAlchemyUserRepository."""

from datetime import timedelta
from uuid import uuid4

import pytest

from tests.conftest import unique_username
from tests.contract.conftest import NOW, Store, new_user, stored


class UserRepositoryContract:
    """What every UserRepository does, seen through a unit of work of its backend."""

    @pytest.fixture
    def store(self) -> Store:
        """The backend under test (each subclass names one)."""
        raise NotImplementedError

    async def test_a_user_is_found_by_id_username_login_and_email_in_any_case(
        self, store: Store
    ) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            found = [
                await uow.users.get(user.id),
                await uow.users.get_by_username(user.username.upper()),
                await uow.users.get_by_login(user.username.upper()),
                await uow.users.get_by_login(user.email.upper()),
                await uow.users.get_by_email(user.email.upper()),
            ]

        assert [f.id if f else None for f in found] == [user.id] * 5
        assert found[0] == user

    async def test_an_unknown_user_is_not_found(self, store: Store) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            assert await uow.users.get(uuid4()) is None
            assert await uow.users.get_by_username(user.email) is None
            assert await uow.users.get_by_login(unique_username()) is None
            assert await uow.users.get_by_email(user.username) is None

    async def test_exists_checks_the_username_and_the_email_in_any_case(self, store: Store) -> None:
        user = await stored(store)
        other = unique_username()

        async with store.uow_factory() as uow:
            by_name = await uow.users.exists(username=user.username.upper(), email="x@example.com")
            by_email = await uow.users.exists(username=other, email=user.email.upper())
            neither = await uow.users.exists(username=other, email=f"{other}@example.com")

        assert (by_name, by_email, neither) == (True, True, False)

    async def test_pages_are_ordered_by_lowercase_username_and_start_after_the_position(
        self, store: Store
    ) -> None:
        for name in ["carol", "Bob", "alice", "Dave"]:
            await stored(store, new_user(name))

        async with store.uow_factory() as uow:
            first = await uow.users.list_page(after=None, limit=2)
            last = first[-1]
            rest = await uow.users.list_page(after=(last.username.lower(), last.id), limit=10)

        assert [user.username for user in first] == ["alice", "Bob"]
        assert [user.username for user in rest] == ["carol", "Dave"]

    async def test_a_listed_user_is_not_saved_on_commit(self, store: Store) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            [listed] = await uow.users.list_page(after=None, limit=1)
            listed.change_password("fake$new", reason="change", now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            again = await uow.users.get(user.id)
        assert again is not None
        assert again.password_hash == "fake$pw"

    async def test_only_active_admins_are_counted(self, store: Store) -> None:
        await stored(store, new_user(role="admin"))
        retired = new_user(role="admin")
        retired.change_status("disabled", now=NOW)
        await stored(store, retired)
        await stored(store)

        async with store.uow_factory() as uow:
            assert await uow.users.count_active_admins() == 1

    async def test_pending_registrations_are_the_oldest_before_the_moment(
        self, store: Store
    ) -> None:
        await stored(store)
        pending = [new_user(pending=True) for _ in range(4)]
        for age, user in enumerate(pending):
            user.created_at = NOW - timedelta(minutes=age)
            await stored(store, user)

        async with store.uow_factory() as uow:
            found = await uow.users.pending_registrations(created_before=NOW, limit=2)

        # The newest (created exactly at NOW) is not before NOW; the oldest come first.
        assert [user.id for user in found] == [pending[3].id, pending[2].id]

    async def test_a_change_is_stored_on_commit_with_its_version(self, store: Store) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.change_password("fake$new", reason="change", now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            again = await uow.users.get(user.id)
        assert again is not None
        assert (again.password_hash, again.version) == ("fake$new", user.version + 1)

    async def test_a_deleted_user_is_gone_after_commit(self, store: Store) -> None:
        user = await stored(store)

        async with store.uow_factory() as uow:
            loaded = await uow.users.get(user.id)
            assert loaded is not None
            loaded.delete(now=NOW)
            await uow.commit()

        async with store.uow_factory() as uow:
            assert await uow.users.get(user.id) is None
            assert not await uow.users.exists(username=user.username, email=user.email)


class TestFakeUserRepository(UserRepositoryContract):
    """The contract on FakeUserRepository."""

    @pytest.fixture
    def store(self, fake_store: Store) -> Store:
        """The fakes' store."""
        return fake_store


@pytest.mark.integration
class TestSqlAlchemyUserRepository(UserRepositoryContract):
    """The contract on SqlAlchemyUserRepository and PostgreSQL."""

    @pytest.fixture
    def store(self, sql_store: Store) -> Store:
        """A database of this test alone."""
        return sql_store
