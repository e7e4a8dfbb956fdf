"""The fakes keep the promises of the real unit of work, so service tests on them mean something."""

from datetime import UTC, datetime

import pytest

from auth.domain.errors import ConcurrentUpdateError, UsernameTakenError
from auth.domain.model import User
from auth.domain.passwords import PasswordHasher
from auth.service_layer.services import UnitOfWorkFactory
from tests.unit.fakes import FakePasswordHasher, FakeUnitOfWorkFactory

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def new_user(username: str = "alice") -> User:
    return User.register(
        username=username, email=f"{username}@example.com", password_hash="fake$pw", now=NOW
    )


async def stored(uow_factory: FakeUnitOfWorkFactory, username: str = "alice") -> User:
    user = new_user(username)
    async with uow_factory() as uow:
        await uow.users.add(user)
        await uow.commit()
    return user


def test_the_fakes_fit_the_ports() -> None:
    hasher: PasswordHasher = FakePasswordHasher()
    uow_factory: UnitOfWorkFactory = FakeUnitOfWorkFactory()

    assert hasher is not None
    assert uow_factory is not None


async def test_changes_left_without_commit_are_dropped_and_publish_nothing() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as uow:
        loaded = await uow.users.get(user.id)
        assert loaded is not None
        loaded.change_password("fake$new", reason="change", now=NOW)
        await uow.users.add(new_user("bob"))

    assert not uow_factory.units[-1].committed
    assert uow_factory.rows[user.id].password_hash == "fake$pw"
    assert [user.username for user in uow_factory.rows.values()] == ["alice"]
    assert [sequence for sequence, _ in uow_factory.outbox] == [1]


async def test_the_second_of_two_concurrent_changes_fails_and_publishes_nothing() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as first, uow_factory() as second:
        mine = await first.users.get(user.id)
        theirs = await second.users.get(user.id)
        assert mine is not None
        assert theirs is not None
        mine.change_password("fake$mine", reason="change", now=NOW)
        theirs.delete(now=NOW)
        await first.commit()
        with pytest.raises(ConcurrentUpdateError):
            await second.commit()

    assert uow_factory.rows[user.id].password_hash == "fake$mine"
    assert [sequence for sequence, _ in uow_factory.outbox] == [1, 2]


async def test_a_username_is_unique_across_units_of_work_in_any_case() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    await stored(uow_factory, "alice")

    async with uow_factory() as uow:
        with pytest.raises(UsernameTakenError):
            await uow.users.add(new_user("Alice"))


async def test_a_loaded_user_is_a_copy_until_committed() -> None:
    uow_factory = FakeUnitOfWorkFactory()
    user = await stored(uow_factory)

    async with uow_factory() as uow:
        loaded = await uow.users.get_by_login("ALICE@example.com")
        assert loaded is not None
        loaded.change_password("fake$new", reason="change", now=NOW)
        assert uow_factory.rows[user.id].version == 1
        await uow.commit()

    assert uow_factory.rows[user.id].version == 2
    assert uow_factory.rows[user.id].events == []
