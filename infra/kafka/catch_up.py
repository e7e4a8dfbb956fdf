"""A Kafka group that would start after records it never read: the event log read first.

A topic keeps its records for its retention (`retention.ms`). A group whose next offset in a
partition is below the partition's earliest offset (a new group on an old topic, a group that
stopped for longer than the retention) would silently start after the deleted records. The
catch-up notes the partitions' ends, lets the consumer apply the event log (consumers/
catch_up.py), then commits the noted ends for the group, before it joins.
"""

import logging
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from infra.kafka.admin import ensure_topic
from infra.kafka.security import PLAINTEXT, KafkaSecurity, client_options
from infra.reading import CatchUp, ReaderOptions

logger = logging.getLogger(__name__)

Offsets = dict[TopicPartition, int]
Earliest = Callable[[AIOKafkaConsumer, list[TopicPartition]], Awaitable[Offsets]]


async def beginning_offsets(
    consumer: AIOKafkaConsumer, partitions: list[TopicPartition]
) -> Offsets:
    """Each partition's earliest offset still held (ListOffsets)."""
    found: Offsets = await consumer.beginning_offsets(partitions)
    return found


async def catch_up_group(
    servers: list[str],
    options: ReaderOptions,
    read_log: CatchUp | None,
    earliest: Earliest = beginning_offsets,
    security: KafkaSecurity = PLAINTEXT,
) -> None:
    """Apply the log with `read_log` if the group would miss deleted records, then move it on."""
    await ensure_topic(servers, options.stream, options.layout, security)
    consumer = AIOKafkaConsumer(
        **client_options(servers, security), group_id=options.group, enable_auto_commit=False
    )
    await consumer.start()
    try:
        await consumer.topics()
        partitions = [
            TopicPartition(options.stream, p)
            for p in sorted(consumer.partitions_for_topic(options.stream) or ())
        ]
        if not partitions:
            return
        committed = await _committed(servers, options.group, partitions, security)
        # Where the group reads next; a new group at the end wants nothing older.
        wanted = {
            tp: committed.get(tp, 0 if options.start == "beginning" else None) for tp in partitions
        }
        held = await earliest(consumer, partitions)
        behind = [
            tp.partition for tp in partitions if (w := wanted[tp]) is not None and held[tp] > w
        ]
        if not behind:
            return
        why = f"the topic no longer holds records the group has not read (partitions {behind})"
        if read_log is None:
            logger.warning(
                "%s: %s; without the event log (USERBUS_EVENT_LOG_URL or USERBUS_FEED_URL) it "
                "misses them", options.group, why,
            )  # fmt: skip
            return
        ends: Offsets = await consumer.end_offsets(partitions)
        logger.warning("%s: %s; reading the event log first", options.group, why)
        await read_log(0)
        consumer.assign(partitions)
        # The noted ends: every record before them was committed to the log before the
        # log was read. A broker listing a stale end (Tansu) only makes some come twice.
        moved = {tp: max(ends[tp], committed.get(tp, 0)) for tp in partitions}
        try:
            await consumer.commit(moved)
        except KafkaError as exc:
            # A group with live members refuses a commit from outside: it reads on from its
            # own offsets, and what the log gave already comes again as duplicates.
            logger.warning("%s: could not move the group past the log (%r)", options.group, exc)
    finally:
        await consumer.stop()


async def _committed(
    servers: list[str], group: str, partitions: list[TopicPartition], security: KafkaSecurity
) -> Offsets:
    """The group's committed offsets of the partitions that have one."""
    admin = AIOKafkaAdminClient(**client_options(servers, security))
    await admin.start()
    try:
        # Partitions named: Tansu cannot answer an OffsetFetch for "all partitions".
        found = await admin.list_consumer_group_offsets(group, partitions=partitions)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in found.items() if meta.offset >= 0}
