"""Erasing deleted users from a Redis Stream: their entries replaced by redacted copies.

One pass over the stream from `since` (an entry id is the Redis clock at its XADD, which came
after the event's commit; the caller allows for clocks that disagree), a page per script call:
the script reads the subject of each entry's envelope and returns only the entries of the
users asked for, so the stream itself never crosses the network. The cost is one read of the
entries since the oldest first event among the users erased together, bounded by the stream's
retention, and a blocking script call of about a page of entries at a time.

The entries found are replaced in one MULTI/EXEC: the users' redacted histories are appended
(XADD), then the unredacted entries deleted (XDEL), so no reader sees a state in between. A
group that had read everything finds the appended events already applied (duplicates by
sequence); a group that lagged behind reads the redacted copies instead of the deleted
entries, the deletion included. An XDEL-ed entry still pending in a group comes back without
fields and is only acknowledged (infra/redis/reader.py). Should the copies be trimmed too
before a lagging group reads them, its sequence gap is healed from the (redacted) log.
Dead letters (`<stream>.dlq`) about these users are deleted without a copy.
"""

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from events import dead_letter_stream
from infra.erasure import ErasedEntries, RedactedHistories
from infra.redis.wire import STREAM_FIELD

PAGE = 500

# KEYS[1]: the stream; ARGV[1]: the first id to read (`(id`: after it); ARGV[2]: page size;
# ARGV[3...]: user ids. Returns {entries read, last id read, id, subject, data, id, ...}.
_SCAN = f"""
local wanted = {{}}
for i = 3, #ARGV do wanted[ARGV[i]] = true end
local entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
local out = {{#entries, ''}}
if #entries > 0 then out[2] = entries[#entries][1] end
for _, entry in ipairs(entries) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
        if fields[i] == '{STREAM_FIELD}' then
            local value = fields[i + 1]
            -- A plain find, then the 36 characters of the UUID after the opening quote: a
            -- pattern match here cost several times as much per entry.
            local at = string.find(value, '"subject":', 1, true)
            local quote = at and string.find(value, '"', at + 10, true)
            local subject = quote and string.lower(string.sub(value, quote + 1, quote + 36))
            if subject and wanted[subject] then
                out[#out + 1] = entry[1]
                out[#out + 1] = subject
                out[#out + 1] = value
            end
        end
    end
end
return out
"""

Hit = tuple[bytes, str, bytes]
"""A found entry: its id, its subject (lower case), its data field."""


async def erase_from_stream(
    url: str, stream: str, redacted: RedactedHistories, *, since: datetime, page: int = PAGE
) -> ErasedEntries:
    """Replace what `stream` holds from `since` on of these users' unredacted events."""
    if not redacted:
        return ErasedEntries()
    wanted = [str(user_id) for user_id in redacted]
    # An entry that is already one of the redacted copies (an earlier run's) stays.
    copies = {payload.encode() for payloads in redacted.values() for payload in payloads}
    start = f"{max(int(since.timestamp() * 1000), 0)}-0"
    client = Redis.from_url(url)
    try:
        scan = client.register_script(_SCAN)
        scanned, hits = await _find(scan, stream, start, wanted, page)
        stale = [hit for hit in hits if hit[2] not in copies]
        letters_scanned, letters = await _find(
            scan, dead_letter_stream(stream), start, wanted, page
        )
        owners = {subject for _, subject, _ in stale}
        to_append = [p for user_id, ps in redacted.items() if str(user_id) in owners for p in ps]
        async with client.pipeline(transaction=True) as pipe:
            for payload in to_append:
                pipe.xadd(stream, {STREAM_FIELD: payload.encode()})
            if stale:
                pipe.xdel(stream, *_ids(stale))
            if letters:
                pipe.xdel(dead_letter_stream(stream), *_ids(letters))
            await pipe.execute()
    finally:
        await client.aclose()
    return ErasedEntries(
        scanned=scanned + letters_scanned,
        removed=len(stale),
        appended=len(to_append),
        dead_letters_removed=len(letters),
    )


async def _find(
    scan: AsyncScript, stream: str, start: str, wanted: list[str], page: int
) -> tuple[int, list[Hit]]:
    """Every entry of `stream` from `start` whose envelope's subject is one of `wanted`."""
    scanned, hits = 0, []
    while True:
        reply: Any = await scan(keys=[stream], args=[start, page, *wanted])
        count, last, found = int(reply[0]), reply[1], reply[2:]
        scanned += count
        hits += [(found[i], found[i + 1].decode(), found[i + 2]) for i in range(0, len(found), 3)]
        if count < page:
            return scanned, hits
        start = "(" + last.decode()


def _ids(hits: Iterable[Hit]) -> list[bytes]:
    return [entry_id for entry_id, _, _ in hits]
