"""Settings of `userbus replay`, read from USERBUS_* environment variables."""

from pydantic import Field

from consumers.settings import ConsumerSettings


class ReplaySettings(ConsumerSettings):
    """A consumer's settings (its event log and feed too), plus how a replay reads and writes."""

    # Events per page read and per transaction written into the shadow.
    replay_batch_size: int = Field(default=10_000, ge=100, le=100_000)
    # Off a terminal, a progress line this often (on one, a bar).
    replay_progress_seconds: float = Field(default=5.0, gt=0)
