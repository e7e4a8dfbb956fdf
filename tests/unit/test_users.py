"""Reading, listing and deleting accounts, and checking a token's user, on in-memory fakes."""

import base64
import json
from datetime import UTC, datetime
from uuid import uuid4

import pytest

from auth.domain.errors import (
    InvalidCursorError,
    InvalidRefreshTokenError,
    NotAuthenticatedError,
    PermissionDeniedError,
    UserNotFoundError,
)
from auth.domain.model import Principal
from auth.service_layer.authentication import log_in, refresh
from auth.service_layer.context import AuthContext
from auth.service_layer.registrations import register_user
from auth.service_layer.users import (
    FOREIGN_ACCOUNT,
    authenticated_user,
    delete_user,
    get_user,
    list_users,
)
from events import UserDeleted, UserRegistered
from tests.unit.fakes import CapturedAudit, FakeUnitOfWorkFactory
from tests.unit.helpers import PASSWORD, add_user, principal_of


def cursor_of(value: object) -> str:
    """A cursor holding `value`, encoded the way the API encodes its own."""
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# --- get_user --------------------------------------------------------------------------------


async def test_a_user_reads_their_own_account_in_any_case(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice")

    found = await get_user(ctx, actor=principal_of(alice), username="ALICE")

    assert found.id == alice.id


@pytest.mark.parametrize("target_exists", [True, False])
async def test_a_non_admin_cannot_read_someone_else_whether_or_not_they_exist(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, target_exists: bool
) -> None:
    alice = await add_user(uow_factory, "alice")
    if target_exists:
        await add_user(uow_factory, "bob")

    with pytest.raises(PermissionDeniedError) as caught:
        await get_user(ctx, actor=principal_of(alice), username="bob")

    assert caught.value.message == FOREIGN_ACCOUNT


async def test_an_admin_reads_anyone_and_is_told_when_a_user_does_not_exist(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    bob = await add_user(uow_factory, "bob")

    assert (await get_user(ctx, actor=root, username="bob")).id == bob.id
    with pytest.raises(UserNotFoundError) as caught:
        await get_user(ctx, actor=root, username="ghost")
    assert caught.value.username == "ghost"


async def test_a_stale_token_cannot_read_a_newer_account_with_the_same_name(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    await add_user(uow_factory, "alice")
    stale = Principal(user_id=uuid4(), username="alice", role="user")

    with pytest.raises(PermissionDeniedError):
        await get_user(ctx, actor=stale, username="alice")


# --- list_users ------------------------------------------------------------------------------


async def test_only_admins_may_list_users(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")

    with pytest.raises(PermissionDeniedError):
        await list_users(ctx, actor=principal_of(alice), limit=10, cursor=None)


async def test_users_are_listed_a_page_at_a_time_in_username_order(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    names = ["grace", "Bob", "erin", "alice", "Dave", "carol", "Frank"]
    root = principal_of(await add_user(uow_factory, names[0], role="admin"))
    for name in names[1:]:
        await add_user(uow_factory, name)

    pages = []
    cursor: str | None = None
    while True:
        page = await list_users(ctx, actor=root, limit=3, cursor=cursor)
        pages.append([user.username for user in page.users])
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    assert pages == [["alice", "Bob", "carol"], ["Dave", "erin", "Frank"], ["grace"]]
    listed = [name for page_names in pages for name in page_names]
    assert len(set(listed)) == len(listed) == 7


async def test_a_page_that_holds_the_rest_exactly_is_the_last(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    await add_user(uow_factory, "alice")
    await add_user(uow_factory, "bob")

    page = await list_users(ctx, actor=root, limit=3, cursor=None)

    assert [user.username for user in page.users] == ["alice", "bob", "root"]
    assert page.next_cursor is None


@pytest.mark.parametrize(
    "cursor",
    ["garbage", "!!!!", "é", cursor_of(5), cursor_of(["alice"]), cursor_of(["alice", "nope"])],
    ids=["not-json", "not-base64", "not-ascii", "a-number", "one-part", "not-a-uuid"],
)
async def test_a_cursor_the_api_did_not_hand_out_is_refused(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, cursor: str
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    with pytest.raises(InvalidCursorError):
        await list_users(ctx, actor=root, limit=3, cursor=cursor)


@pytest.mark.parametrize("id_part", [1, {}], ids=["number", "object"])
async def test_a_cursor_whose_id_is_not_a_string_is_refused(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, id_part: object
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    with pytest.raises(InvalidCursorError):
        await list_users(ctx, actor=root, limit=3, cursor=cursor_of(["alice", id_part]))


# --- delete_user -----------------------------------------------------------------------------


async def test_a_user_deletes_their_own_account(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    user = await add_user(uow_factory, "alice")

    await delete_user(ctx, actor=principal_of(user), username="Alice")

    assert user.id not in uow_factory.rows
    sequence, event = uow_factory.outbox[-1]
    assert sequence == 2
    assert isinstance(event, UserDeleted)
    assert event == UserDeleted(
        user_id=user.id, username="alice", deleted_at=event.deleted_at, reason="requested"
    )


@pytest.mark.parametrize("target_exists", [True, False])
async def test_a_non_admin_cannot_delete_someone_else_whether_or_not_they_exist(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, target_exists: bool
) -> None:
    alice = await add_user(uow_factory, "alice")
    if target_exists:
        await add_user(uow_factory, "bob")

    with pytest.raises(PermissionDeniedError) as caught:
        await delete_user(ctx, actor=principal_of(alice), username="bob")

    assert caught.value.message == FOREIGN_ACCOUNT
    assert len(uow_factory.outbox) == (2 if target_exists else 1)
    assert len(uow_factory.rows) == (2 if target_exists else 1)


async def test_a_stale_token_cannot_delete_a_newer_account_with_the_same_name(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    await add_user(uow_factory, "alice")
    stale = Principal(user_id=uuid4(), username="alice", role="user")

    with pytest.raises(PermissionDeniedError):
        await delete_user(ctx, actor=stale, username="alice")

    assert len(uow_factory.rows) == 1


async def test_an_admin_deleting_an_unknown_user_is_told_it_does_not_exist(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    outbox_before = list(uow_factory.outbox)

    with pytest.raises(UserNotFoundError) as caught:
        await delete_user(ctx, actor=root, username="ghost")

    assert caught.value.username == "ghost"
    assert uow_factory.outbox == outbox_before


async def test_an_admin_deletes_another_user_with_reason_admin(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    root = principal_of(await add_user(uow_factory, "root", role="admin"))
    bob = await add_user(uow_factory, "bob")

    await delete_user(ctx, actor=root, username="bob")

    assert bob.id not in uow_factory.rows
    sequence, event = uow_factory.outbox[-1]
    assert (sequence, event.user_id) == (2, bob.id)
    assert isinstance(event, UserDeleted)
    assert event.reason == "admin"


async def test_a_deleted_users_sessions_end_with_the_account(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    await delete_user(ctx, actor=principal_of(alice), username="alice")

    with pytest.raises(InvalidRefreshTokenError):
        await refresh(ctx, refresh_token=pair.refresh_token, address=None)


async def test_a_deleted_users_name_is_free_again(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    old = await add_user(uow_factory, "alice")
    await delete_user(ctx, actor=principal_of(old), username="alice")

    new = await register_user(ctx, username="alice", email="alice@example.com", password=PASSWORD)

    assert new.id != old.id
    sequence, event = uow_factory.outbox[-1]
    assert (sequence, type(event), event.user_id) == (1, UserRegistered, new.id)


async def test_a_deletion_is_audited_with_the_name_asked_for_and_who_asked(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory, audit: CapturedAudit
) -> None:
    await add_user(uow_factory, "alice")
    root = principal_of(await add_user(uow_factory, "root", role="admin"))

    await delete_user(ctx, actor=root, username="ALICE")
    with pytest.raises(UserNotFoundError):
        await delete_user(ctx, actor=root, username="ghost")

    [line] = audit.lines("user_deleted")
    assert (line["username"], line["by"]) == ("ALICE", str(root.user_id))


# --- authenticated_user ----------------------------------------------------------------------


async def test_the_user_behind_a_logged_in_token_is_authenticated(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)

    current = await authenticated_user(ctx, principal=ctx.tokens.verify(pair.access_token))

    assert (current.id, current.username) == (alice.id, "alice")


async def test_a_token_without_a_session_works_while_its_user_is_active(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice")

    current = await authenticated_user(ctx, principal=principal_of(alice, session_id=None))

    assert current.id == alice.id


async def test_the_token_of_a_deleted_user_no_longer_authenticates(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice")
    await delete_user(ctx, actor=principal_of(alice), username="alice")

    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=principal_of(alice))


async def test_the_token_of_a_disabled_user_no_longer_authenticates(
    ctx: AuthContext,
    uow_factory: FakeUnitOfWorkFactory,
) -> None:
    alice = await add_user(uow_factory, "alice", status="disabled")

    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=principal_of(alice))


async def test_the_token_of_an_ended_session_no_longer_authenticates(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    await add_user(uow_factory, "alice")
    pair = await log_in(ctx, login="alice", password=PASSWORD, address=None)
    principal = ctx.tokens.verify(pair.access_token)
    async with uow_factory() as uow:
        assert principal.session_id is not None
        await uow.sessions.revoke(principal.session_id, now=datetime.now(UTC), reason="test")
        await uow.commit()

    with pytest.raises(NotAuthenticatedError, match="session"):
        await authenticated_user(ctx, principal=principal)


async def test_a_token_naming_another_users_session_does_not_authenticate(
    ctx: AuthContext, uow_factory: FakeUnitOfWorkFactory
) -> None:
    alice = await add_user(uow_factory, "alice")
    await add_user(uow_factory, "bob")
    bobs = ctx.tokens.verify(
        (await log_in(ctx, login="bob", password=PASSWORD, address=None)).access_token
    )

    with pytest.raises(NotAuthenticatedError):
        await authenticated_user(ctx, principal=principal_of(alice, session_id=bobs.session_id))
