"""The auth use cases on in-memory fakes: what is committed, what is published, what is refused."""

from uuid import uuid4

import pytest

from auth.domain.errors import (
    ConcurrentUpdateError,
    EmailTakenError,
    InvalidCredentialsError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UsernameTakenError,
    UserNotFoundError,
)
from auth.domain.model import User
from auth.service_layer import services
from auth.service_layer.services import Principal
from events import PasswordChanged, UserDeleted, UserRegistered
from tests.unit.fakes import FakePasswordHasher, FakeUnitOfWorkFactory

PASSWORD = "correct horse battery"


@pytest.fixture
def uow_factory() -> FakeUnitOfWorkFactory:
    return FakeUnitOfWorkFactory()


@pytest.fixture
def hasher() -> FakePasswordHasher:
    return FakePasswordHasher()


async def register(
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    username: str = "alice",
    email: str | None = None,
) -> User:
    return await services.register_user(
        uow_factory,
        hasher,
        username=username,
        email=email or f"{username}@example.com",
        password=PASSWORD,
    )


def principal_of(user: User) -> Principal:
    return Principal(user_id=user.id, username=user.username, role=user.role)


ADMIN = Principal(user_id=uuid4(), username="root", role="admin")


async def test_registration_commits_the_user_with_exactly_one_user_registered(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)

    assert uow_factory.rows[user.id].username == "alice"
    assert uow_factory.rows[user.id].password_hash == "fake$" + PASSWORD
    assert uow_factory.outbox == [
        (
            1,
            UserRegistered(
                user_id=user.id,
                username="alice",
                email="alice@example.com",
                role="user",
                registered_at=user.created_at,
            ),
        )
    ]
    assert hasher.hashed == [PASSWORD]


async def test_a_taken_username_in_any_case_is_refused_before_hashing(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    await register(uow_factory, hasher, "alice")
    units_before = len(uow_factory.units)

    with pytest.raises(UsernameTakenError) as caught:
        await register(uow_factory, hasher, "ALICE", email="other@example.com")

    assert caught.value.username == "ALICE"
    assert not any(uow.committed for uow in uow_factory.units[units_before:])
    assert len(uow_factory.rows) == 1
    assert len(uow_factory.outbox) == 1
    assert hasher.hashed == [PASSWORD]


async def test_a_taken_email_in_any_case_is_refused(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    await register(uow_factory, hasher, "alice", email="alice@example.com")

    with pytest.raises(EmailTakenError):
        await register(uow_factory, hasher, "bob", email="Alice@Example.COM")

    assert len(uow_factory.rows) == 1
    assert len(uow_factory.outbox) == 1
    assert hasher.hashed == [PASSWORD]


async def test_a_username_taken_while_hashing_is_refused_with_nothing_published(
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    class FakeRacingHasher(FakePasswordHasher):
        """Another registration of the same name commits while this one hashes."""

        async def hash(self, password: str) -> str:
            if len(self.hashed) == 0:
                self.hashed.append(password)
                await register(uow_factory, FakePasswordHasher(), "Alice", email="a2@example.com")
            return "fake$" + password

    with pytest.raises(UsernameTakenError):
        await register(uow_factory, FakeRacingHasher(), "alice")

    assert [user.email for user in uow_factory.rows.values()] == ["a2@example.com"]
    assert len(uow_factory.outbox) == 1


@pytest.mark.parametrize("login", ["alice", "ALICE", "alice@example.com", "Alice@Example.com"])
async def test_a_user_authenticates_by_username_or_email_in_any_case(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher, login: str
) -> None:
    user = await register(uow_factory, hasher)

    authenticated = await services.authenticate(uow_factory, hasher, login=login, password=PASSWORD)

    assert authenticated.id == user.id


async def test_a_wrong_password_is_invalid_credentials(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    await register(uow_factory, hasher)

    with pytest.raises(InvalidCredentialsError):
        await services.authenticate(uow_factory, hasher, login="alice", password="wrong password")


async def test_an_unknown_user_is_invalid_credentials_after_the_same_verification_work(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    with pytest.raises(InvalidCredentialsError) as unknown:
        await services.authenticate(uow_factory, hasher, login="nobody", password=PASSWORD)

    # The hasher ran (against no hash, i.e. its dummy), so timing does not reveal the user.
    assert hasher.verified == [(PASSWORD, None)]
    assert unknown.value.message == InvalidCredentialsError().message


async def test_a_disabled_user_cannot_authenticate_even_with_the_right_password(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)
    uow_factory.rows[user.id].status = "disabled"

    with pytest.raises(InvalidCredentialsError):
        await services.authenticate(uow_factory, hasher, login="alice", password=PASSWORD)


async def test_changing_the_password_records_password_changed_and_swaps_the_passwords(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)

    await services.change_password(
        uow_factory, hasher, login="alice", old_password=PASSWORD, new_password="new password 2"
    )

    sequence, event = uow_factory.outbox[-1]
    assert (sequence, type(event)) == (2, PasswordChanged)
    assert event.user_id == user.id
    assert isinstance(event, PasswordChanged)
    assert event.reason == "change"
    assert len(uow_factory.outbox) == 2
    assert uow_factory.rows[user.id].version == 2
    await services.authenticate(uow_factory, hasher, login="alice", password="new password 2")
    with pytest.raises(InvalidCredentialsError):
        await services.authenticate(uow_factory, hasher, login="alice", password=PASSWORD)


async def test_changing_the_password_with_a_wrong_old_password_changes_nothing(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)

    with pytest.raises(InvalidCredentialsError):
        await services.change_password(
            uow_factory, hasher, login="alice", old_password="wrong!!", new_password="new password"
        )

    assert len(uow_factory.outbox) == 1
    assert uow_factory.rows[user.id].version == 1
    assert hasher.hashed == [PASSWORD]


async def test_a_password_changed_meanwhile_makes_the_change_fail_without_an_event(
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    await register(uow_factory, FakePasswordHasher())

    class FakeInterleavedHasher(FakePasswordHasher):
        """A second change of the same password commits while this one hashes."""

        async def hash(self, password: str) -> str:
            if len(self.hashed) == 0:
                await services.change_password(
                    uow_factory,
                    FakePasswordHasher(),
                    login="alice",
                    old_password=PASSWORD,
                    new_password="the other one",
                )
            return await super().hash(password)

    with pytest.raises(ConcurrentUpdateError):
        await services.change_password(
            uow_factory,
            FakeInterleavedHasher(),
            login="alice",
            old_password=PASSWORD,
            new_password="this one",
        )

    assert [sequence for sequence, _ in uow_factory.outbox] == [1, 2]
    await services.authenticate(
        uow_factory, FakePasswordHasher(), login="alice", password="the other one"
    )


async def test_a_user_deletes_their_own_account(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)

    await services.delete_user(uow_factory, actor=principal_of(user), username="Alice")

    assert user.id not in uow_factory.rows
    sequence, event = uow_factory.outbox[-1]
    assert sequence == 2
    assert isinstance(event, UserDeleted)
    assert event == UserDeleted(
        user_id=user.id, username="alice", deleted_at=event.deleted_at, reason="requested"
    )


@pytest.mark.parametrize("target_exists", [True, False])
async def test_a_non_admin_cannot_delete_someone_else_whether_or_not_they_exist(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher, target_exists: bool
) -> None:
    alice = await register(uow_factory, hasher, "alice")
    if target_exists:
        await register(uow_factory, hasher, "bob")

    with pytest.raises(PermissionDeniedError) as caught:
        await services.delete_user(uow_factory, actor=principal_of(alice), username="bob")

    assert caught.value.message == "you may only delete your own account"
    assert len(uow_factory.outbox) == (2 if target_exists else 1)
    assert len(uow_factory.rows) == (2 if target_exists else 1)


async def test_a_stale_token_cannot_delete_a_newer_account_with_the_same_name(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    await register(uow_factory, hasher, "alice")
    stale = Principal(user_id=uuid4(), username="alice", role="user")

    with pytest.raises(PermissionDeniedError):
        await services.delete_user(uow_factory, actor=stale, username="alice")

    assert len(uow_factory.rows) == 1


async def test_an_admin_deleting_an_unknown_user_is_told_it_does_not_exist(
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    with pytest.raises(UserNotFoundError) as caught:
        await services.delete_user(uow_factory, actor=ADMIN, username="ghost")

    assert caught.value.username == "ghost"
    assert uow_factory.outbox == []


async def test_an_admin_deletes_another_user_with_reason_admin(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    bob = await register(uow_factory, hasher, "bob")

    await services.delete_user(uow_factory, actor=ADMIN, username="bob")

    assert bob.id not in uow_factory.rows
    sequence, event = uow_factory.outbox[-1]
    assert (sequence, event.user_id) == (2, bob.id)
    assert isinstance(event, UserDeleted)
    assert event.reason == "admin"


async def test_current_user_is_the_user_behind_the_token(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)

    current = await services.current_user(uow_factory, principal_of(user))

    assert (current.id, current.username) == (user.id, "alice")


async def test_the_token_of_a_deleted_user_no_longer_authenticates(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher)
    await services.delete_user(uow_factory, actor=principal_of(user), username="alice")

    with pytest.raises(NotAuthenticatedError):
        await services.current_user(uow_factory, principal_of(user))


async def test_a_deleted_user_can_no_longer_log_in_and_the_name_is_free_again(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    old = await register(uow_factory, hasher)
    await services.delete_user(uow_factory, actor=principal_of(old), username="alice")

    with pytest.raises(InvalidCredentialsError):
        await services.authenticate(uow_factory, hasher, login="alice", password=PASSWORD)
    new = await register(uow_factory, hasher)

    assert new.id != old.id
    sequence, event = uow_factory.outbox[-1]
    assert (sequence, type(event), event.user_id) == (1, UserRegistered, new.id)
