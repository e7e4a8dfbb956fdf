"""The pure parts of healing: when counters show a loss, retention settings, which log heals."""

import pytest
from pydantic import SecretStr

from consumers.healing import event_log_for
from consumers.settings import ConsumerSettings
from infra.event_log import PostgresEventLog
from infra.feed import HttpFeedLog
from infra.publishing import retention_ms
from infra.redis.trimming import stream_id
from infra.witness import Observation
from producers.loss import loss_reason


def test_a_stream_without_its_mark_lost_data() -> None:
    assert loss_reason({"entries-added": 3}, Observation(marked=False)) is not None


def test_a_counter_that_went_back_is_a_loss_and_one_that_grew_is_not() -> None:
    recorded = {"partition-0": 10, "partition-1": 4}
    grew = Observation(True, {"partition-0": 12, "partition-1": 4})
    back = Observation(True, {"partition-0": 12, "partition-1": 0})
    assert loss_reason(recorded, grew) is None
    assert loss_reason(recorded, back) == "counters went back: partition-1 4 -> 0"
    # A partition gone altogether (fewer partitions) counts as back to 0.
    assert loss_reason(recorded, Observation(True, {"partition-0": 12})) is not None


def test_what_is_recorded_is_the_higher_of_the_broker_and_the_acks() -> None:
    # Tansu lists a stale end; the acks prove more.
    observed = Observation(True, {"partition-0": 5, "partition-1": 9}, {"partition-0": 8})
    assert observed.to_record() == {"partition-0": 8, "partition-1": 9}


def test_retention_hours_become_milliseconds_and_zero_means_none() -> None:
    assert retention_ms(168) == 604_800_000
    assert retention_ms(0.5) == 1_800_000
    assert retention_ms(0) is None


def test_stream_ids_order_as_the_stream_does() -> None:
    assert stream_id(b"1700000000000-10") > stream_id("1700000000000-9")
    assert stream_id("0-0") < stream_id("1-0")
    assert stream_id("5") == (5, 0)


def settings(**values: object) -> ConsumerSettings:
    """Consumer settings for these tests."""
    return ConsumerSettings(database_url="postgresql://u@db/projection", **values)


async def test_the_log_database_comes_first_then_the_feed_then_none() -> None:
    assert event_log_for(settings()) is None
    database = event_log_for(settings(event_log_url="postgresql://u@db/auth", feed_url="http://a"))
    assert isinstance(database, PostgresEventLog)
    feed = event_log_for(settings(feed_url="http://auth:8000/events", feed_token="t"))
    assert isinstance(feed, HttpFeedLog)
    await feed.close()
    with_client = event_log_for(
        settings(
            feed_url="http://auth:8000/events",
            feed_client_id="c",
            feed_client_secret=SecretStr("s"),
        )
    )
    assert isinstance(with_client, HttpFeedLog)
    await with_client.close()


def test_a_feed_without_a_token_or_credentials_is_refused() -> None:
    with pytest.raises(ValueError, match="USERBUS_FEED_TOKEN"):
        event_log_for(settings(feed_url="http://auth:8000/events"))
