"""Settings of the notifier's mail side, read from USERBUS_* environment variables."""

from pathlib import Path

from pydantic import Field

from infra.mail import MailSettings
from infra.settings import UserbusSettings


class NotifierSettings(MailSettings, UserbusSettings):
    """How the notifier sends; where it reads events from is its ConsumerSettings.

    The mail fields are the auth service's (MailSettings: USERBUS_SMTP_HOST, USERBUS_MAIL_FROM,
    ...), so one deployment configures one mail server. The file mailbox has a name of its own, so
    that welcome mails never land among the auth service's reset mails.
    """

    data_dir: Path = Path(".userbus")
    # Mail (the fields of MailSettings): without an SMTP host, one file per message here.
    notifier_mailbox_dir: Path | None = None
    # The sender: concurrent deliveries, how often it looks for new mail, and its retries.
    notifier_workers: int = Field(default=2, ge=1, le=64)
    notifier_poll_seconds: float = Field(default=1.0, gt=0, le=3600)
    notifier_max_attempts: int = Field(default=8, ge=1, le=100)
    notifier_retry_base_seconds: float = Field(default=2.0, ge=0)
    notifier_retry_max_seconds: float = Field(default=600.0, ge=0)
    # Events older than this owe no mail (a new group reading years of history); unset: any.
    notifier_max_event_age_hours: float | None = Field(default=24.0, gt=0)

    @property
    def mailbox_path(self) -> Path:
        """The file mailbox used when no SMTP server is configured."""
        return self.notifier_mailbox_dir or self.data_dir / "notifier-mailbox"
