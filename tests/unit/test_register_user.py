"""Registering accounts on in-memory fakes: the password policy, roles, taken names, races."""

import pytest

from auth.domain.errors import (
    EmailTakenError,
    InvalidUsernameError,
    PermissionDeniedError,
    UsernameTakenError,
    WeakPasswordError,
)
from auth.domain.model import Principal, Role, User
from auth.service_layer.context import AuthContext
from auth.service_layer.registrations import create_admin, register_user
from events import UserRegistered
from tests.unit.fakes import CapturedAudit, FakePasswordHasher, FakeUnitOfWorkFactory, make_context
from tests.unit.helpers import PASSWORD, add_user, principal_of


async def register(
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    username: str = "alice",
    email: str | None = None,
    *,
    password: str = PASSWORD,
    display_name: str | None = None,
    role: Role = "user",
    actor: Principal | None = None,
) -> User:
    return await register_user(
        make_context(uow_factory, hasher=hasher),
        username=username,
        email=email or f"{username.lower()}@example.com",
        password=password,
        display_name=display_name,
        role=role,
        actor=actor,
    )


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


@pytest.mark.parametrize(
    ("username", "email", "password", "reason"),
    [
        ("alice", "alice@example.com", "password1", "the password is too common"),
        ("alice_smith", "a@example.com", "I-am-Alice_Smith!", "must not contain the username"),
        ("cj", "carol.jones@example.com", "Carol.Jones-2024", "part of the email address"),
        ("alice", "alice@example.com", "short", "at least 8 characters"),
    ],
    ids=["too-common", "contains-username", "contains-email-local-part", "too-short"],
)
async def test_a_weak_password_is_refused_naming_the_field_before_anything_is_stored(
    uow_factory: FakeUnitOfWorkFactory,
    hasher: FakePasswordHasher,
    username: str,
    email: str,
    password: str,
    reason: str,
) -> None:
    with pytest.raises(WeakPasswordError) as caught:
        await register(uow_factory, hasher, username, email, password=password)

    assert caught.value.field == "password"
    assert reason in caught.value.message
    assert password not in caught.value.message
    assert hasher.hashed == []
    assert uow_factory.rows == {}
    assert uow_factory.outbox == []


@pytest.mark.parametrize("actor_role", [None, "user"])
async def test_only_an_admin_may_register_an_admin(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher, actor_role: Role | None
) -> None:
    actor = None
    if actor_role is not None:
        actor = principal_of(await add_user(uow_factory, "bob", role=actor_role))
    before = dict(uow_factory.rows)

    with pytest.raises(PermissionDeniedError):
        await register(uow_factory, hasher, "mallory", role="admin", actor=actor)

    assert uow_factory.rows == before
    assert hasher.hashed == []


async def test_an_admin_registers_another_admin(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    user = await register(uow_factory, hasher, "carol", role="admin", actor=root)

    assert uow_factory.rows[user.id].role == "admin"
    event = uow_factory.events()[-1]
    assert isinstance(event, UserRegistered)
    assert event.role == "admin"


async def test_a_display_name_is_stored_as_part_of_the_registration_without_user_updated(
    uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher
) -> None:
    user = await register(uow_factory, hasher, display_name="Alice A.")

    assert uow_factory.rows[user.id].display_name == "Alice A."
    assert uow_factory.rows[user.id].version == 1
    assert [type(event) for event in uow_factory.events()] == [UserRegistered]


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


# --- the audit line --------------------------------------------------------------------------


async def test_a_registration_is_audited_with_who_registered_it(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    alice = await register_user(ctx, username="alice", email="alice@example.com", password=PASSWORD)
    carol = await register_user(
        ctx, username="carol", email="carol@example.com", password=PASSWORD, role="admin",
        actor=root,
    )  # fmt: skip

    lines = audit.lines("user_registered")
    assert [{k: v for k, v in line.items() if k != "ts"} for line in lines] == [
        {"event": "user_registered", "user_id": str(alice.id), "username": "alice",
         "role": "user", "status": "active", "by": None},
        {"event": "user_registered", "user_id": str(carol.id), "username": "carol",
         "role": "admin", "status": "active", "by": str(root.user_id)},
    ]  # fmt: skip
    assert PASSWORD not in audit.text()


async def test_a_refused_registration_is_not_audited(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    await add_user(uow_factory, "alice")

    with pytest.raises(UsernameTakenError):
        await register_user(ctx, username="alice", email="a2@example.com", password=PASSWORD)

    assert audit.lines("user_registered") == []


# --- create_admin ----------------------------------------------------------------------------


async def test_create_admin_makes_an_active_admin_even_with_the_saga_on(
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    ctx = make_context(uow_factory, require_profile=True)

    admin = await create_admin(ctx, username="root", email="root@example.com", password=PASSWORD)

    assert (uow_factory.rows[admin.id].role, uow_factory.rows[admin.id].status) == (
        "admin",
        "active",
    )


@pytest.mark.parametrize(
    "username", ["x", "ab", "a" * 33, "al ice", "al/ice", "root\n", "rööt", ""]
)
async def test_create_admin_refuses_a_username_the_api_would_refuse(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, hasher: FakePasswordHasher,
    username: str,
) -> None:  # fmt: skip
    with pytest.raises(InvalidUsernameError) as caught:
        await create_admin(ctx, username=username, email="root@example.com", password=PASSWORD)

    assert caught.value.field == "username"
    assert "3-32 characters of letters, digits, _ . -" in caught.value.message
    assert hasher.hashed == []
    assert uow_factory.rows == {}
    assert uow_factory.outbox == []
