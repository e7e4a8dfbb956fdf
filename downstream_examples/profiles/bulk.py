"""The profile projection's fast path for a replay: its rows straight from the events' JSON.

It folds each user's events of a batch in memory, as ProfileProjection would apply them
one by one: a user the shadow does not track yet has no row, so the row is built whole
and written with COPY; for a user it already tracks, the batch's updates merge into one
change and a deletion wins, written with one UPDATE and one DELETE for the batch. A
pending registration (the saga's answer is due) or a registration of a tracked user is
left to the normal path, as is any data the contract's models would read otherwise.
"""

from collections.abc import Sequence, Set
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from consumers.replay.checks import check_data, timestamp
from consumers.replay.raw import NotBulkableError, RawEvent
from events import UserDeleted, UserRegistered, UserUpdated

REGISTERED, UPDATED, DELETED = "UserRegistered", "UserUpdated", "UserDeleted"
COLUMNS = ["user_id", "username", "email", "registered_at", "display_name", "updated_at"]
Row = list[Any]


@dataclass
class Change:
    """Updates of one tracked user merged: which fields are set, and the last update's time."""

    email: str | None = None
    display_name: str | None = None
    sets_email: bool = False
    sets_display_name: bool = False
    updated_at: datetime | None = None


@dataclass
class ProfilePlan:
    """New rows to COPY, merged changes to existing ones, users to delete."""

    rows: dict[str, Row | None] = field(default_factory=dict)
    changes: dict[str, Change] = field(default_factory=dict)
    deleted: set[str] = field(default_factory=set)


class ProfileBulkRows:
    """BulkRows of ProfileProjection (see the module)."""

    handled = frozenset({REGISTERED, UPDATED, DELETED})

    def prepare(self, event: RawEvent) -> Row | Change | None:
        """A registration's row, an update's change (None: none kept here), or a deletion."""
        if event.type == REGISTERED:
            return _registration(event.data)
        if event.type == UPDATED:
            return _update(event.data)
        _deletion(event.data)
        return None

    def plan(self, due: Sequence[tuple[str, str, Any]], tracked: Set[str]) -> ProfilePlan:
        """Fold the batch per user; NotBulkableError for what the normal path must do."""
        plan = ProfilePlan()
        for subject, kind, prepared in due:
            if kind == REGISTERED:
                if subject in tracked:
                    raise NotBulkableError("a registration of a user already tracked")
                if plan.rows.get(subject) is None:
                    plan.rows[subject] = prepared
            elif kind == UPDATED:
                if prepared is None:
                    continue
                if subject in tracked:
                    if subject not in plan.deleted:
                        _merge(plan.changes.setdefault(subject, Change()), prepared)
                elif (row := plan.rows.get(subject)) is not None:
                    _merge_row(row, prepared)
            elif subject in tracked:
                plan.deleted.add(subject)
                plan.changes.pop(subject, None)
            else:
                plan.rows[subject] = None
        return plan

    async def write(self, conn: asyncpg.Connection, schema: str, plan: ProfilePlan) -> None:
        """COPY the new rows, then one UPDATE and one DELETE for the tracked users."""
        rows = [row for row in plan.rows.values() if row is not None]
        if rows:
            await conn.copy_records_to_table(
                "profiles", schema_name=schema, columns=COLUMNS, records=rows
            )
        if plan.changes:
            changes = list(plan.changes.items())
            await conn.execute(
                f'UPDATE "{schema}".profiles AS t SET '
                "email = CASE WHEN c.sets_email THEN c.email ELSE t.email END, "
                "display_name = CASE WHEN c.sets_name THEN c.name ELSE t.display_name END, "
                "updated_at = c.updated_at "
                "FROM unnest($1::uuid[], $2::bool[], $3::text[], $4::bool[], $5::text[], "
                "$6::timestamptz[]) AS c(user_id, sets_email, email, sets_name, name, updated_at) "
                "WHERE t.user_id = c.user_id",
                [subject for subject, _ in changes],
                [c.sets_email for _, c in changes],
                [c.email for _, c in changes],
                [c.sets_display_name for _, c in changes],
                [c.display_name for _, c in changes],
                [c.updated_at for _, c in changes],
            )
        if plan.deleted:
            await conn.execute(
                f'DELETE FROM "{schema}".profiles WHERE user_id = ANY($1::uuid[])',
                list(plan.deleted),
            )


def _registration(data: dict[str, Any]) -> Row:
    """The profile row of a UserRegistered, checked as the model checks it."""
    check_data(UserRegistered, data)
    if data.get("status") == "pending":
        raise NotBulkableError("a pending registration: the saga answers it")
    registered_at = timestamp(data["registered_at"])
    return [
        data["user_id"],
        data["username"],
        data["email"],
        registered_at,
        data.get("display_name"),
        registered_at,
    ]


def _update(data: dict[str, Any]) -> Change | None:
    """What a UserUpdated changes in a profile (None: nothing this view keeps)."""
    check_data(UserUpdated, data)
    change = Change(updated_at=timestamp(data["updated_at"]))
    if data.get("email") is not None:  # present as null: the address did not change
        change.email, change.sets_email = data["email"], True
    if "display_name" in data:
        change.display_name, change.sets_display_name = data["display_name"], True
    return change if change.sets_email or change.sets_display_name else None


def _deletion(data: dict[str, Any]) -> None:
    """Check a UserDeleted as the model checks it."""
    check_data(UserDeleted, data)


def _merge(into: Change, change: Change) -> None:
    if change.sets_email:
        into.email, into.sets_email = change.email, True
    if change.sets_display_name:
        into.display_name, into.sets_display_name = change.display_name, True
    into.updated_at = change.updated_at


def _merge_row(row: Row, change: Change) -> None:
    if change.sets_email:
        row[2] = change.email
    if change.sets_display_name:
        row[4] = change.display_name
    row[5] = change.updated_at
