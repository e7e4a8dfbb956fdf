"""The auth service's tables (schema `auth`); Alembic migrations create them."""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
)

from producers.outbox import outbox_tables

SCHEMA = "auth"
metadata = MetaData(schema=SCHEMA)

users = Table(
    "users",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("username", Text, nullable=False),
    Column("email", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("role", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("display_name", Text),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", Integer, nullable=False),
    Column("email_verified", Boolean, nullable=False),
    Column("email_verified_at", DateTime(timezone=True)),
)

# The outbox is also the auth service's event log; producers.outbox owns its shape. An insert
# trigger queues each new row's id in `outbox_pending` (same transaction); the relay deletes
# ids from that queue once the broker has the events.
outbox, outbox_pending = outbox_tables(metadata)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("last_used_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
    Column("revoked_reason", Text),
    # Where the session was last used from (its login, then each refresh): migration 0008.
    Column("client_address", Text),
    Column("user_agent", Text),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("session_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

password_resets = Table(
    "password_resets",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# Single-use email verification tokens, with the address each was mailed to (migration 0007).
email_verifications = Table(
    "email_verifications",
    metadata,
    Column("token_hash", LargeBinary, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("email", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# Credentials of the services that read the event feed; the secret only as its digest.
service_clients = Table(
    "service_clients",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("name", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("secret_hash", LargeBinary, nullable=False),
    Column("scope", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True)),
)

# One row per deleted user, added by a trigger on `users` in the deleting transaction
# (migration 0006); `userbus prune` redacts the user's events in the log after the grace
# period (erased_at), then the broker's copies (broker_erased_at). See auth/maintenance/.
erasures = Table(
    "erasures",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("deleted_at", DateTime(timezone=True), nullable=False),
    Column("erased_at", DateTime(timezone=True)),
    Column("redacted_events", Integer),
    Column("broker_erased_at", DateTime(timezone=True)),
)

# One TOTP enrolment per user; the secret only encrypted (migration 0008).
mfa_totp = Table(
    "mfa_totp",
    metadata,
    Column("user_id", Uuid, primary_key=True),
    Column("secret_ciphertext", LargeBinary, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("confirmed_at", DateTime(timezone=True)),
    Column("last_used_step", BigInteger),
)

# Single-use recovery codes, stored as keyed digests.
mfa_recovery_codes = Table(
    "mfa_recovery_codes",
    metadata,
    Column("code_hash", LargeBinary, primary_key=True),
    Column("user_id", Uuid, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
)

# Index names the repositories map to domain errors.
USERNAME_INDEX = "users_username_lower_key"
EMAIL_INDEX = "users_email_lower_key"
SERVICE_NAME_INDEX = "service_clients_active_name"
