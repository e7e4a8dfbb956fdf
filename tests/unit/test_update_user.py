"""Changing accounts on in-memory fakes: sparse profile events, roles, status, the last admin."""

from typing import Literal

import pytest

from auth.domain.errors import (
    EmailTakenError,
    InvalidRefreshTokenError,
    LastAdminError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UserNotFoundError,
)
from auth.domain.model import Principal, Role, Status
from auth.service_layer.authentication import log_in, refresh
from auth.service_layer.context import AuthContext
from auth.service_layer.users import FOREIGN_ACCOUNT, authenticated_user, delete_user, update_user
from events import UserRoleChanged, UserStatusChanged, UserUpdated, to_envelope
from tests.unit.fakes import CapturedAudit, FakeUnitOfWorkFactory
from tests.unit.helpers import PASSWORD, add_user, principal_of

AdminAction = Literal["demote", "disable", "delete"]


async def test_user_updated_carries_only_the_fields_that_changed(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice")

    updated = await update_user(
        ctx,
        actor=principal_of(alice),
        username="alice",
        profile={"email": "alice@example.com", "display_name": "Alice A."},
    )

    assert updated.display_name == uow_factory.rows[alice.id].display_name == "Alice A."
    sequence, event = uow_factory.outbox[-1]
    assert sequence == 2
    assert isinstance(event, UserUpdated)
    assert event.model_fields_set == {"user_id", "updated_at", "display_name"}
    data = to_envelope(event, sequence=sequence, source="/test").data
    assert set(data) == {"user_id", "updated_at", "display_name"}


async def test_clearing_the_display_name_records_it_as_null(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = principal_of(await add_user(uow_factory, "alice"))
    await update_user(ctx, actor=alice, username="alice", profile={"display_name": "A"})

    await update_user(ctx, actor=alice, username="alice", profile={"display_name": None})

    assert uow_factory.rows[alice.user_id].display_name is None
    event = uow_factory.events()[-1]
    assert isinstance(event, UserUpdated)
    assert "display_name" in event.model_fields_set
    assert "email" not in event.model_fields_set
    assert event.display_name is None


async def test_an_update_that_changes_nothing_records_no_event(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice")
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    outbox_before = list(uow_factory.outbox)

    await update_user(
        ctx,
        actor=root,
        username="alice",
        profile={"email": "alice@example.com", "display_name": None},
        role="user",
        status="active",
    )

    assert uow_factory.outbox == outbox_before
    assert uow_factory.rows[alice.id].version == 1


async def test_an_email_taken_by_another_account_is_refused(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = principal_of(await add_user(uow_factory, "alice"))
    await add_user(uow_factory, "bob")

    with pytest.raises(EmailTakenError):
        await update_user(ctx, actor=alice, username="alice", profile={"email": "BOB@example.com"})

    assert uow_factory.rows[alice.user_id].email == "alice@example.com"
    assert len(uow_factory.outbox) == 2


@pytest.mark.parametrize(
    ("role", "status"), [("admin", None), (None, "disabled")], ids=["role", "status"]
)
async def test_a_non_admin_cannot_change_a_role_or_a_status_not_even_their_own(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, role: Role | None, status: Status | None
) -> None:
    alice = await add_user(uow_factory, "alice")

    with pytest.raises(PermissionDeniedError):
        await update_user(
            ctx,
            actor=principal_of(alice),
            username="alice",
            profile={},
            role=role,
            status=status,
        )

    stored = uow_factory.rows[alice.id]
    assert (stored.role, stored.status, stored.version) == ("user", "active", 1)


@pytest.mark.parametrize("target_exists", [True, False])
async def test_a_non_admin_cannot_update_someone_else_whether_or_not_they_exist(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, target_exists: bool
) -> None:
    alice = await add_user(uow_factory, "alice")
    if target_exists:
        await add_user(uow_factory, "bob")

    with pytest.raises(PermissionDeniedError) as caught:
        await update_user(
            ctx, actor=principal_of(alice), username="bob", profile={"display_name": "x"}
        )

    assert caught.value.message == FOREIGN_ACCOUNT
    assert not any(isinstance(event, UserUpdated) for event in uow_factory.events())


async def test_an_admin_updating_an_unknown_user_is_told_it_does_not_exist(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    with pytest.raises(UserNotFoundError):
        await update_user(ctx, actor=root, username="ghost", profile={})


async def test_a_role_change_records_user_role_changed_and_an_audit_line(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    await update_user(
        ctx,
        actor=root,
        username="alice",
        profile={},
        role="admin",
    )

    assert uow_factory.rows[alice.id].role == "admin"
    sequence, event = uow_factory.outbox[-1]
    assert sequence == 2
    assert isinstance(event, UserRoleChanged)
    assert event == UserRoleChanged(
        user_id=alice.id, old_role="user", new_role="admin", changed_at=event.changed_at
    )
    (line,) = audit.lines()
    assert line["event"] == "role_changed"
    assert (line["user_id"], line["by"]) == (str(alice.id), str(root.user_id))
    assert (line["old_role"], line["new_role"]) == ("user", "admin")


async def test_disabling_a_user_records_the_change_and_ends_all_their_sessions(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    alice = await add_user(uow_factory, "alice")
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    first = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    second = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    await update_user(ctx, actor=root, username="alice", profile={}, status="disabled")

    event = uow_factory.events()[-1]
    assert isinstance(event, UserStatusChanged)
    assert event == UserStatusChanged(
        user_id=alice.id, old_status="active", new_status="disabled", changed_at=event.changed_at
    )
    assert audit.lines("status_changed")[0]["new_status"] == "disabled"
    assert uow_factory.tables.live_sessions(alice.id) == []
    for pair in (first, second):
        with pytest.raises(InvalidRefreshTokenError):
            await refresh(ctx, refresh_token=pair.refresh_token, address=None)


async def apply_admin_action(
    ctx: AuthContext, actor: Principal, action: AdminAction, username: str
) -> None:
    if action == "demote":
        await update_user(ctx, actor=actor, username=username, profile={}, role="user")
    elif action == "disable":
        await update_user(ctx, actor=actor, username=username, profile={}, status="disabled")
    else:
        await delete_user(ctx, actor=actor, username=username)


@pytest.mark.parametrize("action", ["demote", "disable", "delete"])
async def test_the_only_active_admin_cannot_be_demoted_disabled_or_deleted(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, action: AdminAction
) -> None:
    root = await add_user(uow_factory, "root", role="admin")
    # A disabled admin is no admin to fall back on.
    await add_user(uow_factory, "old-root", role="admin", status="disabled")
    outbox_before = list(uow_factory.outbox)

    with pytest.raises(LastAdminError):
        await apply_admin_action(ctx, principal_of(root), action, "root")

    assert uow_factory.rows[root.id] == root
    assert uow_factory.outbox == outbox_before


@pytest.mark.parametrize("action", ["demote", "disable", "delete"])
async def test_an_admin_may_be_demoted_disabled_or_deleted_while_another_remains(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, action: AdminAction
) -> None:
    root = await add_user(uow_factory, "root", role="admin")
    await add_user(uow_factory, "root2", role="admin")

    await apply_admin_action(ctx, principal_of(root), action, "root")

    async with uow_factory() as uow:
        assert await uow.users.count_active_admins() == 1


async def test_the_token_of_a_demoted_admin_no_longer_authenticates(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "root", role="admin")
    other = principal_of(await add_user(uow_factory, "root2", role="admin"))
    pair = await log_in(ctx, login="root", password=PASSWORD, address=None)
    principal = ctx.tokens.verify(pair.access_token)
    assert principal.is_admin

    await update_user(ctx, actor=other, username="root", profile={}, role="user")

    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=principal)
