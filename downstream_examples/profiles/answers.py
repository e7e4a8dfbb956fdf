"""The profile service's side of the registration saga: decide, and answer through its outbox.

A UserRegistered with `status: pending` waits for this service's answer. The service refuses
a profile whose display name is reserved (`display_name_reserved`: a name on the deny-list
below, ignoring case and spaces, such as "Admin" or "Sup port") or blank
(`display_name_blank`); otherwise it makes the profile. Either way it writes its answer,
ProfileCreated or ProfileRejected, into its own outbox (`profiles.outbox`, made with
producers.outbox) in the transaction that writes the profile row: an answer is never lost,
and never sent for a profile that rolled back. `userbus relay --outbox profiles` publishes
the answers to their own stream (`userbus.profiles`).

Each user gets one answer, as sequence 1 of that user on the answers stream. An answer
already written (a redelivered registration, `userbus replay profiles`) is kept and followed
as it was, even if the rule has changed since: the auth service acted on that answer.
"""

from collections.abc import Sequence
from datetime import UTC, datetime
from uuid import UUID

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from consumers.replay.stamp import stamp
from events import Envelope, Event, ProfileCreated, ProfileRejected, UserRegistered, to_envelope
from producers.outbox import outbox_ddl, outbox_row, outbox_table

OUTBOX_SCHEMA = "profiles"
EVENT_SOURCE = "/userbus/profiles"
# Names that would let a user pass for the service's staff.
RESERVED_DISPLAY_NAMES = frozenset(
    {"admin", "administrator", "root", "support", "staff", "moderator", "system", "userbus"}
)
_outbox = outbox_table(OUTBOX_SCHEMA)


def refusal(registration: UserRegistered) -> str | None:
    """Why this service refuses the profile of `registration`, or None if it accepts it."""
    name = registration.display_name
    if name is None:
        return None
    if not name.strip():
        return "display_name_blank"
    if "".join(name.split()).casefold() in RESERVED_DISPLAY_NAMES:
        return "display_name_reserved"
    return None


async def create_answer_outbox(conn: AsyncConnection) -> None:
    """Create the answers' outbox (tables, queue, trigger) if it does not exist."""
    for statement in outbox_ddl(OUTBOX_SCHEMA):
        await conn.execute(text(statement))


async def answer_registrations(
    conn: AsyncConnection, registrations: Sequence[tuple[UserRegistered, Envelope]]
) -> list[UserRegistered]:
    """Answer the pending registrations in `conn`'s transaction; those to make profiles for.

    Returned: the accepted pending registrations and every registration that was not
    pending (no answer expected). A refused one gets no profile. An answer carries its
    registration's trace context (`traceparent`, `tracestate`): the saga stays one trace.
    """
    moment = datetime.now(UTC)
    accepted: list[UserRegistered] = []
    answers: list[tuple[Event, Envelope]] = []
    pending = [r.user_id for r, _ in registrations if r.status == "pending"]
    given = await _given_answers(conn, pending) if pending else {}
    for registration, envelope in registrations:
        if registration.status != "pending":
            accepted.append(registration)
            continue
        if registration.user_id in given:
            if given[registration.user_id] == ProfileCreated.type_name():
                accepted.append(registration)
            continue
        reason = refusal(registration)
        if reason is None:
            accepted.append(registration)
            answer: Event = ProfileCreated(user_id=registration.user_id, created_at=moment)
        else:
            answer = ProfileRejected(
                user_id=registration.user_id, reason=reason, rejected_at=moment
            )
        answers.append((answer, envelope))
    if answers:
        await _write(conn, answers)
    return accepted


async def _given_answers(conn: AsyncConnection, user_ids: list[UUID]) -> dict[UUID, str]:
    query = select(_outbox.c.subject, _outbox.c.type).where(
        _outbox.c.subject.in_(user_ids), _outbox.c.sequence == 1
    )
    return {row.subject: row.type for row in await conn.execute(query)}


async def _write(conn: AsyncConnection, answers: Sequence[tuple[Event, Envelope]]) -> None:
    rows = [
        outbox_row(
            to_envelope(
                answer,
                sequence=1,
                source=EVENT_SOURCE,
                traceparent=cause.traceparent,
                tracestate=cause.tracestate,
            ),
            stamp,
        )
        for answer, cause in answers
    ]
    # One answer per user: should two consumers answer the same user at once, the unique
    # (subject, sequence) keeps the first.
    await conn.execute(insert(_outbox).values(rows).on_conflict_do_nothing())
