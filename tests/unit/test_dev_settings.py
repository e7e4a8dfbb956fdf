"""`userbus dev` wires the profile consumer to heal from the auth database's event log."""

from consumers.healing import event_log_for
from infra.event_log import PostgresEventLog
from userbus.dev import consumer_settings


def test_the_dev_profile_consumer_heals_from_the_log_of_its_own_database() -> None:
    url = "postgresql://userbus@127.0.0.1:5432/userbus"
    settings = consumer_settings(url, "redis://127.0.0.1:6379/0")
    assert settings.event_log_url == settings.database_url
    assert isinstance(event_log_for(settings), PostgresEventLog)
